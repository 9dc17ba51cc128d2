//! Running a plan on the Docker Engine: the base image, then the provider images `--jobs` at a
//! time, then the installer image; a step whose image already carries the same input hash is
//! reused; provider images are pushed through the registry client when asked; the manifest and
//! the profile snippet are written at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::config::Resolved;
use crate::engine::{self, EngineError};
use crate::iso::Mastered;
use crate::plan::{Context, Facts, Kind, Plan, Step, INPUT_HASH_LABEL};
use crate::reference::Reference;
use crate::registry::rewrite::Rewrite;
use crate::registry::sync::{SyncError, Syncer};
use crate::render::{context, write_context, RenderError, Sources, Templates};
use crate::report::{write_output, Progress};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("pushing {image}: {source}")]
    Push {
        image: String,
        source: Box<SyncError>,
    },
    #[error("{0}")]
    Host(String),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An image the build made (or found already built).
#[derive(Debug, Clone)]
pub struct Built {
    pub step: Step,
    pub image_id: String,
    pub size: u64,
    pub cached: bool,
    /// Manifest digest in the registry, when pushed.
    pub digest: Option<String>,
    /// Bytes uploaded by the push (blobs the registry already had are not sent).
    pub pushed_bytes: Option<u64>,
}

/// The build arguments every step gets: the proxies, which Docker keeps out of image history.
pub fn build_args(settings: &Resolved) -> HashMap<String, String> {
    let mut args = HashMap::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"] {
        if let Some(value) = settings.get(name) {
            args.insert(name.to_string(), value.to_string());
            args.insert(name.to_ascii_lowercase(), value.to_string());
        }
    }
    args
}

/// The proxy arguments a Dockerfile may get without a password reaching its history: Docker
/// keeps its predefined proxy arguments out of the history unless the Dockerfile declares
/// them (`ARG HTTP_PROXY`, as CanvOS's Dockerfile does). A declared one that holds a password
/// is left out, its other spelling (`http_proxy`) carrying the proxy to `RUN` steps; when both
/// spellings are declared the build stops.
fn history_safe(
    dockerfile: &str,
    args: &HashMap<String, String>,
) -> Result<HashMap<String, String>, BuildError> {
    let declared: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ARG "))
        .filter_map(|l| l.split(['=', ' ']).next())
        .collect();
    let mut safe = args.clone();
    for (name, value) in args {
        if !declared.contains(&name.as_str()) || !crate::config::has_password(value) {
            continue;
        }
        let other = if name.chars().any(|c| c.is_ascii_uppercase()) {
            name.to_ascii_lowercase()
        } else {
            name.to_ascii_uppercase()
        };
        if declared.contains(&other.as_str()) {
            return Err(BuildError::Host(format!(
                "the Dockerfile declares ARG {name} and ARG {other}, which write their values into the image history, and the proxy URL holds a password: remove those ARG lines (Docker passes the proxies to RUN steps without them) or use a proxy without a password"
            )));
        }
        safe.remove(name);
    }
    Ok(safe)
}

/// The engine must run the architecture of the artifacts: checked before anything is pulled.
pub async fn check_arch(docker: &Docker, settings: &Resolved) -> Result<(), BuildError> {
    let info = docker
        .info()
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?;
    let engine_arch = info.architecture.unwrap_or_default();
    let wanted = settings.get("ARCH").unwrap_or("amd64");
    let native = match engine_arch.as_str() {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        other => other,
    };
    if wanted != native {
        return Err(BuildError::Host(format!(
            "ARCH={wanted} artifacts need an {wanted} Docker Engine, and this one runs on {engine_arch}; build on an {wanted} host (point DOCKER_HOST at one) or set ARCH={native}"
        )));
    }
    Ok(())
}

/// The check that stops a build before anything is built: the engine's free disk space
/// against a rough need of the plan.
pub async fn check_host(docker: &Docker, plan: &Plan) -> Result<(), BuildError> {
    let info = docker
        .info()
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?;
    let local = std::env::var("DOCKER_HOST").map_or(true, |h| h.starts_with("unix://"));
    if let (true, Some(root)) = (local, info.docker_root_dir) {
        let need = disk_need(docker, plan).await;
        if let Ok(free) = fs4::available_space(&root) {
            if free < need {
                return Err(BuildError::Host(format!(
                    "the Docker data root {root} has {} free, and this build needs about {}; free space (docker system prune) or move the data root",
                    crate::registry::sync::human(free),
                    crate::registry::sync::human(need)
                )));
            }
        }
    }
    Ok(())
}

/// About what the plan writes: its source images once more per step, 1 GiB when unknown.
async fn disk_need(docker: &Docker, plan: &Plan) -> u64 {
    let mut need = 0;
    for step in &plan.steps {
        for image in step.from_images() {
            need += match docker.inspect_image(&image).await {
                Ok(i) => i.size.unwrap_or(0).max(0) as u64 / 4,
                Err(_) => 1 << 28,
            };
        }
    }
    need.max(1 << 30)
}

/// What the plan needs to know about the source images (on an engine of the right
/// architecture), found as CanvOS finds it: the base
/// image's systemd version (unless bundling is forced) and whether the stylus framework has
/// `/etc/kairos/80_stylus.yaml`. Pulls the two images when the engine does not have them.
pub async fn facts(
    docker: &Docker,
    settings: &Resolved,
    sources: &Sources,
    progress: &Progress,
) -> Result<Facts, BuildError> {
    check_arch(docker, settings).await?;
    let (base, stylus) = (sources.get("base_image"), sources.get("agent_image"));
    let credentials = engine::credentials_for(&[base.to_string(), stylus.to_string()]).await?;
    let systemd = if settings.flag("BUNDLE_K8S_AND_AGENT_PROVIDER") {
        None
    } else {
        progress.start("probe", "probing", base);
        engine::ensure_image(docker, base, &credentials).await?;
        let version = engine::systemd_version(docker, base).await?;
        progress.finish("probe", "systemd", &format!("{version} in {base}"));
        Some(version)
    };
    engine::ensure_image(docker, stylus, &credentials).await?;
    let stylus_config = engine::has_path(docker, stylus, "/etc/kairos/80_stylus.yaml").await?;
    Ok(Facts {
        systemd,
        stylus_config,
    })
}

/// Build every step of the plan; build contexts are written below `work` (the run's private
/// directory) and removed after each build.
pub async fn run(
    docker: &Docker,
    plan: &Plan,
    args: &HashMap<String, String>,
    jobs: usize,
    work: &Path,
    progress: &Progress,
) -> Result<Vec<Built>, BuildError> {
    let dir = &work.join("contexts");
    let mut built = Vec::new();
    for step in plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind, Kind::Os | Kind::Base))
    {
        built.push(build_step(docker, step, args, dir, progress).await?);
    }
    let providers = plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind, Kind::Provider { .. }));
    let provider_images: Result<Vec<Built>, BuildError> =
        stream::iter(providers.map(|step| build_step(docker, step, args, dir, progress)))
            .buffered(jobs.max(1))
            .try_collect()
            .await;
    // Once no provider build runs: their luet stages may share images.
    engine::remove_secret_images(docker).await;
    built.append(&mut provider_images?);
    if let Some(installer) = plan.steps.iter().find(|s| s.kind == Kind::Installer) {
        built.push(build_step(docker, installer, args, dir, progress).await?);
    }
    Ok(built)
}

async fn build_step(
    docker: &Docker,
    step: &Step,
    args: &HashMap<String, String>,
    scratch: &Path,
    progress: &Progress,
) -> Result<Built, BuildError> {
    let name = step.name();
    let key = cache_key(docker, step).await?;
    let existing = engine::labels(docker, &step.tag).await?;
    let cached = existing.as_ref().and_then(|l| l.get(INPUT_HASH_LABEL)) == Some(&key);
    if !cached {
        progress.start(&name, "building", &step.tag);
        let written = scratch.join(step.input_hash.replace(':', "-"));
        let (dir, exclude) = match &step.context {
            Context::Files(files) => {
                write_context(&written, &step.dockerfile, files)?;
                (written.as_path(), &[][..])
            }
            Context::Directory { root, exclude } => (root.as_path(), exclude.as_slice()),
        };
        let build = engine::Build {
            context: dir,
            exclude,
            tag: &step.tag,
            labels: step
                .labels
                .clone()
                .into_iter()
                .chain([(INPUT_HASH_LABEL.to_string(), key.clone())])
                .collect(),
            build_args: history_safe(&step.dockerfile, args)?
                .into_iter()
                .chain(step.build_args.clone())
                .collect(),
            credentials: engine::credentials_for(&step.from_images()).await?,
        };
        let result = engine::build(docker, build, &|line| progress.line(&name, line)).await;
        let _ = std::fs::remove_dir_all(&written);
        if let Err(e) = result {
            progress.finish(&name, "failed", &step.tag);
            return Err(e.into());
        }
    }
    let inspect = docker
        .inspect_image(&step.tag)
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?;
    progress.finish(&name, if cached { "cached" } else { "built" }, &step.tag);
    // The manifest records the full cache key, as the image's label does.
    let mut step = step.clone();
    step.input_hash = key;
    Ok(Built {
        step,
        image_id: inspect.id.unwrap_or_default(),
        size: inspect.size.unwrap_or(0).max(0) as u64,
        cached,
        digest: None,
        pushed_bytes: None,
    })
}

/// The cache key of a step: its input hash and the IDs of the images it starts `FROM` (a base
/// image retagged with new content invalidates the step); images the engine does not have yet
/// count by reference.
async fn cache_key(docker: &Docker, step: &Step) -> Result<String, BuildError> {
    let mut key = step.input_hash.clone();
    for from in step.from_images() {
        let id = match engine::image_id(docker, &from).await {
            Ok(id) => id,
            Err(EngineError::NoSuchImage(_)) => from,
            Err(e) => return Err(e.into()),
        };
        key.push('\n');
        key.push_str(&id);
    }
    Ok(crate::registry::client::sha256_digest(key.as_bytes()))
}

/// Push the provider images to their registry; fills in their digests.
pub async fn push(
    docker: &Docker,
    syncer: &Syncer<'_>,
    built: &mut [Built],
    progress: &Progress,
) -> Result<(), BuildError> {
    let layers = engine::LayerCache::new(&syncer.scratch().join("layers"));
    for (i, image) in built
        .iter_mut()
        .enumerate()
        .filter(|(_, b)| matches!(b.step.kind, Kind::Provider { .. }))
    {
        let push_error = |source: SyncError| BuildError::Push {
            image: image.step.tag.clone(),
            source: Box::new(source),
        };
        let reference = Reference::parse(&image.step.tag)
            .map_err(|e| BuildError::Host(format!("{}: {e}", image.step.tag)))?;
        let target = Rewrite {
            from: reference.clone(),
            to: reference,
            registry: None,
        };
        let name = format!("push {}", image.step.name());
        progress.start(&name, "pushing", &image.step.tag);
        let dir = syncer.scratch().join(format!("push-{i}"));
        std::fs::create_dir_all(&dir).map_err(|source| BuildError::Output {
            path: dir.clone(),
            source,
        })?;
        let local = engine::export(docker, &image.step.tag, &dir, &layers).await?;
        let synced = syncer
            .from_files(&target, &local)
            .await
            .map_err(push_error)?;
        let _ = std::fs::remove_dir_all(&dir);
        progress.finish(
            &name,
            if synced.up_to_date {
                "up to date"
            } else {
                "pushed"
            },
            &synced.digest,
        );
        image.pushed_bytes = Some(
            synced
                .stats
                .uploaded_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        image.digest = Some(synced.digest);
    }
    Ok(())
}

/// Push the ISO as the image CanvOS's `+iso-disk-image` makes (see [`crate::iso::artifact`]),
/// tagged `IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG]`; records where.
pub async fn push_iso(
    syncer: &Syncer<'_>,
    settings: &Resolved,
    iso: &mut Mastered,
    epoch: Option<u64>,
    progress: &Progress,
) -> Result<(), BuildError> {
    let tag = settings
        .iso_image_tag()
        .ok_or_else(|| BuildError::Host("--push-iso needs IMAGE_REGISTRY".into()))?;
    let reference = Reference::parse(&tag).map_err(|e| BuildError::Host(format!("{tag}: {e}")))?;
    progress.start("push iso", "pushing", &tag);
    let arch = settings.get("ARCH").unwrap_or("amd64");
    let synced = crate::iso::artifact::push(syncer, &iso.path, &reference, arch, epoch)
        .await
        .map_err(|source| BuildError::Push {
            image: tag.clone(),
            source: Box::new(source),
        })?;
    let status = if synced.up_to_date {
        "up to date"
    } else {
        "pushed"
    };
    progress.finish("push iso", status, &format!("{tag}@{}", synced.digest));
    iso.pushed = Some((tag, synced.digest));
    Ok(())
}

/// Write `manifest.json` and `profile-snippet.yaml` to `dir`; returns the snippet.
pub fn write_outputs(
    dir: &Path,
    settings: &Resolved,
    templates: &Templates,
    built: &[Built],
    iso: Option<&Mastered>,
) -> Result<String, BuildError> {
    let output_error = |path: PathBuf| move |source| BuildError::Output { path, source };
    let artifacts: Vec<_> = built
        .iter()
        .map(|b| {
            let mut inputs = json!({"input_hash": b.step.input_hash});
            if let Kind::Provider { version } = &b.step.kind {
                inputs["k8s_distribution"] = json!(settings.get("K8S_DISTRIBUTION"));
                inputs["k8s_version"] = json!(version);
            }
            json!({
                "kind": b.step.kind.label(),
                "reference": b.step.tag,
                "image_id": b.image_id,
                "digest": b.digest,
                "pushed_bytes": b.pushed_bytes,
                "size": b.size,
                "cached": b.cached,
                "inputs": inputs,
            })
        })
        .chain(iso.map(|iso| {
            json!({
                "kind": "iso",
                "path": iso.path,
                "sha256": iso.sha256,
                "size": iso.size,
                "checksum_file": iso.checksum_path,
                "reference": iso.pushed.as_ref().map(|(tag, _)| tag),
                "digest": iso.pushed.as_ref().map(|(_, digest)| digest),
                "inputs": {
                    "image": built.iter().find(|b| b.step.kind == Kind::Installer).map(|b| &b.step.tag),
                    "rootfs_bytes": iso.rootfs_bytes,
                    "squashfs_compression": settings.get("SQUASHFS_COMPRESSION"),
                    "efi_loader": iso.efi_loader,
                    "content_bundles": iso.bundles.iter().map(|b| json!({"source": b.source, "size": b.size, "iso_paths": b.parts})).collect::<Vec<_>>(),
                },
            })
        }))
        .collect();
    let manifest = json!({"forge_version": env!("CARGO_PKG_VERSION"), "artifacts": artifacts});
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes") + "\n";
    write_output(dir, "manifest.json", &text).map_err(output_error(dir.join("manifest.json")))?;
    let snippet = templates.render("profile-snippet.yaml", &context(settings))?;
    write_output(dir, "profile-snippet.yaml", &snippet)
        .map_err(output_error(dir.join("profile-snippet.yaml")))?;
    Ok(snippet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_proxy_argument_with_a_password_is_left_out() {
        let args: HashMap<String, String> = [
            ("HTTP_PROXY", "http://bob:s3cret@proxy:3128"),
            ("http_proxy", "http://bob:s3cret@proxy:3128"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("https_proxy", "http://proxy:3128"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let canvos = "ARG BASE\nFROM $BASE\nARG HTTP_PROXY\nARG HTTPS_PROXY\nRUN true\n";
        let safe = history_safe(canvos, &args).unwrap();
        assert!(
            !safe.contains_key("HTTP_PROXY"),
            "declared, with a password"
        );
        assert!(
            safe.contains_key("http_proxy"),
            "predefined, kept out of history"
        );
        assert!(
            safe.contains_key("HTTPS_PROXY"),
            "declared, without a password"
        );
        assert_eq!(history_safe("FROM x\nRUN true\n", &args).unwrap(), args);
        let both = "FROM x\nARG HTTP_PROXY\nARG http_proxy\n";
        assert!(history_safe(both, &args).is_err());
    }
}
