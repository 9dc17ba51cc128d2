//! Benchmark: `forge registry sync` of images that share layers, against `skopeo copy` of the
//! same images. Reports bytes uploaded against the unique bytes, and wall times. Real
//! registries on 127.0.0.1 (TLS + htpasswd), as in the tests. Run with `make bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use support::{Layout, Pki, Registry, Skopeo, PASSWORD, USER};

const IMAGES: usize = 4;
const SHARED: usize = 3;
const LAYER: usize = 16 * 1024 * 1024;

fn main() {
    if !support::have(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let source = Registry::start(Some(&pki), true);
    let for_forge = Registry::start(Some(&pki), true);
    let for_skopeo = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(
        Some(&pki.ca_pem),
        &[source.host(), for_forge.host(), for_skopeo.host()],
    );

    let mut layout = Layout::new(&work.path().join("oci"));
    let mut unique: u64 = 0;
    let tags: Vec<String> = (0..IMAGES).map(|i| format!("img{i}")).collect();
    for (i, tag) in tags.iter().enumerate() {
        let mut layers: Vec<serde_json::Value> =
            (0..SHARED).map(|s| layout.layer(s as u64, LAYER)).collect();
        layers.push(layout.layer(100 + i as u64, LAYER / 4));
        layout.image(tag, "amd64", layers);
        unique += (LAYER / 4) as u64;
    }
    unique += (SHARED * LAYER) as u64;
    layout.finish();
    for tag in &tags {
        skopeo.push(
            &layout.dir,
            tag,
            &format!("{}/team/{tag}:v1", source.host()),
            true,
        );
    }
    let total: u64 = (IMAGES * (SHARED * LAYER + LAYER / 4)) as u64;

    // forge: credentials for the source from a Docker config, for the target from user-data.
    let docker = work.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        support::auth_file(&[source.host()]),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let pem: String = pki
        .ca_pem
        .trim()
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    let ud = work.path().join("ud.yaml");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nstylus:\n  externalRegistries:\n    registries:\n      - domain: {}\n        username: {USER}\n        password: \"{PASSWORD}\"\n        certificates:\n          - |\n{pem}    registryMappingRules:\n      \"{}/team\": \"{}/mirror\"\n",
            for_forge.host(),
            source.host(),
            for_forge.host()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = [
        "registry",
        "sync",
        "--from",
        "registry",
        "--format",
        "json",
        "--registry-ca",
    ]
    .map(String::from)
    .to_vec();
    args.push(ca.display().to_string());
    args.push("--user-data".into());
    args.push(ud.display().to_string());
    args.extend(
        tags.iter()
            .map(|t| format!("{}/team/{t}:v1", source.host())),
    );

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(&args)
        .env("DOCKER_CONFIG", &docker)
        .output()
        .unwrap();
    let forge_seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent: u64 = report
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bytes_uploaded"].as_u64().unwrap())
        .sum();
    let mounted: u64 = report
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blobs_mounted"].as_u64().unwrap())
        .sum();

    let started = Instant::now();
    for tag in &tags {
        let src = format!("{}/team/{tag}:v1", source.host());
        let dst = format!("{}/mirror/{tag}:v1", for_skopeo.host());
        skopeo.copy(&src, &dst);
    }
    let skopeo_seconds = started.elapsed().as_secs_f64();

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("registry sync: {IMAGES} images, {SHARED} shared layers of {} MiB + 1 own layer of {} MiB each", LAYER >> 20, LAYER >> 22);
    println!("  layer bytes referenced      {:8.1} MiB", mib(total));
    println!("  unique layer bytes          {:8.1} MiB", mib(unique));
    println!(
        "  forge uploaded              {:8.1} MiB (configs included), {mounted} blobs mounted",
        mib(sent)
    );
    println!("  forge sync wall time        {forge_seconds:8.2} s");
    println!("  skopeo copy wall time       {skopeo_seconds:8.2} s (same images, one copy each)");
    println!(
        "  ratio forge / skopeo        {:8.2}",
        forge_seconds / skopeo_seconds
    );
    let result = serde_json::json!({
        "images": IMAGES, "referenced_bytes": total, "unique_bytes": unique, "forge_uploaded_bytes": sent,
        "forge_blobs_mounted": mounted, "forge_seconds": forge_seconds, "skopeo_seconds": skopeo_seconds,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("registry_sync.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
}
