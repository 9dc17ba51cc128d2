//! Edge installer user-data: parsing the `#cloud-config`, the typed `stylus` model and its
//! JSON Schema, every validation rule with line:column, the secrets it holds, and `--fix`.

pub mod certs;
pub mod credentials;
pub mod model;

use std::path::Path;

use crate::diagnostic::{Diagnostic, Edit, Pos, Rule};
use crate::reference::parse_domain;
use crate::schema::{self, Checker};
use crate::yaml::{self, index, join, Document, Node};
use credentials::{Credentials, USER_DATA_KEYS};

/// The `$id` of the user-data schema.
pub const SCHEMA_ID: &str = "urn:forge:schema:user-data";

const HEADER: &str = "#cloud-config";

/// The JSON Schema (2020-12) of user-data, generated from [`model::UserData`].
pub fn schema() -> serde_json::Value {
    schema::generate::<model::UserData>(SCHEMA_ID)
}

/// The result of validating one user-data file.
#[derive(Debug)]
pub struct Validation {
    pub diagnostics: Vec<Diagnostic>,
    /// Secret values found in the file (passwords, tokens), to be masked in all output.
    pub secrets: Vec<String>,
    /// The parsed document, when the file is valid YAML.
    pub document: Option<Document>,
}

/// Validate a user-data file's text.
pub fn validate(file: &Path, text: &str) -> Validation {
    let mut diagnostics = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.lines().next().map(str::trim_end) != Some(HEADER) {
        diagnostics.push(
            Diagnostic::new(Rule::MissingHeader, file, "", Pos::new(1, 1), "user-data must start with the line `#cloud-config`")
                .help("add `#cloud-config` as the first line; without it the installer ignores the whole file")
                .fix(vec![Edit::replace(0, 0, format!("{HEADER}\n"))]),
        );
    }
    let (document, findings) = yaml::parse_file(file, text);
    diagnostics.extend(findings);
    let Some(document) = document else {
        return Validation {
            diagnostics,
            secrets: Vec::new(),
            document: None,
        };
    };
    let mut secrets = Vec::new();
    if document.root.value != yaml::Value::Null {
        let schema = schema();
        let findings = Checker::new(&schema, file).check(&document.root);
        diagnostics.extend(findings.diagnostics);
        secrets = findings.secrets;
        diagnostics.extend(check_registries(file, text, &document.root));
        diagnostics.extend(check_site(file, &document.root));
    }
    Validation {
        diagnostics,
        secrets,
        document: Some(document),
    }
}

/// The credentials blocks of a user-data document: `registryCredentials` and each of
/// `externalRegistries.registries[]`.
pub fn registries(root: &Node) -> Vec<Credentials<'_>> {
    let mut found = Vec::new();
    let Some(stylus) = root.get("stylus") else {
        return found;
    };
    if let Some(entry) = stylus.entry("registryCredentials") {
        found.push(Credentials {
            path: "stylus.registryCredentials".into(),
            pos: entry.key_pos,
            node: &entry.value,
            keys: &USER_DATA_KEYS,
        });
    }
    if let Some(list) = stylus.at(&["externalRegistries", "registries"]) {
        for (i, item) in list.items().iter().enumerate() {
            found.push(Credentials {
                path: index("stylus.externalRegistries.registries", i),
                pos: item.pos,
                node: item,
                keys: &USER_DATA_KEYS,
            });
        }
    }
    found
}

/// Where the user-data sends image pulls: the key that configures an external registry,
/// its position, and whether it carries credentials.
pub struct ExternalRegistry {
    pub path: &'static str,
    pub pos: Pos,
    pub authenticated: bool,
}

pub fn external_registry(root: &Node) -> Option<ExternalRegistry> {
    let stylus = root.get("stylus")?;
    let authenticated = registries(root).iter().any(Credentials::authenticated);
    let (path, entry) = [
        ("stylus.registryCredentials", "registryCredentials"),
        ("stylus.externalRegistries", "externalRegistries"),
    ]
    .into_iter()
    .find_map(|(path, key)| stylus.entry(key).map(|e| (path, e)))?;
    Some(ExternalRegistry {
        path,
        pos: entry.key_pos,
        authenticated,
    })
}

fn check_registries(file: &Path, text: &str, root: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let all = registries(root);
    for creds in &all {
        out.extend(creds.check(file, text));
    }
    let Some(stylus) = root.get("stylus") else {
        return out;
    };
    if let (Some(_), Some(external)) = (
        stylus.entry("registryCredentials"),
        stylus.entry("externalRegistries"),
    ) {
        out.push(
            Diagnostic::new(
                Rule::BothRegistryStyles,
                file,
                "stylus.externalRegistries",
                external.key_pos,
                "both registryCredentials (single external registry) and externalRegistries (several registries with mapping rules) are set; forge treats this as an error rather than guess which one the agent applies",
            )
            .width("externalRegistries".len())
            .help("move the registryCredentials entry into externalRegistries.registries and delete registryCredentials"),
        );
    }
    let declared: Vec<String> = all
        .iter()
        .filter_map(|c| c.domain())
        .map(|d| d.authority())
        .collect();
    let rules_path = "stylus.externalRegistries.registryMappingRules";
    for rule in stylus
        .at(&["externalRegistries", "registryMappingRules"])
        .map(Node::entries)
        .unwrap_or_default()
    {
        let path = join(rules_path, &rule.key);
        if let Err(e) = parse_domain(&rule.key) {
            out.push(Diagnostic::new(
                Rule::BadRegistryDomain,
                file,
                path.clone(),
                rule.key_pos,
                format!("mapping source `{}` {e}", rule.key),
            ));
        }
        let Some(target) = rule.value.as_str() else {
            continue;
        };
        match parse_domain(target) {
            Err(e) => out.push(Diagnostic::new(Rule::BadRegistryDomain, file, path, rule.value.pos, format!("mapping target `{target}` {e}"))),
            Ok(domain) if !declared.contains(&domain.authority()) => out.push(
                Diagnostic::new(
                    Rule::UndeclaredMappingTarget,
                    file,
                    path,
                    rule.value.pos,
                    format!("mapping target `{target}` is on `{}`, which no entry of externalRegistries.registries declares; the agent will pull from it without credentials or certificates", domain.authority()),
                )
                .width(target.chars().count())
                .help(if declared.is_empty() {
                    "declare the registry under externalRegistries.registries".to_string()
                } else {
                    format!("declared registries: {}", declared.join(", "))
                }),
            ),
            Ok(_) => {}
        }
    }
    out
}

fn check_site(file: &Path, root: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(site) = root.at(&["stylus", "site"]) else {
        return out;
    };
    if let Some(ca_certs) = site.get("caCerts") {
        for (i, cert) in ca_certs.items().iter().enumerate() {
            out.extend(credentials::check_certificate(
                file,
                &index("stylus.site.caCerts", i),
                cert,
            ));
        }
    }
    for nic in site
        .at(&["network", "interfaces"])
        .map(Node::entries)
        .unwrap_or_default()
    {
        let Some(kind) = nic.value.entry("type") else {
            continue;
        };
        if kind.value.as_str() == Some("static") && nic.value.get("ipAddress").is_none() {
            out.push(
                Diagnostic::new(
                    Rule::StaticInterfaceIncomplete,
                    file,
                    join(&join("stylus.site.network.interfaces", &nic.key), "type"),
                    kind.key_pos,
                    format!("interface `{}` is static but has no ipAddress", nic.key),
                )
                .width(4)
                .help("add ipAddress, mask and gateway, or use type: dhcp"),
            );
        }
    }
    out
}
