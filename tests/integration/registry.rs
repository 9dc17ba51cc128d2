//! `forge registry check` and `forge registry sync` against real registries: Debian's
//! `docker-registry` with htpasswd auth and TLS from a CA generated here, a plain-HTTP one for
//! `insecure`, images put there with `skopeo` and verified with `skopeo` too, a fault-injecting
//! proxy, and the Docker Engine as a source.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use serde_json::Value;
use std::time::{Duration, Instant};

use forge::registry::client::DEADLINE;
use support::{
    indent_pem, mapping, text, Answer, Auth, FaultProxy, Layout, Pki, Received, Registry,
    ScriptedRegistry, SilentRegistry, Skopeo, TokenServer, PASSWORD, USER,
};

tests! {
    check_reports_present_and_missing_images => [Commands(COMPONENTS)],
    a_wrong_password_is_a_clear_401_without_the_secret => [Commands(COMPONENTS)],
    an_untrusted_certificate_fails_clearly_and_the_ca_fixes_it => [Commands(COMPONENTS)],
    insecure_allows_a_plain_http_registry_and_only_it => [Commands(COMPONENTS)],
    sync_from_a_registry_copies_verifies_shares_layers_and_is_idempotent => [
        Commands(COMPONENTS),
    ],
    sync_copies_a_whole_index_or_one_platform_of_it => [Commands(COMPONENTS)],
    sync_completes_through_resets_and_503s => [Commands(COMPONENTS)],
    sync_from_the_docker_engine_pushes_the_local_image => [Commands(COMPONENTS), Engine],
    an_unreachable_docker_engine_is_explained,
    bearer_token_registries_work_through_the_challenge_flow => [Commands(COMPONENTS)],
    credentials_come_from_docker_credential_helpers => [Commands(COMPONENTS)],
    a_registry_that_never_answers_fails_within_the_deadline,
    a_dead_proxy_is_named_not_the_registry,
    credentials_go_to_the_registry_and_to_no_other_host_it_names,
    digests_from_a_registry_are_data_never_paths,
    registry_answers_are_read_within_their_bounds,
    docker_hub_is_reached_at_registry_1_with_its_index_credentials,
    a_hanging_credential_helper_is_stopped_and_named,
    blobs_the_target_has_are_skipped_over_http2_whatever_their_size => [Commands(COMPONENTS)],
}

/// The components the tests of real registries need.
const COMPONENTS: &[&str] = &["docker-registry", "skopeo", "htpasswd"];

/// A test workspace: temporary files and an empty Docker config (no host credentials leak in).
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        Work { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Docker-config credentials for source registries.
    fn docker_login(&self, hosts: &[String]) {
        std::fs::write(self.path("docker/config.json"), support::auth_file(hosts)).unwrap();
    }

    /// A `docker-credential-forgetest` helper on PATH answering for `host` (the server it is
    /// asked about goes to `helper.log`), and a Docker config that names it (under
    /// `credHelpers` or as `credsStore`).
    fn credential_helper(&self, host: &str, store: bool) {
        let log = self.path("helper.log");
        self.credential_helper_script(
            &format!("read -r host\necho \"$host\" >> '{}'\nif [ \"$host\" = \"{host}\" ]; then printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$host\"; else echo 'credentials not found in native keychain'; exit 1; fi", log.display()),
            if store { None } else { Some(host) },
        );
    }

    /// `docker-credential-forgetest` running `script` for `get`, named by the Docker config
    /// for `host` (`credHelpers`), or for every host (`credsStore`) when `host` is `None`.
    fn credential_helper_script(&self, script: &str, host: Option<&str>) {
        let bin = self.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let helper = bin.join("docker-credential-forgetest");
        std::fs::write(
            &helper,
            format!("#!/bin/sh\n[ \"$1\" = get ] || exit 1\n{script}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = match host {
            None => serde_json::json!({"credsStore": "forgetest"}),
            Some(host) => serde_json::json!({"credHelpers": {host: "forgetest"}}),
        };
        std::fs::write(self.path("docker/config.json"), config.to_string()).unwrap();
    }

    fn forge(&self, args: &[&str]) -> Output {
        self.forge_with_stdin(args, "")
    }

    fn forge_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.forge_with(args, stdin, &[])
    }

    /// Run forge with `stdin` and the environment variables `env` (proxies are unset unless
    /// given here).
    fn forge_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::cargo_bin("forge").unwrap();
        cmd.write_stdin(stdin.to_string());
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        cmd.env("DOCKER_CONFIG", self.path("docker"))
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .envs(env.iter().copied());
        let out = cmd.args(args).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(PASSWORD),
            "the registry password leaked:\n{all}"
        );
        out
    }
}

/// The exit code is `code`, and the output (stdout and stderr) contains each of `needles`.
fn assert_output(out: &Output, code: i32, needles: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "missing `{needle}` in\n{all}");
    }
}

/// The images of a `forge registry check|sync --format json` document.
fn json(out: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    let schema = doc["schema"].as_str().unwrap_or_default();
    assert!(schema.starts_with("forge.registry-"), "{doc}");
    doc["images"].clone()
}

/// User-data with one external registry.
fn single_registry(domain: &str, password: &str, ca: Option<&str>, insecure: bool) -> String {
    let mut text = format!("#cloud-config\nstylus:\n  registryCredentials:\n    domain: {domain}\n    username: {USER}\n    password: \"{password}\"\n");
    if let Some(ca) = ca {
        text.push_str("    certificates:\n      - |\n");
        text.push_str(&indent_pem(ca, 8));
    }
    if insecure {
        text.push_str("    insecure: true\n");
    }
    text
}

/// A layout with one single-platform image per tag; images share `shared` layers.
fn layout(dir: &Path, tags: &[&str], shared: usize, size: usize) -> Layout {
    let mut layout = Layout::new(dir);
    for (i, tag) in tags.iter().enumerate() {
        let mut layers: Vec<Value> = (0..shared).map(|s| layout.layer(s as u64, size)).collect();
        layers.push(layout.layer(1000 + i as u64, size / 4));
        layout.image(tag, "amd64", layers);
    }
    layout.finish();
    layout
}

fn check_reports_present_and_missing_images() {
    let work = Work::new();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let image = layout(&work.path("oci"), &["v1"], 1, 4096);
    let target = format!("{}/mirror/docker.io/library/app:v1", registry.host());
    skopeo.push(&image.dir, "v1", &target, true);
    let ud = work.write(
        "ud.yaml",
        &single_registry(
            &format!("{}/mirror", registry.host()),
            PASSWORD,
            Some(&pki.ca_pem),
            false,
        ),
    );

    let out = work.forge(&[
        "registry",
        "check",
        "--format",
        "json",
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
        "app:v2",
    ]);
    assert_output(&out, 1, &[]);
    let report = json(&out);
    assert_eq!(report[0]["image"], target);
    assert_eq!(report[0]["status"], "present");
    assert_eq!(
        report[0]["digest"].as_str(),
        skopeo.digest(&target, true).as_deref()
    );
    assert_eq!(report[1]["status"], "missing");
    let missing = format!(
        "missing: {}/mirror/docker.io/library/app:v2",
        registry.host()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&missing),
        "{}",
        text(&out)
    );

    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(&out, 0, &[&format!("present       {target}  sha256:")]);
}

fn a_wrong_password_is_a_clear_401_without_the_secret() {
    let work = Work::new();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let wrong = "Wr0ng!Passw0rd";
    let ud = work.write(
        "ud.yaml",
        &single_registry(&registry.host(), wrong, Some(&pki.ca_pem), false),
    );
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
    ]);
    let expected = format!("{}: authentication failed (401 Unauthorized, realm \"forge-test\") as `{USER}`; check the username and password", registry.host());
    assert_output(&out, 1, &[&expected]);
    assert!(!text(&out).contains(wrong), "{}", text(&out));
}

fn an_untrusted_certificate_fails_clearly_and_the_ca_fixes_it() {
    let work = Work::new();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let image = layout(&work.path("oci"), &["v1"], 1, 1024);
    skopeo.push(
        &image.dir,
        "v1",
        &format!("{}/docker.io/library/app:v1", registry.host()),
        true,
    );
    let ud = work.write(
        "ud.yaml",
        &single_registry(&registry.host(), PASSWORD, None, false),
    );

    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(
        &out,
        1,
        &["TLS verification failed (the certificate is signed by an unknown authority)"],
    );

    let ca = work.write("ca.pem", &pki.ca_pem);
    let out = work.forge(&[
        "registry",
        "check",
        "--registry-ca",
        ca.to_str().unwrap(),
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(&out, 0, &[]);
}

fn insecure_allows_a_plain_http_registry_and_only_it() {
    let work = Work::new();
    let registry = Registry::start(None, false);
    let skopeo = Skopeo::new(None, &[]);
    let image = layout(&work.path("oci"), &["v1"], 1, 1024);
    skopeo.push(
        &image.dir,
        "v1",
        &format!("{}/docker.io/library/app:v1", registry.host()),
        false,
    );

    let insecure = work.write(
        "insecure.yaml",
        &format!(
            "#cloud-config\nstylus:\n  registryCredentials:\n    domain: {}\n    insecure: true\n",
            registry.host()
        ),
    );
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        insecure.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(&out, 0, &[]);

    let strict = work.write(
        "strict.yaml",
        &format!(
            "#cloud-config\nstylus:\n  registryCredentials:\n    domain: {}\n",
            registry.host()
        ),
    );
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        strict.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(
        &out,
        1,
        &["the server does not speak TLS (an HTTP-only registry needs insecure: true)"],
    );
}

fn sync_from_a_registry_copies_verifies_shares_layers_and_is_idempotent() {
    let work = Work::new();
    let pki = Pki::generate();
    let (source, target) = (
        Registry::start(Some(&pki), true),
        Registry::start(Some(&pki), true),
    );
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[source.host(), target.host()]);
    let images = layout(&work.path("oci"), &["a", "b"], 2, 512 * 1024);
    for tag in ["a", "b"] {
        skopeo.push(
            &images.dir,
            tag,
            &format!("{}/team/{tag}:v1", source.host()),
            true,
        );
    }
    work.docker_login(&[source.host()]);
    let ca = work.write("ca.pem", &pki.ca_pem);
    let from = format!("{}/team", source.host());
    let to = format!("{}/mirror", target.host());
    let ud = work.write(
        "ud.yaml",
        &mapping(&target.host(), Some(&pki.ca_pem), false, &[(&from, &to)]),
    );
    let refs = [format!("{from}/a:v1"), format!("{from}/b:v1")];
    let args = |format: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "registry",
            "sync",
            "--from",
            "registry",
            "--format",
            format,
            "--registry-ca",
            ca.to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        a.extend(refs.iter().cloned());
        a
    };
    let run =
        |format: &str| work.forge(&args(format).iter().map(String::as_str).collect::<Vec<_>>());

    let out = run("json");
    assert_output(&out, 0, &[]);
    let report = json(&out);
    for (i, tag) in ["a", "b"].iter().enumerate() {
        let copied = format!("{to}/{tag}:v1");
        assert_eq!(report[i]["to"], copied);
        assert_eq!(
            skopeo.digest(&copied, true),
            skopeo.digest(&format!("{from}/{tag}:v1"), true)
        );
        assert_eq!(
            report[i]["digest"].as_str(),
            skopeo.digest(&copied, true).as_deref()
        );
    }
    // Image a brings config + 3 layers; b shares 2 layers with a, mounted across repositories.
    assert_eq!(
        (
            report[0]["blobs_uploaded"].as_u64(),
            report[0]["blobs_mounted"].as_u64()
        ),
        (Some(4), Some(0))
    );
    assert_eq!(
        (
            report[1]["blobs_uploaded"].as_u64(),
            report[1]["blobs_mounted"].as_u64()
        ),
        (Some(2), Some(2))
    );

    let again = run("json");
    assert_output(&again, 0, &[]);
    for item in json(&again).as_array().unwrap() {
        assert_eq!(item["up_to_date"], true);
        assert_eq!(item["blobs_uploaded"], 0);
    }
}

fn sync_copies_a_whole_index_or_one_platform_of_it() {
    let work = Work::new();
    let pki = Pki::generate();
    let (source, target) = (
        Registry::start(Some(&pki), true),
        Registry::start(Some(&pki), true),
    );
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[source.host(), target.host()]);
    let mut multi = Layout::new(&work.path("oci"));
    let amd = vec![multi.layer(1, 2048)];
    let arm = vec![multi.layer(2, 2048)];
    multi.image("x-amd64", "amd64", amd);
    multi.image("x-arm64", "arm64", arm);
    multi.index("x", &["x-amd64", "x-arm64"]);
    multi.finish();
    let from = format!("{}/multi", source.host());
    skopeo.push(&multi.dir, "x", &format!("{from}/x:1"), true);
    work.docker_login(&[source.host()]);
    let ca = work.write("ca.pem", &pki.ca_pem);
    let sync = |ud: &Path, platform: Option<&str>| {
        let mut args = vec![
            "registry",
            "sync",
            "--from",
            "registry",
            "--registry-ca",
            ca.to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
        ];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        let image = format!("{from}/x:1");
        args.push(&image);
        work.forge(&args)
    };

    let all = work.write(
        "all.yaml",
        &mapping(
            &target.host(),
            Some(&pki.ca_pem),
            false,
            &[(&from, &format!("{}/all", target.host()))],
        ),
    );
    let out = sync(&all, None);
    assert_output(&out, 0, &[]);
    assert_eq!(
        skopeo.digest(&format!("{}/all/x:1", target.host()), true),
        skopeo.digest(&format!("{from}/x:1"), true)
    );

    let one = work.write(
        "one.yaml",
        &mapping(
            &target.host(),
            Some(&pki.ca_pem),
            false,
            &[(&from, &format!("{}/arm", target.host()))],
        ),
    );
    let out = sync(&one, Some("linux/arm64"));
    assert_output(&out, 0, &[]);
    let arm_digest = skopeo.field(&format!("{from}/x:1"), true, "/manifests/1/digest");
    assert_eq!(
        skopeo.field(
            &format!("{from}/x:1"),
            true,
            "/manifests/1/platform/architecture"
        ),
        "arm64"
    );
    assert_eq!(
        skopeo.digest(&format!("{}/arm/x:1", target.host()), true),
        Some(arm_digest)
    );

    let out = sync(&one, Some("linux/s390x"));
    assert_output(
        &out,
        2,
        &["has no manifest for platform linux/s390x (it has linux/amd64, linux/arm64)"],
    );
}

fn sync_completes_through_resets_and_503s() {
    let work = Work::new();
    let pki = Pki::generate();
    let source = Registry::start(Some(&pki), true);
    let backend = Registry::start(None, false);
    let proxy = FaultProxy::start(backend.port, 0.2);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[source.host()]);
    let tags = ["p", "q", "r"];
    let images = layout(&work.path("oci"), &tags, 2, 1536 * 1024);
    for tag in tags {
        skopeo.push(
            &images.dir,
            tag,
            &format!("{}/team/{tag}:v1", source.host()),
            true,
        );
    }
    work.docker_login(&[source.host()]);
    let ca = work.write("ca.pem", &pki.ca_pem);
    let from = format!("{}/team", source.host());
    let flaky = format!("127.0.0.1:{}", proxy.port);
    let ud = work.write(
        "ud.yaml",
        &mapping(&flaky, None, true, &[(&from, &format!("{flaky}/mirror"))]),
    );
    let mut args = vec![
        "registry".to_string(),
        "sync".into(),
        "--from".into(),
        "registry".into(),
        "--registry-ca".into(),
        ca.display().to_string(),
        "--user-data".into(),
        ud.display().to_string(),
    ];
    args.extend(tags.iter().map(|t| format!("{from}/{t}:v1")));
    let out = work.forge(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_output(&out, 0, &[]);

    let injected = proxy.faults.injected();
    assert!(injected >= 5, "the proxy injected only {injected} faults");
    let verify = Skopeo::new(None, &[]);
    for tag in tags {
        let copied = verify.digest(&format!("{}/mirror/{tag}:v1", backend.host()), false);
        assert_eq!(
            copied,
            skopeo.digest(&format!("{from}/{tag}:v1"), true),
            "{tag}"
        );
    }
}

fn sync_from_the_docker_engine_pushes_the_local_image() {
    let work = Work::new();
    let pki = Pki::generate();
    let target = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[target.host()]);
    let rootfs = work.path("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/forge-test"),
        format!(
            "synced from the engine {:?}\n",
            std::time::SystemTime::now()
        ),
    )
    .unwrap();
    let tarball = work.path("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let name = "forge-test/sync-app:v1";
    let imported = std::process::Command::new("docker")
        .args(["import", tarball.to_str().unwrap(), name])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let id = String::from_utf8(
        std::process::Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Id}}", name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();

    let ud = work.write(
        "ud.yaml",
        &single_registry(
            &format!("{}/mirror", target.host()),
            PASSWORD,
            Some(&pki.ca_pem),
            false,
        ),
    );
    let out = work.forge(&[
        "registry",
        "sync",
        "--from",
        "docker",
        "--user-data",
        ud.to_str().unwrap(),
        name,
    ]);
    assert_output(&out, 0, &[]);
    let copied = format!("{}/mirror/docker.io/{name}", target.host());
    assert_eq!(skopeo.field(&copied, true, "/config/digest"), id.trim());

    let again = work.forge(&[
        "registry",
        "sync",
        "--from",
        "docker",
        "--user-data",
        ud.to_str().unwrap(),
        name,
    ]);
    assert_output(&again, 0, &[&format!("up to date {copied}")]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", name])
        .output();
}

fn an_unreachable_docker_engine_is_explained() {
    let work = Work::new();
    let ud = work.write(
        "ud.yaml",
        "#cloud-config\nstylus:\n  registryCredentials:\n    domain: 127.0.0.1:9/mirror\n",
    );
    let mut cmd = Command::cargo_bin("forge").unwrap();
    let out = cmd
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args([
            "registry",
            "sync",
            "--from",
            "docker",
            "--user-data",
            ud.to_str().unwrap(),
            "app:v1",
        ])
        .output()
        .unwrap();
    assert_output(&out, 2, &["cannot reach the Docker Engine at unix:///nonexistent/docker.sock (no engine is listening); start it"]);
}

fn bearer_token_registries_work_through_the_challenge_flow() {
    let work = Work::new();
    let pki = Pki::generate();
    let tokens = TokenServer::start();
    let registry = Registry::start_with(Some(&pki), Auth::Token(&tokens));
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let images = layout(&work.path("oci"), &["a", "b"], 1, 64 * 1024);
    let from = format!("{}/team", registry.host());
    for tag in ["a", "b"] {
        skopeo.push(&images.dir, tag, &format!("{from}/{tag}:v1"), true);
    }
    let before = tokens.issued.load(std::sync::atomic::Ordering::Relaxed);
    let ud = work.write(
        "ud.yaml",
        &mapping(
            &registry.host(),
            Some(&pki.ca_pem),
            false,
            &[(&from, &format!("{}/mirror", registry.host()))],
        ),
    );
    let refs = [format!("{from}/a:v1"), format!("{from}/b:v1")];
    let sync = work.forge(&[
        "registry",
        "sync",
        "--from",
        "registry",
        "--format",
        "json",
        "--user-data",
        ud.to_str().unwrap(),
        &refs[0],
        &refs[1],
    ]);
    assert_output(&sync, 0, &[]);
    let report = json(&sync);
    // Same registry: every blob is mounted from the source repository, which takes a token
    // scoped to two repositories; nothing is uploaded.
    for image in report.as_array().unwrap() {
        assert_eq!(
            (
                image["blobs_mounted"].as_u64(),
                image["blobs_uploaded"].as_u64()
            ),
            (Some(3), Some(0)),
            "{image}"
        );
    }
    let check = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        &refs[0],
        &refs[1],
    ]);
    assert_output(&check, 0, &["present"]);
    assert!(
        tokens.issued.load(std::sync::atomic::Ordering::Relaxed) > before,
        "forge fetched no token"
    );

    let wrong = work.write(
        "wrong.yaml",
        &mapping(
            &registry.host(),
            Some(&pki.ca_pem),
            false,
            &[(&from, &format!("{}/mirror", registry.host()))],
        )
        .replace(PASSWORD, "Not!TheRightOne"),
    );
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        wrong.to_str().unwrap(),
        &refs[0],
    ]);
    assert_output(
        &out,
        1,
        &["authentication failed (401 Unauthorized, realm \"http://127.0.0.1:"],
    );
}

fn credentials_come_from_docker_credential_helpers() {
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let work = Work::new();
    let image = layout(&work.path("oci"), &["v1"], 1, 1024);
    skopeo.push(
        &image.dir,
        "v1",
        &format!("{}/docker.io/library/app:v1", registry.host()),
        true,
    );
    let ca = work.write("ca.pem", &pki.ca_pem);
    // The user-data names the registry without credentials: they come from the helper.
    let ud = work.write(
        "ud.yaml",
        &format!(
            "#cloud-config\nstylus:\n  registryCredentials:\n    domain: {}\n",
            registry.host()
        ),
    );
    for store in [false, true] {
        work.credential_helper(&registry.host(), store);
        let out = work.forge(&[
            "registry",
            "check",
            "--registry-ca",
            ca.to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
            "app:v1",
        ]);
        assert_output(&out, 0, &["present"]);
    }
    std::fs::write(work.path("docker/config.json"), "{}").unwrap();
    let out = work.forge(&[
        "registry",
        "check",
        "--registry-ca",
        ca.to_str().unwrap(),
        "--user-data",
        ud.to_str().unwrap(),
        "app:v1",
    ]);
    assert_output(
        &out,
        1,
        &["authentication failed (401 Unauthorized, realm \"forge-test\") (no credentials given)"],
    );
}

/// Six images on a registry that accepts connections and never answers: `forge registry check`
/// probes it once, gives up after the documented deadline (retries included), says meanwhile
/// that it is waiting, and names the registry and the cause for every image.
fn a_registry_that_never_answers_fails_within_the_deadline() {
    let work = Work::new();
    let silent = SilentRegistry::start();
    let ud = work.write(
        "ud.yaml",
        &single_registry(&silent.host(), PASSWORD, None, false),
    );
    let images = ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"];
    let mut args = vec!["registry", "check", "--user-data", ud.to_str().unwrap()];
    args.extend(images);
    let started = Instant::now();
    let out = work.forge(&args);
    let elapsed = started.elapsed();
    eprintln!(
        "silent registry: {:.1} s, {} connections",
        elapsed.as_secs_f64(),
        silent.accepted.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        elapsed < DEADLINE + Duration::from_secs(5),
        "took {elapsed:?}:\n{}",
        text(&out)
    );
    let timed_out = format!(
        "{}: timed out after {} s",
        silent.host(),
        DEADLINE.as_secs()
    );
    let waiting = format!("waiting for {} (10 s)…", silent.host());
    assert_output(
        &out,
        1,
        &[&timed_out, &waiting, "6 of 6 images are not available"],
    );
    assert_eq!(
        text(&out).matches(&timed_out).count(),
        images.len(),
        "{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches(&waiting)
            .count(),
        1,
        "one probe, one notice:\n{}",
        text(&out)
    );
}

/// Through a proxy that is not there, the error is the proxy's (its password masked), not the
/// registry's.
fn a_dead_proxy_is_named_not_the_registry() {
    let work = Work::new();
    let closed = support::free_port();
    let proxy = format!("http://bob:Pr0xy!Secret@127.0.0.1:{closed}");
    let ud = work.write(
        "ud.yaml",
        &single_registry("registry.example.com", PASSWORD, None, false),
    );
    let out = work.forge_with(
        &[
            "registry",
            "check",
            "--user-data",
            ud.to_str().unwrap(),
            "app:v1",
        ],
        "",
        &[("HTTPS_PROXY", &proxy)],
    );
    let named = format!(
        "registry.example.com: cannot reach the proxy http://bob:****@127.0.0.1:{closed} (connection refused)"
    );
    assert_output(&out, 1, &[&named]);
    assert!(!text(&out).contains("Pr0xy!Secret"), "{}", text(&out));
}

/// A registry's contents, held by the tests' own registries: manifests by repository and
/// reference (tag or digest), blobs by digest.
#[derive(Default)]
struct Store {
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    /// By repository and digest.
    blobs: HashMap<(String, String), Vec<u8>>,
    uploads: u64,
}

type Shared = Arc<Mutex<Store>>;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

impl Store {
    /// An image of one 2 MiB layer at `repository:tag`: its config and layer blobs and its
    /// manifest, the layer's descriptor digest written as `layer_digest` (the real one when
    /// `None`). Returns the layer.
    fn image(&mut self, repository: &str, tag: &str, layer_digest: Option<&str>) -> Vec<u8> {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let layer = vec![7u8; 2 << 20];
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.map_or_else(|| sha256(&layer), str::to_string), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        self.blobs
            .insert((repository.into(), sha256(&config)), config);
        self.blobs
            .insert((repository.into(), sha256(&layer)), layer.clone());
        self.put_manifest(repository, tag, manifest);
        layer
    }

    fn put_manifest(&mut self, repository: &str, reference: &str, bytes: Vec<u8>) {
        let entry = (OCI_MANIFEST.to_string(), bytes.clone());
        self.manifests
            .insert((repository.into(), sha256(&bytes)), entry.clone());
        self.manifests
            .insert((repository.into(), reference.into()), entry);
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The distribution API over `store`, as far as pushing and pulling an image goes: ping,
/// manifests, blobs, monolithic uploads whose sessions live at `uploads`
/// (`{repository}/{n}`, the session's repository and number, follow it), a refused mount
/// whose session is at `mount_session`, blob downloads redirected to `blob_redirect`
/// (`{repository}/{digest}` follow it) when given. `/upload/REPOSITORY/N` and
/// `/blobs/REPOSITORY/DIGEST` are served too: the storage another host may front.
struct Api {
    store: Shared,
    uploads: String,
    mount_session: String,
    blob_redirect: Option<String>,
}

impl Api {
    /// The API with its uploads and blobs on its own host.
    fn at_home(store: Shared) -> Api {
        Api {
            store,
            uploads: "/upload/".into(),
            mount_session: "/upload/mount/0".into(),
            blob_redirect: None,
        }
    }

    fn answer(&self, r: &Received) -> Answer {
        let mut store = self.store.lock().unwrap();
        let path = r.path().to_string();
        if path == "/v2/" {
            return Answer::new(200);
        }
        if let Some((repository, _)) = path
            .strip_prefix("/upload/")
            .and_then(|s| s.rsplit_once('/'))
        {
            return match r.method.as_str() {
                "PUT" => {
                    let digest = r.query("digest").unwrap_or_default();
                    if sha256(&r.body) != digest {
                        return Answer::new(400).body("digest mismatch");
                    }
                    store
                        .blobs
                        .insert((repository.into(), digest), r.body.clone());
                    Answer::new(201)
                }
                _ => Answer::new(204),
            };
        }
        if let Some((repository, digest)) = path
            .strip_prefix("/blobs/")
            .and_then(|s| s.rsplit_once('/'))
        {
            return match store.blobs.get(&(repository.into(), digest.into())) {
                Some(blob) => Answer::new(200).body(blob.clone()),
                None => Answer::new(404),
            };
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Answer::new(404);
        };
        if let Some(repository) = rest.strip_suffix("/blobs/uploads/") {
            store.uploads += 1;
            let location = if r.query("mount").is_some() {
                self.mount_session.clone()
            } else {
                format!("{}{repository}/{}", self.uploads, store.uploads)
            };
            return Answer::new(202).header("Location", &location);
        }
        if let Some((repository, digest)) = rest.split_once("/blobs/") {
            return match (
                store.blobs.get(&(repository.into(), digest.into())),
                &self.blob_redirect,
            ) {
                (None, _) => Answer::new(404),
                (Some(_), Some(to)) if r.method == "GET" => {
                    Answer::new(307).header("Location", &format!("{to}{repository}/{digest}"))
                }
                (Some(blob), _) => Answer::new(200)
                    .header("Content-Length", &blob.len().to_string())
                    .body(blob.clone()),
            };
        }
        if let Some((repository, reference)) = rest.split_once("/manifests/") {
            if r.method == "PUT" {
                store.put_manifest(repository, reference, r.body.clone());
                return Answer::new(201).header("Docker-Content-Digest", &sha256(&r.body));
            }
            return match store.manifests.get(&(repository.into(), reference.into())) {
                Some((media_type, bytes)) => Answer::new(200)
                    .header("Content-Type", media_type)
                    .header("Docker-Content-Digest", &sha256(bytes))
                    .header("Content-Length", &bytes.len().to_string())
                    .body(bytes.clone()),
                None => Answer::new(404),
            };
        }
        Answer::new(404)
    }
}

/// User-data mirroring `host/team` to `host/mirror`, the registry declared insecure (plain
/// HTTP) with [`USER`]'s credentials.
fn mirror(host: &str) -> String {
    mapping(
        host,
        None,
        true,
        &[(&format!("{host}/team"), &format!("{host}/mirror"))],
    )
}

/// Basic credentials of [`USER`] and [`PASSWORD`], as a header value.
fn basic_header() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

/// `forge registry sync --from registry` of `images`, rewritten by `user_data`, in `work`.
fn sync(work: &Work, user_data: &str, images: &[String]) -> Output {
    let ud = work.write("ud.yaml", user_data);
    let mut args = vec![
        "registry".to_string(),
        "sync".into(),
        "--from".into(),
        "registry".into(),
        "--user-data".into(),
        ud.display().to_string(),
    ];
    args.extend(images.iter().cloned());
    work.forge(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A registry that asks for basic credentials sends uploads and blob downloads to another
/// host (a storage front end, as registries backed by S3 do) and names a relative
/// `//host:port/...` location for a refused mount: the credentials reach the registry and
/// nothing else, and the copy completes (the 2 MiB layer is at the target already).
fn credentials_go_to_the_registry_and_to_no_other_host_it_names() {
    let work = Work::new();
    let store: Shared = Arc::default();
    let elsewhere = {
        let api = Api {
            store: store.clone(),
            uploads: String::new(),
            mount_session: String::new(),
            blob_redirect: None,
        };
        ScriptedRegistry::start(move |r| api.answer(r))
    };
    let other = elsewhere.host();
    let registry = {
        let api = Api {
            store: store.clone(),
            uploads: format!("http://{other}/upload/"),
            mount_session: format!("//{other}/upload/mount/0"),
            blob_redirect: Some(format!("http://{other}/blobs/")),
        };
        ScriptedRegistry::start(move |r| {
            if r.header("authorization") != Some(basic_header().as_str()) {
                return Answer::new(401).header("WWW-Authenticate", "Basic realm=\"scripted\"");
            }
            api.answer(r)
        })
    };
    let host = registry.host();
    let layer = store.lock().unwrap().image("team/app", "v1", None);
    store
        .lock()
        .unwrap()
        .blobs
        .insert(("mirror/app".into(), sha256(&layer)), layer);
    let ud = mirror(&host);
    let out = sync(&work, &ud, &[format!("{host}/team/app:v1")]);
    assert_output(&out, 0, &[&format!("{host}/mirror/app:v1")]);
    let copied = store.lock().unwrap();
    assert_eq!(
        copied.manifests.get(&("mirror/app".into(), "v1".into())),
        copied.manifests.get(&("team/app".into(), "v1".into())),
    );
    drop(copied);
    let at_registry = registry.received();
    assert!(
        at_registry
            .iter()
            .any(|r| r.header("authorization") == Some(basic_header().as_str())),
        "the registry got its credentials: {at_registry:#?}"
    );
    let at_other = elsewhere.received();
    let methods: Vec<&str> = at_other.iter().map(|r| r.method.as_str()).collect();
    for used in ["GET", "PUT", "DELETE"] {
        assert!(
            methods.contains(&used),
            "{used} reached the other host: {methods:?}"
        );
    }
    for r in &at_other {
        assert_eq!(
            r.header("authorization"),
            None,
            "{} {} got credentials",
            r.method,
            r.target
        );
    }
}

/// A source registry is untrusted: a descriptor whose "digest" is a path, or a header that
/// names one, is a protocol error naming the registry and the descriptor, and no file is
/// touched.
fn digests_from_a_registry_are_data_never_paths() {
    let work = Work::new();
    let victim = work.write("victim", "precious\n");
    let store: Shared = Arc::default();
    let api = Api::at_home(store.clone());
    let registry = ScriptedRegistry::start(move |r| {
        if r.method == "HEAD" && r.path().ends_with("/manifests/header") {
            return Answer::new(200).header("Docker-Content-Digest", "../../../etc/shadow");
        }
        api.answer(r)
    });
    let host = registry.host();
    for (tag, digest) in [
        ("path", victim.display().to_string()),
        ("dots", "sha256:../../../../tmp/forge-owned".to_string()),
        ("upper", format!("sha256:{}", "A".repeat(64))),
    ] {
        store.lock().unwrap().image("team/app", tag, Some(&digest));
        let ud = mirror(&host);
        let out = sync(&work, &ud, &[format!("{host}/team/app:{tag}")]);
        let said = format!(
            "{host}: the manifest of {host}/team/app:{tag}: layers[0]: `{digest}` is not a digest"
        );
        assert_output(&out, 2, &[&said]);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!Path::new("/tmp/forge-owned").exists());
    let uploads: Vec<_> = registry
        .received()
        .into_iter()
        .filter(|r| r.method == "PUT" || r.method == "POST")
        .collect();
    assert!(uploads.is_empty(), "nothing was copied: {uploads:#?}");

    let ud = mapping(&host, None, true, &[("unrelated.example.com", &host)]);
    let ud = work.write("check.yaml", &ud);
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        &format!("{host}/team/app:header"),
    ]);
    assert_output(
        &out,
        1,
        &["the Docker-Content-Digest header: `../../../etc/shadow` is not a digest"],
    );
}

/// What a registry sends is read through a bound per kind, within the deadline: a 5 MiB
/// manifest, a manifest that trickles, a blob longer than its descriptor, a token answer
/// without end. Each stops the copy (exit 2) fast, in bounded memory, naming the registry and
/// the limit.
fn registry_answers_are_read_within_their_bounds() {
    let store: Shared = Arc::default();
    let api = Api::at_home(store.clone());
    let token_service =
        ScriptedRegistry::start(|_| Answer::new(200).generated(1 << 30).without_length());
    let realm = format!("http://{}/token", token_service.host());
    let registry = ScriptedRegistry::start(move |r| {
        let path = r.path();
        if path.contains("/bearer/") && r.header("authorization").is_none() {
            return Answer::new(401).header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"scripted\""),
            );
        }
        if path.ends_with("/manifests/huge") {
            return Answer::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .generated(5 << 20)
                .without_length();
        }
        if path.ends_with("/manifests/slow") {
            return Answer::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(vec![b' '; 100])
                .trickle(Duration::from_secs(5));
        }
        if path.contains("/blobs/sha256:") && path.contains("/long/") && r.method == "GET" {
            return Answer::new(200).generated(1 << 30).without_length();
        }
        api.answer(r)
    });
    let host = registry.host();
    store.lock().unwrap().image("team/long", "v1", None);
    let work = Work::new();
    let ud = mirror(&host);
    let ud = work.write("ud.yaml", &ud);
    let cases = [
        ("huge", "the answer to /v2/team/huge/manifests/huge is larger than 4 MiB, the most forge reads of a manifest".to_string(), 10),
        ("slow", format!("{host}: timed out after 10 s"), 13),
        ("long", "bytes its descriptor gives".to_string(), 10),
        ("bearer", "the answer to /token is larger than 1 MiB, the most forge reads of a registry's answer".to_string(), 10),
    ];
    for (name, said, seconds) in cases {
        let image = match name {
            "long" => format!("{host}/team/long:v1"),
            other => format!("{host}/team/{other}:{other}"),
        };
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_forge"));
        cmd.env("DOCKER_CONFIG", work.path("docker"))
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .args([
                "registry",
                "sync",
                "--from",
                "registry",
                "--registry-timeout",
                "10",
            ])
            .args(["--user-data", ud.to_str().unwrap(), &image]);
        let run = support::measured(&mut cmd, Duration::from_secs(60));
        eprintln!(
            "{name:7} exit {:?} {:>6} ms {:>7} KiB",
            run.code,
            run.elapsed.as_millis(),
            run.peak_rss_bytes >> 10
        );
        let all = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(run.code, Some(2), "{name}: {all}");
        assert!(all.contains(&said), "{name}: missing `{said}` in\n{all}");
        assert!(
            run.elapsed < Duration::from_secs(seconds),
            "{name} took {:?}",
            run.elapsed
        );
        assert!(
            run.peak_rss_bytes < 128 << 20,
            "{name}: peak RSS {} MiB",
            run.peak_rss_bytes >> 20
        );
    }
}

/// Docker Hub as the Docker CLI reaches it: a `docker.io` reference is fetched from
/// `registry-1.docker.io` (seen by a proxy of the test's own as the CONNECT target), and its
/// credentials are asked for under `https://index.docker.io/v1/`.
fn docker_hub_is_reached_at_registry_1_with_its_index_credentials() {
    let work = Work::new();
    let proxy = ScriptedRegistry::start(|_| Answer::new(403));
    work.credential_helper("https://index.docker.io/v1/", true);
    let ud = work.write(
        "ud.yaml",
        "#cloud-config\nstylus:\n  site:\n    name: hub\n",
    );
    let out = work.forge_with(
        &[
            "registry",
            "check",
            "--user-data",
            ud.to_str().unwrap(),
            "alpine:3.20",
        ],
        "",
        &[("HTTPS_PROXY", &format!("http://{}", proxy.host()))],
    );
    assert_output(&out, 1, &["docker.io"]);
    let connects: Vec<String> = proxy
        .received()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        connects.first().map(String::as_str),
        Some("CONNECT registry-1.docker.io:443"),
        "{connects:?}"
    );
    assert_eq!(
        std::fs::read_to_string(work.path("helper.log")).unwrap(),
        "https://index.docker.io/v1/\n"
    );
}

/// A credential helper that never answers (waiting for a prompt no one sees) is stopped after
/// 10 s and named.
fn a_hanging_credential_helper_is_stopped_and_named() {
    let work = Work::new();
    work.credential_helper_script("sleep 600", None);
    let ud = work.write(
        "ud.yaml",
        "#cloud-config\nstylus:\n  site:\n    name: hub\n",
    );
    let started = Instant::now();
    let out = work.forge(&[
        "registry",
        "check",
        "--user-data",
        ud.to_str().unwrap(),
        "registry.example.com/app:v1",
    ]);
    let elapsed = started.elapsed();
    assert_output(
        &out,
        1,
        &["credential helper docker-credential-forgetest failed for registry.example.com: docker-credential-forgetest did not answer within 10 s"],
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

/// Over TLS the client and the registry speak HTTP/2, where a HEAD's `Content-Length` (the
/// size of the blob it describes) is no body to bound: a 2 MiB layer the target already has
/// is skipped, not refused as an oversized answer.
fn blobs_the_target_has_are_skipped_over_http2_whatever_their_size() {
    let work = Work::new();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), false);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let mut images = Layout::new(&work.path("oci"));
    let layer = images.layer(1, 2 << 20);
    images.image("a", "amd64", vec![layer]);
    images.finish();
    let host = registry.host();
    for to in ["team/a:v1", "mirror/a:v0"] {
        skopeo.push(&images.dir, "a", &format!("{host}/{to}"), true);
    }
    let ca = work.write("ca.pem", &pki.ca_pem);
    let ud = work.write(
        "ud.yaml",
        &mapping(
            &host,
            Some(&pki.ca_pem),
            false,
            &[(&format!("{host}/team"), &format!("{host}/mirror"))],
        ),
    );
    let out = work.forge(&[
        "registry",
        "sync",
        "--from",
        "registry",
        "--registry-ca",
        ca.to_str().unwrap(),
        "--user-data",
        ud.to_str().unwrap(),
        &format!("{host}/team/a:v1"),
    ]);
    assert_output(&out, 0, &["0 blobs uploaded (0 B), 2 already there"]);
}
