//! Copying images to their rewritten location: from a source registry or from local files
//! (an image exported from the Docker Engine). Blobs the target already has are skipped,
//! blobs in another repository of the same registry are mounted, the rest stream through a
//! temporary file; manifests go last and are verified by digest. A re-run finds the target
//! manifest already in place and does nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::client::{Error, Registry};
use super::rewrite::Rewrite;
use super::Pool;
use crate::oci::{BlobFile, Descriptor, Digest, LocalImage, Platform, INDEX_TYPES};
use crate::reference::Reference;
use crate::units::human;

/// A descriptor as a manifest writes it, its digest still text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

/// The parts of a manifest or index that copying needs.
#[derive(Debug, Default)]
struct Manifest {
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

impl Manifest {
    /// Parse `bytes`, the manifest of `image` from `registry`: every descriptor's digest is
    /// checked against the OCI grammar, and one that is not a digest names the descriptor.
    fn parse(bytes: &[u8], image: &Reference, registry: &str) -> Result<Manifest, SyncError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| SyncError::Manifest {
            image: image.to_string(),
            detail: crate::limits::clip(&e.to_string()).into_owned(),
        })?;
        let descriptor = |field: String, d: RawDescriptor| {
            let digest = Digest::parse(&d.digest).map_err(|e| {
                SyncError::Registry(Error::Protocol {
                    registry: registry.to_string(),
                    detail: format!("the manifest of {image}: {field}: {e}"),
                })
            })?;
            Ok::<_, SyncError>(Descriptor {
                media_type: d.media_type,
                digest,
                size: d.size,
                platform: d.platform,
            })
        };
        let list = |name: &str, items: Vec<RawDescriptor>| {
            items
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(format!("{name}[{i}]"), d))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Manifest {
            manifests: list("manifests", raw.manifests)?,
            config: raw
                .config
                .map(|d| descriptor("config".into(), d))
                .transpose()?,
            layers: list("layers", raw.layers)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Registry(#[from] Error),
    #[error("{0} does not exist in its source registry")]
    NotFound(String),
    #[error("{image} has no manifest for platform {platform} (it has {available})")]
    Platform {
        image: String,
        platform: String,
        available: String,
    },
    #[error("{image}: unreadable manifest ({detail})")]
    Manifest { image: String, detail: String },
    #[error("temporary files: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters of one copy.
#[derive(Debug, Default)]
pub struct Stats {
    pub uploaded: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    pub present: AtomicU64,
    pub mounted: AtomicU64,
}

/// The result of copying one image.
#[derive(Debug)]
pub struct Synced {
    pub rewrite: Rewrite,
    /// Digest of the top manifest at the target.
    pub digest: Digest,
    /// The target already had it: nothing was copied.
    pub up_to_date: bool,
    pub stats: Stats,
    pub seconds: f64,
}

/// Where blobs come from.
enum Blobs<'a> {
    Registry {
        registry: Arc<Registry>,
        repository: String,
    },
    Files(&'a HashMap<Digest, BlobFile>),
}

/// One image being copied: where to, where from, and its counters.
struct Job<'j> {
    target: &'j Registry,
    repository: &'j str,
    blobs: &'j Blobs<'j>,
    stats: &'j Stats,
    image: &'j Reference,
}

/// Copies images, remembering which blobs each target registry has where (for mounts).
pub struct Syncer<'a> {
    pool: &'a Pool,
    platform: Option<String>,
    jobs: usize,
    known: Mutex<HashMap<(String, Digest), String>>,
    scratch: tempfile::TempDir,
    progress: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Syncer<'a> {
    /// `platform` (`os/arch[/variant]`) copies one platform of an index; `jobs` blobs move at
    /// once; `progress` receives one line per blob moved.
    pub fn new(
        pool: &'a Pool,
        platform: Option<String>,
        jobs: usize,
        progress: &'a (dyn Fn(&str) + Sync),
    ) -> Result<Self, SyncError> {
        Ok(Syncer {
            pool,
            platform,
            jobs: jobs.max(1),
            known: Mutex::new(HashMap::new()),
            scratch: crate::run::temp_dir()?,
            progress,
        })
    }

    /// Copy `rewrite.from` from its registry to `rewrite.to`.
    pub async fn from_registry(&self, rewrite: &Rewrite) -> Result<Synced, SyncError> {
        let started = Instant::now();
        let from = &rewrite.from;
        let source = self.pool.get(&from.host).await?;
        let (media_type, bytes, digest) = source
            .manifest_get(&from.path, from.manifest_reference())
            .await?
            .ok_or_else(|| SyncError::NotFound(from.to_string()))?;
        let blobs = Blobs::Registry {
            registry: source.clone(),
            repository: from.path.clone(),
        };
        let (media_type, bytes, digest) =
            match (&self.platform, INDEX_TYPES.contains(&media_type.as_str())) {
                (Some(platform), true) => {
                    let child = self.choose_platform(from, source.host(), &bytes, platform)?;
                    source
                        .manifest_get(&from.path, &child.digest.to_string())
                        .await?
                        .ok_or_else(|| {
                            SyncError::NotFound(format!("{}@{}", from.repository(), child.digest))
                        })?
                }
                _ => (media_type, bytes, digest),
            };
        self.push(rewrite, &media_type, &bytes, &digest, &blobs, started)
            .await
    }

    /// Copy a local image to `rewrite.to`.
    pub async fn from_files(
        &self,
        rewrite: &Rewrite,
        image: &LocalImage,
    ) -> Result<Synced, SyncError> {
        let digest = Digest::sha256(&image.manifest);
        self.push(
            rewrite,
            &image.media_type,
            &image.manifest,
            &digest,
            &Blobs::Files(&image.blobs),
            Instant::now(),
        )
        .await
    }

    /// Whether `rewrite.to` already holds an image whose config has this digest (for a Docker
    /// image, its ID): then there is nothing to export or copy.
    pub async fn has_config(
        &self,
        rewrite: &Rewrite,
        config_digest: &str,
    ) -> Result<bool, SyncError> {
        let to = &rewrite.to;
        let target = self.pool.get(&to.host).await?;
        let Some((_, bytes, _)) = target
            .manifest_get(&to.path, to.manifest_reference())
            .await?
        else {
            return Ok(false);
        };
        let manifest = Manifest::parse(&bytes, to, target.host()).unwrap_or_default();
        Ok(manifest.config.is_some_and(|c| c.digest == *config_digest))
    }

    /// Whether the registry holds a manifest at `reference`.
    pub async fn exists(&self, reference: &crate::reference::Reference) -> Result<bool, SyncError> {
        let registry = self.pool.get(&reference.host).await?;
        Ok(registry
            .manifest_head(&reference.path, reference.manifest_reference())
            .await?
            .is_some())
    }

    /// A scratch directory for one image's files, removed with the syncer.
    pub fn scratch(&self) -> &std::path::Path {
        self.scratch.path()
    }

    fn choose_platform(
        &self,
        image: &Reference,
        registry: &str,
        index: &[u8],
        wanted: &str,
    ) -> Result<Descriptor, SyncError> {
        let manifest = Manifest::parse(index, image, registry)?;
        let matches = |p: &Platform| {
            let text = p.to_string();
            text == wanted
                || (p.variant.is_some() && format!("{}/{}", p.os, p.architecture) == wanted)
        };
        manifest
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(matches))
            .cloned()
            .ok_or_else(|| SyncError::Platform {
                image: image.to_string(),
                platform: wanted.to_string(),
                available: crate::limits::clip(
                    &manifest
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
                .into_owned(),
            })
    }

    async fn push(
        &self,
        rewrite: &Rewrite,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
        blobs: &Blobs<'_>,
        started: Instant,
    ) -> Result<Synced, SyncError> {
        let to = &rewrite.to;
        let target = self.pool.get(&to.host).await?;
        let stats = Stats::default();
        let existing = target
            .manifest_head(&to.path, to.manifest_reference())
            .await?;
        let up_to_date = existing.is_some_and(|found| found.digest == *digest);
        if !up_to_date {
            let job = Job {
                target: &target,
                repository: &to.path,
                blobs,
                stats: &stats,
                image: &rewrite.from,
            };
            self.copy_manifest(&job, media_type, bytes).await?;
            target
                .manifest_put(
                    &to.path,
                    &to.tag.clone().unwrap_or_else(|| digest.to_string()),
                    media_type,
                    bytes,
                )
                .await?;
            let stored = target
                .manifest_head(&to.path, to.manifest_reference())
                .await?;
            if stored.as_ref().map(|f| &f.digest) != Some(digest) {
                return Err(Error::DigestMismatch {
                    registry: to.host.clone(),
                    what: to.to_string(),
                    expected: digest.to_string(),
                    actual: stored.map_or("nothing".into(), |f| f.digest.to_string()),
                }
                .into());
            }
        }
        Ok(Synced {
            rewrite: rewrite.clone(),
            digest: digest.clone(),
            up_to_date,
            stats,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Copy what a manifest refers to (children of an index, or config and layers), then the
    /// children manifests themselves by digest. The caller puts the top manifest.
    async fn copy_manifest(
        &self,
        job: &Job<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SyncError> {
        let Job {
            target,
            repository,
            blobs,
            image,
            ..
        } = *job;
        let source = match blobs {
            Blobs::Registry { registry, .. } => registry.host(),
            Blobs::Files(_) => "local files",
        };
        let manifest = Manifest::parse(bytes, image, source)?;
        if INDEX_TYPES.contains(&media_type) || !manifest.manifests.is_empty() {
            let Blobs::Registry {
                registry,
                repository: source_repo,
            } = blobs
            else {
                return Err(SyncError::Manifest {
                    image: image.to_string(),
                    detail: "a local image cannot be an index".into(),
                });
            };
            for child in &manifest.manifests {
                let digest = child.digest.to_string();
                if target.manifest_head(repository, &digest).await?.is_some() {
                    continue;
                }
                let (child_type, child_bytes, _) = registry
                    .manifest_get(source_repo, &digest)
                    .await?
                    .ok_or_else(|| SyncError::NotFound(format!("{image}@{digest}")))?;
                Box::pin(self.copy_manifest(job, &child_type, &child_bytes)).await?;
                target
                    .manifest_put(repository, &digest, &child_type, &child_bytes)
                    .await?;
            }
            return Ok(());
        }
        let all: Vec<&Descriptor> = manifest.config.iter().chain(&manifest.layers).collect();
        stream::iter(all.into_iter().map(|d| self.copy_blob(job, d)))
            .buffer_unordered(self.jobs)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn copy_blob(&self, job: &Job<'_>, blob: &Descriptor) -> Result<(), SyncError> {
        let Job {
            target,
            repository,
            blobs,
            stats,
            ..
        } = *job;
        let key = (target.host().to_string(), blob.digest.clone());
        let full = blob.digest.to_string();
        let short = &full[..19];
        if target.blob_exists(repository, &blob.digest).await? {
            stats.present.fetch_add(1, Ordering::Relaxed);
        } else {
            let same_registry = match blobs {
                Blobs::Registry {
                    registry,
                    repository: from,
                } if registry.host() == target.host() => Some(from.clone()),
                _ => None,
            };
            let known = self.known.lock().await.get(&key).cloned();
            let elsewhere = known.or(same_registry).filter(|r| r != repository);
            let mounted = match elsewhere {
                Some(from) => target.blob_mount(repository, &blob.digest, &from).await?,
                None => false,
            };
            if mounted {
                stats.mounted.fetch_add(1, Ordering::Relaxed);
                (self.progress)(&format!(
                    "mounted  {short} {} into {}/{repository}",
                    human(blob.size),
                    target.host()
                ));
            } else {
                let started = Instant::now();
                let file = match blobs {
                    Blobs::Files(files) => files
                        .get(&blob.digest)
                        .cloned()
                        .ok_or_else(|| SyncError::NotFound(full.clone()))?,
                    Blobs::Registry {
                        registry,
                        repository: from,
                    } => {
                        let file = self.scratch.path().join(blob.digest.file_name());
                        registry
                            .blob_download(from, &blob.digest, blob.size, &file, &|_| ())
                            .await?;
                        BlobFile::plain(file)
                    }
                };
                let size = file.size().await?;
                target.blob_upload(repository, &blob.digest, &file).await?;
                if matches!(blobs, Blobs::Registry { .. }) {
                    let _ = tokio::fs::remove_file(&file.path).await;
                }
                stats.uploaded.fetch_add(1, Ordering::Relaxed);
                stats.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
                let rate = size as f64 / started.elapsed().as_secs_f64().max(1e-3);
                (self.progress)(&format!(
                    "uploaded {short} {} to {}/{repository} ({}/s)",
                    human(size),
                    target.host(),
                    human(rate as u64)
                ));
            }
        }
        self.known.lock().await.insert(key, repository.to_string());
        Ok(())
    }
}
