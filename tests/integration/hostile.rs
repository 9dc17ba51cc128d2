//! Hostile input: every case is a file (or an environment) built to exhaust memory, the stack
//! or the terminal, and each must end in the real `forge` binary within a few seconds of CPU
//! time and a bounded peak RSS (the child's own `ru_maxrss`, from `wait4`), with exit 1
//! (findings) or 2 (unreadable input), a message that says where, and no panic.
//!
//! The inputs are generated here, not checked in.

use crate::support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::process::Command;
use std::time::Duration;

tests! {
    hostile_inputs_end_quickly_in_bounded_memory_with_a_positioned_message,
}

/// The most a case may take, wall clock (a debug build on a shared machine).
const MAX_TIME: Duration = Duration::from_secs(5);
/// The most memory a case may hold at its peak.
const MAX_RSS_KIB: i64 = 128 * 1024;
/// The longest line a case may print: a message quotes at most 200 characters of any value
/// (and of its source line), so even one quoting a few values stays below this.
const MAX_LINE_CHARS: usize = 1000;

/// One hostile input and what forge must answer.
#[derive(Default)]
struct Case {
    name: &'static str,
    /// Files to write, relative to a temporary directory, and their contents.
    files: Vec<(&'static str, Vec<u8>)>,
    /// FIFOs to make, and sockets (`*.sock`), relative to the temporary directory.
    specials: &'static [&'static str],
    /// `forge` arguments; `{dir}` stands for the temporary directory.
    args: &'static [&'static str],
    /// Extra environment variables (raw bytes: they need not be UTF-8).
    env: Vec<(&'static str, Vec<u8>)>,
    exit: i32,
    /// Text the output (stdout and stderr) must contain: the position or the file and key.
    says: &'static [&'static str],
}

/// The billion laughs in YAML: nine anchors of nine aliases each to the one before.
fn billion_laughs() -> Vec<u8> {
    let mut text = String::from("#cloud-config\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let aliases = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    text.into_bytes()
}

/// A cluster profile of twenty packs whose values each copy 14.4 MB by aliases, just under the
/// limit of one document: 288 MB together.
fn packs_each_aliasing_just_under_the_limit() -> Vec<u8> {
    let pack = |i: usize| {
        let aliases = vec!["*a"; 900].join(", ");
        format!("  - name: pack{i}\n    layer: addon\n    values: |\n      a: &a {}\n      b: [{aliases}]\n", "x".repeat(16 << 10))
    };
    format!("packs:\n{}", (0..20).map(pack).collect::<String>()).into_bytes()
}

/// A cluster profile whose options each hold `fanout` templates of the one before, eight
/// deep, starting from `first`; its one image expands the last.
fn nested_templates(first: &str, fanout: usize) -> Vec<u8> {
    let mut options = format!("        o0: \"{first}\"\n");
    for k in 1..8 {
        let templates = format!("{{{{ .spectro.pack.p.options.o{} }}}}", k - 1).repeat(fanout);
        options.push_str(&format!("        o{k}: \"{templates}\"\n"));
    }
    format!("packs:\n  - name: p\n    layer: addon\n    values: |\n      options:\n{options}      pack:\n        content:\n          images:\n            - image: \"{{{{ .spectro.pack.p.options.o7 }}}}\"\n").into_bytes()
}

/// A value of 100 KB: every message about it must quote at most 200 characters of it.
fn long(prefix: &str) -> String {
    format!("{prefix}{}", "x".repeat(100 << 10))
}

/// User-data whose values (and keys) are each 100 KB, each of them wrong in its own way.
fn long_values_user_data() -> Vec<u8> {
    format!(
        "#cloud-config\nstylus:\n  managementMode: {mode}\n  featureGate: {gate}\n  ? {key}\n  : 1\n  site:\n    name: {name}\n    network:\n      ntpServers: {hosts}\n      interfaces:\n        ? {nic}\n        : type: static\n        eth1:\n          type: static\n          ipAddress: 10.0.0.1/{prefix}\n  externalRegistries:\n    registries:\n      - domain: {domain}\n    registryMappingRules:\n      ? {source}\n      : {target}\n      docker.io: mirror.example.com/{path}\n",
        mode = long("m"),
        gate = long("G"),
        key = long("k"),
        name = long("n/"),
        hosts = long("pool.ntp.org, _"),
        nic = long("eth"),
        prefix = long("9"),
        domain = long("https://"),
        source = long("_"),
        target = long("bad_"),
        path = long("P"),
    )
    .into_bytes()
}

/// Settings whose values (and one key) are each 100 KB, each wrong in its own way: the first
/// or the second half of them (a settings file holds at most 1 MiB).
fn long_settings(half: usize) -> Vec<u8> {
    let settings = [
        ("image_registry", long("https://")),
        ("image_repo", long("Repo")),
        ("custom_tag", long("T/")),
        ("iso_name", long("I")),
        ("arch", long("a")),
        ("k8s_distribution", long("k")),
        ("k8s_version", long("1.")),
        ("pe_version", long("+")),
        ("base_image", long("Base:")),
        ("http_proxy", long("ftp://")),
        ("no_proxy", long("a b")),
        ("content_part_size", long("9")),
        ("debug", long("t")),
        ("clusterconfig", long("/none/")),
        ("edge_custom_config", long("/none/")),
        (&long("unknown_"), "1".to_string()),
    ];
    settings[half * 8..(half + 1) * 8]
        .iter()
        .map(|(key, value)| format!("? {key}\n: \"{value}\"\n"))
        .collect::<String>()
        .into_bytes()
}

fn cases() -> Vec<Case> {
    let lines = |n: usize, line: &dyn Fn(usize) -> String| -> String { (0..n).map(line).collect() };
    vec![
        Case {
            name: "aliases expanding to a billion values",
            files: vec![("user-data.yaml", billion_laughs())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:5:11: error[YAML003]: excessive aliasing"],
            ..Case::default()
        },
        Case {
            name: ".arg values doubling on forty lines",
            files: vec![("build.arg", format!("A=x\n{}", "A=$A$A\n".repeat(40)).into_bytes())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            env: vec![],
            exit: 1,
            says: &["build.arg:18:5: error[CFG001]: A: the value grows past 64 KiB where `$A` is expanded"],
            ..Case::default()
        },
        Case {
            name: "an Earthfile doubling PE_VERSION on forty lines",
            files: vec![("Earthfile", format!("ARG PE_VERSION=x\n{}", "LET PE_VERSION=$PE_VERSION$PE_VERSION\n".repeat(40)).into_bytes())],
            args: &["config", "show", "--checkout", "{dir}"],
            env: vec![],
            exit: 0,
            says: &["Earthfile:41:16: warning[CFG020]: PE_VERSION: forge cannot read PE_VERSION's value `$PE_VERSION$PE_VERSION` on line 18 (the value grows past 64 KiB where `$PE_VERSION` is expanded); it uses forge's default `v4.9.38`"],
            ..Case::default()
        },
        Case {
            name: "an Earthfile nesting IF blocks 70,000 deep",
            files: vec![("Earthfile", format!("{}ARG PE_VERSION=v1\n", "IF [ 1 = 1 ]\n".repeat(70_000)).into_bytes())],
            args: &["config", "show", "--checkout", "{dir}"],
            env: vec![],
            exit: 0,
            says: &["Earthfile:33:1: warning[CFG020]: blocks nest deeper than 32 here: forge reads no further"],
            ..Case::default()
        },
        Case {
            name: "an Earthfile of one statement continued on 200,000 lines",
            files: vec![("Earthfile", format!("ARG PE_VERSION=v1 \\\n{}\n", "x \\\n".repeat(200_000)).into_bytes())],
            args: &["config", "show", "--checkout", "{dir}"],
            env: vec![],
            exit: 0,
            says: &["Earthfile:1:16: warning[CFG020]: PE_VERSION: forge cannot read PE_VERSION's value on line 1, longer than 64 KiB; it uses forge's default `v4.9.38`"],
            ..Case::default()
        },
        Case {
            name: ".arg values each just under 64 KiB on 3,000 lines",
            files: vec![("build.arg", format!("A={}\n{}", "x".repeat(65_535), "B=$A\n".repeat(3_000)).into_bytes())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            env: vec![],
            exit: 1,
            says: &["build.arg:18:3: error[CFG001]: B: expanding `$A` takes what `$VAR` expansion adds to this file's values past 1 MiB, the most forge expands in one .arg file"],
            ..Case::default()
        },
        Case {
            name: ".arg: one variable expanded on 70,000 lines",
            files: vec![("build.arg", format!("A=x\n{}", "IMAGE_REPO=$A\n".repeat(70_000)).into_bytes())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            env: vec![],
            exit: 0,
            says: &["0 errors"],
            ..Case::default()
        },
        Case {
            name: "profile: 20 packs each aliasing just under the limit",
            files: vec![("profile.yaml", packs_each_aliasing_just_under_the_limit())],
            args: &["validate", "--profile", "{dir}/profile.yaml"],
            env: vec![],
            exit: 1,
            says: &["profile.yaml:11:499: error[YAML003]: packs[1].values: excessive aliasing: anchors and aliases copy more than 1000000 values or 16 MiB of text, the most forge copies for one file", "1 error, 0 warnings"],
            ..Case::default()
        },
        Case {
            name: "profile: templates of 100 bytes, ten to a level, eight deep",
            files: vec![("profile.yaml", nested_templates(&"x".repeat(100), 10))],
            args: &["validate", "--profile", "{dir}/profile.yaml"],
            env: vec![],
            exit: 1,
            says: &["profile.yaml:17:22: error[PR007]: packs[0].values.pack.content.images[0].image: expanding the `{{ }}` templates of this profile copies more than 1 MiB of option text by here, the most forge expands in one profile"],
            ..Case::default()
        },
        Case {
            name: "profile: empty templates, 1,000 to a level, eight deep",
            files: vec![("profile.yaml", nested_templates("", 1000))],
            args: &["validate", "--profile", "{dir}/profile.yaml"],
            env: vec![],
            exit: 1,
            says: &["profile.yaml:17:22: error[PR007]"],
            ..Case::default()
        },
        Case {
            name: "400 KB of nested block sequences",
            files: vec![("user-data.yaml", format!("#cloud-config\nx:\n{}1\n", "- ".repeat(200_000)).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:3:255: error[YAML003]: collections are nested more than 128 levels deep"],
            ..Case::default()
        },
        Case {
            name: "100,000 nested flow sequences",
            files: vec![("user-data.yaml", format!("#cloud-config\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:2:", "error[YAML003]: ", "nested more than"],
            ..Case::default()
        },
        Case {
            name: "20,000 unknown keys in one mapping",
            files: vec![("user-data.yaml", format!("#cloud-config\nstylus:\n{}", lines(20_000, &|i| format!("  key{i}: v\n"))).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 0,
            says: &["user-data.yaml:20002:3: warning[SCHEMA004]: stylus.key19999: unknown key", "0 errors, 20000 warnings"],
            ..Case::default()
        },
        Case {
            name: "20,000 unknown keys of one flow mapping on one line",
            files: vec![("user-data.yaml", format!("#cloud-config\nstylus: {{{}}}\n", (0..20_000).map(|i| format!("key{i}: v")).collect::<Vec<_>>().join(", ")).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 0,
            says: &["0 errors, 20000 warnings"],
            ..Case::default()
        },
        Case {
            name: "20,000 duplicated keys",
            files: vec![("user-data.yaml", format!("#cloud-config\nstylus:\n{}", lines(20_000, &|i| format!("  site: {i}\n"))).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:20002:3: error[YAML002]: stylus.site: key defined twice"],
            ..Case::default()
        },
        Case {
            name: "20,000 list items of the wrong type",
            files: vec![("user-data.yaml", format!("#cloud-config\nstages:\n  boot:\n{}", lines(20_000, &|i| format!("    - name: [{i}]\n"))).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:20003:7: error[SCHEMA001]: stages.boot[19999].name"],
            ..Case::default()
        },
        Case {
            name: "a 1 MB line with a syntax error at its end",
            files: vec![("user-data.yaml", format!("#cloud-config\nx: {}: [\n", "a".repeat(1_000_000)).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:2:1000004: error[YAML001]", "2 | …aaaa"],
            ..Case::default()
        },
        Case {
            name: "terminal escape sequences in a key",
            files: vec![("user-data.yaml", b"#cloud-config\nstylus:\n  \"evil\x1b]0;owned\x07\x1b[2J\": x\n".to_vec())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 0,
            says: &["user-data.yaml:3:3: warning[SCHEMA004]", "unknown key `evil\\x1b]0;owned\\x07\\x1b[2J`", "3 |   \"evil\\x1b]0;owned\\x07\\x1b[2J\": x"],
            ..Case::default()
        },
        Case {
            name: "a FORGE_ variable that is not UTF-8",
            files: vec![("build.arg", b"ARCH=amd64\n".to_vec())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            env: vec![("FORGE_CUSTOM_TAG", b"\xff\xfe".to_vec())],
            exit: 2,
            says: &["the environment variable FORGE_CUSTOM_TAG is not UTF-8 text"],
            ..Case::default()
        },
        Case {
            name: "another variable that is not UTF-8, which forge does not read",
            files: vec![("build.arg", b"ARCH=amd64\n".to_vec())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            env: vec![("HOSTILE_LATIN1", b"caf\xe9".to_vec())],
            exit: 0,
            says: &["no problems found"],
            ..Case::default()
        },
        Case {
            name: "user-data just above the host's 2 MiB",
            files: vec![("user-data.yaml", format!("#cloud-config\n#{}\n", "x".repeat(2 << 20)).into_bytes())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 1,
            says: &["user-data.yaml:1:1: error[UD003]"],
            ..Case::default()
        },
        Case {
            name: "user-data larger than forge reads",
            files: vec![("user-data.yaml", vec![b'#'; 5 << 20])],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            env: vec![],
            exit: 2,
            says: &["cannot read user-data file `", "user-data.yaml`: it is larger than 4 MiB"],
            ..Case::default()
        },
        Case {
            name: "/dev/zero as user-data",
            files: vec![],
            args: &["validate", "--user-data", "/dev/zero"],
            env: vec![],
            exit: 2,
            says: &["cannot read user-data file `/dev/zero`: it is a character device, not a regular file"],
            ..Case::default()
        },
        Case {
            name: "/dev/zero as the .arg file",
            files: vec![],
            args: &["validate", "--arg", "/dev/zero"],
            env: vec![],
            exit: 2,
            says: &["cannot read .arg file `/dev/zero`: it is a character device, not a regular file"],
            ..Case::default()
        },
        Case {
            name: "/dev/urandom as the settings file",
            files: vec![],
            args: &["config", "show", "--config", "/dev/urandom"],
            env: vec![],
            exit: 2,
            says: &["cannot read settings file `/dev/urandom`: it is a character device, not a regular file"],
            ..Case::default()
        },
        Case {
            name: "/dev/zero as the Kubernetes version matrix",
            files: vec![],
            args: &["config", "show", "--set", "K8S_VERSION_FILE=/dev/zero"],
            env: vec![],
            exit: 1,
            says: &["<--set>:1:1: error[CFG013]: K8S_VERSION_FILE: K8S_VERSION_FILE names `/dev/zero`, but it is a character device, not a regular file"],
            ..Case::default()
        },
        Case {
            name: "a directory as user-data",
            files: vec![],
            args: &["validate", "--user-data", "{dir}"],
            env: vec![],
            exit: 2,
            says: &["`: it is a directory, not a regular file\n"],
            ..Case::default()
        },
        Case {
            name: "user-data values of 100 KB",
            files: vec![("user-data.yaml", long_values_user_data())],
            args: &["validate", "--user-data", "{dir}/user-data.yaml"],
            exit: 1,
            says: &["invalid value \"mxxx", "unknown key `kxxx", "mapping target `bad_xxx", "registry domain `https://xxx", "interface `ethxxx", "prefix length `9xxx"],
            ..Case::default()
        },
        Case {
            name: "setting values of 100 KB",
            files: vec![("forge.yaml", long_settings(0))],
            args: &["validate", "--config", "{dir}/forge.yaml"],
            exit: 1,
            says: &["IMAGE_REGISTRY `https://xxx", "CUSTOM_TAG `T/xxx", "ISO_NAME `Ixxx", "K8S_VERSION `1.xxx", "PE_VERSION `+xxx"],
            ..Case::default()
        },
        Case {
            name: "more setting values of 100 KB",
            files: vec![("forge.yaml", long_settings(1))],
            args: &["validate", "--config", "{dir}/forge.yaml"],
            exit: 1,
            says: &["BASE_IMAGE `Base:xxx", "CLUSTERCONFIG names `", "unknown key `unknown_xxx"],
            ..Case::default()
        },
        Case {
            name: ".arg names of 100 KB",
            files: vec![("build.arg", format!("IMAGE_REPO=${}\n{}-=1\n{}=1\n", long("V"), long("N"), long("U")).into_bytes())],
            args: &["validate", "--arg", "{dir}/build.arg"],
            exit: 1,
            says: &["`$Vxxx", "`Nxxx", "unknown setting `Uxxx"],
            ..Case::default()
        },
        Case {
            name: "image references of 100 KB",
            files: vec![
                ("user-data.yaml", b"#cloud-config\n".to_vec()),
                ("images.txt", format!("{}\n", long("Image:")).into_bytes()),
                ("profile.yaml", format!("packs:\n  - name: {}\n    layer: addon\n    values: |\n      pack:\n        content:\n          images:\n            - image: \"{}\"\n            - image: \"{{{{ .spectro.pack.p.options.{} }}}}\"\n", long("harbor"), long("Image:"), long("o")).into_bytes()),
            ],
            args: &["images", "rewrite", "--user-data", "{dir}/user-data.yaml", "--from-file", "{dir}/images.txt", "--profile", "{dir}/profile.yaml"],
            exit: 1,
            says: &["image `Image:xxx", "cannot resolve `{{ .spectro.pack.p.options.oxxx"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as user-data",
            specials: &["fifo"],
            args: &["validate", "--user-data", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read user-data file `{dir}/fifo`: it is a FIFO (a named pipe, which `<(...)` also gives), not a regular file; write the data to a file and give that"],
            ..Case::default()
        },
        Case {
            name: "a socket as user-data",
            specials: &["user-data.sock"],
            args: &["validate", "--user-data", "{dir}/user-data.sock"],
            exit: 2,
            says: &["cannot read user-data file `{dir}/user-data.sock`: it is a socket, not a regular file"],
            ..Case::default()
        },
        Case {
            name: "a FIFO in a user-data directory",
            files: vec![("sites/a.yaml", b"#cloud-config\n".to_vec())],
            specials: &["sites/b.yaml"],
            args: &["plan", "--set", "IMAGE_REGISTRY=ttl.sh", "--set", "K8S_DISTRIBUTION=k3s", "--user-data", "{dir}/sites"],
            exit: 2,
            says: &["cannot read user-data file `{dir}/sites/b.yaml`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the .arg file",
            specials: &["fifo"],
            args: &["validate", "--arg", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read .arg file `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the settings file",
            specials: &["fifo"],
            args: &["config", "show", "--config", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read settings file `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the cluster profile",
            specials: &["fifo"],
            args: &["validate", "--profile", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read cluster profile `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as a secret file",
            specials: &["fifo"],
            args: &["config", "show", "--secret-file", "HTTP_PROXY={dir}/fifo"],
            exit: 2,
            says: &["cannot read secret file `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the image list",
            files: vec![("user-data.yaml", b"#cloud-config\n".to_vec())],
            specials: &["fifo"],
            args: &["images", "rewrite", "--user-data", "{dir}/user-data.yaml", "--from-file", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read image list `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the Kubernetes version matrix",
            specials: &["fifo"],
            args: &["config", "show", "--set", "K8S_VERSION_FILE={dir}/fifo"],
            exit: 1,
            says: &["error[CFG013]: K8S_VERSION_FILE: K8S_VERSION_FILE names `{dir}/fifo`, but it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as CLUSTERCONFIG, a socket as EDGE_CUSTOM_CONFIG",
            specials: &["fifo", "custom.sock"],
            args: &["config", "show", "--set", "CLUSTERCONFIG={dir}/fifo", "--set", "EDGE_CUSTOM_CONFIG={dir}/custom.sock"],
            exit: 1,
            says: &["CLUSTERCONFIG names `{dir}/fifo`, but it is a FIFO", "EDGE_CUSTOM_CONFIG names `{dir}/custom.sock`, but it is a socket"],
            ..Case::default()
        },
        Case {
            name: "a FIFO among the content bundles",
            files: vec![("user-data.yaml", b"#cloud-config\n".to_vec())],
            specials: &["content-a/core.zst"],
            args: &["validate", "--user-data", "{dir}/user-data.yaml", "--content-dir", "{dir}"],
            exit: 2,
            says: &["cannot read the content bundle `{dir}/content-a/core.zst`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as --registry-ca",
            files: vec![("user-data.yaml", b"#cloud-config\n".to_vec())],
            specials: &["fifo"],
            args: &["registry", "check", "--user-data", "{dir}/user-data.yaml", "--registry-ca", "{dir}/fifo", "nginx"],
            exit: 2,
            says: &["cannot read CA certificate file `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the ISO forge inspect reads",
            specials: &["installer.iso"],
            args: &["inspect", "{dir}/installer.iso"],
            exit: 2,
            says: &["cannot read {dir}/installer.iso: it is a FIFO"],
            ..Case::default()
        },
        Case {
            name: "a FIFO as the user-data forge inspect compares",
            specials: &["fifo"],
            args: &["inspect", "{dir}/missing.iso", "--user-data", "{dir}/fifo"],
            exit: 2,
            says: &["cannot read user-data file `{dir}/fifo`: it is a FIFO"],
            ..Case::default()
        },
    ]
}

/// How a run ended.
struct Run {
    status: std::process::ExitStatus,
    output: String,
    time: Duration,
    /// User and system time: what the run cost, whatever else the machine was doing.
    cpu: Duration,
    max_rss_kib: i64,
}

/// Run forge and measure it ([`support::measured`]: its own peak RSS, not the test
/// process's). A run that blocks (a FIFO opened for reading waits for a writer) is killed,
/// not waited for forever; its time then fails the case.
fn run(args: &[String], env: &[(&str, Vec<u8>)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.args(args);
    for (key, _) in std::env::vars_os().filter(|(k, _)| k.as_bytes().starts_with(b"FORGE_")) {
        cmd.env_remove(key);
    }
    for (key, value) in env {
        cmd.env(key, OsStr::from_bytes(value));
    }
    let run = support::measured(&mut cmd, MAX_TIME * 4);
    Run {
        status: run.status,
        output: run.stdout + &run.stderr,
        time: run.elapsed,
        cpu: run.cpu,
        max_rss_kib: i64::try_from(run.peak_rss_bytes >> 10).unwrap(),
    }
}

fn hostile_inputs_end_quickly_in_bounded_memory_with_a_positioned_message() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in &case.files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        for name in case.specials {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if name.ends_with(".sock") {
                drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            } else {
                let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
                // SAFETY: a NUL-terminated path that outlives the call.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }
        }
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
            .collect();
        let run = run(&args, &case.env);
        eprintln!(
            "{:60} exit {:?} {:>6} ms ({:>6} ms CPU) {:>7} KiB",
            case.name,
            run.status.code(),
            run.time.as_millis(),
            run.cpu.as_millis(),
            run.max_rss_kib
        );
        let mut problems = Vec::new();
        if run.status.code() != Some(case.exit) {
            problems.push(format!("exit {:?}, expected {}", run.status, case.exit));
        }
        // CPU time, so that a loaded machine does not fail the case; a run that blocks is
        // killed by the watchdog, and its exit status fails the case.
        if run.cpu > MAX_TIME {
            problems.push(format!("took {:?} of CPU time", run.cpu));
        }
        if run.max_rss_kib > MAX_RSS_KIB {
            problems.push(format!("peak RSS {} KiB", run.max_rss_kib));
        }
        if run.output.contains("panicked") || run.output.contains('\u{1b}') {
            problems.push("panicked or printed a raw escape character".into());
        }
        for expected in case.says {
            let expected = expected.replace("{dir}", &dir.path().display().to_string());
            if !run.output.contains(&expected) {
                problems.push(format!("does not say {expected:?}"));
            }
        }
        if run.output.len() > 20 << 20 {
            problems.push(format!("printed {} bytes", run.output.len()));
        }
        if let Some(line) = run
            .output
            .lines()
            .find(|l| l.chars().count() > MAX_LINE_CHARS)
        {
            let head: String = line.chars().take(200).collect();
            problems.push(format!(
                "printed a line of {} characters: {head}",
                line.chars().count()
            ));
        }
        if !problems.is_empty() {
            let head: String = run.output.chars().take(1500).collect();
            failures.push(format!("{}: {}\n{head}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
