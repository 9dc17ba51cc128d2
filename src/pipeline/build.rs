//! `forge build` (and `--dry-run`), `forge iso`, `forge plan`: validate the inputs, check the
//! host, plan, build the images on the engines, master the ISOs, push, write the outputs and
//! boot what was mastered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::boot::{boot_all, BootRequest};
use super::doctor::{preflight, Needs};
use super::images::Access;
use super::inputs::{BuildInputs, Site, Validated, NO_USER_DATA};
use super::{block_on, Error};
use crate::build::{self, build_args, Built, Only};
use crate::config::Settings;
use crate::engine::{self, Engine};
use crate::iso::cache::Cache;
use crate::iso::verify::Outcome as Boot;
use crate::iso::{self, Mastered, ToolPlace};
use crate::oci::Digest;
use crate::plan::{self, Bundle, Facts, FactsFrom, Kind, Plan};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::sync::Syncer;
use crate::registry::Pool;
use crate::render::{Sources, Templates};
use crate::run::Workspace;

/// How ISOs are mastered and pushed (`forge build` and `forge iso`).
#[derive(Debug, Clone)]
pub struct Mastering {
    /// Where the ISO tools run.
    pub tools: ToolPlace,
    /// The mastering cache; default: `$XDG_CACHE_HOME/forge`, else `~/.cache/forge`.
    pub cache_dir: Option<PathBuf>,
    /// Push each ISO as an image (CanvOS's `+iso-disk-image`).
    pub push_iso: bool,
    pub access: Access,
}

/// `forge build`.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub inputs: BuildInputs,
    pub mastering: Mastering,
    /// A cluster profile, checked against the user-data.
    pub profile: Option<PathBuf>,
    /// CA certificates for the images' trust store; default: the checkout's `certs/`.
    pub certs: Option<PathBuf>,
    /// Push the provider images to IMAGE_REGISTRY (and where the user-data sends the edge
    /// host to pull them, unless `no_push_rewritten`).
    pub push: bool,
    /// With `push`, leave out the copies at the user-data's rewritten references.
    pub no_push_rewritten: bool,
    /// Build the images only.
    pub no_iso: bool,
    /// Boot each ISO after mastering it.
    pub verify: Option<BootRequest>,
    /// Provider images built at once.
    pub jobs: usize,
    /// The engines; default: DOCKER_HOST's.
    pub engines: Vec<String>,
    /// Make only these steps (with what they need).
    pub only: Vec<Only>,
    /// Pull what other runs pushed to this registry cache (`registry` or a repository).
    pub cache_from: Option<String>,
    /// Push every image built to this registry cache.
    pub cache_to: Option<String>,
}

/// An image a build made, as its document lists it.
#[derive(Debug, Serialize)]
pub struct ImageDoc {
    /// `os`, `base`, `provider` or `installer`.
    pub kind: &'static str,
    pub image: String,
    pub digest: Option<Digest>,
    /// Where it was pushed too: the reference the edge host pulls it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_copy: Option<String>,
}

/// An ISO a build mastered, as its document lists it.
#[derive(Debug, Serialize)]
pub struct IsoDoc {
    pub path: PathBuf,
    pub user_data: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub cached: bool,
    /// Where `--push-iso` pushed it.
    pub reference: Option<String>,
    pub digest: Option<Digest>,
}

impl From<&Mastered> for IsoDoc {
    fn from(iso: &Mastered) -> IsoDoc {
        IsoDoc {
            path: iso.path.clone(),
            user_data: iso.user_data.clone(),
            sha256: iso.sha256.clone(),
            size: iso.size,
            cached: iso.cached,
            reference: iso.pushed.as_ref().map(|p| p.0.clone()),
            digest: iso.pushed.as_ref().map(|p| p.1.clone()),
        }
    }
}

/// What `forge build` made.
#[derive(Debug, Serialize)]
pub struct BuildOutcome {
    pub manifest: PathBuf,
    pub profile_snippet: PathBuf,
    pub images: Vec<ImageDoc>,
    pub isos: Vec<IsoDoc>,
    pub boots: Vec<Boot>,
    /// The OS pack values for the cluster profile (`profile-snippet.yaml`).
    #[serde(skip)]
    pub snippet: String,
}

impl BuildOutcome {
    /// Every boot passed (there may be none).
    pub fn passed(&self) -> bool {
        self.boots.iter().all(|b| b.passed)
    }
}

/// A build's plan, and what made it.
struct Prepared {
    validated: Validated,
    templates: Templates,
    overlays: Option<PathBuf>,
    plan: Plan,
    /// The images the build starts from.
    sources: Sources,
    /// Where what the plan knows of them came from.
    facts_from: FactsFrom,
    /// Stands in for absent certs/ and overlays/ in build contexts: an ordinary directory.
    _empty: tempfile::TempDir,
}

impl Prepared {
    fn settings(&self) -> &Settings {
        &self.validated.outcome.settings
    }
}

/// Where and how a build is planned.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    /// The engine that probes the source images.
    address: &'a str,
    /// Provider images are planned.
    providers: bool,
    /// A plan made offline (a dry run, `forge plan`): nothing is pulled, and without an
    /// engine the facts come from an earlier probe or from what is known.
    offline: bool,
}

/// The facts of a plan and where they came from: probed on the engine, pulling what it lacks
/// for a build (each probe kept in forge's cache); for a plan made offline, the engine's
/// copies when it has them, else an earlier probe of the same images, else what the base
/// image's OS release is known to hold.
fn facts(
    settings: &Settings,
    sources: &Sources,
    target: Target<'_>,
    progress: &Progress,
) -> Result<(Facts, FactsFrom), Error> {
    let cache = Cache::default_dir(&settings.environment);
    let env = &settings.environment;
    let engine = block_on(env, async {
        Ok(Engine::connect(target.address, env).await)
    })?;
    let engine = match engine {
        Ok(engine) => Some(engine),
        Err(_) if target.offline => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(engine) = engine {
        let probe = build::facts(&engine, settings, sources, progress, !target.offline);
        if let Some(facts) = block_on(env, async { probe.await.map_err(Error::Probe) })? {
            // The cache only spares a later offline plan a guess: a failure to keep it is
            // not this build's.
            let _ = facts.store(&cache, sources);
            return Ok((facts, FactsFrom::Engine));
        }
    }
    let systemd = !settings.bundle_k8s_and_agent_provider;
    let (facts, from) = match Facts::cached(&cache, sources, systemd) {
        Some(facts) => (facts, FactsFrom::Cache),
        None => match Facts::known(sources, systemd) {
            Some(facts) => (facts, FactsFrom::Known),
            None => {
                return Err(Error::Usage(format!(
                    "planning offline, forge cannot tell the systemd of {}: no engine has it, no earlier build probed it, and it is not a Kairos image of a known OS release; start a Docker Engine that has it (docker pull), or set BUNDLE_K8S_AND_AGENT_PROVIDER=true",
                    sources.get("base_image")
                )))
            }
        },
    };
    let what = match from {
        FactsFrom::Cache => "an earlier probe of the same images",
        _ => "what its OS release is known to hold",
    };
    let systemd = facts.systemd.map_or(String::new(), |v| {
        format!("systemd {v} in the base image, ")
    });
    progress.note(&format!(
        "planned offline: {systemd}from {what} (no engine has the images)"
    ));
    Ok((facts, from))
}

/// Probe the source images and plan the build of `validated` for `target`.
fn prepare(
    inputs: &BuildInputs,
    validated: Validated,
    certs: Option<&Path>,
    target: Target<'_>,
    progress: &Progress,
) -> Result<Prepared, Error> {
    let providers = target.providers;
    let settings = &validated.outcome.settings;
    let templates = Templates::load(inputs.templates.as_deref())?;
    let empty = crate::run::temp_dir().map_err(|source| Error::Io {
        what: "a temporary directory".into(),
        source,
    })?;
    let open = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(empty.path(), open).map_err(|source| Error::Io {
        what: format!("making {} readable", empty.path().display()),
        source,
    })?;
    let certs = certs
        .map(Path::to_path_buf)
        .or_else(|| inputs.settings.in_checkout(&["certs"]));
    let overlays = inputs.overlays();
    note_absent_inputs(&settings.checkout, &inputs.content_dir(), progress);
    let sources = templates.sources(settings).map_err(Error::Sources)?;
    plan::check(settings, &sources, providers)?;
    let (facts, facts_from) = facts(settings, &sources, target, progress)?;
    let user_data: Vec<PathBuf> = validated
        .sites
        .iter()
        .map(|s| s.user_data.clone())
        .collect();
    let plan = plan::plan(&plan::Inputs {
        settings,
        templates: &templates,
        sources: &sources,
        facts,
        certs: certs.as_deref(),
        overlays: overlays.as_deref(),
        output: &inputs.output,
        user_data: &user_data,
        empty: empty.path(),
        providers,
    })?;
    Ok(Prepared {
        validated,
        templates,
        overlays,
        plan,
        sources,
        facts_from,
        _empty: empty,
    })
}

/// Notes on the checkout's optional inputs that are absent and skipped, as CanvOS skips them
/// (CLUSTERCONFIG and EDGE_CUSTOM_CONFIG are noted by validation).
fn note_absent_inputs(checkout: &Path, content_dir: &Path, progress: &Progress) {
    if !checkout.join(plan::LUET_AUTH).is_file() {
        let said = format!(
            "{} (absent): luet reads SPECTRO_LUET_REPO without credentials",
            plan::LUET_AUTH
        );
        progress.finish("checkout", "skipped", &said);
    }
    let bundles = std::fs::read_dir(content_dir).is_ok_and(|dir| {
        dir.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("content-"))
    });
    if !bundles {
        let said = format!(
            "content bundles (no content-*/ in {})",
            content_dir.display()
        );
        progress.finish("checkout", "skipped", &said);
    }
}

/// The registry connections pushes use: the user-data's registries, the access flags, the
/// Docker config.
fn push_pool(
    validated: &Validated,
    access: &Access,
    progress: &Arc<Progress>,
) -> Result<Pool, Error> {
    let outcome = &validated.outcome;
    let rewriter = outcome
        .rewriter
        .clone()
        .unwrap_or_else(crate::registry::rewrite::Rewriter::none);
    Ok(Pool::new(access.policy(
        &rewriter,
        &outcome.settings.environment,
        progress,
    )?))
}

/// The output directory, locked for this run.
fn open_workspace(output: &Path) -> Result<Workspace, Error> {
    Ok(Workspace::open(output)?)
}

/// Remove what stopped earlier runs left in `engine` and `output`, and say so.
async fn clean_leftovers(engine: &Engine, output: &Path, progress: &Progress) -> Result<(), Error> {
    let mut removed = crate::run::remove_dead_files(output)?;
    removed.containers = engine::leftovers::remove_dead(&engine.docker).await;
    if let Some(summary) = removed.summary() {
        let said = format!("{summary} left by an earlier run that was stopped");
        progress.finish("cleanup", "removed", &said);
    }
    Ok(())
}

/// The repository of the registry cache `from` and `to` name (`registry`:
/// IMAGE_REGISTRY/forge-cache); they must agree.
fn cache_repository(
    settings: &Settings,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Option<String>, Error> {
    let resolve = |value: &str| {
        match value {
        "registry" => settings
            .image_registry
            .as_deref()
            .map(|r| format!("{}/forge-cache", r.trim_end_matches('/')))
            .ok_or_else(|| Error::Usage("--cache-from/--cache-to registry keeps the images in IMAGE_REGISTRY/forge-cache: set IMAGE_REGISTRY, or name a repository".into())),
        repository => match Reference::parse(&format!("{repository}:probe")) {
            Ok(_) => Ok(repository.to_string()),
            Err(e) => Err(Error::Usage(format!(
                "`{}` is not a repository (REGISTRY/PATH) for the registry cache: {e}",
                crate::limits::clip(repository)
            ))),
        },
    }
    };
    let from = from.map(resolve).transpose()?;
    let to = to.map(resolve).transpose()?;
    match (from, to) {
        (Some(from), Some(to)) if from != to => Err(Error::Usage(format!(
            "--cache-from {from} and --cache-to {to} name two caches; give one repository to both"
        ))),
        (from, to) => Ok(from.or(to)),
    }
}

/// What mastering the sites' ISOs needs.
struct IsoJob<'a> {
    inputs: &'a BuildInputs,
    mastering: &'a Mastering,
    settings: &'a Settings,
    templates: &'a Templates,
    image: &'a str,
    overlays: Option<&'a Path>,
    work: &'a Path,
    build_args: &'a std::collections::HashMap<String, String>,
    pool: Option<&'a Pool>,
    progress: &'a Progress,
}

/// Master every site's ISO from the job's image, and push them with `--push-iso`.
async fn master_sites(
    engine: &Engine,
    job: &IsoJob<'_>,
    sites: &[Site],
) -> Result<Vec<Mastered>, Error> {
    let env = &job.settings.environment;
    let cache_dir = job
        .mastering
        .cache_dir
        .clone()
        .unwrap_or_else(|| Cache::default_dir(env));
    let cache = Cache::open(&cache_dir).map_err(|source| Error::Cache {
        dir: cache_dir.clone(),
        source,
    })?;
    let spec = iso::Spec {
        image: job.image,
        settings: job.settings,
        templates: job.templates,
        overlays: job.overlays,
        content_dir: &job.inputs.content_dir(),
        output: &job.inputs.output,
        work: job.work,
        source_date_epoch: env.epoch()?,
        tools: job.mastering.tools,
        build_args: job.build_args,
        cache: &cache,
    };
    let sites: Vec<iso::Site<'_>> = sites.iter().map(Site::for_iso).collect();
    let mut isos = iso::master(engine, &spec, &sites, job.progress).await?;
    if let (true, Some(pool)) = (job.mastering.push_iso, job.pool) {
        let log = |line: &str| job.progress.line("push", line);
        let syncer = Syncer::new(pool, None, 4, &log)?;
        let arch = job.settings.arch.as_str();
        for iso in &mut isos {
            let stem = iso.path.file_stem().unwrap_or_default().to_string_lossy();
            let tag = job
                .settings
                .iso_image_tag(&stem)
                .ok_or_else(|| Error::Usage("--push-iso needs IMAGE_REGISTRY".into()))?;
            let reference =
                Reference::parse(&tag).map_err(|e| Error::Usage(format!("{tag}: {e}")))?;
            let epoch = spec.source_date_epoch;
            iso::artifact::publish(&syncer, iso, &reference, arch, epoch, job.progress).await?;
        }
    }
    Ok(isos)
}

/// `forge build`: the images, the ISOs, the outputs, the boots.
pub fn build(request: &BuildRequest, progress: &Arc<Progress>) -> Result<BuildOutcome, Error> {
    let inputs = &request.inputs;
    if request.masters_isos() && inputs.user_data_args().is_empty() {
        return Err(Error::Usage(NO_USER_DATA.into()));
    }
    let validated = inputs.validate(request.profile.as_deref(), progress)?;
    let settings = &validated.outcome.settings;
    let addresses = engines(&request.engines, settings);
    let sharing = request.cache_from.is_some() || request.cache_to.is_some();
    let pool = match request.push || request.mastering.push_iso || sharing {
        true => Some(push_pool(&validated, &request.mastering.access, progress)?),
        false => None,
    };
    let boots = request.verify.as_ref();
    let needs = Needs {
        engines: addresses.clone(),
        iso_tools: request.masters_isos().then_some(request.mastering.tools),
        push: pool.is_some(),
        verify: boots.is_some(),
        uefi: boots.is_some_and(BootRequest::uefi),
        secure_boot: boots.is_some_and(|b| b.secure_boot),
        templates: inputs.templates.clone(),
    };
    preflight(&needs, settings, pool.as_ref())?;
    let certs = request.certs.as_deref();
    let target = Target {
        address: &addresses[0],
        providers: request.makes_providers(),
        offline: false,
    };
    let prepared = prepare(inputs, validated, certs, target, progress)?;
    let settings = prepared.settings();
    Only::check(&request.only, &prepared.plan).map_err(|e| Error::Finding(e.to_string()))?;
    let (from, to) = (request.cache_from.as_deref(), request.cache_to.as_deref());
    let workspace = open_workspace(&inputs.output)?;
    let making = Making {
        request,
        prepared: &prepared,
        addresses: &addresses,
        pool: pool.as_ref(),
        repository: cache_repository(settings, from, to)?,
        work: workspace.dir(),
        progress,
    };
    let env = &settings.environment;
    let (built, isos) = block_on(env, make(making))?;
    let output = &inputs.output;
    let snippet =
        crate::report::write_outputs(output, settings, &prepared.templates, &built, &isos)?;
    let mut boots = Vec::new();
    if let Some(request) = &request.verify {
        for iso in &isos {
            let templates = &prepared.templates;
            boots.extend(block_on(
                env,
                boot_all(&iso.path, request, templates, progress),
            )?);
        }
    }
    Ok(BuildOutcome {
        manifest: output.join("manifest.json"),
        profile_snippet: output.join("profile-snippet.yaml"),
        images: built.iter().map(image_doc).collect(),
        isos: isos.iter().map(IsoDoc::from).collect(),
        boots,
        snippet,
    })
}

impl BuildRequest {
    /// Whether this build masters ISOs: not `--no-iso`, and every step or `--only iso`.
    fn masters_isos(&self) -> bool {
        !self.no_iso && (self.only.is_empty() || self.only.contains(&Only::Iso))
    }

    /// Whether this build makes provider images: every step, or `--only provider:VERSION`.
    fn makes_providers(&self) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| matches!(o, Only::Provider(_)))
    }
}

/// What a build's engines make, and from what.
struct Making<'a> {
    request: &'a BuildRequest,
    prepared: &'a Prepared,
    addresses: &'a [String],
    /// The registries pushes go to.
    pool: Option<&'a Pool>,
    /// The registry cache's repository.
    repository: Option<String>,
    /// The run's private directory.
    work: &'a Path,
    progress: &'a Progress,
}

/// Build the plan's images on the engines (sharing them through the registry cache), master
/// the sites' ISOs from the installer image, and push.
async fn make(m: Making<'_>) -> Result<(Vec<Built>, Vec<Mastered>), Error> {
    let (request, prepared, progress) = (m.request, m.prepared, m.progress);
    let settings = prepared.settings();
    let engines = connect_engines(m.addresses, &request.inputs.output, settings, progress).await?;
    build::check_host(&engines[0], &prepared.plan).await?;
    let build_args = build_args(settings);
    let log = |line: &str| progress.line("cache", line);
    let syncer = match (m.pool, &m.repository) {
        (Some(pool), Some(_)) => Some(Syncer::new(pool, None, 4, &log)?),
        _ => None,
    };
    let shared = syncer
        .as_ref()
        .zip(m.repository)
        .map(|(syncer, repository)| build::Shared {
            repository,
            from: request.cache_from.is_some(),
            to: request.cache_to.is_some(),
            syncer,
        });
    let run = build::Run {
        args: &build_args,
        env: &settings.environment,
        jobs: request.jobs,
        work: m.work,
        only: &request.only,
        shared: shared.as_ref(),
        progress,
    };
    let mut built = build::run(&engines, &prepared.plan, &run).await?;
    let installer = built.iter().find(|b| b.step.kind == Kind::Installer);
    let isos = match installer {
        Some(installer) if request.masters_isos() => {
            let job = IsoJob {
                inputs: &request.inputs,
                mastering: &request.mastering,
                settings,
                templates: &prepared.templates,
                image: &installer.step.tag,
                overlays: prepared.overlays.as_deref(),
                work: m.work,
                build_args: &build_args,
                pool: m.pool,
                progress,
            };
            master_sites(&engines[0], &job, &prepared.validated.sites).await?
        }
        _ => Vec::new(),
    };
    if let (true, Some(pool)) = (request.push, m.pool) {
        let log = |line: &str| progress.line("push", line);
        let syncer = Syncer::new(pool, None, 4, &log)?;
        let rewriter = prepared.validated.outcome.rewriter.as_ref();
        let edge = rewriter.filter(|_| !request.no_push_rewritten);
        build::push(&engines, &syncer, &mut built, edge, progress).await?;
    }
    Ok((built, isos))
}

fn image_doc(built: &Built) -> ImageDoc {
    ImageDoc {
        kind: built.step.kind.label(),
        image: built.step.tag.clone(),
        digest: built.digest.clone(),
        edge_copy: built.edge_copy.clone(),
    }
}

/// The engines `flags` name, else DOCKER_HOST's.
pub fn engines(flags: &[String], settings: &Settings) -> Vec<String> {
    match flags.is_empty() {
        true => vec![engine::default_address(&settings.environment)],
        false => flags.to_vec(),
    }
}

/// Connect to every engine, clean what stopped runs left there, and check its architecture.
async fn connect_engines(
    addresses: &[String],
    output: &Path,
    settings: &Settings,
    progress: &Progress,
) -> Result<Vec<Engine>, Error> {
    let mut engines = Vec::new();
    for address in addresses {
        let engine = Engine::connect(address, &settings.environment).await?;
        clean_leftovers(&engine, output, progress).await?;
        build::check_arch(&engine.docker, settings)
            .await
            .map_err(|e| Error::Usage(format!("the engine at {address}: {e}")))?;
        engines.push(engine);
    }
    Ok(engines)
}

/// A step of `forge build --dry-run`.
#[derive(Debug, Serialize)]
pub struct StepDoc {
    pub step: String,
    pub kind: &'static str,
    pub image: String,
    pub from: Vec<String>,
    pub build_args: std::collections::BTreeMap<String, String>,
    pub context: ContextDoc,
    pub dockerfile: String,
    pub input_hash: String,
    /// Where the edge host pulls a provider image from, when the user-data rewrites it.
    pub edge_pulls_from: Option<String>,
}

/// A step's build context.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ContextDoc {
    /// The files forge writes (their paths in the context).
    Files { files: Vec<String> },
    /// A directory used as it is, and what is left out of it.
    Directory {
        directory: PathBuf,
        exclude: Vec<PathBuf>,
    },
}

/// `forge build --dry-run`: the plan.
#[derive(Debug, Serialize)]
pub struct DryRunOutcome {
    pub bundle: Bundle,
    /// Where what the plan knows of the source images came from: `engine`, `cache` (an
    /// earlier probe) or `known` (the base image's OS release).
    pub facts_from: FactsFrom,
    pub steps: Vec<StepDoc>,
}

/// `forge build --dry-run`: the steps, their images, where the edge host pulls provider
/// images from; nothing built, nothing pulled, no engine needed ([`facts`]).
pub fn dry_run(request: &BuildRequest, progress: &Arc<Progress>) -> Result<DryRunOutcome, Error> {
    let inputs = &request.inputs;
    let validated = inputs.validate(request.profile.as_deref(), progress)?;
    let settings = &validated.outcome.settings;
    let addresses = engines(&request.engines, settings);
    // The templates alone: the engine is asked if it answers, and needed by nothing here.
    let needs = Needs {
        engines: Vec::new(),
        iso_tools: None,
        push: false,
        verify: false,
        uefi: false,
        secure_boot: false,
        templates: inputs.templates.clone(),
    };
    preflight(&needs, settings, None)?;
    let prepared = prepare(
        inputs,
        validated,
        request.certs.as_deref(),
        Target {
            address: &addresses[0],
            providers: request.makes_providers(),
            offline: true,
        },
        progress,
    )?;
    let rewriter = prepared.validated.outcome.rewriter.as_ref();
    let pulled_from = |tag: &str| Some(build::pulled_from(rewriter?, tag)).flatten();
    let steps = prepared
        .plan
        .steps
        .iter()
        .map(|s| StepDoc {
            step: s.name(),
            kind: s.kind.label(),
            image: s.tag.clone(),
            from: s.from_images(),
            build_args: s.build_args.clone(),
            context: match &s.context {
                plan::Context::Files(files) => ContextDoc::Files {
                    files: files.iter().map(|(dest, _)| dest.clone()).collect(),
                },
                plan::Context::Directory { root } => ContextDoc::Directory {
                    directory: root.clone(),
                    exclude: s.exclude.paths().to_vec(),
                },
            },
            dockerfile: s.dockerfile.clone(),
            input_hash: s.input_hash.clone(),
            edge_pulls_from: matches!(s.kind, Kind::Provider { .. })
                .then(|| pulled_from(&s.tag))
                .flatten(),
        })
        .collect();
    Ok(DryRunOutcome {
        bundle: prepared.plan.bundle,
        facts_from: prepared.facts_from,
        steps,
    })
}

/// `forge iso`.
#[derive(Debug, Clone)]
pub struct IsoRequest {
    /// The installer image (built before, or pulled).
    pub image: String,
    pub inputs: BuildInputs,
    pub mastering: Mastering,
}

/// What `forge iso` mastered.
#[derive(Debug, Serialize)]
pub struct IsoOutcome {
    pub manifest: PathBuf,
    pub isos: Vec<IsoDoc>,
}

/// `forge iso`: one ISO per user-data from an installer image built (or pulled) before.
pub fn iso(request: &IsoRequest, progress: &Arc<Progress>) -> Result<IsoOutcome, Error> {
    let (inputs, mastering, image) = (&request.inputs, &request.mastering, &request.image);
    if inputs.user_data_args().is_empty() {
        return Err(Error::Usage(NO_USER_DATA.into()));
    }
    let validated = inputs.validate(None, progress)?;
    let settings = &validated.outcome.settings;
    let templates = Templates::load(inputs.templates.as_deref())?;
    let overlays = inputs.overlays();
    let pool = match mastering.push_iso {
        true => Some(push_pool(&validated, &mastering.access, progress)?),
        false => None,
    };
    let needs = Needs {
        engines: engines(&[], settings),
        iso_tools: Some(mastering.tools),
        push: pool.is_some(),
        verify: false,
        uefi: false,
        secure_boot: false,
        templates: inputs.templates.clone(),
    };
    preflight(&needs, settings, pool.as_ref())?;
    let workspace = open_workspace(&inputs.output)?;
    let env = &settings.environment;
    let job = async {
        let engines = connect_engines(&needs.engines, &inputs.output, settings, progress).await?;
        let engine = &engines[0];
        let credentials = engine::credentials_for(env, std::slice::from_ref(image)).await?;
        engine::ensure_image(&engine.docker, image, &credentials).await?;
        let build_args = build_args(settings);
        let job = IsoJob {
            inputs,
            mastering,
            settings,
            templates: &templates,
            image,
            overlays: overlays.as_deref(),
            work: workspace.dir(),
            build_args: &build_args,
            pool: pool.as_ref(),
            progress,
        };
        master_sites(engine, &job, &validated.sites).await
    };
    let isos = block_on(env, job)?;
    crate::report::write_manifest(&inputs.output, settings, &[], &isos)?;
    Ok(IsoOutcome {
        manifest: inputs.output.join("manifest.json"),
        isos: isos.iter().map(IsoDoc::from).collect(),
    })
}

/// What `forge plan` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanOutput {
    /// The jobs.
    Jobs,
    /// A GitHub Actions workflow.
    GithubActions,
    /// A GitLab CI pipeline.
    GitlabCi,
}

/// `forge plan`.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub inputs: BuildInputs,
    pub certs: Option<PathBuf>,
    /// The registry cache the jobs share images through (`registry` or a repository).
    pub cache: String,
    pub output: PlanOutput,
    /// The forge repository and commit the CI files' first job builds forge from.
    pub forge_git: Option<String>,
    pub forge_rev: Option<String>,
    /// The branch whose pushes run the workflow.
    pub branch: String,
    /// Upload the ISOs as a CI artifact.
    pub upload_iso: bool,
}

/// The CI jobs of a build.
#[derive(Debug, Serialize)]
pub struct PlanOutcome {
    pub cache: String,
    pub jobs: Vec<crate::ci::Job>,
    /// The CI file, for [`PlanOutput::GithubActions`] and [`PlanOutput::GitlabCi`].
    #[serde(skip)]
    pub file: Option<String>,
}

/// `forge plan`: the build as independent CI jobs, or a CI file running them.
pub fn plan(request: &PlanRequest, progress: &Arc<Progress>) -> Result<PlanOutcome, Error> {
    let inputs = &request.inputs;
    if inputs.user_data_args().is_empty() {
        return Err(Error::Usage(NO_USER_DATA.into()));
    }
    let validated = inputs.validate(None, progress)?;
    let address = engines(&[], &validated.outcome.settings).remove(0);
    let prepared = prepare(
        inputs,
        validated,
        request.certs.as_deref(),
        Target {
            address: &address,
            providers: true,
            offline: true,
        },
        progress,
    )?;
    let settings = prepared.settings();
    let cache = cache_repository(settings, Some(&request.cache), None)?;
    let carried = crate::ci::carried(&prepared.validated.outcome.values);
    let mut shared = inputs.words();
    shared.extend(carried.sets);
    if let Some(certs) = &request.certs {
        shared.extend(["--certs".to_string(), certs.display().to_string()]);
    }
    let mut build = vec!["forge".to_string(), "build".to_string()];
    build.extend(shared.iter().cloned());
    build.extend(inputs.settings.secret_file_words());
    for file in &inputs.user_data_args() {
        build.extend(["--user-data".to_string(), file.display().to_string()]);
    }
    let output = inputs.output.display().to_string();
    let jobs = crate::ci::jobs(&prepared.plan, &build, &request.cache, &output);
    let pipeline = || {
        let install = crate::ci::Install::new(
            request.forge_git.as_deref().unwrap_or_default(),
            request.forge_rev.as_deref(),
        )?;
        let user_data: Vec<PathBuf> = prepared
            .validated
            .sites
            .iter()
            .map(|s| s.user_data.clone())
            .collect();
        crate::ci::Pipeline::new(crate::ci::Request {
            jobs: &jobs,
            build: shared.clone(),
            user_data: &user_data,
            registries: crate::ci::registries(settings, &prepared.sources, cache.as_deref()),
            secret_settings: carried.secrets.clone(),
            install,
            branch: request.branch.clone(),
            upload_iso: request.upload_iso,
        })
        .and_then(|p| match request.output {
            PlanOutput::GithubActions => p.github_actions(),
            _ => Ok(p.gitlab_ci()),
        })
    };
    let file = match request.output {
        PlanOutput::Jobs => None,
        PlanOutput::GithubActions | PlanOutput::GitlabCi => Some(pipeline()?),
    };
    Ok(PlanOutcome {
        cache: request.cache.clone(),
        jobs,
        file,
    })
}

impl BuildOutcome {
    /// The images a user takes away, the ISOs, the outputs, the OS pack values, the boots.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for image in self
            .images
            .iter()
            .filter(|i| !matches!(i.kind, "os" | "base"))
        {
            let digest = image.digest.as_ref().map(|d| format!("@{d}"));
            let digest = digest.unwrap_or_default();
            out.push_str(&format!("{:9}  {}{digest}\n", image.kind, image.image));
        }
        out.push_str(&isos_text(&self.isos));
        out.push_str(&format!(
            "\nwrote {} and {}\n\nOS pack values for the cluster profile:\n\n{}",
            self.manifest.display(),
            self.profile_snippet.display(),
            self.snippet
        ));
        if !self.boots.is_empty() {
            out.push('\n');
            out.push_str(&super::boot::boots_text(&self.boots));
        }
        out
    }
}

impl IsoOutcome {
    /// The ISOs, one line each.
    pub fn text(&self) -> String {
        isos_text(&self.isos)
    }
}

/// The ISOs, one line each (and where each was pushed).
fn isos_text(isos: &[IsoDoc]) -> String {
    let mut out = String::new();
    for iso in isos {
        let (path, size) = (iso.path.display(), crate::units::human(iso.size));
        out.push_str(&format!(
            "{:9}  {path} ({size}, sha256 {})\n",
            "iso", iso.sha256
        ));
        if let (Some(tag), Some(digest)) = (&iso.reference, &iso.digest) {
            out.push_str(&format!("{:9}  {tag}@{digest}\n", "iso image"));
        }
    }
    out
}

impl DryRunOutcome {
    /// The steps, the images each starts from, where the edge host pulls provider images from.
    pub fn text(&self) -> String {
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for s in &self.steps {
            lines.push(format!("{:width$}  {}", s.step, s.image));
            lines.push(format!("{:width$}    from {}", "", s.from.join(", ")));
            if let Some(to) = &s.edge_pulls_from {
                lines.push(format!("{:width$}    edge host pulls {to}", ""));
            }
        }
        lines.push(String::new());
        lines.push(format!(
            "what the source images hold: {}",
            match self.facts_from {
                FactsFrom::Engine => "probed in the engine's copies",
                FactsFrom::Cache => "from an earlier probe of the same images",
                FactsFrom::Known => "what the base image's OS release is known to hold",
            }
        ));
        lines.push(String::new());
        lines.join("\n")
    }
}

impl PlanOutcome {
    /// The CI file, else the jobs one per line.
    pub fn text(&self) -> String {
        self.file
            .clone()
            .unwrap_or_else(|| crate::ci::text(&self.jobs))
    }
}
