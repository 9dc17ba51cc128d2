//! The one door out of forge: what a command prints on stdout (text, or one JSON document that
//! names its published shape), notes, findings and errors on stderr (`-q` quiets notes, colour
//! only on a terminal without `NO_COLOR`), and its progress ([`screen`]). Everything passes the
//! redactor here, which knows every secret the inputs told ([`learn`]), and has its control
//! characters escaped. The command line speaks through it; the rest of the library tells
//! [`crate::progress::Progress`] and returns outcomes.

pub mod screen;

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Mutex, OnceLock};

use clap::ValueEnum;
use serde::Serialize;

use crate::diagnostic::{escape_control, Report};
use crate::documents::Shape;
use crate::secret::Redactor;

/// What a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// For people; may change between releases.
    #[default]
    Text,
    /// One JSON document with a `schema` field naming its published shape (`forge schema
    /// output NAME`).
    Json,
}

/// How much a command says on stderr, and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct Voice {
    /// `-q`: errors only.
    pub quiet: bool,
    /// `-v`: every line of build output, beside the spinners too.
    pub verbose: bool,
    /// `NO_COLOR`: no colour, no spinners.
    pub no_color: bool,
}

static VOICE: OnceLock<Voice> = OnceLock::new();
/// Every secret told so far.
static SECRETS: Mutex<Option<Redactor>> = Mutex::new(None);

/// Set once, from the command line.
pub fn set_voice(voice: Voice) {
    let _ = VOICE.set(voice);
}

pub fn voice() -> Voice {
    VOICE.get().copied().unwrap_or_default()
}

/// Mask `redactor`'s secrets in everything printed from now on.
pub fn learn(redactor: &Redactor) {
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    secrets.get_or_insert_with(Redactor::new).merge(redactor);
}

/// `text` as it may be shown: every secret masked, control characters escaped.
pub fn shown(text: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let redacted = match secrets.as_ref() {
        Some(redactor) => redactor.redact(text),
        None => text.to_string(),
    };
    escape_control(&redacted)
}

/// `value` with every secret masked in its strings (before it is serialized, so escaping
/// cannot hide one).
pub fn shown_json(value: &mut serde_json::Value) {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(redactor) = secrets.as_ref() {
        redactor.redact_json(value);
    }
}

/// Colour and spinners on stderr: a terminal, and `NO_COLOR` unset or empty.
pub fn stderr_styled() -> bool {
    std::io::stderr().is_terminal() && !voice().no_color
}

/// Colour on stdout: a terminal, and `NO_COLOR` unset or empty.
pub fn stdout_styled() -> bool {
    std::io::stdout().is_terminal() && !voice().no_color
}

/// `text` in an ANSI style (`1;31` bold red, `32` green, `33` yellow) when `styled`.
pub fn paint(styled: bool, style: &str, text: &str) -> String {
    match styled {
        true => format!("\x1b[{style}m{text}\x1b[0m"),
        false => text.to_string(),
    }
}

/// A line on stderr, as it may be shown; a closed stderr loses the line, not the command.
pub fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", shown(line));
}

/// A note on stderr (what a command is doing), unless `-q`.
pub fn note(line: &str) {
    if !voice().quiet {
        stderr(line);
    }
}

/// Findings on stderr (with `-q`, only a report holding errors).
pub fn findings(report: &Report) {
    if voice().quiet && report.errors() == 0 {
        return;
    }
    let _ = std::io::stderr()
        .lock()
        .write_all(shown(&report.render_text()).as_bytes());
}

/// An error on stderr, always; and what to do about it.
pub fn error(text: &str, help: Option<&str>) {
    let label = paint(stderr_styled(), "1;31", "error");
    let _ = writeln!(std::io::stderr().lock(), "{label}: {}", shown(text));
    if let Some(help) = help {
        note(help);
    }
}

/// Text on stdout, as it may be shown.
pub fn text(text: &str) -> std::io::Result<()> {
    stdout(&shown(text))
}

/// Text on stdout as it is: the caller masked and escaped what came from outside (styled
/// text keeps its colour codes). A reader that went away (`| head`) ends the output quietly.
pub fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `body` as one `shape` document on stdout, its strings masked before it is serialized.
pub fn json(shape: Shape, body: impl Serialize) -> std::io::Result<()> {
    let mut doc = shape.document(body)?;
    shown_json(&mut doc);
    stdout(&(serde_json::to_string_pretty(&doc)? + "\n"))
}

/// The outcome as `format` asks: its document (`shape`), or `render`'s text.
pub fn outcome<T: Serialize>(
    format: Format,
    shape: Shape,
    outcome: &T,
    render: impl FnOnce(&T) -> String,
) -> std::io::Result<()> {
    match format {
        Format::Json => json(shape, outcome),
        Format::Text => text(&render(outcome)),
    }
}
