//! No password, token or `edgeHostToken` value ever appears in forge's output: for every
//! fixture (the rule fixtures and the adversarial ones in `tests/fixtures/secrets/`), every
//! subcommand that reads it, in text and JSON, stdout and stderr, with `--fix` too.
//!
//! The secrets are found here independently of forge's own redactor, by key name and URL
//! shape, so the test cannot agree with a redactor that misses something.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine as _;
use regex::Regex;

tests! {
    the_fixtures_hold_secrets_to_look_for,
    validate_never_prints_a_secret,
    cross_file_validation_never_prints_a_secret,
    settings_output_never_prints_a_secret,
    fix_never_prints_a_secret,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Secret values written in a file: values of password/token keys (YAML, flow mappings and
/// .arg lines) and URL passwords, plus the base64 decoding of encoded ones.
fn secrets_in(text: &str) -> Vec<String> {
    let key = Regex::new(
        r#"(?i)(password|passwd|token|pro_key)["']?\s*[:=]\s*\[?\s*["']?([^"'\s,}\]#]+)"#,
    )
    .unwrap();
    let url = Regex::new(r"([A-Za-z0-9._-]+):([^@\s/:]+)@").unwrap();
    let mut found: Vec<String> = key.captures_iter(text).map(|c| c[2].to_string()).collect();
    found.extend(url.captures_iter(text).map(|c| c[2].to_string()));
    let decoded: Vec<String> = found
        .iter()
        .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .filter_map(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() >= 6 && s.chars().all(|c| c.is_ascii_graphic()))
        .collect();
    found.extend(decoded);
    found.retain(|s| s.len() >= 6 && s != "true" && s != "false");
    found
}

fn forge() -> Command {
    Command::cargo_bin("forge").unwrap()
}

/// stdout and stderr of forge with these arguments.
fn output_of(args: &[&str], files: &[(&str, &Path)]) -> String {
    let mut cmd = forge();
    cmd.args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 2),
        "forge crashed: {out:?}"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(secrets: &[String], output: &str, context: &str) {
    for secret in secrets {
        assert!(
            !output.contains(secret.as_str()),
            "secret `{secret}` leaked by {context}:\n{output}"
        );
    }
}

fn files_with(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| names.iter().any(|n| p.to_string_lossy().ends_with(n)))
        .collect();
    found.sort();
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn the_fixtures_hold_secrets_to_look_for() {
    let secrets: Vec<String> = walk(&fixtures())
        .iter()
        .flat_map(|p| secrets_in(&fs::read_to_string(p).unwrap()))
        .collect();
    for expected in [
        "Sn0w!fall-77",
        "90817263545",
        "Fl0wSecret2024",
        "FlowTok3nValue99",
        "Pr0xy-Pa55word",
        "Sec0ndProxySecret",
        "Dec0dedSecret44",
        "TokenInAList77",
        "ProviderSecret2025",
        "Fx7pQ2-edge-token-Zr9k",
        "Fl0wSyntaxSecret8",
        "DupKeySecret43",
        "Pr0xy=Eq\"Pass9",
        "Eq=Pr0xySecret",
    ] {
        assert!(
            secrets.iter().any(|s| s == expected),
            "extractor misses {expected}"
        );
    }
}

fn validate_never_prints_a_secret() {
    for file in files_with(&fixtures(), &[".yaml"]) {
        let secrets = secrets_in(&fs::read_to_string(&file).unwrap());
        let flag = if file.ends_with("profile.yaml") {
            "--profile"
        } else if file.ends_with("forge.yaml") {
            "--config"
        } else {
            "--user-data"
        };
        for format in ["text", "json"] {
            let output = output_of(&["validate", "--format", format], &[(flag, &file)]);
            assert_no_secret(
                &secrets,
                &output,
                &format!("validate --format {format} {flag} {}", file.display()),
            );
        }
    }
}

fn cross_file_validation_never_prints_a_secret() {
    for dir in walk(&fixtures().join("rules"))
        .iter()
        .filter_map(|p| p.parent())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (ud, profile) = (dir.join("user-data.yaml"), dir.join("profile.yaml"));
        if !(ud.exists() && profile.exists()) {
            continue;
        }
        let secrets: Vec<String> = [&ud, &profile]
            .iter()
            .flat_map(|p| secrets_in(&fs::read_to_string(p).unwrap()))
            .collect();
        for format in ["text", "json"] {
            let output = output_of(
                &["validate", "--format", format],
                &[
                    ("--user-data", &ud),
                    ("--profile", &profile),
                    ("--content-dir", dir),
                ],
            );
            assert_no_secret(&secrets, &output, &format!("validate {}", dir.display()));
        }
    }
}

fn settings_output_never_prints_a_secret() {
    for file in files_with(&fixtures(), &[".arg"]) {
        let secrets = secrets_in(&fs::read_to_string(&file).unwrap());
        for args in [
            &["validate", "--format", "text"][..],
            &["validate", "--format", "json"],
            &["config", "show"],
            &["config", "show", "--format", "json"],
        ] {
            let output = output_of(args, &[("--arg", &file)]);
            assert_no_secret(
                &secrets,
                &output,
                &format!("{args:?} --arg {}", file.display()),
            );
        }
    }
    let output = output_of(
        &[
            "config",
            "show",
            "--set",
            "HTTPS_PROXY=http://u:SetFlagSecret9@proxy:1",
        ],
        &[],
    );
    assert_no_secret(
        &["SetFlagSecret9".to_string()],
        &output,
        "config show --set",
    );
    let empty = tempfile::NamedTempFile::new().unwrap();
    for (var, value) in [
        ("FORGE_HTTP_PROXY", "http://u:EnvSecret77@proxy:1"),
        ("FORGE_IMAGE_REGISTRY", "https://u:EnvSecret77@reg.local"),
    ] {
        for args in [
            &["config", "show"][..],
            &["validate", "--format", "json"],
            &["validate"],
        ] {
            let out = forge()
                .args(args)
                .arg("--arg")
                .arg(empty.path())
                .env(var, value)
                .output()
                .unwrap();
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_no_secret(
                &["EnvSecret77".to_string()],
                &output,
                &format!("{args:?} with {var}"),
            );
        }
    }
}

fn fix_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    for file in files_with(
        &fixtures(),
        &[
            "user-data.yaml",
            "encoded-password.yaml",
            "numeric-password.yaml",
        ],
    ) {
        let text = fs::read_to_string(&file).unwrap();
        let copy = dir.path().join("ud.yaml");
        fs::write(&copy, &text).unwrap();
        let output = output_of(&["validate", "--fix"], &[("--user-data", &copy)]);
        assert_no_secret(
            &secrets_in(&text),
            &output,
            &format!("validate --fix {}", file.display()),
        );
    }
}
