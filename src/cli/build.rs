//! `forge build` (and `--dry-run`).

use std::path::PathBuf;

use clap::Args;

use super::args::{BootArgs, InputsArgs, MasteringArgs};
use crate::documents::Shape;
use crate::output;
use crate::output::screen::progress;
use crate::pipeline::build::{self, BuildOutcome, BuildRequest, DryRunOutcome};
use crate::pipeline::{Error, ExitStatus, Only};

#[derive(Args)]
#[command(
    after_help = "Examples, in a CanvOS checkout (its Earthfile, .arg and user-data are read as Earthly reads them):
  forge build                      ./earthly.sh +build-all-images: provider images and the ISO
  forge build --no-iso --push      +build-provider-images, pushed to IMAGE_REGISTRY
  forge build --only iso           +iso: the installer image and the ISO
  forge build --dry-run            the plan, with no engine and no network
  forge build --verify             and boot each ISO in QEMU"
)]
pub(super) struct BuildArgs {
    #[command(flatten)]
    inputs: InputsArgs,
    #[command(flatten)]
    mastering: MasteringArgs,
    /// Cluster profile, checked against the user-data.
    #[arg(help_heading = "Build", long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// CA certificates added to the images' trust store. Default: the checkout's certs/.
    #[arg(help_heading = "Build", long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Push the provider images to IMAGE_REGISTRY, and to where the user-data's external
    /// registry or mapping rules send the edge host to pull them (with its credentials and CA).
    #[arg(help_heading = "Build", long)]
    push: bool,
    /// With --push, push the provider images to IMAGE_REGISTRY only, not to the references
    /// the user-data rewrites them to.
    #[arg(help_heading = "Build", long, requires = "push")]
    no_push_rewritten: bool,
    /// Build the images only, no installer ISO.
    #[arg(help_heading = "Build", long, conflicts_with_all = ["push_iso", "verify"])]
    no_iso: bool,
    /// Boot each ISO in QEMU after mastering it (see `forge verify`); a failed boot fails the
    /// build.
    #[arg(help_heading = "Build", long)]
    verify: bool,
    #[command(flatten)]
    boot: BootArgs,
    /// Provider images built at once.
    #[arg(help_heading = "Engines and CI jobs", long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
    /// Build on this Docker Engine (unix:///PATH or tcp://HOST:PORT, TLS as with DOCKER_HOST);
    /// repeatable: provider images are spread over the engines, each engine getting the base
    /// image once (from the --cache-from/--cache-to registry cache when there is one, else
    /// built there); the first engine builds the rest and masters the ISOs. Default:
    /// DOCKER_HOST.
    #[arg(help_heading = "Engines and CI jobs", long, value_name = "URL")]
    engine: Vec<String>,
    /// Make only this step, with what it needs: base, provider:VERSION, installer, or iso
    /// (the installer image and the ISOs); repeatable. What each CI job of `forge plan` runs.
    #[arg(help_heading = "Engines and CI jobs", long, value_name = "STEP")]
    only: Vec<Only>,
    /// Pull the images other runs pushed with --cache-to instead of building them: `registry`
    /// (IMAGE_REGISTRY/forge-cache) or a repository.
    #[arg(
        help_heading = "Engines and CI jobs",
        long,
        value_name = "registry|REPOSITORY"
    )]
    cache_from: Option<String>,
    /// Push every image this run builds to a registry cache (`registry` or a repository, as
    /// --cache-from), tagged <kind>-<input hash>, for other runs to pull.
    #[arg(
        help_heading = "Engines and CI jobs",
        long,
        value_name = "registry|REPOSITORY"
    )]
    cache_to: Option<String>,
    /// Print the plan (steps, tags, the images each starts FROM, where the edge host pulls
    /// from; with --format json also each rendered Dockerfile) and build nothing. Needs no
    /// engine and pulls nothing.
    #[arg(help_heading = "Build", long)]
    dry_run: bool,
}

pub(super) fn run(args: BuildArgs) -> Result<ExitStatus, Error> {
    let request = BuildRequest {
        inputs: args.inputs.request()?,
        mastering: args.mastering.request()?,
        profile: args.profile,
        certs: args.certs,
        push: args.push,
        no_push_rewritten: args.no_push_rewritten,
        no_iso: args.no_iso,
        verify: args.verify.then(|| args.boot.request()),
        jobs: usize::from(args.jobs),
        engines: args.engine,
        only: args.only,
        cache_from: args.cache_from,
        cache_to: args.cache_to,
    };
    let (format, progress) = (args.mastering.format, progress(args.mastering.progress));
    if args.dry_run {
        let plan = build::dry_run(&request, &progress)?;
        output::outcome(format, Shape::BuildPlan, &plan, DryRunOutcome::text)?;
        return Ok(ExitStatus::Success);
    }
    let built = build::build(&request, &progress)?;
    output::outcome(format, Shape::Build, &built, BuildOutcome::text)?;
    Ok(ExitStatus::from_ok(built.passed()))
}
