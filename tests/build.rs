//! `forge build` on a real Docker Engine with the offline example's fixture images
//! (`make fixtures`): what the images hold, their labels and tags, the manifest, no secret in
//! history, config or output, no container left behind (success, failing step, Ctrl-C), and
//! pushing to a TLS + htpasswd registry checked with skopeo.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{containers, docker, ready, root, text, Pki, Registry, Skopeo, PASSWORD, USER};

/// Builds share the engine: one at a time, so container counts mean something.
static ENGINE: Mutex<()> = Mutex::new(());

/// `forge build` of the offline example, images only (tests/iso.rs covers the ISO).
fn forge_cmd(args: &[&str]) -> Command {
    let mut cmd = support::forge_build(args);
    cmd.arg("--no-iso");
    cmd
}

fn forge(args: &[&str]) -> Output {
    forge_cmd(args).output().unwrap()
}

fn run_in(image: &str, script: &str) -> String {
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn labels(image: &str) -> Value {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A templates directory whose user.Dockerfile holds `steps`.
fn templates_with(dir: &Path, steps: &str) -> PathBuf {
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("user.Dockerfile"), steps).unwrap();
    templates
}

#[test]
fn the_offline_example_builds_labelled_images_and_a_manifest() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let before = containers();
    let out = forge(&["--output", out_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(containers(), before, "a container was left behind");

    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("manifest.json")).unwrap(),
    )
    .unwrap();
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let kinds: Vec<&str> = artifacts
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["base", "provider", "provider", "installer"]);
    for (artifact, version) in artifacts[1..3].iter().zip(["1.32.3", "1.33.1"]) {
        let tag = format!("registry.example.com/edge/ubuntu:k3s-{version}-v4.7.16-demo");
        assert_eq!(artifact["reference"], tag);
        assert_eq!(artifact["inputs"]["k8s_version"], version);
        let l = labels(&tag);
        assert_eq!(l["dev.forge.input-hash"], artifact["inputs"]["input_hash"]);
        assert_eq!(l["dev.forge.k8s-version"], version);
        assert_eq!(l["org.opencontainers.image.version"], "v4.7.16");
        assert_eq!(l["org.opencontainers.image.ref.name"], tag);
        let inside = run_in(
            &tag,
            "k3s; cat /etc/forge-provider; /system/providers/agent-provider-k3s",
        );
        assert_eq!(inside, format!("k3s v{version}+k3s1\nK8S_DISTRIBUTION=k3s\nK8S_VERSION={version}\nagent-provider-k3s v4.7.1\n"));
    }
    let installer = artifacts[3]["reference"].as_str().unwrap();
    assert_eq!(
        run_in(installer, "/opt/spectrocloud/bin/stylus-agent"),
        "stylus-agent v4.7.16\n"
    );
    assert_eq!(labels(installer)["dev.forge.kind"], "installer");

    let snippet = std::fs::read_to_string(out_dir.path().join("profile-snippet.yaml")).unwrap();
    assert!(snippet.contains("  system.registry: registry.example.com/edge\n  system.repo: ubuntu\n  system.k8sDistribution: k3s\n"), "{snippet}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&snippet),
        "the snippet is printed too"
    );

    // Same inputs: everything comes from the cache.
    let again = forge(&["--output", out_dir.path().to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches(": cached ").count(),
        4,
        "{}",
        text(&again)
    );
}

#[test]
fn no_secret_reaches_history_config_or_output() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let proxy_secret = "Pr0xyBuild!Secret";
    let templates = templates_with(
        work.path(),
        "RUN echo \"proxy seen: ${HTTP_PROXY:+yes}\" > /etc/forge-proxy-check\n",
    );
    let proxy = format!("http://builder:{proxy_secret}@127.0.0.1:3128");
    let out_dir = work.path().join("out");
    let args = [
        "--templates",
        templates.to_str().unwrap(),
        "--output",
        out_dir.to_str().unwrap(),
    ];
    // On the command line, where every local user could read it, the password is refused.
    let refused = forge(&[&args[..], &[&format!("--set=HTTP_PROXY={proxy}")]].concat());
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("CFG016"), "{}", text(&refused));
    assert!(!text(&refused).contains(proxy_secret), "{}", text(&refused));
    let out = forge_cmd(&args)
        .env("FORGE_HTTP_PROXY", &proxy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tag = "registry.example.com/edge/ubuntu:k3s-1.32.3-v4.7.16-demo";
    assert_eq!(
        run_in(tag, "cat /etc/forge-proxy-check"),
        "proxy seen: yes\n",
        "the proxy reached the RUN step"
    );

    let user_data = std::fs::read_to_string(root().join("examples/user-data.yaml")).unwrap();
    let mut secrets = vec![proxy_secret.to_string()];
    for key in ["password:", "edgeHostToken:"] {
        let line = user_data
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        secrets.push(
            line.split_once(':')
                .unwrap()
                .1
                .trim()
                .trim_matches('"')
                .to_string(),
        );
    }
    let history = String::from_utf8(docker(&["history", "--no-trunc", tag]).stdout).unwrap();
    let config = String::from_utf8(docker(&["image", "inspect", tag]).stdout).unwrap();
    let files = run_in(tag, "grep -rl -e example-registration-token -e example-Passw0rd / --exclude-dir=proc --exclude-dir=sys 2>/dev/null || true");
    for secret in &secrets {
        for (what, haystack) in [
            ("history", &history),
            ("image config", &config),
            ("forge output", &text(&out)),
        ] {
            assert!(
                !haystack.contains(secret.as_str()),
                "`{secret}` is in the {what}"
            );
        }
    }
    assert_eq!(files, "", "user-data secrets in image files");
}

#[test]
fn a_failing_step_shows_its_output_and_leaves_no_container() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let templates = templates_with(work.path(), "RUN echo forge-step-about-to-fail && exit 3\n");
    let before = containers();
    let out = forge(&[
        "--templates",
        templates.to_str().unwrap(),
        "--output",
        work.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("error: building forge.local/ubuntu-base:"),
        "{all}"
    );
    assert!(all.contains("returned a non-zero code: 3"), "{all}");
    assert!(
        all.contains("  | forge-step-about-to-fail"),
        "the last lines are shown: {all}"
    );
    assert_eq!(containers(), before, "a container was left behind");
    assert!(
        !work.path().join("out/manifest.json").exists(),
        "no output after a failed build"
    );
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_no_container() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let templates = templates_with(
        work.path(),
        &format!(
            "RUN echo forge-long-step-{:?} && sleep 60\n",
            Instant::now()
        ),
    );
    let before = containers();
    let (mut child, stderr) = support::spawn_until(
        &mut forge_cmd(&[
            "--templates",
            templates.to_str().unwrap(),
            "--output",
            work.path().join("out").to_str().unwrap(),
        ]),
        |line| line.contains("forge-long-step-") && containers() > before,
    );
    let (status, rest) = support::interrupt(&mut child, stderr);
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while containers() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        containers(),
        before,
        "a container was left behind after Ctrl-C"
    );
}

#[test]
fn a_stopped_engine_gets_the_documented_message() {
    let out = forge_cmd(&[])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot reach the Docker Engine at unix:///nonexistent/docker.sock (no engine is listening); start it"), "{}", text(&out));
}

#[test]
fn invalid_inputs_stop_before_the_engine_is_touched() {
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(root())
        .args([
            "build",
            "--config",
            "examples/offline/forge.yaml",
            "--user-data",
            "tests/fixtures/rules/REG007/fail/user-data.yaml",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("error[REG007]")
            && text(&out).contains("validation failed: nothing was built"),
        "{}",
        text(&out)
    );
}

#[test]
fn push_sends_the_provider_images_to_a_tls_registry() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !support::have(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let set_registry = format!("--set=IMAGE_REGISTRY={}/edge", registry.host());
    let mut cmd = forge_cmd(&[
        &set_registry,
        "--push",
        "--registry-ca",
        ca.to_str().unwrap(),
        "--username",
        USER,
        "--password-stdin",
        "--output",
        work.path().join("out").to_str().unwrap(),
    ]);
    let out = support::output_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("out/manifest.json")).unwrap(),
    )
    .unwrap();
    for artifact in manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "provider")
    {
        let reference = artifact["reference"].as_str().unwrap();
        assert!(
            reference.starts_with(&format!("{}/edge/ubuntu:k3s-", registry.host())),
            "{reference}"
        );
        assert_eq!(
            artifact["digest"].as_str(),
            skopeo.digest(reference, true).as_deref(),
            "{reference}"
        );
        assert_eq!(
            skopeo.field(reference, true, "/config/digest"),
            artifact["image_id"].as_str().unwrap()
        );
    }
}

#[test]
fn an_engine_of_another_architecture_is_refused_before_building() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let out = forge(&[
        "--set",
        "ARCH=arm64",
        "--output",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "ARCH=arm64 artifacts need an arm64 Docker Engine, and this one runs on x86_64"
        ),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("building"),
        "nothing was built: {}",
        text(&out)
    );
}

#[test]
fn a_tls_docker_host_is_reached_with_client_certificates() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !support::have(&["stunnel4"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let certs = work.path().join("client");
    std::fs::create_dir_all(&certs).unwrap();
    for (name, pem) in [
        ("ca.pem", &pki.ca_pem),
        ("cert.pem", &pki.client_cert_pem),
        ("key.pem", &pki.client_key_pem),
    ] {
        std::fs::write(certs.join(name), pem).unwrap();
    }
    std::fs::write(work.path().join("server.pem"), &pki.cert_pem).unwrap();
    std::fs::write(work.path().join("server.key"), &pki.key_pem).unwrap();
    let port = support::free_port();
    // TLS in front of the engine's socket, as dockerd --tlsverify would serve it: client
    // certificates signed by the CA are required.
    let config = format!(
        "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = /var/run/docker.sock\ncert = {0}/server.pem\nkey = {0}/server.key\nCAfile = {0}/client/ca.pem\nverifyChain = yes\nrequireCert = yes\n",
        work.path().display()
    );
    std::fs::write(work.path().join("stunnel.conf"), config).unwrap();
    let mut proxy = Command::new("stunnel4")
        .arg(work.path().join("stunnel.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for_port(port);
    let host = format!("tcp://127.0.0.1:{port}");
    let out = forge_cmd(&["--output", work.path().join("out").to_str().unwrap()])
        .env("DOCKER_HOST", &host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs)
        .output()
        .unwrap();
    let without_tls = forge_cmd(&["--output", work.path().join("out").to_str().unwrap()])
        .env("DOCKER_HOST", &host)
        .output()
        .unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(out.status.success(), "{}", text(&out));
    assert!(work.path().join("out/manifest.json").exists());
    assert_eq!(
        without_tls.status.code(),
        Some(2),
        "plain HTTP to a TLS endpoint must fail: {}",
        text(&without_tls)
    );
}

#[test]
fn json_progress_is_one_event_per_line() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let out = forge(&[
        "--format",
        "json",
        "--output",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step-finished")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        finished,
        ["base", "provider 1.32.3", "provider 1.33.1", "installer"]
    );
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["images"].as_array().unwrap().len(), 4);
}
