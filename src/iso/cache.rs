//! The mastering cache: the parts of an installer ISO that depend on the installer image and
//! not on the site (the squashfs root filesystem, kernel, initrd, BIOS El Torito image and EFI
//! system partition), one directory per key below `<cache dir>/iso/`. An entry is staged in a
//! hidden directory of its run and renamed into place when complete (locked before the
//! rename), so readers only ever see whole entries; a reader holds a shared `flock` on the
//! entry while it uses it, and pruning takes an exclusive one, so an entry in use is never
//! removed. Staging directories of a run that was killed are removed by the next run.
//!
//! An entry is input like any file: before it is used its `meta.json` is read (bounded) and
//! every file it records is checked for its size, links never followed. Anything else at a
//! key's name (an empty or foreign `meta.json`, a missing or truncated file, a file or a link
//! instead of a directory) is a miss: reported, removed and made again. Names that are not
//! keys are not forge's: listed with a note and never touched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, AtFlags, FileType, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::limits::MAX_CACHE_META_BYTES;
use crate::run;

/// The file of an entry that describes it; written last, before the rename.
const META: &str = "meta.json";
/// How staging directories are named: `.staging-<run id>-<random>`.
const STAGING: &str = ".staging-";
/// How often [`Cache::insert`] tries to put an entry in place while others race for its key.
const INSERT_ATTEMPTS: usize = 3;

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

/// What `meta.json` holds: the entry's [`Meta`] and the size of each of its files, checked on
/// every use, so that a file missing or cut short makes the entry a miss.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    meta: Meta,
    files: BTreeMap<String, u64>,
}

/// A complete entry, its files kept in place while this value lives.
pub struct Entry {
    pub dir: PathBuf,
    pub meta: Meta,
    _hold: Hold,
}

/// What keeps an entry's files in place.
enum Hold {
    /// A shared lock on the entry's directory: pruning leaves it alone.
    Locked { _lock: File },
    /// A staging directory the cache could not take: this run's own, removed when dropped.
    Staged { _dir: tempfile::TempDir },
}

/// What the cache has for a key.
pub enum Found {
    Hit(Entry),
    Miss,
    /// Something at the key's name that cannot be used: a miss too.
    Unusable(Unusable),
}

/// What became of a staged entry.
pub enum Stored {
    Cached(Entry),
    /// The cache could not take it: this run uses it from its staging directory.
    Uncached(Entry, NotCached),
}

/// Something at a key's name that is not a usable entry, and what was done about it.
#[derive(Debug, thiserror::Error)]
#[error("the cache entry {} {defect}: {fate}", path.display())]
pub struct Unusable {
    pub path: PathBuf,
    pub defect: Defect,
    pub fate: Fate,
}

/// What is wrong with an entry (said of the entry: "the cache entry DIR has no meta.json").
#[derive(Debug, thiserror::Error)]
pub enum Defect {
    #[error("is {0}, not a directory")]
    NotADirectory(&'static str),
    #[error("cannot be opened ({0})")]
    Unopenable(io::Error),
    #[error("cannot be locked ({0})")]
    Unlockable(io::Error),
    #[error("has no {META}")]
    NoMeta,
    #[error("has a {META} that is {0}, not a file")]
    MetaNotAFile(&'static str),
    #[error("has a {META} larger than {MAX_CACHE_META_BYTES} bytes")]
    MetaTooLarge,
    #[error("has a {META} that cannot be read ({0})")]
    MetaUnreadable(io::Error),
    #[error("has an empty {META}")]
    EmptyMeta,
    #[error("has a {META} that does not describe an entry ({0})")]
    BadMeta(serde_json::Error),
    #[error("has a {META} that names `{0}`, which is not a file name")]
    ForeignFile(String),
    #[error("has no {0}, which its {META} records")]
    MissingFile(String),
    #[error("has a {file} that is {kind}, not a file")]
    FileNotAFile { file: String, kind: &'static str },
    #[error("has a {file} that cannot be read ({source})")]
    FileUnreadable { file: String, source: io::Error },
    #[error("has a {file} of {bytes} bytes, not the {recorded} its {META} records")]
    WrongSize {
        file: String,
        bytes: u64,
        recorded: u64,
    },
}

impl Defect {
    /// Whether forge can remove the entry: not when it cannot open and lock it.
    fn removable(&self) -> bool {
        !matches!(self, Defect::Unopenable(_) | Defect::Unlockable(_))
    }
}

/// What was done about an unusable entry.
#[derive(Debug, thiserror::Error)]
pub enum Fate {
    #[error("removed")]
    Removed,
    #[error("left alone while another run uses it")]
    InUse,
    #[error("left alone, forge cannot remove it")]
    Kept,
    #[error("left alone, it cannot be moved ({0})")]
    Unmovable(io::Error),
}

/// Why a staged entry was not cached.
#[derive(Debug, thiserror::Error)]
pub enum NotCached {
    #[error(transparent)]
    InTheWay(Unusable),
    #[error("the cache entry {} cannot be made ({source})", path.display())]
    Rename { path: PathBuf, source: io::Error },
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

/// A name in the cache directory that is not a usable entry.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub bytes: u64,
    /// What is wrong, said of it: "has an empty meta.json".
    pub problem: String,
    /// forge never touches it (a name that is not a key, an entry it cannot open); otherwise
    /// the next build that needs it makes it again and `prune` removes it.
    pub left_alone: bool,
}

/// What `forge cache ls` shows.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    /// Most recently used first.
    pub entries: Vec<Listed>,
    pub skipped: Vec<Skipped>,
}

/// What `prune` removed and kept.
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub removed_bytes: u64,
    pub kept_bytes: u64,
    /// Entries in use by a running build, kept whatever the size.
    pub busy: Vec<String>,
    /// The removed entries that could not be used.
    pub unusable: Vec<String>,
    /// What prune does not touch, and why.
    pub left_alone: Vec<Skipped>,
}

/// An entry's directory as found, locked as asked.
enum Examined {
    /// Nothing at the name, or not what was there when it was opened.
    Gone,
    /// Locked by another run (for a non-blocking lock).
    Busy,
    Whole {
        dir: File,
        record: Record,
        used_ms: u64,
    },
    Broken {
        /// Open (and locked as asked) when it is a directory forge could open.
        dir: Option<File>,
        defect: Defect,
    },
}

impl Cache {
    /// The default cache directory: `$XDG_CACHE_HOME/forge`, else `~/.cache/forge`.
    pub fn default_dir(env: &crate::config::Environment) -> PathBuf {
        let base = env.cache_home.clone().unwrap_or_else(std::env::temp_dir);
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

    /// The complete entry of `key`, locked for use; its use is recorded for pruning. An
    /// unusable one is removed (when forge can) and reported.
    pub fn get(&self, key: &str) -> Found {
        match self.examine(key, Some(FlockOperation::LockShared)) {
            Examined::Gone | Examined::Busy => Found::Miss,
            Examined::Whole { dir, record, .. } => {
                // When it was last used, for pruning: an entry of another user that this one
                // may read but not write is used all the same.
                let now = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_OMIT,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                };
                let _ = rustix::fs::utimensat(&dir, META, &now, AtFlags::SYMLINK_NOFOLLOW);
                Found::Hit(Entry {
                    dir: self.root.join(key),
                    meta: record.meta,
                    _hold: Hold::Locked { _lock: dir },
                })
            }
            Examined::Broken { dir, defect } => Found::Unusable(self.discard(key, dir, defect)),
        }
    }

    /// A new staging directory for an entry (the run's own; removed when dropped).
    pub fn staging(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("{STAGING}{}-", run::current().id))
            .tempdir_in(&self.root)
    }

    /// Make `staged` the entry of `key` (its files complete; `meta` is written here). When a
    /// concurrent run stored the same key first, its entry is used and `staged` dropped; an
    /// unusable entry in the way is replaced, and one forge cannot remove leaves `staged` this
    /// run's own.
    pub fn insert(&self, key: &str, staged: tempfile::TempDir, meta: &Meta) -> io::Result<Stored> {
        let mut files = BTreeMap::new();
        for file in std::fs::read_dir(staged.path())? {
            let file = file?;
            let stat = file.metadata()?;
            let name = file.file_name().to_string_lossy().into_owned();
            if stat.is_file() && name != META {
                files.insert(name, stat.len());
            }
        }
        let record = Record {
            meta: meta.clone(),
            files,
        };
        let text = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        std::fs::write(staged.path().join(META), text)?;
        // Locked before it is in place, so that no prune takes it before this run uses it.
        let lock = File::open(staged.path())?;
        flock(&lock, FlockOperation::LockShared)?;
        let dir = self.root.join(key);
        let mut attempt = 0;
        let in_the_way = loop {
            attempt += 1;
            let error = match std::fs::rename(staged.path(), &dir) {
                Ok(()) => {
                    // Renamed away: nothing left for the TempDir to remove.
                    let _ = staged.keep();
                    return Ok(Stored::Cached(Entry {
                        dir,
                        meta: record.meta,
                        _hold: Hold::Locked { _lock: lock },
                    }));
                }
                Err(e) => e,
            };
            if !matches!(
                error.kind(),
                io::ErrorKind::DirectoryNotEmpty
                    | io::ErrorKind::AlreadyExists
                    | io::ErrorKind::NotADirectory
            ) {
                break NotCached::Rename {
                    path: dir,
                    source: error,
                };
            }
            match self.get(key) {
                Found::Hit(entry) => return Ok(Stored::Cached(entry)),
                Found::Miss
                | Found::Unusable(Unusable {
                    fate: Fate::Removed,
                    ..
                }) if attempt < INSERT_ATTEMPTS => {}
                Found::Unusable(unusable) => break NotCached::InTheWay(unusable),
                Found::Miss => {
                    break NotCached::Rename {
                        path: dir,
                        source: error,
                    }
                }
            }
        };
        Ok(Stored::Uncached(
            Entry {
                dir: staged.path().to_path_buf(),
                meta: record.meta,
                _hold: Hold::Staged { _dir: staged },
            },
            in_the_way,
        ))
    }

    /// Every complete entry, most recently used first, and every other name but staging
    /// directories, with what is wrong with it.
    pub fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for found in std::fs::read_dir(&self.root)? {
            let found = found?;
            let name = found.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) {
                continue;
            }
            let bytes = dir_size(&found.path());
            if !is_key(&name) {
                listing.skipped.push(Skipped {
                    name,
                    bytes,
                    problem: "is not a cache entry (its name is not a key)".into(),
                    left_alone: true,
                });
                continue;
            }
            match self.examine(&name, None) {
                Examined::Gone | Examined::Busy => {}
                Examined::Whole {
                    record, used_ms, ..
                } => listing.entries.push(Listed {
                    key: name,
                    image: record.meta.image,
                    bytes,
                    used_ms,
                }),
                Examined::Broken { defect, .. } => listing.skipped.push(Skipped {
                    name,
                    bytes,
                    problem: defect.to_string(),
                    left_alone: !defect.removable(),
                }),
            }
        }
        listing
            .entries
            .sort_by(|a, b| b.used_ms.cmp(&a.used_ms).then_with(|| a.key.cmp(&b.key)));
        listing.skipped.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    /// Remove every unusable entry, then the least recently used entries until the rest take
    /// at most `max_size` bytes (all of them without a size); entries in use are kept. One
    /// prune runs at a time: another waits for it.
    pub fn prune(&self, max_size: Option<u64>) -> io::Result<Pruned> {
        let one_at_a_time = File::open(&self.root)?;
        flock(&one_at_a_time, FlockOperation::LockExclusive)?;
        let listing = self.list()?;
        let mut pruned = Pruned::default();
        for skipped in listing.skipped {
            match skipped.left_alone {
                true => pruned.left_alone.push(skipped),
                false => self.prune_one(&mut pruned, skipped.name, skipped.bytes, true),
            }
        }
        for listed in listing.entries {
            if max_size.is_some_and(|max| pruned.kept_bytes + listed.bytes <= max) {
                pruned.kept_bytes += listed.bytes;
                continue;
            }
            self.prune_one(&mut pruned, listed.key, listed.bytes, false);
        }
        Ok(pruned)
    }

    /// Remove `name`, listed as unusable or not, unless it is in use, and record what was done.
    fn prune_one(&self, pruned: &mut Pruned, name: String, bytes: u64, unusable: bool) {
        let (fate, defect) =
            match self.examine(&name, Some(FlockOperation::NonBlockingLockExclusive)) {
                Examined::Gone => return,
                Examined::Busy => (Fate::InUse, None),
                // Made again since it was listed: not this prune's to remove.
                Examined::Whole { .. } if unusable => return,
                Examined::Whole { dir, .. } => (self.remove(&name, dir), None),
                Examined::Broken { dir, defect } => {
                    let unusable = self.discard(&name, dir, defect);
                    (unusable.fate, Some(unusable.defect))
                }
            };
        let problem = match fate {
            Fate::Removed => {
                pruned.removed_bytes += bytes;
                if defect.is_some() {
                    pruned.unusable.push(name.clone());
                }
                pruned.removed.push(name);
                return;
            }
            Fate::InUse => {
                if !unusable {
                    pruned.kept_bytes += bytes;
                }
                pruned.busy.push(name);
                return;
            }
            Fate::Kept => defect.map_or_else(|| "cannot be removed".into(), |d| d.to_string()),
            Fate::Unmovable(e) => match defect {
                Some(defect) => format!("{defect}, and it cannot be moved ({e})"),
                None => format!("cannot be moved ({e})"),
            },
        };
        pruned.left_alone.push(Skipped {
            name,
            bytes,
            problem,
            left_alone: true,
        });
    }

    /// Open `name` (never following a link) and check it, locked as `lock` says.
    fn examine(&self, name: &str, lock: Option<FlockOperation>) -> Examined {
        let path = self.root.join(name);
        let flags = OFlags::RDONLY
            | OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC;
        let dir = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Examined::Gone,
            Err(Errno::NOTDIR | Errno::LOOP) => {
                return match rustix::fs::lstat(&path) {
                    Ok(stat) => Examined::Broken {
                        dir: None,
                        defect: Defect::NotADirectory(kind(&stat)),
                    },
                    Err(_) => Examined::Gone,
                }
            }
            Err(e) => {
                return Examined::Broken {
                    dir: None,
                    defect: Defect::Unopenable(e.into()),
                }
            }
        };
        match lock.map(|op| flock(&dir, op)) {
            None | Some(Ok(())) => {}
            Some(Err(Errno::WOULDBLOCK)) => return Examined::Busy,
            Some(Err(e)) => {
                return Examined::Broken {
                    dir: None,
                    defect: Defect::Unlockable(e.into()),
                }
            }
        }
        // Moved away (pruned, and perhaps made again) between the open and the lock.
        if !is_at(&dir, &path) {
            return Examined::Gone;
        }
        match check(&dir) {
            Ok((record, used_ms)) => Examined::Whole {
                dir,
                record,
                used_ms,
            },
            Err(defect) => Examined::Broken {
                dir: Some(dir),
                defect,
            },
        }
    }

    /// Remove the unusable `name` when forge can, and say what was done.
    fn discard(&self, name: &str, dir: Option<File>, defect: Defect) -> Unusable {
        let path = self.root.join(name);
        let fate = match dir {
            Some(dir) => self.remove(name, dir),
            // unlink(2) removes a link itself, never what it points to, and never a directory
            // (an entry made in its place meanwhile).
            None if matches!(defect, Defect::NotADirectory(_)) => {
                match std::fs::remove_file(&path) {
                    Ok(()) => Fate::Removed,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Fate::Removed,
                    Err(e) => Fate::Unmovable(e),
                }
            }
            None => Fate::Kept,
        };
        Unusable { path, defect, fate }
    }

    /// Remove the entry `name`, open as `dir`, once it is locked exclusively (it may be
    /// already): out of sight first, so that no reader takes a half-removed entry, and a
    /// killed run's leftover is removed by the next [`Cache::open`].
    fn remove(&self, name: &str, dir: File) -> Fate {
        let path = self.root.join(name);
        if flock(&dir, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Fate::InUse;
        }
        if !is_at(&dir, &path) {
            return Fate::Removed;
        }
        let moved = self
            .staging()
            .and_then(|doomed| std::fs::rename(&path, doomed.path().join("entry")));
        match moved {
            Ok(()) => Fate::Removed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Fate::Removed,
            Err(e) => Fate::Unmovable(e),
        }
    }
}

/// Whether `name` is what forge names an entry: a hex sha256.
fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `path` (not followed) is the file open as `file`.
fn is_at(file: &File, path: &Path) -> bool {
    match (rustix::fs::fstat(file), rustix::fs::lstat(path)) {
        (Ok(open), Ok(there)) => (open.st_dev, open.st_ino) == (there.st_dev, there.st_ino),
        _ => false,
    }
}

/// What a file is, for messages.
fn kind(stat: &Stat) -> &'static str {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a named pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Unknown => "of an unknown kind",
    }
}

/// Check the entry open as `dir`: its record (read bounded, links not followed) and every file
/// it records there with its size. Returns the record and when the entry was last used.
fn check(dir: &File) -> Result<(Record, u64), Defect> {
    let stat = match rustix::fs::statat(dir, META, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Err(Defect::NoMeta),
        Err(e) => return Err(Defect::MetaUnreadable(e.into())),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Defect::MetaNotAFile(kind(&stat)));
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut bytes = Vec::new();
    rustix::fs::openat(dir, META, flags, Mode::empty())
        .map_err(io::Error::from)
        .and_then(|fd| {
            File::from(fd)
                .take(MAX_CACHE_META_BYTES + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(Defect::MetaUnreadable)?;
    if bytes.len() as u64 > MAX_CACHE_META_BYTES {
        return Err(Defect::MetaTooLarge);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Defect::EmptyMeta);
    }
    let record: Record = serde_json::from_slice(&bytes).map_err(Defect::BadMeta)?;
    for (file, &recorded) in &record.files {
        if file.contains('/') || file == "." || file == ".." || file == META {
            return Err(Defect::ForeignFile(file.clone()));
        }
        let stat = match rustix::fs::statat(dir, file.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Err(Defect::MissingFile(file.clone())),
            Err(e) => {
                return Err(Defect::FileUnreadable {
                    file: file.clone(),
                    source: e.into(),
                })
            }
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(Defect::FileNotAFile {
                file: file.clone(),
                kind: kind(&stat),
            });
        }
        if stat.st_size as u64 != recorded {
            return Err(Defect::WrongSize {
                file: file.clone(),
                bytes: stat.st_size as u64,
                recorded,
            });
        }
    }
    let used_ms =
        (stat.st_mtime as u64).saturating_mul(1000) + stat.st_mtime_nsec as u64 / 1_000_000;
    Ok((record, used_ms))
}

/// The bytes of the files below `path`, links not followed (`path` itself neither); what
/// cannot be read counts nothing.
fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_root_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn meta(image: &str) -> Meta {
        Meta {
            image: image.into(),
            image_id: "sha256:1".into(),
            rootfs_bytes: 1,
            efi_loader: Vec::new(),
        }
    }

    /// The key numbered `n`.
    fn key(n: u8) -> String {
        format!("{n:064x}")
    }

    fn cached(stored: Stored) -> Entry {
        match stored {
            Stored::Cached(entry) => entry,
            Stored::Uncached(_, why) => panic!("not cached: {why}"),
        }
    }

    fn hit(found: Found) -> Entry {
        match found {
            Found::Hit(entry) => entry,
            Found::Miss => panic!("a miss"),
            Found::Unusable(unusable) => panic!("{unusable}"),
        }
    }

    fn unusable(found: Found) -> Unusable {
        match found {
            Found::Unusable(unusable) => unusable,
            Found::Hit(entry) => panic!("a hit: {}", entry.dir.display()),
            Found::Miss => panic!("a miss"),
        }
    }

    /// Store an entry of `key` whose squashfs is `bytes` long, and a kernel.
    fn store(cache: &Cache, key: &str, bytes: usize) -> Entry {
        let staged = cache.staging().unwrap();
        std::fs::write(staged.path().join("rootfs.squashfs"), vec![0u8; bytes]).unwrap();
        std::fs::write(staged.path().join("kernel"), b"kernel").unwrap();
        cached(cache.insert(key, staged, &meta(key)).unwrap())
    }

    #[test]
    fn an_entry_is_there_only_once_complete_and_a_second_store_of_its_key_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let staged = cache.staging().unwrap();
        std::fs::write(staged.path().join("rootfs.squashfs"), b"first").unwrap();
        assert!(
            matches!(cache.get(&key(1)), Found::Miss),
            "staged is not stored"
        );
        drop(cache.insert(&key(1), staged, &meta("a")).unwrap());
        let again = cache.staging().unwrap();
        std::fs::write(again.path().join("rootfs.squashfs"), b"second").unwrap();
        let entry = cached(cache.insert(&key(1), again, &meta("b")).unwrap());
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
                        let entry = cached(cache.insert(&key(1), staged, &meta("run")).unwrap());
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
        assert_eq!(names, [key(1).as_str()], "no staging left");
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_entries_within_the_size_and_skips_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let [old, mid, new] = [key(1), key(2), key(3)];
        for key in [&old, &mid, &new] {
            drop(store(&cache, key, 994));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(hit(cache.get(&old))); // used last
        let pruned = cache.prune(Some(2500)).unwrap();
        assert_eq!(pruned.removed, [mid]);
        let keys: Vec<_> = cache
            .list()
            .unwrap()
            .entries
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, [old.clone(), new.clone()]);
        let busy = hit(cache.get(&new));
        let pruned = cache.prune(None).unwrap();
        assert_eq!(
            (pruned.removed, pruned.busy),
            (vec![old], vec![new.clone()])
        );
        drop(busy);
        assert_eq!(cache.prune(None).unwrap().removed, [new]);
        assert!(cache.list().unwrap().entries.is_empty());
    }

    #[test]
    fn a_killed_runs_staging_directory_is_removed_when_the_cache_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("iso");
        std::fs::create_dir_all(root.join(".staging-999999999-5-abc/entry")).unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mine = cache.staging().unwrap();
        drop(Cache::open(dir.path()).unwrap());
        assert!(!root.join(".staging-999999999-5-abc").exists());
        assert!(mine.path().exists(), "a live run's staging stays");
    }

    /// A damage done to a stored entry `dir`, with `outside` a directory beside the cache
    /// holding `secret` and a copy of the entry as `entry`.
    type Damage = fn(dir: &Path, outside: &Path);

    fn write_meta(dir: &Path, text: &[u8]) {
        std::fs::write(dir.join(META), text).unwrap();
    }

    /// Every way an entry can be damaged or foreign, and what forge must say of it.
    fn damages() -> Vec<(&'static str, Damage)> {
        vec![
            ("has an empty meta.json", |d, _| write_meta(d, b"")),
            ("has an empty meta.json", |d, _| write_meta(d, b" \n\t\n")),
            (
                "has a meta.json that does not describe an entry (expected value",
                |d, _| write_meta(d, b"\x00\xffgarbage"),
            ),
            (
                "has a meta.json that does not describe an entry (invalid type: integer",
                |d, _| write_meta(d, br#"{"image": 1, "files": {}}"#),
            ),
            ("has a meta.json that does not describe an entry", |d, _| {
                write_meta(d, b"[]")
            }),
            (
                "has a meta.json that does not describe an entry (missing field `files`",
                |d, _| {
                    write_meta(
                        d,
                        br#"{"image":"a","image_id":"b","rootfs_bytes":1,"efi_loader":[]}"#,
                    )
                },
            ),
            (
                "has a meta.json that names `../outside/secret`, which is not a file name",
                |d, _| {
                    write_meta(
                    d,
                    br#"{"image":"a","image_id":"b","rootfs_bytes":1,"efi_loader":[],"files":{"../outside/secret":6}}"#,
                )
                },
            ),
            ("has a meta.json larger than 65536 bytes", |d, _| {
                write_meta(d, &[b' '; 100 << 10])
            }),
            ("has no meta.json", |d, _| {
                std::fs::remove_file(d.join(META)).unwrap()
            }),
            ("has a meta.json that is a directory, not a file", |d, _| {
                std::fs::remove_file(d.join(META)).unwrap();
                std::fs::create_dir(d.join(META)).unwrap();
            }),
            (
                "has a meta.json that is a symbolic link, not a file",
                |d, o| {
                    std::fs::remove_file(d.join(META)).unwrap();
                    symlink(o.join("entry").join(META), d.join(META)).unwrap();
                },
            ),
            (
                "has a meta.json that is a named pipe, not a file",
                |d, _| {
                    std::fs::remove_file(d.join(META)).unwrap();
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        d.join(META),
                        FileType::Fifo,
                        Mode::from_raw_mode(0o600),
                        0,
                    )
                    .unwrap();
                },
            ),
            (
                "has no rootfs.squashfs, which its meta.json records",
                |d, _| std::fs::remove_file(d.join("rootfs.squashfs")).unwrap(),
            ),
            (
                "has a rootfs.squashfs of 10 bytes, not the 1000 its meta.json records",
                |d, _| {
                    let file = File::options().write(true).open(d.join("rootfs.squashfs"));
                    file.unwrap().set_len(10).unwrap();
                },
            ),
            (
                "has a rootfs.squashfs that is a symbolic link, not a file",
                |d, o| {
                    std::fs::remove_file(d.join("rootfs.squashfs")).unwrap();
                    symlink(o.join("entry/rootfs.squashfs"), d.join("rootfs.squashfs")).unwrap();
                },
            ),
            ("has a kernel that is a directory, not a file", |d, _| {
                std::fs::remove_file(d.join("kernel")).unwrap();
                std::fs::create_dir(d.join("kernel")).unwrap();
            }),
            ("has no meta.json", |d, _| {
                std::fs::remove_dir_all(d).unwrap();
                std::fs::create_dir(d).unwrap();
            }),
            ("is a file, not a directory", |d, _| {
                std::fs::remove_dir_all(d).unwrap();
                std::fs::write(d, b"{}").unwrap();
            }),
            ("is a symbolic link, not a directory", |d, o| {
                std::fs::remove_dir_all(d).unwrap();
                symlink(o.join("entry"), d).unwrap();
            }),
            ("is a symbolic link, not a directory", |d, o| {
                std::fs::remove_dir_all(d).unwrap();
                symlink(o.join("nothing"), d).unwrap();
            }),
        ]
    }

    /// A cache in `dir/cache` holding one entry of `key(1)` damaged by `damage`, and
    /// `dir/outside` with `secret` and a whole copy of the entry before the damage.
    fn damaged(dir: &Path, damage: Damage) -> (Cache, PathBuf) {
        let cache = Cache::open(&dir.join("cache")).unwrap();
        let entry = store(&cache, &key(1), 1000).dir.clone();
        let outside = dir.join("outside");
        std::fs::create_dir_all(outside.join("entry")).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        for file in std::fs::read_dir(&entry).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), outside.join("entry").join(file.file_name())).unwrap();
        }
        damage(&entry, &outside);
        (cache, outside)
    }

    /// The files below `dir` (links not followed) and their contents.
    fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
            .collect()
    }

    #[test]
    fn every_damaged_or_foreign_entry_is_a_miss_that_is_reported_removed_and_made_again() {
        for (said, damage) in damages() {
            let dir = tempfile::tempdir().unwrap();
            let (cache, outside) = damaged(dir.path(), damage);
            let before = tree(&outside);
            let listing = cache.list().unwrap();
            assert!(listing.entries.is_empty(), "{said}: listed as whole");
            let [skipped] = &listing.skipped[..] else {
                panic!("{said}: {:?}", listing.skipped)
            };
            assert_eq!(skipped.name, key(1));
            assert!(skipped.problem.starts_with(said), "{said}: {skipped:?}");
            assert!(!skipped.left_alone, "{said}");

            let unusable = unusable(cache.get(&key(1)));
            let message = unusable.to_string();
            let path = cache.dir().join(key(1));
            assert!(
                message.starts_with(&format!("the cache entry {} {said}", path.display()))
                    && message.ends_with(": removed"),
                "{said}: {message}"
            );
            assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "{said}: still there"
            );
            assert_eq!(tree(&outside), before, "{said}: a link was followed");

            let made = store(&cache, &key(1), 1000);
            drop(made);
            let entry = hit(cache.get(&key(1)));
            assert_eq!(std::fs::read(entry.dir.join("kernel")).unwrap(), b"kernel");
        }
    }

    #[test]
    fn pruning_removes_damaged_entries_leaves_names_that_are_not_keys_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, outside) = damaged(dir.path(), |d, _| write_meta(d, b""));
        let root = cache.dir().to_path_buf();
        // A whole entry with a link to the outside among its files.
        let linked = store(&cache, &key(2), 1000).dir.clone();
        symlink(&outside, linked.join("outside")).unwrap();
        // A key that is a link to the outside's copy of an entry.
        symlink(outside.join("entry"), root.join(key(3))).unwrap();
        // Names that are no keys, with things that look like entries.
        std::fs::create_dir(root.join("ab")).unwrap();
        std::fs::copy(outside.join("entry").join(META), root.join("ab").join(META)).unwrap();
        std::fs::write(root.join(&key(4)[..63]), b"short").unwrap();
        symlink(&outside, root.join(".hidden")).unwrap();
        let before = tree(&outside);

        let listing = cache.list().unwrap();
        let keys: Vec<_> = listing.entries.iter().map(|e| &e.key).collect();
        assert_eq!(keys, [&key(2)]);
        let own: u64 = tree(&linked).iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(listing.entries[0].bytes, own, "the link counts nothing");
        let skipped: Vec<_> = listing
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.left_alone))
            .collect();
        assert_eq!(
            skipped,
            [
                (".hidden", true),
                (&key(4)[..63], true),
                (key(1).as_str(), false),
                (&key(3), false),
                ("ab", true),
            ]
        );

        let pruned = cache.prune(Some(1 << 30)).unwrap();
        assert_eq!(pruned.removed, [key(1), key(3)]);
        assert_eq!(pruned.unusable, [key(1), key(3)]);
        let left: Vec<_> = pruned.left_alone.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(left, [".hidden", &key(4)[..63], "ab"]);
        assert_eq!(pruned.kept_bytes, own);

        let pruned = cache.prune(None).unwrap();
        assert_eq!(pruned.removed, [key(2)]);
        assert_eq!(tree(&outside), before, "a link was followed");
        let names: std::collections::BTreeSet<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [".hidden", &key(4)[..63], "ab"].map(String::from).into(),
            "only what forge does not own is left"
        );
    }

    #[test]
    fn a_reader_that_waited_for_a_prune_misses_or_holds_the_entry_now_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = store(&cache, &key(1), 100).dir.clone();
        // A prune in the middle of removing the entry: locked exclusively.
        let pruning = File::open(&path).unwrap();
        flock(&pruning, FlockOperation::LockExclusive).unwrap();
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| cache.get(&key(1)));
            std::thread::sleep(std::time::Duration::from_millis(200));
            // The prune moves it away, and another run makes the key again.
            std::fs::rename(&path, dir.path().join("removed")).unwrap();
            drop(store(&cache, &key(1), 200));
            drop(pruning);
            let found = reader.join().unwrap();
            let pruned = cache.prune(None).unwrap();
            match found {
                Found::Miss => assert_eq!(pruned.removed, [key(1)]),
                Found::Hit(entry) => {
                    assert_eq!(pruned.busy, [key(1)], "pruned while in use");
                    assert_eq!(entry.dir, path);
                }
                Found::Unusable(unusable) => panic!("{unusable}"),
            }
        });
    }

    #[test]
    fn an_unusable_entry_forge_cannot_remove_leaves_the_run_its_own_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = damaged(dir.path(), |d, _| write_meta(d, b"{"));
        let path = cache.dir().join(key(1));
        // Another run holds it.
        let other = File::open(&path).unwrap();
        flock(&other, FlockOperation::LockShared).unwrap();
        let unusable = unusable(cache.get(&key(1)));
        assert!(matches!(unusable.fate, Fate::InUse), "{unusable}");
        assert!(
            unusable
                .to_string()
                .ends_with(": left alone while another run uses it"),
            "{unusable}"
        );
        let staged = cache.staging().unwrap();
        std::fs::write(staged.path().join("rootfs.squashfs"), b"mine").unwrap();
        let Stored::Uncached(entry, why) = cache.insert(&key(1), staged, &meta("a")).unwrap()
        else {
            panic!("cached over an entry in use")
        };
        assert!(
            why.to_string().starts_with(&format!(
                "the cache entry {} has a meta.json",
                path.display()
            )),
            "{why}"
        );
        assert_eq!(
            std::fs::read(entry.dir.join("rootfs.squashfs")).unwrap(),
            b"mine"
        );
        assert_eq!(std::fs::read(path.join(META)).unwrap(), b"{", "left alone");
        let own = entry.dir.clone();
        drop(entry);
        assert!(!own.exists(), "the run's own parts are removed with it");
    }
}
