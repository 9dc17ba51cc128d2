//! The OCI image format as forge handles it: digests ([`digest`]), media types, descriptors
//! and platforms, and images held in local files (an image exported from the Docker Engine, an
//! ISO as an artifact) with their blobs on disk. A leaf module: it imports nothing of forge's
//! but the quoting bound, so that the registry client, the engine and the ISO artifact share
//! these types without importing each other.

pub mod digest;

use std::collections::HashMap;
use std::path::PathBuf;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

pub use digest::{Algorithm, Digest, DigestError, Hasher};

/// The OCI media types of what forge pushes from local files.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The media types of an index (a manifest list): one manifest per platform.
pub const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A content descriptor, as manifests list them; its digest parsed before any use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image held in local files (exported from the Docker Engine, or an ISO as an artifact):
/// its manifest and blobs.
pub struct LocalImage {
    pub media_type: String,
    pub manifest: Vec<u8>,
    /// Digest → where the blob's bytes are.
    pub blobs: HashMap<Digest, BlobFile>,
}

/// A blob's bytes on disk: a file, framed by bytes before and after it (a tar member's header
/// and padding, so that a file becomes a one-file layer without being copied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobFile {
    pub path: PathBuf,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

impl BlobFile {
    /// A blob that is the whole file.
    pub fn plain(path: PathBuf) -> BlobFile {
        BlobFile {
            path,
            ..BlobFile::default()
        }
    }

    /// The blob's size: the file's and its frame's.
    pub async fn size(&self) -> std::io::Result<u64> {
        let file = tokio::fs::metadata(&self.path).await?.len();
        Ok(self.head.len() as u64 + file + self.tail.len() as u64)
    }

    /// The blob's sha256 digest and size, read in blocks of 1 MiB (blocking).
    pub fn sha256(&self) -> std::io::Result<(Digest, u64)> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&self.path)?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(&self.head);
        let mut buf = vec![0; 1 << 20];
        let mut size = self.head.len() as u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        hasher.update(&self.tail);
        size += self.tail.len() as u64;
        Ok((hasher.finish(), size))
    }

    /// The blob's bytes, in blocks of 1 MiB.
    pub async fn stream(
        &self,
    ) -> std::io::Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + use<>>
    {
        let file = tokio::fs::File::open(&self.path).await?;
        let frame = |bytes: &[u8]| {
            futures_util::stream::iter(
                (!bytes.is_empty()).then(|| Ok(bytes::Bytes::copy_from_slice(bytes))),
            )
        };
        Ok(frame(&self.head)
            .chain(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20))
            .chain(frame(&self.tail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_print_like_docker() {
        let p = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(p.to_string(), "linux/arm64/v8");
    }
}
