//! `forge inspect ISO`.

use std::path::PathBuf;

use clap::Args;

use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::boot::{self, InspectOutcome, InspectRequest};
use crate::pipeline::{Error, ExitStatus};

#[derive(Args)]
pub(super) struct InspectArgs {
    /// The installer ISO.
    iso: PathBuf,
    /// Compare the ISO's /config.yaml with this user-data file.
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Also print /config.yaml, secrets masked.
    #[arg(long)]
    show_config: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn run(args: InspectArgs) -> Result<ExitStatus, Error> {
    let request = InspectRequest {
        iso: args.iso,
        user_data: args.user_data,
        show_config: args.show_config,
    };
    let inspected = boot::inspect(&request, &progress(Style::Plain))?;
    output::outcome(
        args.format,
        Shape::Inspect,
        &inspected,
        InspectOutcome::text,
    )?;
    Ok(ExitStatus::from_ok(inspected.report.problems.is_empty()))
}
