//! Every CanvOS setting of a non-UKI build changes what it changes in CanvOS: each row sets one
//! setting on the CanvOS defaults and names what must appear in (and vanish from) the plan that
//! `forge build --dry-run` prints. Plans are made with the library, facts given (no engine).

use std::path::Path;

use forge::config::{resolve, Inputs};
use forge::plan::{plan, Facts, Inputs as PlanInputs, Plan};
use forge::render::Templates;

tests! {
    the_defaults_are_canvos_defaults,
    each_canvos_setting_changes_what_it_changes_in_canvos,
    a_base_with_systemd_255_or_newer_leaves_kubernetes_to_the_agent,
}

/// The plan of the defaults plus `sets`, the base image's systemd being `systemd`.
fn plan_with(sets: &[(&str, &str)], systemd: u32) -> Plan {
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir(checkout.path().join("scripts")).unwrap();
    std::fs::write(
        checkout.path().join("scripts/install-kernel-headers.sh"),
        "#!/bin/sh\n",
    )
    .unwrap();
    let mut all = vec![
        ("IMAGE_REGISTRY", "registry.example.com/edge"),
        ("K8S_DISTRIBUTION", "k3s"),
        ("K8S_VERSION", "1.32.3"),
    ];
    all.extend_from_slice(sets);
    let settings = resolve(&Inputs {
        sets: all
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        checkout: Some(checkout.path().to_path_buf()),
        ..Inputs::default()
    });
    let errors: Vec<_> = settings
        .diagnostics
        .iter()
        .filter(|d| d.severity == forge::diagnostic::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{sets:?}: {errors:?}");
    let templates = Templates::load(None).unwrap();
    let sources = templates.sources(&settings.settings).unwrap();
    let empty = tempfile::tempdir().unwrap();
    plan(&PlanInputs {
        settings: &settings.settings,
        templates: &templates,
        sources: &sources,
        facts: Facts {
            systemd: Some(systemd),
            stylus_config: true,
        },
        certs: None,
        overlays: None,
        output: Path::new("build"),
        user_data: &[],
        empty: empty.path(),
        providers: true,
    })
    .unwrap()
}

/// Every step's Dockerfile, images and build arguments, as one text to search.
fn text(plan: &Plan) -> String {
    plan.steps
        .iter()
        .map(|s| {
            format!(
                "## {} {}\nfrom: {}\nargs: {:?}\n{}\n",
                s.name(),
                s.tag,
                s.from_images().join(" "),
                s.build_args,
                s.dockerfile
            )
        })
        .collect()
}

struct Case {
    sets: &'static [(&'static str, &'static str)],
    systemd: u32,
    present: &'static [&'static str],
    absent: &'static [&'static str],
}

const fn case(
    sets: &'static [(&'static str, &'static str)],
    present: &'static [&'static str],
    absent: &'static [&'static str],
) -> Case {
    Case {
        sets,
        systemd: 252,
        present,
        absent,
    }
}

fn the_defaults_are_canvos_defaults() {
    let plan = text(&plan_with(&[], 252));
    for expected in [
        "from: us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1",
        "FROM us-docker.pkg.dev/palette-images/edge/kairos-io/provider-k3s:v4.10.3 AS provider",
        "FROM us-docker.pkg.dev/palette-images/edge/stylus-framework-linux-amd64:v4.9.38 AS stylus",
        "FROM us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8 AS third-party",
        "FROM us-docker.pkg.dev/palette-images/edge/canvos/alpine:3.20 AS kubernetes",
        "luet repo add spectro --type docker --url us-docker.pkg.dev/palette-images/edge/luet-repo-amd --priority 1 -y",
        "luet install -y k8s/k3s@1.32.3-k3s1 --system-target /output && luet cleanup",
        "/binaries/etcdctl/latest/palette/amd64/etcdctl",
        "KAIROS_IMAGE_LABEL=\"22.04-standard-amd64-generic\"",
        "s/selinux=1/selinux=0/g",
        "systemd.unified_cgroup_hierarchy=1",
        "rd.driver.blacklist=nouveau modprobe.blacklist=nouveau nouveau.modeset=0",
        "apt-mark hold linux-image-generic linux-headers-generic linux-generic",
        "dracut -f \"/boot/initrd-${kernel}\"",
        "registry.example.com/edge/ubuntu:k3s-1.32.3-v4.9.38",
        "\"DRBD_VERSION\": \"9.2.13\"",
    ] {
        assert!(plan.contains(expected), "missing {expected:?}:\n{plan}");
    }
    assert!(plan.starts_with("## os "), "{plan}");
}

fn each_canvos_setting_changes_what_it_changes_in_canvos() {
    let cases = [
        case(
            &[("SPECTRO_PUB_REPO", "mirror.example.com:5000/pi")],
            &[
                "from: mirror.example.com:5000/pi/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1",
                "FROM mirror.example.com:5000/pi/edge/kairos-io/provider-k3s:v4.10.3 AS provider",
                "FROM mirror.example.com:5000/pi/edge/stylus-framework-linux-amd64:v4.9.38 AS stylus",
                "FROM mirror.example.com:5000/pi/edge/canvos/alpine:3.20 AS kubernetes",
            ],
            // The luet repository and the third-party image have defaults of their own.
            &[
                "palette-images/edge/kairos",
                "palette-images/edge/stylus",
                "palette-images/edge/canvos",
            ],
        ),
        case(
            &[("SPECTRO_LUET_REPO", "mirror.example.com/luet")],
            &["--url mirror.example.com/luet/luet-repo-amd "],
            &["--url us-docker.pkg.dev"],
        ),
        case(
            &[("SPECTRO_THIRD_PARTY_IMAGE", "mirror.example.com/tp/spectro-third-party:9")],
            &["FROM mirror.example.com/tp/spectro-third-party:9 AS third-party"],
            &["spectro-third-party:4.8"],
        ),
        case(
            &[("BUILDER_3RDPARTY_VERSION", "4.9")],
            &["third-party/spectro-third-party:4.9 AS third-party"],
            &["spectro-third-party:4.8"],
        ),
        case(
            &[("KAIROS_BASE_IMAGE_URL", "kairos.example.com/base")],
            &["from: kairos.example.com/base/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1"],
            &["edge/kairos-ubuntu"],
        ),
        case(
            &[("KAIROS_INIT_VERSION", "v0.18.2")],
            &["kairos-ubuntu:22.04-core-amd64-generic-v0.18.2"],
            &["v0.17.1"],
        ),
        case(
            &[("K3S_PROVIDER_VERSION", "v4.11.0")],
            &["kairos-io/provider-k3s:v4.11.0 AS provider"],
            &["provider-k3s:v4.10.3"],
        ),
        case(
            &[("K8S_DISTRIBUTION", "rke2"), ("RKE2_PROVIDER_VERSION", "v4.11.1")],
            &["kairos-io/provider-rke2:v4.11.1 AS provider", "k8s/rke2@1.32.3-rke2r1"],
            &["provider-k3s"],
        ),
        case(
            &[("K8S_DISTRIBUTION", "rke2"), ("RKE2_FLAVOR_TAG", "rke2r2")],
            &["k8s/rke2@1.32.3-rke2r2"],
            &["rke2r1"],
        ),
        case(
            &[("K3S_FLAVOR_TAG", "k3s2")],
            &["k8s/k3s@1.32.3-k3s2"],
            &["k3s1"],
        ),
        case(
            &[("K8S_DISTRIBUTION", "kubeadm-fips"), ("KUBEADM_PROVIDER_VERSION", "v4.11.2")],
            &[
                "kairos-io/provider-kubeadm:v4.11.2 AS provider",
                "k8s/kubeadm-fips@1.32.3 ",
                ":kubeadm-fips-1.32.3-v4.9.38",
            ],
            &["@1.32.3-"],
        ),
        case(
            &[("K8S_DISTRIBUTION", "kubeadm")],
            &["COPY install-kernel-headers.sh /tmp/install-kernel-headers.sh", "k8s/kubeadm@1.32.3 "],
            &[],
        ),
        case(
            &[("K8S_DISTRIBUTION", "nodeadm"), ("NODEADM_PROVIDER_VERSION", "v4.9.9")],
            &["kairos-io/provider-nodeadm:v4.9.9 AS provider", "nodeadm install -p iam-ra 1.32.3"],
            &[],
        ),
        case(
            &[("K8S_DISTRIBUTION", "canonical"), ("CANONICAL_PROVIDER_VERSION", "v4.12.0")],
            &["kairos-io/provider-canonical:v4.12.0 AS provider", "k8s/canonical@1.32.3 "],
            &[],
        ),
        case(
            &[("ALPINE_TAG", "3.21")],
            &["edge/canvos/alpine:3.21 AS kubernetes", "edge/canvos/alpine:3.21 AS etcdctl"],
            &["alpine:3.20"],
        ),
        case(
            &[("ALPINE_IMG", "mirror.example.com/alpine:edge")],
            &["FROM mirror.example.com/alpine:edge AS kubernetes"],
            &["canvos/alpine"],
        ),
        case(
            &[("DISABLE_SELINUX", "false")],
            &["systemd.unified_cgroup_hierarchy=1"],
            &["selinux=0"],
        ),
        case(
            &[("UPDATE_KERNEL", "true")],
            &[
                "apt-get install -y linux-image-generic-hwe-22.04",
                "apt-get upgrade -y --with-new-pkgs",
                "/tmp/install-kernel-headers.sh",
            ],
            &["apt-mark hold"],
        ),
        case(
            &[("FIPS_ENABLED", "true")],
            &[
                "us-docker.pkg.dev/palette-images-fips/edge/kairos-ubuntu:",
                "palette-images-fips/edge/stylus-framework-linux-amd64",
                "/binaries/luet/latest/vertex/amd64/luet",
                "/binaries/etcdctl/latest/vertex/amd64/etcdctl",
                "grep -v fips",
            ],
            &["/latest/palette/", "dracut -f"],
        ),
        case(
            &[("FIPS_ENABLED", "true"), ("SPECTRO_PUB_REPO", "mirror.example.com/pi")],
            &["mirror.example.com/pi/edge/kairos-ubuntu:"],
            &["-fips/"],
        ),
        case(
            &[("OS_VERSION", "22")],
            &["kairos-ubuntu:22.04-core-amd64", "KAIROS_IMAGE_LABEL=\"22.04-standard-amd64-generic\"", "KAIROS_NAME=\"kairos-core-ubuntu-22\""],
            &[],
        ),
        case(
            &[("OS_VERSION", "20")],
            &["kairos-ubuntu:20.04-core-amd64", "linux-image-generic-hwe-20"],
            &[],
        ),
        case(
            &[("OS_VERSION", "24.04")],
            &["kairos-ubuntu:24.04-core-amd64", "KAIROS_IMAGE_LABEL=\"24.04-standard-amd64-generic\""],
            &[],
        ),
        case(
            &[("OS_DISTRIBUTION", "opensuse-leap"), ("OS_VERSION", "15.6")],
            &[
                "edge/kairos-opensuse:leap-15.6-core-amd64-generic-v0.17.1",
                "zypper al kernel-de*",
                "apparmor-parser",
                "registry.example.com/edge/opensuse-leap:k3s-1.32.3",
            ],
            &["apt-get"],
        ),
        case(
            &[("PE_VERSION", "v4.10.2")],
            &["stylus-framework-linux-amd64:v4.10.2 AS stylus", ":k3s-1.32.3-v4.10.2"],
            &["v4.9.38"],
        ),
        case(&[("DRBD_VERSION", "9.2.14")], &["\"DRBD_VERSION\": \"9.2.14\""], &[]),
        case(
            &[("K8S_IMAGE", "mirror.example.com/k8s/k3s:v{version}")],
            &["FROM mirror.example.com/k8s/k3s:v1.32.3 AS kubernetes", "COPY --from=kubernetes / /"],
            &["luet"],
        ),
        case(
            &[("ARCH", "arm64")],
            &["luet-repo-arm", "kairos-ubuntu:22.04-core-arm64-generic", "/binaries/etcdctl/latest/palette/arm64/etcdctl"],
            &["apt-get"],
        ),
        Case {
            sets: &[("BUNDLE_K8S_AND_AGENT_PROVIDER", "true")],
            systemd: 256,
            present: &["COPY --from=provider / /", "k8s-and-agent-provider-bundled", "luet install"],
            absent: &[],
        },
    ];
    for case in &cases {
        let plan = text(&plan_with(case.sets, case.systemd));
        for expected in case.present {
            assert!(
                plan.contains(expected),
                "{:?}: missing {expected:?}:\n{plan}",
                case.sets
            );
        }
        for unexpected in case.absent {
            assert!(
                !plan.contains(unexpected),
                "{:?}: still has {unexpected:?}:\n{plan}",
                case.sets
            );
        }
    }
}

fn a_base_with_systemd_255_or_newer_leaves_kubernetes_to_the_agent() {
    let plan = text(&plan_with(&[], 255));
    for gone in [
        "luet",
        "AS provider",
        "k8s-and-agent-provider-bundled",
        "/system/providers",
    ] {
        assert!(!plan.contains(gone), "still has {gone:?}:\n{plan}");
    }
    assert!(plan.contains("/usr/bin/etcdctl") || plan.contains("COPY --from=etcdctl"));
}
