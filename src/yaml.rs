//! A YAML tree that remembers where every key and value came from, so that each finding can
//! name its line and column. Scalars are resolved with the YAML 1.2 core schema, the one the
//! edge agent's Go YAML library uses.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::{Diagnostic, Pos, Rule};
use crate::limits::{
    allowed_alias_ratio, MAX_ALIAS_COPIED_BYTES, MAX_ALIAS_COPIED_VALUES, MAX_YAML_DEPTH,
    MIN_ALIASED_NODES, MIN_DECODED_NODES,
};

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

/// A YAML syntax error (YAML001), or a document forge refuses to read because it exceeds a
/// limit on the work of reading it (YAML003).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    pub rule: Rule,
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

    /// How many values the tree holds, and the length of its keys and scalars.
    fn size(&self) -> Size {
        let own = Size {
            nodes: 1,
            bytes: self.as_str().map_or(0, str::len),
        };
        match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).fold(own, Size::plus),
            Value::Map(entries) => entries
                .iter()
                .map(|e| {
                    Size {
                        nodes: 1,
                        bytes: e.key.len(),
                    }
                    .plus(e.value.size())
                })
                .fold(own, Size::plus),
            _ => own,
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
        /// Where each key was first defined, to find duplicates in linear time.
        keys: HashMap<String, Pos>,
    },
}

/// A count of values and of the bytes of their text.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn plus(self, other: Size) -> Size {
        Size {
            nodes: self.nodes + other.nodes,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The work of reading one input: values decoded, those that alias expansion produced, and
/// what anchors and aliases copied, checked at every copy before it is made. One budget is
/// shared by every document of an input (a cluster profile and the YAML embedded in its
/// values), so that many documents each just under the limits cannot add up to more.
#[derive(Debug, Default, Clone, Copy)]
pub struct Budget {
    decoded: usize,
    aliased: usize,
    copied: Size,
}

impl Budget {
    /// Account for an anchor's copy of a value (`aliased` false) or an alias's (`true`).
    fn copy(&mut self, size: Size, aliased: bool, at: Pos) -> Result<(), SyntaxError> {
        if aliased {
            self.decoded += size.nodes;
            self.aliased += size.nodes;
        }
        self.copied = self.copied.plus(size);
        match self.excess() {
            Some(message) => Err(SyntaxError {
                pos: at,
                message: format!("excessive aliasing: {message}"),
                rule: Rule::YamlLimit,
            }),
            None => Ok(()),
        }
    }

    /// Whether a limit is met, so that the documents of the input still to come are not read.
    pub fn spent(&self) -> bool {
        self.excess().is_some()
    }

    /// Which limit the copies so far exceed.
    fn excess(&self) -> Option<String> {
        let ratio = self.aliased as f64 / self.decoded.max(1) as f64;
        let allowed = allowed_alias_ratio(self.decoded);
        if self.aliased > MIN_ALIASED_NODES && self.decoded > MIN_DECODED_NODES && ratio > allowed {
            return Some(format!(
                "aliases expand to {} of the file's {} values, more than the {:.0}% allowed",
                self.aliased,
                self.decoded,
                allowed * 100.0
            ));
        }
        (self.copied.nodes > MAX_ALIAS_COPIED_VALUES || self.copied.bytes > MAX_ALIAS_COPIED_BYTES)
            .then(|| format!(
                "anchors and aliases copy more than {MAX_ALIAS_COPIED_VALUES} values or {} MiB of text, the most forge copies for one file (the YAML embedded in it included)",
                MAX_ALIAS_COPIED_BYTES >> 20
            ))
    }
}

fn syntax(pos: Pos, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        message: message.into(),
        rule: Rule::YamlSyntax,
    }
}

/// Parse one YAML document. An empty document is `null`. Collections nest at most
/// [`MAX_YAML_DEPTH`] levels and aliases expand within go-yaml's bounds, so the tree is small
/// and shallow enough for every recursive walk over it.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    parse_with(text, &mut Budget::default())
}

/// Parse one YAML document of an input whose documents share `budget`.
pub fn parse_with(text: &str, budget: &mut Budget) -> Result<Document, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, Size)> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let at = Pos::new(e.marker().line(), e.marker().col() + 1);
            match e.info() {
                // The scanner's own bound, met when it reads ahead past ours.
                "recursion limit exceeded" => SyntaxError {
                    pos: at,
                    message: "flow collections are nested more than 255 levels deep".into(),
                    rule: Rule::YamlLimit,
                },
                info => syntax(at, info),
            }
        })?;
        let here = pos(&span);
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..))
            && stack.len() >= MAX_YAML_DEPTH
        {
            return Err(SyntaxError {
                pos: here,
                message: format!("collections are nested more than {MAX_YAML_DEPTH} levels deep"),
                rule: Rule::YamlLimit,
            });
        }
        if matches!(
            event,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            budget.decoded += 1;
        }
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(syntax(
                        here,
                        "expected a single YAML document, found a second one",
                    ));
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
                    keys: HashMap::new(),
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
                Some((target, size)) => {
                    budget.copy(*size, true, here)?;
                    let mut node = target.clone();
                    node.shift(&|_| here);
                    node.start = span.start.index();
                    node.end = span.end.index();
                    (node, 0)
                }
                None => return Err(syntax(here, "alias to an unknown anchor")),
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
            let size = node.size();
            budget.copy(size, false, here)?;
            anchors.insert(anchor, (node.clone(), size));
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
                keys,
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
                        match keys.get(&key) {
                            Some(first) => duplicates.push(Duplicate {
                                path: join(path, &key),
                                pos: key_pos,
                                first: *first,
                            }),
                            None => {
                                keys.insert(key.clone(), key_pos);
                            }
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
/// syntax error (YAML001) or keys defined twice (YAML002). `budget` is the file's, which the
/// documents embedded in it go on spending.
pub fn parse_file(
    file: &Path,
    text: &str,
    budget: &mut Budget,
) -> (Option<Document>, Vec<Diagnostic>) {
    match parse_with(text, budget) {
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
        match self.rule {
            Rule::YamlSyntax => Diagnostic::new(
                self.rule,
                file,
                path,
                self.pos,
                format!("invalid YAML: {}", self.message),
            ),
            _ => Diagnostic::new(self.rule, file, path, self.pos, self.message.clone())
                .help("forge bounds the work of reading a document, as the Kubernetes YAML parser does: write the values out instead of aliasing them, and nest fewer levels"),
        }
    }
}

/// Parse YAML held in a string value of another document (a pack's `values: |` block), with
/// positions translated into the outer file, within the outer file's `budget`. Block scalars
/// map line for line; other styles map every position to the start of the string.
pub fn parse_embedded(node: &Node, budget: &mut Budget) -> Result<Document, SyntaxError> {
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
    match parse_with(text, budget) {
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
            ..e
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
    fn refuses_nesting_deeper_than_the_limit_where_it_is_crossed() {
        let ok = format!("{}1", "- ".repeat(MAX_YAML_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}1", "- ".repeat(MAX_YAML_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert_eq!((err.rule, err.pos), (Rule::YamlLimit, Pos::new(1, 257)));
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&flow).unwrap_err().rule, Rule::YamlLimit);
    }

    #[test]
    fn bounds_alias_expansion_like_go_yaml() {
        let laughs = |levels: usize, fanout: usize| {
            let mut text = format!("l0: &l0 [{}]\n", vec!["lol"; fanout].join(", "));
            for i in 1..levels {
                let aliases = vec![format!("*l{}", i - 1); fanout].join(", ");
                text.push_str(&format!("l{i}: &l{i} [{aliases}]\n"));
            }
            text
        };
        assert!(parse(&laughs(3, 10)).is_ok());
        let err = parse(&laughs(4, 10)).unwrap_err();
        assert_eq!(err.rule, Rule::YamlLimit);
        assert!(err.message.starts_with("excessive aliasing"), "{err}");
        assert_eq!(err.pos.line, 4);
        // A long scalar aliased fewer times than the ratio notices is bounded by its length.
        let long = format!(
            "a: &a {}\nb: [{}]\n",
            "x".repeat(1 << 20),
            vec!["*a"; 50].join(",")
        );
        assert_eq!(parse(&long).unwrap_err().rule, Rule::YamlLimit);
    }

    #[test]
    fn the_documents_of_one_input_share_the_alias_budget() {
        // Each document copies 15 MB of text, under the limit alone, over it with another.
        let one = format!(
            "a: &a {}\nb: [{}]\n",
            "x".repeat(1 << 20),
            vec!["*a"; 14].join(",")
        );
        assert!(parse(&one).is_ok());
        let mut budget = Budget::default();
        assert!(parse_with(&one, &mut budget).is_ok());
        assert!(!budget.spent());
        let err = parse_with(&one, &mut budget).unwrap_err();
        assert_eq!((err.rule, err.pos), (Rule::YamlLimit, Pos::new(2, 5)));
        assert!(
            err.message.contains("the most forge copies for one file"),
            "{err}"
        );
        assert!(budget.spent());
    }

    #[test]
    fn finds_duplicates_among_many_keys_in_linear_time() {
        let mut text: String = (0..20_000).map(|i| format!("k{i}: 1\n")).collect();
        text.push_str("k7: 2\n");
        let doc = parse(&text).unwrap();
        assert_eq!(doc.duplicates.len(), 1);
        assert_eq!(doc.duplicates[0].first, Pos::new(8, 1));
    }

    #[test]
    fn maps_embedded_block_positions_to_the_outer_file() {
        let outer = "values: |\n  pack:\n    name: x\n";
        let doc = parse(outer).unwrap();
        let inner =
            parse_embedded(doc.root.get("values").unwrap(), &mut Budget::default()).unwrap();
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
