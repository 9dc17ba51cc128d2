//! Running a plan on the Docker Engine: the base image, then the provider images `--jobs` at a
//! time, then the installer image; a step whose image already carries the same input hash is
//! reused; provider images are pushed through the registry client when asked; the manifest and
//! the profile snippet are written at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::{stream, StreamExt as _, TryStreamExt as _};

use crate::config::{Environment, Settings};
use crate::engine::{self, Engine, EngineError};
use crate::plan::{Context, Facts, Kind, Plan, Step, INPUT_HASH_LABEL};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::rewrite::{Rewrite, Rewriter};
use crate::registry::sync::{SyncError, Syncer};
use crate::render::{write_context, RenderError, Sources};

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
    #[error("on the engine at {engine}: {source}")]
    OnEngine {
        engine: String,
        source: Box<BuildError>,
    },
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    /// Whether a step failed (its build, on an engine), rather than the build could not run.
    pub fn is_step_failure(&self) -> bool {
        matches!(
            self,
            BuildError::Engine(EngineError::Build { .. }) | BuildError::OnEngine { .. }
        )
    }
}

/// An image the build made (or found already built).
#[derive(Debug, Clone)]
pub struct Built {
    pub step: Step,
    pub image_id: String,
    pub size: u64,
    pub cached: bool,
    /// Manifest digest in the registry, when pushed.
    pub digest: Option<crate::oci::Digest>,
    /// Bytes uploaded by the push (blobs the registry already had are not sent).
    pub pushed_bytes: Option<u64>,
    /// The engine (index in the build's engines) that holds it.
    pub engine: usize,
    /// Where it was also pushed: the reference the edge host pulls it by, when the user-data
    /// rewrites it elsewhere.
    pub edge_copy: Option<String>,
}

/// The build arguments every step gets: the proxies, which Docker keeps out of image history.
pub fn build_args(settings: &Settings) -> HashMap<String, String> {
    let mut args = HashMap::new();
    for (name, value) in [
        ("HTTP_PROXY", &settings.http_proxy),
        ("HTTPS_PROXY", &settings.https_proxy),
        ("NO_PROXY", &settings.no_proxy),
    ] {
        if let Some(value) = value {
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
pub async fn check_arch(docker: &Docker, settings: &Settings) -> Result<(), BuildError> {
    let api = |e: bollard::errors::Error| EngineError::Api(e.to_string());
    let (info, version) = tokio::join!(docker.info(), docker.version());
    let engine_arch = info.map_err(api)?.architecture.unwrap_or_default();
    let native = version.map_err(api)?.arch.unwrap_or_default();
    match arch_mismatch(&engine_arch, &native, settings.arch.as_str()) {
        Some(problem) => Err(BuildError::Host(problem)),
        None => Ok(()),
    }
}

/// Why an engine on `engine_arch` (as `docker info` says it, the kernel's name: x86_64,
/// aarch64) cannot build ARCH=`wanted` artifacts, if it cannot. `native` is the engine's own
/// name for it (as `docker version` says it, Go's: amd64, arm64), the names ARCH takes, so
/// forge keeps no table of machine names; an engine that does not say is taken by its
/// kernel's name.
pub fn arch_mismatch(engine_arch: &str, native: &str, wanted: &str) -> Option<String> {
    let native = match native {
        "" => engine_arch,
        native => native,
    };
    (wanted != native).then(|| format!(
        "ARCH={wanted} artifacts need an {wanted} Docker Engine, and this one runs on {engine_arch}; build on an {wanted} host (point DOCKER_HOST at one) or set ARCH={native}"
    ))
}

/// The check that stops a build before anything is built: the engine's free disk space
/// against a rough need of the plan.
pub async fn check_host(engine: &engine::Engine, plan: &Plan) -> Result<(), BuildError> {
    let info = engine
        .docker
        .info()
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?;
    if let (true, Some(root)) = (engine.is_local(), info.docker_root_dir) {
        let need = disk_need(&engine.docker, plan).await;
        if let Ok(free) = fs4::available_space(&root) {
            if free < need {
                return Err(BuildError::Host(format!(
                    "the Docker data root {root} has {} free, and this build needs about {}; free space (docker system prune) or move the data root",
                    crate::units::human(free),
                    crate::units::human(need)
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
/// With `pull` false (a plan made offline), nothing is pulled: `None` when the engine lacks
/// one of the images.
pub async fn facts(
    on: &Engine,
    settings: &Settings,
    sources: &Sources,
    progress: &Progress,
    pull: bool,
) -> Result<Option<Facts>, BuildError> {
    let docker = &on.docker;
    check_arch(docker, settings).await?;
    let (base, stylus) = (sources.get("base_image"), sources.get("agent_image"));
    let probed = if settings.bundle_k8s_and_agent_provider {
        vec![stylus]
    } else {
        vec![base, stylus]
    };
    if pull {
        let names: Vec<String> = probed.iter().map(|i| i.to_string()).collect();
        let credentials = engine::credentials_for(&settings.environment, &names).await?;
        for image in &probed {
            engine::ensure_image(docker, image, &credentials).await?;
        }
    } else {
        for image in &probed {
            match engine::image_id(docker, image).await {
                Ok(_) => {}
                Err(engine::EngineError::NoSuchImage(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let systemd = if settings.bundle_k8s_and_agent_provider {
        None
    } else {
        progress.start("probe", "probing", base);
        let version = engine::systemd_version(on, base).await?;
        progress.finish("probe", "systemd", &format!("{version} in {base}"));
        Some(version)
    };
    let stylus_config = engine::has_path(on, stylus, "/etc/kairos/80_stylus.yaml").await?;
    Ok(Some(Facts {
        systemd,
        stylus_config,
    }))
}

/// A step a run makes (`forge build --only`, one per CI job of `forge plan`); with none
/// given, every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Only {
    Base,
    Provider(String),
    Installer,
    /// The installer image and the ISOs mastered from it.
    Iso,
}

impl std::str::FromStr for Only {
    type Err = String;

    fn from_str(text: &str) -> Result<Only, String> {
        match text {
            "base" => Ok(Only::Base),
            "installer" => Ok(Only::Installer),
            "iso" => Ok(Only::Iso),
            _ => match text.strip_prefix("provider:") {
                Some(version) if !version.is_empty() => Ok(Only::Provider(version.to_string())),
                _ => Err("expected base, provider:VERSION, installer or iso".into()),
            },
        }
    }
}

impl std::fmt::Display for Only {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Only::Base => f.write_str("base"),
            Only::Provider(version) => write!(f, "provider:{version}"),
            Only::Installer => f.write_str("installer"),
            Only::Iso => f.write_str("iso"),
        }
    }
}

impl Only {
    fn selects(&self, step: &Step) -> bool {
        match (self, &step.kind) {
            (Only::Base, Kind::Base) => true,
            (Only::Provider(want), Kind::Provider { version }) => want == version,
            (Only::Installer | Only::Iso, Kind::Installer) => true,
            _ => false,
        }
    }

    /// Each `--only` must name a step of the plan: a provider version of its matrix.
    pub fn check(only: &[Only], plan: &Plan) -> Result<(), BuildError> {
        for o in only {
            if !plan.steps.iter().any(|s| o.selects(s)) {
                let versions: Vec<String> = plan
                    .steps
                    .iter()
                    .filter_map(|s| match &s.kind {
                        Kind::Provider { version } => Some(version.clone()),
                        _ => None,
                    })
                    .collect();
                return Err(BuildError::Host(format!(
                    "--only {o}: the plan has no such step; its provider versions are {}",
                    versions.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Images shared between runs (CI runners) through a registry: each step's image under
/// `<repository>:<kind>-<the first 20 hex digits of its input hash>`, pulled instead of built
/// (`--cache-from`) and pushed once built (`--cache-to`).
pub struct Shared<'a> {
    pub repository: String,
    pub from: bool,
    pub to: bool,
    pub syncer: &'a Syncer<'a>,
}

impl Shared<'_> {
    /// Where the plan's `step` is kept: by its input hash in the plan, which every runner
    /// computes alike (the cache key of a local build adds the engine's image IDs).
    pub fn reference(&self, step: &Step) -> String {
        let hash = step.input_hash.trim_start_matches("sha256:");
        format!("{}:{}-{}", self.repository, step.kind.label(), &hash[..20])
    }
}

/// How a run makes the plan's images.
pub struct Run<'a> {
    /// The build arguments of every step.
    pub args: &'a HashMap<String, String>,
    /// Where the engine's pull credentials come from (the Docker config).
    pub env: &'a Environment,
    /// Provider images built at once.
    pub jobs: usize,
    /// The run's private directory (build contexts are written below it).
    pub work: &'a Path,
    pub only: &'a [Only],
    pub shared: Option<&'a Shared<'a>>,
    pub progress: &'a Progress,
}

/// Make the images of the plan `run.only` selects (all by default): each pulled from the
/// registry cache when `--cache-from` finds it there, else built, with the base image (pulled
/// or built) when a step to build needs it; built images go to the cache with `--cache-to`.
/// Provider images are spread over the engines, each engine getting the base image once
/// (from the cache when it has it, else built there); the rest happens on the first engine.
/// The result is in plan order.
pub async fn run(engines: &[Engine], plan: &Plan, run: &Run<'_>) -> Result<Vec<Built>, BuildError> {
    let dir = &run.work.join("contexts");
    let progress = run.progress;
    let primary = &engines[0];
    let wanted = |step: &Step| run.only.is_empty() || run.only.iter().any(|o| o.selects(step));
    let cache_from = run.shared.filter(|s| s.from);
    let mut pulled: Vec<Built> = Vec::new();
    if let Some(shared) = cache_from {
        for step in plan
            .steps
            .iter()
            .filter(|s| s.kind != Kind::Os && wanted(s))
        {
            pulled.extend(pull_shared(&primary.docker, shared, step, run).await?);
        }
    }
    let is_pulled = |pulled: &[Built], step: &Step| pulled.iter().any(|b| b.step.tag == step.tag);
    let to_build: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| !matches!(s.kind, Kind::Os | Kind::Base) && wanted(s))
        .filter(|s| !is_pulled(&pulled, s))
        .collect();
    let providers: Vec<&Step> = to_build
        .iter()
        .copied()
        .filter(|s| matches!(s.kind, Kind::Provider { .. }))
        .collect();
    let used = engines.len().min(providers.len()).max(1);
    let several = engines.len() > 1;
    let mut built = Vec::new();
    let mut base_cached = false;
    if let Some(base) = plan.steps.iter().find(|s| s.kind == Kind::Base) {
        let needed = !to_build.is_empty() || wanted(base);
        if needed && !is_pulled(&pulled, base) {
            let from_cache = match cache_from {
                Some(shared) if !wanted(base) => {
                    pull_shared(&primary.docker, shared, base, run).await?
                }
                _ => None,
            };
            match from_cache {
                Some(base) => pulled.push(base),
                None => built.extend(build_base(primary, plan, run, dir).await?),
            }
        }
        // The other engines' base: from the cache (pushed there first), else built there.
        if used > 1 {
            if let Some(shared) = run.shared.filter(|s| s.to) {
                let base_images = built.iter().filter(|b| b.step.kind == Kind::Base);
                cache_images(engines, plan, shared, base_images, progress).await?;
                base_cached = true;
            }
            let others = engines[1..used].iter().map(|engine| async move {
                let pulled = match run.shared {
                    Some(shared) if shared.from || shared.to => {
                        pull_shared(&engine.docker, shared, base, run).await?
                    }
                    _ => None,
                };
                match pulled {
                    Some(_) => Ok(Vec::new()),
                    None => build_base(engine, plan, run, dir).await,
                }
                .map_err(|e| on_engine(engine, e))
            });
            // Their images are the same steps as the first engine's: not listed again.
            futures_util::future::try_join_all(others).await?;
        }
    }
    let builds = providers.iter().enumerate().map(|(i, step)| {
        let (k, engine) = (i % used, &engines[i % used]);
        async move {
            let mut image = build_step(&engine.docker, step, run, dir)
                .await
                .map_err(|e| match several {
                    true => on_engine(engine, e),
                    false => e,
                })?;
            image.engine = k;
            Ok::<_, BuildError>(image)
        }
    });
    let provider_images: Result<Vec<Built>, BuildError> = stream::iter(builds)
        .buffered(run.jobs.max(1) * used)
        .try_collect()
        .await;
    // Once no provider build runs: their luet stages may share images.
    for engine in &engines[..used] {
        engine::remove_secret_images(&engine.docker).await;
    }
    built.append(&mut provider_images?);
    if let Some(installer) = to_build.iter().find(|s| s.kind == Kind::Installer) {
        built.push(build_step(&primary.docker, installer, run, dir).await?);
    }
    if let Some(shared) = run.shared.filter(|s| s.to) {
        let rest = built
            .iter()
            .filter(|b| b.step.kind != Kind::Os && !(base_cached && b.step.kind == Kind::Base));
        cache_images(engines, plan, shared, rest, progress).await?;
    }
    built.append(&mut pulled);
    let order = |b: &Built| {
        (
            plan.steps.iter().position(|s| s.tag == b.step.tag),
            b.engine,
        )
    };
    built.sort_by_key(order);
    Ok(built)
}

/// `error`, said to have happened on `engine`.
fn on_engine(engine: &Engine, error: BuildError) -> BuildError {
    BuildError::OnEngine {
        engine: engine.address.clone(),
        source: Box::new(error),
    }
}

/// Build the OS and base images on `engine`.
async fn build_base(
    engine: &Engine,
    plan: &Plan,
    run: &Run<'_>,
    dir: &Path,
) -> Result<Vec<Built>, BuildError> {
    let mut built = Vec::new();
    for step in plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind, Kind::Os | Kind::Base))
    {
        built.push(build_step(&engine.docker, step, run, dir).await?);
    }
    Ok(built)
}

/// Push `images` (from the engine each was built on) to the registry cache, each under its
/// plan step's reference.
async fn cache_images<'b>(
    engines: &[Engine],
    plan: &Plan,
    shared: &Shared<'_>,
    images: impl Iterator<Item = &'b Built>,
    progress: &Progress,
) -> Result<(), BuildError> {
    let layers = engine::LayerCache::new(&shared.syncer.scratch().join("layers"));
    let mut done = Vec::new();
    for image in images {
        let Some(step) = plan.steps.iter().find(|s| s.tag == image.step.tag) else {
            continue;
        };
        let target = shared.reference(step);
        if done.contains(&target) {
            continue; // the same step built on another engine
        }
        let name = format!("cache {}", image.step.name());
        progress.start(&name, "pushing", &target);
        let docker = &engines[image.engine].docker;
        let synced = push_image(docker, shared.syncer, &image.step.tag, &target, &layers).await?;
        progress.finish(&name, synced.0, &target);
        done.push(target);
    }
    Ok(())
}

/// `step`'s image from the registry cache, tagged as the step's image, when the cache has it.
async fn pull_shared(
    docker: &Docker,
    shared: &Shared<'_>,
    step: &Step,
    run: &Run<'_>,
) -> Result<Option<Built>, BuildError> {
    let progress = run.progress;
    let source = shared.reference(step);
    let reference =
        Reference::parse(&source).map_err(|e| BuildError::Host(format!("{source}: {e}")))?;
    let exists = shared
        .syncer
        .exists(&reference)
        .await
        .map_err(|e| BuildError::Push {
            image: source.clone(),
            source: Box::new(e),
        })?;
    if !exists {
        return Ok(None);
    }
    let name = step.name();
    progress.start(&name, "pulling", &source);
    let credentials = engine::credentials_for(run.env, std::slice::from_ref(&source)).await?;
    engine::ensure_image(docker, &source, &credentials).await?;
    engine::tag(docker, &source, &step.tag).await?;
    let inspect = docker
        .inspect_image(&step.tag)
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?;
    progress.finish(&name, "pulled", &source);
    let mut step = step.clone();
    if let Some(key) = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(INPUT_HASH_LABEL))
    {
        step.input_hash = key.clone();
    }
    Ok(Some(Built {
        edge_copy: None,
        step,
        image_id: inspect.id.unwrap_or_default(),
        size: inspect.size.unwrap_or(0).max(0) as u64,
        cached: true,
        digest: None,
        pushed_bytes: None,
        engine: 0,
    }))
}

async fn build_step(
    docker: &Docker,
    step: &Step,
    run: &Run<'_>,
    scratch: &Path,
) -> Result<Built, BuildError> {
    let (args, progress) = (run.args, run.progress);
    let name = step.name();
    let key = cache_key(docker, step).await?;
    let existing = engine::labels(docker, &step.tag).await?;
    let cached = existing.as_ref().and_then(|l| l.get(INPUT_HASH_LABEL)) == Some(&key);
    if !cached {
        progress.start(&name, "building", &step.tag);
        let written = scratch.join(step.input_hash.replace(':', "-"));
        let dir = match &step.context {
            Context::Files(files) => {
                write_context(&written, &step.dockerfile, files, &step.exclude)?;
                written.as_path()
            }
            Context::Directory { root } => root.as_path(),
        };
        let build = engine::Build {
            context: dir,
            exclude: &step.exclude,
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
            credentials: engine::credentials_for(run.env, &step.from_images()).await?,
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
        edge_copy: None,
        step,
        image_id: inspect.id.unwrap_or_default(),
        size: inspect.size.unwrap_or(0).max(0) as u64,
        cached,
        digest: None,
        pushed_bytes: None,
        engine: 0,
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
    Ok(crate::oci::Digest::sha256(key.as_bytes()).to_string())
}

/// Push the provider images (from the engine each was built on) to their registry; fills in
/// their digests.
pub async fn push(
    engines: &[Engine],
    syncer: &Syncer<'_>,
    built: &mut [Built],
    edge: Option<&Rewriter>,
    progress: &Progress,
) -> Result<(), BuildError> {
    let layers = engine::LayerCache::new(&syncer.scratch().join("layers"));
    for image in built
        .iter_mut()
        .filter(|b| matches!(b.step.kind, Kind::Provider { .. }))
    {
        let name = format!("push {}", image.step.name());
        progress.start(&name, "pushing", &image.step.tag);
        let docker = &engines[image.engine].docker;
        let (status, synced) =
            push_image(docker, syncer, &image.step.tag, &image.step.tag, &layers).await?;
        progress.finish(&name, status, &synced.digest.to_string());
        image.pushed_bytes = Some(
            synced
                .stats
                .uploaded_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        image.digest = Some(synced.digest);
        if let Some(to) = edge.and_then(|rewriter| pulled_from(rewriter, &image.step.tag)) {
            let name = format!("copy {}", image.step.name());
            progress.start(&name, "pushing", &to);
            let (status, synced) =
                push_image(docker, syncer, &image.step.tag, &to, &layers).await?;
            progress.finish(&name, status, &synced.digest.to_string());
            image.edge_copy = Some(to);
        }
    }
    Ok(())
}

/// Where the edge host pulls `tag` from, when the user-data's rules send it elsewhere.
pub fn pulled_from(rewriter: &Rewriter, tag: &str) -> Option<String> {
    let reference = Reference::parse(tag).ok()?;
    let to = rewriter.rewrite(&reference).ok()?.to;
    (to != reference.canonical()).then(|| to.to_string())
}

/// Push the engine's image `image` to `target` through forge's registry client: `pushed`,
/// or `up to date` when the registry already had every blob and the manifest.
async fn push_image(
    docker: &Docker,
    syncer: &Syncer<'_>,
    image: &str,
    target: &str,
    layers: &engine::LayerCache,
) -> Result<(&'static str, crate::registry::sync::Synced), BuildError> {
    let push_error = |source: SyncError| BuildError::Push {
        image: target.to_string(),
        source: Box::new(source),
    };
    let reference =
        Reference::parse(target).map_err(|e| BuildError::Host(format!("{target}: {e}")))?;
    let target = Rewrite {
        from: reference.clone(),
        to: reference,
        registry: None,
    };
    // Already there (a rerun, or a cache entry another runner pushed): nothing to export.
    let id = engine::image_id(docker, image).await?;
    if syncer.has_config(&target, &id).await.map_err(push_error)? {
        let synced = syncer.from_registry(&target).await.map_err(push_error)?;
        return Ok(("up to date", synced));
    }
    let dir = tempfile::Builder::new()
        .prefix("push-")
        .tempdir_in(syncer.scratch())
        .map_err(|source| BuildError::Output {
            path: syncer.scratch().to_path_buf(),
            source,
        })?;
    let local = engine::export(docker, image, dir.path(), layers).await?;
    let synced = syncer
        .from_files(&target, &local)
        .await
        .map_err(push_error)?;
    let status = if synced.up_to_date {
        "up to date"
    } else {
        "pushed"
    };
    Ok((status, synced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_builds_the_architecture_it_names_itself() {
        assert_eq!(arch_mismatch("x86_64", "amd64", "amd64"), None);
        assert_eq!(arch_mismatch("aarch64", "arm64", "arm64"), None);
        assert_eq!(
            arch_mismatch("aarch64", "arm64", "amd64").unwrap(),
            "ARCH=amd64 artifacts need an amd64 Docker Engine, and this one runs on aarch64; \
             build on an amd64 host (point DOCKER_HOST at one) or set ARCH=arm64"
        );
        let silent = arch_mismatch("riscv64", "", "amd64").unwrap();
        assert!(silent.ends_with("or set ARCH=riscv64"), "{silent}");
    }

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
