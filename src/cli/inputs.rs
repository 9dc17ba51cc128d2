//! `forge validate`, `forge config show`, `forge rules`: commands about the build inputs.

use anyhow::{Context as _, Result};
use serde_json::json;

use super::output::{self, ExitStatus, Format, Shape};
use super::{SettingsArgs, ValidateArgs};
use crate::config;
use crate::diagnostic::{plural, Rule};
use crate::secret::{is_secret_key, mask_url, MASK};
use crate::validate::{self, Request};

pub(super) fn validate(args: ValidateArgs) -> Result<ExitStatus> {
    let request = Request {
        user_data: args.user_data,
        profile: args.profile,
        content_dir: args.content_dir,
        settings: args.settings.inputs()?,
        fix: args.fix,
        ..Request::default()
    };
    let outcome = validate::run(&request).context("validation could not run")?;
    let redactor = &outcome.redactor;
    match args.format {
        Format::Json => output::json(redactor, Shape::Validate, outcome.report.to_json())?,
        Format::Text => output::text(redactor, &outcome.report.render_text())?,
    }
    if let Some(fixed) = &outcome.fixed {
        output::note(
            redactor,
            &format!(
                "fixed {} {} in {} (original kept as {})",
                fixed.count,
                plural(fixed.count, "problem"),
                fixed.file.display(),
                fixed.backup.display()
            ),
        );
    }
    Ok(ExitStatus::from_ok(outcome.report.errors() == 0))
}

pub(super) fn config_show(args: &SettingsArgs, format: Format) -> Result<ExitStatus> {
    let request = Request {
        settings: args.inputs()?,
        ..Request::default()
    };
    let outcome = validate::run(&request).context("settings could not be resolved")?;
    let (settings, values, redactor) = (&outcome.settings, &outcome.values, &outcome.redactor);
    let shown = |name: &str, value: &str| {
        if is_secret_key(name) {
            MASK.to_string()
        } else {
            mask_url(value)
        }
    };
    let versions = settings.k8s_versions();
    let images: Vec<String> = versions
        .iter()
        .filter_map(|v| settings.provider_tag(v))
        .collect();
    match format {
        Format::Json => {
            let values: serde_json::Map<String, serde_json::Value> = values
                .iter()
                .map(|(def, s)| {
                    let value = s
                        .filter(|s| !s.value.is_empty())
                        .map(|s| shown(def.name, &s.value));
                    let source = s.map_or("unset".to_string(), |s| s.origin.to_string());
                    (
                        def.name.to_string(),
                        json!({"value": value, "source": source}),
                    )
                })
                .collect();
            let report = outcome.report.to_json();
            let doc = json!({"settings": values, "k8s_versions": versions, "provider_images": images, "diagnostics": report["diagnostics"]});
            output::json(redactor, Shape::Config, doc)?;
        }
        Format::Text => {
            let mut out = String::new();
            let width = config::SETTINGS
                .iter()
                .map(|d| d.name.len())
                .max()
                .unwrap_or(0);
            for (def, s) in values.iter() {
                let (value, source) = match s {
                    Some(s) if !s.value.is_empty() => {
                        (shown(def.name, &s.value), s.origin.to_string())
                    }
                    Some(s) => ("(empty)".to_string(), s.origin.to_string()),
                    None => ("(unset)".to_string(), String::new()),
                };
                let row = format!("{:width$}  {:40}  {}", def.name, value, source);
                out.push_str(row.trim_end());
                out.push('\n');
            }
            out.push_str(&format!(
                "\nKubernetes versions: {}\n",
                if versions.is_empty() {
                    "(none: set K8S_DISTRIBUTION)".to_string()
                } else {
                    versions.join(", ")
                }
            ));
            if !images.is_empty() {
                out.push_str("provider images:\n");
                images
                    .iter()
                    .for_each(|i| out.push_str(&format!("  {i}\n")));
            }
            output::text(redactor, &out)?;
            if !outcome.report.diagnostics.is_empty() {
                output::report(redactor, &outcome.report);
            }
        }
    }
    Ok(ExitStatus::from_ok(outcome.report.errors() == 0))
}

pub(super) fn rules(format: Format) -> Result<ExitStatus> {
    let redactor = crate::secret::Redactor::new();
    match format {
        Format::Json => {
            let list: Vec<_> = Rule::ALL
                .iter()
                .map(|r| json!({"code": r.code(), "severity": r.severity().as_str(), "summary": r.summary()}))
                .collect();
            output::json(&redactor, Shape::Rules, json!({ "rules": list }))?;
        }
        Format::Text => {
            let mut out = String::new();
            for r in Rule::ALL {
                out.push_str(&format!(
                    "{:9}  {:7}  {}\n",
                    r.code(),
                    r.severity().as_str(),
                    r.summary()
                ));
            }
            output::text(&redactor, &out)?;
        }
    }
    Ok(ExitStatus::Success)
}
