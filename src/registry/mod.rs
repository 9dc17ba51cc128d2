//! Registries: the rewrite rules the edge agent applies (single external registry prefix,
//! mapping rules), and the OCI distribution client forge uses to check and fill registries
//! with the same credentials, CA certificates and `insecure` settings as the edge host.

pub mod client;
pub mod credentials;
pub mod rewrite;
pub mod sync;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{stream, StreamExt as _};
use tokio::sync::{Mutex, OnceCell};

use client::{Access, Error, Found, Registry, Retry};
use credentials::DockerCredentials;
use rewrite::{Declared, Rewrite};

use crate::secret::Credentials;

/// Where credentials and trust come from, for registries forge talks to.
pub struct Policy {
    pub declared: Vec<Declared>,
    pub docker: DockerCredentials,
    /// `--username` / `--password-stdin`: used for the target registries.
    pub credentials: Option<Credentials>,
    /// `--registry-ca`: trusted for every registry.
    pub extra_ca: Vec<String>,
    pub proxies: crate::config::Proxies,
    pub retry: Retry,
}

impl Policy {
    /// The access for `host`: a registry the user-data declares brings its credentials,
    /// certificates and `insecure`; credentials given on the command line come next, then
    /// the Docker config.
    pub async fn access(&self, host: &str) -> Result<Access, Error> {
        let declared = self.declared.iter().find(|d| d.domain.authority() == host);
        let mut certificates: Vec<String> =
            declared.map(|d| d.certificates.clone()).unwrap_or_default();
        certificates.extend(self.extra_ca.iter().cloned());
        let from_user_data = declared.and_then(|d| d.credentials.clone());
        let credentials = match from_user_data.or_else(|| self.credentials.clone()) {
            Some(c) => Some(c),
            None => self
                .docker
                .lookup(host)
                .await
                .map_err(|e| Error::Protocol {
                    registry: host.to_string(),
                    detail: e.to_string(),
                })?,
        };
        Ok(Access {
            credentials,
            certificates,
            insecure: declared.is_some_and(|d| d.insecure),
            proxies: self.proxies.clone(),
        })
    }
}

impl Policy {
    /// Where the credentials for `host` come from, in [`Policy::access`]'s order, never what
    /// they are; `None`: anonymous.
    pub fn credentials_origin(&self, host: &str) -> Option<String> {
        let declared = self.declared.iter().find(|d| d.domain.authority() == host);
        if declared.is_some_and(|d| d.credentials.is_some()) {
            return Some("the user-data (its stylus registry entry)".into());
        }
        if self.credentials.is_some() {
            return Some("--username and --password-stdin".into());
        }
        self.docker.origin(host)
    }
}

/// Images `forge registry check` asks about at once.
const CHECK_JOBS: usize = 8;

/// A registry's connection, or why there is none.
type Opened = Result<Arc<Registry>, Error>;

/// Connections to registries: each host is probed once per run, and everything that needs it
/// waits for that one probe and shares its outcome, failure included.
pub struct Pool {
    policy: Policy,
    open: Mutex<HashMap<String, Arc<OnceCell<Opened>>>>,
}

impl Pool {
    pub fn new(policy: Policy) -> Pool {
        Pool {
            policy,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub async fn get(&self, host: &str) -> Opened {
        let cell = self
            .open
            .lock()
            .await
            .entry(host.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let access = self.policy.access(host).await?;
            Ok(Arc::new(
                Registry::connect(host, access, self.policy.retry.clone()).await?,
            ))
        })
        .await
        .clone()
    }
}

/// What `forge registry check` found for one image.
#[derive(Debug)]
pub enum Presence {
    Present(Found),
    Missing,
    Unauthorized(String),
    Failed(String),
}

impl Presence {
    pub fn label(&self) -> &'static str {
        match self {
            Presence::Present(_) => "present",
            Presence::Missing => "missing",
            Presence::Unauthorized(_) => "unauthorized",
            Presence::Failed(_) => "error",
        }
    }
}

/// Whether each rewritten reference exists (manifest HEAD; Docker and OCI manifests and
/// indexes all count), [`CHECK_JOBS`] images at a time, in the order given.
pub async fn check(pool: &Pool, rewrites: &[Rewrite]) -> Vec<Presence> {
    let checks = rewrites.iter().map(|rewrite| async move {
        let to = &rewrite.to;
        let outcome = async {
            pool.get(&to.host)
                .await?
                .manifest_head(&to.path, to.manifest_reference())
                .await
        }
        .await;
        match outcome {
            Ok(Some(found)) => Presence::Present(found),
            Ok(None) => Presence::Missing,
            Err(e @ (Error::Unauthorized { .. } | Error::Forbidden { .. })) => {
                Presence::Unauthorized(e.to_string())
            }
            Err(e) => Presence::Failed(e.to_string()),
        }
    });
    stream::iter(checks).buffered(CHECK_JOBS).collect().await
}
