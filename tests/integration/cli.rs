//! The `forge` command line as users see it: exit codes, text and JSON output, `--fix`,
//! `forge schema`, `forge config show`, `forge rules`, `forge cache ls|prune` on damaged,
//! foreign and unreadable entries and several at once.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use forge::iso::cache::{Cache, Meta, Stored};
use predicates::prelude::*;
use serde_json::Value;

tests! {
    a_canvos_checkout_validates_from_anywhere_with_its_optional_files_absent,
    a_clean_user_data_exits_0,
    errors_exit_1_with_compiler_style_text,
    warnings_alone_exit_0,
    json_output_is_one_object_with_counts,
    arg_diagnostics_use_the_variable_name_as_path,
    a_missing_file_exits_2_and_names_it,
    validate_without_inputs_is_a_usage_error,
    fix_encodes_alphanumeric_passwords_and_keeps_everything_else,
    fix_through_a_link_rewrites_its_target_with_its_owner_and_mode,
    fix_flips_an_existing_encoded_password_flag,
    fix_adds_a_missing_header,
    fix_leaves_a_header_after_comments_alone,
    fix_repairs_a_header_the_agent_would_not_see,
    an_integer_id_is_an_error_that_says_to_quote_it,
    content_bundles_with_an_external_registry_need_a_primary_registry_pack,
    deprecated_keys_are_marked_in_the_schema,
    user_data_schema_is_json_schema_2020_12,
    config_show_names_every_setting_and_its_source,
    build_help_is_grouped_under_headings_with_canvos_examples,
    config_show_text_is_a_table_and_errors_exit_1,
    rules_lists_the_whole_catalog,
    images_rewrite_prints_from_and_to_in_input_order,
    images_rewrite_json_names_the_registry_whose_credentials_apply,
    images_rewrite_reports_bad_references_with_their_position,
    images_rewrite_needs_valid_user_data_and_some_images,
    forge_iso_masters_with_an_image_and_pushes_with_its_subcommand,
    cache_ls_and_prune_name_each_damaged_or_foreign_entry_say_what_is_done_and_follow_no_link => [
        Commands(&["check-jsonschema"]),
    ],
    an_entry_forge_cannot_open_is_named_and_left_alone_by_ls_and_prune,
    prunes_at_once_with_each_other_and_with_ls_all_succeed_and_remove_each_entry_once,
}

fn rules_fixture(rule: &str, case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules")
        .join(rule)
        .join(case)
}

/// `forge` with a clean environment: no FORGE_* variable leaks in from the developer's shell.
fn forge() -> Command {
    let mut cmd = Command::cargo_bin("forge").unwrap();
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FORGE_")) {
        cmd.env_remove(key);
    }
    cmd
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

/// Run forge, check its exit code and parse its stdout as JSON.
fn json_stdout(cmd: &mut Command, code: i32) -> Value {
    json_of(&cmd.assert().code(code).get_output().stdout)
}

fn a_canvos_checkout_validates_from_anywhere_with_its_optional_files_absent() {
    // The example's .arg has the shape of CanvOS's .arg.template (CLUSTERCONFIG=spc.tgz, which
    // is absent, CIS_HARDENING=false, empty proxies), its user-data the shape of
    // user-data.template filled in (an ipAddress in CIDR form).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, arg, user_data) in [
        (root.join("examples/canvos"), ".arg", "user-data"),
        (
            root.to_path_buf(),
            "examples/canvos/.arg",
            "examples/canvos/user-data",
        ),
    ] {
        forge()
            .current_dir(&dir)
            .args(["validate", "--arg", arg, "--user-data", user_data])
            .assert()
            .code(0)
            .stdout(predicate::str::contains(
                "note[CFG018]: CLUSTERCONFIG: CLUSTERCONFIG names",
            ))
            // Its registryCredentials send the edge host to the registry for every image,
            // the provider images under the registry's own prefix.
            .stdout(predicate::str::contains(
                "warning[REG009]: stylus.registryCredentials: the edge host pulls the provider image registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo from registry.example.com/registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo, not where --push puts it",
            ))
            .stdout(predicate::str::contains("0 errors, 1 warning"));
    }
    let shown = json_stdout(
        forge().current_dir(root).args([
            "config",
            "show",
            "--arg",
            "examples/canvos/.arg",
            "--format",
            "json",
        ]),
        0,
    );
    assert_eq!(shown["settings"]["K8S_VERSION_FILE"]["source"], "checkout");
    assert_eq!(
        shown["provider_images"][0],
        "registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo"
    );
}

fn a_clean_user_data_exits_0() {
    forge()
        .args(["validate", "--user-data"])
        .arg(rules_fixture("UD001", "pass/user-data.yaml"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no problems found"));
}

fn errors_exit_1_with_compiler_style_text() {
    let file = rules_fixture("SCHEMA001", "fail/user-data.yaml");
    let expected_head = format!(
        "{}:6:5: error[SCHEMA001]: stylus.registryCredentials.password: expected string, got null",
        file.display()
    );
    forge()
        .args(["validate", "--user-data"])
        .arg(&file)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(expected_head))
        .stdout(predicate::str::contains(
            "6 |     password:\n  |     ^^^^^^^^",
        ))
        .stdout(predicate::str::contains("= help: the key has no value"))
        .stdout(predicate::str::contains("1 error, 0 warnings"));
}

fn warnings_alone_exit_0() {
    forge()
        .args(["validate", "--user-data"])
        .arg(rules_fixture("SCHEMA004", "fail/user-data.yaml"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "warning[SCHEMA004]: stylus.registryCredentails: unknown key",
        ))
        .stdout(predicate::str::contains(
            "did you mean `registryCredentials`?",
        ));
    // --strict, for CI: a warning fails validation, and stops a build before the engine.
    forge()
        .args(["validate", "--strict", "--user-data"])
        .arg(rules_fixture("SCHEMA004", "fail/user-data.yaml"))
        .assert()
        .code(1);
    forge()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["build", "--strict", "--user-data"])
        .arg(rules_fixture("SCHEMA004", "fail/user-data.yaml"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("warning[SCHEMA004]"))
        .stderr(predicate::str::contains("Docker Engine").not());
}

fn json_output_is_one_object_with_counts() {
    let output = json_stdout(
        forge()
            .args(["validate", "--format", "json", "--user-data"])
            .arg(rules_fixture("SCHEMA001", "fail/user-data.yaml")),
        1,
    );
    let report = output;
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 0);
    let d = &report["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "SCHEMA001");
    assert_eq!(d["path"], "stylus.registryCredentials.password");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(6), Some(5))
    );
    assert_eq!(d["message"], "expected string, got null");
}

fn arg_diagnostics_use_the_variable_name_as_path() {
    let output = json_stdout(
        forge()
            .args(["validate", "--format", "json", "--arg"])
            .arg(rules_fixture("CFG006", "fail/build.arg")),
        1,
    );
    let d = &output["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["path"].as_str()),
        (Some("CFG006"), Some("CUSTOM_TAG"))
    );
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(12))
    );
}

fn a_missing_file_exits_2_and_names_it() {
    forge()
        .args(["validate", "--user-data", "/nonexistent/user-data.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read user-data file `/nonexistent/user-data.yaml`",
        ));
}

fn validate_without_inputs_is_a_usage_error() {
    let empty = tempfile::tempdir().unwrap();
    forge()
        .current_dir(empty.path())
        .arg("validate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to validate"));
    forge()
        .args(["validate", "--set", "no-equals-sign", "--arg", "x"])
        .assert()
        .code(2);
}

fn fix_encodes_alphanumeric_passwords_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data.yaml");
    let original = "#cloud-config\n# site registry\nstylus:\n  registryCredentials:\n    domain: 10.10.254.254:8000/spectro-images  # lab\n    username: ubuntu\n    password: Abc123def456   # rotated monthly\n    insecure: true\n";
    fs::write(&file, original).unwrap();
    forge()
        .args(["validate", "--fix", "--user-data"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no problems found"))
        .stderr(predicate::str::contains("fixed 1 problem"));
    assert_eq!(
        fs::read_to_string(dir.path().join("user-data.yaml.bak")).unwrap(),
        original
    );
    let fixed = fs::read_to_string(&file).unwrap();
    let expected = original.replace(
        "    password: Abc123def456   # rotated monthly\n",
        "    password: \"QWJjMTIzZGVmNDU2\"   # rotated monthly\n    encodedPassword: true\n",
    );
    assert_eq!(fixed, expected);
}

fn fix_through_a_link_rewrites_its_target_with_its_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    let sites = dir.path().join("sites");
    fs::create_dir(&sites).unwrap();
    let target = sites.join("store-42.yaml");
    fs::write(&target, "#cloud-config\nstylus:\n  registryCredentials:\n    domain: r.example.com\n    username: a\n    password: Plain1\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    // As root, the target belongs to someone else, as a file an admin fixes for a user.
    let owner = match rustix::process::geteuid().is_root() {
        true => {
            std::os::unix::fs::chown(&target, Some(4321), Some(4321)).unwrap();
            (4321, 4321)
        }
        false => {
            let meta = fs::metadata(&target).unwrap();
            (meta.uid(), meta.gid())
        }
    };
    let link = dir.path().join("user-data.yaml");
    std::os::unix::fs::symlink("sites/store-42.yaml", &link).unwrap();
    forge()
        .args(["validate", "--fix", "--user-data"])
        .arg(&link)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("fixed 1 problem"));
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("sites/store-42.yaml"),
        "the link is still the link"
    );
    let fixed = fs::read_to_string(&target).unwrap();
    assert!(fixed.contains("password: \"UGxhaW4x\""), "{fixed}");
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), owner);
    let leftovers: Vec<_> = fs::read_dir(&sites)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["store-42.yaml"],
        "the temporary file was renamed"
    );
    assert!(dir.path().join("user-data.yaml.bak").is_file());
}

fn fix_flips_an_existing_encoded_password_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ud.yaml");
    fs::write(&file, "#cloud-config\nstylus:\n  externalRegistries:\n    registries:\n      - domain: r.example.com\n        encodedPassword: false\n        username: a\n        password: 'Plain1'\n").unwrap();
    forge()
        .args(["validate", "--fix", "--user-data"])
        .arg(&file)
        .assert()
        .code(0);
    let fixed = fs::read_to_string(&file).unwrap();
    assert!(
        fixed.contains(
            "        encodedPassword: true\n        username: a\n        password: \"UGxhaW4x\"\n"
        ),
        "{fixed}"
    );
}

fn fix_adds_a_missing_header() {
    assert_eq!(
        fixed("stylus:\n  debug: true\n"),
        "#cloud-config\nstylus:\n  debug: true\n"
    );
}

/// What `forge validate --fix` (exit code 0) does to a file with this text.
struct Fix {
    text: String,
    stdout: String,
    stderr: String,
    backup: bool,
}

fn fix(text: &str) -> Fix {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ud.yaml");
    fs::write(&file, text).unwrap();
    let output = forge()
        .args(["validate", "--fix", "--user-data"])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    Fix {
        text: fs::read_to_string(&file).unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
        backup: dir.path().join("ud.yaml.bak").exists(),
    }
}

/// The text `forge validate --fix` leaves.
fn fixed(text: &str) -> String {
    fix(text).text
}

fn fix_leaves_a_header_after_comments_alone() {
    let text = "# store 42\n\n#cloud-config\nstylus:\n  debug: true\n";
    let result = fix(text);
    assert_eq!(result.stdout, "no problems found\n");
    assert_eq!(result.stderr, "");
    assert_eq!(result.text, text);
    assert!(!result.backup);
}

fn fix_repairs_a_header_the_agent_would_not_see() {
    assert_eq!(
        fixed("# Cloud-Config\nstylus:\n  debug: true\n"),
        "#cloud-config\nstylus:\n  debug: true\n"
    );
    assert_eq!(
        fixed("\u{feff}#cloud-config\nstylus:\n  debug: true\n"),
        "#cloud-config\nstylus:\n  debug: true\n"
    );
    let late = format!("{}#cloud-config\nstylus: {{}}\n", "#\n".repeat(9));
    assert_eq!(fixed(&late), format!("#cloud-config\n{late}"));
    let late_and_wrong = format!("{}# Cloud-Config\nstylus: {{}}\n", "#\n".repeat(9));
    assert_eq!(
        fixed(&late_and_wrong),
        format!("#cloud-config\n{late_and_wrong}")
    );
    assert_eq!(
        fixed("\u{feff}stylus: {}\r\n"),
        "#cloud-config\r\nstylus: {}\r\n"
    );
}

fn an_integer_id_is_an_error_that_says_to_quote_it() {
    let output = json_stdout(
        forge()
            .args(["validate", "--format", "json", "--user-data"])
            .arg(rules_fixture(
                "SCHEMA001",
                "fail-project-uid/user-data.yaml",
            )),
        1,
    );
    let d = &output["diagnostics"][0];
    assert_eq!(d["path"], "stylus.site.projectUid");
    assert_eq!(
        d["help"],
        "quote the value so that YAML reads it as a string: `projectUid: \"12345677788\"`"
    );
}

fn content_bundles_with_an_external_registry_need_a_primary_registry_pack() {
    let case = rules_fixture("PR009", "fail");
    let validate = |content_dir: Option<&Path>| {
        let mut cmd = forge();
        cmd.args(["validate", "--format", "json", "--user-data"])
            .arg(case.join("user-data.yaml"))
            .arg("--profile")
            .arg(case.join("profile.yaml"));
        if let Some(dir) = content_dir {
            cmd.arg("--content-dir").arg(dir);
        }
        cmd
    };
    let output = json_stdout(&mut validate(Some(&case)), 1);
    assert_eq!(output["diagnostics"][0]["code"], "PR009");
    // Without bundles (no --content-dir) the same inputs are fine.
    json_stdout(&mut validate(None), 0);
    // A content directory that cannot be read is an I/O problem.
    validate(Some(&case.join("missing")))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read the content directory",
        ));
    // `forge build` checks its --content-dir the same way, before anything is built.
    forge()
        .args(["build", "--dry-run", "--user-data"])
        .arg(case.join("user-data.yaml"))
        .arg("--profile")
        .arg(case.join("profile.yaml"))
        .arg("--content-dir")
        .arg(&case)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error[PR009]"))
        .stderr(predicate::str::contains(
            "validation failed: nothing was built",
        ));
}

fn deprecated_keys_are_marked_in_the_schema() {
    let schema = json_stdout(forge().args(["schema", "user-data"]), 0);
    let stylus = &schema["$defs"]["Stylus"]["properties"];
    for key in [
        "installationMode",
        "imageOverride",
        "emcServer",
        "includeTui",
    ] {
        assert_eq!(stylus[key]["deprecated"], true, "{key}");
    }
    assert_eq!(stylus["managementMode"].get("deprecated"), None);
}

fn user_data_schema_is_json_schema_2020_12() {
    let output = json_stdout(forge().args(["schema", "user-data"]), 0);
    let schema = output;
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["properties"]["stylus"]["$ref"], "#/$defs/Stylus");
    let registry = &schema["$defs"]["Registry"];
    assert_eq!(registry["required"], serde_json::json!(["domain"]));
    assert_eq!(registry["properties"]["password"]["writeOnly"], true);
    assert_eq!(registry["additionalProperties"], false);
    assert_eq!(registry["properties"]["insecure"]["type"], "boolean");
}

fn config_show_names_every_setting_and_its_source() {
    let arg = rules_fixture("CFG001", "pass/build.arg");
    let output = json_stdout(
        forge()
            .args(["config", "show", "--format", "json", "--arg"])
            .arg(&arg)
            .args(["--set", "custom_tag=edge1"])
            .env("FORGE_ARCH", "arm64"),
        0,
    );
    let doc = output;
    let settings = &doc["settings"];
    assert_eq!(settings["IMAGE_REPO"]["value"], "ubuntu");
    assert_eq!(
        settings["IMAGE_REPO"]["source"],
        format!("{}:5", arg.display())
    );
    assert_eq!(settings["CUSTOM_TAG"]["value"], "edge1");
    assert_eq!(settings["CUSTOM_TAG"]["source"], "--set");
    assert_eq!(settings["ARCH"]["source"], "env FORGE_ARCH");
    assert_eq!(settings["PE_VERSION"]["source"], "default");
    assert_eq!(settings["BASE_IMAGE"]["value"], Value::Null);
    let first = doc["k8s_versions"][0].as_str().unwrap();
    assert_eq!(
        doc["provider_images"][0],
        format!("ttl.sh/ubuntu:k3s-{first}-v4.9.38-edge1")
    );
}

fn config_show_text_is_a_table_and_errors_exit_1() {
    forge()
        .args(["config", "show", "--arg"])
        .arg(rules_fixture("CFG008", "fail/build.arg"))
        .assert()
        .code(1)
        .stdout(predicate::str::is_match(r"(?m)^ARCH\s+x86_64\s+\S+build\.arg:9$").unwrap())
        .stderr(predicate::str::contains(
            "error[CFG008]: ARCH: ARCH `x86_64` must be amd64 or arm64 (x86_64 is amd64)",
        ));
}

fn rules_lists_the_whole_catalog() {
    let output = json_stdout(forge().args(["rules", "--format", "json"]), 0);
    assert_eq!(output["schema"], "forge.rules/v1");
    assert_eq!(
        output["rules"].as_array().unwrap().len(),
        forge::diagnostic::Rule::ALL.len()
    );
}

fn images_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name)
}

fn images_rewrite_prints_from_and_to_in_input_order() {
    let expected = [
        "docker.io/library/nginx:1.25 -> example.registry.com/hub/nginx:1.25",
        "us-docker.pkg.dev/palette-images/edge/stylus:v4.7.16 -> example.registry.com/palette-images/edge/stylus:v4.7.16",
        "quay.io/tigera/operator:v1.36.5 -> mirror.example.net/tigera/operator:v1.36.5",
        "ghcr.io/org/app:2.0 -> ghcr.io/org/app:2.0",
        "example.io/my-images/example-custom-os:v1.4.5 -> example.io/my-images/example-custom-os:v1.4.5",
    ];
    forge()
        .args(["images", "rewrite", "--user-data"])
        .arg(images_fixture("user-data.yaml"))
        .arg("--from-file")
        .arg(images_fixture("images.txt"))
        .arg("--profile")
        .arg(rules_fixture("PR002", "pass/profile.yaml"))
        .arg("nginx:1.25")
        .assert()
        .code(0)
        .stdout(format!("{}\n", expected.join("\n")));
}

fn images_rewrite_json_names_the_registry_whose_credentials_apply() {
    let output = json_stdout(
        forge()
            .args(["images", "rewrite", "--format", "json", "--user-data"])
            .arg(images_fixture("user-data.yaml"))
            .args(["nginx", "quay.io/tigera/operator:v1"]),
        0,
    );
    assert_eq!(
        output,
        serde_json::json!({"schema": "forge.images-rewrite/v1", "images": [
            {"from": "docker.io/library/nginx:latest", "to": "example.registry.com/hub/nginx:latest", "registry": "example.registry.com"},
            {"from": "quay.io/tigera/operator:v1", "to": "mirror.example.net/tigera/operator:v1", "registry": null}
        ]})
    );
}

fn images_rewrite_reports_bad_references_with_their_position() {
    let list = images_fixture("bad-images.txt");
    forge()
        .args(["images", "rewrite", "--user-data"])
        .arg(images_fixture("user-data.yaml"))
        .arg("--from-file")
        .arg(&list)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}:2:3: error[IMG001]: image `quay.io/Tigera/operator:v1` repository path component `Tigera` must be lowercase",
            list.display()
        )));
}

fn images_rewrite_needs_valid_user_data_and_some_images() {
    forge()
        .args(["images", "rewrite", "--user-data"])
        .arg(rules_fixture("REG007", "fail/user-data.yaml"))
        .arg("nginx")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error[REG007]"));
    forge()
        .args(["images", "rewrite", "--user-data"])
        .arg(images_fixture("user-data.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no images: give IMAGE arguments, --from-file LIST or --profile FILE",
        ));
}

fn forge_iso_masters_with_an_image_and_pushes_with_its_subcommand() {
    forge()
        .args([
            "iso",
            "push",
            "/nonexistent/site.iso",
            "registry.example.com/edge/iso:1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "/nonexistent/site.iso is not a file; build the ISO with `forge build` first",
        ));
    forge()
        .args(["iso", "--user-data", "user-data"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--image <REF>"));
    forge()
        .args(["iso", "--image", "forge.local/installer:1", "--user-data"])
        .arg("/nonexistent/site.yaml")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read user-data file `/nonexistent/site.yaml`",
        ));
}

/// A mastering cache in `dir` with `count` whole entries (keys 1, 2, ...: `key`), each a
/// 1000-byte squashfs and a kernel.
fn cache_with(dir: &Path, count: u16) -> Cache {
    let cache = Cache::open(dir).unwrap();
    for n in 1..=count {
        let staged = cache.staging().unwrap();
        fs::write(staged.path().join("rootfs.squashfs"), [0; 1000]).unwrap();
        fs::write(staged.path().join("kernel"), b"kernel").unwrap();
        let meta = Meta {
            image: format!("forge.local/installer:{n}"),
            image_id: format!("sha256:{n:064x}"),
            rootfs_bytes: 1000,
            efi_loader: Vec::new(),
        };
        match cache.insert(&key(n), staged, &meta).unwrap() {
            Stored::Cached(_) => {}
            Stored::Uncached(_, why) => panic!("{why}"),
        }
    }
    cache
}

fn key(n: u16) -> String {
    format!("{n:064x}")
}

/// `forge cache ARGS --cache-dir DIR`, as a process to start.
fn forge_cache(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.arg("cache").args(args).arg("--cache-dir").arg(dir);
    cmd
}

fn cache_ls_and_prune_name_each_damaged_or_foreign_entry_say_what_is_done_and_follow_no_link() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with(&dir.path().join("cache"), 4);
    let root = cache.dir();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::write(root.join(key(1)).join("meta.json"), b"").unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(root.join(key(2)).join("rootfs.squashfs"))
        .unwrap()
        .set_len(10)
        .unwrap();
    fs::remove_dir_all(root.join(key(3))).unwrap();
    std::os::unix::fs::symlink(&outside, root.join(key(3))).unwrap();
    std::os::unix::fs::symlink(&outside, root.join(key(4)).join("outside")).unwrap();
    // A name too short for a key, holding what a whole entry holds.
    fs::create_dir(root.join("ab")).unwrap();
    for file in ["meta.json", "rootfs.squashfs", "kernel"] {
        fs::copy(root.join(key(4)).join(file), root.join("ab").join(file)).unwrap();
    }
    let at = |name: &str| root.join(name).display().to_string();

    let ls = forge_cache(root.parent().unwrap(), &["ls"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ls.stdout);
    assert_eq!(
        ls.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let rebuilt = "the next build that needs it makes it again, and forge cache prune removes it";
    assert_eq!(
        lines,
        [
            format!("{}     1.2 KiB  forge.local/installer:4", &key(4)[..16]).as_str(),
            &format!("1.2 KiB in {}", root.display()),
            &format!("{} has an empty meta.json: {rebuilt}", at(&key(1))),
            &format!(
                "{} has a rootfs.squashfs of 10 bytes, not the 1000 its meta.json records: {rebuilt}",
                at(&key(2))
            ),
            &format!("{} is a symbolic link, not a directory: {rebuilt}", at(&key(3))),
            &format!(
                "{} is not a cache entry (its name is not a key): forge leaves it alone",
                at("ab")
            ),
        ]
    );
    let json = forge_cache(root.parent().unwrap(), &["ls", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(0));
    support::assert_published_shape(&json.stdout);
    let listed = json_of(&json.stdout);
    let skipped: Vec<(&str, bool)> = listed["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["left_alone"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (key(1).as_str(), false),
            (&key(2), false),
            (&key(3), false),
            ("ab", true)
        ]
    );

    let prune = forge_cache(root.parent().unwrap(), &["prune", "--max-size", "1GB"])
        .output()
        .unwrap();
    assert_eq!(prune.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&prune.stdout),
        format!(
            "removed 3 entries (1.2 KiB, 3 of them unusable), kept 1.2 KiB\n\
             {} is not a cache entry (its name is not a key): left alone\n",
            at("ab")
        )
    );
    let prune = forge_cache(root.parent().unwrap(), &["prune", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(prune.status.code(), Some(0));
    support::assert_published_shape(&prune.stdout);
    assert_eq!(
        json_of(&prune.stdout)["removed"],
        serde_json::json!([key(4)])
    );
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    assert!(
        root.join("ab/rootfs.squashfs").exists(),
        "ab is not forge's"
    );
}

fn an_entry_forge_cannot_open_is_named_and_left_alone_by_ls_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with(&dir.path().join("cache"), 1);
    let entry = cache.dir().join(key(1));
    // Root reads everything: the entry is root's own (0700), read by an unprivileged user,
    // as one made by `sudo forge build` is by its user; otherwise it has no permissions.
    let root = rustix::process::geteuid().is_root();
    let run = |args: &[&str]| {
        let cmd = forge_cache(cache.dir().parent().unwrap(), args);
        let mut cmd = match root {
            true => {
                let mut setpriv = std::process::Command::new("setpriv");
                setpriv
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(cmd.get_program())
                    .args(cmd.get_args());
                setpriv
            }
            false => cmd,
        };
        cmd.output().unwrap()
    };
    use std::os::unix::fs::PermissionsExt as _;
    let mode =
        |path: &Path, mode| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    match root {
        true => {
            mode(dir.path(), 0o755);
            mode(&dir.path().join("cache"), 0o777);
            mode(cache.dir(), 0o777);
            mode(&entry, 0o700);
        }
        false => mode(&entry, 0o000),
    }
    let ls = run(&["ls"]);
    let prune = run(&["prune"]);
    mode(&entry, 0o700);
    let said = format!(
        "{} cannot be opened (Permission denied (os error 13))",
        entry.display()
    );
    assert_eq!(
        ls.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains(&format!("{said}: forge leaves it alone")),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    assert_eq!(
        prune.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&prune.stdout),
        format!("removed 0 entries (0 B), kept 0 B\n{said}: left alone\n")
    );
    assert!(entry.join("rootfs.squashfs").exists());
}

fn prunes_at_once_with_each_other_and_with_ls_all_succeed_and_remove_each_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let count = 300;
    let cache = cache_with(&dir.path().join("cache"), count);
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let args: &[&str] = match i % 3 {
                0 => &["ls", "--format", "json"],
                _ => &["prune", "--format", "json"],
            };
            forge_cache(cache.dir().parent().unwrap(), args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut removed = Vec::new();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = json_of(&out.stdout);
        if let Some(keys) = doc["removed"].as_array() {
            assert_eq!(doc["busy"], serde_json::json!([]), "none is in use");
            removed.extend(keys.iter().map(|k| k.as_str().unwrap().to_string()));
        }
    }
    removed.sort();
    let all: Vec<String> = (1..=count).map(key).collect();
    assert_eq!(removed, all, "each entry removed by one prune");
    let left: Vec<_> = fs::read_dir(cache.dir()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `forge build --help`: its flags under headings, in the order a CanvOS user meets them, and
/// examples that name the earthly targets they replace.
fn build_help_is_grouped_under_headings_with_canvos_examples() {
    let out = forge().args(["build", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let headings: Vec<&str> = help
        .lines()
        .filter(|l| l.ends_with(':') && !l.starts_with(' '))
        .collect();
    assert_eq!(
        headings,
        [
            "Options:",
            "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set):",
            "Inputs and outputs:",
            "ISO mastering:",
            "Registries:",
            "Output:",
            "Build:",
            "Boots (with --verify):",
            "Engines and CI jobs:",
            "Examples, in a CanvOS checkout (its Earthfile, .arg and user-data are read as Earthly reads them):",
        ],
        "{help}"
    );
    assert!(
        help.contains(
            "  forge build --no-iso --push      +build-provider-images, pushed to IMAGE_REGISTRY"
        ),
        "{help}"
    );
}
