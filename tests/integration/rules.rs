//! Every validation rule has fixtures under `tests/fixtures/rules/<CODE>/`:
//! - `fail*/` cases, whose `expect` file lists exactly the findings validation must report,
//!   one `file:line:column CODE key.path` per line;
//! - `pass*/` cases, which must validate with no finding at all.
//!
//! A case directory holds any of `user-data.yaml`, `profile.yaml`, `forge.yaml`, `build.arg`,
//! `set.txt` (`--set` flags, one `KEY=VALUE` per line), plus files those name, and is the
//! content directory (`content-*/*.zst`) of its case.
//! Settings are resolved without the process environment.
//!
//! Each failing case also keeps `report.txt`, the text report exactly as `forge validate`
//! prints it (paths relative to the case): what the user reads is part of the specification.
//! `FORGE_BLESS=1 cargo test --test integration rules::` rewrites them after a deliberate change; review the
//! diff.

use std::fs;
use std::path::{Path, PathBuf};

use forge::config::Inputs;
use forge::diagnostic::Rule;
use forge::validate::{self, Request};

tests! {
    every_rule_has_a_failing_and_a_passing_fixture,
    failing_fixtures_report_exactly_what_they_expect,
    passing_fixtures_are_clean,
    failing_fixtures_print_their_report,
    severities_follow_the_catalog,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules")
}

fn request(case: &Path) -> Request {
    let existing = |name: &str| Some(case.join(name)).filter(|p| p.exists());
    let text = |path: PathBuf| {
        let text = fs::read_to_string(&path).unwrap();
        (path, text)
    };
    Request {
        user_data: existing("user-data.yaml"),
        profile: existing("profile.yaml"),
        content_dir: Some(case.to_path_buf()),
        settings: Inputs {
            earthfile: existing("Earthfile").map(text),
            config: existing("forge.yaml").map(text),
            arg: existing("build.arg").map(text),
            // `set.txt`: the case's `--set KEY=VALUE` flags, one per line.
            sets: existing("set.txt")
                .map(|p| fs::read_to_string(p).unwrap())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            checkout: Some(case.to_path_buf()),
            ..Inputs::default()
        },
        ..Request::default()
    }
}

/// The findings of a case as `file:line:column CODE path`, file names relative to the case.
fn findings(case: &Path) -> Vec<String> {
    let outcome = validate::run(&request(case)).expect("fixture inputs are readable");
    outcome
        .report
        .diagnostics
        .iter()
        .map(|d| {
            let file = d
                .file
                .strip_prefix(case)
                .unwrap_or(&d.file)
                .display()
                .to_string();
            format!(
                "{file}:{}:{} {} {}",
                d.pos.line,
                d.pos.column,
                d.rule.code(),
                d.path
            )
        })
        .collect()
}

fn cases(rule: Rule, prefix: &str) -> Vec<PathBuf> {
    let dir = fixtures().join(rule.code());
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|_| {
            panic!(
                "rule {} has no fixture directory {}",
                rule.code(),
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    cases.sort();
    cases
}

fn every_rule_has_a_failing_and_a_passing_fixture() {
    for rule in Rule::ALL {
        assert!(
            !cases(*rule, "fail").is_empty(),
            "{} has no failing fixture",
            rule.code()
        );
        assert!(
            !cases(*rule, "pass").is_empty(),
            "{} has no passing fixture",
            rule.code()
        );
    }
}

fn failing_fixtures_report_exactly_what_they_expect() {
    let mut mismatches = Vec::new();
    for rule in Rule::ALL {
        for case in cases(*rule, "fail") {
            let expected: Vec<String> = fs::read_to_string(case.join("expect"))
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim_end().to_string())
                .collect();
            let found: Vec<String> = findings(&case)
                .into_iter()
                .map(|f| f.trim_end().to_string())
                .collect();
            assert!(
                expected.iter().any(|e| e.contains(rule.code())),
                "{} expects no {}",
                case.display(),
                rule.code()
            );
            if found != expected {
                mismatches.push(format!(
                    "{}\n  expected {expected:?}\n  found    {found:?}",
                    case.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

fn passing_fixtures_are_clean() {
    let mut dirty = Vec::new();
    for rule in Rule::ALL {
        for case in cases(*rule, "pass") {
            let found = findings(&case);
            if !found.is_empty() {
                dirty.push(format!("{}: {found:?}", case.display()));
            }
        }
    }
    assert!(dirty.is_empty(), "\n{}", dirty.join("\n"));
}

fn failing_fixtures_print_their_report() {
    let bless = std::env::var_os("FORGE_BLESS").is_some();
    let mut stale = Vec::new();
    for rule in Rule::ALL {
        for case in cases(*rule, "fail") {
            let outcome = validate::run(&request(&case)).unwrap();
            let text = outcome
                .redactor
                .redact(&outcome.report.render_text())
                .replace(&format!("{}/", case.display()), "");
            let snapshot = case.join("report.txt");
            if bless {
                fs::write(&snapshot, &text).unwrap();
            } else if fs::read_to_string(&snapshot).ok().as_deref() != Some(text.as_str()) {
                stale.push(format!("{}:\n{text}", snapshot.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "reports differ from their snapshot (FORGE_BLESS=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

fn severities_follow_the_catalog() {
    for rule in Rule::ALL {
        for case in cases(*rule, "fail") {
            let outcome = validate::run(&request(&case)).unwrap();
            for d in &outcome.report.diagnostics {
                assert_eq!(d.severity, d.rule.severity(), "{}", case.display());
            }
        }
    }
}
