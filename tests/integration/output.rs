//! What forge prints for machines and shells: every command's `--format json` is one document
//! on stdout whose `schema` names a shape forge publishes (`forge schema output NAME`), and it
//! validates against it (check-jsonschema); `forge doctor` names each missing piece with its
//! fix; `forge completions bash` loads in bash; every `forge man` page renders without a
//! warning; `--version` says the commit and the default image sources.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{
    assert_published_shape, example, forge_command, have, ready, root, text, Pki, Registry,
};

tests! {
    every_command_prints_json_of_a_shape_forge_publishes => [Commands(&["check-jsonschema"])],
    doctor_says_this_machine_can_run_a_build_with_host_tools_and_secure_boot => [
        Fixtures,
        Commands(&["xorriso", "mksquashfs", "qemu-system-x86_64"]),
    ],
    doctor_names_each_missing_piece_and_its_fix => [Commands(&["check-jsonschema"])],
    doctor_without_inputs_checks_the_host_alone => [Engine],
    doctor_names_a_source_image_neither_the_engine_nor_its_registry_has => [Engine],
    json_stays_json_whatever_a_file_name_holds,
    bash_loads_the_completions,
    every_man_page_renders_without_a_warning => [Commands(&["man"])],
    version_names_the_commit_and_the_default_image_sources,
    exit_codes_are_the_same_across_commands,
    quiet_leaves_stderr_to_errors,
}

/// The ISO tools and QEMU, for the rows that master, boot and push an ISO.
const ISO_TOOLS: &[&str] = &["xorriso", "qemu-system-x86_64"];

/// One command of the table: run where, with what (words split on spaces), exiting how.
struct Row {
    dir: PathBuf,
    line: String,
    exit: i32,
}

fn row(dir: &Path, line: impl Into<String>, exit: i32) -> Row {
    Row {
        dir: dir.to_path_buf(),
        line: line.into(),
        exit,
    }
}

/// The shapes forge publishes, as `forge schema output` lists them.
fn published_shapes() -> BTreeSet<String> {
    let out = forge_command()
        .args(["schema", "output", "no-such-shape"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let list = said
        .split("[possible values: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no list of shapes in: {said}"));
    list.split(", ").map(str::to_string).collect()
}

/// The `schema` name of a document: `forge.NAME/v1` → NAME.
fn shape_of(document: &Value) -> String {
    let id = document["schema"].as_str().unwrap_or_default();
    id.trim_start_matches("forge.")
        .trim_end_matches("/v1")
        .to_string()
}

fn run(row: &Row) -> Output {
    forge_command()
        .current_dir(&row.dir)
        .args(row.line.split_whitespace())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn every_command_prints_json_of_a_shape_forge_publishes() {
    let (root, canvos) = (root(), example());
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).display().to_string();
    let inputs = "--arg .arg --user-data user-data";
    let mut rows = vec![
        row(root, "--version --format json", 0),
        row(root, "rules --format json", 0),
        row(root, "schema user-data --format json", 0),
        row(root, "schema output doctor --format json", 0),
        row(root, "completions bash --format json", 0),
        row(root, format!("man {} --format json", path("man")), 0),
        row(
            root,
            "config show --arg examples/canvos/.arg --format json",
            0,
        ),
        row(
            root,
            "validate --format json --user-data tests/fixtures/rules/SCHEMA001/fail/user-data.yaml",
            1,
        ),
        row(
            root,
            "images rewrite --format json --user-data tests/fixtures/images/user-data.yaml nginx",
            0,
        ),
        row(root, "cache ls --format json", 0),
        row(root, "cache prune --max-size 500GB --format json", 0),
    ];
    // Kept alive until the rows ran: the registry.
    let mut _registry = None;
    let mut event = None;
    let everything = ready() && have(ISO_TOOLS);
    if ready() {
        rows.push(row(&canvos, format!("doctor --format json {inputs}"), 0));
        rows.push(row(&canvos, format!("plan --format json {inputs}"), 0));
        rows.push(row(
            &canvos,
            format!("build --dry-run --format json {inputs}"),
            0,
        ));
    }
    if everything {
        // The build, with its ISO: its document gives the installer image and the ISO the
        // other rows read; its progress gives the events.
        let out = run(&row(
            &canvos,
            format!(
                "build {inputs} --format json --progress json --output {}",
                path("built")
            ),
            0,
        ));
        assert!(out.status.success(), "{}", text(&out));
        let build: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shape_of(&build), "build");
        assert_published_shape(&out.stdout);
        let manifest = std::fs::read(work.path().join("built/manifest.json")).unwrap();
        assert_published_shape(&manifest);
        // Findings and errors stay text among the events: the events are the JSON lines.
        event = String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .find(|l| l.starts_with('{'))
            .map(str::to_string);
        let installer = build["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "installer")
            .and_then(|i| i["image"].as_str())
            .unwrap()
            .to_string();
        let iso = build["isos"][0]["path"].as_str().unwrap().to_string();
        rows.push(row(
            &canvos,
            format!(
                "iso --image {installer} {inputs} --format json --output {}",
                path("again")
            ),
            0,
        ));
        rows.push(row(
            root,
            format!("inspect {iso} --show-config --format json"),
            0,
        ));
        rows.push(row(
            root,
            format!("verify {iso} --firmware bios --format json"),
            0,
        ));

        // A TLS registry (CA made here) for the registry commands and the ISO push.
        let pki = Pki::generate();
        let registry = Registry::start(Some(&pki), false);
        std::fs::write(path("ca.pem"), &pki.ca_pem).unwrap();
        let user_data = format!(
            "#cloud-config\nstylus:\n  registryCredentials:\n    domain: {}\n",
            registry.host()
        );
        std::fs::write(path("user-data.yaml"), user_data).unwrap();
        let access = format!(
            "--registry-ca {} --user-data {} --format json",
            path("ca.pem"),
            path("user-data.yaml")
        );
        let debian = "forge-fixtures/debian:bookworm";
        rows.push(row(
            root,
            format!("registry sync --from docker {access} {debian}"),
            0,
        ));
        rows.push(row(
            root,
            format!("registry check {access} {debian} {debian}-absent"),
            1,
        ));
        let pushed = format!("{}/edge/installer:v1", registry.host());
        rows.push(row(
            root,
            format!(
                "iso push {iso} {pushed} --registry-ca {} --format json",
                path("ca.pem")
            ),
            0,
        ));
        _registry = Some(registry);
    }

    let mut seen = BTreeSet::new();
    for row in &rows {
        let out = run(row);
        let said = format!("forge {}: {}", row.line, text(&out));
        assert_eq!(out.status.code(), Some(row.exit), "{said}");
        let document: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {said}"));
        seen.insert(shape_of(&document));
        assert_published_shape(&out.stdout);
    }
    if let Some(event) = event {
        assert_published_shape(event.as_bytes());
        seen.extend(["event", "build", "manifest"].map(String::from));
    }
    if everything {
        assert_eq!(seen, published_shapes(), "every published shape is checked");
    }
}

fn doctor_says_this_machine_can_run_a_build_with_host_tools_and_secure_boot() {
    let out = forge_command()
        .current_dir(example())
        .args(["doctor", "--arg", ".arg", "--user-data", "user-data"])
        .args(["--iso-tools", "host", "--verify", "--secure-boot"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    for line in [
        "engine",
        "classic builder",
        "engine data root",
        "ISO tools",
        "QEMU",
        "Secure Boot firmware",
        "KVM",
    ] {
        assert!(
            said.lines()
                .any(|l| l.starts_with("ok") && l.contains(line)),
            "{line}: {said}"
        );
    }
    assert!(said.ends_with("this command line can run\n"), "{said}");
}

fn doctor_names_each_missing_piece_and_its_fix() {
    let out = forge_command()
        .current_dir(example())
        .args(["doctor", "--arg", ".arg", "--user-data", "user-data"])
        .args(["--iso-tools", "host", "--format", "json"])
        .env("DOCKER_HOST", "unix:///nonexistent/forge-doctor.sock")
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let check = |name: &str| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
    };
    let engine = check("engine");
    assert_eq!(engine["status"], "error");
    assert!(
        engine["found"]
            .as_str()
            .unwrap()
            .contains("cannot reach the Docker Engine at unix:///nonexistent/forge-doctor.sock"),
        "{engine}"
    );
    assert!(
        engine["fix"].as_str().unwrap().starts_with("start it"),
        "{engine}"
    );
    let tools = check("ISO tools");
    assert_eq!(tools["status"], "error");
    assert!(
        tools["found"].as_str().unwrap().contains("xorriso"),
        "{tools}"
    );
    assert!(
        tools["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install squashfs-tools xorriso"),
        "{tools}"
    );
    // What only `forge verify` needs is said, and does not stop this command line.
    assert_eq!(check("QEMU")["status"], "warning");
    assert_eq!(check("user-data")["status"], "ok");
    assert_published_shape(&out.stdout);

    // `forge build` with the same flags stops on the same words.
    let build = support::forge_build(&["--iso-tools", "host"])
        .env("DOCKER_HOST", "unix:///nonexistent/forge-doctor.sock")
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(build.status.code(), Some(2), "{}", text(&build));
    let said = String::from_utf8_lossy(&build.stderr);
    for check in [engine, tools] {
        let line = format!(
            "{}; {}",
            check["found"].as_str().unwrap(),
            check["fix"].as_str().unwrap()
        );
        assert!(said.contains(&line), "{line}\n{said}");
    }
}

fn doctor_without_inputs_checks_the_host_alone() {
    let empty = tempfile::tempdir().unwrap();
    let out = forge_command()
        .current_dir(empty.path())
        .arg("doctor")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("ok    inputs                none given and no CanvOS checkout here: the host alone is checked"),
        "{said}"
    );
    for absent in ["build settings", "SPECTRO_LUET_REPO", "source image"] {
        assert!(!said.contains(absent), "{absent}: {said}");
    }
}

/// In the example checkout, every image the build starts from is in the engine; a stylus
/// framework of another agent version is not, and its registry (the fixtures' made-up host)
/// cannot be reached: the command line cannot run.
fn doctor_names_a_source_image_neither_the_engine_nor_its_registry_has() {
    let out = forge_command()
        .current_dir(example())
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "source image")
        .collect();
    assert_eq!(sources.len(), 6, "{report:#}");
    assert!(sources.iter().all(|c| c["status"] == "ok"), "{report:#}");
    let out = forge_command()
        .current_dir(example())
        .args(["doctor", "--set", "PE_VERSION=v4.9.99"])
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAIL  source image          forge-fixtures.local/palette-images/edge/stylus-framework-linux-amd64:v4.9.99: not in the engine, and forge-fixtures.local cannot be reached"),
        "{said}"
    );
}

fn json_stays_json_whatever_a_file_name_holds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site\u{7f}\u{85}\u{1b}[31m.yaml");
    std::fs::write(
        &file,
        "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n",
    )
    .unwrap();
    let out = forge_command()
        .args(["validate", "--format", "json", "--user-data"])
        .arg(&file)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(doc["schema"], "forge.validate/v1");
}

fn bash_loads_the_completions() {
    let forge = env!("CARGO_BIN_EXE_forge");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{forge}' completions bash) && complete -p forge"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.starts_with("complete ") && said.contains(" -F _forge "),
        "{said}"
    );
    assert!(said.trim_end().ends_with(" forge"), "{said}");
}

fn every_man_page_renders_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = forge_command().arg("man").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pages: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for name in [
        "forge.1",
        "forge-build.1",
        "forge-doctor.1",
        "forge-iso-push.1",
        "forge-cache-prune.1",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} missing: {pages:?}");
    }
    for page in &pages {
        let rendered = Command::new("man")
            .args(["--warnings=all", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{}: {}",
            page.display(),
            text(&rendered)
        );
        assert_eq!(
            String::from_utf8_lossy(&rendered.stderr),
            "",
            "{}",
            page.display()
        );
        assert!(!rendered.stdout.is_empty(), "{}", page.display());
    }
}

fn version_names_the_commit_and_the_default_image_sources() {
    let out = forge_command().arg("--version").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    let first = said.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("forge {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{said}"
    );
    assert!(said.contains("CanvOS fb36e29"), "{said}");
    assert!(
        said.lines()
            .any(|l| l.split_whitespace().eq(["PE_VERSION", "v4.9.38"])),
        "{said}"
    );
}

fn exit_codes_are_the_same_across_commands() {
    let code = |args: &[&str]| {
        forge_command()
            .current_dir(root())
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    // Usage.
    assert_eq!(code(&["no-such-command"]), Some(2));
    assert_eq!(code(&["rules", "--format", "yaml"]), Some(2));
    assert_eq!(code(&[]), Some(2));
    // I/O.
    assert_eq!(
        code(&["validate", "--user-data", "/nonexistent/user-data"]),
        Some(2)
    );
    assert_eq!(code(&["inspect", "/nonexistent/installer.iso"]), Some(2));
    // Findings.
    assert_eq!(
        code(&[
            "validate",
            "--user-data",
            "tests/fixtures/rules/SCHEMA001/fail/user-data.yaml"
        ]),
        Some(1)
    );
    // Fine.
    assert_eq!(
        code(&["validate", "--user-data", "examples/canvos/user-data"]),
        Some(0)
    );
}

fn quiet_leaves_stderr_to_errors() {
    let out = forge_command()
        .current_dir(root())
        .args(["-q", "config", "show", "--arg", "examples/canvos/.arg"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let conflicting = forge_command()
        .args(["-q", "-v", "rules"])
        .output()
        .unwrap();
    assert_eq!(conflicting.status.code(), Some(2));
}
