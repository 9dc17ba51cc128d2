//! The command line: argument parsing (clap), the subcommands, output formats and exit codes
//! (0 clean or warnings only, 1 errors found, 2 usage or I/O problems). Errors get their
//! context here; every byte printed passes through the secret redactor.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::config::{self, Inputs};
use crate::diagnostic::{plural, Rule};
use crate::secret::{is_secret_key, mask_url, MASK};
use crate::userdata;
use crate::validate::{self, Request};

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "Build orchestrator for Palette edge hosts. This version validates the build inputs: settings, user-data and cluster profiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check user-data, build settings and a cluster profile before a build.
    Validate(ValidateArgs),
    /// Inspect the resolved build settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a JSON Schema (2020-12) for editors such as yaml-language-server.
    Schema {
        #[arg(value_enum)]
        document: SchemaDocument,
    },
    /// List every validation rule with its code and severity.
    Rules {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting, its value and where it came from.
    Show {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaDocument {
    /// The edge installer user-data (`#cloud-config` with `stylus`).
    UserData,
    /// forge.yaml build settings.
    Config,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Where build settings come from (precedence: defaults < --config < --arg < FORGE_* env < --set).
#[derive(Args)]
struct SettingsArgs {
    /// forge.yaml build settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// CanvOS .arg file (KEY=VALUE lines).
    #[arg(long, value_name = "FILE")]
    arg: Option<PathBuf>,
    /// Override one setting; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("inputs").multiple(true).required(true).args(["user_data", "profile", "config", "arg"]))]
struct ValidateArgs {
    /// Edge installer user-data (#cloud-config).
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Cluster profile YAML (packs with their values).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Rewrite mechanical fixes into the user-data file (the original is kept as FILE.bak).
    #[arg(long)]
    fix: bool,
}

fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err("expected KEY=VALUE".into()),
    }
}

impl SettingsArgs {
    fn inputs(&self) -> Result<Inputs> {
        let read = |what, path: &Option<PathBuf>| -> Result<Option<(PathBuf, String)>> {
            path.as_ref()
                .map(|p| Ok((p.clone(), validate::read(what, p)?)))
                .transpose()
        };
        Ok(Inputs {
            config: read("settings file", &self.config)?,
            arg: read(".arg file", &self.arg)?,
            env: std::env::vars().collect(),
            sets: self.sets.clone(),
        })
    }
}

/// Run the command line and return the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate(args) => validate(args),
        Command::Config(ConfigCommand::Show { settings, format }) => config_show(&settings, format),
        Command::Schema { document } => {
            let schema = match document {
                SchemaDocument::UserData => userdata::schema(),
                SchemaDocument::Config => config::schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
        Command::Rules { format } => {
            rules(format);
            Ok(0)
        }
    }
}

fn validate(args: ValidateArgs) -> Result<u8> {
    let request = Request {
        user_data: args.user_data,
        profile: args.profile,
        settings: args.settings.inputs()?,
        fix: args.fix,
    };
    let outcome = validate::run(&request).context("validation could not run")?;
    let redactor = &outcome.redactor;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(stdout, "{}", outcome.report.render_json(redactor))?,
        Format::Text => write!(stdout, "{}", outcome.report.render_text(redactor))?,
    }
    if let Some(fixed) = &outcome.fixed {
        eprintln!(
            "fixed {} {} in {} (original kept as {})",
            fixed.count,
            plural(fixed.count, "problem"),
            fixed.file.display(),
            fixed.backup.display()
        );
    }
    Ok(u8::from(outcome.report.errors() > 0))
}

fn config_show(args: &SettingsArgs, format: Format) -> Result<u8> {
    let request = Request {
        settings: args.inputs()?,
        ..Request::default()
    };
    let outcome = validate::run(&request).context("settings could not be resolved")?;
    let (settings, redactor) = (&outcome.settings, &outcome.redactor);
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
    let mut out = String::new();
    match format {
        Format::Json => {
            let values: serde_json::Map<String, serde_json::Value> = settings
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
            let report = outcome.report.to_json(redactor);
            let doc = json!({"settings": values, "k8s_versions": versions, "provider_images": images, "diagnostics": report["diagnostics"]});
            out.push_str(&serde_json::to_string_pretty(&doc)?);
            out.push('\n');
        }
        Format::Text => {
            let width = config::SETTINGS
                .iter()
                .map(|d| d.name.len())
                .max()
                .unwrap_or(0);
            for (def, s) in settings.iter() {
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
            if !outcome.report.diagnostics.is_empty() {
                eprint!("{}", outcome.report.render_text(redactor));
            }
        }
    }
    print!("{}", redactor.redact(&out));
    Ok(u8::from(outcome.report.errors() > 0))
}

fn rules(format: Format) {
    match format {
        Format::Json => {
            let list: Vec<_> = Rule::ALL
                .iter()
                .map(|r| json!({"code": r.code(), "severity": r.severity().as_str(), "summary": r.summary()}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).expect("rules serialize")
            );
        }
        Format::Text => {
            for r in Rule::ALL {
                println!(
                    "{:9}  {:7}  {}",
                    r.code(),
                    r.severity().as_str(),
                    r.summary()
                );
            }
        }
    }
}
