//! What forge reads from the process environment besides its `FORGE_*` settings, read once
//! from the variables the command line gathered: the date of reproducible outputs, where the
//! Docker Engine is and how to reach it, where the Docker configuration and the caches are.

use std::path::PathBuf;

/// The environment variables forge reads, other than `FORGE_*` (which are settings).
pub const READ_VARIABLES: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONFIG",
    "XDG_CACHE_HOME",
    "HOME",
];

/// The environment, as forge reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `SOURCE_DATE_EPOCH`, as given (checked where it is read: [`Environment::epoch`]).
    pub source_date_epoch: Option<String>,
    /// `DOCKER_HOST`: the engine's address.
    pub docker_host: Option<String>,
    /// `DOCKER_TLS_VERIFY` set (not empty, not `0`): the engine speaks TLS with client
    /// certificates.
    pub docker_tls_verify: bool,
    /// `DOCKER_CERT_PATH`, else `~/.docker`: the engine's TLS certificates.
    pub docker_cert_path: Option<PathBuf>,
    /// `DOCKER_CONFIG`, else `~/.docker`: the directory of the Docker CLI's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `XDG_CACHE_HOME`, else `~/.cache`.
    pub cache_home: Option<PathBuf>,
}

impl Environment {
    /// The environment of `vars` (name, value).
    pub fn from_vars(vars: &[(String, String)]) -> Environment {
        let var = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let home = var("HOME").map(PathBuf::from);
        let in_home = |path: &str| home.as_ref().map(|h| h.join(path));
        Environment {
            source_date_epoch: var("SOURCE_DATE_EPOCH"),
            docker_host: var("DOCKER_HOST"),
            docker_tls_verify: var("DOCKER_TLS_VERIFY").is_some_and(|v| v != "0"),
            docker_cert_path: var("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| in_home(".docker")),
            docker_config: var("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| in_home(".docker")),
            cache_home: var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| in_home(".cache")),
        }
    }

    /// `SOURCE_DATE_EPOCH` as seconds since 1970-01-01 UTC, `None` when unset.
    pub fn epoch(&self) -> Result<Option<u64>, EpochError> {
        self.source_date_epoch
            .as_deref()
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| EpochError(crate::limits::clip(v).into_owned()))
            })
            .transpose()
    }
}

/// The process environment as text. Variables that are not UTF-8 are left out (`.arg` files
/// see them as undefined), unless forge reads them (`FORGE_*`, [`READ_VARIABLES`]): that is an
/// error naming the variable.
pub fn process_vars() -> Result<Vec<(String, String)>, NotText> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        match value.into_string() {
            Ok(value) => vars.push((name.to_string(), value)),
            Err(_) if name.starts_with(super::ENV_PREFIX) || READ_VARIABLES.contains(&name) => {
                return Err(NotText(name.to_string()))
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// A variable forge reads that is not UTF-8 text.
#[derive(Debug, thiserror::Error)]
#[error("the environment variable {0} is not UTF-8 text; set it to UTF-8 text or unset it")]
pub struct NotText(String);

/// A `SOURCE_DATE_EPOCH` that is not a number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("SOURCE_DATE_EPOCH `{0}` must be a number of seconds since 1970-01-01 UTC")]
pub struct EpochError(String);
