//! Build settings: the CanvOS variables, resolved from defaults < `forge.yaml` < CanvOS `.arg`
//! < `FORGE_*` environment < `--set`, each remembering where it came from; their rules; the
//! Kubernetes version matrix and the provider image tags it yields.

pub mod arg;
pub mod matrix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos, Rule};
use crate::reference::parse_domain;
use crate::schema::Checker;
use crate::yaml::{self, Node, Value};
use matrix::Matrix;

/// What kind of value a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    /// A file path, relative to the file that sets it.
    File,
    /// One value or several, comma-separated (a list in `forge.yaml`).
    List,
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

/// Every setting, in display order. The README's settings reference mirrors this table.
pub const SETTINGS: &[Def] = &[
    def("IMAGE_REGISTRY", Kind::Text, None, "Registry the provider images are pushed to: host[:port][/namespace], no scheme."),
    def("IMAGE_REPO", Kind::Text, None, "Repository name of the provider images. Default: the value of OS_DISTRIBUTION."),
    def("CUSTOM_TAG", Kind::Text, None, "Environment suffix of image tags: lowercase letters and digits."),
    def("OS_DISTRIBUTION", Kind::Text, Some("ubuntu"), "ubuntu, opensuse-leap, rhel or sles."),
    def("OS_VERSION", Kind::Text, Some("22.04"), "OS release, e.g. 22.04 or 24.04 for Ubuntu."),
    def("K8S_DISTRIBUTION", Kind::Text, None, "k3s, rke2, kubeadm, kubeadm-fips, nodeadm or canonical. Required for provider images."),
    def("K8S_VERSION", Kind::List, None, "Kubernetes version(s) x.y.z; empty means every version of K8S_DISTRIBUTION in the matrix."),
    def("K8S_VERSION_FILE", Kind::File, None, "Kubernetes version matrix in the k8s_version.json shape. Default: the matrix shipped with forge."),
    def("PE_VERSION", Kind::Text, Some("v4.7.16"), "Palette edge agent version, part of the provider image tag."),
    def("ISO_NAME", Kind::Text, Some("palette-edge-installer"), "Installer ISO file name without .iso: lowercase letters, digits, '-' and '_'."),
    def("ARCH", Kind::Text, Some("amd64"), "amd64 or arm64. amd64 artifacts need an AMD64 build host."),
    def("BASE_IMAGE", Kind::Text, None, "Overrides the OS base image (default: templates/sources.yaml)."),
    def("PROVIDER_IMAGE", Kind::Text, None, "Overrides the Kairos provider image copied into provider images (default: templates/sources.yaml)."),
    def("K8S_IMAGE", Kind::Text, None, "Image holding the Kubernetes binaries, {version} standing for the Kubernetes version. Required for provider images."),
    def("AGENT_IMAGE", Kind::Text, None, "Overrides the Palette agent image copied into the installer image (default: templates/sources.yaml)."),
    def("HTTP_PROXY", Kind::Text, None, "Build-time HTTP proxy, http(s)://[user:password@]host:port."),
    def("HTTPS_PROXY", Kind::Text, None, "Build-time HTTPS proxy, http(s)://[user:password@]host:port."),
    def("NO_PROXY", Kind::Text, None, "Hosts and CIDRs that bypass the build-time proxy, comma-separated."),
    def("CLUSTERCONFIG", Kind::File, None, "Cluster definition archive (spc.tgz) embedded in the ISO. The file must exist."),
    def("EDGE_CUSTOM_CONFIG", Kind::File, None, "Extra configuration embedded in the images and the ISO. The file must exist."),
    def("FORCE_INTERACTIVE_INSTALL", Kind::Bool, Some("false"), "Make the interactive installer the default boot entry."),
    def("ISO_KERNEL_ARGS", Kind::Text, None, "Extra kernel arguments of every boot entry of the installer ISO."),
    def("SQUASHFS_COMPRESSION", Kind::Text, Some("gzip"), "Compression of the ISO's rootfs.squashfs: gzip, xz, zstd, lz4, lzo or lzma."),
    def("CONTENT_PART_SIZE", Kind::Text, Some("4095MiB"), "Content bundles larger than this are split into parts on the ISO (ISO 9660 files stay below 4 GiB); bytes or K/M/GiB."),
    def("ISO_TOOLS_IMAGE", Kind::Text, Some("debian:bookworm-slim"), "Base of the builder image whose tools master the ISO (apt-based)."),
    def("FIPS_ENABLED", Kind::Bool, Some("false"), "Build FIPS images. Not together with UPDATE_KERNEL."),
    def("UPDATE_KERNEL", Kind::Bool, Some("false"), "Upgrade the kernel of the base image. Not together with FIPS_ENABLED."),
];

/// CanvOS settings forge recognises but does not implement: they warn instead of being
/// reported as unknown.
const CANVOS_UNSUPPORTED: &[&str] = &[
    "CIS_HARDENING",
    "IS_UKI",
    "MY_ORG",
    "UKI_BRING_YOUR_OWN_KEYS",
    "INCLUDE_MS_SECUREBOOT_KEYS",
    "AUTO_ENROLL_SECUREBOOT_KEYS",
    "ENROLL_SPECTRO_EXTENSION_CERT",
    "BUNDLE_K8S_AND_AGENT_PROVIDER",
    "DRBD_VERSION",
    "STORAGE_PROVIDER",
    "INSTALL_NVIDIA_GPU_DRIVERS",
    "INSTALL_AMD_GPU_DRIVERS",
    "MAAS_IMAGE_NAME",
    "UBUNTU_PRO_ATTACH",
    "PROXY_CERT_PATH",
    "TWO_NODE",
    "KINE_VERSION",
    "DISABLE_SELINUX",
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
/// Content bundle parts: at least 1 MiB, at most 4095 MiB (an ISO 9660 file stays below 4 GiB).
const MIN_PART_SIZE: u64 = 1 << 20;
const MAX_PART_SIZE: u64 = 4095 << 20;

/// A size: bytes, or a number with K, M, G (or KiB, MiB, GiB; all powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// `IMAGE_REPO` defaults to `OS_DISTRIBUTION`.
    DefaultFrom(&'static str),
    File {
        path: PathBuf,
        pos: Pos,
    },
    Env(String),
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::DefaultFrom(name) => write!(f, "default (${name})"),
            Origin::File { path, pos } => write!(f, "{}:{}", path.display(), pos.line),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag => f.write_str("--set"),
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
}

/// Resolved settings, the version matrix, and what resolution found wrong.
#[derive(Debug)]
pub struct Resolved {
    values: BTreeMap<&'static str, Setting>,
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
                Kind::List => json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "description": d.doc}),
                Kind::Text | Kind::File => json!({"type": "string", "description": d.doc}),
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
        Origin::Default | Origin::DefaultFrom(_) => (PathBuf::from("<default>"), Pos::new(1, 1)),
    }
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

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
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

    /// `IMAGE_REGISTRY/IMAGE_REPO:K8S_DISTRIBUTION-K8S_VERSION-PE_VERSION[-CUSTOM_TAG]`, when
    /// the registry and the distribution are set.
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
    for (key, value) in &inputs.sets {
        let name = key.to_ascii_uppercase().replace('-', "_");
        match lookup_def(&name) {
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
    load_matrix(&mut r);
    let diagnostics = check(&r);
    r.diagnostics.extend(diagnostics);
    r
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
        format!("unknown setting `{name}`"),
    )
    .width(name.len());
    if let Some(guess) = did_you_mean(&upper, SETTINGS.iter().map(|d| d.name)) {
        d = d.help(format!("did you mean `{guess}`?"));
    }
    d
}

fn apply_config_file(r: &mut Resolved, path: &Path, text: &str) {
    let (doc, findings) = yaml::parse_file(path, text);
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

/// A `File` setting's path, relative to the file that set it.
pub fn setting_path(setting: &Setting) -> PathBuf {
    let path = PathBuf::from(&setting.value);
    match &setting.origin {
        Origin::File { path: file, .. } if path.is_relative() => {
            file.parent().map_or(path.clone(), |dir| dir.join(&path))
        }
        _ => path,
    }
}

fn load_matrix(r: &mut Resolved) {
    let Some(setting) = r
        .setting("K8S_VERSION_FILE")
        .filter(|s| !s.value.is_empty())
        .cloned()
    else {
        return;
    };
    let path = setting_path(&setting);
    use crate::limits::{read_text, FileKind, ReadError};
    let text = match read_text(FileKind::VersionMatrix, &path) {
        Ok(text) => text,
        // `check` reports a missing file.
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
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

fn check(r: &Resolved) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let lowercase_word = |v: &str, extra: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
    };
    if let Some(v) = r.get("IMAGE_REGISTRY") {
        if let Err(e) = parse_domain(v) {
            out.push(
                r.diag(
                    Rule::BadImageRegistry,
                    "IMAGE_REGISTRY",
                    format!("IMAGE_REGISTRY `{v}` {e}"),
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
                format!("CUSTOM_TAG `{v}` must be lowercase letters and digits only"),
            )
            .help(format!(
                "try `{}`",
                v.to_ascii_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "")
            )),
        );
    }
    if let Some(v) = r.get("ISO_NAME").filter(|v| !lowercase_word(v, "-_")) {
        out.push(
            r.diag(
                Rule::BadIsoName,
                "ISO_NAME",
                format!("ISO_NAME `{v}` must be lowercase letters, digits, `-` and `_`"),
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
            format!("ARCH `{v}` must be amd64 or arm64{hint}"),
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
                format!("CONTENT_PART_SIZE `{v}` must be a size from 1MiB to 4095MiB"),
            )
            .help("bytes, or a number with K, M, G, KiB, MiB or GiB (powers of 1024), e.g. 2GiB"),
        );
    }
    for d in SETTINGS.iter().filter(|d| d.kind == Kind::Bool) {
        if let Some(v) = r
            .get(d.name)
            .filter(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
        {
            out.push(r.diag(
                Rule::BadSettingValue,
                d.name,
                format!("{} `{v}` must be true or false", d.name),
            ));
        }
    }
    if r.flag("FIPS_ENABLED") && r.flag("UPDATE_KERNEL") {
        out.push(r.diag(Rule::FipsWithUpdateKernel, "UPDATE_KERNEL", "FIPS_ENABLED and UPDATE_KERNEL are both true; a kernel upgrade would replace the FIPS-certified kernel".into()).help("set UPDATE_KERNEL=false for FIPS builds"));
    }
    for name in ["HTTP_PROXY", "HTTPS_PROXY"] {
        if let Some(v) = r
            .get(name)
            .filter(|v| !(v.starts_with("http://") || v.starts_with("https://")))
        {
            let shown = crate::secret::mask_url(v);
            out.push(r.diag(
                Rule::BadSettingValue,
                name,
                format!("{name} `{shown}` must be an http:// or https:// URL"),
            ));
        }
    }
    for name in ["PE_VERSION", "OS_VERSION"] {
        if let Some(v) = r.get(name).filter(|v| {
            !v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }) {
            out.push(r.diag(Rule::BadSettingValue, name, format!("{name} `{v}` is part of image tags: use letters, digits, `.`, `_` and `-` only")));
        }
    }
    let versions = r.k8s_versions();
    if r.get("K8S_VERSION").is_some() {
        let distribution = r.get("K8S_DISTRIBUTION").unwrap_or_default();
        for version in &versions {
            if !matrix::is_version(version) {
                out.push(r.diag(
                    Rule::BadSettingValue,
                    "K8S_VERSION",
                    format!("K8S_VERSION `{version}` is not a version x.y.z"),
                ));
            } else if !distribution.is_empty() && !r.matrix.versions(distribution).contains(version)
            {
                let known = r.matrix.versions(distribution);
                out.push(r.diag(Rule::K8sVersionNotInMatrix, "K8S_VERSION", format!("K8S_VERSION `{version}` is not in the version matrix for {distribution}")).help(if known.is_empty() {
                    format!("the matrix lists no versions for {distribution}")
                } else {
                    format!("known versions: {}", known.join(", "))
                }));
            }
        }
    }
    for d in SETTINGS.iter().filter(|d| d.kind == Kind::File) {
        let Some(setting) = r.setting(d.name).filter(|s| !s.value.is_empty()) else {
            continue;
        };
        let path = setting_path(setting);
        if !path.is_file() {
            out.push(r.diag(Rule::MissingFile, d.name, format!("{} names `{}`, which does not exist", d.name, path.display())).help("fix the path (relative paths start at the file that sets it), or leave the setting empty"));
        }
    }
    out
}

fn check_choice(r: &Resolved, name: &str, allowed: &[&str], rule: Rule, out: &mut Vec<Diagnostic>) {
    let Some(v) = r.get(name).filter(|v| !allowed.contains(v)) else {
        return;
    };
    let mut d = r.diag(
        rule,
        name,
        format!("{name} `{v}` is not one of {}", allowed.join(", ")),
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
}
