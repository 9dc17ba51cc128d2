//! `forge images rewrite`, `forge registry check`, `forge registry sync` and `forge iso
//! push`: where the edge host pulls each image from, whether it is there, and putting it
//! there; and how forge reaches registries ([`Access`]), which the builds share.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{block_on, Error};
use crate::config::Environment;
use crate::engine;
use crate::limits::FileKind;
use crate::oci::Digest;
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use crate::registry::client::Retry;
use crate::registry::credentials::DockerCredentials;
use crate::registry::rewrite::{Rewrite, Rewriter};
use crate::registry::sync::{Synced, Syncer};
use crate::registry::{self, Policy, Pool, Presence};
use crate::secret::{Credentials, Redactor};
use crate::validate::{self, Request};

/// How forge reaches registries beyond what the user-data says.
#[derive(Debug, Clone)]
pub struct Access {
    /// Extra CA certificates (PEM files) trusted for every registry.
    pub registry_ca: Vec<PathBuf>,
    /// For registries the user-data gives no credentials for.
    pub credentials: Option<Credentials>,
    /// How long one registry request may take, retries included (uploads aside).
    pub timeout: Duration,
}

impl Access {
    /// The policy for registries: the user-data's registries (`rewriter`), these flags, and
    /// the Docker config; a request still waiting says so through `progress` every 10 s.
    pub fn policy(
        &self,
        rewriter: &Rewriter,
        env: &Environment,
        progress: &Arc<Progress>,
    ) -> Result<Policy, Error> {
        if let Some(credentials) = &self.credentials {
            let mut redactor = Redactor::new();
            redactor.add(&credentials.password);
            progress.tell(Event::Secrets(&redactor));
        }
        let extra_ca = self
            .registry_ca
            .iter()
            .map(|p| validate::read(FileKind::Certificates, p))
            .collect::<Result<Vec<_>, _>>()?;
        let waiting = Arc::clone(progress);
        Ok(Policy {
            declared: rewriter.registries.clone(),
            docker: DockerCredentials::load(env)?,
            credentials: self.credentials.clone(),
            extra_ca,
            proxies: env.proxies.clone(),
            retry: Retry {
                deadline: self.timeout,
                on_wait: Arc::new(move |registry: &str, waited: Duration| {
                    waiting.note(&format!("waiting for {registry} ({} s)…", waited.as_secs()))
                }),
                ..Retry::default()
            },
        })
    }
}

/// Which images, and the user-data that says where they are pulled from.
#[derive(Debug, Clone)]
pub struct ImagesRequest {
    pub user_data: PathBuf,
    /// A cluster profile: every image its packs reference, and the OS pack's `system.uri`.
    pub profile: Option<PathBuf>,
    /// A file listing images, one per line.
    pub from_file: Option<PathBuf>,
    pub images: Vec<String>,
}

/// One image and where the edge host pulls it from.
#[derive(Debug, Clone, Serialize)]
pub struct Rewritten {
    pub from: String,
    pub to: String,
    /// The declared registry whose credentials apply.
    pub registry: Option<String>,
}

/// `forge images rewrite`.
#[derive(Debug, Serialize)]
pub struct RewriteOutcome {
    pub images: Vec<Rewritten>,
}

/// The validated inputs of an image command: each image's rewrite, and the rules.
struct Prepared {
    rewrites: Vec<Rewrite>,
    rewriter: Rewriter,
}

/// Validate the inputs and rewrite every requested image.
fn prepare(request: &ImagesRequest, progress: &Progress) -> Result<Prepared, Error> {
    let outcome = validate::run(&Request {
        user_data: Some(request.user_data.clone()),
        profile: request.profile.clone(),
        images: request.images.clone(),
        image_list: request.from_file.clone(),
        ..Request::default()
    })?;
    progress.tell(Event::Secrets(&outcome.redactor));
    if !outcome.report.diagnostics.is_empty() {
        progress.tell(Event::Findings(&outcome.report));
    }
    if outcome.report.errors() > 0 {
        return Err(Error::Invalid);
    }
    if outcome.images.is_empty() {
        return Err(Error::Usage(
            "no images: give IMAGE arguments, --from-file LIST or --profile FILE".into(),
        ));
    }
    Ok(Prepared {
        rewrites: outcome.rewrites,
        rewriter: outcome.rewriter.unwrap_or_else(Rewriter::none),
    })
}

/// `forge images rewrite`: where the edge host pulls each image from.
pub fn rewrite(request: &ImagesRequest, progress: &Progress) -> Result<RewriteOutcome, Error> {
    let prepared = prepare(request, progress)?;
    let images = prepared
        .rewrites
        .iter()
        .map(|r| Rewritten {
            from: r.from.to_string(),
            to: r.to.to_string(),
            registry: r.registry.clone(),
        })
        .collect();
    Ok(RewriteOutcome { images })
}

/// One image of `forge registry check`.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub from: String,
    pub image: String,
    /// `present`, `missing`, `unauthorized` or `failed`.
    pub status: &'static str,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub error: Option<String>,
}

/// `forge registry check`.
#[derive(Debug, Serialize)]
pub struct CheckOutcome {
    pub images: Vec<Checked>,
}

impl CheckOutcome {
    /// The images that are not there, `STATUS: IMAGE`.
    pub fn absent(&self) -> Vec<String> {
        self.images
            .iter()
            .filter(|i| i.status != "present")
            .map(|i| format!("{}: {}", i.status, i.image))
            .collect()
    }
}

/// `forge registry check`: whether every rewritten reference exists.
pub fn check(
    request: &ImagesRequest,
    access: &Access,
    env: &Environment,
    progress: &Arc<Progress>,
) -> Result<CheckOutcome, Error> {
    let prepared = prepare(request, progress)?;
    let pool = Pool::new(access.policy(&prepared.rewriter, env, progress)?);
    let results = block_on(env, async {
        Ok(registry::check(&pool, &prepared.rewrites).await)
    })?;
    let images = prepared
        .rewrites
        .iter()
        .zip(results)
        .map(|(r, presence)| {
            let (digest, media_type, error) = match &presence {
                Presence::Present(f) => (Some(f.digest.clone()), Some(f.media_type.clone()), None),
                Presence::Unauthorized(e) | Presence::Failed(e) => (None, None, Some(e.clone())),
                Presence::Missing => (None, None, None),
            };
            Checked {
                from: r.from.to_string(),
                image: r.to.to_string(),
                status: presence.label(),
                digest,
                media_type,
                error,
            }
        })
        .collect();
    Ok(CheckOutcome { images })
}

/// Where `forge registry sync` takes the images from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The local Docker Engine (the image as tagged there, by its original reference).
    Docker,
    /// The image's original registry.
    Registry,
}

/// `forge registry sync`.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub images: ImagesRequest,
    pub from: Source,
    /// Only this platform of a multi-platform image.
    pub platform: Option<String>,
    /// Blobs copied at once.
    pub jobs: usize,
}

/// One image copied (or found in place).
#[derive(Debug, Serialize)]
pub struct SyncedImage {
    pub from: String,
    pub to: String,
    pub digest: Option<Digest>,
    pub up_to_date: bool,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_present: u64,
    pub blobs_mounted: u64,
    pub seconds: Option<f64>,
}

impl SyncedImage {
    fn new(rewrite: &Rewrite, synced: Option<&Synced>) -> SyncedImage {
        let count = |n: fn(&Synced) -> u64| synced.map(n).unwrap_or_default();
        SyncedImage {
            from: rewrite.from.to_string(),
            to: rewrite.to.to_string(),
            digest: synced.map(|s| s.digest.clone()),
            up_to_date: synced.is_none_or(|s| s.up_to_date),
            blobs_uploaded: count(|s| s.stats.uploaded.load(Relaxed)),
            bytes_uploaded: count(|s| s.stats.uploaded_bytes.load(Relaxed)),
            blobs_present: count(|s| s.stats.present.load(Relaxed)),
            blobs_mounted: count(|s| s.stats.mounted.load(Relaxed)),
            seconds: synced.map(|s| s.seconds),
        }
    }
}

/// `forge registry sync`.
#[derive(Debug, Serialize)]
pub struct SyncOutcome {
    pub images: Vec<SyncedImage>,
}

/// `forge registry sync`: copy every image to its rewritten location.
pub fn sync(
    request: &SyncRequest,
    access: &Access,
    env: &Environment,
    progress: &Arc<Progress>,
) -> Result<SyncOutcome, Error> {
    let prepared = prepare(&request.images, progress)?;
    let pool = Pool::new(access.policy(&prepared.rewriter, env, progress)?);
    let log = |line: &str| progress.note(&format!("  {line}"));
    let syncer = Syncer::new(&pool, request.platform.clone(), request.jobs, &log)?;
    let layers = engine::LayerCache::new(&syncer.scratch().join("layers"));
    let job = async {
        let docker = match request.from {
            Source::Docker => Some(engine::connect(env).await?),
            Source::Registry => None,
        };
        let mut done = Vec::new();
        for (i, rewrite) in prepared.rewrites.iter().enumerate() {
            progress.note(&format!("{} -> {}", rewrite.from, rewrite.to));
            let synced = match &docker {
                None => syncer.from_registry(rewrite).await?,
                Some(docker) => {
                    let local = rewrite.from.to_string();
                    let id = engine::image_id(docker, &local).await?;
                    if syncer.has_config(rewrite, &id).await? {
                        done.push(SyncedImage::new(rewrite, None));
                        continue;
                    }
                    let dir = syncer.scratch().join(format!("image-{i}"));
                    let scratch = |source| Error::Io {
                        what: format!("the scratch directory {}", dir.display()),
                        source,
                    };
                    tokio::fs::create_dir_all(&dir).await.map_err(scratch)?;
                    let image = engine::export(docker, &local, &dir, &layers).await?;
                    let synced = syncer.from_files(rewrite, &image).await?;
                    tokio::fs::remove_dir_all(&dir).await.map_err(scratch)?;
                    synced
                }
            };
            done.push(SyncedImage::new(rewrite, Some(&synced)));
        }
        Ok(done)
    };
    Ok(SyncOutcome {
        images: block_on(env, job)?,
    })
}

/// `forge iso push`.
#[derive(Debug, Clone)]
pub struct IsoPushRequest {
    pub iso: PathBuf,
    pub reference: String,
    /// The image's architecture.
    pub arch: crate::config::Arch,
}

/// An ISO pushed as an image.
#[derive(Debug, Serialize)]
pub struct IsoPushOutcome {
    pub reference: String,
    pub digest: Digest,
    pub up_to_date: bool,
    pub uploaded_bytes: u64,
    #[serde(skip)]
    pub seconds: f64,
}

/// `forge iso push`: the ISO as CanvOS's `+iso-disk-image` image.
pub fn iso_push(
    request: &IsoPushRequest,
    access: &Access,
    env: &Environment,
    progress: &Arc<Progress>,
) -> Result<IsoPushOutcome, Error> {
    let iso = &request.iso;
    if !iso.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a file; build the ISO with `forge build` first",
            iso.display()
        )));
    }
    let reference = Reference::parse(&request.reference).map_err(|e| {
        Error::Usage(format!(
            "`{}` is not an image reference (REGISTRY/REPOSITORY:TAG): {e}",
            crate::limits::clip(&request.reference)
        ))
    })?;
    let epoch = env.epoch()?;
    let pool = Pool::new(access.policy(&Rewriter::none(), env, progress)?);
    let log = |line: &str| progress.note(&format!("  {line}"));
    let syncer = Syncer::new(&pool, None, 1, &log)?;
    progress.note(&format!("pushing {} to {reference}", iso.display()));
    let arch = request.arch.as_str();
    let synced = block_on(env, async {
        Ok(crate::iso::artifact::push(&syncer, iso, &reference, arch, epoch).await?)
    })?;
    Ok(IsoPushOutcome {
        reference: reference.to_string(),
        digest: synced.digest.clone(),
        up_to_date: synced.up_to_date,
        uploaded_bytes: synced.stats.uploaded_bytes.load(Relaxed),
        seconds: synced.seconds,
    })
}

impl RewriteOutcome {
    /// `FROM -> TO`, one image a line.
    pub fn text(&self) -> String {
        let line = |r: &Rewritten| format!("{} -> {}\n", r.from, r.to);
        self.images.iter().map(line).collect()
    }
}

impl CheckOutcome {
    /// A table: status, image, digest or what went wrong.
    pub fn text(&self) -> String {
        let width = self.images.iter().map(|i| i.image.len()).max().unwrap_or(0);
        let mut lines = vec![format!("{:12}  {:width$}  DIGEST", "STATUS", "IMAGE")];
        for image in &self.images {
            let detail = match (&image.digest, &image.error) {
                (Some(digest), _) => digest.to_string(),
                (None, Some(error)) => error.clone(),
                (None, None) => String::new(),
            };
            let line = format!("{:12}  {:width$}  {detail}", image.status, image.image);
            lines.push(line.trim_end().to_string());
        }
        lines.push(String::new());
        lines.join("\n")
    }
}

impl SyncOutcome {
    /// Each image: what was copied, or that it was up to date.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.images {
            out.push_str(&match (&s.digest, s.up_to_date) {
                (Some(digest), false) => format!(
                    "synced {} {digest}: {} blobs uploaded ({}), {} already there, {} mounted, in {:.1} s\n",
                    s.to,
                    s.blobs_uploaded,
                    crate::units::human(s.bytes_uploaded),
                    s.blobs_present,
                    s.blobs_mounted,
                    s.seconds.unwrap_or_default()
                ),
                (Some(digest), true) => format!("up to date {} {digest}\n", s.to),
                (None, _) => format!("up to date {}\n", s.to),
            });
        }
        out
    }
}

impl IsoPushOutcome {
    /// Where the ISO went, and what was uploaded.
    pub fn text(&self) -> String {
        let how = match self.up_to_date {
            true => "already there".to_string(),
            false => format!(
                "{} uploaded in {:.1} s",
                crate::units::human(self.uploaded_bytes),
                self.seconds
            ),
        };
        format!("{}@{}  ({how})\n", self.reference, self.digest)
    }
}
