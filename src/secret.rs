//! Secret masking: which keys hold secrets, and the redactor every piece of output passes
//! through so that no password or token reaches a terminal, a log or a JSON report.

use base64::Engine as _;

/// The mask printed in place of a secret. It never depends on the secret's length.
pub const MASK: &str = "****";

/// Shorter secrets are only masked structurally (by key), not by substring search, so that a
/// two-letter password does not blank out every word containing those letters.
const MIN_SUBSTRING_LEN: usize = 3;

/// Keys that name a password without holding one (a date, a flag).
const NOT_SECRET_KEYS: &[&str] = &[
    "passwordexpiry",
    "encodedpassword",
    "disablepasswordupdate",
    "lock_passwd",
];

/// Values of secret keys that are not secrets: YAML booleans and nulls.
const NOT_SECRET_VALUES: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
];

/// Whether a YAML key or a `.arg` variable name holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !NOT_SECRET_KEYS.contains(&key.as_str())
        && [
            "password", "passwd", "token", "secret", "apikey", "api_key", "pro_key",
        ]
        .iter()
        .any(|s| key.contains(s))
}

/// A username and its password, as a registry takes them for basic authentication. Its
/// `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &MASK)
            .finish()
    }
}

/// Collects secret values and removes them from text.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a secret, with its base64 encoding and (when it is base64) its decoding, since
    /// the agent and `--fix` move passwords between the two forms.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        // A password key holding a YAML boolean or null is a mistake, not a secret worth
        // masking every `true` of the output for.
        if secret.is_empty() || NOT_SECRET_VALUES.contains(&secret.to_ascii_lowercase().as_str()) {
            return;
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut forms = vec![secret.to_string(), engine.encode(secret)];
        if let Some(decoded) = engine
            .decode(secret)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|s| !s.trim().is_empty() && s.chars().all(|c| !c.is_control()))
            .filter(|s| !NOT_SECRET_VALUES.contains(&s.trim().to_ascii_lowercase().as_str()))
        {
            forms.push(decoded);
        }
        for form in forms {
            if !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        // Longest first, so that a secret containing another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Register every secret `other` knows.
    pub fn merge(&mut self, other: &Redactor) {
        for secret in &other.secrets {
            self.add(secret);
        }
    }

    /// Register every secret a text file visibly holds: values of secret-looking YAML keys and
    /// `.arg` variables, and passwords in URLs. Works on text that does not parse.
    pub fn scan(&mut self, text: &str) {
        for line in text.lines() {
            if let Some((_, value)) = secret_assignment(line) {
                self.add(unquote(value));
            }
            for (start, end) in flow_secrets(line) {
                self.add(unquote(&line[start..end]));
            }
            for password in url_passwords(line) {
                self.add(password);
            }
            // A whole URL value, whose password may hold `=`, spaces or quotes.
            if let Some(password) = line
                .split_once(['=', ':'])
                .and_then(|(_, value)| url_password(unquote(value)))
            {
                self.add(password);
            }
        }
    }

    /// Replace every registered secret in `text` by the mask.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self
            .secrets
            .iter()
            .filter(|s| s.chars().count() >= MIN_SUBSTRING_LEN)
        {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Replace every registered secret in each string of `value`, keys left alone: JSON is
    /// redacted before it is serialized, so escaping cannot hide a secret from the mask.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => *text = self.redact(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(fields) => {
                fields.values_mut().for_each(|v| self.redact_json(v))
            }
            _ => {}
        }
    }
}

/// A source line as it may be shown: the value of a secret key whatever it is, the secrets of
/// flow mappings and URL passwords masked (registered secrets are the output door's).
pub fn mask_line(line: &str) -> String {
    let mut masked = match secret_assignment(line) {
        Some((value_start, _)) => format!("{}{MASK}", &line[..value_start]),
        None => line.to_string(),
    };
    for (start, end) in flow_secrets(&masked).into_iter().rev() {
        masked.replace_range(start..end, MASK);
    }
    for password in url_passwords(&masked.clone()) {
        masked = masked.replacen(password, MASK, 1);
    }
    masked
}

/// `key: value` (YAML) or `KEY=value` (`.arg`) where the key is a secret: the byte offset where
/// the value starts and the value without a trailing comment.
fn secret_assignment(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
    let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let sep = trimmed.find([':', '='])?;
    let key = trimmed[..sep].trim().trim_matches(['"', '\'']);
    if key.is_empty() || key.contains(char::is_whitespace) || !is_secret_key(key) {
        return None;
    }
    let offset = line.len() - trimmed.len() + sep + 1;
    let rest = &line[offset..];
    let value_start = offset + (rest.len() - rest.trim_start().len());
    let value = line[value_start..].trim_end();
    // A comment where the value would be (`password: # ask the site`) is no secret: it is
    // what explains a missing one.
    if value.is_empty() || value == "|" || value == ">" || value.starts_with('#') {
        return None;
    }
    let value = match value.find(" #") {
        Some(comment) if !value.starts_with(['"', '\'']) => value[..comment].trim_end(),
        _ => value,
    };
    Some((value_start, value))
}

/// The values of secret keys inside flow mappings (`{user: a, password: x}`), as byte ranges,
/// so that a line quoted for any finding (a syntax error included) masks them.
fn flow_secrets(line: &str) -> Vec<(usize, usize)> {
    if !line.contains('{') {
        return Vec::new();
    }
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, c) in line.char_indices().chain([(line.len(), ',')]) {
        if matches!(c, ',' | '{' | '}' | '[' | ']') {
            if let Some((value_start, value)) = secret_assignment(&line[start..i]) {
                ranges.push((start + value_start, start + value_start + value.len()));
            }
            start = (i + c.len_utf8()).min(line.len());
        }
    }
    ranges
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner;
        }
    }
    v
}

/// Passwords in `[scheme://]user:password@host` URLs (a forgotten scheme must not leak either).
fn url_passwords(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '=')
        .filter_map(|token| {
            let authority = token.split_once("://").map_or(token, |(_, rest)| rest);
            let authority = authority.split('/').next().unwrap_or_default();
            let (userinfo, _) = authority.rsplit_once('@')?;
            let (_, password) = userinfo.split_once(':')?;
            Some(password).filter(|p| !p.is_empty())
        })
        .collect()
}

/// The password of one `[scheme://]user:password@host[/path]` URL, whatever characters it
/// holds.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (userinfo, host) = rest.rsplit_once('@')?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let (_, password) = userinfo.split_once(':')?;
    Some(password).filter(|p| !p.is_empty())
}

/// `scheme://user:****@host` for display.
pub fn mask_url(url: &str) -> String {
    match url_password(url) {
        Some(password) => url.replacen(&format!(":{password}@"), &format!(":{MASK}@"), 1),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_in_a_secrets_place_stays_readable() {
        let text = "stylus:\n  registryCredentials:\n    password: # ask the site's admin\n    username: edge\n";
        let mut redactor = Redactor::new();
        redactor.scan(text);
        assert_eq!(redactor.redact(text), text);
        assert_eq!(
            mask_line("    password: # ask the site's admin"),
            "    password: # ask the site's admin"
        );
    }

    #[test]
    fn json_is_redacted_before_escaping_can_hide_a_secret() {
        let mut redactor = Redactor::new();
        redactor.add(r#"pa"ss\word"#);
        let mut doc = serde_json::json!({"password": [r#"x pa"ss\word y"#], "n": 1});
        redactor.redact_json(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"password": [format!("x {MASK} y")], "n": 1})
        );
    }

    #[test]
    fn masks_secret_keys_in_yaml_and_arg_lines() {
        assert_eq!(
            mask_line("    password: hunter2 # old"),
            "    password: ****"
        );
        assert_eq!(
            mask_line("  edgeHostToken: \"abc def\""),
            "  edgeHostToken: ****"
        );
        assert_eq!(mask_line("UBUNTU_PRO_KEY=Cabc"), "UBUNTU_PRO_KEY=****");
        assert_eq!(mask_line("    username: admin"), "    username: admin");
        assert_eq!(mask_line("  password:"), "  password:");
    }

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            mask_url("http://bob:s3cret@proxy:3128"),
            "http://bob:****@proxy:3128"
        );
        assert_eq!(
            mask_line("HTTP_PROXY=http://bob:s3cret@proxy:3128"),
            "HTTP_PROXY=http://bob:****@proxy:3128"
        );
    }

    #[test]
    fn masks_url_passwords_holding_separators_and_quotes() {
        for (url, masked) in [
            ("http://u:pa=ss@proxy:3128", "http://u:****@proxy:3128"),
            ("http://u:pa ss@proxy:3128", "http://u:****@proxy:3128"),
            ("http://u:pa\"s's@proxy", "http://u:****@proxy"),
            ("u:p@ss@proxy", "u:****@proxy"),
            ("http://proxy:3128", "http://proxy:3128"),
        ] {
            assert_eq!(mask_url(url), masked);
        }
        let mut r = Redactor::new();
        r.scan("HTTP_PROXY=\"http://u:pa ss=1@proxy:3128\"\n");
        assert_eq!(r.redact("pa ss=1"), "****");
    }

    #[test]
    fn masks_secrets_of_flow_mappings_in_lines_that_do_not_parse() {
        let line = "  creds: {username: a, password: Hunter2Flow, x: ]}";
        assert_eq!(
            mask_line(line),
            "  creds: {username: a, password: ****, x: ]}"
        );
        let mut r = Redactor::new();
        r.scan(line);
        assert_eq!(r.redact("Hunter2Flow"), "****");
    }

    #[test]
    fn booleans_are_never_secrets() {
        let mut r = Redactor::new();
        r.scan("password: true\nencodedPassword: true\ntoken: off\n");
        assert_eq!(r.redact("insecure: true, x: off"), "insecure: true, x: off");
    }

    #[test]
    fn redacts_registered_secrets_and_their_base64_forms() {
        let mut r = Redactor::new();
        r.scan("stylus:\n  registryCredentials:\n    password: 'Sup3rSecret'\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode("Sup3rSecret");
        assert_eq!(
            r.redact(&format!("a Sup3rSecret b {encoded}")),
            "a **** b ****"
        );
    }
}
