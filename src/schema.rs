//! JSON Schemas generated from forge's typed models, and the checker that validates a
//! position-tracking YAML tree against them. The schema `forge schema` prints is the very
//! schema the validator walks, so editors and `forge validate` agree.

use std::path::Path;

use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value as Json};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos, Rule, Severity};
use crate::limits::clip;
use crate::secret::is_secret_key;
use crate::yaml::{index, join, Node, Value};

/// A 2020-12 schema for `T`, shaped for configuration files: optional keys are absent rather
/// than `null` (a key with no value is an error), and objects reject keys they do not define.
pub fn generate<T: JsonSchema>(id: &str) -> Json {
    let strip_null = |schema: &mut Schema| {
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if let Some(Json::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                obj.insert("type".into(), only);
            }
        }
        if let Some(Json::Array(branches)) = obj.get_mut("anyOf") {
            branches.retain(|b| b.get("type").and_then(Json::as_str) != Some("null"));
            if branches.len() == 1 {
                if let Some(Json::Object(branch)) = branches.pop() {
                    obj.remove("anyOf");
                    for (k, v) in branch {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
        if obj.contains_key("properties") && !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), Json::Bool(false));
        }
    };
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .with_transform(RecursiveTransform(strip_null));
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Json::Object(obj) = &mut schema {
        obj.insert("$id".into(), Json::String(id.into()));
    }
    schema
}

/// What a check found: the diagnostics, and the values of keys the schema marks `writeOnly`
/// (secrets), so the caller can keep them out of every output.
#[derive(Debug, Default)]
pub struct Findings {
    pub diagnostics: Vec<Diagnostic>,
    pub secrets: Vec<String>,
}

/// Validates YAML trees against one root schema.
///
/// Besides JSON Schema's keywords, the checker reads `deprecated` (the key is reported with its
/// description, SCHEMA005) and two of forge's own. `x-go-decoded` marks values that Go's
/// yaml.v3 decodes into typed fields (yip's stages): there a key without a value is the zero
/// value, not an error, and the keyword's text — what a wrong type makes the edge host do — is
/// added to type errors. `x-type-name` is how a type error names the expected type.
pub struct Checker<'a> {
    root: &'a Json,
    file: &'a Path,
    /// The document's source, to quote values in advice.
    text: &'a str,
}

/// Where a value is reported: its key path, and the position of its key (or of the value when
/// it has no key, like a list item).
#[derive(Clone)]
struct At {
    path: String,
    /// The key, when the value has one.
    key: Option<String>,
    pos: Pos,
    width: usize,
    secret: bool,
    /// The nearest `x-go-decoded` above the value: what a wrong type makes the host do.
    go_decoded: Option<String>,
}

impl At {
    fn child(&self, path: String, key: Option<String>, pos: Pos, width: usize) -> At {
        At {
            path,
            key,
            pos,
            width,
            ..self.clone()
        }
    }
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Json, file: &'a Path, text: &'a str) -> Self {
        Checker { root, file, text }
    }

    /// Check a whole document.
    pub fn check(&self, node: &Node) -> Findings {
        let mut findings = Findings::default();
        let at = At {
            path: String::new(),
            key: None,
            pos: node.pos,
            width: 1,
            secret: false,
            go_decoded: None,
        };
        self.walk(self.root, node, &at, &mut findings);
        findings
    }

    fn resolve<'s>(&'s self, mut schema: &'s Json) -> &'s Json {
        while let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn error(&self, rule: Rule, at: &At, message: String) -> Diagnostic {
        Diagnostic::new(rule, self.file, at.path.clone(), at.pos, message).width(at.width)
    }

    fn walk(&self, schema: &Json, node: &Node, at: &At, out: &mut Findings) {
        let schema = self.resolve(schema);
        let Some(obj) = schema.as_object() else {
            return;
        };
        let at = &At {
            secret: at.secret || obj.get("writeOnly") == Some(&Json::Bool(true)),
            go_decoded: obj
                .get("x-go-decoded")
                .and_then(Json::as_str)
                .map(str::to_string)
                .or_else(|| at.go_decoded.clone()),
            ..at.clone()
        };
        if at.go_decoded.is_some() && node.value == Value::Null {
            return;
        }
        if at.secret {
            if let Some(s) = node.as_str() {
                out.secrets.push(s.to_string());
            }
        }
        if let Some(branches) = obj
            .get("anyOf")
            .or_else(|| obj.get("oneOf"))
            .and_then(Json::as_array)
        {
            self.walk_alternatives(branches, node, at, out);
            return;
        }
        if let Some(expected) = obj.get("type") {
            if !type_matches(expected, node) {
                let name = obj
                    .get("x-type-name")
                    .and_then(Json::as_str)
                    .map_or_else(|| describe_type(expected), str::to_string);
                out.diagnostics.push(self.type_error(&name, node, at));
                return;
            }
        }
        if let Some(allowed) = obj.get("enum").and_then(Json::as_array) {
            self.check_enum(allowed, node, at, out);
        }
        if let Some(constant) = obj.get("const") {
            self.check_enum(std::slice::from_ref(constant), node, at, out);
        }
        self.check_range(obj, node, at, out);
        if let (Some(format), Some(text)) =
            (obj.get("format").and_then(Json::as_str), node.as_str())
        {
            if let Err(problem) = check_format(format, text) {
                let shown = if at.secret {
                    String::new()
                } else {
                    format!(" {:?}", clip(text))
                };
                out.diagnostics.push(self.error(
                    Rule::InvalidValue,
                    at,
                    format!("invalid value{shown}: {problem}"),
                ));
            }
        }
        match &node.value {
            Value::Map(_) => self.walk_object(obj, node, at, out),
            Value::Seq(items) => {
                if let Some(item_schema) = obj.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        let item_at = at.child(index(&at.path, i), None, item.pos, 1);
                        self.walk(item_schema, item, &item_at, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn type_error(&self, expected: &str, node: &Node, at: &At) -> Diagnostic {
        let got = node.type_name();
        let consequence = at
            .go_decoded
            .as_ref()
            .map_or(String::new(), |c| format!(": {c}"));
        let diagnostic = self.error(
            Rule::WrongType,
            at,
            format!("expected {expected}, got {got}{consequence}"),
        );
        let help = match (expected, got) {
            (_, "null") if self.comment_after_key(at) => {
                "`#` starts a YAML comment, so the key has no value: quote a value that begins with `#`".to_string()
            }
            (_, "null") => "the key has no value: give it one, or remove the key".to_string(),
            ("array", _) => "write a list: one item per line, each starting with `- `".to_string(),
            ("object", "array") => "write a mapping (`key: value` lines), not a list".to_string(),
            (_, "array") => "give a single value here, not a list".to_string(),
            ("string", "integer" | "number" | "boolean") => match &at.key {
                Some(key) if !at.secret && !is_secret_key(key) => format!(
                    "quote the value so that YAML reads it as a string: `{}: \"{}\"`",
                    clip(key),
                    clip(&self.source(node))
                ),
                _ => "quote the value so that YAML reads it as a string".to_string(),
            },
            ("boolean", "string" | "integer" | "number") => {
                "write true or false, without quotes".to_string()
            }
            _ => return diagnostic,
        };
        diagnostic.help(help)
    }

    /// The source text of a scalar.
    fn source(&self, node: &Node) -> String {
        self.text
            .chars()
            .skip(node.start)
            .take(node.end.saturating_sub(node.start))
            .collect()
    }

    /// Whether a `#` comment follows the key on its line (`password: ####`).
    fn comment_after_key(&self, at: &At) -> bool {
        let Some(key) = &at.key else { return false };
        self.text
            .lines()
            .nth(at.pos.line.saturating_sub(1))
            .and_then(|line| line.split_once(&format!("{key}:")))
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('#'))
    }

    /// The first branch that accepts the value; failing that, for alternatives that are all
    /// constants, an enumeration error; then the findings of the first branch of the value's
    /// type (`"ntp://x"` is a wrong string, not a wrong type); last, a type error.
    fn walk_alternatives(&self, branches: &[Json], node: &Node, at: &At, out: &mut Findings) {
        let mut of_type = None;
        for branch in branches {
            let mut trial = Findings::default();
            self.walk(branch, node, at, &mut trial);
            if trial
                .diagnostics
                .iter()
                .all(|d| d.rule.severity() != Severity::Error)
            {
                out.diagnostics.extend(trial.diagnostics);
                out.secrets.extend(trial.secrets);
                return;
            }
            let typed = self
                .resolve(branch)
                .get("type")
                .is_some_and(|t| type_matches(t, node));
            if typed && of_type.is_none() {
                of_type = Some(trial);
            }
        }
        let consts: Vec<&Json> = branches
            .iter()
            .filter_map(|b| self.resolve(b).get("const"))
            .collect();
        if consts.len() == branches.len() {
            let allowed: Vec<Json> = consts.into_iter().cloned().collect();
            self.check_enum(&allowed, node, at, out);
            return;
        }
        if let Some(trial) = of_type {
            out.diagnostics.extend(trial.diagnostics);
            out.secrets.extend(trial.secrets);
            return;
        }
        let mut names: Vec<String> = branches
            .iter()
            .map(|b| describe_type(self.resolve(b).get("type").unwrap_or(&Json::Null)))
            .collect();
        names.dedup();
        out.diagnostics
            .push(self.type_error(&names.join(" or "), node, at));
    }

    fn check_enum(&self, allowed: &[Json], node: &Node, at: &At, out: &mut Findings) {
        let value = node.to_json();
        if allowed.contains(&value) {
            return;
        }
        let names: Vec<String> = allowed
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        let shown = if at.secret {
            String::new()
        } else {
            format!(" {}", clip(&value.to_string()))
        };
        let mut d = self.error(
            Rule::InvalidValue,
            at,
            format!("invalid value{shown}: expected one of {}", names.join(", ")),
        );
        if let Some(guess) = node
            .as_str()
            .and_then(|s| did_you_mean(s, names.iter().map(String::as_str)))
        {
            d = d.help(format!("did you mean {guess:?}?"));
        }
        out.diagnostics.push(d);
    }

    fn check_range(&self, obj: &Map<String, Json>, node: &Node, at: &At, out: &mut Findings) {
        let value = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => return,
        };
        let min = obj.get("minimum").and_then(Json::as_f64);
        let max = obj.get("maximum").and_then(Json::as_f64);
        let bound = match (min, max) {
            (Some(min), Some(max)) if value < min || value > max => format!("from {min} to {max}"),
            (Some(min), None) if value < min => format!("at least {min}"),
            (None, Some(max)) if value > max => format!("at most {max}"),
            _ => return,
        };
        out.diagnostics.push(self.error(
            Rule::InvalidValue,
            at,
            format!("{value} is out of range: it must be {bound}"),
        ));
    }

    fn walk_object(&self, obj: &Map<String, Json>, node: &Node, at: &At, out: &mut Findings) {
        let empty = Map::new();
        let properties = obj
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let additional = obj.get("additionalProperties");
        for entry in node.entries() {
            let entry_at = at.child(
                join(&at.path, &entry.key),
                Some(entry.key.clone()),
                entry.key_pos,
                entry.key.chars().count(),
            );
            match (properties.get(&entry.key), additional) {
                (Some(schema), _) => {
                    if schema.get("deprecated") == Some(&Json::Bool(true)) {
                        let why = schema
                            .get("description")
                            .and_then(Json::as_str)
                            .unwrap_or("remove it");
                        out.diagnostics.push(self.error(
                            Rule::DeprecatedKey,
                            &entry_at,
                            format!("`{}` is deprecated. {}", entry.key, why.replace('\n', " ")),
                        ));
                    }
                    self.walk(schema, &entry.value, &entry_at, out)
                }
                (None, Some(Json::Bool(false))) => {
                    let mut d = self.error(
                        Rule::UnknownKey,
                        &entry_at,
                        format!("unknown key `{}`", clip(&entry.key)),
                    );
                    if let Some(guess) =
                        did_you_mean(&entry.key, properties.keys().map(String::as_str))
                    {
                        d = d.help(format!("did you mean `{guess}`?"));
                    }
                    out.diagnostics.push(d);
                }
                (None, Some(schema)) if schema.is_object() => {
                    self.walk(schema, &entry.value, &entry_at, out)
                }
                (None, _) => {}
            }
        }
        for required in obj
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if node.entry(required).is_none() {
                let missing_at = At {
                    path: join(&at.path, required),
                    ..at.clone()
                };
                out.diagnostics.push(self.error(
                    Rule::MissingKey,
                    &missing_at,
                    format!("missing required key `{required}`"),
                ));
            }
        }
    }
}

fn type_matches(expected: &Json, node: &Node) -> bool {
    let actual = node.type_name();
    let one = |t: &str| t == actual || (t == "number" && actual == "integer");
    match expected {
        Json::String(t) => one(t),
        Json::Array(types) => types.iter().filter_map(Json::as_str).any(one),
        _ => true,
    }
}

fn describe_type(expected: &Json) -> String {
    match expected {
        Json::String(t) => t.clone(),
        Json::Array(types) => types
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".into(),
    }
}

/// The `format` annotations forge's models use, checked for real.
fn check_format(format: &str, text: &str) -> Result<(), String> {
    match format {
        "ip" => ip(text).map(drop),
        "ip-or-cidr" => ip_or_cidr(text),
        "netmask" => netmask(text),
        "proxy-url" => {
            let rest = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() => Ok(()),
                _ => Err("expected http://host:port or https://host:port".into()),
            }
        }
        "url" => match text.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
            _ => Err("expected an http:// or https:// URL".into()),
        },
        "date" => date(text),
        "hostname-prefix" => {
            if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(())
            } else {
                Err("only letters, digits and '-' are allowed".into())
            }
        }
        "edge-host-id" => edge_host_id(text),
        "feature-gates" => feature_gates(text),
        "absolute-path" if text.starts_with('/') => Ok(()),
        "absolute-path" => Err("expected an absolute path, starting with /".into()),
        "regex" => regex::Regex::new(text)
            .map(drop)
            .map_err(|e| format!("not a regular expression: {}", regex_problem(&e))),
        "host" => host(text),
        "host-list" if text.contains(',') => text
            .split(',')
            .map(str::trim)
            .try_for_each(|h| host(h).map_err(|e| format!("`{}`: {e}", clip(h)))),
        "host-list" => host(text),
        _ => Ok(()),
    }
}

/// What is wrong with a regular expression, without the pattern the error quotes.
pub fn regex_problem(e: &regex::Error) -> String {
    let detail = e.to_string();
    let last = detail.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn ip(text: &str) -> Result<std::net::IpAddr, String> {
    text.parse()
        .map_err(|_| "expected an IP address such as 192.168.1.10".to_string())
}

/// An address, with or without a prefix length: `10.0.10.25` or `10.0.10.25/24`.
fn ip_or_cidr(text: &str) -> Result<(), String> {
    let Some((address, prefix)) = text.split_once('/') else {
        return ip(text).map(drop);
    };
    let address = ip(address).map_err(|_| {
        format!("expected an address with its prefix length such as 10.0.10.25/24, and `{}` is not an IP address", clip(address))
    })?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix_length(prefix) {
        Some(p) if p <= max => Ok(()),
        _ => Err(format!(
            "prefix length `{}` is not a number from 0 to {max}",
            clip(prefix)
        )),
    }
}

/// A prefix length as Go's `net.ParseCIDR` reads one: decimal digits only.
fn prefix_length(text: &str) -> Option<u8> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// A dotted IPv4 netmask with contiguous ones, or a prefix length.
fn netmask(text: &str) -> Result<(), String> {
    if let Some(prefix) = prefix_length(text) {
        return if prefix <= 128 {
            Ok(())
        } else {
            Err(format!("prefix length {prefix} is above 128"))
        };
    }
    match text.parse::<std::net::Ipv4Addr>() {
        Ok(mask) if u32::from(mask).leading_ones() + u32::from(mask).trailing_zeros() == 32 => {
            Ok(())
        }
        Ok(_) => Err("not a netmask: its one bits must come first (255.255.255.0)".into()),
        Err(_) => {
            Err("expected a netmask such as 255.255.255.0 or a prefix length such as 24".into())
        }
    }
}

/// A calendar date, YYYY-MM-DD.
fn date(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split('-').collect();
    let shaped = parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_digit()));
    if !shaped {
        return Err("expected a date as YYYY-MM-DD".into());
    }
    let [year, month, day] = [0, 1, 2].map(|i| parts[i].parse::<u32>().unwrap_or(0));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("there is no month {month}")),
    };
    if (1..=days).contains(&day) {
        Ok(())
    } else {
        Err(format!("month {month} of {year} has no day {day}"))
    }
}

/// Characters the agent does not support in an edge host ID (installer reference, Device ID).
const UNSUPPORTED_IN_HOST_ID: &str = "/?#&+%,$~!@*(){}|=;:<>'.^\"";
const HOST_ID_MAX: usize = 128;

/// An edge host ID: `$random`, or at most 128 characters without the unsupported ones.
fn edge_host_id(text: &str) -> Result<(), String> {
    if text == "$random" {
        return Ok(());
    }
    let length = text.chars().count();
    if length > HOST_ID_MAX {
        return Err(format!(
            "{length} characters; the agent cuts an edge host ID to {HOST_ID_MAX}, so hosts whose names differ only after that would share one"
        ));
    }
    let mut bad: Vec<char> = Vec::new();
    for c in text.chars().filter(|c| UNSUPPORTED_IN_HOST_ID.contains(*c)) {
        if !bad.contains(&c) {
            bad.push(c);
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = bad.iter().map(|c| format!("`{c}`")).collect();
    Err(format!(
        "{} not supported in an edge host ID (use letters, digits, `-` and `_`, or `$random`)",
        listed.join(" ")
    ))
}

/// The feature gates `stylus.featureGate` enables.
const FEATURE_GATES: &[&str] = &["UserDataForm", "DisableWorkerNodeCapReconcile"];

fn feature_gates(text: &str) -> Result<(), String> {
    for gate in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !FEATURE_GATES.contains(&gate) {
            let guess = did_you_mean(gate, FEATURE_GATES.iter().copied())
                .map_or(String::new(), |g| format!(" (did you mean {g}?)"));
            return Err(format!(
                "unknown feature gate `{}`{guess}; known: {}",
                clip(gate),
                FEATURE_GATES.join(", ")
            ));
        }
    }
    Ok(())
}

/// A host name or IP address, without a scheme or port.
fn host(text: &str) -> Result<(), String> {
    let shaped = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if shaped && !text.contains("://") {
        Ok(())
    } else {
        Err("expected a host name or IP address such as pool.ntp.org".into())
    }
}

#[cfg(test)]
mod tests {
    use super::check_format;

    fn ok(format: &str, values: &[&str]) {
        for v in values {
            assert_eq!(check_format(format, v), Ok(()), "{format} {v}");
        }
    }

    fn bad(format: &str, values: &[&str]) {
        for v in values {
            assert!(check_format(format, v).is_err(), "{format} {v}");
        }
    }

    #[test]
    fn addresses_take_an_optional_prefix_length_in_range() {
        ok(
            "ip-or-cidr",
            &["10.0.10.25", "10.0.10.25/24", "10.0.10.25/0", "fd00::1/128"],
        );
        bad(
            "ip-or-cidr",
            &[
                "10.0.10.25/33",
                "fd00::1/129",
                "10.0.10/24",
                "10.0.10.25/",
                "/24",
            ],
        );
        ok(
            "netmask",
            &["255.255.255.0", "255.255.255.255", "0.0.0.0", "24"],
        );
        bad(
            "netmask",
            &["255.0.255.0", "255.255.255.1", "129", "+24", "mask"],
        );
    }

    #[test]
    fn dates_exist_on_the_calendar() {
        ok("date", &["2030-12-31", "2028-02-29", "2000-02-29"]);
        bad(
            "date",
            &[
                "2030-02-29",
                "1900-02-29",
                "2030-13-01",
                "2030-04-31",
                "30-1-1",
            ],
        );
    }

    #[test]
    fn edge_host_ids_follow_the_installer_reference() {
        let longest = "a".repeat(128);
        ok("edge-host-id", &["$random", "edge-1_a", &longest, ""]);
        let too_long = "a".repeat(129);
        bad("edge-host-id", &[&too_long, "a.b", "a:b", "a b(", "$x"]);
        let listed = check_format("edge-host-id", "a.b:c.d").unwrap_err();
        assert!(listed.starts_with("`.` `:` not supported"), "{listed}");
    }

    #[test]
    fn feature_gates_are_the_documented_ones() {
        ok(
            "feature-gates",
            &[
                "",
                "UserDataForm",
                "UserDataForm, DisableWorkerNodeCapReconcile",
            ],
        );
        bad("feature-gates", &["UserDataFrom", "UserDataForm,Other"]);
    }
}
