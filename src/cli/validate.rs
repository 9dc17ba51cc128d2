//! `forge validate` and `forge rules`.

use std::path::PathBuf;

use clap::Args;

use super::args::SettingsArgs;
use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::check::{self, RulesOutcome, ValidateOutcome, ValidateRequest};
use crate::pipeline::{Error, ExitStatus};

#[derive(Args)]
pub(super) struct ValidateArgs {
    /// Edge installer user-data (#cloud-config). Default: the checkout's user-data.
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Cluster profile YAML (packs with their values).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Directory searched for content bundles (content-*/*.zst), checked against the profile.
    #[arg(long, value_name = "DIR")]
    content_dir: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Rewrite mechanical fixes into the user-data file (the original is kept as FILE.bak).
    #[arg(long)]
    fix: bool,
    /// Exit 1 on warnings as on errors (for CI).
    #[arg(long)]
    strict: bool,
}

pub(super) fn run(args: ValidateArgs) -> Result<ExitStatus, Error> {
    let request = ValidateRequest {
        user_data: args.user_data,
        profile: args.profile,
        content_dir: args.content_dir,
        settings: Some(args.settings.request()?),
        fix: args.fix,
    };
    let outcome = check::validate(&request, &progress(Style::Plain))?;
    output::outcome(
        args.format,
        Shape::Validate,
        &outcome,
        ValidateOutcome::text,
    )?;
    if let Some(fixed) = outcome.fixed_note() {
        output::note(&fixed);
    }
    let failing = outcome.report.errors()
        + if args.strict {
            outcome.report.warnings()
        } else {
            0
        };
    Ok(ExitStatus::from_ok(failing == 0))
}

pub(super) fn rules(format: Format) -> Result<ExitStatus, Error> {
    output::outcome(format, Shape::Rules, &check::rules(), RulesOutcome::text)?;
    Ok(ExitStatus::Success)
}
