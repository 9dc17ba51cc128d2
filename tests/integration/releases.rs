//! Any CanvOS release: in a checkout of each release line (`tests/fixtures/releases/<tag>/`,
//! Earthfiles written in each release's shape), forge plans offline what that release builds:
//! the base, provider, stylus framework, third-party and luet sources, the provider image tag
//! and the ISO name, each value's origin the Earthfile's line.

use crate::support;

use std::path::PathBuf;

use serde_json::Value;

tests! {
    each_release_plans_the_sources_and_tags_its_earthfile_builds,
    the_users_layers_win_over_the_earthfile_and_fips_switches_its_repository,
    a_checkout_without_an_earthfile_says_it_uses_forges_defaults,
    a_checkout_is_read_as_earthly_reads_it,
    an_iso_needs_user_data_and_images_alone_do_not,
    each_release_is_planned_with_no_engine_and_no_network,
}

/// What one release builds for Ubuntu 22 on amd64, kubeadm 1.32.3, CUSTOM_TAG demo.
struct Release {
    tag: &'static str,
    pe_version: &'static str,
    base_image: &'static str,
    provider_image: &'static str,
    third_party_image: &'static str,
    luet_repo: &'static str,
    /// Installed from luet before Kubernetes (kubeadm's containerd, up to v4.7.11).
    runtime_package: &'static str,
    /// Kubernetes and the provider bundled whatever the base image's systemd.
    always_bundles: bool,
}

const PUB: &str = "us-docker.pkg.dev/palette-images";

const RELEASES: &[Release] = &[
    Release {
        tag: "v4.6.24",
        pe_version: "v4.6.24",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v3.1.3",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.6.3",
        third_party_image:
            "us-east1-docker.pkg.dev/spectro-images/third-party/spectro-third-party:4.6",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo/v4.6.19",
        runtime_package: "container-runtime/containerd",
        always_bundles: true,
    },
    Release {
        tag: "v4.7.21",
        pe_version: "v4.7.21",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v3.5.3",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.7.3",
        third_party_image:
            "us-east1-docker.pkg.dev/spectro-images/third-party/spectro-third-party:4.6",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo-amd",
        runtime_package: "",
        always_bundles: true,
    },
    Release {
        tag: "v4.8.26",
        pe_version: "v4.8.26",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v3.5.9",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.7.3",
        third_party_image: "us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo-amd",
        runtime_package: "",
        always_bundles: true,
    },
    Release {
        tag: "v4.9.38",
        pe_version: "v4.9.38",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v4.0.4",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.9.10",
        third_party_image: "us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo-amd",
        runtime_package: "",
        always_bundles: true,
    },
    // The v4.10.0 tag's Earthfile still pins a v4.9 agent: its images are tagged v4.9.21.
    Release {
        tag: "v4.10.0",
        pe_version: "v4.9.21",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v4.0.4",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.9.8",
        third_party_image: "us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo-amd",
        runtime_package: "",
        always_bundles: true,
    },
    Release {
        tag: "main",
        pe_version: "v4.10.0-rc.2",
        base_image:
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1",
        provider_image: "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-kubeadm:v4.10.1",
        third_party_image: "us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8",
        luet_repo: "us-docker.pkg.dev/palette-images/edge/luet-repo-amd",
        runtime_package: "",
        always_bundles: false,
    },
];

fn checkout(tag: &str) -> PathBuf {
    support::root().join("tests/fixtures/releases").join(tag)
}

/// `forge config show --format json` in `checkout` with `sets`, offline (no engine, no
/// network: a Docker host that does not answer).
fn config_show(checkout: &std::path::Path, sets: &[&str]) -> Value {
    let mut cmd = support::forge_command();
    cmd.current_dir(checkout)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["config", "show", "--format", "json"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        checkout.display(),
        support::text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const SITE: &[&str] = &[
    "OS_DISTRIBUTION=ubuntu",
    "OS_VERSION=22",
    "ARCH=amd64",
    "IMAGE_REGISTRY=harbor.example.com/edge",
    "K8S_DISTRIBUTION=kubeadm",
    "K8S_VERSION=1.32.3",
    "CUSTOM_TAG=demo",
];

fn each_release_plans_the_sources_and_tags_its_earthfile_builds() {
    for release in RELEASES {
        let shown = config_show(&checkout(release.tag), SITE);
        let tag = release.tag;
        let source = |key: &str| {
            shown["sources"][key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let setting = |name: &str| &shown["settings"][name];
        assert_eq!(shown["earthfile"], "Earthfile", "{tag}");
        assert_eq!(setting("PE_VERSION")["value"], release.pe_version, "{tag}");
        assert!(
            setting("PE_VERSION")["source"]
                .as_str()
                .unwrap()
                .starts_with("Earthfile:"),
            "{tag}: {}",
            setting("PE_VERSION")
        );
        assert_eq!(source("base_image"), release.base_image, "{tag}");
        assert_eq!(source("provider_image"), release.provider_image, "{tag}");
        assert_eq!(
            source("agent_image"),
            format!(
                "{PUB}/edge/stylus-framework-linux-amd64:{}",
                release.pe_version
            ),
            "{tag}"
        );
        assert_eq!(
            source("third_party_image"),
            release.third_party_image,
            "{tag}"
        );
        assert_eq!(
            source("alpine_image"),
            format!("{PUB}/edge/canvos/alpine:3.20"),
            "{tag}"
        );
        assert_eq!(source("luet_repo"), release.luet_repo, "{tag}");
        assert_eq!(source("runtime_package"), release.runtime_package, "{tag}");
        assert_eq!(source("k8s_package"), "k8s/kubeadm@{version}", "{tag}");
        assert_eq!(
            shown["provider_images"][0],
            format!(
                "harbor.example.com/edge/ubuntu:kubeadm-1.32.3-{}-demo",
                release.pe_version
            ),
            "{tag}"
        );
        assert_eq!(setting("ISO_NAME")["value"], "installer", "{tag}");
        assert_eq!(
            setting("BUNDLE_K8S_AND_AGENT_PROVIDER")["value"],
            if release.always_bundles {
                "true"
            } else {
                "false"
            },
            "{tag}"
        );
        assert_eq!(shown["diagnostics"], Value::Array(vec![]), "{tag}");
    }
}

fn the_users_layers_win_over_the_earthfile_and_fips_switches_its_repository() {
    let dir = checkout("v4.9.38");
    let shown = config_show(
        &dir,
        &[
            "K8S_DISTRIBUTION=k3s",
            "ARCH=arm64",
            "OS_VERSION=24.04",
            "FIPS_ENABLED=true",
            "PE_VERSION=v4.9.40",
            "ISO_NAME=site-a",
        ],
    );
    let source = |key: &str| shown["sources"][key].as_str().unwrap().to_string();
    assert_eq!(
        source("base_image"),
        "us-docker.pkg.dev/palette-images-fips/edge/kairos-ubuntu:24.04-core-arm64-generic-v4.0.4"
    );
    assert_eq!(
        source("agent_image"),
        "us-docker.pkg.dev/palette-images-fips/edge/stylus-framework-linux-arm64:v4.9.40"
    );
    assert_eq!(
        source("provider_image"),
        "us-docker.pkg.dev/palette-images-fips/edge/kairos-io/provider-k3s:v4.9.7"
    );
    assert_eq!(
        source("luet_repo"),
        "us-docker.pkg.dev/palette-images/edge/luet-repo-arm"
    );
    assert_eq!(shown["settings"]["ISO_NAME"]["source"], "--set");
    // The LET of the FIPS condition, at its line.
    assert_eq!(
        shown["settings"]["SPECTRO_PUB_REPO"]["source"],
        "Earthfile:17"
    );
}

fn a_checkout_without_an_earthfile_says_it_uses_forges_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let shown = config_show(dir.path(), SITE);
    assert_eq!(shown["earthfile"], Value::Null);
    assert_eq!(shown["settings"]["PE_VERSION"]["source"], "default");
    let mut cmd = support::forge_command();
    let out = cmd
        .current_dir(dir.path())
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(
        support::text(&out).contains(
            "release: no Earthfile in the checkout: forge's defaults (spectrocloud/CanvOS fb36e29 (2026-08-21))"
        ),
        "{}",
        support::text(&out)
    );
}

/// A v4.9.38 checkout with the example's `.arg` and `user-data`.
fn v4_9_checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        checkout("v4.9.38").join("Earthfile"),
        dir.path().join("Earthfile"),
    )
    .unwrap();
    let example = support::root().join("examples/canvos");
    for name in [".arg", "user-data"] {
        std::fs::copy(example.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn a_checkout_is_read_as_earthly_reads_it() {
    let dir = v4_9_checkout();
    let validate = support::forge_command()
        .current_dir(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    let text = support::text(&validate);
    assert_eq!(validate.status.code(), Some(0), "{text}");
    assert!(
        text.contains("read from the checkout, as Earthly reads them: Earthfile, .arg, user-data"),
        "{text}"
    );
    let shown = config_show(dir.path(), &[]);
    let source = |name: &str| {
        shown["settings"][name]["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(source("IMAGE_REGISTRY"), ".arg:4");
    assert_eq!(source("PE_VERSION"), "Earthfile:25");
    // The .arg's CUSTOM_TAG is the user's, on the release's PE_VERSION.
    assert_eq!(
        shown["provider_images"][0],
        "registry.example.com/edge/ubuntu:k3s-1.33.1-v4.9.38-demo"
    );
    // With --config, .arg is read only when named, as a forge.yaml user means it.
    std::fs::write(dir.path().join("forge.yaml"), "k8s_distribution: rke2\n").unwrap();
    let mut cmd = support::forge_command();
    let out = cmd
        .current_dir(dir.path())
        .args([
            "config",
            "show",
            "--config",
            "forge.yaml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["settings"]["IMAGE_REGISTRY"]["value"], Value::Null);
    assert_eq!(
        shown["settings"]["K8S_DISTRIBUTION"]["source"],
        "forge.yaml:1"
    );
    // Outside a checkout, validate has nothing to read.
    let empty = tempfile::tempdir().unwrap();
    let out = support::forge_command()
        .current_dir(empty.path())
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        support::text(&out).contains("nothing to validate"),
        "{}",
        support::text(&out)
    );
}

fn an_iso_needs_user_data_and_images_alone_do_not() {
    let dir = v4_9_checkout();
    std::fs::remove_file(dir.path().join("user-data")).unwrap();
    let no_engine = "unix:///nonexistent/docker.sock";
    for args in [
        &["build"][..],
        &["build", "--only", "iso"],
        &["iso", "--image", "x:1"],
    ] {
        let out = support::forge_command()
            .current_dir(dir.path())
            .env("DOCKER_HOST", no_engine)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            support::text(&out)
        );
        assert!(
            support::text(&out).contains("error: no user-data for the installer ISO: give --user-data FILE (or a directory, one ISO per *.yaml), or put it in the checkout as `user-data`, as CanvOS does; --no-iso builds the images alone"),
            "{args:?}: {}",
            support::text(&out)
        );
    }
    // --no-iso asks for none: it goes on to the engine (which is not there).
    let out = support::forge_command()
        .current_dir(dir.path())
        .env("DOCKER_HOST", no_engine)
        .args(["build", "--no-iso"])
        .output()
        .unwrap();
    assert!(
        !support::text(&out).contains("no user-data"),
        "{}",
        support::text(&out)
    );
    assert!(
        support::text(&out).contains("Docker Engine"),
        "{}",
        support::text(&out)
    );
}

/// `forge build --dry-run` in each release's checkout with no Docker Engine (and no network):
/// the steps start from that release's images, and what the base image holds comes from its
/// OS release, as the plan says.
fn each_release_is_planned_with_no_engine_and_no_network() {
    let cache = tempfile::tempdir().unwrap();
    for release in RELEASES {
        let tag = release.tag;
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            checkout(tag).join("Earthfile"),
            dir.path().join("Earthfile"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".arg"),
            SITE.join("\n").replace("kubeadm", "k3s"),
        )
        .unwrap();
        let out = support::forge_command()
            .current_dir(dir.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("XDG_CACHE_HOME", cache.path())
            .args(["build", "--dry-run", "--no-iso", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{tag}: {}", support::text(&out));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["facts_from"], "known", "{tag}");
        let bundle = if release.always_bundles {
            serde_json::json!("forced")
        } else {
            serde_json::json!({"old_systemd": 249})
        };
        assert_eq!(
            plan["bundle"], bundle,
            "{tag}: Ubuntu 22.04's systemd is 249"
        );
        let steps = plan["steps"].as_array().unwrap();
        let provider = steps.iter().find(|s| s["kind"] == "provider").unwrap();
        assert_eq!(
            provider["image"],
            format!(
                "harbor.example.com/edge/ubuntu:k3s-1.32.3-{}-demo",
                release.pe_version
            ),
            "{tag}"
        );
        let from: Vec<&str> = provider["from"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let agent = format!(
            "{PUB}/edge/stylus-framework-linux-amd64:{}",
            release.pe_version
        );
        assert!(from.contains(&agent.as_str()), "{tag}: {from:?}");
        assert!(from.contains(&release.third_party_image), "{tag}: {from:?}");
        let os = steps.iter().find(|s| s["kind"] == "os").unwrap();
        assert_eq!(os["from"][0], release.base_image, "{tag}");
        assert!(
            support::text(&out).contains("planned offline"),
            "{tag}: {}",
            support::text(&out)
        );
    }
}
