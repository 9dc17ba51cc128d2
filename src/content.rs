//! Content bundles: the `content-*/*.zst` archives of images that travel to the edge host on
//! the installer ISO. Finding them is shared by validation (a bundle changes which registry
//! set-ups work) and the ISO stage (which lays them out).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot read the content directory `{}`: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Every `*.zst` file of the `content-*` directories in `dir`, sorted by path, canonical.
pub fn find(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let mut bundles = Vec::new();
    for content in listed(dir)?.into_iter().filter(|p| {
        p.is_dir()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("content-"))
    }) {
        for file in listed(&content)?
            .into_iter()
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "zst"))
        {
            let canonical = std::fs::canonicalize(&file).map_err(|source| ReadError {
                path: file.clone(),
                source,
            })?;
            bundles.push(canonical);
        }
    }
    Ok(bundles)
}

fn listed(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let error = |source| ReadError {
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
