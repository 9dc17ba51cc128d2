//! The build graph: the user's OS steps (the checkout's Dockerfile), the base image, one
//! provider image per Kubernetes version (all `FROM` the base, so they share its layers), and
//! the installer image; for each step its Dockerfile, build context, build arguments, tag,
//! labels and input hash (the cache key: same inputs, same hash).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::config::Settings;
use crate::limits::MAX_CACHE_META_BYTES;
use crate::render::{
    check_overlay_links, context, dockerignore, Exclude, RenderError, Sources, Templates,
};

/// Label holding a step's input hash.
pub const INPUT_HASH_LABEL: &str = "dev.forge.input-hash";
/// Registry host of images that stay in the local engine.
pub const LOCAL_HOST: &str = "forge.local";
/// The systemd version from which the Palette agent brings the Kairos provider and Kubernetes
/// as system extensions, so that provider images leave them out.
pub const SYSTEMD_EXTENSIONS: u32 = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Os,
    Base,
    Provider { version: String },
    Installer,
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Os => "os",
            Kind::Base => "base",
            Kind::Provider { .. } => "provider",
            Kind::Installer => "installer",
        }
    }
}

/// What a step's build context holds.
#[derive(Debug, Clone)]
pub enum Context {
    /// A directory forge writes: the rendered Dockerfile and `(path in the context, source)`.
    Files(Vec<(String, PathBuf)>),
    /// A directory used as it is, with its own Dockerfile and `.dockerignore` (the checkout).
    Directory { root: PathBuf },
}

/// One image to build.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: Kind,
    pub tag: String,
    pub dockerfile: String,
    pub context: Context,
    /// What the context leaves out: the user-data always; from the checkout also forge's
    /// output directory and the luet credentials.
    pub exclude: Exclude,
    /// Build arguments of this step (the proxies are added to every step at build time).
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub input_hash: String,
}

impl Step {
    /// A short display name: `os`, `base`, `provider 1.32.3`, `installer`.
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Provider { version } => format!("provider {version}"),
            kind => kind.label().to_string(),
        }
    }

    /// The images the step starts `FROM` (stages it names itself left out).
    pub fn from_images(&self) -> Vec<String> {
        let mut stages: Vec<String> = Vec::new();
        let mut images = Vec::new();
        for line in self.dockerfile.lines().map(str::trim) {
            let Some(rest) = line
                .strip_prefix("FROM ")
                .or_else(|| line.strip_prefix("from "))
            else {
                continue;
            };
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let Some(image) = words.first() else { continue };
            let image = match image.strip_prefix('$') {
                Some(arg) => self
                    .build_args
                    .get(arg.trim_matches(|c| c == '{' || c == '}'))
                    .cloned()
                    .unwrap_or_else(|| image.to_string()),
                None => image.to_string(),
            };
            if !stages.contains(&image) && !images.contains(&image) {
                images.push(image);
            }
            if let (Some(as_), Some(stage)) = (words.get(1), words.get(2)) {
                if as_.eq_ignore_ascii_case("as") {
                    stages.push(stage.to_string());
                }
            }
        }
        images
    }
}

/// Everything a build makes, in order: the OS steps and the base first, installer last.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Whether provider images carry the Kairos provider and Kubernetes, and why.
    pub bundle: Bundle,
}

/// Whether provider images bundle the Kairos provider and Kubernetes (CanvOS decides from the
/// base image's systemd version, or BUNDLE_K8S_AND_AGENT_PROVIDER forces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bundle {
    Forced,
    OldSystemd(u32),
    SystemExtensions(u32),
}

impl Bundle {
    pub fn decide(forced: bool, systemd: Option<u32>) -> Bundle {
        match (forced, systemd) {
            (false, Some(v)) if v >= SYSTEMD_EXTENSIONS => Bundle::SystemExtensions(v),
            (false, Some(v)) => Bundle::OldSystemd(v),
            _ => Bundle::Forced,
        }
    }

    pub fn bundled(self) -> bool {
        !matches!(self, Bundle::SystemExtensions(_))
    }
}

/// What forge found in the source images before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    /// The base image's systemd version; `None` when not probed (bundling is forced).
    pub systemd: Option<u32>,
    /// The stylus framework image has `/etc/kairos/80_stylus.yaml`.
    pub stylus_config: bool,
}

/// Where a plan's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactsFrom {
    /// Probed on the Docker Engine, in its copies of the images.
    Engine,
    /// An earlier probe of the same images ([`Facts::cached`]).
    Cache,
    /// What the OS release's Kairos base image is known to hold (`base-image.yaml`'s systemd);
    /// the stylus framework taken to carry `/etc/kairos/80_stylus.yaml`, as every release
    /// since v4.8 does.
    Known,
}

/// A probe as the cache keeps it: the images, then what they hold.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedProbe {
    base_image: String,
    agent_image: String,
    #[serde(flatten)]
    facts: Facts,
}

impl Facts {
    /// The probe cache's file for these sources' images, under `dir` (forge's cache).
    fn cache_file(dir: &Path, sources: &Sources) -> PathBuf {
        let key = Sha256::digest(format!(
            "{}\n{}",
            sources.get("base_image"),
            sources.get("agent_image")
        ));
        dir.join("probes").join(format!("{:x}.json", key))
    }

    /// An earlier probe of the sources' images (`forge build` keeps each), with systemd when
    /// `systemd` is wanted; `None` when there is none, or it is damaged or of other images.
    pub fn cached(dir: &Path, sources: &Sources, systemd: bool) -> Option<Facts> {
        let file = std::fs::File::open(Self::cache_file(dir, sources)).ok()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CACHE_META_BYTES + 1),
            &mut bytes,
        )
        .ok()?;
        let probe: CachedProbe = serde_json::from_slice(&bytes).ok()?;
        let same = probe.base_image == sources.get("base_image")
            && probe.agent_image == sources.get("agent_image");
        (same && (probe.facts.systemd.is_some() || !systemd)).then_some(probe.facts)
    }

    /// Keep this probe of the sources' images for plans made offline later.
    pub fn store(&self, dir: &Path, sources: &Sources) -> std::io::Result<()> {
        let file = Self::cache_file(dir, sources);
        let probe = CachedProbe {
            base_image: sources.get("base_image").to_string(),
            agent_image: sources.get("agent_image").to_string(),
            facts: *self,
        };
        let text = serde_json::to_string(&probe).map_err(std::io::Error::other)?;
        let (dir, name) = (
            file.parent().unwrap_or(dir),
            file.file_name().unwrap_or_default(),
        );
        crate::run::write_output(dir, &name.to_string_lossy(), &text).map(drop)
    }

    /// What the sources' OS release is known to hold (`base_systemd`, from `base-image.yaml`),
    /// with systemd when `systemd` is wanted; `None` when it is not known.
    pub fn known(sources: &Sources, systemd: bool) -> Option<Facts> {
        let known = sources.get("base_systemd").parse::<u32>().ok();
        if systemd && known.is_none() {
            return None;
        }
        Some(Facts {
            systemd: known.filter(|_| systemd),
            stylus_config: true,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0} is required to build provider images; set it in the .arg file, forge.yaml, FORGE_{0} or --set {0}=...")]
    Missing(&'static str),
    #[error(
        "BASE_IMAGE is required for OS_DISTRIBUTION={0}: CanvOS has no default {0} base image"
    )]
    NoBaseImage(String),
    #[error("no Kubernetes version to build: K8S_VERSION is empty and the version matrix lists none for {0}")]
    NoVersions(String),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("cannot read `{path}` for the input hash: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a plan is made from.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub templates: &'a Templates,
    pub sources: &'a Sources,
    pub facts: Facts,
    /// CA certificates for the trust stores (CanvOS's `certs/`).
    pub certs: Option<&'a Path>,
    /// `overlay/` (or `overlays/`): `files/` go into the installer image, `files/etc/` into
    /// provider images.
    pub overlays: Option<&'a Path>,
    /// forge's output directory, left out of a checkout's build context.
    pub output: &'a Path,
    /// The user-data files, left out of a checkout's build context (with the luet
    /// credentials): no `COPY .` of the user's Dockerfile may bake a secret into the base image.
    pub user_data: &'a [PathBuf],
    /// An empty directory, for the context paths that have nothing to copy.
    pub empty: &'a Path,
    /// Whether provider images are planned: not for a run that makes only the base, the
    /// installer image or the ISOs, which then needs no Kubernetes setting and no
    /// `IMAGE_REGISTRY`.
    pub providers: bool,
}

/// The checkout's optional files, each skipped when absent (CanvOS's `COPY --if-exists`).
pub const LUET_AUTH: &str = "spectro-luet-auth.yaml";
/// CanvOS's name for the user-data in a checkout: left out of the build context even when
/// another user-data is given (it holds the site's secrets, and a change to it must not
/// rebuild the base image).
pub const USER_DATA: &str = "user-data";
const KERNEL_HEADERS_SCRIPT: &str = "scripts/install-kernel-headers.sh";

/// Whether the settings and sources name everything a plan needs, before any image is
/// probed; returns the Kubernetes versions to build (none without `providers`).
pub fn check(
    settings: &Settings,
    sources: &Sources,
    providers: bool,
) -> Result<Vec<String>, PlanError> {
    if sources.get("base_image").is_empty() {
        return Err(PlanError::NoBaseImage(settings.os_distribution.to_string()));
    }
    if !providers {
        return Ok(Vec::new());
    }
    if settings.image_registry.is_none() {
        return Err(PlanError::Missing("IMAGE_REGISTRY"));
    }
    let Some(distribution) = settings.k8s_distribution else {
        return Err(PlanError::Missing("K8S_DISTRIBUTION"));
    };
    let versions = settings.k8s_versions();
    if versions.is_empty() {
        return Err(PlanError::NoVersions(distribution.to_string()));
    }
    Ok(versions)
}

/// Plan the build.
pub fn plan(inputs: &Inputs<'_>) -> Result<Plan, PlanError> {
    let settings = inputs.settings;
    let sources = inputs.sources;
    let versions = check(settings, sources, inputs.providers)?;
    let os = settings.os_distribution;
    let repo = &settings.image_repo;
    let checkout = &settings.checkout;
    let bundle = Bundle::decide(settings.bundle_k8s_and_agent_provider, inputs.facts.systemd);
    let mut ctx = context(settings);
    for (key, value) in &sources.0 {
        ctx.insert(key.as_str(), value);
    }
    let certs = inputs.certs.unwrap_or(inputs.empty).to_path_buf();
    let local = |name: String| move |hash: &str| format!("{LOCAL_HOST}/{name}:{}", &hash[7..19]);

    // The user's steps: the checkout's Dockerfile on the checkout, or forge's equivalent.
    let mut os_args = BTreeMap::from([("BASE".to_string(), sources.get("base_image").to_string())]);
    for (name, value) in [
        ("OS_DISTRIBUTION", os.as_str()),
        ("OS_VERSION", &settings.os_version),
        ("DRBD_VERSION", &settings.drbd_version),
    ] {
        os_args.insert(name.to_string(), value.to_string());
    }
    let user_dockerfile = checkout.join("Dockerfile");
    let user_data: Vec<&Path> = inputs.user_data.iter().map(PathBuf::as_path).collect();
    let secrets = Exclude::files(&user_data);
    let (dockerfile, os_context, os_exclude) = if user_dockerfile.is_file() {
        let text = crate::limits::open(&user_dockerfile)
            .and_then(std::io::read_to_string)
            .map_err(|source| PlanError::Read {
                path: user_dockerfile.clone(),
                source,
            })?;
        let given: Vec<&Path> = std::iter::once(inputs.output).collect();
        (
            text,
            Context::Directory {
                root: checkout.to_path_buf(),
            },
            Exclude::new(checkout, &given, &user_data, &[LUET_AUTH, USER_DATA]),
        )
    } else {
        (
            inputs
                .templates
                .render_dockerfile("images/os.Dockerfile", &ctx)?,
            Context::Files(vec![("certs".to_string(), certs.clone())]),
            secrets.clone(),
        )
    };
    let mut steps = Vec::new();
    let os_step = step(
        Kind::Os,
        dockerfile,
        os_context,
        os_exclude,
        os_args,
        settings,
        &local(format!("{repo}-os")),
    )?;
    ctx.insert("os_tag", &os_step.tag);
    steps.push(os_step);

    // The base image: CanvOS's preparation, per OS.
    let preparation = inputs
        .templates
        .render_dockerfile(&format!("os/{os}.Dockerfile"), &ctx)?;
    ctx.insert("os_preparation", preparation.trim_end());
    let base = step(
        Kind::Base,
        inputs
            .templates
            .render_dockerfile("images/base.Dockerfile", &ctx)?,
        Context::Files(Vec::new()),
        secrets.clone(),
        BTreeMap::new(),
        settings,
        &local(format!("{repo}-base")),
    )?;
    ctx.insert("base_tag", &base.tag);
    steps.push(base);

    // Provider images.
    if let Some(overlays) = inputs.overlays {
        check_overlay_links(overlays, checkout)?;
    }
    let overlay_files = inputs
        .overlays
        .map(|o| o.join("files"))
        .filter(|f| f.is_dir());
    let overlay_etc = overlay_files
        .as_ref()
        .map(|f| f.join("etc"))
        .filter(|e| e.is_dir())
        .unwrap_or_else(|| inputs.empty.to_path_buf());
    let custom = settings.edge_custom_config.clone();
    let luet_auth = Some(checkout.join(LUET_AUTH)).filter(|p| p.is_file());
    let kernel_headers = Some(checkout.join(KERNEL_HEADERS_SCRIPT)).filter(|p| p.is_file());
    let mut provider_files = vec![
        ("certs".to_string(), certs),
        ("overlay-etc".to_string(), overlay_etc),
    ];
    let optional = [
        ("edge-custom-config.yaml", &custom),
        (LUET_AUTH, &luet_auth),
        ("install-kernel-headers.sh", &kernel_headers),
    ];
    for (name, path) in optional {
        if let Some(path) = path {
            provider_files.push((name.to_string(), path.clone()));
        }
    }
    ctx.insert("bundle", &bundle.bundled());
    ctx.insert("stylus_config", &inputs.facts.stylus_config);
    ctx.insert("edge_custom_config", &custom.is_some());
    ctx.insert("luet_auth", &luet_auth.is_some());
    ctx.insert("kernel_headers_script", &kernel_headers.is_some());
    for version in &versions {
        let mut ctx = ctx.clone();
        ctx.insert("k8s_version", version);
        for key in ["k8s_package", "k8s_image"] {
            ctx.insert(key, &sources.get(key).replace("{version}", version));
        }
        let dockerfile = inputs
            .templates
            .render_dockerfile("images/provider.Dockerfile", &ctx)?;
        let tag = settings
            .provider_tag(version)
            .expect("registry and distribution are set");
        steps.push(step(
            Kind::Provider {
                version: version.clone(),
            },
            dockerfile,
            Context::Files(provider_files.clone()),
            secrets.clone(),
            BTreeMap::new(),
            settings,
            &|_| tag.clone(),
        )?);
    }

    // The installer image.
    let overlay = overlay_files.unwrap_or_else(|| inputs.empty.to_path_buf());
    let iso_name = &settings.iso_name;
    let dockerfile = inputs
        .templates
        .render_dockerfile("images/installer.Dockerfile", &ctx)?;
    steps.push(step(
        Kind::Installer,
        dockerfile,
        Context::Files(vec![("overlay".to_string(), overlay)]),
        secrets,
        BTreeMap::new(),
        settings,
        &local(iso_name.to_string()),
    )?);
    Ok(Plan { steps, bundle })
}

fn step(
    kind: Kind,
    dockerfile: String,
    context: Context,
    exclude: Exclude,
    build_args: BTreeMap<String, String>,
    settings: &Settings,
    tag: &dyn Fn(&str) -> String,
) -> Result<Step, PlanError> {
    let mut hasher = Sha256::new();
    hasher.update(dockerfile.as_bytes());
    for (name, value) in &build_args {
        hasher.update(format!("\0{name}={value}").as_bytes());
    }
    match &context {
        Context::Files(files) => {
            for (dest, src) in files {
                hash_path(&mut hasher, dest, src, &|_, meta| exclude.is_secret(meta))?;
            }
        }
        Context::Directory { root } => {
            let ignored = dockerignore(root, &exclude).map_err(|source| PlanError::Read {
                path: root.join(".dockerignore"),
                source,
            })?;
            hash_path(&mut hasher, ".", root, &*ignored)?;
        }
    }
    let input_hash = format!("sha256:{}", hex::encode(hasher.finalize()));
    let tag = tag(&input_hash);
    let mut labels = BTreeMap::from([
        (INPUT_HASH_LABEL.to_string(), input_hash.clone()),
        ("dev.forge.kind".to_string(), kind.label().to_string()),
        ("org.opencontainers.image.ref.name".to_string(), tag.clone()),
        (
            "org.opencontainers.image.vendor".to_string(),
            "forge".to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            settings.pe_version.clone(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            format!(
                "{} {} {}",
                settings.os_distribution,
                settings.os_version,
                kind.label()
            ),
        ),
    ]);
    if let Kind::Provider { version } = &kind {
        labels.insert(
            "dev.forge.k8s-distribution".into(),
            settings
                .k8s_distribution
                .map(|d| d.to_string())
                .unwrap_or_default(),
        );
        labels.insert("dev.forge.k8s-version".into(), version.clone());
    }
    if let Ok(Some(epoch)) = settings.environment.epoch() {
        labels.insert("org.opencontainers.image.created".into(), epoch.to_string());
    }
    Ok(Step {
        kind,
        tag,
        dockerfile,
        context,
        exclude,
        build_args,
        labels,
        input_hash,
    })
}

/// Hash a context path: relative names, modes and contents, in a stable order, without what
/// `ignored` leaves out of the context.
fn hash_path(
    hasher: &mut Sha256,
    dest: &str,
    src: &Path,
    ignored: &dyn Fn(&Path, &std::fs::Metadata) -> bool,
) -> Result<(), PlanError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlanError::Read { path, source }
    };
    let mut entries: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(src).unwrap_or(&path);
        let meta = std::fs::symlink_metadata(&path).map_err(read(&path))?;
        if ignored(rel, &meta) && (!rel.as_os_str().is_empty() || meta.is_file()) {
            continue;
        }
        hasher.update(
            format!(
                "{dest}/{}\0{:o}\0",
                rel.display(),
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
            )
            .as_bytes(),
        );
        if meta.is_file() {
            let mut file = crate::limits::open(&path).map_err(read(&path))?;
            std::io::copy(&mut file, hasher).map_err(read(&path))?;
        } else if meta.file_type().is_symlink() {
            hasher.update(
                std::fs::read_link(&path)
                    .map_err(read(&path))?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs as SettingsInputs};

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut sets: Vec<(String, String)> = [
            ("IMAGE_REGISTRY", "ttl.sh"),
            ("K8S_DISTRIBUTION", "k3s"),
            ("K8S_VERSION", "1.32.3,1.33.1"),
            ("CUSTOM_TAG", "demo"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        sets.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        resolve(&SettingsInputs {
            sets,
            checkout: Some(PathBuf::from("/nonexistent-checkout")),
            ..SettingsInputs::default()
        })
        .settings
    }

    fn plan_with(settings: &Settings, certs: Option<&Path>, systemd: u32) -> Plan {
        let templates = Templates::load(None).unwrap();
        let sources = templates.sources(settings).unwrap();
        let empty = tempfile::tempdir().unwrap();
        plan(&Inputs {
            settings,
            templates: &templates,
            sources: &sources,
            facts: Facts {
                systemd: Some(systemd),
                stylus_config: true,
            },
            certs,
            overlays: None,
            output: Path::new("build"),
            user_data: &[],
            empty: empty.path(),
            providers: true,
        })
        .unwrap()
    }

    fn plan_for(settings: &Settings, certs: Option<&Path>) -> Plan {
        plan_with(settings, certs, 252)
    }

    #[test]
    fn plans_os_steps_a_base_a_provider_per_version_and_an_installer() {
        let plan = plan_for(&settings(&[]), None);
        let names: Vec<String> = plan.steps.iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "os",
                "base",
                "provider 1.32.3",
                "provider 1.33.1",
                "installer"
            ]
        );
        assert_eq!(plan.steps[2].tag, "ttl.sh/ubuntu:k3s-1.32.3-v4.9.38-demo");
        let base_tag = &plan.steps[1].tag;
        assert!(
            base_tag.starts_with("forge.local/ubuntu-base:"),
            "{base_tag}"
        );
        assert_eq!(
            plan.steps[0].from_images(),
            ["us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1"]
        );
        let provider = &plan.steps[2];
        assert!(provider.from_images().contains(base_tag));
        assert!(provider
            .dockerfile
            .contains("luet install -y k8s/k3s@1.32.3-k3s1 --system-target /output"));
        assert_eq!(plan.steps[3].labels["dev.forge.k8s-version"], "1.33.1");
    }

    #[test]
    fn a_systemd_of_255_or_newer_leaves_the_provider_and_kubernetes_out() {
        let plan = plan_with(&settings(&[]), None, 256);
        assert_eq!(plan.bundle, Bundle::SystemExtensions(256));
        let provider = &plan.steps[2].dockerfile;
        assert!(!provider.contains("luet"), "{provider}");
        assert!(!provider.contains("k8s-and-agent-provider-bundled"));
        let forced = plan_with(
            &settings(&[("BUNDLE_K8S_AND_AGENT_PROVIDER", "true")]),
            None,
            256,
        );
        assert_eq!(forced.bundle, Bundle::Forced);
        assert!(forced.steps[2]
            .dockerfile
            .contains("k8s-and-agent-provider-bundled"));
    }

    #[test]
    fn the_input_hash_follows_the_inputs() {
        let a = plan_for(&settings(&[]), None);
        assert_eq!(
            a.steps[0].input_hash,
            plan_for(&settings(&[]), None).steps[0].input_hash
        );
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("corp.crt"), "ca").unwrap();
        let b = plan_for(&settings(&[]), Some(certs.path()));
        assert_ne!(a.steps[0].input_hash, b.steps[0].input_hash);
        // The OS steps changed, so every image built from them changes too.
        assert_ne!(a.steps[1].input_hash, b.steps[1].input_hash);
        assert_ne!(a.steps[2].input_hash, b.steps[2].input_hash);
    }

    #[test]
    fn missing_settings_are_named() {
        let templates = Templates::load(None).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let s = resolve(&SettingsInputs {
            sets: vec![("IMAGE_REGISTRY".into(), "ttl.sh".into())],
            ..SettingsInputs::default()
        })
        .settings;
        let sources = templates.sources(&s).unwrap();
        let err = plan(&Inputs {
            settings: &s,
            templates: &templates,
            sources: &sources,
            facts: Facts {
                systemd: None,
                stylus_config: false,
            },
            certs: None,
            overlays: None,
            output: Path::new("build"),
            user_data: &[],
            empty: empty.path(),
            providers: true,
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("K8S_DISTRIBUTION is required"),
            "{err}"
        );
    }
}
