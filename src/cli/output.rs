//! The one door out of forge: what a command prints on stdout (text, or one JSON document that
//! names its published shape), the notes and errors on stderr (`-q` quiets notes, colour only
//! on a terminal without `NO_COLOR`), and the exit status every command shares.

use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;

use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::diagnostic::escape_control;
use crate::secret::Redactor;

/// What a command prints on stdout.
#[derive(Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(super) enum Format {
    /// For people; may change between releases.
    #[default]
    Text,
    /// One JSON document with a `schema` field naming its published shape (`forge schema
    /// output NAME`).
    Json,
}

/// The exit status of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExitStatus {
    /// 0: done, nothing wrong (warnings may have been printed).
    Success,
    /// 1: findings or failures: invalid inputs, a failed build, boot or check.
    Failure,
    /// 2: the command could not run: bad usage, unreadable files, an unreachable service.
    Error,
    /// 128 + the signal: stopped by SIGINT (130), SIGTERM (143) or SIGHUP (129), cleaned up.
    Stopped(u8),
}

impl ExitStatus {
    /// 0 when `ok`, else 1.
    pub(super) fn from_ok(ok: bool) -> ExitStatus {
        if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }

    pub(super) fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::Stopped(signal) => 128 + signal,
        }
    }
}

/// Stop with this status: what needed saying has been printed.
#[derive(Debug, thiserror::Error)]
#[error("exit status {}", .0.code())]
pub(super) struct Exit(pub ExitStatus);

impl Exit {
    /// Findings were printed: exit 1.
    pub(super) fn failure() -> anyhow::Error {
        Exit(ExitStatus::Failure).into()
    }
}

/// How much a command says on stderr, and how.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Voice {
    /// `-q`: errors only.
    pub quiet: bool,
    /// `-v`: every line of build output, beside the spinners too.
    pub verbose: bool,
}

static VOICE: OnceLock<Voice> = OnceLock::new();

/// Set once, from the command line.
pub(super) fn set_voice(voice: Voice) {
    let _ = VOICE.set(voice);
}

pub(super) fn voice() -> Voice {
    VOICE.get().copied().unwrap_or_default()
}

/// Colour and spinners on stderr: a terminal, and `NO_COLOR` unset or empty.
pub(super) fn stderr_styled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Colour on stdout: a terminal, and `NO_COLOR` unset or empty.
pub(super) fn stdout_styled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in an ANSI style (`1;31` bold red, `32` green, `33` yellow) when `styled`.
pub(super) fn paint(styled: bool, style: &str, text: &str) -> String {
    if styled {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A note on stderr (what a command is doing), unless `-q`. Redacted.
pub(super) fn note(redactor: &Redactor, line: &str) {
    if voice().quiet {
        return;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "{}",
        escape_control(&redactor.redact(line))
    );
}

/// A validation report on stderr (with `-q`, only one holding errors). Redacted.
pub(super) fn report(redactor: &Redactor, report: &crate::diagnostic::Report) {
    if voice().quiet && report.errors() == 0 {
        return;
    }
    let text = escape_control(&redactor.redact(&report.render_text()));
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// An error on stderr, always. Redacted.
pub(super) fn error(redactor: &Redactor, text: &str) {
    let label = paint(stderr_styled(), "1;31", "error");
    let _ = writeln!(
        std::io::stderr().lock(),
        "{label}: {}",
        escape_control(&redactor.redact(text))
    );
}

/// Text on stdout, redacted, control characters escaped.
pub(super) fn text(redactor: &Redactor, text: &str) -> std::io::Result<()> {
    stdout(&escape_control(&redactor.redact(text)))
}

/// Text on stdout as it is: the caller redacted and escaped what came from outside (styled
/// text keeps its colour codes). A reader that went away (`| head`) ends the output quietly.
pub(super) fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The shape of a JSON document forge prints; each is published as a JSON Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Shape {
    /// `forge --version --format json`.
    Version,
    /// `forge doctor`.
    Doctor,
    /// `forge validate`.
    Validate,
    /// `forge config show`.
    Config,
    /// `forge rules`.
    Rules,
    /// `forge build`: the images, the ISOs, the outputs written (and the boots of `--verify`).
    Build,
    /// `forge build --dry-run`: the steps.
    BuildPlan,
    /// One line of `--progress json` on stderr.
    Event,
    /// `forge plan`: the CI jobs.
    Plan,
    /// `forge inspect`.
    Inspect,
    /// `forge verify`.
    Verify,
    /// `forge iso`: the ISOs mastered.
    Iso,
    /// `forge iso push`.
    IsoPush,
    /// `manifest.json`, written by `forge build` and `forge iso` into their output directory.
    Manifest,
    /// `forge cache ls`.
    CacheList,
    /// `forge cache prune`.
    CachePrune,
    /// `forge images rewrite`.
    ImagesRewrite,
    /// `forge registry check`.
    RegistryCheck,
    /// `forge registry sync`.
    RegistrySync,
    /// `forge schema`: a JSON Schema, wrapped.
    Schema,
    /// `forge completions`.
    Completions,
    /// `forge man`.
    Man,
}

impl Shape {
    pub(super) fn name(self) -> &'static str {
        match self {
            Shape::Version => "version",
            Shape::Doctor => "doctor",
            Shape::Validate => "validate",
            Shape::Config => "config",
            Shape::Rules => "rules",
            Shape::Build => "build",
            Shape::BuildPlan => "build-plan",
            Shape::Event => "event",
            Shape::Plan => "plan",
            Shape::Inspect => "inspect",
            Shape::Verify => "verify",
            Shape::Iso => "iso",
            Shape::IsoPush => "iso-push",
            Shape::Manifest => "manifest",
            Shape::CacheList => "cache-list",
            Shape::CachePrune => "cache-prune",
            Shape::ImagesRewrite => "images-rewrite",
            Shape::RegistryCheck => "registry-check",
            Shape::RegistrySync => "registry-sync",
            Shape::Schema => "schema",
            Shape::Completions => "completions",
            Shape::Man => "man",
        }
    }

    /// The value of the document's `schema` field: `forge.<name>/v<version>`.
    pub(super) fn id(self) -> String {
        format!("forge.{}/v1", self.name())
    }

    /// The shape's JSON Schema (2020-12).
    pub(super) fn schema(self) -> Value {
        let text = match self {
            Shape::Version => include_str!("schemas/version.json"),
            Shape::Doctor => include_str!("schemas/doctor.json"),
            Shape::Validate => include_str!("schemas/validate.json"),
            Shape::Config => include_str!("schemas/config.json"),
            Shape::Rules => include_str!("schemas/rules.json"),
            Shape::Build => include_str!("schemas/build.json"),
            Shape::BuildPlan => include_str!("schemas/build-plan.json"),
            Shape::Event => include_str!("schemas/event.json"),
            Shape::Plan => include_str!("schemas/plan.json"),
            Shape::Inspect => include_str!("schemas/inspect.json"),
            Shape::Verify => include_str!("schemas/verify.json"),
            Shape::Iso => include_str!("schemas/iso.json"),
            Shape::IsoPush => include_str!("schemas/iso-push.json"),
            Shape::Manifest => include_str!("schemas/manifest.json"),
            Shape::CacheList => include_str!("schemas/cache-list.json"),
            Shape::CachePrune => include_str!("schemas/cache-prune.json"),
            Shape::ImagesRewrite => include_str!("schemas/images-rewrite.json"),
            Shape::RegistryCheck => include_str!("schemas/registry-check.json"),
            Shape::RegistrySync => include_str!("schemas/registry-sync.json"),
            Shape::Schema => include_str!("schemas/schema.json"),
            Shape::Completions => include_str!("schemas/completions.json"),
            Shape::Man => include_str!("schemas/man.json"),
        };
        serde_json::from_str(text).expect("the published schemas are JSON")
    }

    /// `body` (an object; anything else is kept under `value`) as this shape's document:
    /// `schema` first.
    pub(super) fn document(self, body: impl Serialize) -> serde_json::Result<Value> {
        let mut doc = Map::new();
        doc.insert("schema".into(), Value::String(self.id()));
        match serde_json::to_value(body)? {
            Value::Object(fields) => doc.extend(fields),
            other => {
                doc.insert("value".into(), other);
            }
        }
        Ok(Value::Object(doc))
    }
}

/// `body` as one `shape` document on stdout, its strings redacted before it is serialized.
pub(super) fn json(redactor: &Redactor, shape: Shape, body: impl Serialize) -> anyhow::Result<()> {
    let mut doc = shape.document(body)?;
    redactor.redact_json(&mut doc);
    stdout(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_publishes_a_schema_that_requires_its_own_id() {
        for shape in Shape::value_variants() {
            let schema = shape.schema();
            assert_eq!(
                schema["properties"]["schema"]["const"],
                shape.id(),
                "{}",
                shape.name()
            );
            assert!(
                schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&"schema".into())),
                "{}",
                shape.name()
            );
            let name = shape.to_possible_value().unwrap();
            assert_eq!(name.get_name(), shape.name());
        }
    }

    #[test]
    fn the_library_names_the_event_and_manifest_shapes() {
        assert_eq!(Shape::Event.id(), crate::report::EVENT_SCHEMA);
        assert_eq!(Shape::Manifest.id(), crate::build::MANIFEST_SCHEMA);
    }

    #[test]
    fn a_document_starts_with_its_schema() {
        let doc = Shape::Rules
            .document(serde_json::json!({"rules": []}))
            .unwrap();
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(text, r#"{"schema":"forge.rules/v1","rules":[]}"#);
    }
}
