//! The Docker Engine, through bollard: connecting (`DOCKER_HOST`, API version negotiated),
//! inspecting images, and exporting an image into files ready to push as an OCI image
//! (config, gzip layers, manifest), streamed through disk rather than memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bollard::Docker;
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::registry::sync::LocalImage;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {host} ({detail}); start it (`dockerd`, or `systemctl start docker`) or point DOCKER_HOST at a running engine")]
    Unreachable { host: String, detail: String },
    #[error("image `{0}` is not in the local Docker Engine; build or pull it first")]
    NoSuchImage(String),
    #[error("Docker Engine: {0}")]
    Api(String),
    #[error("exported image `{image}` is malformed: {detail}")]
    Export { image: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Connect to the engine `DOCKER_HOST` names (default: the local socket) and agree on an API
/// version both sides speak.
pub async fn connect() -> Result<Docker, EngineError> {
    let unreachable = |detail: String| EngineError::Unreachable {
        host: host(),
        detail,
    };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(short(&e)))?;
    docker.ping().await.map_err(|e| unreachable(short(&e)))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(short(&e)))
}

fn short(e: &bollard::errors::Error) -> String {
    let text = e.to_string();
    if ["No such file", "Socket not found", "onnection refused"]
        .iter()
        .any(|s| text.contains(s))
    {
        "no engine is listening".into()
    } else {
        text.chars().take(200).collect()
    }
}

/// The image's config digest (its ID), or `NoSuchImage`.
pub async fn image_id(docker: &Docker, image: &str) -> Result<String, EngineError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => inspect
            .id
            .ok_or_else(|| EngineError::Api(format!("image `{image}` has no ID"))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(EngineError::NoSuchImage(image.to_string())),
        Err(e) => Err(EngineError::Api(e.to_string())),
    }
}

/// `docker save` layout: `manifest.json` lists the config and the layer tar files.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    layers: Vec<String>,
}

/// Export `image` from the engine into `dir` as an OCI image: config blob, gzip-compressed
/// layers (deterministic, so a re-export gives the same digests) and manifest.
pub async fn export(docker: &Docker, image: &str, dir: &Path) -> Result<LocalImage, EngineError> {
    image_id(docker, image).await?;
    let unpacked = dir.join("export");
    let stream = docker.export_image(image).map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let target = unpacked.clone();
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || tar::Archive::new(bridge).unpack(&target))
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?
        .map_err(|source| EngineError::Io {
            what: format!("exporting `{image}`"),
            source,
        })?;
    let dir = dir.to_path_buf();
    let image = image.to_string();
    tokio::task::spawn_blocking(move || assemble(&image, &unpacked, &dir))
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?
}

fn assemble(image: &str, unpacked: &Path, dir: &Path) -> Result<LocalImage, EngineError> {
    let malformed = |detail: String| EngineError::Export {
        image: image.to_string(),
        detail,
    };
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |source| EngineError::Io { what, source }
    };
    let manifest_path = unpacked.join("manifest.json");
    let text = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let saved: Vec<SaveManifest> =
        serde_json::from_slice(&text).map_err(|e| malformed(format!("manifest.json: {e}")))?;
    let saved = saved
        .into_iter()
        .next()
        .ok_or_else(|| malformed("manifest.json lists no image".into()))?;
    let config_path = unpacked.join(&saved.config);
    let config = std::fs::read(&config_path).map_err(io(&config_path))?;
    let diff_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&config)
        .ok()
        .and_then(|c| c["rootfs"]["diff_ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    let config_digest = crate::registry::client::sha256_digest(&config);
    let mut blobs = HashMap::from([(config_digest.clone(), config_path)]);
    let mut layers = Vec::new();
    for (i, layer) in saved.layers.iter().enumerate() {
        let raw = unpacked.join(layer);
        let gz = dir.join(format!("layer-{i}.tar.gz"));
        let (diff_id, digest, size) = compress(&raw, &gz).map_err(io(&raw))?;
        if diff_ids.get(i).is_some_and(|expected| *expected != diff_id) {
            return Err(malformed(format!(
                "layer {i} has diff ID {diff_id}, the config says {}",
                diff_ids[i]
            )));
        }
        std::fs::remove_file(&raw).map_err(io(&raw))?;
        layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size}));
        blobs.insert(digest, gz);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    Ok(LocalImage {
        media_type: OCI_MANIFEST.into(),
        manifest: serde_json::to_vec(&manifest).expect("manifest serializes"),
        blobs,
    })
}

/// Gzip `raw` into `gz`: (sha256 of the tar, sha256 of the gzip, gzip size).
fn compress(raw: &Path, gz: &Path) -> std::io::Result<(String, String, u64)> {
    struct Hashing<W: Write> {
        inner: W,
        hasher: Sha256,
        size: u64,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let mut input = BufReader::with_capacity(1 << 20, File::open(raw)?);
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, File::create(gz)?),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::default());
    let mut tar_hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tar_hasher.update(&buf[..n]);
        encoder.write_all(&buf[..n])?;
    }
    let mut out = encoder.finish()?;
    out.flush()?;
    let hex = |h: Sha256| format!("sha256:{}", hex::encode(h.finalize()));
    Ok((hex(tar_hasher), hex(out.hasher), out.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic_and_hashes_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("layer.tar");
        std::fs::write(&raw, vec![7u8; 300_000]).unwrap();
        let a = compress(&raw, &dir.path().join("a.gz")).unwrap();
        let b = compress(&raw, &dir.path().join("b.gz")).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.0,
            crate::registry::client::sha256_digest(&vec![7u8; 300_000])
        );
        assert_eq!(
            a.1,
            crate::registry::client::sha256_digest(
                &std::fs::read(dir.path().join("a.gz")).unwrap()
            )
        );
    }
}
