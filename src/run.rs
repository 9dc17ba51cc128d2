//! One run of forge: its identity (a label on every container and image it creates), the lock
//! that keeps two builds out of one output directory, the private work directory beside the
//! outputs, its temporary files, and the removal of the files earlier runs left when they were
//! killed (their containers are the engine's business: `engine::leftovers`). A leaf module.
//!
//! A run's id is its process ID and the process's start time, so whether a run is still alive
//! is a question this host can answer from `/proc`, even after a SIGKILL.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The label naming the run that created a container or an image.
pub const RUN_LABEL: &str = "dev.forge.run";
/// The host and the user of that run: only they can tell whether it is alive.
pub const HOST_LABEL: &str = "dev.forge.host";
pub const UID_LABEL: &str = "dev.forge.uid";
/// Work directories of runs, in the output directory: `.forge-run-<id>`.
const WORK_PREFIX: &str = ".forge-run-";
/// Partial outputs end in `.<id>.partial`.
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another forge run (process {pid}) is building into {}; wait for it to finish, or give this build another --output", dir.display())]
    Busy { dir: PathBuf, pid: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Who this run is.
#[derive(Debug)]
pub struct Identity {
    pub id: String,
    pub host: String,
    pub uid: u32,
}

/// This process's identity.
pub fn current() -> &'static Identity {
    static CURRENT: OnceLock<Identity> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let pid = std::process::id();
        Identity {
            id: format!("{pid}-{}", start_time(pid).unwrap_or_default()),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            uid: rustix::process::getuid().as_raw(),
        }
    })
}

impl Identity {
    /// The labels forge puts on the containers it creates.
    pub fn labels(&self) -> HashMap<String, String> {
        [
            (RUN_LABEL, self.id.clone()),
            (HOST_LABEL, self.host.clone()),
            (UID_LABEL, self.uid.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A temporary directory of this run (mode 0700) in `$TMPDIR`, named so that the next build
/// removes it if this run is killed.
pub fn temp_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{WORK_PREFIX}{}.", current().id))
        .tempdir()
}

/// A partial output of this run in `dir`, hidden beside its final `name`
/// (`.NAME.<run id>.partial`, mode 0600): removed when dropped, by the next run when this one is
/// killed, or renamed to `name` by `persist` when complete.
pub fn partial_file(dir: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}"))
        .suffix(&format!(".{}{PARTIAL_SUFFIX}", current().id))
        .rand_bytes(0)
        .tempfile_in(dir)
}

/// The start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the run `id` is still running on this host.
pub fn alive(id: &str) -> bool {
    let Some((pid, start)) = id.split_once('-') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => start_time(pid) == Some(start),
        _ => false,
    }
}

/// A build's hold on its output directory: the directory locked for this run, and the run's
/// private work directory inside it, removed when dropped.
pub struct Workspace {
    dir: PathBuf,
    /// The output directory, open and locked (`flock`) while the run lasts.
    _lock: File,
}

impl Workspace {
    /// Create (mode 0700) and lock `output`, then make this run's work directory in it.
    pub fn open(output: &Path) -> Result<Workspace, RunError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(output)
            .map_err(io_error(output))?;
        let lock = File::open(output).map_err(io_error(output))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(RunError::Busy {
                    dir: output.to_path_buf(),
                    pid: holder(output).unwrap_or_else(|| "unknown".into()),
                })
            }
            Err(e) => return Err(io_error(output)(e.into())),
        }
        let dir = output.join(format!("{WORK_PREFIX}{}", current().id));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        Ok(Workspace { dir, _lock: lock })
    }

    /// This run's private directory (0700): build contexts and ISO staging.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process of a live run working in `output`, from its work directory's name.
fn holder(output: &Path) -> Option<String> {
    runs_in(output)
        .into_iter()
        .find(|(_, id)| alive(id))
        .and_then(|(_, id)| id.split('-').next().map(str::to_string))
}

/// Entries of `output` that belong to a run: work directories and partial outputs, with the
/// run's id.
fn runs_in(output: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = match name.strip_prefix(WORK_PREFIX) {
                Some(rest) => rest.split('.').next().unwrap_or_default().to_string(),
                None => {
                    let stem = name.strip_suffix(PARTIAL_SUFFIX)?;
                    stem.rsplit_once('.')?.1.to_string()
                }
            };
            Some((entry.path(), id))
        })
        .collect()
}

/// What the earlier runs had left and this run removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    pub work_dirs: usize,
    pub partial_files: usize,
}

impl Removed {
    /// `2 containers, 1 work directory` — `None` when nothing was left.
    pub fn summary(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.containers, "container", "containers"),
            (self.work_dirs, "work directory", "work directories"),
            (self.partial_files, "partial file", "partial files"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Remove the files that runs of this user left and that are no longer alive: their work
/// directories and partial files in `output`, and their temporary directories in `$TMPDIR`.
/// (Their containers: `engine::leftovers::remove_dead`.)
pub fn remove_dead_files(output: &Path) -> Result<Removed, RunError> {
    let me = current();
    let mut removed = Removed::default();
    let mut found = runs_in(output);
    found.extend(runs_in(&std::env::temp_dir()));
    for (path, id) in found {
        if id == me.id || alive(&id) {
            continue;
        }
        let metadata = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if metadata.uid() != me.uid {
            continue;
        }
        if metadata.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
            removed.work_dirs += 1;
        } else {
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            removed.partial_files += 1;
        }
    }
    Ok(removed)
}

/// Write `text` to `dir/name` whole: a partial file of this run in `dir` (removed by the next
/// run if this one is killed), then a rename.
pub fn write_output(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut staged = partial_file(dir, name)?;
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

    #[test]
    fn this_run_is_alive_and_a_made_up_one_is_not() {
        let me = current();
        assert!(alive(&me.id), "{}", me.id);
        let (pid, start) = me.id.split_once('-').unwrap();
        assert!(!alive(&format!(
            "{pid}-{}",
            start.parse::<u64>().unwrap() + 1
        )));
        assert!(!alive("4194305-1"));
        assert!(!alive("garbage"));
    }

    #[test]
    fn a_second_workspace_on_one_output_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("build");
        let first = Workspace::open(&output).unwrap();
        assert_eq!(
            std::fs::metadata(first.dir()).unwrap().mode() & 0o777,
            0o700
        );
        let err = Workspace::open(&output)
            .err()
            .expect("the output is locked");
        assert!(
            err.to_string().contains(&format!(
                "another forge run (process {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        assert_eq!(std::fs::read_dir(&output).unwrap().count(), 0);
        Workspace::open(&output).unwrap();
    }

    #[test]
    fn leftovers_of_dead_runs_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".forge-run-4194305-1")).unwrap();
        std::fs::write(dir.path().join(".installer.iso.4194305-1.partial"), "").unwrap();
        std::fs::write(dir.path().join("installer.iso"), "").unwrap();
        std::fs::create_dir(dir.path().join(".forge-run-4194305-1.Ab3dE9")).unwrap();
        let mine = partial_file(dir.path(), "manifest.json").unwrap();
        assert_eq!(
            mine.path().file_name().unwrap().to_str().unwrap(),
            format!(".manifest.json.{}.partial", current().id)
        );
        let mut found: Vec<String> = runs_in(dir.path()).into_iter().map(|(_, id)| id).collect();
        found.sort();
        let mut expected = vec![
            "4194305-1".to_string(),
            "4194305-1".into(),
            "4194305-1".into(),
            current().id.clone(),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }
}
