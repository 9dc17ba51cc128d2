//! The bounds on the work forge does for one input, in one place: how much of each file it
//! reads, how deep and how aliased a YAML document may be, how much `.arg` values and profile
//! templates may grow by expansion and how much of a line a diagnostic quotes. Hostile or
//! broken input meets one of these and becomes a finding or an error, never an exhausted
//! memory, an overflowed stack or a flooded terminal.

use std::fs::{File, FileType};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The kinds of input file, each with the most forge reads of it. A larger file is refused
/// after reading at most one byte more than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The edge host skips user-data of 2 MiB or more (rule UD003 reports that); forge reads
    /// up to twice that so that UD003 can report the size of a file just above it.
    UserData,
    /// A cluster profile: packs with their values, pasted manifests included.
    Profile,
    /// `forge.yaml` build settings.
    Settings,
    /// A CanvOS `.arg` file.
    Arg,
    /// A CanvOS checkout's `Earthfile` (80 KB at CanvOS main).
    Earthfile,
    /// The Kubernetes version matrix (`K8S_VERSION_FILE`).
    VersionMatrix,
    /// A file listing images, one per line.
    ImageList,
    /// `--secret-file KEY=FILE`: one setting's value.
    Secret,
    /// The Docker client configuration (`~/.docker/config.json`).
    DockerConfig,
    /// `--registry-ca FILE`: PEM certificates to trust.
    Certificates,
}

impl FileKind {
    /// The size limit in bytes.
    pub fn max_bytes(self) -> u64 {
        match self {
            FileKind::UserData | FileKind::ImageList => 4 << 20,
            FileKind::Profile => 16 << 20,
            FileKind::Settings | FileKind::Arg | FileKind::VersionMatrix | FileKind::Earthfile => {
                1 << 20
            }
            FileKind::Secret => 64 << 10,
            FileKind::DockerConfig | FileKind::Certificates => 1 << 20,
        }
    }

    /// What the file is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            FileKind::UserData => "user-data file",
            FileKind::Profile => "cluster profile",
            FileKind::Settings => "settings file",
            FileKind::Arg => ".arg file",
            FileKind::Earthfile => "CanvOS Earthfile",
            FileKind::VersionMatrix => "Kubernetes version matrix",
            FileKind::ImageList => "image list",
            FileKind::Secret => "secret file",
            FileKind::DockerConfig => "Docker config",
            FileKind::Certificates => "CA certificate file",
        }
    }
}

/// What a path names when it is not a regular file. forge reads its inputs from regular files
/// only: a FIFO (`<(...)` is one) waits for a writer or feeds without end, a device may never
/// end, a socket cannot be opened as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRegular {
    #[error("it is a directory, not a regular file")]
    Directory,
    #[error("it is a FIFO (a named pipe, which `<(...)` also gives), not a regular file; write the data to a file and give that")]
    Fifo,
    #[error("it is a socket, not a regular file")]
    Socket,
    #[error("it is a character device, not a regular file")]
    CharDevice,
    #[error("it is a block device, not a regular file")]
    BlockDevice,
}

impl NotRegular {
    /// What `file_type` is, when it is not a regular file (links are followed before).
    pub fn of(file_type: FileType) -> Option<NotRegular> {
        [
            (file_type.is_dir(), NotRegular::Directory),
            (file_type.is_fifo(), NotRegular::Fifo),
            (file_type.is_socket(), NotRegular::Socket),
            (file_type.is_char_device(), NotRegular::CharDevice),
            (file_type.is_block_device(), NotRegular::BlockDevice),
        ]
        .into_iter()
        .find_map(|(is, what)| is.then_some(what))
    }

    fn refuse(file_type: FileType) -> std::io::Result<()> {
        match NotRegular::of(file_type) {
            Some(what) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, what)),
            None => Ok(()),
        }
    }
}

/// The metadata of `path` (links followed) when it is a regular file; anything else is
/// refused as [`open`] refuses it.
pub fn regular(path: &Path) -> std::io::Result<std::fs::Metadata> {
    let metadata = std::fs::metadata(path)?;
    NotRegular::refuse(metadata.file_type())?;
    Ok(metadata)
}

/// Open an input file for reading, refusing at once what is not a regular file: the path is
/// looked at first (a device is never opened), then opened with `O_NONBLOCK` (a FIFO swapped in
/// meanwhile does not wait for a writer) and the open file looked at again. The refusal is an
/// [`std::io::Error`] of kind `InvalidInput` holding the [`NotRegular`].
pub fn open(path: &Path) -> std::io::Result<File> {
    regular(path)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    NotRegular::refuse(file.metadata()?.file_type())?;
    Ok(file)
}

/// Copy the regular file `from` to a new file `to` with its permissions (`std::fs::copy`,
/// opening `from` as [`open`] does); returns the bytes copied.
pub fn copy(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut source = open(from)?;
    let mut target = File::create(to)?;
    let bytes = std::io::copy(&mut source, &mut target)?;
    target.set_permissions(source.metadata()?.permissions())?;
    Ok(bytes)
}

/// Why an input file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("it is larger than {} MiB, the most forge reads of a {}", .0.max_bytes() >> 20, .0.what())]
    TooLarge(FileKind),
    #[error("it is not UTF-8 text (byte {0} is not); save it as UTF-8")]
    NotUtf8(usize),
}

/// Read an input file, at most its kind's limit, from a regular file only ([`open`]).
pub fn read(kind: FileKind, path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    open(path)?
        .take(kind.max_bytes() + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > kind.max_bytes() {
        return Err(ReadError::TooLarge(kind));
    }
    Ok(bytes)
}

/// Read an input file as text ([`read`]).
pub fn read_text(kind: FileKind, path: &Path) -> Result<String, ReadError> {
    String::from_utf8(read(kind, path)?)
        .map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Collections nested deeper than this are refused (YAML003) while parsing, before any walk
/// over the tree: the recursion limit of serde_json and serde_yaml. Real user-data and profiles
/// nest fewer than 20 levels; go-yaml allows 10000 and saphyr 255 flow levels.
pub const MAX_YAML_DEPTH: usize = 128;

/// go-yaml's alias heuristic (the "document contains excessive aliasing" check Kubernetes
/// relies on since CVE-2019-11253): a document is refused once more than
/// [`MIN_ALIASED_NODES`] values come from alias expansion, it holds more than
/// [`MIN_DECODED_NODES`] values, and the share of expanded values exceeds
/// [`allowed_alias_ratio`].
pub const MIN_ALIASED_NODES: usize = 100;
pub const MIN_DECODED_NODES: usize = 1000;

/// The share of a document's values that may come from alias expansion: 99% up to 400,000
/// values, falling linearly to 10% at 4,000,000 (go-yaml's `allowedAliasRatio`).
pub fn allowed_alias_ratio(decoded: usize) -> f64 {
    const LOW: usize = 400_000;
    const HIGH: usize = 4_000_000;
    if decoded <= LOW {
        0.99
    } else if decoded >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * (decoded - LOW) as f64 / (HIGH - LOW) as f64
    }
}

/// What anchors and aliases may copy in one document, in values and in text (keys and
/// scalars): the ratio above counts values, not their length, so a long scalar aliased a
/// hundred times, or anchors nested in anchors, are bounded by these.
pub const MAX_ALIAS_COPIED_VALUES: usize = 1_000_000;
pub const MAX_ALIAS_COPIED_BYTES: usize = 16 << 20;

/// The longest `.arg` value after `$VAR` expansion.
pub const MAX_ARG_VALUE_BYTES: usize = 64 << 10;

/// The most of a registry's answer forge reads: a manifest or an index (the distribution
/// registry's own limit on what it accepts), and anything else that is not a blob (a token,
/// an error, an upload's answer). A blob is read up to the size its descriptor gives.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
pub const MAX_REGISTRY_REPLY_BYTES: u64 = 1 << 20;

/// The most forge reads of a mastering cache entry's `meta.json` (forge writes well under
/// 1 KiB): an entry with a larger one is unusable, a miss.
pub const MAX_CACHE_META_BYTES: u64 = 64 << 10;

/// A blob download may take the request deadline plus one second for each this many bytes of
/// the blob (a registry trickling bytes is cut off, a slow link is not: 3 GB is 13 hours).
pub const MIN_BLOB_BYTES_PER_SECOND: u64 = 64 << 10;

/// How long a Docker credential helper (`docker-credential-NAME get`) may take to answer.
pub const CREDENTIAL_HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `$VAR` expansion may add to all the values of one `.arg` file together: as much as the
/// file itself may hold. The limit per value alone lets many lines each just under it
/// (`B=$A` on 200,000 lines) ask for gigabytes.
pub const MAX_ARG_EXPANSION_BYTES: usize = 1 << 20;

/// How deep the `IF` (and `FOR`, `WITH`, `TRY`) blocks of an Earthfile's global section may
/// nest: CanvOS's go three deep; past this, the rest of the section is not read.
pub const MAX_EARTHFILE_BLOCK_DEPTH: usize = 32;

/// How deep `{{ .spectro... }}` templates of a cluster profile nest: an option holding a
/// template of an option holding a template, and so on (a template of itself stops here).
pub const MAX_TEMPLATE_DEPTH: usize = 8;

/// What `{{ }}` expansion may copy into the image references of one cluster profile, all
/// together: each expansion counts the text of the option it copies in, nested ones included.
/// The depth limit alone lets eight options each holding ten templates of the one before ask
/// for ten million copies.
pub const MAX_TEMPLATE_EXPANSION_BYTES: usize = 1 << 20;

/// How many characters of a source line a diagnostic quotes around its column, and the most
/// of any one value a message quotes ([`clip`]).
pub const EXCERPT_CHARS: usize = 200;

/// `value` as a message quotes it: at most [`EXCERPT_CHARS`] characters, `…` where it was cut.
pub fn clip(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => value.into(),
        Some((end, _)) => format!("{}…", &value[..end]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_at_most_one_byte_more_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let large = dir.path().join("large.arg");
        File::create(&large)
            .unwrap()
            .set_len(FileKind::Arg.max_bytes() + 1)
            .unwrap();
        let err = read_text(FileKind::Arg, &large).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge(FileKind::Arg)), "{err}");
        assert_eq!(
            err.to_string(),
            "it is larger than 1 MiB, the most forge reads of a .arg file"
        );
        let bad = dir.path().join("latin1.yaml");
        std::fs::write(&bad, b"a: caf\xe9\n").unwrap();
        assert_eq!(
            read_text(FileKind::UserData, &bad).unwrap_err().to_string(),
            "it is not UTF-8 text (byte 6 is not); save it as UTF-8"
        );
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_by_name_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for (path, what) in [
            (dir.path(), NotRegular::Directory),
            (fifo.as_path(), NotRegular::Fifo),
            (link.as_path(), NotRegular::Fifo),
            (socket.as_path(), NotRegular::Socket),
            (Path::new("/dev/zero"), NotRegular::CharDevice),
        ] {
            let err = read_text(FileKind::UserData, path).unwrap_err();
            let ReadError::Io(io) = &err else {
                panic!("{}: {err}", path.display())
            };
            assert_eq!(
                io.get_ref().and_then(|e| e.downcast_ref::<NotRegular>()),
                Some(&what),
                "{}: {err}",
                path.display()
            );
        }
        let copied = dir.path().join("copied");
        assert!(copy(&fifo, &copied).is_err());
        assert!(!copied.exists(), "nothing is created for a refused source");
    }

    #[test]
    fn messages_quote_at_most_200_characters_of_a_value() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), EXCERPT_CHARS + 1);
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn the_alias_ratio_falls_from_99_to_10_percent() {
        assert_eq!(allowed_alias_ratio(1000), 0.99);
        assert_eq!(allowed_alias_ratio(400_000), 0.99);
        assert!((allowed_alias_ratio(2_200_000) - 0.545).abs() < 1e-9);
        assert_eq!(allowed_alias_ratio(4_000_000), 0.10);
        assert_eq!(allowed_alias_ratio(usize::MAX), 0.10);
    }
}
