//! The command line: argument parsing (clap) and the subcommands, each a thin front over the
//! library. Errors get their context here; what is printed goes through [`output`], the one
//! door (formats, the exit status, the secret redactor).

mod about;
mod build;
mod doctor;
mod images;
mod inputs;
mod iso;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Inputs};
use crate::limits::FileKind;
use crate::secret::Redactor;
use crate::userdata;
use crate::validate;
use output::{Exit, ExitStatus, Format, Shape};

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

/// `--format text|json`, for commands that take nothing else.
#[derive(Args)]
struct FormatArg {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Subcommand)]
enum Command {
    /// Build the images on the Docker Engine and master the installer ISO (validation first).
    Build(Box<build::BuildArgs>),
    /// Print the build as independent CI jobs (JSON, GitHub Actions or GitLab CI): the base,
    /// one job per provider image, the installer and the ISOs, sharing images through a
    /// registry cache.
    Plan(Box<build::PlanArgs>),
    /// Show what an installer ISO holds: label, boot entries, partitions, files, user-data.
    Inspect(iso::InspectArgs),
    /// Boot an installer ISO in QEMU (BIOS and UEFI; CD, disk, USB) and watch its console.
    Verify(iso::VerifyArgs),
    /// Master installer ISOs, one per user-data, from an installer image built (or pulled)
    /// before; or work with ISOs built before (`forge iso push`).
    Iso(Box<iso::IsoCommandArgs>),
    /// The mastering cache: the parts ISOs of one installer image share.
    #[command(subcommand)]
    Cache(iso::CacheCommand),
    /// Check user-data, build settings and a cluster profile before a build.
    Validate(ValidateArgs),
    /// Inspect the resolved build settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a JSON Schema (2020-12): of an input, for editors such as yaml-language-server,
    /// or of a document forge prints with --format json.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Show where the edge host will pull each image from.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Check and fill the registries the edge host pulls from.
    #[command(subcommand)]
    Registry(images::RegistryCommand),
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

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting, its value and where it came from.
    Show {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
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

/// Where build settings come from (precedence: defaults < --config < --arg < FORGE_* env < --set).
#[derive(Args)]
struct SettingsArgs {
    /// forge.yaml build settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// CanvOS .arg file (KEY=VALUE lines).
    #[arg(long, value_name = "FILE")]
    arg: Option<PathBuf>,
    /// Override one setting; repeatable. Settings holding a password are refused here: use
    /// FORGE_<KEY> or --secret-file.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Read one setting's value from a file (its first line), e.g. a proxy URL with a password;
    /// repeatable.
    #[arg(long = "secret-file", value_name = "KEY=FILE", value_parser = parse_set)]
    secret_files: Vec<(String, String)>,
    /// The CanvOS checkout: its Dockerfile, certs/, overlay/, k8s_version.json and optional
    /// files. Default: the directory of --arg, else the current directory.
    #[arg(long, value_name = "DIR")]
    checkout: Option<PathBuf>,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("inputs").multiple(true).required(true).args(["user_data", "profile", "config", "arg"]))]
struct ValidateArgs {
    /// Edge installer user-data (#cloud-config).
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
}

fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err("expected KEY=VALUE".into()),
    }
}

impl SettingsArgs {
    /// These flags as command-line words again (for the jobs `forge plan` emits), but
    /// `--secret-file`: see [`SettingsArgs::secret_file_words`].
    fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        let mut flag = |name: &str, value: String| words.extend([format!("--{name}"), value]);
        if let Some(path) = &self.config {
            flag("config", path.display().to_string());
        }
        if let Some(path) = &self.arg {
            flag("arg", path.display().to_string());
        }
        for (key, value) in &self.sets {
            flag("set", format!("{key}={value}"));
        }
        if let Some(dir) = &self.checkout {
            flag("checkout", dir.display().to_string());
        }
        words
    }

    /// The `--secret-file` flags as words: files of this machine, which CI jobs do not have.
    fn secret_file_words(&self) -> Vec<String> {
        self.secret_files
            .iter()
            .flat_map(|(key, path)| ["--secret-file".to_string(), format!("{key}={path}")])
            .collect()
    }

    /// The checkout directory: `--checkout`, the directory of `--arg`, or `.`; absolute.
    fn checkout(&self) -> PathBuf {
        let dir = self
            .checkout
            .clone()
            .or_else(|| {
                let dir = self.arg.as_ref()?.parent()?;
                Some(if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_path_buf()
                })
            })
            .unwrap_or_else(|| PathBuf::from("."));
        std::path::absolute(&dir).unwrap_or(dir)
    }

    fn inputs(&self) -> Result<Inputs> {
        let read = |kind, path: &Option<PathBuf>| -> Result<Option<(PathBuf, String)>> {
            path.as_ref()
                .map(|p| Ok((p.clone(), validate::read(kind, p)?)))
                .transpose()
        };
        Ok(Inputs {
            config: read(FileKind::Settings, &self.config)?,
            arg: read(FileKind::Arg, &self.arg)?,
            env: environment()?,
            sets: self.sets.clone(),
            secret_files: self
                .secret_files
                .iter()
                .map(|(key, path)| {
                    let path = PathBuf::from(path);
                    let text = validate::read(FileKind::Secret, &path)?;
                    let value = text.lines().next().unwrap_or_default().to_string();
                    Ok((key.clone(), path, value))
                })
                .collect::<Result<_>>()?,
            checkout: Some(self.checkout()),
        })
    }
}

/// The process environment as text. Variables that are not UTF-8 are left out (`.arg` files
/// see them as undefined), unless forge reads them: that is an error naming the variable.
fn environment() -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        match value.into_string() {
            Ok(value) => env.push((name.to_string(), value)),
            Err(_)
                if name.starts_with(config::ENV_PREFIX)
                    || config::READ_VARIABLES.contains(&name) =>
            {
                anyhow::bail!("the environment variable {name} is not UTF-8 text; set it to UTF-8 text or unset it")
            }
            Err(_) => {}
        }
    }
    Ok(env)
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
    });
    let status = match run(cli) {
        Ok(status) => status,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(status)) => *status,
            None => {
                output::error(&Redactor::new(), &describe(&e));
                ExitStatus::Error
            }
        },
    };
    ExitCode::from(status.code())
}

/// An error and its causes, `: `-separated, each cause left out when the text before already
/// says it (many errors quote their source in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

fn run(cli: Cli) -> Result<ExitStatus> {
    let Some(command) = cli.command else {
        if cli.version {
            return about::version(cli.format.unwrap_or_default());
        }
        let mut help = std::io::stderr().lock();
        use clap::CommandFactory as _;
        Cli::command().write_help(&mut help)?;
        return Ok(ExitStatus::Error);
    };
    match command {
        Command::Build(args) => build::build(*args),
        Command::Plan(args) => build::plan(*args),
        Command::Validate(args) => inputs::validate(args),
        Command::Inspect(args) => iso::inspect(args),
        Command::Verify(args) => iso::verify(args),
        Command::Iso(args) => match args.command {
            Some(iso::IsoCommand::Push(push)) => iso::push(push),
            None => build::iso(args.master),
        },
        Command::Cache(command) => iso::cache(command),
        Command::Config(ConfigCommand::Show { settings, format }) => {
            inputs::config_show(&settings, format)
        }
        Command::Images(images::ImagesCommand::Rewrite(args)) => images::rewrite(args),
        Command::Registry(images::RegistryCommand::Check(args)) => images::check(args),
        Command::Registry(images::RegistryCommand::Sync(args)) => images::sync(args),
        Command::Schema(command) => schema(command),
        Command::Rules(FormatArg { format }) => inputs::rules(format),
        Command::Doctor(args) => doctor::doctor(*args),
        Command::Completions(args) => about::completions(args),
        Command::Man(args) => about::man(args),
    }
}

/// `forge schema`: the JSON Schema itself (text), or wrapped in a `schema` document (json).
fn schema(command: SchemaCommand) -> Result<ExitStatus> {
    let (name, schema, format) = match command {
        SchemaCommand::UserData(FormatArg { format }) => {
            ("user-data".to_string(), userdata::schema(), format)
        }
        SchemaCommand::Config(FormatArg { format }) => {
            ("config".to_string(), config::schema(), format)
        }
        SchemaCommand::Output { name, format } => (
            format!("output/{}", name.name()),
            name.schema(),
            format.format,
        ),
    };
    let redactor = Redactor::new();
    match format {
        Format::Text => output::text(&redactor, &(serde_json::to_string_pretty(&schema)? + "\n"))?,
        Format::Json => output::json(
            &redactor,
            Shape::Schema,
            serde_json::json!({"document": name, "json_schema": schema}),
        )?,
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quoting_its_cause_says_it_once() {
        let io = std::io::Error::new(std::io::ErrorKind::IsADirectory, "Is a directory");
        let quoting = crate::run::RunError::Io {
            path: PathBuf::from("build"),
            source: io,
        };
        let e = anyhow::Error::new(quoting).context("the output directory is not usable");
        assert_eq!(
            describe(&e),
            "the output directory is not usable: build: Is a directory"
        );
    }
}
