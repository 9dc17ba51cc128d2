//! The settings forge understands, declared once each ([`settings!`]): the CanvOS name, the
//! typed field of [`Settings`], the kind its value is checked by, the default and the
//! documentation. The table [`SETTINGS`] (`forge config show`, `forge.yaml`'s schema, the
//! README) and the struct come from the same lines, so a default lives in one place.
//!
//! [`Settings`] is what the rest of forge reads: typed fields (enums for the OS, the
//! distribution, the architecture, the compression; booleans; resolved paths), serialised
//! under the settings' lowercase names for the templates.

use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::matrix::Matrix;
use super::{Environment, Setting, Values};

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

/// A typed value read from a setting's text.
trait Typed: Sized + Default {
    /// The value `setting` holds (a non-empty text); `None` when the text is not one, which
    /// the checks report.
    fn typed(setting: &Setting, def: &Def, values: &Values) -> Option<Self>;
    /// The value of a setting set empty, as an empty `ARG` in CanvOS (an empty text, false,
    /// nothing); `None` where emptiness means nothing (a choice, a size): the default then.
    fn unset() -> Option<Self>;
}

impl Typed for String {
    fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
        Some(setting.value.clone())
    }
    fn unset() -> Option<Self> {
        Some(String::new())
    }
}

impl Typed for bool {
    fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
        match setting.value.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn unset() -> Option<Self> {
        Some(false)
    }
}

impl Typed for Vec<String> {
    fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
        Some(
            setting
                .value
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
        )
    }
    fn unset() -> Option<Self> {
        Some(Vec::new())
    }
}

impl Typed for Option<String> {
    fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
        Some(Some(setting.value.clone()))
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

/// A file setting: its path resolved against where it was set; an optional file
/// ([`Kind::OptionalFile`]) only when it is there (CanvOS's `COPY --if-exists`).
impl Typed for Option<PathBuf> {
    fn typed(_: &Setting, def: &Def, values: &Values) -> Option<Self> {
        Some(
            values
                .path(def.name)
                .filter(|p| def.kind != Kind::OptionalFile || p.is_file()),
        )
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

/// A size in bytes, as GNU `split --bytes` reads it ([`crate::units::parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Bytes(pub u64);

impl Typed for Bytes {
    fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
        crate::units::parse_size(&setting.value).map(Bytes)
    }
    fn unset() -> Option<Self> {
        None
    }
}

/// An enum whose variants are the words a setting may hold.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
        pub enum $name {
            #[default]
            $($variant,)*
        }

        impl $name {
            /// Every word, in order.
            pub const NAMES: &[&str] = &[$($text,)*];

            /// The word of this value, as CanvOS writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl Typed for $name {
            fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
                $name::parse(&setting.value)
            }
            fn unset() -> Option<Self> {
                None
            }
        }

        impl Typed for Option<$name> {
            fn typed(setting: &Setting, _: &Def, _: &Values) -> Option<Self> {
                $name::parse(&setting.value).map(Some)
            }
            fn unset() -> Option<Self> {
                Some(None)
            }
        }
    };
}

choice! {
    /// `OS_DISTRIBUTION`.
    Os {
        Ubuntu = "ubuntu",
        OpensuseLeap = "opensuse-leap",
        Rhel = "rhel",
        Sles = "sles",
    }
}

choice! {
    /// `K8S_DISTRIBUTION`.
    Distribution {
        K3s = "k3s",
        Rke2 = "rke2",
        Kubeadm = "kubeadm",
        KubeadmFips = "kubeadm-fips",
        Nodeadm = "nodeadm",
        Canonical = "canonical",
    }
}

choice! {
    /// `ARCH`: what the artifacts run on.
    Arch {
        Amd64 = "amd64",
        Arm64 = "arm64",
    }
}

choice! {
    /// `SQUASHFS_COMPRESSION`: the compressor of the ISO's root file system.
    Compression {
        Gzip = "gzip",
        Xz = "xz",
        Zstd = "zstd",
        Lz4 = "lz4",
        Lzo = "lzo",
        Lzma = "lzma",
    }
}

/// Declares every setting once: `NAME field: Type = Kind, default, "doc"`. Makes [`SETTINGS`],
/// [`Settings`] and the reading of one from the resolved values.
macro_rules! settings {
    ($($name:literal $field:ident: $ty:ty = $kind:ident, $default:expr, $doc:literal;)*) => {
        /// Every setting, in display order. The README's settings reference mirrors this table.
        pub const SETTINGS: &[Def] = &[
            $(Def { name: $name, kind: Kind::$kind, default: $default, doc: $doc },)*
        ];

        /// The build settings, resolved and typed. Serialised (for the templates) under the
        /// settings' lowercase names; the version matrix, the checkout and the environment are
        /// beside them.
        #[derive(Debug, Clone, Serialize)]
        pub struct Settings {
            $(#[doc = $doc] pub $field: $ty,)*
            /// The CanvOS checkout: its files are the defaults of file settings.
            #[serde(skip)]
            pub checkout: PathBuf,
            /// The Kubernetes versions per distribution.
            #[serde(skip)]
            pub matrix: Matrix,
            /// What forge reads from the process environment besides `FORGE_*`.
            #[serde(skip)]
            pub environment: Environment,
        }

        impl Settings {
            /// The typed settings of `values`; a value its checks refused reads as the
            /// default (a build never starts with such a value).
            pub(super) fn read(values: &Values, matrix: Matrix, environment: Environment) -> Settings {
                let mut defs = SETTINGS.iter();
                Settings {
                    $($field: typed(values, defs.next().expect("one definition per field")),)*
                    checkout: values.checkout().to_path_buf(),
                    matrix,
                    environment,
                }
            }
        }
    };
}

/// The value of `def`: its setting's; the default's when that is refused (the checks report
/// it) or unset; [`Typed::unset`] when it is set empty.
fn typed<T: Typed>(values: &Values, def: &Def) -> T {
    let default = || {
        let default = Setting {
            value: def.default?.to_string(),
            origin: super::Origin::Default,
        };
        T::typed(&default, def, values)
    };
    match values.setting(def.name) {
        Some(setting) if setting.value.is_empty() => T::unset().or_else(default),
        Some(setting) => T::typed(setting, def, values).or_else(default),
        None => default().or_else(T::unset),
    }
    .unwrap_or_default()
}

settings! {
    "IMAGE_REGISTRY" image_registry: Option<String> = Text, None, "Registry the provider images are pushed to: host[:port][/namespace], no scheme.";
    "IMAGE_REPO" image_repo: String = Repository, None, "Repository name of the provider images. Default: the value of OS_DISTRIBUTION.";
    "CUSTOM_TAG" custom_tag: Option<String> = Text, None, "Environment suffix of image tags (PE_VERSION-CUSTOM_TAG): letters, digits, '_', '.' and '-', as an image tag.";
    "OS_DISTRIBUTION" os_distribution: Os = Text, Some("ubuntu"), "ubuntu, opensuse-leap, rhel or sles.";
    "OS_VERSION" os_version: String = Tag, Some("22.04"), "OS release, e.g. 22.04 or 24.04 for Ubuntu (20 and 22 mean 20.04 and 22.04, as in CanvOS).";
    "K8S_DISTRIBUTION" k8s_distribution: Option<Distribution> = Text, None, "k3s, rke2, kubeadm, kubeadm-fips, nodeadm or canonical. Required for provider images.";
    "K8S_VERSION" k8s_version: Vec<String> = Versions, None, "Kubernetes version(s) x.y.z; empty means every version of K8S_DISTRIBUTION in the matrix.";
    "K8S_VERSION_FILE" k8s_version_file: Option<PathBuf> = File, None, "Kubernetes version matrix in the k8s_version.json shape. Default: the checkout's k8s_version.json, else the matrix shipped with forge.";
    "PE_VERSION" pe_version: String = Tag, Some("v4.9.38"), "Palette edge agent version: the stylus framework image's tag and part of the provider image tag.";
    "ISO_NAME" iso_name: String = Text, Some("palette-edge-installer"), "Installer ISO file name without .iso, also the installer image's name: lowercase letters and digits separated by '-', '_' or '__'.";
    "ARCH" arch: Arch = Text, Some("amd64"), "amd64 or arm64. amd64 artifacts need an AMD64 build host.";
    "SPECTRO_PUB_REPO" spectro_pub_repo: String = Registry, Some("us-docker.pkg.dev/palette-images"), "Where the Palette images come from (base, provider, stylus, builder); the -fips repository when FIPS_ENABLED and this is the default.";
    "SPECTRO_LUET_REPO" spectro_luet_repo: String = Registry, Some("us-docker.pkg.dev/palette-images/edge"), "Where luet finds the Kubernetes packages: SPECTRO_LUET_REPO/luet-repo-amd (or -arm); with SPECTRO_LUET_VERSION, SPECTRO_LUET_REPO/LUET_PROJECT[-arm]/SPECTRO_LUET_VERSION.";
    "SPECTRO_LUET_VERSION" spectro_luet_version: Option<String> = Tag, None, "The luet repository's version folder of CanvOS up to v4.7.11 (their Earthfile sets it; kubeadm then also installs containerd from luet). Unset since.";
    "LUET_PROJECT" luet_project: String = Repository, Some("luet-repo"), "The luet repository's name with SPECTRO_LUET_VERSION (CanvOS up to v4.7.11): LUET_PROJECT for amd64, LUET_PROJECT-arm for arm64.";
    "KAIROS_BASE_IMAGE_URL" kairos_base_image_url: Option<String> = Registry, None, "Where the Kairos base images come from. Default: SPECTRO_PUB_REPO/edge.";
    "KAIROS_INIT_VERSION" kairos_init_version: String = Tag, Some("v0.17.1"), "Version suffix of the Kairos base image tags (CanvOS v4.10 and later).";
    "KAIROS_VERSION" kairos_version: Option<String> = Tag, None, "The Kairos release: the version suffix of the base image tags up to CanvOS v4.10.0, whose Earthfile composes BASE_IMAGE from it.";
    "BASE_IMAGE" base_image: Option<String> = Image, None, "Overrides the OS base image (required for rhel and sles).";
    "K3S_PROVIDER_VERSION" k3s_provider_version: String = Tag, Some("v4.10.3"), "Tag of the Kairos provider image for k3s.";
    "KUBEADM_PROVIDER_VERSION" kubeadm_provider_version: String = Tag, Some("v4.10.1"), "Tag of the Kairos provider image for kubeadm and kubeadm-fips.";
    "RKE2_PROVIDER_VERSION" rke2_provider_version: String = Tag, Some("v4.10.3"), "Tag of the Kairos provider image for rke2.";
    "NODEADM_PROVIDER_VERSION" nodeadm_provider_version: String = Tag, Some("v4.9.3"), "Tag of the Kairos provider image for nodeadm.";
    "CANONICAL_PROVIDER_VERSION" canonical_provider_version: String = Tag, Some("v4.10.1"), "Tag of the Kairos provider image for canonical.";
    "PROVIDER_IMAGE" provider_image: Option<String> = Image, None, "Overrides the Kairos provider image copied into provider images.";
    "K3S_FLAVOR_TAG" k3s_flavor_tag: String = Tag, Some("k3s1"), "Suffix of k3s package versions in the luet repository (1.32.3-k3s1).";
    "RKE2_FLAVOR_TAG" rke2_flavor_tag: String = Tag, Some("rke2r1"), "Suffix of rke2 package versions in the luet repository (1.32.3-rke2r1).";
    "K8S_IMAGE" k8s_image: Option<String> = Image, None, "Optional: an image holding the Kubernetes files, {version} standing for the Kubernetes version, used instead of installing them with luet.";
    "BUNDLE_K8S_AND_AGENT_PROVIDER" bundle_k8s_and_agent_provider: bool = Bool, Some("false"), "Bundle the Kairos provider and Kubernetes into provider images even when the base image's systemd (255 or newer) lets the agent bring them as system extensions.";
    "AGENT_IMAGE" agent_image: Option<String> = Image, None, "Overrides the stylus framework image (default: SPECTRO_PUB_REPO/edge/stylus-framework-linux-ARCH:PE_VERSION).";
    "BUILDER_3RDPARTY_VERSION" builder_3rdparty_version: String = Tag, Some("4.8"), "Tag of the third-party image that holds luet and etcdctl.";
    "SPECTRO_THIRD_PARTY_IMAGE" spectro_third_party_image: Option<String> = Image, None, "The third-party image with luet and etcdctl. Default: us-docker.pkg.dev/palette-images/third-party/spectro-third-party:BUILDER_3RDPARTY_VERSION.";
    "ALPINE_TAG" alpine_tag: String = Tag, Some("3.20"), "Tag of the builder image that installs Kubernetes with luet.";
    "ALPINE_IMG" alpine_img: Option<String> = Image, None, "The builder image that installs Kubernetes with luet. Default: SPECTRO_PUB_REPO/edge/canvos/alpine:ALPINE_TAG.";
    "HTTP_PROXY" http_proxy: Option<String> = ProxyUrl, None, "Build-time HTTP proxy, http(s)://[user:password@]host:port.";
    "HTTPS_PROXY" https_proxy: Option<String> = ProxyUrl, None, "Build-time HTTPS proxy, http(s)://[user:password@]host:port.";
    "NO_PROXY" no_proxy: Option<String> = HostList, None, "Hosts and CIDRs that bypass the build-time proxy, comma-separated.";
    "DRBD_VERSION" drbd_version: String = Tag, Some("9.2.13"), "Build argument of the checkout's Dockerfile (CanvOS's DRBD example).";
    "CLUSTERCONFIG" clusterconfig: Option<PathBuf> = OptionalFile, None, "Cluster definition archive (spc.tgz) embedded in the ISO; skipped with a note when absent.";
    "EDGE_CUSTOM_CONFIG" edge_custom_config: Option<PathBuf> = OptionalFile, Some(".edge-custom-config.yaml"), "Extra configuration embedded in the provider images and the ISO; skipped with a note when absent.";
    "FORCE_INTERACTIVE_INSTALL" force_interactive_install: bool = Bool, Some("false"), "Make the interactive installer the default boot entry (entry 2).";
    "DEBUG" debug: bool = Bool, Some("false"), "Add Kairos's debug arguments (rd.immucore.debug console=tty0 rd.debug) to the installer's boot entries.";
    "ISO_KERNEL_ARGS" iso_kernel_args: Option<String> = KernelArgs, None, "Extra kernel arguments of every boot entry of the installer ISO.";
    "SQUASHFS_COMPRESSION" squashfs_compression: Compression = Text, Some("gzip"), "Compression of the ISO's rootfs.squashfs: gzip, xz, zstd, lz4, lzo or lzma.";
    "CONTENT_PART_SIZE" content_part_size: Bytes = Text, Some("3GB"), "Size of the parts content bundles are cut into on the ISO, as CanvOS's `split --bytes=3GB` (NAME_part00, NAME_part01, ...): bytes, K/M/G or KiB/MiB/GiB (powers of 1024), KB/MB/GB (powers of 1000).";
    "ISO_TOOLS_IMAGE" iso_tools_image: String = Image, Some("debian:bookworm-slim"), "Base of the builder image whose tools master the ISO (apt-based).";
    "FIPS_ENABLED" fips_enabled: bool = Bool, Some("false"), "Build FIPS images: the -fips image repository and the vertex binaries. Not together with UPDATE_KERNEL.";
    "UPDATE_KERNEL" update_kernel: bool = Bool, Some("false"), "Install the HWE kernel instead of holding the image's kernel (Ubuntu). Not together with FIPS_ENABLED.";
    "DISABLE_SELINUX" disable_selinux: bool = Bool, Some("true"), "Turn SELinux off on the kernel command line (/etc/cos/bootargs.cfg).";
    "IS_UKI" is_uki: bool = Unimplemented, Some("false"), "Unified kernel images for Trusted Boot: not implemented, must be false.";
    "IS_MAAS" is_maas: bool = Unimplemented, Some("false"), "MAAS images: not implemented, must be false.";
    "UBUNTU_PRO_ATTACH" ubuntu_pro_attach: bool = Unimplemented, Some("false"), "Ubuntu Pro attachment: not implemented, must be false.";
    "CIS_HARDENING" cis_hardening: bool = Unimplemented, Some("false"), "CIS hardening script: not implemented, must be false.";
    "INSTALL_NVIDIA_GPU_DRIVERS" install_nvidia_gpu_drivers: bool = Unimplemented, Some("false"), "NVIDIA driver pre-install: not implemented, must be false.";
    "INSTALL_AMD_GPU_DRIVERS" install_amd_gpu_drivers: bool = Unimplemented, Some("false"), "AMD GPU driver pre-install: not implemented, must be false.";
    "TWO_NODE" two_node: bool = Unimplemented, Some("false"), "Two-node clusters (PostgreSQL and kine): not implemented, must be false.";
}

impl Settings {
    /// The value of the setting a data file names (`K3S_PROVIDER_VERSION`), as the templates
    /// see it (unset: empty); `None` when there is no such setting.
    pub fn text(&self, name: &str) -> Option<String> {
        SETTINGS.iter().find(|d| d.name == name)?;
        let value = serde_json::to_value(self).ok()?;
        Some(match &value[name.to_ascii_lowercase().as_str()] {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// The Kubernetes versions to build: `K8S_VERSION`, or every version of the distribution.
    pub fn k8s_versions(&self) -> Vec<String> {
        match (&self.k8s_version[..], self.k8s_distribution) {
            ([], Some(distribution)) => self.matrix.versions(distribution.as_str()).to_vec(),
            (versions, _) => versions.to_vec(),
        }
    }

    /// The provider image of `version` ([`super::PROVIDER_IMAGE`]), when the registry and the
    /// distribution are set.
    pub fn provider_tag(&self, version: &str) -> Option<String> {
        let registry = self.image_registry.as_deref()?.trim_end_matches('/');
        let distribution = self.k8s_distribution?;
        let tag = format!("{distribution}-{version}-{}", self.pe_version);
        Some(format!(
            "{registry}/{}:{}",
            self.image_repo,
            self.with_custom_tag(tag)
        ))
    }

    /// Where `--push-iso` puts the installer ISO named `name` (its file stem: ISO_NAME, or
    /// ISO_NAME-<site> for one of several), as CanvOS's `+iso-disk-image`
    /// ([`super::ISO_IMAGE`]), when the registry is set.
    pub fn iso_image_tag(&self, name: &str) -> Option<String> {
        let registry = self.image_registry.as_deref()?.trim_end_matches('/');
        let tag = self.with_custom_tag(self.pe_version.clone());
        Some(format!("{registry}/{}/{name}:{tag}", self.image_repo))
    }

    /// `tag`, and `-CUSTOM_TAG` when there is one.
    fn with_custom_tag(&self, mut tag: String) -> String {
        if let Some(custom) = &self.custom_tag {
            tag.push('-');
            tag.push_str(custom);
        }
        tag
    }
}
