//! Edge installer user-data: parsing the `#cloud-config`, the typed `stylus` model and its
//! JSON Schema, every validation rule with line:column, the secrets it holds, and `--fix`.

pub mod certs;
pub mod credentials;
pub mod model;
pub mod stages;

use std::net::IpAddr;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Edit, Pos, Rule};
use crate::limits::clip;
use crate::reference::parse_domain;
use crate::schema::{self, Checker};
use crate::yaml::{self, index, join, Document, Node};
use credentials::{Credentials, USER_DATA_KEYS};

/// The `$id` of the user-data schema.
pub const SCHEMA_ID: &str = "urn:forge:schema:user-data";

/// The headers that make the Kairos agent take a file as configuration.
const HEADERS: [&str; 3] = ["#cloud-config", "#kairos-config", "#node-config"];
/// The header `--fix` writes.
const HEADER: &str = HEADERS[0];
/// The agent skips configuration files of this size or more (its collector counts whole MiB
/// and skips anything above 1).
pub const MAX_SIZE: usize = 2 << 20;

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
    let mut diagnostics: Vec<Diagnostic> = check_header(file, text).into_iter().collect();
    if text.len() >= MAX_SIZE {
        diagnostics.push(
            Diagnostic::new(
                Rule::UserDataTooLarge,
                file,
                "",
                Pos::new(1, 1),
                format!(
                    "the file is {} bytes; the agent skips configuration files of 2 MiB ({MAX_SIZE} bytes) or more without a word",
                    text.len()
                ),
            )
            .help("move large content out of the user-data: files into overlay/files-iso, images into a content bundle"),
        );
    }
    let (document, findings) = yaml::parse_file(file, text, &mut yaml::Budget::default());
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
        let findings = Checker::new(&schema, file, text).check(&document.root);
        diagnostics.extend(findings.diagnostics);
        secrets = findings.secrets;
        diagnostics.extend(check_registries(file, text, &document.root));
        diagnostics.extend(check_site(file, &document.root));
        diagnostics.extend(stages::check_names(file, &document.root));
    }
    Validation {
        diagnostics,
        secrets,
        document: Some(document),
    }
}

/// The Kairos collector's header rule: the file is configuration when one of the pieces of
/// `text.splitn(10, '\n')` (the first nine lines, then the rest of the file) is a header once
/// trailing white space is trimmed. A byte-order mark, leading spaces or other words on the
/// line hide it.
fn check_header(file: &Path, text: &str) -> Option<Diagnostic> {
    let is_header = |piece: &str| HEADERS.contains(&piece.trim_end());
    if text.splitn(10, '\n').any(is_header) {
        return None;
    }
    let diagnostic = |line: usize, message: String, fix: Edit| {
        Diagnostic::new(Rule::MissingHeader, file, "", Pos::new(line, 1), message)
            .help("the agent reads a file as configuration only when one of its first lines is exactly `#cloud-config`; `forge validate --fix` repairs this")
            .fix(vec![fix])
    };
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        if rest.splitn(10, '\n').any(is_header) {
            return Some(diagnostic(1, "the file starts with a byte-order mark, which hides its `#cloud-config` header from the agent".into(), Edit::replace(0, 1, String::new())));
        }
    }
    // Insert the header as line 1, in the file's line ending, in place of a byte-order mark.
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let bom = usize::from(text.starts_with('\u{feff}'));
    let insert = || Edit::replace(0, bom, format!("{HEADER}{newline}"));
    let mut start = 0;
    for (n, line) in text.split_inclusive('\n').take(10).enumerate() {
        let (number, trimmed) = (n + 1, line.trim_end());
        if number == 10 && is_header(line) {
            return Some(diagnostic(10, "`#cloud-config` is on line 10, which the agent reads only together with the rest of the file, so it skips the file".into(), insert()));
        }
        let squeezed: String = trimmed
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(near) = HEADERS.iter().find(|h| **h == squeezed) {
            let message = format!("line {number} is not exactly `{near}` (case and spaces matter), so the agent skips the file");
            let fix = if number == 10 {
                insert()
            } else {
                Edit::replace(start, start + trimmed.chars().count(), near.to_string())
            };
            return Some(diagnostic(number, message, fix));
        }
        if let Some(header) = HEADERS.iter().find(|h| {
            trimmed
                .strip_prefix(**h)
                .is_some_and(|rest| rest.starts_with(char::is_whitespace))
        }) {
            let message = format!("line {number} has more than `{header}` on it; the agent needs the header alone on its line, so it skips the file");
            return Some(diagnostic(number, message, insert()));
        }
        start += line.chars().count();
    }
    Some(diagnostic(
        1,
        "none of the first 10 lines is `#cloud-config`, so the agent skips the whole file".into(),
        insert(),
    ))
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
/// its position, whether it carries credentials, and its mapping rules.
pub struct ExternalRegistry {
    pub path: &'static str,
    /// The key itself: `registryCredentials` or `externalRegistries`.
    pub key: &'static str,
    pub pos: Pos,
    pub authenticated: bool,
    /// A registry to pull from is declared: `registryCredentials`, or entries in
    /// `externalRegistries.registries` (mapping rules alone, the local-management form, are not).
    pub declared: bool,
    /// The position of `externalRegistries.registryMappingRules`, when it has rules.
    pub mapping_rules: Option<Pos>,
}

pub fn external_registry(root: &Node) -> Option<ExternalRegistry> {
    let stylus = root.get("stylus")?;
    let all = registries(root);
    let (path, key, entry) = [
        ("stylus.registryCredentials", "registryCredentials"),
        ("stylus.externalRegistries", "externalRegistries"),
    ]
    .into_iter()
    .find_map(|(path, key)| stylus.entry(key).map(|e| (path, key, e)))?;
    Some(ExternalRegistry {
        path,
        key,
        pos: entry.key_pos,
        authenticated: all.iter().any(Credentials::authenticated),
        declared: !all.is_empty(),
        mapping_rules: stylus
            .get("externalRegistries")
            .and_then(|e| e.entry("registryMappingRules"))
            .filter(|rules| !rules.value.entries().is_empty())
            .map(|rules| rules.key_pos),
    })
}

/// `stylus.managementMode: local`: the host has no connection to Palette.
fn locally_managed(root: &Node) -> bool {
    root.at(&["stylus", "managementMode"])
        .and_then(Node::as_str)
        == Some("local")
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
                format!("mapping source `{}` {e}", clip(&rule.key)),
            ));
        }
        let Some(target) = rule.value.as_str() else {
            continue;
        };
        match parse_domain(target) {
            Err(e) => out.push(Diagnostic::new(Rule::BadRegistryDomain, file, path, rule.value.pos, format!("mapping target `{}` {e}", clip(target)))),
            // Locally managed hosts map images to the names a content bundle holds; there is no
            // registry to declare.
            Ok(_) if locally_managed(root) => {}
            Ok(domain) if !declared.contains(&domain.authority()) => out.push(
                Diagnostic::new(
                    Rule::UndeclaredMappingTarget,
                    file,
                    path,
                    rule.value.pos,
                    format!("mapping target `{}` is on `{}`, which no entry of externalRegistries.registries declares; the agent will pull from it without credentials or certificates", clip(target), domain.authority()),
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
        if kind.value.as_str() != Some("static") {
            continue;
        }
        let nic_path = join("stylus.site.network.interfaces", &nic.key);
        let (key, pos, message) = match nic.value.entry("ipAddress") {
            None => (
                "type",
                kind.key_pos,
                format!("interface `{}` is static but has no ipAddress", clip(&nic.key)),
            ),
            Some(address) => match address.value.as_str() {
                Some(ip) if ip.parse::<IpAddr>().is_ok() && nic.value.get("mask").is_none() => (
                    "ipAddress",
                    address.key_pos,
                    format!("interface `{}` is static, and its ipAddress `{ip}` has neither a prefix length nor a mask", clip(&nic.key)),
                ),
                _ => continue,
            },
        };
        out.push(
            Diagnostic::new(Rule::StaticInterfaceIncomplete, file, join(&nic_path, key), pos, message)
                .width(key.len())
                .help("write the address with its prefix length (ipAddress: 10.0.10.25/24) or add mask, and a gateway; or use type: dhcp"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<&'static str> {
        validate(Path::new("ud.yaml"), text)
            .diagnostics
            .iter()
            .map(|d| d.rule.code())
            .collect()
    }

    #[test]
    fn a_header_counts_in_the_pieces_the_collector_reads() {
        let padded = |before: usize, after: &str| {
            format!("{}#cloud-config  \n{after}", "# comment\n".repeat(before))
        };
        assert!(codes(&padded(0, "stylus: {}\n")).is_empty());
        assert!(codes(&padded(8, "stylus: {}\n")).is_empty());
        // Line 10 is the rest of the file: a header there counts only when nothing follows.
        assert!(codes(&padded(9, "")).is_empty());
        assert_eq!(codes(&padded(9, "stylus: {}\n")), ["UD001"]);
        for header in ["#kairos-config", "#node-config"] {
            assert!(codes(&format!("{header}\nstylus: {{}}\n")).is_empty());
        }
        assert_eq!(codes("#cloud-config:\nstylus: {}\n"), ["UD001"]);
    }

    #[test]
    fn files_of_2_mib_or_more_are_skipped_by_the_agent() {
        let of_size = |size: usize| {
            let head = "#cloud-config\n#";
            format!("{head}{}", "x".repeat(size - head.len()))
        };
        assert!(codes(&of_size(MAX_SIZE - 1)).is_empty());
        assert_eq!(codes(&of_size(MAX_SIZE)), ["UD003"]);
    }
}
