//! What a build tells: progress on stderr (spinners on a terminal, timestamped lines otherwise,
//! one JSON event per line with `--progress json`, nothing with `-q`), and the outputs it leaves — `manifest.json` and
//! `profile-snippet.yaml` — each written whole under a temporary name, then renamed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::secret::Redactor;

/// The `schema` of each `--progress json` event.
pub const EVENT_SCHEMA: &str = "forge.event/v1";

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinners, one per step; `verbose` prints every line of build output above them.
    Tty {
        verbose: bool,
    },
    Plain,
    Json,
    /// Nothing.
    Quiet,
}

/// Progress of a build, safe to share between concurrent steps. Everything shown is redacted.
pub struct Progress {
    mode: Mode,
    started: Instant,
    redactor: Redactor,
    bars: MultiProgress,
    active: Mutex<Vec<(String, ProgressBar)>>,
}

impl Progress {
    pub fn new(mode: Mode, redactor: Redactor) -> Progress {
        Progress {
            mode,
            started: Instant::now(),
            redactor,
            bars: MultiProgress::new(),
            active: Mutex::new(Vec::new()),
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// `text` as shown on a terminal: redacted, control characters escaped.
    fn shown(&self, text: &str) -> String {
        crate::diagnostic::escape_control(&self.redactor.redact(text))
    }

    /// A timestamped line on stderr; a closed stderr loses the line rather than the build.
    fn plain(&self, step: &str, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "[{:7.1}s] {step}: {}",
            self.elapsed(),
            self.shown(text)
        );
    }

    /// One JSON event on stderr.
    fn event(&self, event: &str, fields: Value) {
        let mut object = json!({"schema": EVENT_SCHEMA, "event": event, "elapsed": (self.elapsed() * 10.0).round() / 10.0});
        if let (Some(target), Some(extra)) = (object.as_object_mut(), fields.as_object()) {
            target.extend(extra.clone());
        }
        self.redactor.redact_json(&mut object);
        let _ = writeln!(std::io::stderr().lock(), "{object}");
    }

    /// A step began: `action` is what it does (`building`, `pushing`, `mastering`) to `image`.
    pub fn start(&self, step: &str, action: &str, image: &str) {
        match self.mode {
            Mode::Json => self.event(
                "step-started",
                json!({"step": step, "action": action, "image": image}),
            ),
            Mode::Plain => self.plain(step, &format!("{action} {image}")),
            Mode::Quiet => {}
            Mode::Tty { .. } => {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                        .expect("valid template"),
                );
                bar.set_prefix(step.to_string());
                bar.set_message(self.shown(&format!("{action} {image}")));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.active
                    .lock()
                    .expect("progress lock")
                    .push((step.to_string(), bar));
            }
        }
    }

    /// A line of build output.
    pub fn line(&self, step: &str, line: &str) {
        match self.mode {
            Mode::Json => self.event("log", json!({"step": step, "line": line})),
            Mode::Plain => self.plain(step, line),
            Mode::Quiet => {}
            Mode::Tty { verbose } => {
                if verbose {
                    let _ = self.bars.println(format!("  {step}: {}", self.shown(line)));
                }
                if let Some((_, bar)) = self
                    .active
                    .lock()
                    .expect("progress lock")
                    .iter()
                    .find(|(s, _)| s == step)
                {
                    bar.set_message(self.shown(line));
                }
            }
        }
    }

    /// A step ended: `outcome` is `built`, `cached`, `pushed` or `failed`.
    pub fn finish(&self, step: &str, outcome: &str, detail: &str) {
        match self.mode {
            Mode::Json => self.event(
                "step-finished",
                json!({"step": step, "outcome": outcome, "detail": detail}),
            ),
            Mode::Plain => self.plain(step, &format!("{outcome} {detail}")),
            Mode::Quiet => {}
            Mode::Tty { .. } => {
                let mut active = self.active.lock().expect("progress lock");
                let mark = if outcome == "failed" { "✗" } else { "✓" };
                let message = format!("{mark} {outcome} {}", self.shown(detail));
                match active.iter().position(|(s, _)| s == step) {
                    Some(i) => active.remove(i).1.finish_with_message(message),
                    None => {
                        let _ = self.bars.println(format!("  {step} {message}"));
                    }
                }
            }
        }
    }
}

/// Write `text` to `dir/name` whole: a partial file of this run in `dir` (removed by the next
/// run if this one is killed), then a rename.
pub fn write_output(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut staged = crate::run::partial_file(dir, name)?;
    staged.write_all(text.as_bytes())?;
    staged.as_file().sync_all()?;
    let path = dir.join(name);
    staged.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_appear_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_output(&dir.path().join("build"), "manifest.json", "{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("build"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.json"]);
    }
}
