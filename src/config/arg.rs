//! CanvOS `.arg` files: `KEY=VALUE` lines, `#` comments, optional `export`, single and double
//! quotes, and `$VAR` / `${VAR}` expansion (earlier lines, then lower setting layers, then the
//! environment; an undefined variable expands to nothing, with a warning). Expansion is
//! bounded per value ([`MAX_ARG_VALUE_BYTES`]) and per file ([`MAX_ARG_EXPANSION_BYTES`]).

use std::collections::HashMap;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Pos, Rule};
use crate::limits::{clip, MAX_ARG_EXPANSION_BYTES, MAX_ARG_VALUE_BYTES};

/// One `KEY=VALUE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
    /// Where the name starts.
    pub pos: Pos,
    /// Where the value starts.
    pub value_pos: Pos,
}

/// Parse a `.arg` file. `lookup` resolves variables the file does not define itself. Once
/// expansion has added [`MAX_ARG_EXPANSION_BYTES`] to the file's values, the line that would
/// add more is an error and the lines after it are not read.
pub fn parse(
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Vec<Assignment>, Vec<Diagnostic>) {
    let mut assignments: Vec<Assignment> = Vec::new();
    // The latest assignment of each name, so that a lookup does not scan every line before.
    let mut latest: HashMap<String, usize> = HashMap::new();
    let mut expansion_left = MAX_ARG_EXPANSION_BYTES;
    let mut diagnostics = Vec::new();
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            diagnostics.push(
                Diagnostic::new(
                    Rule::ArgSyntax,
                    file,
                    "",
                    Pos::new(1, 1),
                    "the file starts with a byte-order mark, which CanvOS reads as part of the first variable's name",
                )
                .help("save the file as UTF-8 without a byte-order mark"),
            );
            rest
        }
        None => text,
    };
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, indent) = match line.strip_prefix("export ") {
            Some(rest) => (
                rest.trim_start(),
                indent + line.len() - rest.trim_start().len(),
            ),
            None => (line, indent),
        };
        let column = |byte: usize| raw[..byte].chars().count() + 1;
        let Some((name, rest)) = line.split_once('=') else {
            diagnostics.push(
                Diagnostic::new(
                    Rule::ArgSyntax,
                    file,
                    "",
                    Pos::new(line_no, column(indent)),
                    "expected KEY=VALUE",
                )
                .help("each line is KEY=VALUE or a # comment"),
            );
            continue;
        };
        let name = name.trim_end();
        let pos = Pos::new(line_no, column(indent));
        if !is_name(name) {
            diagnostics.push(
                Diagnostic::new(
                    Rule::ArgSyntax,
                    file,
                    name,
                    pos,
                    format!("`{}` is not a variable name", clip(name)),
                )
                .help("names are letters, digits and `_`, not starting with a digit")
                .width(name.chars().count()),
            );
            continue;
        }
        let value_byte = indent + line.len() - rest.len();
        let value_pos = Pos::new(line_no, column(value_byte));
        let defined = |var: &str| {
            latest
                .get(var)
                .map(|&i| assignments[i].value.clone())
                .or_else(|| lookup(var))
        };
        match unquote_and_expand(rest, &defined, &mut expansion_left) {
            Ok((value, undefined)) => {
                for var in undefined {
                    diagnostics.push(
                        Diagnostic::new(
                            Rule::UndefinedVariable,
                            file,
                            name,
                            value_pos,
                            format!("`${}` is not defined; it expands to nothing", clip(&var)),
                        )
                        .help(format!(
                            "define {} on an earlier line, or escape the dollar as `\\$`",
                            clip(&var)
                        )),
                    );
                }
                latest.insert(name.to_string(), assignments.len());
                assignments.push(Assignment {
                    name: name.to_string(),
                    value,
                    pos,
                    value_pos,
                });
            }
            Err(e) => {
                let at = Pos::new(line_no, value_pos.column + e.offset);
                let d = Diagnostic::new(Rule::ArgSyntax, file, name, at, e.message);
                if e.budget_spent {
                    diagnostics.push(d.help("write the values out instead of expanding the same variables again and again"));
                    break;
                }
                diagnostics.push(d);
            }
        }
    }
    (assignments, diagnostics)
}

/// Why a value cannot be read: at which character of the text after `=`, what is wrong, and
/// whether it is the file's expansion budget that is spent (which ends the reading).
pub(super) struct ValueError {
    offset: usize,
    pub(super) message: String,
    budget_spent: bool,
}

impl ValueError {
    fn syntax(offset: usize, message: impl Into<String>) -> ValueError {
        ValueError {
            offset,
            message: message.into(),
            budget_spent: false,
        }
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value of the text after `=`: quotes removed, `$VAR` expanded outside single quotes,
/// an unquoted ` #` starting a comment. Returns the value and the undefined variables, or the
/// error, which a value longer than [`MAX_ARG_VALUE_BYTES`] is (`A=$A$A` on forty lines would
/// otherwise need a terabyte), and so is an expansion larger than what is `left` of the file's
/// budget (`B=$A` on many lines, each value just under the first limit).
pub(super) fn unquote_and_expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    left: &mut usize,
) -> Result<(String, Vec<String>), ValueError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    // Unquoted whitespace is kept only between words, as in a shell.
    let mut pending = String::new();
    let mut started = false;
    let mut undefined = Vec::new();
    let mut i = 0;
    let mut quote: Option<(char, usize)> = None;
    let push = |out: &mut String, pending: &mut String, s: &str| {
        out.push_str(pending);
        pending.clear();
        out.push_str(s);
    };
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some((c, i));
                push(&mut out, &mut pending, "");
                started = true;
            }
            (Some((q, _)), _) if c == q => quote = None,
            (Some(('\'', _)), _) => out.push(c),
            (_, '\\') if i + 1 < chars.len() && matches!(chars[i + 1], '$' | '"' | '\\' | '#') => {
                push(&mut out, &mut pending, &chars[i + 1].to_string());
                i += 1;
            }
            (None, '#') if i == 0 || chars[i - 1].is_whitespace() => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    pending.push(c);
                }
            }
            (_, '$') => {
                let (name, consumed) =
                    variable_at(&chars[i + 1..]).map_err(|m| ValueError::syntax(i, m))?;
                let expansion = match &name {
                    Some(var) => lookup(var).unwrap_or_else(|| {
                        undefined.push(var.clone());
                        String::new()
                    }),
                    None => "$".to_string(),
                };
                let var = name.unwrap_or_default();
                if out.len() + pending.len() + expansion.len() > MAX_ARG_VALUE_BYTES {
                    return Err(ValueError::syntax(
                        i,
                        format!(
                            "the value grows past {} KiB where `${}` is expanded",
                            MAX_ARG_VALUE_BYTES >> 10,
                            clip(&var),
                        ),
                    ));
                }
                // A lone `$` is text, not an expansion.
                let expanded = if var.is_empty() { 0 } else { expansion.len() };
                *left = left.checked_sub(expanded).ok_or_else(|| ValueError {
                    offset: i,
                    message: format!("expanding `${}` takes what `$VAR` expansion adds to this file's values past {} MiB, the most forge expands in one .arg file; the lines after this one are not read", clip(&var), MAX_ARG_EXPANSION_BYTES >> 20),
                    budget_spent: true,
                })?;
                i += consumed;
                push(&mut out, &mut pending, &expansion);
                started = true;
            }
            _ => {
                push(&mut out, &mut pending, &c.to_string());
                started = true;
            }
        }
        i += 1;
    }
    if let Some((q, at)) = quote {
        return Err(ValueError::syntax(at, format!("unterminated {q} quote")));
    }
    Ok((out, undefined))
}

/// `NAME` or `{NAME}` after a `$`: the name and how many characters it used.
fn variable_at(rest: &[char]) -> Result<(Option<String>, usize), String> {
    if rest.first() == Some(&'{') {
        let close = rest
            .iter()
            .position(|&c| c == '}')
            .ok_or("unterminated ${")?;
        let name: String = rest[1..close].iter().collect();
        if !is_name(&name) {
            return Err(format!(
                "`${{{}}}` is not a variable reference",
                clip(&name)
            ));
        }
        return Ok((Some(name), close + 1));
    }
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    if len == 0 || rest[0].is_ascii_digit() {
        return Ok((None, 0));
    }
    Ok((Some(rest[..len].iter().collect()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, String)> {
        let lookup = |v: &str| (v == "HOME_REG").then(|| "reg.local".to_string());
        let (assignments, diagnostics) = parse(Path::new(".arg"), text, &lookup);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assignments.into_iter().map(|a| (a.name, a.value)).collect()
    }

    #[test]
    fn parses_canvos_lines() {
        let text = "# comment\nOS_DISTRIBUTION=ubuntu\nIMAGE_REPO=$OS_DISTRIBUTION\nexport A=\"x y\" # c\nB='$HOME_REG'\nC=${HOME_REG}/edge\nD=\n";
        let expected = [
            ("OS_DISTRIBUTION", "ubuntu"),
            ("IMAGE_REPO", "ubuntu"),
            ("A", "x y"),
            ("B", "$HOME_REG"),
            ("C", "reg.local/edge"),
            ("D", ""),
        ];
        let got = values(text);
        assert_eq!(got, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn expansion_stops_at_the_value_limit() {
        let text = format!("A=x\n{}", "A=$A$A\n".repeat(40));
        let (assignments, d) = parse(Path::new(".arg"), &text, &|_| None);
        let longest = assignments.iter().map(|a| a.value.len()).max().unwrap();
        assert!(longest <= MAX_ARG_VALUE_BYTES, "{longest}");
        let first = &d[0];
        assert_eq!(
            (first.rule, first.pos, first.path.as_str()),
            (Rule::ArgSyntax, Pos::new(18, 5), "A")
        );
        assert_eq!(
            first.message,
            "the value grows past 64 KiB where `$A` is expanded"
        );
    }

    #[test]
    fn expansion_stops_at_the_budget_of_the_file() {
        let a = "x".repeat(MAX_ARG_VALUE_BYTES - 1);
        let text = format!("A={a}\n{}", "B=$A\n".repeat(1000));
        let (assignments, d) = parse(Path::new(".arg"), &text, &|_| None);
        let expanded: usize = assignments[1..].iter().map(|a| a.value.len()).sum();
        assert!(expanded <= MAX_ARG_EXPANSION_BYTES, "{expanded}");
        assert_eq!(d.len(), 1, "one error, then the file is not read further");
        let lines = MAX_ARG_EXPANSION_BYTES / a.len();
        assert_eq!(
            (d[0].rule, d[0].pos, d[0].path.as_str()),
            (Rule::ArgSyntax, Pos::new(lines + 2, 3), "B")
        );
        assert!(d[0]
            .message
            .contains("past 1 MiB, the most forge expands in one .arg file"));
    }

    #[test]
    fn a_lone_dollar_is_text_not_expansion() {
        let text = format!("A={}\n", "$".repeat(60 << 10)).repeat(17);
        let (assignments, d) = parse(Path::new(".arg"), &text, &|_| None);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(assignments.len(), 17);
    }

    #[test]
    fn names_a_byte_order_mark() {
        let (assignments, d) = parse(Path::new(".arg"), "\u{feff}ARCH=amd64\n", &|_| None);
        assert_eq!(assignments[0].name, "ARCH");
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("byte-order mark"), "{}", d[0].message);
        assert_eq!(
            d[0].help.as_deref(),
            Some("save the file as UTF-8 without a byte-order mark")
        );
    }

    #[test]
    fn reports_positions_of_mistakes() {
        let (_, d) = parse(
            Path::new(".arg"),
            "OK=1\nnot an assignment\nX=\"open\nY=$NOPE\n",
            &|_| None,
        );
        let found: Vec<_> = d
            .iter()
            .map(|d| (d.rule, d.pos.line, d.pos.column))
            .collect();
        assert_eq!(
            found,
            [
                (Rule::ArgSyntax, 2, 1),
                (Rule::ArgSyntax, 3, 3),
                (Rule::UndefinedVariable, 4, 3)
            ]
        );
    }
}
