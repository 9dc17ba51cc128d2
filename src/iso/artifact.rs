//! The installer ISO as an OCI image, as CanvOS's `+iso-disk-image` makes it (`FROM scratch`,
//! `COPY *.iso /disk/`, pushed as `IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG]`):
//! one layer holding `/disk/<name>.iso`. The layer is an uncompressed tar framed around the
//! ISO file, hashed and uploaded straight from it, never copied; an ISO is mostly a compressed
//! squashfs, so gzip would cost minutes and save little. Same ISO and `SOURCE_DATE_EPOCH`,
//! same digest.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::oci::{BlobFile, Digest, LocalImage, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::reference::Reference;
use crate::registry::rewrite::Rewrite;
use crate::registry::sync::{SyncError, Synced, Syncer};

/// Where the ISO lies in the image.
pub const DIRECTORY: &str = "disk";

/// The image of `iso` for `arch` (`amd64`, `arm64`); file dates are `epoch` (else 0). Its
/// config is written into `scratch`. Reads the whole ISO once, to hash the layer.
pub fn image(
    iso: &Path,
    arch: &str,
    epoch: Option<u64>,
    scratch: &Path,
) -> std::io::Result<LocalImage> {
    let name = iso
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", iso.display())))?
        .to_string_lossy()
        .into_owned();
    let layer = layer(iso, &name, epoch.unwrap_or(0))?;
    let (layer_digest, layer_size) = layer.sha256()?;
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": format!("forge: COPY {name} /{DIRECTORY}/")}],
    }))
    .expect("config serializes");
    let config_digest = Digest::sha256(&config);
    let config_path = scratch.join("iso-config.json");
    std::fs::write(&config_path, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    });
    Ok(LocalImage {
        media_type: OCI_MANIFEST.into(),
        manifest: serde_json::to_vec(&manifest).expect("manifest serializes"),
        blobs: HashMap::from([
            (config_digest, BlobFile::plain(config_path)),
            (layer_digest, layer),
        ]),
    })
}

/// Push `iso` as the image `reference` (see [`image`]) through forge's registry client: blobs
/// the registry has are skipped, the layer streams from the ISO, the manifest goes last and is
/// checked by digest.
pub async fn push(
    syncer: &Syncer<'_>,
    iso: &Path,
    reference: &Reference,
    arch: &str,
    epoch: Option<u64>,
) -> Result<Synced, SyncError> {
    let (iso_path, arch, scratch) = (
        iso.to_path_buf(),
        arch.to_string(),
        syncer.scratch().to_path_buf(),
    );
    let image = tokio::task::spawn_blocking(move || image(&iso_path, &arch, epoch, &scratch))
        .await
        .map_err(std::io::Error::other)??;
    let target = Rewrite {
        from: reference.clone(),
        to: reference.clone(),
        registry: None,
    };
    syncer.from_files(&target, &image).await
}

/// The layer: a tar of the directory `disk/` and `disk/<name>` (the ISO), as a frame around
/// the ISO file: the entries' headers before it, its padding and the end of the archive after.
fn layer(iso: &Path, name: &str, mtime: u64) -> std::io::Result<BlobFile> {
    let size = std::fs::metadata(iso)?.len();
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_size(size);
        header
    };
    tar.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0),
        format!("{DIRECTORY}/"),
        std::io::empty(),
    )?;
    // The ISO's header alone: its bytes follow from the file.
    tar.append_data(
        &mut header(tar::EntryType::Regular, 0o644, size),
        format!("{DIRECTORY}/{name}"),
        std::io::empty(),
    )?;
    let head = tar.get_ref().clone();
    let padding = (512 - size % 512) % 512;
    Ok(BlobFile {
        path: iso.to_path_buf(),
        head,
        tail: vec![0; padding as usize + 1024],
    })
}

/// Push `iso` as the image CanvOS's `+iso-disk-image` makes, to `reference`, and record where
/// it went; progress as the step `push iso`.
pub async fn publish(
    syncer: &Syncer<'_>,
    iso: &mut super::Mastered,
    reference: &Reference,
    arch: &str,
    epoch: Option<u64>,
    progress: &crate::progress::Progress,
) -> Result<(), SyncError> {
    let tag = reference.to_string();
    progress.start("push iso", "pushing", &tag);
    let synced = push(syncer, &iso.path, reference, arch, epoch).await?;
    let status = match synced.up_to_date {
        true => "up to date",
        false => "pushed",
    };
    progress.finish("push iso", status, &format!("{tag}@{}", synced.digest));
    iso.pushed = Some((tag, synced.digest));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn the_layer_is_a_tar_of_disk_holding_the_iso() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("palette-edge-installer.iso");
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&iso, &bytes).unwrap();
        let layer = layer(&iso, "palette-edge-installer.iso", 1_700_000_000).unwrap();
        let mut whole = layer.head.clone();
        whole.extend(&bytes);
        whole.extend(&layer.tail);
        assert_eq!(whole.len() % 512, 0);
        let mut archive = tar::Archive::new(whole.as_slice());
        let entries: Vec<(String, u64, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let path = e.path().unwrap().display().to_string();
                (path, e.header().mtime().unwrap(), data)
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("disk/".to_string(), 1_700_000_000, Vec::new()),
                (
                    "disk/palette-edge-installer.iso".to_string(),
                    1_700_000_000,
                    bytes
                ),
            ]
        );
    }

    #[test]
    fn the_same_iso_gives_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("x.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let one = image(&iso, "amd64", Some(1), dir.path()).unwrap();
        let two = image(&iso, "amd64", Some(1), dir.path()).unwrap();
        assert_eq!(one.manifest, two.manifest);
        let manifest: serde_json::Value = serde_json::from_slice(&one.manifest).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], OCI_LAYER);
        assert_eq!(manifest["layers"][0]["size"], 512 * 2 + 512 + 1024);
    }
}
