//! The build graph: the base image, one provider image per Kubernetes version (all `FROM` the
//! base, so they share its layers), and the installer image; for each step its Dockerfile,
//! context files, tag, labels and input hash (the cache key: same inputs, same hash).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::config::{setting_path, Resolved};
use crate::render::{context, RenderError, Templates};

/// Label holding a step's input hash.
pub const INPUT_HASH_LABEL: &str = "dev.forge.input-hash";
/// Registry host of images that stay in the local engine.
pub const LOCAL_HOST: &str = "forge.local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Base,
    Provider { version: String },
    Installer,
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Base => "base",
            Kind::Provider { .. } => "provider",
            Kind::Installer => "installer",
        }
    }
}

/// One image to build.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: Kind,
    pub tag: String,
    pub dockerfile: String,
    /// `(path in the build context, source file or directory)`.
    pub files: Vec<(String, PathBuf)>,
    pub labels: BTreeMap<String, String>,
    pub input_hash: String,
}

impl Step {
    /// A short display name: `base`, `provider 1.32.3`, `installer`.
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Provider { version } => format!("provider {version}"),
            kind => kind.label().to_string(),
        }
    }
}

/// Everything a build makes, in order: base first, installer last.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0} is required to build provider images; set it in forge.yaml, the .arg file, FORGE_{0} or --set {0}=...")]
    Missing(&'static str),
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
    pub settings: &'a Resolved,
    pub templates: &'a Templates,
    /// CA certificates to add to the images' trust store (CanvOS's `certs/`).
    pub certs: Option<&'a Path>,
    /// `overlays/`: its `files/` go into the installer image.
    pub overlays: Option<&'a Path>,
    /// An empty directory, for the context paths that have nothing to copy.
    pub empty: &'a Path,
}

/// Plan the build.
pub fn plan(inputs: &Inputs<'_>) -> Result<Plan, PlanError> {
    let settings = inputs.settings;
    for name in ["IMAGE_REGISTRY", "K8S_DISTRIBUTION"] {
        if settings.get(name).is_none() {
            return Err(PlanError::Missing(name));
        }
    }
    let versions = settings.k8s_versions();
    if versions.is_empty() {
        return Err(PlanError::NoVersions(
            settings
                .get("K8S_DISTRIBUTION")
                .unwrap_or_default()
                .to_string(),
        ));
    }
    let sources = inputs.templates.sources(settings)?;
    if sources.k8s_image.is_empty() {
        return Err(PlanError::Missing("K8S_IMAGE"));
    }
    let repo = settings.get("IMAGE_REPO").unwrap_or("forge");
    let custom = settings
        .setting("EDGE_CUSTOM_CONFIG")
        .filter(|s| !s.value.is_empty())
        .map(setting_path);
    let mut ctx = context(settings);
    ctx.insert("base_image", &sources.base_image);
    ctx.insert("provider_image", &sources.provider_image);
    ctx.insert("agent_image", &sources.agent_image);
    ctx.insert("edge_custom_config", &custom.is_some());
    ctx.insert(
        "update_kernel",
        &settings
            .get("UPDATE_KERNEL")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    );
    ctx.insert(
        "user_dockerfile",
        &inputs
            .templates
            .render_dockerfile("user.Dockerfile", &ctx)?,
    );

    let mut steps = Vec::new();
    let base_files = vec![(
        "certs".to_string(),
        inputs.certs.unwrap_or(inputs.empty).to_path_buf(),
    )];
    let base = step(
        Kind::Base,
        inputs
            .templates
            .render_dockerfile("base.Dockerfile", &ctx)?,
        base_files,
        settings,
        &|hash| format!("{LOCAL_HOST}/{repo}-base:{}", &hash[7..19]),
    )?;
    ctx.insert("base_tag", &base.tag);
    let custom_files: Vec<(String, PathBuf)> = custom
        .iter()
        .map(|p| ("edge-custom-config.yaml".to_string(), p.clone()))
        .collect();
    steps.push(base);
    for version in &versions {
        let mut ctx = ctx.clone();
        ctx.insert("k8s_version", version);
        ctx.insert(
            "k8s_image",
            &sources.k8s_image.replace("{version}", version),
        );
        let dockerfile = inputs
            .templates
            .render_dockerfile("provider.Dockerfile", &ctx)?;
        let tag = settings
            .provider_tag(version)
            .expect("registry and distribution are set");
        steps.push(step(
            Kind::Provider {
                version: version.clone(),
            },
            dockerfile,
            custom_files.clone(),
            settings,
            &|_| tag.clone(),
        )?);
    }
    let mut installer_files = custom_files;
    let overlay = inputs
        .overlays
        .map(|o| o.join("files"))
        .filter(|f| f.is_dir())
        .unwrap_or_else(|| inputs.empty.to_path_buf());
    installer_files.push(("overlay".to_string(), overlay));
    let iso_name = settings.get("ISO_NAME").unwrap_or("installer");
    let dockerfile = inputs
        .templates
        .render_dockerfile("installer.Dockerfile", &ctx)?;
    steps.push(step(
        Kind::Installer,
        dockerfile,
        installer_files,
        settings,
        &|hash| format!("{LOCAL_HOST}/{iso_name}:{}", &hash[7..19]),
    )?);
    Ok(Plan { steps })
}

fn step(
    kind: Kind,
    dockerfile: String,
    files: Vec<(String, PathBuf)>,
    settings: &Resolved,
    tag: &dyn Fn(&str) -> String,
) -> Result<Step, PlanError> {
    let mut hasher = Sha256::new();
    hasher.update(dockerfile.as_bytes());
    for (dest, src) in &files {
        hash_path(&mut hasher, dest, src)?;
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
            settings.get("PE_VERSION").unwrap_or_default().to_string(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            format!(
                "{} {} {}",
                settings.get("OS_DISTRIBUTION").unwrap_or_default(),
                settings.get("OS_VERSION").unwrap_or_default(),
                kind.label()
            ),
        ),
    ]);
    if let Kind::Provider { version } = &kind {
        labels.insert(
            "dev.forge.k8s-distribution".into(),
            settings
                .get("K8S_DISTRIBUTION")
                .unwrap_or_default()
                .to_string(),
        );
        labels.insert("dev.forge.k8s-version".into(), version.clone());
    }
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|e| e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty())
    {
        labels.insert("org.opencontainers.image.created".into(), epoch);
    }
    Ok(Step {
        kind,
        tag,
        dockerfile,
        files,
        labels,
        input_hash,
    })
}

/// Hash a context path: relative names, modes and contents, in a stable order.
fn hash_path(hasher: &mut Sha256, dest: &str, src: &Path) -> Result<(), PlanError> {
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
        hasher.update(
            format!(
                "{dest}/{}\0{:o}\0",
                rel.display(),
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
            )
            .as_bytes(),
        );
        if meta.is_file() {
            let mut file = std::fs::File::open(&path).map_err(read(&path))?;
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

    fn settings(extra: &[(&str, &str)]) -> Resolved {
        let mut sets: Vec<(String, String)> = [
            ("IMAGE_REGISTRY", "ttl.sh"),
            ("K8S_DISTRIBUTION", "k3s"),
            ("K8S_VERSION", "1.32.3,1.33.1"),
            ("K8S_IMAGE", "local/k3s:v{version}"),
            ("CUSTOM_TAG", "demo"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        sets.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        resolve(&SettingsInputs {
            sets,
            ..SettingsInputs::default()
        })
    }

    fn plan_for(settings: &Resolved, certs: Option<&Path>) -> Plan {
        let templates = Templates::load(None).unwrap();
        let empty = tempfile::tempdir().unwrap();
        plan(&Inputs {
            settings,
            templates: &templates,
            certs,
            overlays: None,
            empty: empty.path(),
        })
        .unwrap()
    }

    #[test]
    fn plans_a_base_a_provider_per_version_and_an_installer() {
        let plan = plan_for(&settings(&[]), None);
        let names: Vec<String> = plan.steps.iter().map(Step::name).collect();
        assert_eq!(
            names,
            ["base", "provider 1.32.3", "provider 1.33.1", "installer"]
        );
        assert_eq!(plan.steps[1].tag, "ttl.sh/ubuntu:k3s-1.32.3-v4.7.16-demo");
        let base_tag = &plan.steps[0].tag;
        assert!(
            base_tag.starts_with("forge.local/ubuntu-base:"),
            "{base_tag}"
        );
        assert!(plan.steps[1]
            .dockerfile
            .contains(&format!("FROM {base_tag}\n")));
        assert!(plan.steps[1]
            .dockerfile
            .contains("FROM local/k3s:v1.32.3 AS kubernetes"));
        assert_eq!(plan.steps[2].labels["dev.forge.k8s-version"], "1.33.1");
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
        // The base changed, so every image built from it changes too.
        assert_ne!(a.steps[1].input_hash, b.steps[1].input_hash);
    }

    #[test]
    fn missing_settings_are_named() {
        let templates = Templates::load(None).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let s = resolve(&SettingsInputs {
            sets: vec![("IMAGE_REGISTRY".into(), "ttl.sh".into())],
            ..SettingsInputs::default()
        });
        let err = plan(&Inputs {
            settings: &s,
            templates: &templates,
            certs: None,
            overlays: None,
            empty: empty.path(),
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("K8S_DISTRIBUTION is required"),
            "{err}"
        );
    }
}
