//! What forge says about itself: `--version` (the commit it was built from and the default
//! image sources), `forge completions` for shells and `forge man` pages, all from the one clap
//! definition of the command line.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;
use serde_json::json;

use super::output::{self, ExitStatus, Format, Shape};
use super::{Cli, FormatArg};
use crate::config;
use crate::secret::Redactor;

/// The commit forge was built from and its date (`unknown` outside a git checkout).
const COMMIT: &str = env!("FORGE_COMMIT");
const COMMIT_DATE: &str = env!("FORGE_COMMIT_DATE");

/// The settings that choose where the images a build starts from come from, shown by
/// `--version` with their defaults.
const SOURCES: &[&str] = &[
    "PE_VERSION",
    "SPECTRO_PUB_REPO",
    "SPECTRO_LUET_REPO",
    "KAIROS_INIT_VERSION",
    "K3S_PROVIDER_VERSION",
    "KUBEADM_PROVIDER_VERSION",
    "RKE2_PROVIDER_VERSION",
    "NODEADM_PROVIDER_VERSION",
    "CANONICAL_PROVIDER_VERSION",
    "BUILDER_3RDPARTY_VERSION",
    "ALPINE_TAG",
];

fn defaults() -> Vec<(&'static str, &'static str)> {
    SOURCES
        .iter()
        .filter_map(|name| {
            let def = config::SETTINGS.iter().find(|d| d.name == *name)?;
            Some((def.name, def.default?))
        })
        .collect()
}

/// `forge --version [--format json]`.
pub(super) fn version(format: Format) -> Result<ExitStatus> {
    let redactor = Redactor::new();
    let version = env!("CARGO_PKG_VERSION");
    let defaults = defaults();
    match format {
        Format::Json => {
            let defaults: serde_json::Map<_, _> = defaults
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect();
            let body = json!({
                "version": version,
                "commit": COMMIT,
                "commit_date": COMMIT_DATE,
                "canvos": config::CANVOS_RELEASE,
                "defaults": defaults,
            });
            output::json(&redactor, Shape::Version, body)?;
        }
        Format::Text => {
            let mut text = format!(
                "forge {version} (commit {COMMIT}, {COMMIT_DATE})\nbuilds as CanvOS {} does, with these default image sources:\n",
                config::CANVOS_RELEASE
            );
            let width = defaults.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, value) in &defaults {
                text.push_str(&format!("  {name:width$}  {value}\n"));
            }
            output::text(&redactor, &text)?;
        }
    }
    Ok(ExitStatus::Success)
}

#[derive(Args)]
pub(super) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
    #[command(flatten)]
    format: FormatArg,
}

/// `forge completions SHELL`: the script (text), or `{shell, script}` (json).
pub(super) fn completions(args: CompletionsArgs) -> Result<ExitStatus> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "forge", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    let redactor = Redactor::new();
    match args.format.format {
        Format::Text => output::text(&redactor, &script)?,
        Format::Json => output::json(
            &redactor,
            Shape::Completions,
            json!({"shell": args.shell.to_string(), "script": script}),
        )?,
    }
    Ok(ExitStatus::Success)
}

#[derive(Args)]
pub(super) struct ManArgs {
    /// Where the pages go (made when missing); each appears whole.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    format: FormatArg,
}

/// `forge man DIR`: `forge.1` and one page per command, `forge-<command>[-<sub>].1`.
pub(super) fn man(args: ManArgs) -> Result<ExitStatus> {
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    let mut todo = vec![("forge".to_string(), command)];
    while let Some((name, command)) = todo.pop() {
        // clap's `help` subcommands are what `forge help X` prints: the pages themselves.
        let shown = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
        for sub in command.get_subcommands().filter(shown) {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let mut roff = Vec::new();
        let page = command.name(name.clone()).bin_name(name.replace('-', " "));
        clap_mangen::Man::new(page)
            .date(COMMIT_DATE)
            .source(format!("forge {}", env!("CARGO_PKG_VERSION")))
            .manual("forge manual")
            .render(&mut roff)
            .context("rendering a man page")?;
        let roff = String::from_utf8(roff).context("a man page is not UTF-8")?;
        let file = format!("{name}.1");
        crate::report::write_output(&args.dir, &file, &roff)
            .with_context(|| format!("cannot write {}", args.dir.join(&file).display()))?;
        pages.push(file);
    }
    pages.sort();
    let redactor = Redactor::new();
    match args.format.format {
        Format::Text => {
            let listed: String = pages
                .iter()
                .map(|p| format!("{}\n", args.dir.join(p).display()))
                .collect();
            output::text(&redactor, &listed)?;
        }
        Format::Json => output::json(
            &redactor,
            Shape::Man,
            json!({"dir": args.dir, "pages": pages}),
        )?,
    }
    Ok(ExitStatus::Success)
}
