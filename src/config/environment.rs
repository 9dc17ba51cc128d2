//! What forge reads from the process environment besides its `FORGE_*` settings, read once
//! from the variables the command line gathered: the date of reproducible outputs, where the
//! Docker Engine is and how to reach it, where the Docker configuration and the caches are,
//! the proxies forge's own registry calls go through, whether colour is wanted.

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
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "NO_COLOR",
];

/// The proxies of forge's own connections (its registry client), as reqwest reads them from
/// the environment: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, upper or lower case; `NO_PROXY`
/// exempts hosts and domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    pub http: Option<String>,
    pub https: Option<String>,
    pub all: Option<String>,
    pub no_proxy: Option<String>,
}

impl Proxies {
    /// The proxy a connection to `host` by `scheme` goes through.
    pub fn for_url(&self, scheme: &str, host: &str) -> Option<&str> {
        let exempt = self.no_proxy.as_deref().is_some_and(|list| {
            list.split(',').map(str::trim).any(|entry| {
                let entry = entry.trim_start_matches('.');
                entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
            })
        });
        let by_scheme = match scheme {
            "https" => &self.https,
            _ => &self.http,
        };
        (!exempt)
            .then(|| by_scheme.as_deref().or(self.all.as_deref()))
            .flatten()
    }
}

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
    pub proxies: Proxies,
    /// `NO_COLOR` set (not empty): no colour, no spinners.
    pub no_color: bool,
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
        let either = |name: &str| var(name).or_else(|| var(&name.to_lowercase()));
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
            proxies: Proxies {
                http: either("HTTP_PROXY"),
                https: either("HTTPS_PROXY"),
                all: either("ALL_PROXY"),
                no_proxy: either("NO_PROXY"),
            },
            no_color: var("NO_COLOR").is_some(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_vars(&vars)
    }

    #[test]
    fn proxies_are_read_in_either_case_and_no_proxy_exempts_domains() {
        let e = env(&[
            ("https_proxy", "http://p:3128"),
            ("ALL_PROXY", "http://all:1080"),
            ("NO_PROXY", ".corp.local,registry.lan"),
        ]);
        assert_eq!(e.proxies.for_url("https", "quay.io"), Some("http://p:3128"));
        assert_eq!(
            e.proxies.for_url("http", "quay.io"),
            Some("http://all:1080")
        );
        assert_eq!(e.proxies.for_url("https", "r.corp.local"), None);
        assert_eq!(e.proxies.for_url("https", "registry.lan"), None);
    }

    #[test]
    fn the_docker_and_cache_directories_default_to_home() {
        let e = env(&[("HOME", "/home/u"), ("NO_COLOR", "1")]);
        assert_eq!(e.docker_config, Some(PathBuf::from("/home/u/.docker")));
        assert_eq!(e.cache_home, Some(PathBuf::from("/home/u/.cache")));
        assert!(e.no_color && !e.docker_tls_verify);
        assert_eq!(
            env(&[("SOURCE_DATE_EPOCH", "x1")])
                .epoch()
                .unwrap_err()
                .to_string(),
            "SOURCE_DATE_EPOCH `x1` must be a number of seconds since 1970-01-01 UTC"
        );
    }
}
