//! How a command's progress shows on stderr: spinners on a terminal, timestamped lines
//! otherwise, one JSON event per line with `--progress json` (`forge schema output event`),
//! nothing with `-q`. Notes, findings and secrets go to the door whatever the mode.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{self as output, shown};
use crate::documents::Shape;
use crate::progress::{Event, Progress};

/// How progress is shown on stderr (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Style {
    /// Spinners on a terminal without NO_COLOR, lines otherwise.
    Auto,
    /// Spinners, one per step.
    Tty,
    /// Timestamped lines.
    Plain,
    /// One JSON event per line (`forge schema output event`).
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `verbose`: every line of build output above the spinners too.
    Tty {
        verbose: bool,
    },
    Plain,
    Json,
    Quiet,
}

/// One `--progress json` event.
#[derive(Serialize)]
struct JsonEvent<'a> {
    event: &'static str,
    elapsed: f64,
    #[serde(flatten)]
    fields: Fields<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Fields<'a> {
    Started {
        step: &'a str,
        action: &'a str,
        image: &'a str,
    },
    Log {
        step: &'a str,
        line: &'a str,
    },
    Finished {
        step: &'a str,
        outcome: &'a str,
        detail: &'a str,
    },
}

/// The spinners and the clock of one command.
struct Screen {
    mode: Mode,
    started: Instant,
    bars: MultiProgress,
    active: Mutex<Vec<(String, ProgressBar)>>,
}

/// Where the events of a command go, shown as `arg` asks.
pub fn progress(arg: Style) -> Arc<Progress> {
    let verbose = output::voice().verbose;
    let mode = match arg {
        _ if output::voice().quiet => Mode::Quiet,
        Style::Json => Mode::Json,
        Style::Tty => Mode::Tty { verbose },
        Style::Plain => Mode::Plain,
        Style::Auto if output::stderr_styled() => Mode::Tty { verbose },
        Style::Auto => Mode::Plain,
    };
    let screen = Screen {
        mode,
        started: Instant::now(),
        bars: MultiProgress::new(),
        active: Mutex::new(Vec::new()),
    };
    Arc::new(Progress::new(move |event| screen.show(event)))
}

impl Screen {
    fn show(&self, event: Event<'_>) {
        match event {
            Event::Note(text) => output::note(text),
            Event::Findings(report) => output::findings(report),
            Event::Secrets(redactor) => output::learn(redactor),
            Event::Start {
                step,
                action,
                image,
            } => match self.mode {
                Mode::Tty { .. } => self.spin(step, &format!("{action} {image}")),
                _ => self.step(
                    step,
                    &format!("{action} {image}"),
                    Fields::Started {
                        step,
                        action,
                        image,
                    },
                ),
            },
            Event::Line { step, line } => match self.mode {
                Mode::Tty { verbose } => self.tty_line(step, line, verbose),
                _ => self.step(step, line, Fields::Log { step, line }),
            },
            Event::Finish {
                step,
                outcome,
                detail,
            } => match self.mode {
                Mode::Tty { .. } => self.stop(step, outcome, detail),
                _ => self.step(
                    step,
                    &format!("{outcome} {detail}"),
                    Fields::Finished {
                        step,
                        outcome,
                        detail,
                    },
                ),
            },
        }
    }

    /// A step's event as a timestamped line, or as a JSON event.
    fn step(&self, step: &str, text: &str, fields: Fields<'_>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Plain => output::stderr(&format!("[{elapsed:7.1}s] {step}: {text}")),
            Mode::Json => {
                let event = match fields {
                    Fields::Started { .. } => "step-started",
                    Fields::Log { .. } => "log",
                    Fields::Finished { .. } => "step-finished",
                };
                let elapsed = (elapsed * 10.0).round() / 10.0;
                let Ok(mut doc) = Shape::Event.document(JsonEvent {
                    event,
                    elapsed,
                    fields,
                }) else {
                    return;
                };
                output::shown_json(&mut doc);
                eprintln_raw(&doc.to_string());
            }
            Mode::Tty { .. } | Mode::Quiet => {}
        }
    }

    fn spin(&self, step: &str, message: &str) {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                .expect("valid template"),
        );
        bar.set_prefix(step.to_string());
        bar.set_message(shown(message));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.active
            .lock()
            .expect("progress lock")
            .push((step.to_string(), bar));
    }

    fn tty_line(&self, step: &str, line: &str, verbose: bool) {
        if verbose {
            let _ = self.bars.println(format!("  {step}: {}", shown(line)));
        }
        let active = self.active.lock().expect("progress lock");
        if let Some((_, bar)) = active.iter().find(|(s, _)| s == step) {
            bar.set_message(shown(line));
        }
    }

    fn stop(&self, step: &str, outcome: &str, detail: &str) {
        let mut active = self.active.lock().expect("progress lock");
        let mark = if outcome == "failed" { "✗" } else { "✓" };
        let message = format!("{mark} {outcome} {}", shown(detail));
        match active.iter().position(|(s, _)| s == step) {
            Some(i) => active.remove(i).1.finish_with_message(message),
            None => {
                let _ = self.bars.println(format!("  {step} {message}"));
            }
        }
    }
}

/// A line on stderr as it is (JSON, already masked).
fn eprintln_raw(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
