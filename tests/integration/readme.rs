//! The README tells the truth: it documents every rule and every setting, and the outputs it
//! quotes are what forge prints today.

use std::path::Path;

use assert_cmd::Command;
use forge::config::SETTINGS;
use forge::diagnostic::Rule;
use forge::registry::client::{DEADLINE, RETRIES};

tests! {
    every_rule_code_is_documented,
    every_setting_is_documented,
    quoted_outputs_match_what_forge_prints,
    registry_retries_and_deadline_are_what_the_code_does,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The lines of the code block that follows `$ COMMAND` in the README.
fn quoted_output(readme: &str, command: &str) -> Vec<String> {
    let start = readme
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("README does not show `{command}`"));
    let block = &readme[start..];
    let end = block.find("```").unwrap();
    block[..end].lines().skip(1).map(str::to_string).collect()
}

fn run(command: &str) -> String {
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let out = Command::cargo_bin("forge")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn every_rule_code_is_documented() {
    let readme = readme();
    for rule in Rule::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            rule.code(),
            rule.severity().as_str(),
            rule.summary()
        );
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}

fn every_setting_is_documented() {
    let readme = readme();
    for def in SETTINGS {
        let row = format!("| `{}` | `{}` |", def.name, def.name.to_ascii_lowercase());
        assert!(
            readme.contains(&row),
            "README lacks the setting {}",
            def.name
        );
        assert!(
            readme.contains(def.doc),
            "README has an outdated description of {}",
            def.name
        );
    }
}

fn quoted_outputs_match_what_forge_prints() {
    let readme = readme();
    for command in [
        "forge validate --user-data examples/broken-user-data.yaml",
        "forge validate --format json --user-data tests/fixtures/rules/SCHEMA001/fail/user-data.yaml",
        "forge images rewrite --user-data examples/user-data.yaml --profile examples/profile.yaml",
        "forge images rewrite --format json --user-data tests/fixtures/images/user-data.yaml nginx quay.io/tigera/operator:v1",
    ] {
        let quoted = quoted_output(&readme, command).join("\n");
        assert_eq!(quoted.trim_end(), run(command).trim_end(), "README output of `{command}` is stale");
    }
    let command = "forge config show --config examples/forge.yaml";
    let actual = run(command);
    for line in quoted_output(&readme, command)
        .iter()
        .filter(|l| *l != "...")
    {
        assert!(
            actual.lines().any(|a| a == line),
            "README line `{line}` is not in the output of `{command}`:\n{actual}"
        );
    }
}

fn registry_retries_and_deadline_are_what_the_code_does() {
    let readme = readme();
    let retries = format!("retried up to {RETRIES} times");
    assert!(readme.contains(&retries), "README lacks `{retries}`");
    let deadline = format!(
        "Each request ends within {} s, retries included",
        DEADLINE.as_secs()
    );
    assert!(readme.contains(&deadline), "README lacks `{deadline}`");
    let message = format!("timed out after {} s", DEADLINE.as_secs());
    assert!(readme.contains(&message), "README lacks `{message}`");
}
