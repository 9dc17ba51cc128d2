//! Many versions across CI runners: `forge plan` splits the build of the CanvOS-shaped example
//! into jobs (base, one per provider image, installer, ISO); run one by one on an engine
//! emptied of the build's images between them, as fresh runners would, against a TLS +
//! htpasswd registry, they give the provider images and the ISO one `forge build` gives, the
//! base image built once; the emitted GitHub Actions and GitLab CI files pass the schemas
//! their vendors publish (check-jsonschema).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;
use support::{checkout_copy, docker, forge_command, ready, text, Pki, Registry};

static ENGINE: Mutex<()> = Mutex::new(());

const EPOCH: &str = "1700000000";

/// A copy of the example checkout whose images are this test's own (a marker in the build
/// context of the user's Dockerfile changes every input hash), with its whole matrix
/// (K8S_VERSION empty: both versions of its k8s_version.json) pushed to `registry`.
fn matrix_checkout(dir: &Path, registry: &str) -> (PathBuf, Vec<String>) {
    let checkout = checkout_copy(dir);
    std::fs::write(
        checkout.join("forge-matrix-test"),
        format!("{:?}\n", std::time::SystemTime::now()),
    )
    .unwrap();
    let sets = vec![
        "--set".to_string(),
        "K8S_VERSION=".to_string(),
        "--set".to_string(),
        format!("IMAGE_REGISTRY={registry}/edge"),
    ];
    (checkout, sets)
}

/// `forge` (the binary under test) in `checkout`, with the registry's credentials.
fn forge_in(checkout: &Path, docker_config: &Path, words: &[String]) -> Output {
    forge_command()
        .current_dir(checkout)
        .args(words)
        .env("DOCKER_CONFIG", docker_config)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

/// Remove every tag of the build's images (the plan's, the pushed providers, the cache's):
/// the engine of a fresh runner.
fn forget(images: &[String], registry: &str) {
    let listed =
        String::from_utf8(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout)
            .unwrap();
    for image in listed.lines() {
        if images.iter().any(|i| i == image) || image.starts_with(&format!("{registry}/")) {
            docker(&["rmi", image]);
        }
    }
}

/// The provider images' digests and the ISO's sha256 a run's manifest records.
fn results(checkout: &Path) -> (Vec<(String, String)>, Option<String>) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(checkout.join("build/manifest.json")).unwrap())
            .unwrap();
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let providers = artifacts
        .iter()
        .filter(|a| a["kind"] == "provider")
        .map(|a| {
            (
                a["reference"].as_str().unwrap().to_string(),
                a["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let iso = artifacts
        .iter()
        .find(|a| a["kind"] == "iso")
        .map(|a| a["sha256"].as_str().unwrap().to_string());
    (providers, iso)
}

#[test]
fn the_plans_jobs_run_one_by_one_give_what_one_build_gives_with_the_base_built_once() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !support::have(&["docker-registry", "htpasswd", "xorriso"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let host = registry.host();
    let certs_d = PathBuf::from("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &pki.ca_pem).unwrap();
    let docker_config = work.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        support::auth_file(std::slice::from_ref(&host)),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (checkout, sets) = matrix_checkout(work.path(), &host);
    let ca_flag = ["--registry-ca", ca.to_str().unwrap(), "--progress", "plain"].map(String::from);

    let mut plan_words: Vec<String> = ["plan", "--arg", ".arg", "--user-data", "user-data"]
        .map(String::from)
        .to_vec();
    plan_words.extend(["--format", "json"].map(String::from));
    plan_words.extend(sets.iter().cloned());
    let planned = forge_in(&checkout, &docker_config, &plan_words);
    assert!(planned.status.success(), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let jobs = plan["jobs"].as_array().unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "base",
            "provider-1-32-3",
            "provider-1-33-1",
            "installer",
            "iso"
        ]
    );
    let images: Vec<String> = jobs
        .iter()
        .flat_map(|j| j["steps"].as_array().unwrap().clone())
        .map(|s| s["image"].as_str().unwrap().to_string())
        .collect();

    let mut said = Vec::new();
    let mut providers = Vec::new();
    let mut iso = None;
    for job in jobs {
        forget(&images, &host);
        let command: Vec<String> = job["command"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1) // `forge`: the binary under test
            .map(|w| w.as_str().unwrap().to_string())
            .chain(ca_flag.clone())
            .collect();
        let out = forge_in(&checkout, &docker_config, &command);
        assert!(out.status.success(), "job {}: {}", job["id"], text(&out));
        let (mut pushed, mastered) = results(&checkout);
        providers.append(&mut pushed);
        iso = iso.or(mastered);
        said.push((job["id"].as_str().unwrap().to_string(), text(&out)));
    }
    let built_base: Vec<&str> = said
        .iter()
        .filter(|(_, out)| out.contains("] base: built "))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(built_base, ["base"], "the base is built by its job alone");
    for (id, out) in &said[1..4] {
        assert!(out.contains("] base: pulled "), "{id}: {out}");
    }
    assert!(said[4].1.contains("] installer: pulled "), "{}", said[4].1);
    assert_eq!(providers.len(), 2, "{providers:?}");

    // One build of everything, on a fresh engine, from the cache the jobs filled.
    forget(&images, &host);
    let mut whole: Vec<String> = ["build", "--arg", ".arg", "--user-data", "user-data"]
        .map(String::from)
        .to_vec();
    whole.extend(sets.iter().cloned());
    whole.extend(["--push", "--cache-from", "registry"].map(String::from));
    whole.extend(ca_flag);
    let out = forge_in(&checkout, &docker_config, &whole);
    forget(&images, &host);
    let _ = std::fs::remove_dir_all(&certs_d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("] base: built "), "{}", text(&out));
    let (mut once, once_iso) = results(&checkout);
    providers.sort();
    once.sort();
    assert_eq!(once, providers, "provider digests");
    assert_eq!(once_iso, iso, "ISO sha256");
}

/// `forge plan --format FORMAT` of the example.
fn plan(format: &str) -> Output {
    forge_command()
        .current_dir(support::example())
        .args(["plan", "--arg", ".arg", "--user-data", "user-data"])
        .args(["--set", "K8S_VERSION=", "--format", format])
        .output()
        .unwrap()
}

fn check_schema(schema: &str, file: &Path) -> Output {
    Command::new("check-jsonschema")
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn the_emitted_github_actions_and_gitlab_ci_files_pass_their_published_schemas() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !support::have(&["check-jsonschema"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for (format, schema, file) in [
        ("github-actions", "vendor.github-workflows", "forge.yml"),
        ("gitlab-ci", "vendor.gitlab-ci", ".gitlab-ci.yml"),
    ] {
        let out = plan(format);
        assert!(out.status.success(), "{}", text(&out));
        let path = work.path().join(file);
        std::fs::write(&path, &out.stdout).unwrap();
        let checked = check_schema(schema, &path);
        assert!(
            checked.status.success(),
            "{format}: {}\n{}",
            text(&checked),
            String::from_utf8_lossy(&out.stdout)
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        for job in [
            "base:",
            "provider-1-32-3:",
            "provider-1-33-1:",
            "installer:",
            "iso:",
        ] {
            assert!(
                yaml.contains(&format!("\n  {job}\n")) || yaml.contains(&format!("\n{job}\n")),
                "{job} in\n{yaml}"
            );
        }
        assert!(
            yaml.contains(
                "--only provider:1.33.1 --cache-from registry --cache-to registry --push"
            ),
            "{yaml}"
        );
    }
    // A file that breaks the schema is refused: the check is real.
    let broken = work.path().join("broken.yml");
    std::fs::write(&broken, "jobs:\n  base:\n    runs-on: 3\n").unwrap();
    assert!(!check_schema("vendor.github-workflows", &broken)
        .status
        .success());
}

/// A second Docker Engine on this machine: its own data root, exec root, socket and network
/// bridge (`--bridge none` would make it delete the first engine's docker0); stopped, its
/// bridge and files removed, when dropped.
struct SecondEngine {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl SecondEngine {
    fn start() -> SecondEngine {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        for args in [
            &["link", "add", BRIDGE, "type", "bridge"][..],
            &["addr", "add", "172.30.99.1/24", "dev", BRIDGE],
            &["link", "set", BRIDGE, "up"],
        ] {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        }
        let child = Command::new("dockerd")
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["-H", &format!("unix://{}", path("docker.sock"))])
            .args(["--bridge", BRIDGE, "--iptables=false", "--ip-masq=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let engine = SecondEngine { child, dir };
        for _ in 0..60 {
            if engine.docker(&["info"]).status.success() {
                return engine;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        panic!(
            "the second dockerd did not start: {}",
            std::fs::read_to_string(engine.dir.path().join("dockerd.log")).unwrap()
        );
    }

    fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.url()])
            .args(args)
            .output()
            .unwrap()
    }

    /// The tags of the engine's images.
    fn images(&self) -> Vec<String> {
        String::from_utf8(
            self.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
                .stdout,
        )
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    }
}

/// The second engine's network bridge.
const BRIDGE: &str = "forge-test-br";

#[test]
fn two_engines_build_a_four_version_matrix_between_them_then_push_it() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !support::have(&["docker-registry", "htpasswd", "skopeo", "dockerd", "ip"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let host = registry.host();
    // The second engine has none of the fixtures: both pull them from a mirror.
    let skopeo = support::Skopeo::new(Some(&pki.ca_pem), std::slice::from_ref(&host));
    let mirror = format!("{host}/palette-images");
    for image in support::FIXTURES
        .iter()
        .filter(|i| i.starts_with(support::FIXTURE_REPO) && !i.contains(":24.04"))
    {
        skopeo.push_from_engine(image, &image.replacen(support::FIXTURE_REPO, &mirror, 1));
    }
    let certs_d = PathBuf::from("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &pki.ca_pem).unwrap();
    let docker_config = work.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        support::auth_file(std::slice::from_ref(&host)),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (checkout, mut words) = matrix_checkout(work.path(), &host);
    let versions = ["1.30.11", "1.31.7", "1.32.3", "1.33.1"];
    std::fs::write(
        checkout.join("k8s_version.json"),
        serde_json::json!({ "k3s": versions }).to_string(),
    )
    .unwrap();
    let second = SecondEngine::start();
    let first = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    words.splice(
        0..0,
        ["build", "--arg", ".arg", "--user-data", "user-data"].map(String::from),
    );
    words.extend([
        format!("--set=SPECTRO_PUB_REPO={mirror}"),
        format!("--set=SPECTRO_THIRD_PARTY_IMAGE={mirror}/third-party/spectro-third-party:4.8"),
        "--engine".into(),
        first,
        "--engine".into(),
        second.url(),
        "--cache-to".into(),
        "registry".into(),
        "--cache-from".into(),
        "registry".into(),
        "--push".into(),
        "--no-iso".into(),
        "--registry-ca".into(),
        ca.display().to_string(),
        "--progress".into(),
        "plain".into(),
    ]);
    let out = forge_in(&checkout, &docker_config, &words);
    let on_second = second.images();
    let listed =
        String::from_utf8(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout)
            .unwrap();
    for image in listed
        .lines()
        .filter(|i| i.starts_with(&format!("{host}/")))
    {
        docker(&["rmi", image]);
    }
    let _ = std::fs::remove_dir_all(&certs_d);
    assert!(out.status.success(), "{}", text(&out));
    let (pushed, _) = results(&checkout);
    assert_eq!(pushed.len(), 4, "{pushed:?}");
    for (reference, digest) in &pushed {
        assert!(digest.starts_with("sha256:"), "{reference} was not pushed");
    }
    // Two provider images on each engine; the second engine's base came from the cache.
    let providers_on_second: Vec<&String> =
        on_second.iter().filter(|i| i.contains(":k3s-")).collect();
    assert_eq!(providers_on_second.len(), 2, "{on_second:?}");
    assert!(
        text(&out).contains("] base: pulled "),
        "the second engine pulls the base: {}",
        text(&out)
    );
    assert_eq!(
        text(&out).matches("] base: built ").count(),
        1,
        "{}",
        text(&out)
    );

    // An engine that does not answer stops the build, named.
    let missing = "unix:///nonexistent/forge-second.sock";
    let mut refused = words.clone();
    let at = refused.iter().position(|w| *w == second.url()).unwrap();
    refused[at] = missing.to_string();
    let out = forge_in(&checkout, &docker_config, &refused);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot reach the Docker Engine at {missing}")),
        "{}",
        text(&out)
    );
}
