//! `forge verify ISO`, and the boots' lines `forge build --verify` prints too.

use std::path::PathBuf;

use clap::Args;

use super::args::BootArgs;
use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::boot::{self, VerifyOutcome};
use crate::pipeline::{Error, ExitStatus};

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// The installer ISO.
    iso: PathBuf,
    #[command(flatten)]
    boot: BootArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn run(args: VerifyArgs) -> Result<ExitStatus, Error> {
    let env = crate::pipeline::environment()?;
    let progress = progress(Style::Plain);
    let verified = boot::verify(&args.iso, &args.boot.request(), &env, &progress)?;
    output::outcome(args.format, Shape::Verify, &verified, VerifyOutcome::text)?;
    Ok(ExitStatus::from_ok(verified.passed()))
}
