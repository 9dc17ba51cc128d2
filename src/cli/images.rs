//! `forge images rewrite`, `forge registry check`, `forge registry sync`: where the edge host
//! pulls each image from, whether it is there, and putting it there.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::output::{self, Exit, ExitStatus, Format, Shape};
use crate::engine;
use crate::limits::FileKind;
use crate::registry::client::{Retry, DEADLINE};
use crate::registry::credentials::DockerCredentials;
use crate::registry::rewrite::{Rewrite, Rewriter};
use crate::registry::sync::{Synced, Syncer};
use crate::registry::{self, Policy, Pool, Presence};
use crate::secret::Redactor;
use crate::units::human;
use crate::validate::{self, Request};

#[derive(Subcommand)]
pub(super) enum ImagesCommand {
    /// Print each image's rewritten reference (FROM -> TO).
    Rewrite(ImagesArgs),
}

#[derive(Subcommand)]
pub(super) enum RegistryCommand {
    /// Check that every rewritten reference exists; exit 1 listing what is missing.
    Check(CheckArgs),
    /// Copy every image to its rewritten location.
    Sync(SyncArgs),
}

/// Which images, and the user-data that says where they are pulled from.
#[derive(Args)]
pub(super) struct ImagesArgs {
    /// Edge installer user-data (#cloud-config) with the external registry settings.
    #[arg(long, value_name = "FILE")]
    user_data: PathBuf,
    /// Cluster profile: adds every image its packs reference, and the OS pack's system.uri.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// File listing images, one per line (# comments).
    #[arg(long, value_name = "LIST")]
    from_file: Option<PathBuf>,
    /// Images (references as in a pack: nginx:1.25, quay.io/org/app@sha256:...).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How to reach registries beyond what the user-data says.
#[derive(Args)]
pub(in crate::cli) struct AccessArgs {
    /// Extra CA certificate (PEM) to trust for every registry; repeatable.
    #[arg(long, value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// Username for registries the user-data gives no credentials for.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read that user's password from standard input (never pass it as an argument).
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Seconds one registry request may take, retries included (uploads aside).
    #[arg(long, value_name = "SECONDS", default_value_t = DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    registry_timeout: u64,
}

#[derive(Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    images: ImagesArgs,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The local Docker Engine (the image as tagged there, by its original reference).
    Docker,
    /// The image's original registry.
    Registry,
}

#[derive(Args)]
pub(super) struct SyncArgs {
    #[command(flatten)]
    images: ImagesArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// Where the images come from.
    #[arg(long, value_enum)]
    from: Source,
    /// Copy only this platform of a multi-platform image (e.g. linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

/// The validated inputs of an image command.
struct Prepared {
    rewrites: Vec<Rewrite>,
    rewriter: Rewriter,
    redactor: Redactor,
}

/// Validate the inputs and rewrite every requested image; problems are printed and stop the
/// command with exit code 1.
fn prepare(args: &ImagesArgs) -> Result<Prepared> {
    let request = Request {
        user_data: Some(args.user_data.clone()),
        profile: args.profile.clone(),
        images: args.images.clone(),
        image_list: args.from_file.clone(),
        ..Request::default()
    };
    let outcome = validate::run(&request).context("the inputs could not be read")?;
    if !outcome.report.diagnostics.is_empty() {
        output::report(&outcome.redactor, &outcome.report);
    }
    if outcome.report.errors() > 0 {
        return Err(Exit::failure());
    }
    if outcome.images.is_empty() {
        bail!("no images: give IMAGE arguments, --from-file LIST or --profile FILE");
    }
    let rewriter = outcome.rewriter.context("user-data was not parsed")?;
    Ok(Prepared {
        rewrites: outcome.rewrites,
        rewriter,
        redactor: outcome.redactor,
    })
}

pub(super) fn rewrite(args: ImagesArgs) -> Result<ExitStatus> {
    let Prepared {
        rewrites, redactor, ..
    } = prepare(&args)?;
    match args.format {
        Format::Json => {
            let list: Vec<_> = rewrites.iter().map(|r| json!({"from": r.from.to_string(), "to": r.to.to_string(), "registry": r.registry})).collect();
            output::json(&redactor, Shape::ImagesRewrite, json!({ "images": list }))?;
        }
        Format::Text => {
            let lines: String = rewrites
                .iter()
                .map(|r| format!("{} -> {}\n", r.from, r.to))
                .collect();
            output::text(&redactor, &lines)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Validated inputs and a pool of registry connections that use the user-data's credentials
/// and certificates, the command-line ones, and the Docker config.
fn connect(images: &ImagesArgs, access: &AccessArgs) -> Result<(Vec<Rewrite>, Redactor, Pool)> {
    let Prepared {
        rewrites,
        rewriter,
        mut redactor,
    } = prepare(images)?;
    let policy = policy(&rewriter, access)?;
    if let Some((_, password)) = &policy.credentials {
        redactor.add(password);
    }
    Ok((rewrites, redactor, Pool::new(policy)))
}

pub(super) fn policy(rewriter: &Rewriter, access: &AccessArgs) -> Result<Policy> {
    let credentials = match &access.username {
        Some(user) => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            Some((
                user.clone(),
                password.trim_end_matches(['\n', '\r']).to_string(),
            ))
        }
        None => None,
    };
    let extra_ca = access
        .registry_ca
        .iter()
        .map(|p| Ok(validate::read(FileKind::Certificates, p)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Policy {
        declared: rewriter.registries.clone(),
        docker: DockerCredentials::load(&crate::config::Environment::of_process())?,
        credentials,
        extra_ca,
        retry: Retry {
            deadline: Duration::from_secs(access.registry_timeout),
            on_wait: |registry, waited| {
                let said = format!("waiting for {registry} ({} s)…", waited.as_secs());
                output::note(&Redactor::new(), &said);
            },
            ..Retry::default()
        },
    })
}

/// Run a job on a runtime, stopping cleanly on SIGINT (Ctrl-C), SIGTERM and SIGHUP: the job is
/// dropped, which removes its containers, work directories and partial files, and the exit
/// code is 128 + the signal number (130, 143, 129).
pub(super) fn run_async<T>(job: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut stops = Vec::new();
        for (kind, name) in [
            (SignalKind::interrupt(), "interrupted"),
            (SignalKind::terminate(), "terminated"),
            (SignalKind::hangup(), "hung up"),
        ] {
            let stream = signal(kind).context("cannot watch for signals")?;
            stops.push((stream, kind.as_raw_value(), name));
        }
        let stopped =
            futures_util::future::select_all(stops.iter_mut().map(|(stream, number, name)| {
                Box::pin(async move {
                    stream.recv().await;
                    (*number, *name)
                })
            }));
        let mut job = Box::pin(job);
        let (number, name) = tokio::select! {
            result = &mut job => return result,
            ((number, name), _, _) = stopped => (number, name),
        };
        output::error(&Redactor::new(), &format!("{name}: stopped, cleaning up"));
        // Dropping the job removes what it holds (containers, work directory, partial files).
        drop(job);
        crate::engine::leftovers::sweep_after_stop(&crate::config::Environment::of_process()).await;
        Err(Exit(ExitStatus::Stopped(number as u8)).into())
    })
}

pub(super) fn check(args: CheckArgs) -> Result<ExitStatus> {
    let (rewrites, redactor, pool) = connect(&args.images, &args.access)?;
    let results = run_async(async { Ok(registry::check(&pool, &rewrites).await) })?;
    match args.images.format {
        Format::Json => {
            let list: Vec<_> = rewrites
                .iter()
                .zip(&results)
                .map(|(r, p)| {
                    let (digest, media_type, error) = match p {
                        Presence::Present(f) => (Some(f.digest.clone()), Some(f.media_type.clone()), None),
                        Presence::Unauthorized(e) | Presence::Failed(e) => (None, None, Some(e.clone())),
                        Presence::Missing => (None, None, None),
                    };
                    json!({"from": r.from.to_string(), "image": r.to.to_string(), "status": p.label(), "digest": digest, "media_type": media_type, "error": error})
                })
                .collect();
            output::json(&redactor, Shape::RegistryCheck, json!({ "images": list }))?;
        }
        Format::Text => {
            let width = rewrites
                .iter()
                .map(|r| r.to.to_string().len())
                .max()
                .unwrap_or(0);
            let mut lines = vec![format!("{:12}  {:width$}  DIGEST", "STATUS", "IMAGE")];
            for (r, p) in rewrites.iter().zip(&results) {
                let detail = match p {
                    Presence::Present(f) => f.digest.to_string(),
                    Presence::Missing => String::new(),
                    Presence::Unauthorized(e) | Presence::Failed(e) => e.clone(),
                };
                lines.push(
                    format!("{:12}  {:width$}  {detail}", p.label(), r.to.to_string())
                        .trim_end()
                        .to_string(),
                );
            }
            lines.push(String::new());
            output::text(&redactor, &lines.join("\n"))?;
        }
    }
    let absent: Vec<String> = rewrites
        .iter()
        .zip(&results)
        .filter(|(_, p)| !matches!(p, Presence::Present(_)))
        .map(|(r, p)| format!("{}: {}", p.label(), r.to))
        .collect();
    if absent.is_empty() {
        return Ok(ExitStatus::Success);
    }
    let said = format!(
        "{} of {} images are not available:\n  {}",
        absent.len(),
        rewrites.len(),
        absent.join("\n  ")
    );
    output::error(&redactor, &said);
    Ok(ExitStatus::Failure)
}

pub(super) fn sync(args: SyncArgs) -> Result<ExitStatus> {
    let (rewrites, redactor, pool) = connect(&args.images, &args.access)?;
    let log = |line: &str| output::note(&redactor, &format!("  {line}"));
    let syncer = Syncer::new(&pool, args.platform.clone(), usize::from(args.jobs), &log)?;
    let layers = engine::LayerCache::new(&syncer.scratch().join("layers"));
    let job = async {
        let docker = match args.from {
            Source::Docker => {
                Some(engine::connect(&crate::config::Environment::of_process()).await?)
            }
            Source::Registry => None,
        };
        let mut done = Vec::new();
        for (i, rewrite) in rewrites.iter().enumerate() {
            output::note(&redactor, &format!("{} -> {}", rewrite.from, rewrite.to));
            let synced = match &docker {
                None => syncer.from_registry(rewrite).await?,
                Some(docker) => {
                    let local = rewrite.from.to_string();
                    let id = engine::image_id(docker, &local).await?;
                    if syncer.has_config(rewrite, &id).await? {
                        done.push((rewrite.clone(), None));
                        continue;
                    }
                    let dir = syncer.scratch().join(format!("image-{i}"));
                    tokio::fs::create_dir_all(&dir).await?;
                    let image = engine::export(docker, &local, &dir, &layers).await?;
                    let synced = syncer.from_files(rewrite, &image).await?;
                    tokio::fs::remove_dir_all(&dir).await?;
                    synced
                }
            };
            done.push((rewrite.clone(), Some(synced)));
        }
        Ok::<_, anyhow::Error>(done)
    };
    let done = run_async(job)?;
    match args.images.format {
        Format::Json => {
            let list: Vec<_> = done.iter().map(|(r, s)| sync_json(r, s.as_ref())).collect();
            output::json(&redactor, Shape::RegistrySync, json!({ "images": list }))?;
        }
        Format::Text => {
            let lines: String = done
                .iter()
                .map(|(r, s)| sync_line(r, s.as_ref()) + "\n")
                .collect();
            output::text(&redactor, &lines)?;
        }
    }
    Ok(ExitStatus::Success)
}

fn counts(s: &Synced) -> [u64; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        s.stats.uploaded.load(Relaxed),
        s.stats.uploaded_bytes.load(Relaxed),
        s.stats.present.load(Relaxed),
        s.stats.mounted.load(Relaxed),
    ]
}

fn sync_line(rewrite: &Rewrite, synced: Option<&Synced>) -> String {
    match synced {
        Some(s) if !s.up_to_date => {
            let [uploaded, bytes, present, mounted] = counts(s);
            format!(
                "synced {} {}: {uploaded} blobs uploaded ({}), {present} already there, {mounted} mounted, in {:.1} s",
                rewrite.to, s.digest, human(bytes), s.seconds
            )
        }
        Some(s) => format!("up to date {} {}", rewrite.to, s.digest),
        None => format!("up to date {}", rewrite.to),
    }
}

fn sync_json(rewrite: &Rewrite, synced: Option<&Synced>) -> serde_json::Value {
    let up_to_date = synced.is_none_or(|s| s.up_to_date);
    let [uploaded, bytes, present, mounted] = synced.map(counts).unwrap_or_default();
    json!({
        "from": rewrite.from.to_string(),
        "to": rewrite.to.to_string(),
        "digest": synced.map(|s| s.digest.clone()),
        "up_to_date": up_to_date,
        "blobs_uploaded": uploaded,
        "bytes_uploaded": bytes,
        "blobs_present": present,
        "blobs_mounted": mounted,
        "seconds": synced.map(|s| s.seconds),
    })
}
