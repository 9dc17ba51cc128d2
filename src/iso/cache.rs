//! The mastering cache: the parts of an installer ISO that depend on the installer image and
//! not on the site (the squashfs root filesystem, kernel, initrd, BIOS El Torito image and EFI
//! system partition), one directory per key below `<cache dir>/iso/`. An entry is staged in a
//! hidden directory of its run and renamed into place when complete, so readers only ever see
//! whole entries; a reader holds a shared `flock` on the entry while it uses it, and pruning
//! takes an exclusive one, so an entry in use is never removed. Staging directories of a run
//! that was killed are removed by the next run.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::run;

/// The file of an entry that describes it; written last, before the rename.
const META: &str = "meta.json";
/// How staging directories are named: `.staging-<run id>-<random>`.
const STAGING: &str = ".staging-";

/// The cache, in `dir` (created when missing).
pub struct Cache {
    root: PathBuf,
}

/// What an entry records besides its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// What the key was made of, for `forge cache ls`.
    pub image: String,
    pub image_id: String,
    pub rootfs_bytes: u64,
    /// `image: PATH` for each EFI binary taken from the image, or `grub-mkimage`.
    pub efi_loader: Vec<String>,
}

/// A complete entry, locked (shared) while this value lives.
pub struct Entry {
    pub dir: PathBuf,
    pub meta: Meta,
    _lock: File,
}

/// An entry as `forge cache ls` shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub key: String,
    pub image: String,
    pub bytes: u64,
    /// When a build last used it: milliseconds since 1970.
    pub used_ms: u64,
}

/// What `prune` removed and kept.
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub removed_bytes: u64,
    pub kept_bytes: u64,
    /// Entries in use by a running build, kept whatever the size.
    pub busy: Vec<String>,
}

impl Cache {
    /// The default cache directory: `$XDG_CACHE_HOME/forge`, else `~/.cache/forge`.
    pub fn default_dir() -> PathBuf {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("forge")
    }

    /// Open the cache in `dir`, removing the staging directories of runs that were killed.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        let root = dir.join("iso");
        std::fs::create_dir_all(&root)?;
        let cache = Cache { root };
        for entry in std::fs::read_dir(&cache.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(STAGING) else {
                continue;
            };
            let run_id = rest.rsplit_once('-').map_or(rest, |(id, _)| id);
            if !run::alive(run_id) {
                let _ = std::fs::remove_dir_all(cache.root.join(&name));
            }
        }
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The complete entry of `key`, locked for use; its use is recorded for pruning.
    pub fn get(&self, key: &str) -> io::Result<Option<Entry>> {
        let dir = self.root.join(key);
        let lock = match File::open(&dir) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        flock(&lock, FlockOperation::LockShared)?;
        // Pruned between the open and the lock: gone.
        let meta = match std::fs::read(dir.join(META)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        File::options()
            .append(true)
            .open(dir.join(META))?
            .set_modified(SystemTime::now())?;
        Ok(Some(Entry {
            dir,
            meta,
            _lock: lock,
        }))
    }

    /// A new staging directory for an entry (the run's own; removed when dropped).
    pub fn staging(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("{STAGING}{}-", run::current().id))
            .tempdir_in(&self.root)
    }

    /// Make `staged` the entry of `key` (its files complete; `meta` is written here). When a
    /// concurrent run stored the same key first, its entry is used and `staged` dropped.
    pub fn insert(&self, key: &str, staged: tempfile::TempDir, meta: &Meta) -> io::Result<Entry> {
        let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        std::fs::write(staged.path().join(META), text)?;
        let dir = self.root.join(key);
        match std::fs::rename(staged.path(), &dir) {
            Ok(()) => {
                // Renamed away: nothing left for the TempDir to remove.
                let _ = staged.keep();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                ) => {}
            Err(e) => return Err(e),
        }
        self.get(key)?
            .ok_or_else(|| io::Error::other(format!("{} vanished", dir.display())))
    }

    /// Every complete entry, most recently used first.
    pub fn list(&self) -> io::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let key = entry.file_name().to_string_lossy().into_owned();
            if key.starts_with('.') {
                continue;
            }
            let meta_path = entry.path().join(META);
            let Ok(bytes) = std::fs::read(&meta_path) else {
                continue;
            };
            let meta: Meta = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            let used_ms = std::fs::metadata(&meta_path)?
                .modified()?
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            listed.push(Listed {
                key,
                image: meta.image,
                bytes: dir_size(&entry.path())?,
                used_ms,
            });
        }
        listed.sort_by(|a, b| b.used_ms.cmp(&a.used_ms).then_with(|| a.key.cmp(&b.key)));
        Ok(listed)
    }

    /// Remove least recently used entries until the rest take at most `max_size` bytes (all
    /// of them without a size); entries in use are kept.
    pub fn prune(&self, max_size: Option<u64>) -> io::Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut kept = 0;
        for listed in self.list()? {
            if max_size.is_some_and(|max| kept + listed.bytes <= max) {
                kept += listed.bytes;
                continue;
            }
            let dir = self.root.join(&listed.key);
            let lock = File::open(&dir)?;
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                kept += listed.bytes;
                pruned.busy.push(listed.key);
                continue;
            }
            // Out of sight first, so that no reader takes a half-removed entry.
            let doomed = self.staging()?;
            std::fs::rename(&dir, doomed.path().join("entry"))?;
            drop(doomed);
            pruned.removed_bytes += listed.bytes;
            pruned.removed.push(listed.key);
        }
        pruned.kept_bytes = kept;
        Ok(pruned)
    }
}

/// The bytes of the files below `dir`.
fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            bytes += entry.metadata().map_err(io::Error::other)?.len();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(image: &str) -> Meta {
        Meta {
            image: image.into(),
            image_id: "sha256:1".into(),
            rootfs_bytes: 1,
            efi_loader: Vec::new(),
        }
    }

    fn store(cache: &Cache, key: &str, bytes: usize) -> Entry {
        let staged = cache.staging().unwrap();
        std::fs::write(staged.path().join("rootfs.squashfs"), vec![0u8; bytes]).unwrap();
        cache.insert(key, staged, &meta(key)).unwrap()
    }

    #[test]
    fn an_entry_is_there_only_once_complete_and_a_second_store_of_its_key_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let staged = cache.staging().unwrap();
        std::fs::write(staged.path().join("rootfs.squashfs"), b"first").unwrap();
        assert!(cache.get("k").unwrap().is_none(), "staged is not stored");
        drop(cache.insert("k", staged, &meta("a")).unwrap());
        let again = cache.staging().unwrap();
        std::fs::write(again.path().join("rootfs.squashfs"), b"second").unwrap();
        let entry = cache.insert("k", again, &meta("b")).unwrap();
        assert_eq!(
            std::fs::read(entry.dir.join("rootfs.squashfs")).unwrap(),
            b"first"
        );
        assert_eq!(entry.meta.image, "a");
        let hidden: Vec<_> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "no staging left: {hidden:?}");
    }

    #[test]
    fn concurrent_runs_storing_one_key_all_get_the_one_complete_entry() {
        let dir = tempfile::tempdir().unwrap();
        let contents: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let dir = dir.path();
                    scope.spawn(move || {
                        let cache = Cache::open(dir).unwrap();
                        let staged = cache.staging().unwrap();
                        let body = vec![i as u8; 1 << 16];
                        std::fs::write(staged.path().join("rootfs.squashfs"), &body).unwrap();
                        let entry = cache.insert("k", staged, &meta("run")).unwrap();
                        std::fs::read(entry.dir.join("rootfs.squashfs")).unwrap()
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(
            contents.windows(2).all(|w| w[0] == w[1]),
            "one entry for all"
        );
        assert_eq!(contents[0].len(), 1 << 16, "whole");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("iso"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k"], "no staging left");
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_entries_within_the_size_and_skips_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        for key in ["old", "mid", "new"] {
            drop(store(&cache, key, 1000));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(cache.get("old").unwrap().unwrap()); // used last
        let pruned = cache.prune(Some(2500)).unwrap();
        assert_eq!(pruned.removed, ["mid"]);
        let keys: Vec<_> = cache.list().unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(keys, ["old", "new"]);
        let busy = cache.get("new").unwrap().unwrap();
        let pruned = cache.prune(None).unwrap();
        assert_eq!(
            (pruned.removed, pruned.busy),
            (vec!["old".to_string()], vec!["new".to_string()])
        );
        drop(busy);
        assert_eq!(cache.prune(None).unwrap().removed, ["new"]);
        assert!(cache.list().unwrap().is_empty());
    }

    #[test]
    fn a_killed_runs_staging_directory_is_removed_when_the_cache_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("iso");
        std::fs::create_dir_all(root.join(".staging-999999999-5-abc")).unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mine = cache.staging().unwrap();
        drop(Cache::open(dir.path()).unwrap());
        assert!(!root.join(".staging-999999999-5-abc").exists());
        assert!(mine.path().exists(), "a live run's staging stays");
    }
}
