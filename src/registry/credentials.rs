//! Registry credentials from the Docker client configuration: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), its `auths`, and the `credHelpers` / `credsStore`
//! helpers (`docker-credential-NAME get`, the server on standard input, never in arguments,
//! answering within [`CREDENTIAL_HELPER_TIMEOUT`]). Docker Hub's credentials are kept under
//! `https://index.docker.io/v1/`, as the Docker CLI keeps them.

use crate::config::Environment;
use crate::secret::Credentials;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use crate::limits::{FileKind, CREDENTIAL_HELPER_TIMEOUT};

/// The key and server address of Docker Hub's credentials.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read Docker config `{path}`: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("credential helper docker-credential-{helper} failed for {host}: {detail}")]
    Helper {
        helper: String,
        host: String,
        detail: String,
    },
}

/// The Docker client configuration, if there is one.
pub struct DockerCredentials {
    config: DockerConfig,
    /// The file it was read from.
    path: Option<PathBuf>,
}

/// Where the Docker config lives: `config.json` in `DOCKER_CONFIG`, else in `~/.docker`.
pub fn config_path(env: &Environment) -> Option<PathBuf> {
    env.docker_config
        .as_ref()
        .map(|dir| dir.join("config.json"))
}

impl DockerCredentials {
    /// Load the config; a missing file means no credentials.
    pub fn load(env: &Environment) -> Result<DockerCredentials, CredentialsError> {
        let Some(path) = config_path(env).filter(|p| p.exists()) else {
            return Ok(DockerCredentials {
                config: DockerConfig::default(),
                path: None,
            });
        };
        let text = crate::limits::read_text(FileKind::DockerConfig, &path).map_err(|e| {
            CredentialsError::Config {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
        let config = serde_json::from_str(&text).map_err(|e| CredentialsError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(DockerCredentials {
            config,
            path: Some(path),
        })
    }

    /// Where the credentials for `host` come from, never what they are: a credential
    /// helper, an `auths` entry or the `credsStore` of the config file; `None` without any.
    pub fn origin(&self, host: &str) -> Option<String> {
        let file = self.path.as_ref()?.display();
        let keys = keys_for(host);
        if let Some(helper) = keys.iter().find_map(|k| self.config.cred_helpers.get(k)) {
            return Some(format!("credHelpers in {file}: docker-credential-{helper}"));
        }
        let entry = keys.iter().find_map(|k| self.config.auths.get(k));
        if entry.is_some_and(|e| decode(e).is_some()) {
            return Some(format!("auths in {file}"));
        }
        let store = self.config.creds_store.as_ref()?;
        Some(format!("credsStore in {file}: docker-credential-{store}"))
    }

    /// Username and password for `host` (`host[:port]`), if configured.
    pub async fn lookup(&self, host: &str) -> Result<Option<Credentials>, CredentialsError> {
        let keys = keys_for(host);
        if let Some(helper) = keys.iter().find_map(|k| self.config.cred_helpers.get(k)) {
            return run_helper(helper, host).await;
        }
        for key in &keys {
            if let Some(entry) = self.config.auths.get(key) {
                if let Some(found) = decode(entry) {
                    return Ok(Some(found));
                }
            }
        }
        match &self.config.creds_store {
            Some(store) => run_helper(store, host).await,
            None => Ok(None),
        }
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "registry-1.docker.io" | "index.docker.io"
    )
}

/// The spellings of a host that Docker configs use as keys; Docker Hub's first.
fn keys_for(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    if is_docker_hub(host) {
        keys.insert(0, DOCKER_HUB_SERVER.to_string());
    }
    keys
}

/// The server a credential helper is asked about: the host, or Docker Hub's address.
fn server_for(host: &str) -> &str {
    if is_docker_hub(host) {
        DOCKER_HUB_SERVER
    } else {
        host
    }
}

fn decode(entry: &AuthEntry) -> Option<Credentials> {
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

async fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, CredentialsError> {
    let program = format!("docker-credential-{helper}");
    let error = |detail: String| CredentialsError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        detail,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| error(format!("cannot run {program}: {e}")))?;
    let ask = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(server_for(host).as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(CREDENTIAL_HELPER_TIMEOUT, ask)
        .await
        .map_err(|_| {
            error(format!(
                "{program} did not answer within {} s (it was stopped); check that it runs without a prompt, or log in again",
                CREDENTIAL_HELPER_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_lowercase();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(error(format!("exit status {}", output.status)));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|_| error("unreadable answer".into()))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_auth_entries() {
        let entry = AuthEntry {
            auth: Some(base64::engine::general_purpose::STANDARD.encode("bob:pa:ss")),
            ..AuthEntry::default()
        };
        let found = decode(&entry).unwrap();
        assert_eq!((&*found.username, &*found.password), ("bob", "pa:ss"));
        let entry = AuthEntry {
            username: Some("u".into()),
            password: Some("p".into()),
            ..AuthEntry::default()
        };
        let found = decode(&entry).unwrap();
        assert_eq!((&*found.username, &*found.password), ("u", "p"));
    }

    #[test]
    fn docker_hub_has_its_legacy_key() {
        assert_eq!(keys_for("docker.io")[0], "https://index.docker.io/v1/");
        assert_eq!(keys_for("r.local:5000")[0], "r.local:5000");
    }
}
