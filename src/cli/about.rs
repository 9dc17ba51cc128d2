//! What forge says about itself: `--version` (the commit it was built from and the default
//! image sources), `forge completions` for shells and `forge man` pages, all from the one clap
//! definition of the command line.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;
use serde::Serialize;

use super::args::FormatArg;
use super::Cli;
use crate::documents::Shape;
use crate::output::{self, Format};
use crate::pipeline::about::{Version, COMMIT_DATE};
use crate::pipeline::{Error, ExitStatus};

/// `forge --version [--format json]`.
pub(super) fn version(format: Format) -> Result<ExitStatus, Error> {
    let version = crate::pipeline::about::version();
    output::outcome(format, Shape::Version, &version, Version::text)?;
    Ok(ExitStatus::Success)
}

#[derive(Args)]
pub(super) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
    #[command(flatten)]
    format: FormatArg,
}

/// A completion script, as `forge completions --format json` wraps it.
#[derive(Serialize)]
struct Completions {
    shell: String,
    script: String,
}

/// `forge completions SHELL`: the script (text), or `{shell, script}` (json).
pub(super) fn completions(args: CompletionsArgs) -> Result<ExitStatus, Error> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "forge", &mut script);
    let completions = Completions {
        shell: args.shell.to_string(),
        script: String::from_utf8_lossy(&script).into_owned(),
    };
    output::outcome(args.format.format, Shape::Completions, &completions, |c| {
        c.script.clone()
    })?;
    Ok(ExitStatus::Success)
}

#[derive(Args)]
pub(super) struct ManArgs {
    /// Where the pages go (made when missing); each appears whole.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    format: FormatArg,
}

/// The man pages written, as `forge man --format json` lists them.
#[derive(Serialize)]
struct Pages {
    dir: PathBuf,
    pages: Vec<String>,
}

/// `forge man DIR`: `forge.1` and one page per command, `forge-<command>[-<sub>].1`.
pub(super) fn man(args: ManArgs) -> Result<ExitStatus, Error> {
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    let mut todo = vec![("forge".to_string(), command)];
    while let Some((name, command)) = todo.pop() {
        // clap's `help` subcommands are what `forge help X` prints: the pages themselves.
        let shown = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
        for sub in command.get_subcommands().filter(shown) {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let file = format!("{name}.1");
        let page = command.name(name.clone()).bin_name(name.replace('-', " "));
        let mut roff = Vec::new();
        clap_mangen::Man::new(page)
            .date(COMMIT_DATE)
            .source(format!("forge {}", env!("CARGO_PKG_VERSION")))
            .manual("forge manual")
            .render(&mut roff)?;
        crate::pipeline::about::write_page(&args.dir, &file, &String::from_utf8_lossy(&roff))?;
        pages.push(file);
    }
    pages.sort();
    let pages = Pages {
        dir: args.dir,
        pages,
    };
    output::outcome(args.format.format, Shape::Man, &pages, |p| {
        p.pages
            .iter()
            .map(|page| format!("{}\n", p.dir.join(page).display()))
            .collect()
    })?;
    Ok(ExitStatus::Success)
}
