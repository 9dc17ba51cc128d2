//! Build settings: the CanvOS variables, resolved from defaults < `forge.yaml` < CanvOS `.arg`
//! < `FORGE_*` environment < `--set`, each remembering where it came from; their rules; the
//! Kubernetes version matrix and the provider image tags it yields.

pub mod arg;
mod check;
pub mod earthfile;
mod environment;
pub mod matrix;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos, Rule};
use crate::limits::{clip, MAX_EARTHFILE_BLOCK_DEPTH};
use crate::schema::Checker;
use crate::yaml::{self, Node, Value};
use matrix::Matrix;

pub use check::{is_iso_name, ISO_NAME_CHARACTERS};
pub use environment::{process_vars, Environment, EpochError, NotText, Proxies, READ_VARIABLES};
pub use settings::{Arch, Bytes, Compression, Def, Distribution, Kind, Os, Settings, SETTINGS};

/// The CanvOS revision whose defaults (image sources, versions) and build steps forge follows.
pub const CANVOS_RELEASE: &str = "spectrocloud/CanvOS fb36e29 (2026-08-21)";

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

pub const ENV_PREFIX: &str = "FORGE_";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// `IMAGE_REPO` defaults to `OS_DISTRIBUTION`.
    DefaultFrom(&'static str),
    /// Found in the checkout (its `k8s_version.json`).
    Checkout,
    /// The checkout's Earthfile: the line that sets the value, or none when the release
    /// implies it by not declaring the setting (its `ARG`s arrived later).
    Release {
        path: PathBuf,
        pos: Option<Pos>,
    },
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
            Origin::Release {
                path,
                pos: Some(pos),
            } => write!(f, "{}:{}", path.display(), pos.line),
            Origin::Release { path, pos: None } => {
                write!(
                    f,
                    "{} (no such ARG: what this release does)",
                    path.display()
                )
            }
            Origin::File { path, pos } => write!(f, "{}:{}", path.display(), pos.line),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag => f.write_str("--set"),
            Origin::SecretFile(path) => write!(f, "--secret-file {}", path.display()),
        }
    }
}

impl Origin {
    /// Whether the user gave the value (a file, the environment, a flag), rather than forge or
    /// the release.
    pub fn is_user(&self) -> bool {
        !matches!(
            self,
            Origin::Default | Origin::DefaultFrom(_) | Origin::Checkout | Origin::Release { .. }
        )
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
    /// The checkout's `Earthfile`: path and text (its global `ARG`s are the release's
    /// defaults, [`earthfile`]).
    pub earthfile: Option<(PathBuf, String)>,
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

/// The resolved settings: typed, and as the layers gave them (each value with its origin, for
/// `forge config show`, the findings and the CI jobs); and what resolution found wrong.
#[derive(Debug)]
pub struct Resolved {
    pub settings: Settings,
    pub values: Values,
    pub diagnostics: Vec<Diagnostic>,
}

/// Every setting's value as text, with where it came from.
#[derive(Debug, Clone)]
pub struct Values {
    values: BTreeMap<&'static str, Setting>,
    checkout: PathBuf,
    matrix: Matrix,
    diagnostics: Vec<Diagnostic>,
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

/// What a release whose Earthfile does not declare a setting does: CanvOS before v4.10 bundled
/// Kubernetes and the provider into every provider image (the base image's systemd probe came
/// with BUNDLE_K8S_AND_AGENT_PROVIDER).
const UNDECLARED: &[(&str, &str)] = &[("BUNDLE_K8S_AND_AGENT_PROVIDER", "true")];

/// CanvOS's names for settings forge names otherwise: each is accepted wherever a setting is
/// (the Earthfile, `.arg`, `forge.yaml`, `FORGE_*`, `--set`).
pub const ALIASES: &[(&str, &str)] = &[("STYLUS_BASE", "AGENT_IMAGE")];

fn lookup_def(name: &str) -> Option<&'static Def> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, setting)| setting);
    SETTINGS.iter().find(|d| d.name == name)
}

fn file_diagnostic_origin(origin: &Origin) -> (PathBuf, Pos) {
    match origin {
        Origin::File { path, pos } => (path.clone(), *pos),
        Origin::Env(var) => (PathBuf::from(format!("<env {var}>")), Pos::new(1, 1)),
        Origin::Flag => (PathBuf::from("<--set>"), Pos::new(1, 1)),
        Origin::SecretFile(path) => (path.clone(), Pos::new(1, 1)),
        Origin::Release { path, pos } => (path.clone(), pos.unwrap_or(Pos::new(1, 1))),
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

impl Values {
    /// The value of a setting, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|s| s.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A setting's value and origin, `None` when unset.
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.values.get(name)
    }

    /// The path a file setting names: relative to the file that set it, defaults relative to
    /// the checkout, the environment and flags relative to the current directory.
    fn path(&self, name: &str) -> Option<PathBuf> {
        let setting = self.values.get(name).filter(|s| !s.value.is_empty())?;
        let path = PathBuf::from(&setting.value);
        if path.is_absolute() {
            return Some(path);
        }
        Some(match &setting.origin {
            Origin::File { path: file, .. } => {
                file.parent().map_or(path.clone(), |d| d.join(&path))
            }
            Origin::Default
            | Origin::DefaultFrom(_)
            | Origin::Checkout
            | Origin::Release { .. } => self.checkout.join(path),
            Origin::Env(_) | Origin::Flag | Origin::SecretFile(_) => path,
        })
    }

    /// The checkout directory.
    pub fn checkout(&self) -> &Path {
        &self.checkout
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
    let mut r = Values {
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
    if let Some((path, text)) = &inputs.earthfile {
        apply_earthfile(&mut r, path, text);
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
    let settings = Settings::read(&r, r.matrix.clone(), Environment::from_vars(&inputs.env));
    let found = check::check(&r, &settings);
    let mut diagnostics = std::mem::take(&mut r.diagnostics);
    diagnostics.extend(found);
    Resolved {
        settings,
        values: r,
        diagnostics,
    }
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

/// The Earthfile's layer, under every layer the user gives: its global section evaluated with
/// the user's values ([`earthfile::evaluate`]); what it sets becomes the value of each setting
/// the user leaves at forge's default, and what forge cannot read of a setting it needs is a
/// warning naming the line and the value used.
fn apply_earthfile(r: &mut Values, path: &Path, text: &str) {
    let user = |name: &str| {
        let def = lookup_def(name)?;
        let setting = r.values.get(def.name)?;
        setting.origin.is_user().then(|| setting.value.clone())
    };
    let forge_default = |name: &str| lookup_def(name)?.default.map(str::to_string);
    let evaluated = earthfile::evaluate(text, &user, &forge_default);
    for assigned in evaluated.assigned {
        let Some(def) = lookup_def(&assigned.name) else {
            continue;
        };
        if assigned.value.is_empty() && def.default.is_none() {
            continue;
        }
        let origin = Origin::Release {
            path: path.to_path_buf(),
            pos: Some(assigned.pos),
        };
        r.set(def.name, assigned.value, origin);
    }
    for (name, value) in UNDECLARED {
        let given = r.values.get(name).is_some_and(|s| s.origin.is_user());
        if !given && !evaluated.declared.iter().any(|d| d == name) {
            let origin = Origin::Release {
                path: path.to_path_buf(),
                pos: None,
            };
            r.set(name, value.to_string(), origin);
        }
    }
    if let Some(pos) = evaluated.stopped {
        r.diagnostics.push(
            Diagnostic::new(
                Rule::EarthfileUnreadable,
                path,
                "",
                pos,
                format!(
                    "blocks nest deeper than {MAX_EARTHFILE_BLOCK_DEPTH} here: forge reads no further, and the settings the rest would set keep their defaults"
                ),
            )
            .help("set the values this release means in .arg (or forge.yaml, or --set)"),
        );
    }
    for unreadable in evaluated.unreadable {
        let Some(def) = lookup_def(&unreadable.name) else {
            continue;
        };
        let used = match r.get(def.name) {
            Some(value) => format!("forge's default `{}`", clip(value)),
            None => "no value".to_string(),
        };
        r.diagnostics.push(
            Diagnostic::new(
                Rule::EarthfileUnreadable,
                path,
                &unreadable.name,
                unreadable.pos,
                format!("forge cannot read {}; it uses {used}", unreadable.why),
            )
            .help(format!(
                "set {} in .arg (or forge.yaml, or --set) to the value this release means",
                def.name
            )),
        );
    }
}

fn apply_config_file(r: &mut Values, path: &Path, text: &str) {
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

fn load_matrix(r: &mut Values) {
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
            resolved.settings.iso_image_tag("site-a").as_deref(),
            Some("harbor.example.com/edge/ubuntu/site-a:v4.9.38-demo")
        );
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
        let (settings, values) = (&r.settings, &r.values);
        assert_eq!(settings.image_registry.as_deref(), Some("from.flag"));
        assert_eq!(
            values.setting("IMAGE_REGISTRY").unwrap().origin,
            Origin::Flag
        );
        assert_eq!(settings.custom_tag.as_deref(), Some("env"));
        assert_eq!(settings.arch, Arch::Arm64);
        assert_eq!(settings.os_distribution, Os::Rhel);
        assert_eq!(settings.image_repo, "rhel");
        assert_eq!(
            values.setting("IMAGE_REPO").unwrap().origin,
            Origin::DefaultFrom("OS_DISTRIBUTION")
        );
        assert_eq!(settings.iso_name, "palette-edge-installer");
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    }

    #[test]
    fn builds_provider_tags_for_the_matrix() {
        let r = resolve(&inputs_with_arg("IMAGE_REGISTRY=ttl.sh\nK8S_DISTRIBUTION=k3s\nK8S_VERSION=1.29.6\nPE_VERSION=v4.4.12\nCUSTOM_TAG=demo\n")).settings;
        assert_eq!(r.k8s_versions(), ["1.29.6"]);
        assert_eq!(
            r.provider_tag("1.29.6").as_deref(),
            Some("ttl.sh/ubuntu:k3s-1.29.6-v4.4.12-demo")
        );
        let all = resolve(&inputs_with_arg("K8S_DISTRIBUTION=k3s\n")).settings;
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
            from_file
                .values
                .setting("HTTPS_PROXY")
                .unwrap()
                .origin
                .to_string(),
            "--secret-file proxy.url"
        );
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    /// A release's Earthfile in CanvOS's shape, with what a user gives in `.arg`.
    fn resolved(earthfile: &str, arg: &str) -> Resolved {
        resolve(&Inputs {
            earthfile: Some((PathBuf::from("Earthfile"), earthfile.to_string())),
            arg: Some((PathBuf::from(".arg"), arg.to_string())),
            ..Inputs::default()
        })
    }

    const EARTHFILE: &str = "VERSION 0.6\nARG PE_VERSION=v4.7.21\nARG ISO_NAME=installer\nARG KAIROS_VERSION=v3.5.3\nARG SPECTRO_LUET_VERSION=v4.7.1\nARG STYLUS_BASE=reg.example/stylus-$ARCH:$PE_VERSION\nARG EDGE_CUSTOM_CONFIG=.edge-custom-config.yaml\nbuild:\n    RUN true\n";

    #[test]
    fn the_earthfile_is_the_layer_under_the_users() {
        let r = resolved(EARTHFILE, "ARCH=arm64\nISO_NAME=site\n");
        let value = |name| r.values.setting(name).unwrap();
        assert_eq!(value("PE_VERSION").value, "v4.7.21");
        assert_eq!(value("PE_VERSION").origin.to_string(), "Earthfile:2");
        assert_eq!(value("ISO_NAME").value, "site", ".arg wins");
        // CanvOS's name for the agent image, expanded with the user's ARCH.
        assert_eq!(
            value("AGENT_IMAGE").value,
            "reg.example/stylus-arm64:v4.7.21"
        );
        assert_eq!(r.settings.spectro_luet_version.as_deref(), Some("v4.7.1"));
        // A release older than the bundling switch always bundles.
        assert!(r.settings.bundle_k8s_and_agent_provider);
        assert_eq!(
            value("BUNDLE_K8S_AND_AGENT_PROVIDER").origin.to_string(),
            "Earthfile (no such ARG: what this release does)"
        );
        // The release's defaults are not the user's choices: an absent optional file is
        // skipped silently, as with forge's own default.
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    }

    #[test]
    fn what_the_earthfile_hides_is_a_warning_with_the_value_used() {
        let r = resolved("ARG PE_VERSION=$(git describe --tags)\n", "");
        let d = &r.diagnostics[0];
        assert_eq!(
            (d.rule, d.pos, d.path.as_str()),
            (Rule::EarthfileUnreadable, Pos::new(1, 16), "PE_VERSION")
        );
        assert_eq!(
            d.message,
            "forge cannot read the shell-out `$(git describe --tags)` in PE_VERSION's value (line 1); it uses forge's default `v4.9.38`"
        );
        // Given by the user, it is not needed from the Earthfile.
        let r = resolved(
            "ARG PE_VERSION=$(git describe --tags)\n",
            "PE_VERSION=v4.8.1\n",
        );
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    }
}
