//! `forge registry check` and `forge registry sync`.

use clap::{Args, Subcommand};

use super::args::AccessArgs;
use super::images::ImagesArgs;
use crate::documents::Shape;
use crate::output;
use crate::output::screen::{progress, Style};
use crate::pipeline::images::{self, CheckOutcome, Source, SyncOutcome, SyncRequest};
use crate::pipeline::{Error, ExitStatus};

#[derive(Subcommand)]
pub(super) enum RegistryCommand {
    /// Check that every rewritten reference exists; exit 1 listing what is missing.
    Check(CheckArgs),
    /// Copy every image to its rewritten location.
    Sync(SyncArgs),
}

#[derive(Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    images: ImagesArgs,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
pub(super) struct SyncArgs {
    #[command(flatten)]
    images: ImagesArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// Where the images come from.
    #[arg(long, value_enum)]
    from: Source,
    /// Copy only this platform of a multi-platform image (e.g. linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

pub(super) fn run(command: RegistryCommand) -> Result<ExitStatus, Error> {
    let env = crate::pipeline::environment()?;
    let progress = progress(Style::Plain);
    match command {
        RegistryCommand::Check(args) => {
            let access = args.access.request()?;
            let checked = images::check(&args.images.request(), &access, &env, &progress)?;
            output::outcome(
                args.images.format,
                Shape::RegistryCheck,
                &checked,
                CheckOutcome::text,
            )?;
            let absent = checked.absent();
            if absent.is_empty() {
                return Ok(ExitStatus::Success);
            }
            let (n, of) = (absent.len(), checked.images.len());
            let said = format!(
                "{n} of {of} images are not available:\n  {}",
                absent.join("\n  ")
            );
            output::error(&said, None);
            Ok(ExitStatus::Failure)
        }
        RegistryCommand::Sync(args) => {
            let request = SyncRequest {
                images: args.images.request(),
                from: args.from,
                platform: args.platform,
                jobs: usize::from(args.jobs),
            };
            let synced = images::sync(&request, &args.access.request()?, &env, &progress)?;
            output::outcome(
                args.images.format,
                Shape::RegistrySync,
                &synced,
                SyncOutcome::text,
            )?;
            Ok(ExitStatus::Success)
        }
    }
}
