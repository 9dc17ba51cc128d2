//! JSON Schemas generated from forge's typed models, and the checker that validates a
//! position-tracking YAML tree against them. The schema `forge schema` prints is the very
//! schema the validator walks, so editors and `forge validate` agree.

use std::path::Path;

use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value as Json};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos, Rule, Severity};
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
pub struct Checker<'a> {
    root: &'a Json,
    file: &'a Path,
}

/// Where a value is reported: its key path, and the position of its key (or of the value when
/// it has no key, like a list item).
#[derive(Clone)]
struct At {
    path: String,
    pos: Pos,
    width: usize,
    secret: bool,
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Json, file: &'a Path) -> Self {
        Checker { root, file }
    }

    /// Check a whole document.
    pub fn check(&self, node: &Node) -> Findings {
        let mut findings = Findings::default();
        let at = At {
            path: String::new(),
            pos: node.pos,
            width: 1,
            secret: false,
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
            ..at.clone()
        };
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
                out.diagnostics
                    .push(self.type_error(&describe_type(expected), node, at));
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
                    format!(" {text:?}")
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
                        let item_at = At {
                            path: index(&at.path, i),
                            pos: item.pos,
                            width: 1,
                            secret: at.secret,
                        };
                        self.walk(item_schema, item, &item_at, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn type_error(&self, expected: &str, node: &Node, at: &At) -> Diagnostic {
        let got = node.type_name();
        let diagnostic = self.error(
            Rule::WrongType,
            at,
            format!("expected {expected}, got {got}"),
        );
        match (expected, got) {
            (_, "null") => diagnostic.help("the key has no value: give it one, or remove the key"),
            ("string", "integer" | "number" | "boolean") => {
                diagnostic.help("quote the value so that YAML reads it as a string")
            }
            ("boolean", "string") => diagnostic.help("write true or false, without quotes"),
            _ => diagnostic,
        }
    }

    fn walk_alternatives(&self, branches: &[Json], node: &Node, at: &At, out: &mut Findings) {
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
            format!(" {}", value)
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
        if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
            let range = format!(
                "{}..={}",
                min.map_or("".into(), |m| m.to_string()),
                max.map_or("".into(), |m| m.to_string())
            );
            out.diagnostics.push(self.error(
                Rule::InvalidValue,
                at,
                format!("{value} is out of range {range}"),
            ));
        }
    }

    fn walk_object(&self, obj: &Map<String, Json>, node: &Node, at: &At, out: &mut Findings) {
        let empty = Map::new();
        let properties = obj
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let additional = obj.get("additionalProperties");
        for entry in node.entries() {
            let entry_at = At {
                path: join(&at.path, &entry.key),
                pos: entry.key_pos,
                width: entry.key.chars().count(),
                secret: at.secret,
            };
            match (properties.get(&entry.key), additional) {
                (Some(schema), _) => self.walk(schema, &entry.value, &entry_at, out),
                (None, Some(Json::Bool(false))) => {
                    let mut d = self.error(
                        Rule::UnknownKey,
                        &entry_at,
                        format!("unknown key `{}`", entry.key),
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
        "ip" => text
            .parse::<std::net::IpAddr>()
            .map(drop)
            .map_err(|_| "expected an IP address such as 192.168.1.10".into()),
        "ip-or-prefix-length" => {
            let ok = text.parse::<std::net::IpAddr>().is_ok()
                || text.parse::<u8>().is_ok_and(|p| p <= 128);
            if ok {
                Ok(())
            } else {
                Err("expected a netmask such as 255.255.255.0 or a prefix length such as 24".into())
            }
        }
        "proxy-url" => {
            let rest = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() => Ok(()),
                _ => Err("expected http://host:port or https://host:port".into()),
            }
        }
        "date" => {
            let parts: Vec<&str> = text.split('-').collect();
            let ok = parts.len() == 3
                && [4, 2, 2]
                    .iter()
                    .zip(&parts)
                    .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_digit()));
            if ok {
                Ok(())
            } else {
                Err("expected a date as YYYY-MM-DD".into())
            }
        }
        "hostname-prefix" => {
            if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(())
            } else {
                Err("only letters, digits and '-' are allowed".into())
            }
        }
        _ => Ok(()),
    }
}
