//! The `stages` block: yip's step schema (what the Kairos agent decodes each step into) and the
//! stage names the agent runs, so that a mistyped stage name is caught before it never runs.
//!
//! yip decodes with Go's yaml.v3, which reads any scalar into a text field but nothing else
//! loosely: a list where a step (or its `if`) is expected, or text where a number or a boolean
//! is expected, fails the file's stages as a whole.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

use crate::diagnostic::{did_you_mean, Diagnostic, Rule};
use crate::yaml::{join, Node};

/// Text as yip reads it: a string, or a number or boolean taken as its text.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Text(pub serde_json::Value);

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number", "boolean"],
            "x-type-name": "text",
            "description": "Text; a number or boolean is read as its text."
        })
    }
}

/// One step of a stage.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Stage {
    /// Shown in the agent's log.
    pub name: Option<Text>,
    /// Shell condition: the step runs only when it succeeds.
    #[serde(rename = "if")]
    pub condition: Option<Text>,
    /// Run the step only on operating systems matching this regular expression.
    pub only_os: Option<Text>,
    pub only_os_version: Option<Text>,
    pub only_arch: Option<Text>,
    pub only_service_manager: Option<Text>,
    /// Files that must exist: `any`, `all` or `none` of the paths listed.
    pub if_files: Option<IfFiles>,
    /// Steps (by name) this one runs after.
    pub after: Option<Vec<Dependency>>,
    pub commands: Option<Vec<Text>>,
    pub files: Option<Vec<File>>,
    pub downloads: Option<Vec<Download>>,
    pub directories: Option<Vec<Directory>>,
    pub ensure_entities: Option<Vec<Entity>>,
    pub delete_entities: Option<Vec<Entity>>,
    pub dns: Option<Dns>,
    pub hostname: Option<Text>,
    pub sysctl: Option<BTreeMap<String, Text>>,
    /// SSH keys per user name.
    pub authorized_keys: Option<BTreeMap<String, Vec<Text>>>,
    pub node: Option<Text>,
    /// Users keyed by name.
    pub users: Option<BTreeMap<String, User>>,
    /// Kernel modules to load.
    pub modules: Option<Vec<Text>>,
    pub systemctl: Option<Systemctl>,
    pub environment: Option<BTreeMap<String, Text>>,
    pub environment_file: Option<Text>,
    pub package_pins: Option<BTreeMap<String, Text>>,
    pub packages: Option<Packages>,
    pub unpack_images: Option<Vec<UnpackImage>>,
    pub datasource: Option<DataSource>,
    pub layout: Option<Layout>,
    pub systemd_firstboot: Option<BTreeMap<String, Text>>,
    pub timesyncd: Option<BTreeMap<String, Text>>,
    pub git: Option<Git>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct IfFiles {
    pub any: Option<Vec<Text>>,
    pub all: Option<Vec<Text>>,
    pub none: Option<Vec<Text>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Dependency {
    pub name: Option<Text>,
}

/// A file to write. yip's keys are the lower-cased field names: `ownerstring`, not
/// `owner_string`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct File {
    pub path: Option<Text>,
    /// Mode, e.g. 0644.
    pub permissions: Option<u32>,
    pub owner: Option<i64>,
    pub group: Option<i64>,
    /// `user:group` or `user`.
    pub ownerstring: Option<Text>,
    pub content: Option<Text>,
    /// `b64`, `base64`, `gz`, `gzip`, `gz+base64`, ...
    pub encoding: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Download {
    pub path: Option<Text>,
    pub url: Option<Text>,
    pub permissions: Option<u32>,
    pub owner: Option<i64>,
    pub group: Option<i64>,
    pub ownerstring: Option<Text>,
    /// Seconds.
    pub timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Directory {
    pub path: Option<Text>,
    pub permissions: Option<u32>,
    pub owner: Option<i64>,
    pub group: Option<i64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Entity {
    pub path: Option<Text>,
    pub entity: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Dns {
    pub nameservers: Option<Vec<Text>>,
    pub search: Option<Vec<Text>>,
    pub options: Option<Vec<Text>>,
    pub path: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct User {
    pub name: Option<Text>,
    /// Password or password hash.
    #[schemars(extend("writeOnly" = true))]
    pub passwd: Option<Text>,
    pub ssh_authorized_keys: Option<Vec<Text>>,
    pub gecos: Option<Text>,
    pub homedir: Option<Text>,
    pub no_create_home: Option<bool>,
    pub primary_group: Option<Text>,
    pub groups: Option<Vec<Text>>,
    pub no_user_group: Option<bool>,
    pub system: Option<bool>,
    pub no_log_init: Option<bool>,
    pub shell: Option<Text>,
    pub lock_passwd: Option<bool>,
    pub uid: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Systemctl {
    pub enable: Option<Vec<Text>>,
    pub disable: Option<Vec<Text>>,
    pub start: Option<Vec<Text>>,
    pub mask: Option<Vec<Text>>,
    pub overrides: Option<Vec<SystemctlOverride>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SystemctlOverride {
    pub service: Option<Text>,
    pub name: Option<Text>,
    pub content: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Packages {
    pub install: Option<Vec<Text>>,
    pub remove: Option<Vec<Text>>,
    pub refresh: Option<bool>,
    pub upgrade: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct UnpackImage {
    pub source: Option<Text>,
    pub target: Option<Text>,
    pub platform: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct DataSource {
    pub providers: Option<Vec<Text>>,
    pub path: Option<Text>,
    pub userdata_name: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Layout {
    pub device: Option<Device>,
    pub expand_partition: Option<Expand>,
    pub add_partitions: Option<Vec<Partition>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Device {
    pub init_disk: Option<bool>,
    pub disk_name: Option<Text>,
    pub label: Option<Text>,
    /// Block device, or `script://COMMAND` printing one.
    pub path: Option<Text>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Expand {
    /// MiB.
    pub size: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub fs_label: Option<Text>,
    /// MiB.
    pub size: Option<u64>,
    pub p_label: Option<Text>,
    pub filesystem: Option<Text>,
    pub bootable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Git {
    pub url: Option<Text>,
    pub path: Option<Text>,
    pub branch: Option<Text>,
    pub branch_only: Option<bool>,
    pub auth: Option<GitAuth>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GitAuth {
    pub username: Option<Text>,
    #[schemars(extend("writeOnly" = true))]
    pub password: Option<Text>,
    #[schemars(extend("writeOnly" = true))]
    pub private_key: Option<Text>,
    pub public_key: Option<Text>,
    pub insecure: Option<bool>,
}

/// The stages the Kairos agent runs: boot stages (each also as `NAME.before` and
/// `NAME.after`), install, reset and upgrade hooks.
const STAGES: &[&str] = &[
    "rootfs",
    "initramfs",
    "boot",
    "fs",
    "network",
    "reconcile",
    "kairos-install.pre",
    "kairos-install.after",
    "kairos-uki-install.pre",
    "kairos-uki-install.after",
    "kairos-uki-reset.pre",
    "kairos-uki-reset.after",
    "kairos-uki-upgrade.pre",
    "kairos-uki-upgrade.after",
    "before-install",
    "after-install",
    "after-install-chroot",
    "before-reset",
    "after-reset",
    "after-reset-chroot",
    "before-upgrade",
    "after-upgrade",
    "after-upgrade-chroot",
];

/// Stage names prefixed by these take the node's role after them.
const ROLE_STAGES: &[&str] = &[
    "provider-kairos.bootstrap.before.",
    "provider-kairos.bootstrap.after.",
];

/// A stage name without its `.before` / `.after` suffix, and the suffix.
fn split_suffix(name: &str) -> (&str, &str) {
    [".before", ".after"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix).map(|base| (base, *suffix)))
        .unwrap_or((name, ""))
}

/// A stage name the agent runs on its own, with or without a `.before` / `.after` suffix.
fn known(name: &str) -> bool {
    STAGES.contains(&split_suffix(name).0)
        || STAGES.contains(&name)
        || ROLE_STAGES.iter().any(|p| name.starts_with(p))
}

/// The stage the agent runs that `name` is probably a typo of: less than half of the name's
/// characters differ, suffix aside.
fn typo_of(name: &str) -> Option<String> {
    if known(name) {
        return None;
    }
    let (base, suffix) = split_suffix(name);
    let guess = did_you_mean(base, STAGES.iter().copied())?;
    (2 * strsim::damerau_levenshtein(base, guess) < base.chars().count())
        .then(|| format!("{guess}{suffix}"))
}

/// Stage names close to one the agent runs but not it: probably typos, so the steps would
/// never run. Other unknown names are left alone (`kairos-agent run-stage NAME` runs any).
pub fn check_names(file: &Path, root: &Node) -> Vec<Diagnostic> {
    let Some(stages) = root.get("stages") else {
        return Vec::new();
    };
    stages
        .entries()
        .iter()
        .filter_map(|e| {
            let guess = typo_of(&e.key)?;
            Some(
                Diagnostic::new(
                    Rule::UnknownKey,
                    file,
                    join("stages", &e.key),
                    e.key_pos,
                    format!(
                        "unknown stage `{}`: the agent never runs it on its own",
                        e.key
                    ),
                )
                .width(e.key.chars().count())
                .help(format!("did you mean `{guess}`?")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_boot_stages_with_their_sub_stages_and_role_stages() {
        for name in [
            "boot",
            "boot.before",
            "network.after",
            "kairos-install.pre.before",
            "after-install-chroot",
            "provider-kairos.bootstrap.after.master",
        ] {
            assert!(known(name), "{name}");
        }
        assert!(!known("bot"));
        assert!(!known("my-own-stage"));
    }

    #[test]
    fn typos_are_near_misses_of_a_stage_suffix_aside() {
        assert_eq!(typo_of("bot").as_deref(), Some("boot"));
        assert_eq!(typo_of("netwrok.after").as_deref(), Some("network.after"));
        assert_eq!(typo_of("after-instal").as_deref(), Some("after-install"));
        for custom in ["ui", "db", "my-maintenance", "boot", "boot.before"] {
            assert_eq!(typo_of(custom), None, "{custom}");
        }
    }
}
