//! `forge config show` and `forge schema`.

use clap::Subcommand;

use super::args::{FormatArg, SettingsArgs};
use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::check::{self, ConfigOutcome, SchemaOf, SchemaOutcome};
use crate::pipeline::{Error, ExitStatus};

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Print every setting, its value and where it came from.
    Show {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub(super) enum SchemaCommand {
    /// The edge installer user-data (`#cloud-config` with `stylus`).
    UserData(FormatArg),
    /// forge.yaml build settings.
    Config(FormatArg),
    /// A document forge prints with --format json (each names its shape in `schema`).
    Output {
        #[arg(value_enum)]
        name: Shape,
        #[command(flatten)]
        format: FormatArg,
    },
}

pub(super) fn show(command: ConfigCommand) -> Result<ExitStatus, Error> {
    let ConfigCommand::Show { settings, format } = command;
    let outcome = check::config_show(&settings.request()?, &progress(Style::Plain))?;
    output::outcome(format, Shape::Config, &outcome, ConfigOutcome::text)?;
    if format == Format::Text && !outcome.report.diagnostics.is_empty() {
        output::findings(&outcome.report);
    }
    Ok(ExitStatus::from_ok(outcome.report.errors() == 0))
}

/// `forge schema`: the JSON Schema itself (text), or wrapped in a `schema` document (json).
pub(super) fn schema(command: SchemaCommand) -> Result<ExitStatus, Error> {
    let (of, format) = match command {
        SchemaCommand::UserData(f) => (SchemaOf::UserData, f.format),
        SchemaCommand::Config(f) => (SchemaOf::Config, f.format),
        SchemaCommand::Output { name, format } => (SchemaOf::Output(name), format.format),
    };
    output::outcome(
        format,
        Shape::Schema,
        &check::schema(of),
        SchemaOutcome::text,
    )?;
    Ok(ExitStatus::Success)
}
