//! The command line: clap parses the arguments into the library's requests ([`args`] holds
//! the groups several commands share), one file per command calls its entry point in
//! [`crate::pipeline`] and renders the outcome; [`output`] is the one door out, [`progress`]
//! shows what a command tells while it works. The exit status comes from the outcome or the
//! error, here, once.

mod about;
mod args;
mod build;
mod cache;
mod config;
mod doctor;
mod images;
mod inspect;
mod iso;
mod plan;
mod registry;
mod validate;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{self, Format};
use crate::pipeline::{Error, ExitStatus};
use args::FormatArg;

#[derive(Parser)]
#[command(
    name = "forge",
    about = "Build orchestrator for Palette edge hosts: validates build inputs, builds the provider images and installer ISOs CanvOS builds, boots and inspects them, and checks and fills registries",
    disable_version_flag = true,
    after_help = "Exit status: 0 ok, 1 findings or failures, 2 usage or I/O errors, 130 interrupted (143 and 129 for SIGTERM and SIGHUP)."
)]
pub(crate) struct Cli {
    /// Print the version, the commit and date it was built from, and the default image sources.
    #[arg(short = 'V', long)]
    version: bool,
    /// With --version: text or json.
    #[arg(long, value_enum, requires = "version")]
    format: Option<Format>,
    /// Errors only: no progress, notes or warnings on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More on stderr: every line of build output, beside the spinners too.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Build the images on the Docker Engine and master the installer ISO (validation first).
    Build(Box<build::BuildArgs>),
    /// Print the build as independent CI jobs (JSON, GitHub Actions or GitLab CI): the base,
    /// one job per provider image, the installer and the ISOs, sharing images through a
    /// registry cache.
    Plan(Box<plan::PlanArgs>),
    /// Show what an installer ISO holds: label, boot entries, partitions, files, user-data.
    Inspect(inspect::InspectArgs),
    /// Boot an installer ISO in QEMU (BIOS and UEFI; CD, disk, USB) and watch its console.
    Verify(verify::VerifyArgs),
    /// Master installer ISOs, one per user-data, from an installer image built (or pulled)
    /// before; or work with ISOs built before (`forge iso push`).
    Iso(Box<iso::IsoCommandArgs>),
    /// The mastering cache: the parts ISOs of one installer image share.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Check user-data, build settings and a cluster profile before a build.
    Validate(validate::ValidateArgs),
    /// Inspect the resolved build settings.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a JSON Schema (2020-12): of an input, for editors such as yaml-language-server,
    /// or of a document forge prints with --format json.
    #[command(subcommand)]
    Schema(config::SchemaCommand),
    /// Show where the edge host will pull each image from.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Check and fill the registries the edge host pulls from.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// List every validation rule with its code and severity.
    Rules(FormatArg),
    /// Check this host for everything the given command line needs (Docker Engine, registries,
    /// ISO tools, QEMU and firmware, KVM, settings and user-data) and say how to fix what lacks.
    Doctor(Box<doctor::DoctorArgs>),
    /// Print a shell completion script (bash: `source <(forge completions bash)`).
    Completions(about::CompletionsArgs),
    /// Write a man page per command (forge.1, forge-build.1, ...) into a directory.
    Man(about::ManArgs),
}

/// Run the command line and return the process exit code.
pub fn main() -> ExitCode {
    // Everything forge creates (work directories, staged user-data, partial ISOs, outputs) is
    // its user's alone from the moment it exists.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    output::set_voice(output::Voice {
        quiet: cli.quiet,
        verbose: cli.verbose,
        no_color: crate::pipeline::environment().is_ok_and(|env| env.no_color),
    });
    let status = match run(cli) {
        Ok(status) => status,
        Err(e) => {
            output::error(&e.describe(), e.help());
            e.status()
        }
    };
    ExitCode::from(status.code())
}

fn run(cli: Cli) -> Result<ExitStatus, Error> {
    let Some(command) = cli.command else {
        if cli.version {
            return about::version(cli.format.unwrap_or_default());
        }
        use clap::CommandFactory as _;
        let _ = Cli::command().write_help(&mut std::io::stderr().lock());
        return Ok(ExitStatus::Error);
    };
    match command {
        Command::Build(args) => build::run(*args),
        Command::Plan(args) => plan::run(*args),
        Command::Validate(args) => validate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Iso(args) => iso::run(*args),
        Command::Cache(command) => cache::run(command),
        Command::Config(command) => config::show(command),
        Command::Schema(command) => config::schema(command),
        Command::Images(command) => images::run(command),
        Command::Registry(command) => registry::run(command),
        Command::Rules(FormatArg { format }) => validate::rules(format),
        Command::Doctor(args) => doctor::run(*args),
        Command::Completions(args) => about::completions(args),
        Command::Man(args) => about::man(args),
    }
}
