//! Injection: a setting's value can never become a build step, a boot command or a terminal
//! escape. A line break, a quote or a control character in any setting, from any layer, stops
//! `forge build` before it contacts the Docker Engine.

use std::path::Path;
use std::process::Command;

use forge::config::{Kind, SETTINGS};

tests! {
    every_setting_refuses_line_breaks_quotes_and_control_characters,
    kernel_arguments_refuse_what_grub_or_a_shell_would_interpret,
}

/// What an attacker would put in a value.
const PAYLOADS: &[(&str, &str)] = &[
    ("line break", "x\nRUN touch /pwned"),
    ("quote", "x\" ; touch /pwned"),
    ("escape sequence", "x\u{1b}]0;pwned\u{7}"),
];

/// `forge build` of the example with one more variable; asserts it was refused before
/// making anything, when `refused`.
fn build_with(var: (&str, &str), refused: bool) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(root)
        .args(["build", "--arg", "examples/canvos/.arg"])
        .args(["--user-data", "examples/canvos/user-data", "--output"])
        .arg(output.path().join("build"))
        // No engine answers here: a build that got past validation would fail differently.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env(var.0, var.1)
        .output()
        .unwrap();
    if refused {
        let made = output.path().join("build").exists();
        assert!(!made, "{} made the output directory", var.0);
    }
    out
}

fn every_setting_refuses_line_breaks_quotes_and_control_characters() {
    for def in SETTINGS {
        for (what, payload) in PAYLOADS {
            if def.kind == Kind::OptionalFile && *what == "quote" {
                // A file name may hold a quote; it never reaches a template (the file is copied
                // under a fixed name), and an absent optional file is skipped (CFG018).
                continue;
            }
            // FORGE_<NAME> reaches the same checks as --set, and accepts secret-bearing settings.
            let var = format!("FORGE_{}", def.name);
            let out = build_with((&var, payload), true);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{} with a {what}: {stderr}",
                def.name
            );
            assert!(
                stderr.contains("nothing was built"),
                "{}: {stderr}",
                def.name
            );
            assert!(
                stderr.contains(def.name),
                "{} is not named: {stderr}",
                def.name
            );
            assert!(
                !stderr.contains('\u{1b}'),
                "{}: a raw escape reached stderr",
                def.name
            );
        }
    }
}

fn kernel_arguments_refuse_what_grub_or_a_shell_would_interpret() {
    let kernel_args = SETTINGS
        .iter()
        .find(|d| d.kind == Kind::KernelArgs)
        .unwrap();
    for payload in [
        "quiet\" menuentry x {",
        "a=$root",
        "a;b",
        "a\\b",
        "a'b",
        "a`b`",
    ] {
        let var = format!("FORGE_{}", kernel_args.name);
        let out = build_with((&var, payload), true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{payload}: {stderr}");
        assert!(stderr.contains("CFG012"), "{payload}: {stderr}");
    }
    let out = build_with(
        ("FORGE_ISO_KERNEL_ARGS", "console=ttyS0,115200 quiet"),
        false,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ISO_KERNEL_ARGS"),
        "plain arguments are accepted: {stderr}"
    );
}
