//! Every user-data and profile file of the project (fixtures and examples), validated in one
//! run, with the errors, warnings and codes of each pinned in `tests/fixtures/corpus.txt`: a
//! change to any rule shows up as a diff of that file. Each file is validated on its own.
//! `FORGE_BLESS=1 cargo test --test integration corpus::` rewrites the file after a deliberate change.

use std::fs;
use std::path::{Path, PathBuf};

use forge::validate::{self, Request};

tests! {
    every_input_file_keeps_its_findings,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML inputs: files named `*profile*.yaml` are profiles, every other `.yaml` except
/// build settings (`forge.yaml`) is user-data.
fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["tests/fixtures", "examples"]
        .iter()
        .flat_map(|dir| walkdir::WalkDir::new(root().join(dir)))
        .map(|e| e.unwrap().into_path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "forge.yaml")
        })
        .collect();
    files.sort();
    files
}

fn summary(file: &Path) -> String {
    let is_profile = file
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("profile"));
    let request = if is_profile {
        Request {
            profile: Some(file.to_path_buf()),
            ..Request::default()
        }
    } else {
        Request {
            user_data: Some(file.to_path_buf()),
            ..Request::default()
        }
    };
    let report = validate::run(&request).unwrap().report;
    let mut codes: Vec<&str> = report.diagnostics.iter().map(|d| d.rule.code()).collect();
    codes.sort();
    codes.dedup();
    let relative = file.strip_prefix(root()).unwrap().display().to_string();
    let line = format!(
        "{:>2} {:>2}  {relative}  {}",
        report.errors(),
        report.warnings(),
        codes.join(" ")
    );
    line.trim_end().to_string()
}

fn every_input_file_keeps_its_findings() {
    let files = corpus();
    assert!(files.len() > 60, "the corpus lost files: {}", files.len());
    let mut text = String::from("# errors, warnings, file, codes (tests/corpus.rs)\n");
    for file in &files {
        text.push_str(&summary(file));
        text.push('\n');
    }
    let pinned = root().join("tests/fixtures/corpus.txt");
    if std::env::var_os("FORGE_BLESS").is_some() {
        fs::write(&pinned, &text).unwrap();
        return;
    }
    let expected = fs::read_to_string(&pinned).unwrap_or_default();
    if expected != text {
        let diff: Vec<String> = diff_lines(&expected, &text);
        panic!(
            "findings changed (FORGE_BLESS=1 rewrites tests/fixtures/corpus.txt):\n{}",
            diff.join("\n")
        );
    }
}

/// The lines only in `old` (`-`) and only in `new` (`+`).
fn diff_lines(old: &str, new: &str) -> Vec<String> {
    let gone = old
        .lines()
        .filter(|l| !new.lines().any(|n| n == *l))
        .map(|l| format!("- {l}"));
    let added = new
        .lines()
        .filter(|l| !old.lines().any(|o| o == *l))
        .map(|l| format!("+ {l}"));
    gone.chain(added).collect()
}
