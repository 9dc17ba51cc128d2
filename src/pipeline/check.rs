//! `forge validate`, `forge config show`, `forge rules`: commands about the build inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};

use super::inputs::SettingsRequest;
use super::Error;
use crate::diagnostic::{Report, Rule, Severity};
use crate::progress::{Event, Progress};
use crate::render::Templates;
use crate::secret::{is_secret_key, mask_url, MASK};
use crate::validate::{self, Fixed, Request};

/// `forge validate`.
#[derive(Debug, Clone)]
pub struct ValidateRequest {
    pub user_data: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    /// Where content bundles are looked for (checked against the profile).
    pub content_dir: Option<PathBuf>,
    pub settings: Option<SettingsRequest>,
    /// Rewrite mechanical fixes into the user-data file (keeping `FILE.bak`).
    pub fix: bool,
}

/// The findings of `forge validate`.
#[derive(Debug, Serialize)]
pub struct ValidateOutcome {
    #[serde(flatten)]
    pub report: Report,
    /// The fixes `--fix` wrote.
    #[serde(skip)]
    pub fixed: Option<Fixed>,
}

/// `forge validate`: every input's rules and the rules across them; `--fix` applied.
pub fn validate(request: &ValidateRequest, progress: &Progress) -> Result<ValidateOutcome, Error> {
    let settings = request.settings.clone().unwrap_or_default();
    let mut picked = settings.picked_up();
    let user_data = request.user_data.clone().or_else(|| {
        let file = settings.in_checkout_file("user-data");
        file.exists().then(|| {
            picked.push(file.clone());
            file
        })
    });
    let given = settings.arg.is_some() || settings.config.is_some() || request.profile.is_some();
    if user_data.is_none() && !given && settings.arg_file().is_none() {
        return Err(Error::Usage(
            "nothing to validate: give --user-data, --profile, --config or --arg, or run forge in a CanvOS checkout (its .arg and user-data are read as Earthly reads them)".into(),
        ));
    }
    super::inputs::note_picked_up(&picked, progress);
    let outcome = validate::run(&Request {
        user_data,
        profile: request.profile.clone(),
        content_dir: request.content_dir.clone(),
        settings: request
            .settings
            .as_ref()
            .map(SettingsRequest::read)
            .transpose()?
            .unwrap_or_default(),
        fix: request.fix,
        ..Request::default()
    })?;
    progress.tell(Event::Secrets(&outcome.redactor));
    Ok(ValidateOutcome {
        report: outcome.report,
        fixed: outcome.fixed,
    })
}

/// A setting as `forge config show` shows it.
#[derive(Debug, Serialize)]
pub struct Shown {
    /// The value, secrets masked; none when unset or empty.
    pub value: Option<String>,
    /// Where it came from (`unset` when it is not set at all).
    pub source: String,
}

/// The settings in display order, as an object keyed by name.
#[derive(Debug)]
pub struct ShownSettings(pub Vec<(&'static str, Shown)>);

impl Serialize for ShownSettings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, shown) in &self.0 {
            map.serialize_entry(name, shown)?;
        }
        map.end()
    }
}

/// `forge config show`.
#[derive(Debug, Serialize)]
pub struct ConfigOutcome {
    pub settings: ShownSettings,
    /// The checkout's Earthfile, whose global `ARG`s are the release's defaults; `None`:
    /// forge's own defaults.
    pub earthfile: Option<PathBuf>,
    pub k8s_versions: Vec<String>,
    pub provider_images: Vec<String>,
    /// Where the build's images come from (`templates/sources.yaml` rendered with the
    /// settings: base, provider, agent, third-party and builder images, the luet repository
    /// and package); empty when the settings have errors.
    pub sources: BTreeMap<String, String>,
    /// The settings' findings (`diagnostics`).
    #[serde(rename = "diagnostics", serialize_with = "findings")]
    pub report: Report,
}

/// A report as its findings alone.
fn findings<S: Serializer>(report: &Report, serializer: S) -> Result<S::Ok, S::Error> {
    report.findings().serialize(serializer)
}

/// `forge config show`: every setting, its value and where it came from.
pub fn config_show(
    settings: &SettingsRequest,
    progress: &Progress,
) -> Result<ConfigOutcome, Error> {
    let outcome = validate::run(&Request {
        settings: settings.read()?,
        ..Request::default()
    })?;
    progress.tell(Event::Secrets(&outcome.redactor));
    let shown = |name: &str, value: &str| match is_secret_key(name) {
        true => MASK.to_string(),
        false => mask_url(value),
    };
    let values = outcome
        .values
        .iter()
        .map(|(def, s)| {
            let value = s
                .filter(|s| !s.value.is_empty())
                .map(|s| shown(def.name, &s.value));
            let source = s.map_or("unset".to_string(), |s| s.origin.to_string());
            (def.name, Shown { value, source })
        })
        .collect();
    let versions = outcome.settings.k8s_versions();
    let images = versions
        .iter()
        .filter_map(|v| outcome.settings.provider_tag(v))
        .collect();
    let sources = match outcome.report.errors() {
        0 => Templates::load(None)?
            .sources(&outcome.settings)
            .map_err(Error::Sources)?
            .0
            .into_iter()
            .map(|(key, value)| (key, mask_url(&value)))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(ConfigOutcome {
        settings: ShownSettings(values),
        earthfile: settings.earthfile(),
        sources,
        k8s_versions: versions,
        provider_images: images,
        report: outcome.report,
    })
}

/// A rule of `forge rules`.
#[derive(Debug, Serialize)]
pub struct RuleDoc {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

/// `forge rules`.
#[derive(Debug, Serialize)]
pub struct RulesOutcome {
    pub rules: Vec<RuleDoc>,
}

/// `forge rules`: every validation rule with its code and severity.
pub fn rules() -> RulesOutcome {
    RulesOutcome {
        rules: Rule::ALL
            .iter()
            .map(|r| RuleDoc {
                code: r.code(),
                severity: r.severity(),
                summary: r.summary(),
            })
            .collect(),
    }
}

impl ValidateOutcome {
    /// The findings, each with its line, and the summary.
    pub fn text(&self) -> String {
        self.report.render_text()
    }

    /// What `--fix` did, when it did something.
    pub fn fixed_note(&self) -> Option<String> {
        let fixed = self.fixed.as_ref()?;
        Some(format!(
            "fixed {} {} in {} (original kept as {})",
            fixed.count,
            crate::diagnostic::plural(fixed.count, "problem"),
            fixed.file.display(),
            fixed.backup.display()
        ))
    }
}

/// What `forge schema` prints.
#[derive(Debug, Clone, Copy)]
pub enum SchemaOf {
    /// The edge installer user-data.
    UserData,
    /// `forge.yaml`.
    Config,
    /// A document forge prints.
    Output(crate::documents::Shape),
}

/// A JSON Schema, named.
#[derive(Debug, Serialize)]
pub struct SchemaOutcome {
    pub document: String,
    pub json_schema: serde_json::Value,
}

impl SchemaOutcome {
    /// The schema itself.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.json_schema).unwrap_or_default() + "\n"
    }
}

/// `forge schema`: the JSON Schema of an input, or of a document forge prints.
pub fn schema(of: SchemaOf) -> SchemaOutcome {
    let (document, json_schema) = match of {
        SchemaOf::UserData => ("user-data".to_string(), crate::userdata::schema()),
        SchemaOf::Config => ("config".to_string(), crate::config::schema()),
        SchemaOf::Output(shape) => (format!("output/{}", shape.name()), shape.schema()),
    };
    SchemaOutcome {
        document,
        json_schema,
    }
}

impl ConfigOutcome {
    /// Every setting, its value and its source; the versions and the provider images.
    pub fn text(&self) -> String {
        let width = self
            .settings
            .0
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (name, shown) in &self.settings.0 {
            let (value, source) = match (&shown.value, shown.source.as_str()) {
                (Some(value), source) => (value.as_str(), source),
                (None, "unset") => ("(unset)", ""),
                (None, source) => ("(empty)", source),
            };
            out.push_str(format!("{name:width$}  {value:40}  {source}").trim_end());
            out.push('\n');
        }
        let versions = match self.k8s_versions.is_empty() {
            true => "(none: set K8S_DISTRIBUTION)".to_string(),
            false => self.k8s_versions.join(", "),
        };
        out.push_str(&format!("\nKubernetes versions: {versions}\n"));
        if !self.provider_images.is_empty() {
            out.push_str("provider images:\n");
            for image in &self.provider_images {
                out.push_str(&format!("  {image}\n"));
            }
        }
        out.push_str(&match &self.earthfile {
            Some(path) => format!("release: {} (its ARGs are the defaults)\n", path.display()),
            None => format!(
                "release: no Earthfile in the checkout: forge's defaults ({})\n",
                crate::config::CANVOS_RELEASE
            ),
        });
        if !self.sources.is_empty() {
            out.push_str("sources:\n");
            let width = self.sources.keys().map(String::len).max().unwrap_or(0);
            for (key, value) in self.sources.iter().filter(|(_, v)| !v.is_empty()) {
                out.push_str(&format!("  {key:width$}  {value}\n"));
            }
        }
        out
    }
}

impl RulesOutcome {
    /// A rule a line: code, severity, summary.
    pub fn text(&self) -> String {
        let line =
            |r: &RuleDoc| format!("{:9}  {:7}  {}\n", r.code, r.severity.as_str(), r.summary);
        self.rules.iter().map(line).collect()
    }
}
