//! Benchmark: many sites and many versions, on the offline example (images cached, ISO tools
//! in the builder container, as `forge build` runs by default): the ISO stage on a cold
//! mastering cache, the same build again with only the user-data changed (goal: at most 10 %
//! of the cold stage), ten site ISOs from a cold cache in one run (goal: at most twice the
//! cold stage), and `forge plan` of a matrix as long as CanvOS's k3s list (58 versions).
//! Run with `make bench`; results in target/bench/sites.json.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const EPOCH: &str = "1700000000";

/// Run `cmd`, which must succeed; its wall time in seconds.
fn timed(cmd: &mut Command) -> f64 {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", support::text(&out));
    started.elapsed().as_secs_f64()
}

/// `forge build` of the example with these `--user-data` into `out`, its mastering cache in
/// `cache`.
fn build(user_data: &[&Path], out: &Path, cache: &Path) -> Command {
    let mut cmd = support::forge_command();
    cmd.current_dir(support::example())
        .args(["build", "--arg", ".arg", "--progress", "plain"])
        .args(user_data.iter().flat_map(|u| [Path::new("--user-data"), u]))
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

/// The example's user-data for store `n`, in `dir`.
fn site(dir: &Path, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(support::example().join("user-data"))
        .unwrap()
        .replace("edge-store-042", &format!("edge-store-{n:03}"));
    let path = dir.join(format!("store-{n:03}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn main() {
    if !support::ready() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = |name: &str| work.path().join(name);
    let sites = dir("sites");
    std::fs::create_dir(&sites).unwrap();
    let ten: Vec<_> = (1..=10).map(|n| site(&sites, n)).collect();
    let other = site(work.path(), 99);
    let example = support::example().join("user-data");
    // Images and the ISO tools' image first: every timed run finds them built.
    timed(&mut build(&[&example], &dir("warm"), &dir("warm-cache")));

    let cold = timed(&mut build(&[&ten[0]], &dir("cold"), &dir("cache")));
    let changed = timed(&mut build(&[&other], &dir("changed"), &dir("cache")));
    let ten_sites = timed(&mut build(&[&sites], &dir("ten"), &dir("ten-cache")));
    let made = std::fs::read_dir(dir("ten"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".iso")
        })
        .count();
    assert_eq!(made, ten.len());

    // forge plan of the whole k3s matrix (58 versions).
    let checkout = support::checkout_copy(work.path());
    std::fs::copy(
        support::root().join("tests/fixtures/matrix/k8s_version.json"),
        checkout.join("k8s_version.json"),
    )
    .unwrap();
    let plan_out = support::forge_command()
        .current_dir(&checkout)
        .args(["plan", "--arg", ".arg", "--user-data", "user-data"])
        .args(["--set", "K8S_VERSION=", "--format", "github-actions"])
        .output()
        .unwrap();
    assert!(plan_out.status.success(), "{}", support::text(&plan_out));
    let started = Instant::now();
    let out = support::forge_command()
        .current_dir(&checkout)
        .args(["plan", "--arg", ".arg", "--user-data", "user-data"])
        .args(["--set", "K8S_VERSION=", "--format", "json"])
        .output()
        .unwrap();
    let plan_seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", support::text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = plan["jobs"].as_array().unwrap().len();

    println!("Sites and versions, offline example (ISO tools in the builder container)");
    println!("  ISO stage, cold mastering cache        {cold:8.2} s");
    println!(
        "  user-data changed, warm cache          {changed:8.2} s   {:5.1} % of cold (goal <= 10 %)",
        100.0 * changed / cold
    );
    println!(
        "  10 site ISOs, cold cache, one run      {ten_sites:8.2} s   {:5.2} x cold (goal <= 2)",
        ten_sites / cold
    );
    println!("  forge plan, 58-version k3s matrix      {plan_seconds:8.2} s   {jobs} jobs");
    let result = serde_json::json!({
        "cold_iso_stage_seconds": cold,
        "user_data_change_seconds": changed,
        "user_data_change_ratio": changed / cold,
        "ten_sites_seconds": ten_sites,
        "ten_sites_ratio": ten_sites / cold,
        "plan_seconds": plan_seconds,
        "plan_jobs": jobs,
    });
    let out_dir = support::root().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join("sites.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
}
