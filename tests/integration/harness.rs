//! The integration tests' harness, on libtest-mimic (libtest's command line: name filters,
//! `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored`, `--test-threads`): each
//! module lists its tests with what they need from the machine ([`tests!`]). A test whose
//! needs are missing here is reported as ignored; under `CI=true`, or when asked for with
//! `--ignored` or `--include-ignored`, it runs and fails naming them. Modules run one after
//! another, the tests of one in parallel, as when each module was its own test binary ([`Gate`]).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Condvar, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};

use crate::support::{self, Need};

/// A test: its function and what it needs from the machine.
pub struct Test {
    pub name: &'static str,
    pub needs: &'static [Need],
    pub run: fn(),
}

/// `pub const TESTS`, the calling module's tests: each test function, with what it needs
/// after `=>` ([`Need`]'s variants are in scope; none: nothing but forge).
///
/// ```ignore
/// tests! {
///     a_clean_user_data_exits_0,
///     the_example_builds_the_images_canvos_builds => [Fixtures, Commands(&["skopeo"])],
/// }
/// ```
macro_rules! tests {
    ($($name:ident $(=> [$($need:expr),* $(,)?])?),* $(,)?) => {
        /// This module's tests and what each needs from the machine.
        pub const TESTS: &[$crate::harness::Test] = {
            #[allow(unused_imports)]
            use $crate::support::Need::{Commands, Engine, Fixtures};
            &[$($crate::harness::Test {
                name: stringify!($name),
                needs: &[$($($need),*)?],
                run: $name,
            }),*]
        };
    };
}

/// Run the tests of `modules` (name, tests) as the command line asks; or, started by
/// [`support::measured`], be its launcher.
pub fn run(modules: &[(&'static str, &'static [Test])]) -> ExitCode {
    if let Some(report) = std::env::var_os(support::MEASURE) {
        support::launch(report.as_ref());
        return ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    // Which tests the name filters keep; `--ignored` is applied once the flags are set.
    let filter = Arguments {
        ignored: false,
        ..args.clone()
    };
    // A plain `--list` prints names only: nothing to probe.
    let probe = !args.list || args.ignored;
    let ci = support::ci();
    let mut ignored: BTreeMap<String, usize> = BTreeMap::new();
    let mut trials = Vec::new();
    for &(module, tests) in modules {
        for test in tests {
            let trial = Trial::test(format!("{module}::{}", test.name), move || {
                let _turn = GATE.enter(module);
                let missing = support::missing(test.needs);
                if !missing.is_empty() {
                    return Err(Failed::from(format!(
                        "{}missing here: {}",
                        if ci { "CI=true and " } else { "" },
                        missing.join("; ")
                    )));
                }
                (test.run)();
                Ok(())
            });
            let lacking = if probe && !filter.is_filtered_out(&trial) && !ci {
                support::missing(test.needs)
            } else {
                Vec::new()
            };
            for what in &lacking {
                *ignored.entry(what.clone()).or_default() += 1;
            }
            trials.push(trial.with_ignored_flag(!lacking.is_empty()));
        }
    }
    if !args.list && !ignored.is_empty() {
        for (what, count) in &ignored {
            let tests = if *count == 1 { "test" } else { "tests" };
            eprintln!("ignored for lack of {what}: {count} {tests}");
        }
        eprintln!("(install what lacks, or run .ci/run; with CI=true these tests fail)");
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// Lets the tests of one module run at a time (in parallel among themselves), so that tests
/// of different modules never overlap, as when each module was a test binary of its own:
/// they share the Docker Engine (its containers, counted before and after; its tags and
/// images), the temporary directory whose `.forge-run-*` entries are counted, and the CPU
/// their time bounds assume, and none was written to run beside another module's. Tests are
/// handed out in order, so a module's tests have all started before the next module's wait.
struct Gate {
    /// The module whose tests run, and how many do.
    running: Mutex<(&'static str, usize)>,
    changed: Condvar,
}

static GATE: Gate = Gate {
    running: Mutex::new(("", 0)),
    changed: Condvar::new(),
};

/// A running test's turn at the [`Gate`], given back when dropped (its test passed, failed
/// or panicked).
struct Turn(&'static Gate);

impl Gate {
    /// Wait until no test of another module runs; then run one of `module`.
    fn enter(&'static self, module: &'static str) -> Turn {
        let running = self.running.lock().unwrap();
        let mut running = self
            .changed
            .wait_while(running, |(current, count)| *count > 0 && *current != module)
            .unwrap();
        *running = (module, running.1 + 1);
        Turn(self)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap();
        running.1 -= 1;
        if running.1 == 0 {
            self.0.changed.notify_all();
        }
    }
}
