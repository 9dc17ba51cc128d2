//! What a command tells while it works: the events of its steps (started, a line of output,
//! finished), notes, the findings of its inputs and the secrets they hold. The library emits
//! them; whoever runs it renders them (the command line: spinners on a terminal, timestamped
//! lines, JSON events, nothing with `-q`; secrets masked from then on). A leaf module.

use crate::diagnostic::Report;
use crate::secret::Redactor;

/// One thing a command tells.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step began: `action` is what it does (`building`, `pushing`, `mastering`) to `image`.
    Start {
        step: &'a str,
        action: &'a str,
        image: &'a str,
    },
    /// A line of a step's output.
    Line { step: &'a str, line: &'a str },
    /// A step ended: `outcome` is `built`, `cached`, `pushed`, `failed`, ...
    Finish {
        step: &'a str,
        outcome: &'a str,
        detail: &'a str,
    },
    /// A note outside any step: what the command is doing or waiting for.
    Note(&'a str),
    /// The findings of the inputs, before anything is done with them.
    Findings(&'a Report),
    /// Secrets the inputs hold: nothing shown from now on may show them.
    Secrets(&'a Redactor),
}

/// Where a command's events go; shared by its concurrent steps.
pub struct Progress {
    sink: Box<dyn Fn(Event<'_>) + Send + Sync>,
}

impl Progress {
    pub fn new(sink: impl Fn(Event<'_>) + Send + Sync + 'static) -> Progress {
        Progress {
            sink: Box::new(sink),
        }
    }

    /// Events nobody hears.
    pub fn silent() -> Progress {
        Progress::new(|_| {})
    }

    pub fn tell(&self, event: Event<'_>) {
        (self.sink)(event);
    }

    /// A step began: `action` is what it does (`building`, `pushing`, `mastering`) to `image`.
    pub fn start(&self, step: &str, action: &str, image: &str) {
        self.tell(Event::Start {
            step,
            action,
            image,
        });
    }

    /// A line of a step's output.
    pub fn line(&self, step: &str, line: &str) {
        self.tell(Event::Line { step, line });
    }

    /// A step ended: `outcome` is `built`, `cached`, `pushed`, `failed`, ...
    pub fn finish(&self, step: &str, outcome: &str, detail: &str) {
        self.tell(Event::Finish {
            step,
            outcome,
            detail,
        });
    }

    /// A note outside any step.
    pub fn note(&self, text: &str) {
        self.tell(Event::Note(text));
    }
}
