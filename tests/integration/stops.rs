//! Credentials stay private and nothing outlives a stop. While the ISO is mastered, every
//! directory forge made is 0700 and every file in them (the staged user-data among them) is
//! readable by its user only. SIGTERM and SIGHUP stop a build like Ctrl-C (exit 143 and 129)
//! with its containers, work directory and partial files removed. After a SIGKILL, the next run
//! removes what the killed one left (its containers, found by label, its work directory, its
//! partial ISO) and says so. Two builds into one output directory: the second is refused.

use crate::support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::{docker, forge_build, text};

tests! {
    while_mastering_everything_forge_made_is_its_users_alone_and_sigterm_removes_it => [
        Fixtures,
        Commands(TOOLS),
    ],
    sighup_stops_a_build_like_ctrl_c => [Fixtures, Commands(TOOLS)],
    after_sigkill_the_next_run_removes_the_containers_work_directory_and_partial_iso => [
        Fixtures,
        Commands(TOOLS),
    ],
    a_second_build_into_the_same_output_directory_is_refused => [Fixtures, Commands(TOOLS)],
}

/// Builds share the engine and the tags they make: one at a time.
static ENGINE: Mutex<()> = Mutex::new(());
const TOOLS: &[&str] = &["xorriso"];

/// Wait for `found` to give something: up to five minutes, as a build may squash a 500 MiB
/// root filesystem first (about a minute on 2 busy cores) before the partial ISO appears.
fn wait_for<T>(what: &str, found: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything below `dir`, depth first, links not followed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

/// The id of the run working in `out`, from its work directory `.forge-run-<id>`.
fn run_in(out: &Path) -> Option<String> {
    std::fs::read_dir(out)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(".forge-run-")
                .map(str::to_string)
        })
}

/// What run `id` left: its containers (by label) and its files in `out`.
fn leftovers(out: &Path, id: &str) -> Vec<String> {
    let ps = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dev.forge.run={id}"),
    ]);
    let containers = String::from_utf8(ps.stdout).unwrap();
    containers
        .lines()
        .map(|c| format!("container {c}"))
        .chain(
            walk(out)
                .into_iter()
                .filter(|p| p.to_string_lossy().contains(id))
                .map(|p| p.display().to_string()),
        )
        .collect()
}

/// A build of the example into `out`, stopped once `reached` holds.
fn build_until(
    out: &Path,
    reached: impl Fn() -> bool,
) -> (
    Child,
    impl Iterator<Item = std::io::Result<String>> + Send + 'static,
) {
    let (child, stderr) = support::spawn_until(
        &mut forge_build(&["--output", out.to_str().unwrap()]),
        |line| line.contains("iso: mastering"),
    );
    wait_for("the build to reach the step", || reached().then_some(()));
    (child, stderr)
}

/// What each test holds: the engine to itself, and a directory for its outputs.
struct Bench {
    _engine: MutexGuard<'static, ()>,
    work: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            _engine: ENGINE.lock().unwrap_or_else(|e| e.into_inner()),
            work: tempfile::tempdir().unwrap(),
        }
    }
}

fn partial_iso(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".partial"))
}

fn staged_user_data(out: &Path) -> Option<PathBuf> {
    walk(out).into_iter().find(|p| {
        p.ends_with("config.yaml")
            && p.parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy().starts_with("site-"))
    })
}

fn while_mastering_everything_forge_made_is_its_users_alone_and_sigterm_removes_it() {
    let Bench { _engine, work } = Bench::new();
    let out = work.path().join("out");
    let (mut child, stderr) = build_until(&out, || staged_user_data(&out).is_some());
    support::send(&child, "STOP");
    let id = run_in(&out).expect("a work directory in the output directory");
    let mut checked = 0;
    for path in walk(&out).into_iter().chain([out.clone()]) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
        checked += 1;
    }
    let user_data = staged_user_data(&out).unwrap();
    let mode = std::fs::metadata(&user_data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the staged user-data is {mode:o}");
    assert!(checked > 5, "only {checked} paths checked");
    support::send(&child, "CONT");
    let (status, rest) = support::stop(&mut child, "TERM", stderr);
    assert_eq!(status.code(), Some(143), "{rest}");
    assert!(rest.contains("terminated"), "{rest}");
    assert_eq!(
        leftovers(&out, &id),
        Vec::<String>::new(),
        "left after SIGTERM"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "outputs left behind"
    );
}

fn sighup_stops_a_build_like_ctrl_c() {
    let Bench { _engine, work } = Bench::new();
    let out = work.path().join("out");
    let (mut child, stderr) = build_until(&out, || {
        run_in(&out).is_some_and(|id| {
            leftovers(&out, &id)
                .iter()
                .any(|l| l.starts_with("container"))
        })
    });
    let id = run_in(&out).unwrap();
    let (status, rest) = support::stop(&mut child, "HUP", stderr);
    assert_eq!(status.code(), Some(129), "{rest}");
    assert_eq!(
        leftovers(&out, &id),
        Vec::<String>::new(),
        "left after SIGHUP"
    );
}

fn after_sigkill_the_next_run_removes_the_containers_work_directory_and_partial_iso() {
    let Bench { _engine, work } = Bench::new();
    let out = work.path().join("out");
    let (mut child, stderr) = build_until(&out, || partial_iso(&out).is_some());
    let id = run_in(&out).unwrap();
    let (status, _) = support::stop(&mut child, "KILL", stderr);
    assert_eq!(status.code(), None, "killed by a signal");
    let left = leftovers(&out, &id);
    assert!(
        left.iter().any(|l| l.starts_with("container"))
            && left.iter().any(|l| l.ends_with(".partial")),
        "the kill should have left a container and a partial ISO: {left:?}"
    );

    let rerun = forge_build(&["--output", out.to_str().unwrap(), "--no-iso"])
        .output()
        .unwrap();
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let said = text(&rerun);
    // Its work directories: one in the output directory, one in $TMPDIR (with any other killed
    // run's there).
    assert!(
        said.contains("cleanup: removed 1 container, ")
            && said.contains(" work directories, 1 partial file left by an earlier run"),
        "{said}"
    );
    assert_eq!(
        leftovers(&out, &id),
        Vec::<String>::new(),
        "left after the rerun"
    );
}

fn a_second_build_into_the_same_output_directory_is_refused() {
    let Bench { _engine, work } = Bench::new();
    let out = work.path().join("out");
    let (mut child, stderr) = build_until(&out, || run_in(&out).is_some());
    let second = forge_build(&["--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains(&format!(
            "another forge run (process {}) is building into {}",
            child.id(),
            out.display()
        )),
        "{}",
        text(&second)
    );
    let (status, _) = support::interrupt(&mut child, stderr);
    assert_eq!(status.code(), Some(130));
}
