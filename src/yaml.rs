//! A YAML tree that remembers where every key and value came from, so that each finding can
//! name its line and column. It means what the edge agent's Go YAML library (go-yaml v3) makes
//! of the text: scalars resolved with the YAML 1.2 core schema, explicit tags applied and
//! checked, merge keys (`<<: *defaults`) merged, aliases bounded as go-yaml bounds them. And a
//! YAML text as it may be shown, the values of its secret keys masked ([`mask_secrets`]).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::{Diagnostic, Pos, Rule};
use crate::limits::{
    allowed_alias_ratio, MAX_ALIAS_COPIED_BYTES, MAX_ALIAS_COPIED_VALUES, MAX_YAML_DEPTH,
    MIN_ALIASED_NODES, MIN_DECODED_NODES,
};
use crate::secret::{is_secret_key, mask_line, MASK};

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
        /// The value of a merge key: each item is a mapping to merge.
        merge: bool,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<Key>,
        path: String,
        /// Where each key was first defined, to find duplicates in linear time.
        keys: HashMap<String, Pos>,
        /// The mappings `<<` merges into this one, in order, and where among its entries
        /// theirs go.
        merges: Vec<Node>,
        merge_at: usize,
    },
}

/// A mapping key waiting for its value.
struct Key {
    text: String,
    pos: Pos,
    /// The merge key `<<`.
    merge: bool,
}

/// How an event made its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    Written,
    /// Copied by an alias (`*name`).
    Alias,
    /// The merge key `<<`, written plain with no tag, `!` or `!!merge`.
    MergeKey,
}

/// Whether the value an event makes next is merged into a mapping: the value of `<<`, or an
/// item of the list that is.
fn merging_next(stack: &[Frame]) -> bool {
    match stack.last() {
        Some(Frame::Seq { merge, .. }) => *merge,
        Some(Frame::Map {
            pending_key: Some(key),
            ..
        }) => key.merge,
        _ => false,
    }
}

/// Add the entries of `sources`, the mappings `<<` merges in order, to `entries` at `at`, as
/// go-yaml does: a key written in the mapping itself (the keys of `written`) wins over a
/// merged one, and an earlier source over a later one.
fn merge(
    entries: &mut Vec<Entry>,
    at: usize,
    mut written: HashMap<String, Pos>,
    sources: Vec<Node>,
) {
    let mut merged = Vec::new();
    for source in sources {
        if let Value::Map(source) = source.value {
            for entry in source {
                if let std::collections::hash_map::Entry::Vacant(key) =
                    written.entry(entry.key.clone())
                {
                    key.insert(entry.key_pos);
                    merged.push(entry);
                }
            }
        }
    }
    entries.splice(at..at, merged);
}

/// A merge key's value (or an item of its list) that is not a mapping, as go-yaml refuses it.
fn bad_merge(at: Pos, node: &Node) -> SyntaxError {
    syntax(
        at,
        format!(
            "map merge requires a mapping or a list of mappings as the value (`<<: *defaults`, `<<: [*a, *b]`), and this is of type {}",
            node.type_name()
        ),
    )
}

/// The prefix of the core schema's tags (`!!int` is `tag:yaml.org,2002:int`).
const CORE_TAG: &str = "tag:yaml.org,2002:";

/// A scalar's value as go-yaml decodes it into `interface{}`, given its whole tag
/// (`tag:yaml.org,2002:int` for `!!int`, `!foo`, `!`). With no tag (or the
/// non-specific `!`) a plain scalar is read by the core schema and any other style is a
/// string. `!!str` makes a string; `!!bool`, `!!int`, `!!float` and `!!null` read the text by
/// the core schema, quoted or not, and it must be of that type (an integer becomes a
/// `!!float`); `!!binary` is decoded from base64. Any other tag, local (`!foo`) or not
/// (`!!seq` on a scalar), leaves the text a string.
fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    let Some(tag) = tag.filter(|t| *t != "!") else {
        return Ok(match style {
            ScalarStyle::Plain => resolve_plain(text),
            _ => Value::Str(text.to_string()),
        });
    };
    let Some(kind) = tag.strip_prefix(CORE_TAG) else {
        return Ok(Value::Str(text.to_string()));
    };
    let expected = match kind {
        "bool" => "true or false",
        "int" => "an integer",
        "float" => "a number",
        "null" => "nothing, `null` or `~`",
        "binary" => {
            let base64: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
            return base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map(|bytes| Value::Str(String::from_utf8_lossy(&bytes).into_owned()))
                .map_err(|_| "!!binary value contains invalid base64 data".to_string());
        }
        _ => return Ok(Value::Str(text.to_string())),
    };
    match (kind, resolve_plain(text)) {
        ("float", Value::Int(i)) => Ok(Value::Float(i as f64)),
        (kind, value) if core_tag(&value) == kind => Ok(value),
        (kind, value) => Err(format!(
            "cannot decode !!{} as !!{kind}, so the edge agent cannot read the file: write {expected}, or remove the tag",
            core_tag(&value)
        )),
    }
}

/// Whether a scalar (its text, style and whole tag) is the merge key: `<<` written plain,
/// with no tag or the non-specific `!`, or tagged `!!merge`.
fn is_merge_key(text: &str, style: ScalarStyle, tag: Option<&str>) -> bool {
    text == "<<"
        && match tag {
            None | Some("!") => style == ScalarStyle::Plain,
            Some(tag) => tag.strip_prefix(CORE_TAG) == Some("merge"),
        }
}

/// The core schema's name for the type of a scalar value.
fn core_tag(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Seq(_) => "seq",
        Value::Map(_) => "map",
    }
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
        let (node, anchor, made) = match event {
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
                let merge = matches!(
                    stack.last(),
                    Some(Frame::Map {
                        pending_key: Some(Key { merge: true, .. }),
                        ..
                    })
                );
                stack.push(Frame::Seq {
                    node,
                    anchor,
                    merge,
                });
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
                    merges: Vec::new(),
                    merge_at: 0,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut node, anchor) = match stack.pop() {
                    Some(Frame::Seq { node, anchor, .. }) => (node, anchor),
                    Some(Frame::Map {
                        mut node,
                        anchor,
                        keys,
                        merges,
                        merge_at,
                        ..
                    }) => {
                        if let Value::Map(entries) = &mut node.value {
                            merge(entries, merge_at, keys, merges);
                        }
                        (node, anchor)
                    }
                    None => continue,
                };
                node.end = span.end.index().max(node.end);
                (node, anchor, Made::Written)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((target, size)) => {
                    budget.copy(*size, true, here)?;
                    let mut node = target.clone();
                    // Merged entries keep the positions where they are written, so that a
                    // finding about one names its line; other copies are where the alias is.
                    if !merging_next(&stack) {
                        node.shift(&|_| here);
                        node.start = span.start.index();
                        node.end = span.end.index();
                    }
                    (node, 0, Made::Alias)
                }
                None => return Err(syntax(here, "alias to an unknown anchor")),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let value = scalar_value(&text, style, tag.as_deref())
                    .map_err(|message| syntax(here, message))?;
                let made = if is_merge_key(&text, style, tag.as_deref()) {
                    Made::MergeKey
                } else {
                    Made::Written
                };
                (Node::new(value, &span, Some(style)), anchor, made)
            }
        };
        if anchor != 0 {
            let size = node.size();
            budget.copy(size, false, here)?;
            anchors.insert(anchor, (node.clone(), size));
        }
        // Where the value is written: an alias's copy is written where the alias is.
        let at = if made == Made::Alias { here } else { node.pos };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq {
                node: parent,
                merge,
                ..
            }) => {
                if *merge && !matches!(node.value, Value::Map(_)) {
                    return Err(bad_merge(at, &node));
                }
                if let Value::Seq(items) = &mut parent.value {
                    items.push(node);
                }
            }
            Some(Frame::Map {
                node: parent,
                pending_key,
                path,
                keys,
                merges,
                merge_at,
                ..
            }) => match pending_key.take() {
                None => {
                    let text = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Null => String::new(),
                        _ => node.to_json().to_string(),
                    };
                    *pending_key = Some(Key {
                        text,
                        pos: node.pos,
                        merge: made == Made::MergeKey,
                    });
                }
                Some(key) => {
                    match keys.get(&key.text) {
                        Some(first) => duplicates.push(Duplicate {
                            path: join(path, &key.text),
                            pos: key.pos,
                            first: *first,
                        }),
                        None => {
                            keys.insert(key.text.clone(), key.pos);
                        }
                    }
                    let Value::Map(entries) = &mut parent.value else {
                        continue;
                    };
                    if !key.merge {
                        entries.push(Entry {
                            key: key.text,
                            key_pos: key.pos,
                            value: node,
                        });
                        continue;
                    }
                    if merges.is_empty() {
                        *merge_at = entries.len();
                    }
                    match node.value {
                        Value::Map(_) => merges.push(node),
                        // A written list; its items are mappings, checked as they came.
                        Value::Seq(items) if made == Made::Written => merges.extend(items),
                        _ => return Err(bad_merge(at, &node)),
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
                pending_key: Some(key),
                ..
            } => path = join(&path, &key.text),
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

/// A YAML text with the value of every secret key masked wherever it is written (block or flow
/// style, quoted or not, any length); a text that does not parse is masked line by line
/// ([`mask_line`]). Registered secrets are the output door's to mask.
pub fn mask_secrets(text: &str) -> String {
    let Ok(document) = parse(text) else {
        let masked: Vec<String> = text.lines().map(mask_line).collect();
        return masked.join("\n") + if text.ends_with('\n') { "\n" } else { "" };
    };
    let mut spans = Vec::new();
    secret_spans(&document.root, &mut spans);
    spans.sort_unstable();
    // Character offsets, replaced from the end so that earlier ones stay valid.
    let bytes: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let mut out = text.to_string();
    let mut last_start = usize::MAX;
    for (start, end) in spans.into_iter().rev() {
        let (Some(&from), Some(&to)) = (bytes.get(start), bytes.get(end)) else {
            continue;
        };
        // A value inside one already masked (an alias of a secret map) is covered.
        if to > last_start {
            continue;
        }
        // A quoted value stays quoted.
        let mask = match out[from..].chars().next() {
            Some(quote @ ('"' | '\'')) => format!("{quote}{MASK}{quote}"),
            _ => MASK.to_string(),
        };
        out.replace_range(from..to, &mask);
        last_start = from;
    }
    out
}

/// The character spans of the values of secret keys under `node`.
fn secret_spans(node: &Node, spans: &mut Vec<(usize, usize)>) {
    for entry in node.entries() {
        // A null value holds no secret; its span may cover a comment that says why.
        let value = entry.value.start < entry.value.end && entry.value.value != Value::Null;
        if is_secret_key(&entry.key) && value {
            spans.push((entry.value.start, entry.value.end));
        } else {
            secret_spans(&entry.value, spans);
        }
    }
    for item in node.items() {
        secret_spans(item, spans);
    }
}

/// Why a tree does not fit the typed value it is read into: where (`path`, `qemu.machine` or
/// `grub_files[1].package`, empty for the whole document, and its position) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ShapeError {
    pub path: String,
    pub pos: Pos,
    pub message: String,
}

/// Read `node` into `T` (serde): a typed view of a data file, whose problems name the key and
/// its position (`#[serde(deny_unknown_fields)]` makes a misspelt key one).
pub fn deserialize<T: serde::de::DeserializeOwned>(node: &Node) -> Result<T, ShapeError> {
    T::deserialize(de::NodeDeserializer {
        node,
        path: String::new(),
    })
    .map_err(|e| ShapeError {
        path: e.path.unwrap_or_default(),
        pos: e.pos.unwrap_or(node.pos),
        message: e.message,
    })
}

/// serde's side of [`deserialize`]: a deserializer over a [`Node`] that records the path of
/// the value a problem is found in.
mod de {
    use serde::de::{self, DeserializeSeed, IntoDeserializer as _, MapAccess, SeqAccess, Visitor};

    use super::{index, join, Entry, Node, Pos, Value};

    /// A problem, with the path and position of the innermost value it was found in.
    #[derive(Debug)]
    pub struct Error {
        pub path: Option<String>,
        pub pos: Option<Pos>,
        pub message: String,
    }

    impl Error {
        /// The problem placed at `path`, unless a value inside it holds it already.
        fn at(mut self, path: &str, pos: Pos) -> Error {
            if self.path.is_none() {
                self.path = Some(path.to_string());
                self.pos = Some(pos);
            }
            self
        }
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for Error {}

    impl de::Error for Error {
        fn custom<T: std::fmt::Display>(message: T) -> Error {
            Error {
                path: None,
                pos: None,
                message: message.to_string(),
            }
        }
    }

    pub struct NodeDeserializer<'a> {
        pub node: &'a Node,
        pub path: String,
    }

    impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let path = &self.path;
            match &self.node.value {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Int(i) => visitor.visit_i64(*i),
                Value::Float(f) => visitor.visit_f64(*f),
                Value::Str(s) => visitor.visit_str(s),
                Value::Seq(items) => visitor.visit_seq(Items {
                    items: items.iter().enumerate(),
                    path,
                }),
                Value::Map(entries) => visitor.visit_map(Entries {
                    entries: entries.iter(),
                    value: None,
                    path,
                }),
            }
            .map_err(|e| e.at(path, self.node.pos))
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.node.value {
                Value::Null => visitor.visit_none(),
                _ => visitor.visit_some(self),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
            identifier ignored_any
        }
    }

    struct Items<'a, I> {
        items: I,
        path: &'a str,
    }

    impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'de> for Items<'a, I> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            self.items
                .next()
                .map(|(i, node)| {
                    seed.deserialize(NodeDeserializer {
                        node,
                        path: index(self.path, i),
                    })
                })
                .transpose()
        }
    }

    struct Entries<'a, I> {
        entries: I,
        /// The entry whose key was read last.
        value: Option<&'a Entry>,
        path: &'a str,
    }

    impl<'de, 'a, I: Iterator<Item = &'a Entry>> MapAccess<'de> for Entries<'a, I> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some(entry) = self.entries.next() else {
                return Ok(None);
            };
            self.value = Some(entry);
            seed.deserialize(entry.key.as_str().into_deserializer())
                .map(Some)
                .map_err(|e: Error| e.at(&join(self.path, &entry.key), entry.key_pos))
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let entry = self
                .value
                .take()
                .expect("serde reads a key before its value");
            seed.deserialize(NodeDeserializer {
                node: &entry.value,
                path: join(self.path, &entry.key),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_values_in_yaml_whatever_their_style_or_length() {
        let text = "users:\n  - name: kairos\n    passwd: \"a\\\"b\"\n  - {name: bob, passwd: x1}\nstylus:\n  site:\n    password: pw # old\n    lock_passwd: true\n";
        assert_eq!(
            mask_secrets(text),
            "users:\n  - name: kairos\n    passwd: \"****\"\n  - {name: bob, passwd: ****}\nstylus:\n  site:\n    password: **** # old\n    lock_passwd: true\n"
        );
        assert_eq!(mask_secrets("a: [\npasswd: xy\n"), "a: [\npasswd: ****\n");
        // No value: the comment that explains why stays readable.
        let empty = "stylus:\n  site:\n    password: # the site admin sets it\n    name: a\n";
        assert_eq!(mask_secrets(empty), empty);
    }

    #[test]
    fn masks_a_merged_password_where_it_is_written() {
        let text = "base: &b\n  password: hunter2\nreg:\n  <<: *b\n  domain: x\n";
        assert_eq!(
            mask_secrets(text),
            "base: &b\n  password: ****\nreg:\n  <<: *b\n  domain: x\n"
        );
    }

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

    /// The keys of a mapping and their values, as JSON.
    fn entries(node: &Node) -> Vec<(String, serde_json::Value)> {
        node.entries()
            .iter()
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect()
    }

    #[test]
    fn merge_keys_merge_like_go_yaml() {
        let doc = parse(concat!(
            "a: &a {x: 1, y: 1}\n",
            "b: &b {y: 2, z: 2}\n",
            "one:\n  <<: *a\n",
            "list:\n  <<: [*a, *b]\n",
            "own:\n  x: 0\n  <<: [*a, *b]\n  z: 0\n",
            "inline: {<<: {x: 3}}\n",
        ))
        .unwrap();
        let json = |pairs: &[(&str, i64)]| -> Vec<(String, serde_json::Value)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).into()))
                .collect()
        };
        let at = |key: &str| entries(doc.root.get(key).unwrap());
        assert_eq!(at("one"), json(&[("x", 1), ("y", 1)]));
        // The earlier mapping of the list wins.
        assert_eq!(at("list"), json(&[("x", 1), ("y", 1), ("z", 2)]));
        // Keys written in the mapping win, before `<<` or after it, and are no duplicates.
        assert_eq!(at("own"), json(&[("x", 0), ("y", 1), ("z", 0)]));
        assert_eq!(at("inline"), json(&[("x", 3)]));
        assert!(doc.duplicates.is_empty(), "{:?}", doc.duplicates);
    }

    #[test]
    fn merged_entries_keep_the_positions_where_they_are_written() {
        let text = "defaults: &d\n  password: abc\ncreds:\n  <<: *d\n  user: u\n";
        let doc = parse(text).unwrap();
        let password = doc.root.at(&["creds"]).unwrap().entry("password").unwrap();
        assert_eq!(password.key_pos, Pos::new(2, 3));
        assert_eq!(
            (password.value.pos, password.value.as_str()),
            (Pos::new(2, 13), Some("abc"))
        );
        assert_eq!(&text[password.value.start..password.value.end], "abc");
        // A plain alias is where the alias is written.
        let doc = parse("defaults: &d\n  password: abc\ncreds: *d\n").unwrap();
        let copied = doc.root.at(&["creds"]).unwrap().entry("password").unwrap();
        assert_eq!(copied.key_pos, Pos::new(3, 8));
    }

    #[test]
    fn an_anchor_with_a_merge_key_carries_its_merged_entries() {
        let doc = parse("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b}\n").unwrap();
        let c = doc.root.get("c").unwrap();
        assert_eq!(entries(c), [("x".into(), 1.into()), ("y".into(), 2.into())]);
    }

    #[test]
    fn only_a_plain_or_merge_tagged_key_merges() {
        let doc = parse("a: &a {x: 1}\nq: {\"<<\": *a}\nt: {!!merge \"<<\": *a}\nn: {! <<: *a}\n")
            .unwrap();
        assert_eq!(doc.root.get("q").unwrap().entries()[0].key, "<<");
        assert_eq!(doc.root.get("t").unwrap().entries()[0].key, "x");
        assert_eq!(doc.root.get("n").unwrap().entries()[0].key, "x");
    }

    #[test]
    fn a_second_merge_key_is_a_duplicate_as_in_go_yaml() {
        let doc = parse("a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: *a\n  <<: *b\n").unwrap();
        assert_eq!(doc.duplicates.len(), 1);
        assert_eq!(
            (doc.duplicates[0].path.as_str(), doc.duplicates[0].pos),
            ("c[\"<<\"]", Pos::new(5, 3))
        );
    }

    #[test]
    fn refuses_merging_anything_but_mappings_where_it_is_written() {
        let refused = |text: &str| {
            let err = parse(text).unwrap_err();
            assert_eq!(err.rule, Rule::YamlSyntax);
            assert!(
                err.message
                    .starts_with("map merge requires a mapping or a list of mappings"),
                "{err}"
            );
            err.pos
        };
        assert_eq!(refused("b:\n  <<: 5\n"), Pos::new(2, 7));
        assert_eq!(
            refused("a: &a {x: 1}\nb:\n  <<: [*a, 5]\n"),
            Pos::new(3, 12)
        );
        assert_eq!(refused("s: &s text\nb: {<<: *s}\n"), Pos::new(2, 9));
        assert_eq!(
            refused("a: &a {x: 1}\nl: &l [*a]\nb: {<<: *l}\n"),
            Pos::new(3, 9)
        );
        assert_eq!(refused("b: {<<: [[{x: 1}]]}\n"), Pos::new(1, 10));
        assert_eq!(refused("b: {<<: }\n"), Pos::new(1, 7));
    }

    #[test]
    fn merging_spends_the_alias_budget() {
        let keys: String = (0..50).map(|i| format!("k{i}: {i}, ")).collect();
        let text = format!(
            "a: &a {{{keys}}}\nb: {{<<: [{}]}}\n",
            vec!["*a"; 500].join(", ")
        );
        let err = parse(&text).unwrap_err();
        assert_eq!((err.rule, err.pos.line), (Rule::YamlLimit, 2));
    }

    #[test]
    fn explicit_tags_mean_what_go_yaml_makes_of_them() {
        let doc = parse(concat!(
            "bool: !!bool \"true\"\n",
            "int: !!int \"5\"\n",
            "str: !!str 5\n",
            "float: !!float 5\n",
            "null: !!null \"\"\n",
            "long: !<tag:yaml.org,2002:int> '7'\n",
            "local: !foo 5\n",
            "plain: ! 5\n",
            "seq: !!map [1]\n",
            "scalar: !!seq text\n",
            "binary: !!binary |\n  aGVs\n  bG8=\n",
        ))
        .unwrap();
        let values: Vec<Value> = doc
            .root
            .entries()
            .iter()
            .map(|e| e.value.value.clone())
            .collect();
        assert_eq!(
            values,
            [
                Value::Bool(true),
                Value::Int(5),
                Value::Str("5".into()),
                Value::Float(5.0),
                Value::Null,
                Value::Int(7),
                Value::Str("5".into()),
                Value::Int(5),
                Value::Seq(doc.root.get("seq").unwrap().items().to_vec()),
                Value::Str("text".into()),
                Value::Str("hello".into()),
            ]
        );
        assert_eq!(doc.root.get("seq").unwrap().items()[0].value, Value::Int(1));
    }

    #[test]
    fn refuses_a_tag_that_does_not_fit_its_value_where_it_is_written() {
        let refused = |text: &str| {
            let err = parse(text).unwrap_err();
            assert_eq!(err.rule, Rule::YamlSyntax);
            (err.pos, err.message)
        };
        assert_eq!(
            refused("a:\n  b: !!int \"abc\"\n"),
            (Pos::new(2, 6), "cannot decode !!str as !!int, so the edge agent cannot read the file: write an integer, or remove the tag".into())
        );
        assert!(refused("a: !!bool \"yes\"\n")
            .1
            .starts_with("cannot decode !!str as !!bool"));
        assert!(refused("a: !!int 1.5\n")
            .1
            .starts_with("cannot decode !!float as !!int"));
        assert!(refused("a: !!null x\n")
            .1
            .starts_with("cannot decode !!str as !!null"));
        assert!(refused("a: !!bool\n")
            .1
            .starts_with("cannot decode !!null as !!bool"));
        assert_eq!(
            refused("a: !!binary '*'\n").1,
            "!!binary value contains invalid base64 data"
        );
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

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Machine {
        command: String,
        cpu: Option<String>,
        #[serde(default)]
        devices: Vec<Device>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Device {
        name: String,
    }

    fn read(text: &str) -> Result<Machine, ShapeError> {
        deserialize(&parse(text).unwrap().root)
    }

    #[test]
    fn reads_a_tree_into_a_typed_value() {
        assert_eq!(
            read("command: qemu\ndevices:\n  - name: ide-cd\n").unwrap(),
            Machine {
                command: "qemu".into(),
                cpu: None,
                devices: vec![Device {
                    name: "ide-cd".into()
                }],
            }
        );
        assert_eq!(
            read("command: q\ncpu: max\n").unwrap().cpu.as_deref(),
            Some("max")
        );
        assert_eq!(
            read("command: q\ncpu:\n").unwrap().cpu,
            None,
            "null is none"
        );
    }

    #[test]
    fn a_value_that_does_not_fit_is_named_by_its_key_and_position() {
        let err = read("command: q\ndevices:\n  - name: a\n  - name: 3\n").unwrap_err();
        assert_eq!(err.path, "devices[1].name");
        assert_eq!(err.pos, Pos::new(4, 11));
        assert!(err.message.contains("expected a string"), "{err}");
        assert!(err.to_string().starts_with("devices[1].name: "), "{err}");

        let err = read("command: q\ncpus: 2\n").unwrap_err();
        assert_eq!((err.path.as_str(), err.pos), ("cpus", Pos::new(2, 1)));
        assert!(err.message.contains("unknown field `cpus`"), "{err}");

        let err = read("devices:\n  - {}\n").unwrap_err();
        assert_eq!(err.path, "devices[0]");
        assert!(err.message.contains("missing field `name`"), "{err}");
        let err = read("cpu: max\n").unwrap_err();
        assert_eq!((err.path.as_str(), err.pos), ("", Pos::new(1, 1)));
        assert_eq!(err.to_string(), "missing field `command`");
    }
}
