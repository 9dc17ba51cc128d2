//! `forge doctor`: the inputs and the host checks a command line needs, each with its fix.

use std::path::PathBuf;

use clap::Args;

use super::args::{AccessArgs, SettingsArgs};
use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::doctor::{self, DoctorRequest, Needs};
use crate::pipeline::{Error, ExitStatus, ToolPlace};

#[derive(Args)]
pub(super) struct DoctorArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Edge installer user-data to validate; repeatable, or a directory of *.yaml files.
    #[arg(long, value_name = "FILE|DIR")]
    user_data: Vec<PathBuf>,
    /// Directory whose templates replace the built-in ones (as `forge build --templates`).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Where the ISO tools will run (`host`: they must be on this machine).
    #[arg(long, value_enum, default_value_t = ToolPlace::Container)]
    iso_tools: ToolPlace,
    /// The engines the build uses (as `forge build --engine`). Default: DOCKER_HOST.
    #[arg(long, value_name = "URL")]
    engine: Vec<String>,
    /// The build pushes (`--push`, `--push-iso`, a registry cache): IMAGE_REGISTRY must
    /// answer.
    #[arg(long)]
    push: bool,
    /// The build boots its ISOs (`forge build --verify`, `forge verify`): QEMU and OVMF must
    /// be there.
    #[arg(long)]
    verify: bool,
    /// The boots enforce Secure Boot: OVMF's Secure Boot build must be there.
    #[arg(long)]
    secure_boot: bool,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn run(args: DoctorArgs) -> Result<ExitStatus, Error> {
    let settings = args.settings.request()?;
    let boots = args.verify || args.secure_boot;
    let request = DoctorRequest {
        settings,
        user_data: args.user_data,
        templates: args.templates.clone(),
        access: args.access.request()?,
        needs: Needs {
            engines: args.engine,
            iso_tools: Some(args.iso_tools),
            push: args.push,
            verify: boots,
            uefi: boots,
            secure_boot: args.secure_boot,
            templates: args.templates.clone(),
        },
    };
    let outcome = doctor::doctor(&request, &progress(Style::Plain))?;
    match args.format {
        Format::Json => output::json(Shape::Doctor, &outcome)?,
        Format::Text => output::stdout(&outcome.text(output::stdout_styled()))?,
    }
    Ok(ExitStatus::from_ok(outcome.passed))
}
