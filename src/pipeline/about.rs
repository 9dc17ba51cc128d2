//! What forge says about itself (`forge --version`): its version, the commit and date it was
//! built from, the CanvOS release its defaults follow, and the default image sources.

use std::path::Path;

use serde::Serialize;

use super::Error;
use crate::config;

/// The commit forge was built from and its date (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("FORGE_COMMIT");
pub const COMMIT_DATE: &str = env!("FORGE_COMMIT_DATE");

/// The settings that choose where the images a build starts from come from, shown with their
/// defaults.
const SOURCES: &[&str] = &[
    "PE_VERSION",
    "SPECTRO_PUB_REPO",
    "SPECTRO_LUET_REPO",
    "KAIROS_INIT_VERSION",
    "K3S_PROVIDER_VERSION",
    "KUBEADM_PROVIDER_VERSION",
    "RKE2_PROVIDER_VERSION",
    "NODEADM_PROVIDER_VERSION",
    "CANONICAL_PROVIDER_VERSION",
    "BUILDER_3RDPARTY_VERSION",
    "ALPINE_TAG",
];

/// Write a manual page `name` whole into `dir` (`forge man`).
pub fn write_page(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    crate::run::write_output(dir, name, text)
        .map(drop)
        .map_err(|source| Error::Io {
            what: format!("cannot write {}", dir.join(name).display()),
            source,
        })
}

/// What `forge --version` says.
#[derive(Debug, Serialize)]
pub struct Version {
    pub version: &'static str,
    pub commit: &'static str,
    pub commit_date: &'static str,
    pub canvos: &'static str,
    /// The default image sources and versions, by setting.
    pub defaults: serde_json::Map<String, serde_json::Value>,
}

/// `forge --version`.
pub fn version() -> Version {
    let default = |name: &&str| {
        let def = config::SETTINGS.iter().find(|d| d.name == *name)?;
        Some((def.name.to_string(), def.default?.into()))
    };
    Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: COMMIT,
        commit_date: COMMIT_DATE,
        canvos: config::CANVOS_RELEASE,
        defaults: SOURCES.iter().filter_map(default).collect(),
    }
}

impl Version {
    /// The version line, then each default image source.
    pub fn text(&self) -> String {
        let mut text = format!(
            "forge {} (commit {}, {})\nbuilds as CanvOS {} does, with these default image sources:\n",
            self.version, self.commit, self.commit_date, self.canvos
        );
        let width = self.defaults.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in &self.defaults {
            let value = value.as_str().unwrap_or_default();
            text.push_str(&format!("  {name:width$}  {value}\n"));
        }
        text
    }
}
