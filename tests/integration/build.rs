//! `forge build` on a real Docker Engine with the CanvOS-shaped example checkout and the
//! fixture images in CanvOS's shapes (`make fixtures`): the provider and installer images hold
//! what CanvOS puts in them (DESIGN.md §8, file by file), Kubernetes comes from the luet
//! stand-in, labels, tags and the manifest; no secret in history, config or output; no
//! container left behind (success, failing step, Ctrl-C); the fixtures served by a TLS +
//! htpasswd registry as SPECTRO_PUB_REPO; pushing checked with skopeo.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    checkout_copy, containers, docker, forge_build_in, mapping, root, text, Pki, Registry, Skopeo,
    FIXTURES, FIXTURE_REPO, PASSWORD, USER,
};

tests! {
    the_example_builds_the_images_canvos_builds => [Fixtures],
    a_base_with_systemd_255_leaves_the_provider_and_kubernetes_to_the_agent => [Fixtures],
    the_plan_of_a_checkout_without_k8s_version_builds_its_whole_matrix => [Fixtures],
    an_iso_only_plan_needs_no_kubernetes_setting_and_no_registry => [Fixtures],
    the_fixtures_served_by_a_tls_registry_build_as_spectro_pub_repo => [
        Fixtures,
        Commands(&["docker-registry", "skopeo", "htpasswd"]),
    ],
    the_users_dockerfile_gets_no_secret_in_its_history_or_its_context => [Fixtures],
    a_failing_step_shows_its_output_and_leaves_no_container => [Fixtures],
    ctrl_c_stops_the_build_and_leaves_no_container => [Fixtures],
    a_stopped_engine_gets_the_documented_message,
    invalid_inputs_stop_before_the_engine_is_touched,
    push_sends_the_provider_images_to_a_tls_registry => [
        Fixtures,
        Commands(&["docker-registry", "skopeo", "htpasswd"]),
    ],
    push_also_puts_the_provider_images_where_the_edge_host_pulls_them => [
        Fixtures,
        Commands(&["docker-registry", "skopeo", "htpasswd"]),
    ],
    an_engine_of_another_architecture_is_refused_before_building => [Fixtures],
    a_tls_docker_host_is_reached_with_client_certificates => [Fixtures, Commands(&["stunnel4"])],
    json_output_is_one_document_on_stdout_and_json_progress_one_event_per_line_on_stderr => [
        Fixtures,
        Commands(&["check-jsonschema"]),
    ],
    images_without_a_command_or_with_an_entrypoint_are_read_with_forges_own => [Fixtures],
    the_user_data_is_left_out_of_the_context_however_it_is_named => [Fixtures],
    overlay_links_out_of_the_checkout_are_refused_naming_the_link => [Fixtures],
}

/// Builds share the engine: one at a time, so container counts mean something.
static ENGINE: Mutex<()> = Mutex::new(());

/// `forge build` of the example, images only (tests/iso.rs covers the ISO).
fn forge_cmd(args: &[&str]) -> Command {
    let mut cmd = support::forge_build(args);
    cmd.arg("--no-iso");
    cmd
}

fn forge(args: &[&str]) -> Output {
    forge_cmd(args).output().unwrap()
}

/// `forge build --no-iso` in another checkout.
fn forge_in(checkout: &Path, args: &[&str]) -> Output {
    forge_build_in(checkout, args)
        .arg("--no-iso")
        .output()
        .unwrap()
}

fn run_in(image: &str, script: &str) -> String {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{script}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The IDs of the engine's images, intermediate ones included, created at or after `since`.
fn images_made_since(since: std::time::SystemTime) -> Vec<String> {
    let seconds = since
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // `Created` is RFC 3339 in UTC, so its first 19 characters compare as text.
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    let since = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let ids = text(&docker(&["images", "-a", "-q", "--no-trunc"]));
    let mut ids: Vec<&str> = ids.lines().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut args = vec!["image", "inspect", "--format", "{{.ID}} {{.Created}}"];
    args.extend(&ids);
    text(&docker(&args))
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, created)| created.get(..19).is_some_and(|c| c >= since.as_str()))
        .map(|(id, _)| id.to_string())
        .collect()
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

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A copy of the example whose Dockerfile ends with `steps`.
fn checkout_with_steps(dir: &Path, steps: &str) -> PathBuf {
    let checkout = checkout_copy(dir);
    let dockerfile = checkout.join("Dockerfile");
    let mut text = std::fs::read_to_string(&dockerfile).unwrap();
    text.push_str(steps);
    std::fs::write(&dockerfile, text).unwrap();
    checkout
}

/// The stylus framework fixture, read once per check.
const STYLUS: &str =
    "forge-fixtures.local/palette-images/edge/stylus-framework-linux-amd64:v4.9.38";

/// The files of an image that has no shell (the stylus framework), unpacked into a directory.
fn unpack(image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let id = String::from_utf8(docker(&["create", image, "none"]).stdout).unwrap();
    let id = id.trim();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker export {id} | tar -x -C {}",
            dir.path().display()
        ))
        .status()
        .unwrap();
    docker(&["rm", id]);
    assert!(status.success());
    dir
}

/// `sha256sum` lines (`HASH  PATH`) of the regular files below `dirs` of an unpacked image.
fn tree_sums(root: &Path, dirs: &[&str]) -> Vec<String> {
    use sha2::Digest as _;
    let mut lines: Vec<String> = dirs
        .iter()
        .flat_map(|d| walkdir::WalkDir::new(root.join(d)))
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let hash = hex::encode(sha2::Sha256::digest(std::fs::read(e.path()).unwrap()));
            format!("{hash}  {}", e.path().strip_prefix(root).unwrap().display())
        })
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines
}

const LUET_PASSWORD: &str = "Lu3t-Auth!Secret";

fn the_example_builds_the_images_canvos_builds() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout = checkout_copy(work.path());
    // A new password each run, so that the luet steps run (and print) instead of coming from
    // the engine's cache.
    let password = format!("{LUET_PASSWORD}-{}", std::process::id());
    std::fs::write(
        checkout.join("spectro-luet-auth.yaml"),
        format!("auth:\n  username: luet-reader\n  password: {password}\n  serveraddress: forge-fixtures.local\n"),
    )
    .unwrap();
    let out_dir = work.path().join("out");
    let before = containers();
    // The engine's clock, to one second: images made from here on are this build's.
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let out = forge_in(&checkout, &["--output", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(containers(), before, "a container was left behind");
    let log = text(&out);

    let manifest = manifest(&out_dir);
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let kinds: Vec<&str> = artifacts
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["os", "base", "provider", "installer"]);
    let provider = "registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo";
    assert_eq!(artifacts[2]["reference"], provider);
    let l = labels(provider);
    assert_eq!(
        l["dev.forge.input-hash"],
        artifacts[2]["inputs"]["input_hash"]
    );
    assert_eq!(l["dev.forge.k8s-version"], "1.33.1");

    // Kubernetes came from luet: CanvOS's repository, authentication and package.
    assert!(
        log.contains("luet repo add spectro --type docker --url forge-fixtures.local/palette-images/edge/luet-repo-amd --priority 1 -y"),
        "{log}"
    );
    assert!(
        log.contains("luet-fixture: repo update spectro from forge-fixtures.local/palette-images/edge/luet-repo-amd (auth: yes)"),
        "{log}"
    );
    assert!(
        log.contains("luet-fixture: install k8s/k3s@1.33.1-k3s1 from forge-fixtures.local/palette-images/edge/luet-repo-amd (auth: yes)"),
        "{log}"
    );
    assert!(log.contains("probe: systemd 252 in "), "{log}");

    // The provider image, item by item (DESIGN.md §8).
    let check = |script: &str, expected: &str| {
        assert_eq!(run_in(provider, script), expected, "{script}");
    };
    // 1. overlay/files/etc/ → /etc/ (and stylus.conf made readable).
    let overlay_file = "etc/spectrocloud/custom-hardware-specs-lookup.json";
    assert_eq!(
        run_in(provider, &format!("cat /{overlay_file}")),
        std::fs::read_to_string(checkout.join("overlay/files").join(overlay_file)).unwrap()
    );
    check("stat -c %a /etc/logrotate.d/stylus.conf", "644\n");
    // 2. The Kairos provider at /system/providers, the sentinel, Kubernetes at /.
    check(
        "ls /system/providers; test ! -e /usr/local/system/providers && echo moved",
        "agent-provider-k3s\nmoved\n",
    );
    check(
        "test -f /etc/spectro-sysext/k8s-and-agent-provider-bundled && echo bundled",
        "bundled\n",
    );
    check("k3s --version | head -1", "k3s version v1.33.1+k3s1\n");
    check("ls -A /var/cache/luet 2>/dev/null | wc -l", "0\n");
    // 3. The stylus files (over the overlay's), and EDGE_CUSTOM_CONFIG.
    let stylus = unpack(STYLUS);
    let mut expected = tree_sums(
        stylus.path(),
        &[
            "etc/kairos/branding",
            "etc/kairos/80_stylus.yaml",
            "etc/elemental/config.yaml",
        ],
    );
    let config = tree_sums(stylus.path(), &["oem/stylus_config.yaml"]);
    expected.push(config[0].replace("oem/", "etc/kairos/branding/"));
    expected.sort_by(|a, b| a[66..].cmp(&b[66..]));
    let found = run_in(
        provider,
        "cd / && find etc/kairos/branding etc/kairos/80_stylus.yaml etc/elemental/config.yaml -type f | sort | xargs sha256sum",
    );
    assert_eq!(found.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        run_in(provider, "cat /oem/.edge_custom_config.yaml"),
        std::fs::read_to_string(checkout.join(".edge-custom-config.yaml")).unwrap()
    );
    // 4. No ssh host keys, etcdctl (packed with upx), an empty read-only machine-id.
    check(
        "ls /etc/ssh/ssh_host_* /etc/ssh/moduli 2>/dev/null | wc -l",
        "0\n",
    );
    check(
        "etcdctl version | head -1 | cut -d: -f1",
        "etcdctl version\n",
    );
    check(
        "grep -c UPX! /usr/bin/etcdctl >/dev/null && echo packed",
        "packed\n",
    );
    check("stat -c '%s %a' /etc/machine-id", "0 444\n");
    // The base image: USB media drivers in the initramfs, kernel command line, release, links.
    check(
        "cat /etc/dracut.conf.d/99-usb-media.conf",
        "hostonly=\"no\"\nadd_drivers+=\" xhci_pci_renesas \"\nforce_drivers+=\" xhci_pci_renesas \"\n",
    );
    let bootargs = run_in(provider, "cat /etc/cos/bootargs.cfg");
    for word in [
        "selinux=0",
        "systemd.unified_cgroup_hierarchy=1",
        "rd.driver.blacklist=nouveau modprobe.blacklist=nouveau nouveau.modeset=0",
    ] {
        assert!(bootargs.contains(word), "{word}: {bootargs}");
    }
    assert!(
        !bootargs.contains("security=selinux") && !bootargs.contains("selinux=1"),
        "{bootargs}"
    );
    let release = run_in(provider, "cat /etc/kairos-release");
    assert!(
        release.contains("KAIROS_NAME=\"kairos-core-ubuntu-22.04\""),
        "{release}"
    );
    assert!(
        release.contains("KAIROS_IMAGE_LABEL=\"22.04-standard-amd64-generic\""),
        "{release}"
    );
    check(
        "test -e /boot/vmlinuz && test -e /boot/initrd && readlink /boot/initrd | cut -c1-7",
        "initrd-\n",
    );
    check(
        "dpkg -s util-linux parted gdisk rsync cryptsetup-bin >/dev/null && echo packages",
        "packages\n",
    );

    // The installer image: base + the whole stylus framework + overlay/files/.
    let installer = artifacts[3]["reference"].as_str().unwrap();
    // Every stylus file, but those overlay/files/ replaces.
    let overlay = checkout.join("overlay/files");
    let stylus_tree: Vec<String> = tree_sums(stylus.path(), &["etc", "oem", "opt", "usr"])
        .into_iter()
        .filter(|l| {
            !l.contains("  etc/host") && !l.ends_with("etc/resolv.conf") && !l.ends_with("etc/mtab")
        })
        .filter(|l| !overlay.join(l.split_once("  ").unwrap().1).exists())
        .collect();
    let installed = run_in(
        installer,
        &format!(
            "cd / && sha256sum {}",
            stylus_tree
                .iter()
                .map(|l| l.split_once("  ").unwrap().1)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    assert_eq!(
        installed.lines().collect::<Vec<_>>(),
        stylus_tree,
        "the installer holds the whole stylus framework"
    );
    assert_eq!(
        run_in(installer, &format!("cat /{overlay_file}")),
        std::fs::read_to_string(checkout.join("overlay/files").join(overlay_file)).unwrap()
    );
    assert_eq!(labels(installer)["dev.forge.kind"], "installer");

    // The luet authentication and the user-data secrets reach no image, history or output.
    let user_data = std::fs::read_to_string(checkout.join("user-data")).unwrap();
    let mut secrets = vec![password.clone(), "luet-reader".to_string()];
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
    for image in [provider, installer] {
        let history = text(&docker(&["history", "--no-trunc", image]));
        let config = text(&docker(&["image", "inspect", image]));
        let grep = secrets
            .iter()
            .map(|s| format!("-e '{s}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let files = run_in(
            image,
            &format!("grep -rlF {grep} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null || true"),
        );
        assert_eq!(files, "", "secrets in the files of {image}");
        assert!(
            run_in(image, "ls /etc/luet/repos.conf.d 2>/dev/null | wc -l") == "0\n",
            "luet's configuration reached {image}"
        );
        for secret in &secrets {
            for (what, haystack) in [("history", &history), ("config", &config), ("output", &log)] {
                assert!(
                    !haystack.contains(secret.as_str()),
                    "`{secret}` is in the {what} of {image}"
                );
            }
        }
    }

    // Nor do the engine's cached build steps: the luet stage's images that held the
    // credentials are gone, and no image this build made copied the file.
    assert_eq!(
        text(&docker(&[
            "images",
            "-a",
            "-q",
            "--filter",
            "label=dev.forge.secret"
        ])),
        ""
    );
    let made = images_made_since(started);
    assert!(made.len() >= 4, "{made:?}");
    for image in made {
        let history = text(&docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            &image,
        ]));
        assert!(
            !history.contains("spectro-luet-auth.yaml"),
            "image {image} holds the luet credentials:\n{history}"
        );
    }

    let snippet = std::fs::read_to_string(out_dir.join("profile-snippet.yaml")).unwrap();
    assert!(snippet.contains("  system.registry: registry.example.com/edge\n  system.repo: ubuntu\n  system.k8sDistribution: k3s\n"), "{snippet}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&snippet),
        "the snippet is printed too"
    );

    // Same inputs: everything comes from the cache.
    let again = forge_in(&checkout, &["--output", out_dir.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches(": cached ").count(),
        4,
        "{}",
        text(&again)
    );
}

fn a_base_with_systemd_255_leaves_the_provider_and_kubernetes_to_the_agent() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let out = forge(&[
        "--set",
        "OS_VERSION=24.04",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("probe: systemd 256 in "),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("luet-fixture:"),
        "luet ran: {}",
        text(&out)
    );
    let provider = "registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo";
    let absent = "ls -d /system/providers /usr/local/system/providers /etc/spectro-sysext /usr/bin/k3s 2>/dev/null | wc -l";
    assert_eq!(run_in(provider, absent), "0\n");
    assert_eq!(
        run_in(
            provider,
            "test -s /etc/kairos/80_stylus.yaml && test -x /usr/bin/etcdctl && echo agent-files"
        ),
        "agent-files\n"
    );

    let forced = forge(&[
        "--set",
        "OS_VERSION=24.04",
        "--set",
        "BUNDLE_K8S_AND_AGENT_PROVIDER=true",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        !text(&forced).contains("probe: systemd"),
        "no probe when bundling is forced"
    );
    assert_eq!(
        run_in(provider, absent),
        "3\n",
        "provider, sentinel and k3s are bundled"
    );
}

fn the_plan_of_a_checkout_without_k8s_version_builds_its_whole_matrix() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout = checkout_copy(work.path());
    let arg = std::fs::read_to_string(checkout.join(".arg")).unwrap();
    let arg: String = arg
        .lines()
        .map(|l| {
            if l.starts_with("K8S_VERSION=") {
                "K8S_VERSION="
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(checkout.join(".arg"), arg).unwrap();
    let matrix: Value =
        serde_json::from_str(&std::fs::read_to_string(checkout.join("k8s_version.json")).unwrap())
            .unwrap();
    let out = forge_build_in(&checkout, &["--dry-run", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "provider")
        .map(|s| s["step"].as_str().unwrap().trim_start_matches("provider "))
        .collect();
    let expected: Vec<&str> = matrix["k3s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(versions, expected);
    assert_eq!(plan["bundle"], serde_json::json!({"old_systemd": 252}));
    for step in plan["steps"].as_array().unwrap() {
        assert!(
            step["image"].is_string() && step["dockerfile"].is_string(),
            "{step}"
        );
        assert!(!step["from"].as_array().unwrap().is_empty(), "{step}");
    }
    let os = &plan["steps"][0];
    assert_eq!(os["context"]["directory"], checkout.to_str().unwrap());
    assert_eq!(
        os["dockerfile"],
        std::fs::read_to_string(checkout.join("Dockerfile")).unwrap()
    );
    assert_eq!(os["build_args"]["OS_DISTRIBUTION"], "ubuntu");
}

fn the_fixtures_served_by_a_tls_registry_build_as_spectro_pub_repo() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let host = registry.host();
    let skopeo = Skopeo::new(Some(&pki.ca_pem), std::slice::from_ref(&host));
    let mirror = format!("{host}/palette-images");
    for image in FIXTURES.iter().filter(|i| i.starts_with(FIXTURE_REPO)) {
        skopeo.push_from_engine(image, &image.replacen(FIXTURE_REPO, &mirror, 1));
    }
    // The engine trusts the registry's CA where Docker looks for it; the Docker config holds
    // the credentials.
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
    let run = |config: &Path| {
        forge_cmd(&[
            &format!("--set=SPECTRO_PUB_REPO={mirror}"),
            &format!(
                "--set=SPECTRO_THIRD_PARTY_IMAGE={mirror}/third-party/spectro-third-party:4.8"
            ),
            "--output",
            work.path().join("out").to_str().unwrap(),
        ])
        .env("DOCKER_CONFIG", config)
        .output()
        .unwrap()
    };
    let denied = run(&work.path().join("no-config"));
    let out = run(&docker_config);
    let _ = std::fs::remove_dir_all(&certs_d);
    let pulled: Vec<String> =
        String::from_utf8(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout)
            .unwrap()
            .lines()
            .filter(|i| i.starts_with(&format!("{host}/")))
            .map(str::to_string)
            .collect();
    for image in &pulled {
        docker(&["rmi", image]);
    }
    assert_eq!(denied.status.code(), Some(2), "{}", text(&denied));
    assert!(
        text(&denied).contains(&format!("pulling {mirror}/edge/kairos-ubuntu:22.04")),
        "{}",
        text(&denied)
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    // Every image the build starts FROM came from the mirror.
    for path in [
        "edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1",
        "edge/stylus-framework-linux-amd64:v4.9.38",
        "edge/kairos-io/provider-k3s:v4.10.3",
        "edge/canvos/alpine:3.20",
        "third-party/spectro-third-party:4.8",
    ] {
        assert!(
            pulled.contains(&format!("{mirror}/{path}")),
            "{path} was not pulled from the mirror: {pulled:?}"
        );
    }
}

fn the_users_dockerfile_gets_no_secret_in_its_history_or_its_context() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    // CanvOS's Dockerfile declares ARG HTTP_PROXY, which would write a build argument into the
    // history; the RUN step below still sees the proxy (as http_proxy). Its context is the
    // checkout, but for the user-data and the luet credentials.
    let checkout = checkout_with_steps(
        work.path(),
        &format!(
            "COPY . /forge-checkout/\nRUN echo \"proxy seen: ${{http_proxy:+yes}}\" > /etc/forge-proxy-check # {:?}\n",
            Instant::now()
        ),
    );
    std::fs::write(
        checkout.join("spectro-luet-auth.yaml"),
        format!("auth:\n  username: luet-reader\n  password: {LUET_PASSWORD}\n"),
    )
    .unwrap();
    let secret = "Pr0xyBuild!Secret";
    let proxy = format!("http://builder:{secret}@127.0.0.1:3128");
    let out_dir = work.path().join("out");
    // On the command line, where every local user could read it, the password is refused.
    let refused = forge_in(&checkout, &[&format!("--set=HTTP_PROXY={proxy}")]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("CFG016") && !text(&refused).contains(secret));
    let plan = forge_build_in(&checkout, &["--dry-run", "--format", "json"])
        .env("FORGE_HTTP_PROXY", &proxy)
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let os = plan["steps"][0]["image"].as_str().unwrap().to_string();
    // The base image's apt-get cannot reach this made-up proxy: the build stops there, after
    // the user's steps were built with it.
    let out = forge_build_in(
        &checkout,
        &["--no-iso", "--output", out_dir.to_str().unwrap()],
    )
    .env("FORGE_HTTP_PROXY", &proxy)
    .output()
    .unwrap();
    assert!(!text(&out).contains(secret), "{}", text(&out));
    assert_eq!(
        run_in(&os, "cat /etc/forge-proxy-check"),
        "proxy seen: yes\n"
    );
    assert_eq!(
        run_in(
            &os,
            "cd /forge-checkout && for f in Dockerfile user-data spectro-luet-auth.yaml; do test ! -e $f || echo $f; done"
        ),
        "Dockerfile\n"
    );
    let history = text(&docker(&["history", "--no-trunc", &os]));
    let config = text(&docker(&["image", "inspect", &os]));
    assert!(
        !history.contains(secret),
        "the password is in the history: {history}"
    );
    assert!(
        !config.contains(secret),
        "the password is in the image config"
    );
}

fn a_failing_step_shows_its_output_and_leaves_no_container() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout =
        checkout_with_steps(work.path(), "RUN echo forge-step-about-to-fail && exit 3\n");
    let before = containers();
    let out = forge_in(
        &checkout,
        &["--output", work.path().join("out").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("error: building forge.local/ubuntu-os:"),
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

fn ctrl_c_stops_the_build_and_leaves_no_container() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout = checkout_with_steps(
        work.path(),
        &format!(
            "RUN echo forge-long-step-{:?} && sleep 60\n",
            Instant::now()
        ),
    );
    let before = containers();
    let mut cmd = forge_build_in(
        &checkout,
        &[
            "--no-iso",
            "--output",
            work.path().join("out").to_str().unwrap(),
        ],
    );
    let (mut child, stderr) = support::spawn_until(&mut cmd, |line| {
        line.contains("forge-long-step-") && containers() > before
    });
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

fn a_stopped_engine_gets_the_documented_message() {
    let out = forge_cmd(&[])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot reach the Docker Engine at unix:///nonexistent/docker.sock (no engine is listening); start it"), "{}", text(&out));
}

fn invalid_inputs_stop_before_the_engine_is_touched() {
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(root())
        .args([
            "build",
            "--arg",
            "examples/canvos/.arg",
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

fn push_sends_the_provider_images_to_a_tls_registry() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[registry.host()]);
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let set_registry = format!("--set=IMAGE_REGISTRY={}/edge", registry.host());
    // The example's registryCredentials would send the provider images to
    // registry.example.com too: this test is of IMAGE_REGISTRY alone.
    let mut cmd = forge_cmd(&[
        &set_registry,
        "--push",
        "--no-push-rewritten",
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

/// A site whose user-data maps IMAGE_REGISTRY's repository to its own mirror (another TLS
/// registry, its credentials and CA in the user-data): `--push` puts each provider image at
/// both references, the same manifest, and the build's JSON names the copy.
fn push_also_puts_the_provider_images_where_the_edge_host_pulls_them() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout = checkout_copy(work.path());
    let pki = Pki::generate();
    let (central, site) = (
        Registry::start(Some(&pki), true),
        Registry::start(Some(&pki), true),
    );
    let skopeo = Skopeo::new(Some(&pki.ca_pem), &[central.host(), site.host()]);
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let rule = (
        format!("{}/edge", central.host()),
        format!("{}/site", site.host()),
    );
    let user_data = mapping(
        &site.host(),
        Some(&pki.ca_pem),
        false,
        &[(&rule.0, &rule.1)],
    );
    std::fs::write(checkout.join("user-data"), user_data).unwrap();
    let set_registry = format!("--set=IMAGE_REGISTRY={}/edge", central.host());
    let mut cmd = forge_build_in(
        &checkout,
        &[
            "--no-iso",
            &set_registry,
            "--push",
            "--registry-ca",
            ca.to_str().unwrap(),
            "--username",
            USER,
            "--password-stdin",
            "--format",
            "json",
            "--output",
            work.path().join("out").to_str().unwrap(),
        ],
    );
    let out = support::output_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let providers: Vec<&Value> = built["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "provider")
        .collect();
    assert!(!providers.is_empty(), "{built:#}");
    for provider in providers {
        let pushed = provider["image"].as_str().unwrap();
        let copy = provider["edge_copy"].as_str().unwrap();
        assert_eq!(copy, pushed.replacen(&rule.0, &rule.1, 1), "{provider}");
        assert_eq!(
            skopeo.digest(copy, true),
            skopeo.digest(pushed, true),
            "{copy} is {pushed}"
        );
    }
}

fn an_engine_of_another_architecture_is_refused_before_building() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
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

fn a_tls_docker_host_is_reached_with_client_certificates() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
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

fn json_output_is_one_document_on_stdout_and_json_progress_one_event_per_line_on_stderr() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let output = tempfile::tempdir().unwrap();
    let out = support::forge_build(&["--no-iso", "--format", "json", "--progress", "json"])
        .arg("--output")
        .arg(output.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["images"].as_array().unwrap().len(), 4);
    support::assert_published_shape(&out.stdout);
    // The example's validation notes stay text among the events, the JSON lines.
    let events: Vec<Value> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // The first event of each kind (a build whose images are all cached logs nothing).
    let mut kinds: Vec<&Value> = Vec::new();
    for event in &events {
        if !kinds.iter().any(|k| k["event"] == event["event"]) {
            kinds.push(event);
        }
    }
    assert!(
        kinds.iter().any(|k| k["event"] == "step-finished"),
        "{kinds:?}"
    );
    for event in kinds {
        support::assert_published_shape(event.to_string().as_bytes());
    }
    let finished: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step-finished")
        .map(|e| e["step"].as_str().unwrap())
        .filter(|step| *step != "checkout")
        .collect();
    assert_eq!(
        finished,
        ["probe", "os", "base", "provider 1.33.1", "installer"]
    );
}

/// Files-only images have no `CMD` (the stylus framework is built `FROM scratch`), and some
/// images have an `ENTRYPOINT`: forge reads the files of the one and probes the other with its
/// own command, and leaves no container behind.
fn images_without_a_command_or_with_an_entrypoint_are_read_with_forges_own() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/kairos")).unwrap();
    std::fs::write(dir.path().join("etc/kairos/80_stylus.yaml"), "stages: {}\n").unwrap();
    let files_only = "forge-test/files-only:no-cmd";
    let imported = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - {files_only}",
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported));
    let cmd = docker(&["image", "inspect", "-f", "{{json .Config.Cmd}}", files_only]);
    assert_eq!(String::from_utf8_lossy(&cmd.stdout).trim(), "null");
    let entrypoint = "forge-test/entrypoint:false";
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {FIXTURE_REPO}/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1\nENTRYPOINT [\"/bin/false\"]\n"),
    )
    .unwrap();
    let built = docker(&[
        "build",
        "-q",
        "-t",
        entrypoint,
        dir.path().to_str().unwrap(),
    ]);
    assert!(built.status.success(), "{}", text(&built));
    let before = containers();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (found, missing, systemd) = runtime.block_on(async {
        let env = forge::config::Environment::from_vars(&forge::config::process_vars().unwrap());
        let address = forge::engine::default_address(&env);
        let engine = forge::engine::Engine::connect(&address, &env)
            .await
            .unwrap();
        (
            forge::engine::has_path(&engine, files_only, "/etc/kairos/80_stylus.yaml").await,
            forge::engine::has_path(&engine, files_only, "/etc/kairos/absent.yaml").await,
            forge::engine::systemd_version(&engine, entrypoint).await,
        )
    });
    docker(&["rmi", files_only, entrypoint]);
    assert!(found.unwrap(), "the file is found in the files-only image");
    assert!(!missing.unwrap());
    assert_eq!(
        systemd.unwrap(),
        252,
        "probed with forge's command, not /bin/false"
    );
    assert_eq!(containers(), before, "no container left behind");
}

/// The user-data never enters the checkout's build context, however it is named: through
/// `..`, a symlinked checkout, a link to the file, a hard link. The base image's input hash
/// stays the same whatever the user-data holds.
fn the_user_data_is_left_out_of_the_context_however_it_is_named() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let checkout = checkout_copy(work.path());
    std::fs::create_dir_all(checkout.join("sites")).unwrap();
    let site = checkout.join("sites/edge-01.yaml");
    let user_data = std::fs::read_to_string(checkout.join("user-data")).unwrap();
    std::os::unix::fs::symlink(&checkout, work.path().join("linked")).unwrap();
    std::os::unix::fs::symlink(&site, work.path().join("ud-link.yaml")).unwrap();
    let hard = work.path().join("ud-hard.yaml");
    // (directory the command runs in, --user-data as given)
    let spellings = [
        (
            checkout.clone(),
            "../checkout/sites/edge-01.yaml".to_string(),
        ),
        (work.path().join("linked"), "sites/edge-01.yaml".to_string()),
        (
            checkout.clone(),
            work.path().join("ud-link.yaml").display().to_string(),
        ),
        (checkout.clone(), hard.display().to_string()),
    ];
    let mut hashes = Vec::new();
    for content in [
        user_data.clone(),
        format!("{user_data}# another site's secrets\n"),
    ] {
        std::fs::write(&site, &content).unwrap();
        let _ = std::fs::remove_file(&hard);
        std::fs::hard_link(&site, &hard).unwrap();
        for (dir, given) in &spellings {
            let out = support::forge_command()
                .current_dir(dir)
                .args(["build", "--arg", ".arg", "--user-data", given])
                .args(["--dry-run", "--format", "json"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{given}: {}", text(&out));
            let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
            let os = &plan["steps"][0];
            assert_eq!(os["kind"], "os");
            let exclude: Vec<&str> = os["context"]["exclude"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                exclude.contains(&"sites/edge-01.yaml") || given.ends_with("ud-hard.yaml"),
                "{given}: {exclude:?}"
            );
            hashes.push((
                given.clone(),
                os["input_hash"].as_str().unwrap().to_string(),
            ));
        }
    }
    let first = &hashes[0].1;
    for (given, hash) in &hashes {
        assert_eq!(hash, first, "{given} changed the base image's input hash");
    }
}

/// A checkout's overlay must not reach out of it: a link in `overlay/files-iso/` or
/// `overlay/files/` that points outside the checkout, or an `overlay` that is such a link, is
/// refused before anything is built, naming the link (an untrusted change to a checkout must
/// not put the build machine's files into an image or onto an ISO).
fn overlay_links_out_of_the_checkout_are_refused_naming_the_link() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let cases: [(&str, &str); 3] = [
        ("overlay/files-iso/opt/leak", "/etc/hostname"),
        (
            "overlay/files/etc/leak",
            "../../../../../../../../etc/shadow",
        ),
        ("overlay", "/etc"),
    ];
    for (link, target) in cases {
        let work = tempfile::tempdir().unwrap();
        let checkout = checkout_copy(work.path());
        let path = checkout.join(link);
        if link == "overlay" {
            std::fs::remove_dir_all(&path).unwrap();
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
        let out = forge_in(&checkout, &["--dry-run"]);
        assert_eq!(out.status.code(), Some(1), "{link}: {}", text(&out));
        let said =
            format!("/checkout/{link}` is a symbolic link to `{target}`, outside the checkout");
        assert!(
            text(&out).contains(&said),
            "{link}: missing `{said}` in {}",
            text(&out)
        );
    }
}

/// `--only iso` (CanvOS's `+iso`) plans the OS, base and installer images alone: a checkout
/// that names no registry and no Kubernetes distribution can make its ISO.
fn an_iso_only_plan_needs_no_kubernetes_setting_and_no_registry() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = support::checkout_copy(dir.path());
    let arg: String = std::fs::read_to_string(checkout.join(".arg"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("IMAGE_REGISTRY=") && !l.starts_with("K8S_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(checkout.join(".arg"), arg).unwrap();
    let out = forge_build_in(
        &checkout,
        &["--only", "iso", "--dry-run", "--format", "json"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["os", "base", "installer"]);
    // The whole build still needs them, and says which.
    let out = forge_build_in(&checkout, &["--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("IMAGE_REGISTRY is required to build provider images"),
        "{}",
        text(&out)
    );
}
