//! One library function per command, in the manner of cargo's `ops::compile`: each takes a
//! request (what the command line asked, parsed), runs the stages of DESIGN.md §1 that the
//! command needs, tells its progress through [`Progress`], and returns an outcome that
//! serialises as the command's published JSON document (the command line renders it as text,
//! or wraps it under its `schema`). Errors carry their exit status.
//!
//! - [`build::build`], [`build::iso`], [`build::plan`]: images, ISOs and CI jobs;
//! - [`check`]: `validate`, `config show`, `rules`;
//! - [`images`]: `images rewrite`, `registry check`, `registry sync`, `iso push`;
//! - [`boot`]: `inspect`, `verify`, the mastering cache;
//! - [`doctor::doctor`], and the host checks the other commands run first;
//! - [`about::version`].

pub mod about;
pub mod boot;
pub mod build;
pub mod check;
pub mod doctor;
pub mod images;
pub mod inputs;
mod runtime;

use std::path::PathBuf;

pub use runtime::block_on;

// What the requests are made of, for those who make them (the command line).
pub use crate::build::Only;
pub use crate::config::{process_vars, Arch, Environment};
pub use crate::iso::verify::Accel;
pub use crate::iso::ToolPlace;
pub use crate::registry::client::DEADLINE as REGISTRY_DEADLINE;
pub use crate::secret::Credentials;
pub use crate::units::parse_size;

use crate::build::BuildError;
use crate::engine::EngineError;
use crate::iso::IsoError;

/// The process environment, read once (see [`crate::config::Environment`]).
pub fn environment() -> Result<Environment, Error> {
    Ok(Environment::from_vars(&crate::config::process_vars()?))
}

/// The exit status of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done, nothing wrong (warnings may have been printed).
    Success,
    /// 1: findings or failures: invalid inputs, a failed build, boot or check.
    Failure,
    /// 2: the command could not run: bad usage, unreadable files, an unreachable service.
    Error,
    /// 128 + the signal: stopped by SIGINT (130), SIGTERM (143) or SIGHUP (129), cleaned up.
    Stopped(u8),
}

impl ExitStatus {
    /// 0 when `ok`, else 1.
    pub fn from_ok(ok: bool) -> ExitStatus {
        if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::Stopped(signal) => 128 + signal,
        }
    }
}

/// Why a command did not do what it was asked, with its exit status ([`Error::status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The inputs hold errors, told as [`crate::progress::Event::Findings`].
    #[error("validation failed: nothing was built")]
    Invalid,
    /// A problem with what was asked, said whole (exit 1).
    #[error("{0}")]
    Finding(String),
    /// A command line that cannot be run as given (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the inputs could not be read: {0}")]
    Inputs(#[from] crate::validate::Error),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// The image sources (`sources.yaml`) do not render with these settings (exit 1).
    #[error(transparent)]
    Sources(crate::render::RenderError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Ci(#[from] crate::ci::CiError),
    #[error("probing the source images: {0}")]
    Probe(BuildError),
    #[error(transparent)]
    Build(BuildError),
    #[error("mastering the ISO: {0}")]
    Iso(#[from] IsoError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Registry(#[from] crate::registry::client::Error),
    #[error(transparent)]
    Sync(#[from] crate::registry::sync::SyncError),
    #[error(transparent)]
    Credentials(#[from] crate::registry::credentials::CredentialsError),
    #[error(transparent)]
    Verify(#[from] crate::iso::verify::VerifyError),
    #[error("the output directory is not usable: {0}")]
    Workspace(crate::run::RunError),
    #[error("the cache directory {} is not usable: {source}", .dir.display())]
    Cache {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Epoch(#[from] crate::config::EpochError),
    #[error(transparent)]
    Environment(#[from] crate::config::NotText),
    /// Host checks the command line needs failed; each says what it found and the fix.
    #[error("this machine cannot run the command line:{}", .0.iter().map(|c| format!("\n  {}: {}; {}", c.name, c.found, c.fix.as_deref().unwrap_or_default())).collect::<String>())]
    Host(Vec<crate::doctor::Check>),
    /// What a command prints could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// Stopped by a signal; what it held was removed.
    #[error("{name}: stopped, cleaned up")]
    Stopped { number: u8, name: &'static str },
}

impl Error {
    /// The error and its causes, `: `-separated, each cause left out when the text before
    /// already says it (many errors quote their source in their own message).
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(self);
        while let Some(error) = cause {
            cause = error.source();
            let said = error.to_string();
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

    /// The exit status this error ends the command with.
    pub fn status(&self) -> ExitStatus {
        match self {
            Error::Invalid
            | Error::Finding(_)
            | Error::Iso(_)
            | Error::Sources(_)
            | Error::Plan(_)
            | Error::Ci(_) => ExitStatus::Failure,
            Error::Build(e) if e.is_step_failure() => ExitStatus::Failure,
            Error::Workspace(crate::run::RunError::Busy { .. }) => ExitStatus::Failure,
            Error::Stopped { number, .. } => ExitStatus::Stopped(*number),
            _ => ExitStatus::Error,
        }
    }

    /// What to do about it, when the message does not say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Error::Host(_) => Some("`forge doctor` with the same flags shows every check"),
            _ => None,
        }
    }

    /// `source`, said of `what` being read.
    pub(crate) fn read(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Read { what, source }
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Error {
        Error::Build(e)
    }
}

impl From<crate::run::RunError> for Error {
    fn from(e: crate::run::RunError) -> Error {
        Error::Workspace(e)
    }
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
        assert_eq!(
            Error::Workspace(quoting).describe(),
            "the output directory is not usable: build: Is a directory"
        );
    }
}
