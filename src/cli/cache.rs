//! `forge cache ls|prune`: the mastering cache.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::documents::Shape;
use crate::output::{self, Format};
use crate::pipeline::boot::{self, CacheListOutcome, CachePruneOutcome};
use crate::pipeline::{Error, ExitStatus};

#[derive(Subcommand)]
pub(super) enum CacheCommand {
    /// List the cache's entries, most recently used first.
    Ls {
        #[command(flatten)]
        dir: CacheDir,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove entries, least recently used first: all of them, or until the rest fit in
    /// --max-size. Entries a running build uses are kept.
    Prune {
        #[command(flatten)]
        dir: CacheDir,
        /// Keep the most recently used entries that fit in this size (split's syntax: 20GB,
        /// 500MB, 10G).
        #[arg(long, value_name = "SIZE", value_parser = parse_max_size)]
        max_size: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Args)]
pub(super) struct CacheDir {
    /// The cache directory. Default: $XDG_CACHE_HOME/forge, else ~/.cache/forge.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_max_size(text: &str) -> Result<u64, String> {
    crate::pipeline::parse_size(text)
        .ok_or_else(|| "expected a size such as 20GB, 500MB or 10G (split's syntax)".to_string())
}

pub(super) fn run(command: CacheCommand) -> Result<ExitStatus, Error> {
    let env = crate::pipeline::environment()?;
    match command {
        CacheCommand::Ls { dir, format } => {
            let listed = boot::cache_ls(dir.cache_dir.as_deref(), &env)?;
            output::outcome(format, Shape::CacheList, &listed, CacheListOutcome::text)?;
        }
        CacheCommand::Prune {
            dir,
            max_size,
            format,
        } => {
            let pruned = boot::cache_prune(dir.cache_dir.as_deref(), max_size, &env)?;
            output::outcome(format, Shape::CachePrune, &pruned, CachePruneOutcome::text)?;
        }
    }
    Ok(ExitStatus::Success)
}
