//! Content bundles: the `content-*/*.zst` archives of images that travel to the edge host on
//! the installer ISO. Finding them is shared by validation (a bundle changes which registry
//! set-ups work) and the ISO stage (which lays them out).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot read the content {what} `{}`", path.display())]
pub struct ReadError {
    /// `directory` or `bundle`.
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Every `*.zst` file of the `content-*` directories in `dir`, sorted by path. A bundle keeps
/// the name it is listed under, even when it is a link; one that is not a regular file (a
/// FIFO, a device, a dangling link) is refused.
pub fn find(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let mut bundles = Vec::new();
    for content in listed(dir)?.into_iter().filter(|p| {
        p.is_dir()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("content-"))
    }) {
        for file in listed(&content)?
            .into_iter()
            .filter(|p| !p.is_dir() && p.extension().is_some_and(|e| e == "zst"))
        {
            crate::limits::regular(&file).map_err(|source| ReadError {
                what: "bundle",
                path: file.clone(),
                source,
            })?;
            bundles.push(file);
        }
    }
    Ok(bundles)
}

fn listed(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let error = |source| ReadError {
        what: "directory",
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        paths.push(entry.map_err(error)?.path());
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_zst_files_of_content_directories_by_their_listed_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["content-b", "content-a", "other"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::write(root.join("content-a/core.zst"), "x").unwrap();
        std::fs::write(root.join("content-b/notes.txt"), "x").unwrap();
        std::fs::write(root.join("other/skipped.zst"), "x").unwrap();
        std::fs::write(root.join("sha256-abc"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("sha256-abc"), root.join("content-b/apps.zst"))
            .unwrap();
        assert_eq!(
            find(root).unwrap(),
            [
                root.join("content-a/core.zst"),
                root.join("content-b/apps.zst")
            ]
        );
        assert!(find(&root.join("missing")).is_err());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("content-a/pipe.zst"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = find(root).unwrap_err();
        assert_eq!(
            format!("{err}: {}", err.source),
            format!(
                "cannot read the content bundle `{}`: {}",
                root.join("content-a/pipe.zst").display(),
                crate::limits::NotRegular::Fifo
            )
        );
    }
}
