//! `forge iso` (master ISOs from an installer image) and `forge iso push`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{AccessArgs, InputsArgs, MasteringArgs};
use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::build::{self, IsoOutcome, IsoRequest};
use crate::pipeline::images::{self, IsoPushOutcome, IsoPushRequest};
use crate::pipeline::{Arch, Error, ExitStatus};

/// `forge iso [--image REF --user-data ...]` or `forge iso push ...`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct IsoCommandArgs {
    #[command(subcommand)]
    command: Option<IsoCommand>,
    #[command(flatten)]
    master: IsoArgs,
}

#[derive(Subcommand)]
enum IsoCommand {
    /// Push an installer ISO as an image, as CanvOS's +iso-disk-image: one layer holding
    /// /disk/<file name>, streamed from the file; the manifest is checked by digest.
    Push(PushArgs),
}

#[derive(Args)]
struct IsoArgs {
    /// The installer image to master ISOs from (built before, or pulled when the engine does
    /// not have it). Optional only to clap, which leaves it out with `forge iso push`.
    #[arg(long, value_name = "REF", required = true)]
    image: Option<String>,
    #[command(flatten)]
    inputs: InputsArgs,
    #[command(flatten)]
    mastering: MasteringArgs,
}

#[derive(Args)]
struct PushArgs {
    /// The installer ISO.
    iso: PathBuf,
    /// Where to push it: REGISTRY/REPOSITORY:TAG (CanvOS: IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG]).
    reference: String,
    /// The image's architecture.
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn run(args: IsoCommandArgs) -> Result<ExitStatus, Error> {
    if let Some(IsoCommand::Push(push)) = args.command {
        return self::push(push);
    }
    let master = args.master;
    let request = IsoRequest {
        image: master.image.unwrap_or_default(),
        inputs: master.inputs.request()?,
        mastering: master.mastering.request()?,
    };
    let progress = progress(master.mastering.progress);
    let isos = build::iso(&request, &progress)?;
    output::outcome(master.mastering.format, Shape::Iso, &isos, IsoOutcome::text)?;
    Ok(ExitStatus::Success)
}

fn push(args: PushArgs) -> Result<ExitStatus, Error> {
    let request = IsoPushRequest {
        iso: args.iso,
        reference: args.reference,
        arch: args.arch,
    };
    let env = crate::pipeline::environment()?;
    let progress = progress(Style::Plain);
    let pushed = images::iso_push(&request, &args.access.request()?, &env, &progress)?;
    output::outcome(args.format, Shape::IsoPush, &pushed, IsoPushOutcome::text)?;
    Ok(ExitStatus::Success)
}
