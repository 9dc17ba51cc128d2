//! Checks of one registry credentials block, shared by user-data (`registryCredentials`,
//! `externalRegistries.registries[]`) and cluster profiles (`providerCredentials`): domain
//! syntax, token-only registries, the alphanumeric-password trap, base64 passwords, TLS.

use std::path::Path;

use base64::Engine as _;

use super::certs;
use crate::diagnostic::{Diagnostic, Edit, Pos, Rule};
use crate::limits::clip;
use crate::reference::{parse_domain, token_auth_reason, Domain};
use crate::yaml::{index, join, Entry, Node, Value};

/// The key names one kind of credentials block uses.
pub struct Keys {
    pub domain: &'static str,
    pub users: &'static [&'static str],
    /// `encodedPassword`, where the block supports it (and so `--fix` can use it).
    pub encoded: Option<&'static str>,
}

pub const USER_DATA_KEYS: Keys = Keys {
    domain: "domain",
    users: &["username"],
    encoded: Some("encodedPassword"),
};

/// A credentials mapping and where it sits.
pub struct Credentials<'a> {
    pub path: String,
    pub pos: Pos,
    pub node: &'a Node,
    pub keys: &'a Keys,
}

impl<'a> Credentials<'a> {
    fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.node.entry(key)
    }

    fn text(&self, key: &str) -> Option<&'a str> {
        self.node
            .get(key)
            .and_then(Node::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    pub fn domain(&self) -> Option<Domain> {
        self.text(self.keys.domain)
            .and_then(|d| parse_domain(d).ok())
    }

    pub fn username(&self) -> Option<&'a str> {
        self.keys.users.iter().find_map(|k| self.text(k))
    }

    pub fn password(&self) -> Option<&'a str> {
        self.text("password")
    }

    /// Username and password both given.
    pub fn authenticated(&self) -> bool {
        self.username().is_some() && self.password().is_some()
    }

    fn flag(&self, key: &str) -> bool {
        self.node.get(key).and_then(Node::as_bool).unwrap_or(false)
    }

    fn certificates(&self) -> Vec<(String, &'a Node)> {
        match self.node.get("certificates") {
            Some(
                node @ Node {
                    value: Value::Str(_),
                    ..
                },
            ) => vec![(join(&self.path, "certificates"), node)],
            Some(node) => node
                .items()
                .iter()
                .enumerate()
                .map(|(i, item)| (index(&join(&self.path, "certificates"), i), item))
                .collect(),
            None => Vec::new(),
        }
    }

    fn diagnostic(&self, rule: Rule, file: &Path, key: &str, message: String) -> Diagnostic {
        let (path, pos, width) = match self.entry(key) {
            Some(e) => (join(&self.path, key), e.key_pos, key.len()),
            None => (self.path.clone(), self.pos, 1),
        };
        Diagnostic::new(rule, file, path, pos, message).width(width)
    }

    /// Every finding for this block. `text` is the whole source, for `--fix` edits.
    pub fn check(&self, file: &Path, text: &str) -> Vec<Diagnostic> {
        if !matches!(self.node.value, Value::Map(_)) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let domain_key = self.keys.domain;
        if let Some(raw) = self.text(domain_key) {
            match parse_domain(raw) {
                Err(e) => out.push(
                    self.diagnostic(
                        Rule::BadRegistryDomain,
                        file,
                        domain_key,
                        format!("registry {domain_key} `{}` {e}", clip(raw)),
                    )
                    .help("write host[:port][/path], e.g. 10.10.254.254:8000/spectro-images"),
                ),
                Ok(domain) => {
                    if let Some(reason) = token_auth_reason(&domain, self.username()) {
                        out.push(
                            self.diagnostic(
                                Rule::TokenAuthRegistry,
                                file,
                                domain_key,
                                format!("`{}` needs token authentication: {reason}", domain.authority()),
                            )
                            .help("the edge agent supports basic username/password authentication only; mirror the images to a registry with basic auth (Harbor, Zot, distribution) and point the user-data at it"),
                        );
                    }
                }
            }
        }
        let user_key = self.keys.users[0];
        // A key with a value of the wrong type is reported by the schema check already.
        let given = |key: &str| {
            self.entry(key)
                .is_some_and(|e| e.value.as_str().is_none_or(|s| !s.trim().is_empty()))
        };
        match (self.keys.users.iter().any(|k| given(k)), given("password")) {
            (true, false) => out.push(
                self.diagnostic(
                    Rule::IncompleteCredentials,
                    file,
                    user_key,
                    "a username is set but no password".into(),
                )
                .help("add the password, or remove the username to pull anonymously"),
            ),
            (false, true) => out.push(
                self.diagnostic(
                    Rule::IncompleteCredentials,
                    file,
                    "password",
                    "a password is set but no username".into(),
                )
                .help(format!("add `{user_key}`, or remove the password")),
            ),
            _ => {}
        }
        self.check_password(file, text, &mut out);
        let certificates = self.certificates();
        if self.flag("insecure") && !certificates.is_empty() {
            out.push(
                self.diagnostic(
                    Rule::InsecureWithCertificates,
                    file,
                    "insecure",
                    "insecure: true skips TLS verification, so the certificates are never used".into(),
                )
                .help("remove `insecure: true` to verify the registry with its certificates, or remove the certificates"),
            );
        }
        for (path, node) in certificates {
            out.extend(check_certificate(file, &path, node));
        }
        out
    }

    fn check_password(&self, file: &Path, text: &str, out: &mut Vec<Diagnostic>) {
        let (Some(password), Some(entry)) = (self.password(), self.entry("password")) else {
            return;
        };
        let encoded = self.keys.encoded.is_some_and(|k| self.flag(k));
        let engine = base64::engine::general_purpose::STANDARD;
        if encoded {
            if engine.decode(password).is_err() {
                out.push(
                    self.diagnostic(
                        Rule::BadEncodedPassword,
                        file,
                        "password",
                        "encodedPassword is true but the password is not valid base64".into(),
                    )
                    .help("store base64 of the password (`printf %s 'PASSWORD' | base64`), or set encodedPassword: false"),
                );
            }
            return;
        }
        if !password.chars().all(|c| c.is_ascii_alphanumeric()) {
            return;
        }
        let mut d = self.diagnostic(
            Rule::AlphanumericPassword,
            file,
            "password",
            "the password has only letters and digits: the Palette agent mistakes it for base64, decodes it, and every repave then fails to authenticate".into(),
        );
        match self.keys.encoded {
            Some(encoded_key) => {
                match self.encode_edits(entry, encoded_key, &engine.encode(password), text) {
                    Some(edits) => {
                        d = d
                        .help(format!("run `forge validate --fix` to store it base64-encoded with `{encoded_key}: true`"))
                        .fix(edits);
                    }
                    None => {
                        d = d.help(format!(
                            "store it base64-encoded and set `{encoded_key}: true`"
                        ))
                    }
                }
            }
            None => d = d.help("use a password with special characters such as `!`, `#` or `*`"),
        }
        out.push(d);
    }

    /// Text edits replacing the password by `encoded` and setting `encodedPassword: true`,
    /// touching nothing else. `None` where a safe line edit is impossible (flow mappings,
    /// block scalars), and for a password written outside the block: merged from an anchor
    /// (`<<: *defaults`) or copied by an alias, it may be other blocks' password too.
    fn encode_edits(
        &self,
        password: &Entry,
        encoded_key: &str,
        encoded: &str,
        text: &str,
    ) -> Option<Vec<Edit>> {
        let chars: Vec<char> = text.chars().collect();
        let is_flow = chars.get(self.node.start) == Some(&'{');
        let is_block = matches!(
            password.value.style,
            Some(saphyr_parser::ScalarStyle::Literal | saphyr_parser::ScalarStyle::Folded)
        );
        let written_here =
            self.node.start <= password.value.start && password.value.end <= self.node.end;
        if is_flow || is_block || !written_here {
            return None;
        }
        let mut edits = vec![Edit::replace(
            password.value.start,
            password.value.end,
            format!("\"{encoded}\""),
        )];
        match self.entry(encoded_key) {
            Some(existing) => edits.push(Edit::replace(
                existing.value.start,
                existing.value.end,
                "true".into(),
            )),
            None => {
                let line_end = (password.value.end..chars.len())
                    .find(|&i| chars[i] == '\n')
                    .unwrap_or(chars.len());
                let indent = " ".repeat(password.key_pos.column - 1);
                edits.push(Edit::replace(
                    line_end,
                    line_end,
                    format!("\n{indent}{encoded_key}: true"),
                ));
            }
        }
        Some(edits)
    }
}

/// Check one certificate entry (a PEM string, possibly a bundle).
pub fn check_certificate(file: &Path, path: &str, node: &Node) -> Vec<Diagnostic> {
    let Some(pem) = node.as_str() else {
        return Vec::new();
    };
    match certs::parse_bundle(pem) {
        Err(reason) => vec![Diagnostic::new(Rule::BadCertificate, file, path, node.pos, format!("not a PEM X.509 certificate: {reason}"))
            .help("paste the CA certificate as PEM, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----")],
        Ok(certificates) => certificates
            .iter()
            .filter_map(|c| c.validity_problem(certs::now()))
            .map(|problem| {
                Diagnostic::new(Rule::ExpiredCertificate, file, path, node.pos, problem)
                    .help("replace it with the registry's current CA certificate")
            })
            .collect(),
    }
}
