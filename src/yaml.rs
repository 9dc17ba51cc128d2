//! A YAML tree that remembers where every key and value came from, so that each finding can
//! name its line and column. Scalars are resolved with the YAML 1.2 core schema, the one the
//! edge agent's Go YAML library uses.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use std::path::Path;

use crate::diagnostic::{Diagnostic, Pos, Rule};

/// A parsed value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Character offsets of the value in the source, end exclusive.
    pub start: usize,
    pub end: usize,
    /// How a scalar was written (plain, quoted, block); `None` for collections.
    pub style: Option<ScalarStyle>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// A key defined twice in one mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub path: String,
    pub pos: Pos,
    pub first: Pos,
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Node,
    pub duplicates: Vec<Duplicate>,
}

impl Node {
    fn new(value: Value, span: &Span, style: Option<ScalarStyle>) -> Node {
        Node {
            value,
            pos: pos(span),
            start: span.start.index(),
            end: span.end.index(),
            style,
        }
    }

    /// The JSON Schema name of this value's type: `null`, `boolean`, `integer`, `number`,
    /// `string`, `array` or `object`.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Follow a chain of keys.
    pub fn at(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value with positions dropped.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    fn shift(&mut self, map: &dyn Fn(Pos) -> Pos) {
        self.pos = map(self.pos);
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift(map)),
            Value::Map(entries) => entries.iter_mut().for_each(|e| {
                e.key_pos = map(e.key_pos);
                e.value.shift(map);
            }),
            _ => {}
        }
    }
}

/// Append a key to a path: `a.b`, or `a["gcr.io/x"]` when the key is not a plain word.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// Append an index to a path: `a[3]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn pos(span: &Span) -> Pos {
    Pos::new(span.start.line(), span.start.col() + 1)
}

/// Resolve a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let int = if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = text.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if text
        .trim_start_matches(['-', '+'])
        .chars()
        .all(|c| c.is_ascii_digit())
    {
        text.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Value::Int(i);
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    match text.parse::<f64>() {
        Ok(f) if looks_numeric => Value::Float(f),
        _ => Value::Str(text.to_string()),
    }
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<(String, Pos)>,
        path: String,
    },
}

/// Parse one YAML document. An empty document is `null`.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line(), e.marker().col() + 1),
            message: e.info().to_string(),
        })?;
        let here = pos(&span);
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos: here,
                        message: "expected a single YAML document, found a second one".into(),
                    });
                }
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::SequenceStart(anchor, _) => {
                let node = Node::new(Value::Seq(Vec::new()), &span, None);
                stack.push(Frame::Seq { node, anchor });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                let path = current_path(&stack);
                let node = Node::new(Value::Map(Vec::new()), &span, None);
                stack.push(Frame::Map {
                    node,
                    anchor,
                    pending_key: None,
                    path,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { mut node, anchor })
                | Some(Frame::Map {
                    mut node, anchor, ..
                }) => {
                    node.end = span.end.index().max(node.end);
                    (node, anchor)
                }
                None => continue,
            },
            Event::Alias(id) => match anchors.get(&id) {
                Some(target) => {
                    let mut node = target.clone();
                    node.shift(&|_| here);
                    node.start = span.start.index();
                    node.end = span.end.index();
                    (node, 0)
                }
                None => {
                    return Err(SyntaxError {
                        pos: here,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = match (&tag, style) {
                    (Some(tag), _) if tag.is_yaml_core_schema() && tag.suffix == "str" => {
                        Value::Str(text.to_string())
                    }
                    (_, ScalarStyle::Plain) => resolve_plain(&text),
                    _ => Value::Str(text.to_string()),
                };
                let node = Node::new(value, &span, Some(style));
                (node, anchor)
            }
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { node: parent, .. }) => {
                if let Value::Seq(items) = &mut parent.value {
                    items.push(node);
                }
            }
            Some(Frame::Map {
                node: parent,
                pending_key,
                path,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Null => String::new(),
                        _ => node.to_json().to_string(),
                    };
                    *pending_key = Some((key, node.pos));
                }
                Some((key, key_pos)) => {
                    if let Value::Map(entries) = &mut parent.value {
                        if let Some(first) = entries.iter().find(|e| e.key == key) {
                            duplicates.push(Duplicate {
                                path: join(path, &key),
                                pos: key_pos,
                                first: first.key_pos,
                            });
                        }
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
        }
    }
    let root = root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos::new(1, 1),
        start: 0,
        end: 0,
        style: None,
    });
    Ok(Document { root, duplicates })
}

fn current_path(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Map {
                pending_key: Some((key, _)),
                ..
            } => path = join(&path, key),
            Frame::Seq { node, .. } => path = index(&path, node.items().len()),
            Frame::Map { .. } => {}
        }
    }
    path
}

/// Parse an input file: the document (if it is valid YAML) and the findings of parsing, a
/// syntax error (YAML001) or keys defined twice (YAML002).
pub fn parse_file(file: &Path, text: &str) -> (Option<Document>, Vec<Diagnostic>) {
    match parse(text) {
        Ok(doc) => {
            let duplicates = doc
                .duplicates
                .iter()
                .map(|dup| duplicate_diagnostic(file, dup))
                .collect();
            (Some(doc), duplicates)
        }
        Err(e) => (None, vec![e.diagnostic(file, "")]),
    }
}

fn duplicate_diagnostic(file: &Path, dup: &Duplicate) -> Diagnostic {
    Diagnostic::new(
        Rule::DuplicateKey,
        file,
        dup.path.clone(),
        dup.pos,
        "key defined twice in the same mapping",
    )
    .help(format!(
        "the first definition is at line {}; keep one",
        dup.first.line
    ))
}

impl SyntaxError {
    /// The finding for this error, at `path` (empty for a whole file).
    pub fn diagnostic(&self, file: &Path, path: &str) -> Diagnostic {
        Diagnostic::new(
            Rule::YamlSyntax,
            file,
            path,
            self.pos,
            format!("invalid YAML: {}", self.message),
        )
    }
}

/// Parse YAML held in a string value of another document (a pack's `values: |` block), with
/// positions translated into the outer file. Block scalars map line for line; other styles
/// map every position to the start of the string.
pub fn parse_embedded(node: &Node) -> Result<Document, SyntaxError> {
    let text = node.as_str().unwrap_or_default();
    let origin = node.pos;
    let map: Box<dyn Fn(Pos) -> Pos> = match node.style {
        Some(ScalarStyle::Literal) => {
            // The span of a block scalar starts at its first non-blank content character.
            let blank = text.lines().take_while(|l| l.trim().is_empty()).count();
            Box::new(move |p: Pos| {
                Pos::new(
                    origin.line + p.line - 1 - blank.min(p.line - 1),
                    p.column + origin.column - 1,
                )
            })
        }
        _ => Box::new(move |_| origin),
    };
    match parse(text) {
        Ok(mut doc) => {
            doc.root.shift(&*map);
            for d in &mut doc.duplicates {
                d.pos = map(d.pos);
                d.first = map(d.first);
            }
            Ok(doc)
        }
        Err(e) => Err(SyntaxError {
            pos: map(e.pos),
            message: e.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_key_and_value_positions() {
        let doc = parse("#cloud-config\nstylus:\n  registryCredentials:\n    password:\n").unwrap();
        let creds = doc.root.at(&["stylus", "registryCredentials"]).unwrap();
        let entry = creds.entry("password").unwrap();
        assert_eq!(entry.key_pos, Pos::new(4, 5));
        assert_eq!(entry.value.value, Value::Null);
    }

    #[test]
    fn resolves_scalars_with_the_core_schema() {
        let doc =
            parse("a: 123\nb: '123'\nc: yes\nd: true\ne: 1.5\nf: ~\ng: 0x1F\nh: 1.2.3\n").unwrap();
        let kinds: Vec<_> = doc
            .root
            .entries()
            .iter()
            .map(|e| e.value.type_name())
            .collect();
        assert_eq!(
            kinds,
            ["integer", "string", "string", "boolean", "number", "null", "integer", "string"]
        );
    }

    #[test]
    fn reports_duplicates_and_syntax_errors() {
        let doc = parse("a:\n  b: 1\n  b: 2\n").unwrap();
        assert_eq!(doc.duplicates[0].path, "a.b");
        assert_eq!(doc.duplicates[0].pos, Pos::new(3, 3));
        let err = parse("a: [1, 2\n").unwrap_err();
        assert!(err.pos.line >= 1);
    }

    #[test]
    fn resolves_aliases() {
        let doc = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(doc.root.at(&["c", "b"]).unwrap().value, Value::Int(1));
    }

    #[test]
    fn maps_embedded_block_positions_to_the_outer_file() {
        let outer = "values: |\n  pack:\n    name: x\n";
        let doc = parse(outer).unwrap();
        let inner = parse_embedded(doc.root.get("values").unwrap()).unwrap();
        let entry = inner.root.get("pack").unwrap().entry("name").unwrap();
        assert_eq!(entry.key_pos, Pos::new(3, 5));
    }

    #[test]
    fn quotes_unusual_keys_in_paths() {
        assert_eq!(join("rules", "gcr.io/x"), "rules[\"gcr.io/x\"]");
        assert_eq!(join("", "stylus"), "stylus");
        assert_eq!(index("a.b", 2), "a.b[2]");
    }
}
