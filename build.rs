//! Records the commit and its date forge is built from, for `forge --version` and the man
//! pages: `FORGE_COMMIT` and `FORGE_COMMIT_DATE` from the environment when set (a source
//! tarball's packager knows them), else from git when the source is a checkout, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    for (name, args) in [
        ("FORGE_COMMIT", &["rev-parse", "--short=12", "HEAD"][..]),
        (
            "FORGE_COMMIT_DATE",
            &["log", "-1", "--format=%cs", "HEAD"][..],
        ),
    ] {
        println!("cargo:rerun-if-env-changed={name}");
        let value = std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| git(args))
            .unwrap_or_else(|| "unknown".to_string());
        println!("cargo:rustc-env={name}={value}");
    }
    // A new commit or checkout changes HEAD or the branch it points to.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        let files = ["HEAD", "packed-refs"]
            .map(String::from)
            .into_iter()
            .chain(branch);
        for file in files.map(|f| format!("{dir}/{f}")) {
            if std::path::Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
}
