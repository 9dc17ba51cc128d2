//! The checkout's `Earthfile` as a settings layer. A CanvOS release pins what it builds in the
//! Earthfile's global section (the lines before the first target): `ARG NAME=default` lines,
//! `LET`/`SET` reassignments, and `IF`/`ELSE IF`/`ELSE`/`END` blocks whose conditions are
//! shell tests (`[ "$A" = "b" ] && [ ... ]`, `[[ "$B" =~ "x" ]]`). forge evaluates that section
//! as Earthly does: an `ARG` the user gives (in a higher layer) takes the user's value, any
//! other takes its default with `$VAR`/`${VAR}` expanded from the variables before it, and a
//! block runs when its condition holds. What forge cannot read (a shell-out `$(...)`, a
//! `${VAR:-x}` form, a condition beyond those tests) makes the values it would set unknown,
//! reported for the names forge needs.

use std::cell::Cell;
use std::collections::HashMap;

use super::arg;
use crate::diagnostic::Pos;
use crate::limits::{
    clip, MAX_ARG_EXPANSION_BYTES, MAX_ARG_VALUE_BYTES, MAX_EARTHFILE_BLOCK_DEPTH,
};

/// A value the Earthfile sets, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub name: String,
    pub value: String,
    /// Where the value starts (the statement, for an `IF` that sets it).
    pub pos: Pos,
}

/// A value forge cannot read from the Earthfile, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub name: String,
    pub pos: Pos,
    /// What forge cannot read, e.g. "the shell-out `$(cat VERSION)`".
    pub why: String,
}

/// What the global section sets: the last value of each variable the user did not give, in
/// the order first set; and the variables whose value forge cannot tell.
#[derive(Debug, Default, Clone)]
pub struct Evaluated {
    pub assigned: Vec<Assigned>,
    pub unreadable: Vec<Unreadable>,
    /// Every variable the section declares or sets (given or not), in order.
    pub declared: Vec<String>,
    /// Where the reading stopped, blocks nested deeper than [`MAX_EARTHFILE_BLOCK_DEPTH`].
    pub stopped: Option<Pos>,
}

impl Evaluated {
    pub fn get(&self, name: &str) -> Option<&Assigned> {
        self.assigned.iter().find(|a| a.name == name)
    }
}

/// A variable's state while the section is read.
#[derive(Debug, Clone)]
enum Var {
    Known(String),
    /// Why not known.
    Unknown(String),
}

/// Whether the statements of a branch run.
#[derive(Debug, Clone, PartialEq)]
enum Branch {
    Yes,
    No,
    /// Under a condition forge cannot read: the line and the condition.
    Unknown(usize, String),
}

/// An open `IF` (or another block forge does not run, `FOR`, `WITH`, `TRY`).
struct Block {
    branch: Branch,
    /// A branch of this `IF` was taken: the `ELSE IF`s and `ELSE` after it are not.
    taken: bool,
}

/// Read the Earthfile's global section. `given` answers for the variables the user sets;
/// `fallback`, for an `ARG` without a default the user does not give (`ARG ARCH`: forge's own
/// default, where Earthly would have nothing).
pub fn evaluate(
    text: &str,
    given: &dyn Fn(&str) -> Option<String>,
    fallback: &dyn Fn(&str) -> Option<String>,
) -> Evaluated {
    let mut state = State {
        vars: HashMap::new(),
        order: Vec::new(),
        by_earthfile: HashMap::new(),
        blocks: Vec::new(),
        budget: MAX_ARG_EXPANSION_BYTES,
        given,
        fallback,
    };
    let mut stopped = None;
    for (start, statement) in statements(text) {
        if !state.statement(start, &statement) {
            stopped = Some(start);
            break;
        }
    }
    Evaluated {
        stopped,
        ..state.finish()
    }
}

struct State<'a> {
    vars: HashMap<String, Var>,
    /// Names in the order first set, for a stable output.
    order: Vec<String>,
    /// Where the Earthfile (not the user) set each variable's current value.
    by_earthfile: HashMap<String, Pos>,
    blocks: Vec<Block>,
    /// What `$VAR` expansion may still add, as for a `.arg` file.
    budget: usize,
    given: &'a dyn Fn(&str) -> Option<String>,
    fallback: &'a dyn Fn(&str) -> Option<String>,
}

impl State<'_> {
    /// Whether the statements of the innermost branch run.
    fn running(&self) -> Branch {
        let mut running = Branch::Yes;
        for block in &self.blocks {
            match &block.branch {
                Branch::No => return Branch::No,
                unknown @ Branch::Unknown(..) if running == Branch::Yes => {
                    running = unknown.clone();
                }
                _ => {}
            }
        }
        running
    }

    /// One statement; `false` ends the reading (blocks nested too deep).
    fn statement(&mut self, start: Pos, statement: &str) -> bool {
        let line = start.line;
        let (command, rest) = statement
            .split_once(char::is_whitespace)
            .map_or((statement, ""), |(c, r)| (c, r.trim()));
        match command {
            "IF" => {
                let branch = match self.running() {
                    Branch::Yes => self.condition(line, rest),
                    Branch::No => Branch::No,
                    unknown => unknown,
                };
                if self.blocks.len() >= MAX_EARTHFILE_BLOCK_DEPTH {
                    return false;
                }
                let taken = branch == Branch::Yes;
                self.blocks.push(Block { branch, taken });
            }
            "ELSE" => {
                let parent_runs = self.blocks.len() < 2
                    || self.blocks[..self.blocks.len() - 1]
                        .iter()
                        .all(|b| b.branch == Branch::Yes);
                let condition = rest.strip_prefix("IF").map(str::trim);
                let Some(block) = self.blocks.last() else {
                    return true;
                };
                let branch = match (&block.branch, block.taken) {
                    (Branch::Unknown(..), _) => block.branch.clone(),
                    (_, true) => Branch::No,
                    _ if !parent_runs => Branch::No,
                    _ => match condition {
                        Some(condition) => self.condition(line, condition),
                        None => Branch::Yes,
                    },
                };
                let block = self.blocks.last_mut().expect("checked above");
                block.taken |= branch == Branch::Yes;
                block.branch = branch;
            }
            "END" => {
                self.blocks.pop();
            }
            "FOR" | "WITH" | "TRY" | "WAIT" => {
                if self.blocks.len() >= MAX_EARTHFILE_BLOCK_DEPTH {
                    return false;
                }
                self.blocks.push(Block {
                    branch: Branch::No,
                    taken: true,
                });
            }
            "ARG" | "LET" | "SET" => self.assignment(start, statement, command, rest),
            _ => {}
        }
        true
    }

    /// `ARG [--flags] NAME[=default]`, `LET NAME=value`, `SET NAME=value`.
    fn assignment(&mut self, start: Pos, statement: &str, command: &str, rest: &str) {
        let running = self.running();
        if running == Branch::No {
            return;
        }
        let mut rest = rest;
        while let Some(flag) = rest.strip_prefix("--") {
            rest = flag
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r.trim_start());
        }
        let (name, default) = match rest.split_once('=') {
            Some((name, default)) => (name.trim(), Some(default.trim())),
            None => (rest.trim(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return;
        }
        // The column of the value (or of the name), counted in the statement's first line.
        let at = default
            .and_then(|d| statement.find(d))
            .or_else(|| statement.find(name))
            .unwrap_or(0);
        let pos = Pos::new(start.line, start.column + statement[..at].chars().count());
        if command == "ARG" {
            if let Some(value) = (self.given)(name) {
                self.set(name, Var::Known(value), None);
                return;
            }
        }
        if let Branch::Unknown(if_line, condition) = running {
            let why = format!(
                "the condition `{}` on line {if_line}, under which {name} is set",
                clip(&condition)
            );
            self.set(name, Var::Unknown(why), Some(pos));
            return;
        }
        let value = match default {
            Some(default) => self.expand(name, start.line, default),
            // An ARG without a default is forge's default (or empty) unless given; a second
            // declaration keeps it.
            None => match self.vars.get(name) {
                Some(_) => return,
                None => {
                    let value = (self.fallback)(name).unwrap_or_default();
                    self.set(name, Var::Known(value), None);
                    return;
                }
            },
        };
        match value {
            Ok(value) => self.set(name, Var::Known(value), Some(pos)),
            Err(why) => self.set(name, Var::Unknown(why), Some(pos)),
        }
    }

    fn set(&mut self, name: &str, var: Var, by_earthfile: Option<Pos>) {
        if !self.vars.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.vars.insert(name.to_string(), var);
        match by_earthfile {
            Some(pos) => self.by_earthfile.insert(name.to_string(), pos),
            None => self.by_earthfile.remove(name),
        };
    }

    /// `NAME`'s value `text` (on `line`) with its variables expanded, or why it cannot be. A
    /// value that uses an unknown variable has that variable's cause, not a longer one.
    fn expand(&mut self, name: &str, line: usize, text: &str) -> Result<String, String> {
        if let Some(at) = text.find("$(") {
            let end = text[at..].find(')').map_or(text.len(), |e| at + e + 1);
            let shell_out = clip(&text[at..end]);
            return Err(format!(
                "the shell-out `{shell_out}` in {name}'s value (line {line})"
            ));
        }
        let unknown: Cell<Option<String>> = Cell::new(None);
        let lookup = |var: &str| match self.vars.get(var) {
            Some(Var::Known(value)) => Some(value.clone()),
            Some(Var::Unknown(why)) => {
                unknown.set(Some(why.clone()));
                None
            }
            // Not declared (yet): the user's value or forge's, as a declared ARG would be.
            None => Some(
                (self.given)(var)
                    .or_else(|| (self.fallback)(var))
                    .unwrap_or_default(),
            ),
        };
        if text.len() > MAX_ARG_VALUE_BYTES {
            return Err(format!(
                "{name}'s value on line {line}, longer than {} KiB",
                MAX_ARG_VALUE_BYTES >> 10
            ));
        }
        let mut budget = self.budget;
        let expanded = arg::unquote_and_expand(text, &lookup, &mut budget);
        self.budget = budget;
        if let Some(why) = unknown.take() {
            return Err(why);
        }
        expanded.map(|(value, _undefined)| value).map_err(|e| {
            format!(
                "{name}'s value `{}` on line {line} ({})",
                clip(text),
                e.message
            )
        })
    }

    /// An `IF` condition: tests joined by `&&` and `||` (left to right, as a shell does).
    fn condition(&mut self, line: usize, text: &str) -> Branch {
        let unknown = || Branch::Unknown(line, text.to_string());
        let Some(words) = words(text) else {
            return unknown();
        };
        let mut result: Option<bool> = None;
        let mut joiner: Option<&str> = None;
        let mut i = 0;
        while i < words.len() {
            let close = match words[i].as_str() {
                "[" => "]",
                "[[" => "]]",
                _ => return unknown(),
            };
            let Some(end) = words[i..].iter().position(|w| w == close).map(|e| i + e) else {
                return unknown();
            };
            let Some(test) = self.test(&words[i + 1..end]) else {
                return unknown();
            };
            result = Some(match (result, joiner) {
                (None, _) => test,
                (Some(so_far), Some("&&")) => so_far && test,
                (Some(so_far), _) => so_far || test,
            });
            i = end + 1;
            match words.get(i).map(String::as_str) {
                None => break,
                Some(j @ ("&&" | "||")) => {
                    joiner = Some(if j == "&&" { "&&" } else { "||" });
                    i += 1;
                }
                Some(_) => return unknown(),
            }
        }
        match result {
            Some(true) => Branch::Yes,
            Some(false) => Branch::No,
            None => unknown(),
        }
    }

    /// One test between brackets, its words still quoted: `A = B`, `A == B`, `A != B`,
    /// `A =~ B` (B quoted: a substring), `-n A`, `-z A`. `None`: not one forge reads.
    fn test(&mut self, words: &[String]) -> Option<bool> {
        let mut value = |word: &str| self.expand("the condition", 0, word).ok();
        match words {
            [op, a] if op == "-n" => Some(!value(a)?.is_empty()),
            [op, a] if op == "-z" => Some(value(a)?.is_empty()),
            [a, op, b] => {
                let (a, b) = (value(a)?, value(b)?);
                match op.as_str() {
                    "=" | "==" => Some(a == b),
                    "!=" => Some(a != b),
                    "=~" if b
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) =>
                    {
                        Some(a.contains(&b))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn finish(self) -> Evaluated {
        let mut evaluated = Evaluated {
            declared: self.order.clone(),
            ..Evaluated::default()
        };
        for name in self.order {
            let Some(&pos) = self.by_earthfile.get(&name) else {
                continue;
            };
            match &self.vars[&name] {
                Var::Known(value) => evaluated.assigned.push(Assigned {
                    name,
                    value: value.clone(),
                    pos,
                }),
                Var::Unknown(why) => evaluated.unreadable.push(Unreadable {
                    name,
                    pos,
                    why: why.clone(),
                }),
            }
        }
        evaluated
    }
}

/// The global section's statements with where they start: comments and blank lines left out,
/// continued lines (`\` at the end) joined, up to the first target (`name:` at the start of a
/// line).
fn statements(text: &str) -> Vec<(Pos, String)> {
    let mut statements = Vec::new();
    let mut pending: Option<(Pos, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() {
            if is_target(raw) {
                break;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
        }
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let (start, mut statement) = pending
            .take()
            .unwrap_or((Pos::new(n + 1, indent + 1), String::new()));
        match line.strip_suffix('\\') {
            Some(part) => {
                statement.push_str(part.trim_end());
                statement.push(' ');
                pending = Some((start, statement));
            }
            None => {
                statement.push_str(line);
                statements.push((start, statement));
            }
        }
    }
    statements.extend(pending);
    statements
}

/// `name:` at the start of a line opens a target (or a function): the global section ends.
fn is_target(raw: &str) -> bool {
    let Some(name) = raw.trim_end().strip_suffix(':') else {
        return false;
    };
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A condition's words as a shell splits them, quotes kept (they are removed on expansion).
/// `None`: an unterminated quote.
fn words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                word.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                word.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    if !word.is_empty() {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str, given: &[(&str, &str)]) -> Evaluated {
        let given: HashMap<String, String> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        evaluate(text, &|name| given.get(name).cloned(), &|_| None)
    }

    fn value(e: &Evaluated, name: &str) -> Option<String> {
        e.get(name).map(|a| a.value.clone())
    }

    const SECTION: &str = r#"VERSION --arg-scope-and-set 0.6
ARG SPECTRO_PUB_REPO=registry.example/pub
ARG FIPS_ENABLED=false
IF [ "$FIPS_ENABLED" = "true" ] && [ "$SPECTRO_PUB_REPO" = "registry.example/pub" ]
    LET SPECTRO_PUB_REPO=registry.example/pub-fips
END
ARG KAIROS_BASE_IMAGE_URL=$SPECTRO_PUB_REPO/edge
# the release
ARG PE_VERSION=v9.1.2
ARG KAIROS_VERSION=v3.0.0
ARG OS_DISTRIBUTION
ARG OS_VERSION
ARG ARCH
ARG IS_UKI=false
ARG CMDLINE="stylus.registration quiet"
IF [ "$OS_DISTRIBUTION" = "ubuntu" ] && [ "$BASE_IMAGE" = "" ]
    IF [ "$OS_VERSION" == 22 ] || [ "$OS_VERSION" == 20 ]
        ARG BASE_IMAGE_TAG=kairos-$OS_DISTRIBUTION:$OS_VERSION.04-core-$ARCH-generic-$KAIROS_VERSION
    ELSE IF [ "$IS_UKI" = "true" ]
        ARG BASE_IMAGE_TAG=kairos-$OS_DISTRIBUTION:$OS_VERSION-core-$ARCH-generic-$KAIROS_VERSION-uki
    ELSE
        ARG BASE_IMAGE_TAG=kairos-$OS_DISTRIBUTION:$OS_VERSION-core-$ARCH-generic-$KAIROS_VERSION
    END
    ARG BASE_IMAGE=$KAIROS_BASE_IMAGE_URL/$BASE_IMAGE_TAG
ELSE
    ARG BASE_IMAGE
END
ARG STYLUS_BASE=$SPECTRO_PUB_REPO/edge/stylus-framework-linux-$ARCH:${PE_VERSION}
ARG LONG=a \
    b
build:
    ARG PE_VERSION=v0.0.0
"#;

    #[test]
    fn defaults_expand_from_the_variables_before_them() {
        let e = values(
            SECTION,
            &[
                ("OS_DISTRIBUTION", "ubuntu"),
                ("OS_VERSION", "22"),
                ("ARCH", "amd64"),
            ],
        );
        assert!(e.unreadable.is_empty(), "{:?}", e.unreadable);
        assert_eq!(value(&e, "PE_VERSION").as_deref(), Some("v9.1.2"));
        assert_eq!(
            value(&e, "BASE_IMAGE").as_deref(),
            Some("registry.example/pub/edge/kairos-ubuntu:22.04-core-amd64-generic-v3.0.0")
        );
        assert_eq!(
            value(&e, "STYLUS_BASE").as_deref(),
            Some("registry.example/pub/edge/stylus-framework-linux-amd64:v9.1.2")
        );
        assert_eq!(
            value(&e, "CMDLINE").as_deref(),
            Some("stylus.registration quiet")
        );
        assert_eq!(value(&e, "LONG").as_deref(), Some("a b"));
        // Given values are the user's, not the Earthfile's; the targets' ARGs are not read.
        assert_eq!(value(&e, "OS_DISTRIBUTION"), None);
        assert_eq!(e.get("PE_VERSION").unwrap().pos, Pos::new(9, 16));
    }

    #[test]
    fn conditions_pick_the_branch_the_release_takes() {
        let e = values(
            SECTION,
            &[
                ("OS_DISTRIBUTION", "ubuntu"),
                ("OS_VERSION", "24.04"),
                ("ARCH", "arm64"),
                ("IS_UKI", "true"),
                ("FIPS_ENABLED", "true"),
            ],
        );
        assert_eq!(
            value(&e, "BASE_IMAGE").as_deref(),
            Some(
                "registry.example/pub-fips/edge/kairos-ubuntu:24.04-core-arm64-generic-v3.0.0-uki"
            )
        );
        assert_eq!(e.get("SPECTRO_PUB_REPO").unwrap().pos, Pos::new(5, 26));
        let rhel = values(SECTION, &[("OS_DISTRIBUTION", "rhel")]);
        assert_eq!(
            value(&rhel, "BASE_IMAGE"),
            None,
            "an ARG without a default sets nothing"
        );
    }

    #[test]
    fn what_cannot_be_read_is_named_with_its_line() {
        let text = "ARG A=$(cat VERSION)\nARG B=$A-x\nIF [ -f /etc/x ]\n  ARG C=1\nEND\nARG D=${E:-y}\nARG F=ok\n";
        let e = values(text, &[]);
        let found: Vec<(&str, usize, &str)> = e
            .unreadable
            .iter()
            .map(|u| (u.name.as_str(), u.pos.line, u.why.as_str()))
            .collect();
        let shell_out = "the shell-out `$(cat VERSION)` in A's value (line 1)";
        assert_eq!(found[0], ("A", 1, shell_out));
        assert_eq!(found[1], ("B", 2, shell_out), "B has A's cause");
        assert_eq!(
            found[2],
            (
                "C",
                4,
                "the condition `[ -f /etc/x ]` on line 3, under which C is set"
            )
        );
        assert_eq!(found[3].0, "D");
        assert_eq!(value(&e, "F").as_deref(), Some("ok"));
    }

    #[test]
    fn nesting_is_bounded() {
        let text = format!(
            "{}ARG A=1\n",
            "IF [ 1 = 1 ]\n".repeat(MAX_EARTHFILE_BLOCK_DEPTH + 5)
        );
        let e = values(&text, &[]);
        assert_eq!(value(&e, "A"), None);
        assert_eq!(e.stopped, Some(Pos::new(MAX_EARTHFILE_BLOCK_DEPTH + 1, 1)));
    }
}
