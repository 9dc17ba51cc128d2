//! Benchmark: `forge build` of the example checkout with 1 and with 4 provider versions (same
//! base, rebuilt from scratch each time: a unique step in the checkout's Dockerfile), and the bytes `--push` sends for 4 versions against
//! the unique layer bytes in the registry (images only; benches/iso.rs measures the ISO).
//! Run with `make bench` (it builds the fixtures).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use support::{Pki, Registry, Skopeo, PASSWORD, USER};

const VERSIONS: [&str; 4] = ["1.30.11", "1.31.7", "1.32.3", "1.33.1"];

/// Build with a fresh base (a unique step in the checkout's Dockerfile), optionally pushing;
/// seconds.
fn build(versions: &[&str], work: &Path, extra: &[String]) -> f64 {
    let dir = work.join(format!("checkout-{}", versions.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let checkout = support::checkout_copy(&dir);
    let dockerfile = checkout.join("Dockerfile");
    let mut steps = std::fs::read_to_string(&dockerfile).unwrap();
    steps.push_str(&format!(
        "RUN echo bench-{:?} > /etc/forge-bench\n",
        Instant::now()
    ));
    std::fs::write(&dockerfile, steps).unwrap();
    let started = Instant::now();
    let mut cmd = support::forge_build_in(&checkout, &["--jobs", "4", "--no-iso"]);
    cmd.arg(format!("--set=K8S_VERSION={}", versions.join(",")))
        .arg("--output")
        .arg(work.join(format!("out-{}", versions.len())))
        .args(extra);
    let out = support::output_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

fn main() {
    if !support::have_docker() || !support::have(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let one = build(&VERSIONS[..1], work.path(), &[]);
    let four = build(&VERSIONS, work.path(), &[]);

    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let push = [
        format!("--set=IMAGE_REGISTRY={}/edge", registry.host()),
        "--push".into(),
        // The example's registryCredentials name a registry the benchmark has not.
        "--no-push-rewritten".into(),
        "--registry-ca".into(),
        ca.display().to_string(),
        "--username".into(),
        USER.into(),
        "--password-stdin".into(),
    ];
    let pushed_seconds = build(&VERSIONS, work.path(), &push);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("out-4/manifest.json")).unwrap(),
    )
    .unwrap();
    let providers: Vec<&serde_json::Value> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "provider")
        .collect();
    let pushed: u64 = providers
        .iter()
        .map(|a| a["pushed_bytes"].as_u64().unwrap())
        .sum();
    let mut unique = BTreeMap::new();
    let mut referenced = 0;
    for artifact in &providers {
        let raw = skopeo
            .raw(artifact["reference"].as_str().unwrap(), true)
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for blob in manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&manifest["config"]])
        {
            let size = blob["size"].as_u64().unwrap();
            referenced += size;
            unique.insert(blob["digest"].as_str().unwrap().to_string(), size);
        }
    }
    let unique: u64 = unique.values().sum();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("forge build, CanvOS-shaped example (fresh base each run, --jobs 4)");
    println!("  1 provider version           {one:8.2} s");
    println!(
        "  4 provider versions          {four:8.2} s   ({:.2}x the time for 4x the images)",
        four / one
    );
    println!("  4 versions with --push       {pushed_seconds:8.2} s");
    println!(
        "  bytes the 4 images reference {:8.1} MiB (compressed, config included)",
        mib(referenced)
    );
    println!("  unique bytes among them      {:8.1} MiB", mib(unique));
    println!("  bytes forge pushed           {:8.1} MiB", mib(pushed));
    let result = serde_json::json!({"one_version_seconds": one, "four_versions_seconds": four, "push_seconds": pushed_seconds, "referenced_bytes": referenced, "unique_bytes": unique, "pushed_bytes": pushed});
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("build.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
}
