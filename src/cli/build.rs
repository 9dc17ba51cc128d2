//! `forge build`: validate, plan, check the host, build on the Docker Engine, push, report.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::doctor::{engines, preflight, Needs};
use super::images::{policy, run_async, AccessArgs};
use super::iso::{boot_all, boots_text, BootArgs};
use super::output::{self, Exit, ExitStatus, Format, Shape};
use super::SettingsArgs;
use crate::build::{self, build_args, BuildError};
use crate::engine::EngineError;
use crate::iso::cache::Cache;
use crate::iso::{self, IsoError, ToolPlace};
use crate::plan::{self, Kind, Plan};
use crate::reference::Reference;
use crate::registry::sync::Syncer;
use crate::registry::Pool;
use crate::render::{Sources, Templates};
use crate::report::{Mode, Progress};
use crate::run::{self, RunError, Workspace};
use crate::validate::{self, Outcome, Request};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    /// Spinners on a terminal without NO_COLOR, lines otherwise.
    Auto,
    /// Spinners, one per step.
    Tty,
    /// Timestamped lines.
    Plain,
    /// One JSON event per line (`forge schema output event`).
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum IsoTools {
    Container,
    Host,
}

/// The inputs every command that plans a build takes (`forge build`, `forge iso`, `forge
/// plan`): the settings, the user-data of each site, the templates and overlays, and where
/// the outputs go.
#[derive(Args)]
pub(super) struct Inputs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Edge installer user-data (#cloud-config), validated before anything is built.
    /// Repeatable, or a directory of *.yaml files: one ISO per user-data, named
    /// <ISO_NAME>-<file stem>.iso when there are several.
    #[arg(long, value_name = "FILE|DIR", required = true)]
    user_data: Vec<PathBuf>,
    /// Directory whose templates replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Overlays directory: files/ go into the images, files-iso/ onto the ISO. Default: the
    /// checkout's overlay/ (CanvOS's name) or overlays/.
    #[arg(long, value_name = "DIR")]
    overlays: Option<PathBuf>,
    /// Directory searched for content bundles (content-*/*.zst). Default: the checkout.
    #[arg(long, value_name = "DIR")]
    content_dir: Option<PathBuf>,
    /// Where the ISOs, their checksums, manifest.json and profile-snippet.yaml go.
    #[arg(long, value_name = "DIR", default_value = "build")]
    output: PathBuf,
}

/// How `forge build` and `forge iso` master and push ISOs, and report.
#[derive(Args)]
pub(super) struct Mastering {
    /// Where the ISO tools (squashfs-tools, xorriso, GRUB, mtools, dosfstools) run: in a
    /// builder container forge builds, or on this machine.
    #[arg(long, value_enum, default_value_t = IsoTools::Container)]
    iso_tools: IsoTools,
    /// Where the parts every ISO of an installer image shares (squashfs, kernel, initrd, boot
    /// images) are kept between runs; see `forge cache`. Default: $XDG_CACHE_HOME/forge, else
    /// ~/.cache/forge.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Push each ISO as an image, as CanvOS's +iso-disk-image: ISO_NAME:PE_VERSION[-CUSTOM_TAG]
    /// in IMAGE_REGISTRY/IMAGE_REPO (ISO_NAME-<stem> for several user-data), /disk/<ISO file
    /// name> inside.
    #[arg(long)]
    push_iso: bool,
    #[command(flatten)]
    access: AccessArgs,
    /// How progress is shown on stderr (`-q`: not at all).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// `json`: one document on stdout when done (`forge schema output build`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
pub(super) struct BuildArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    mastering: Mastering,
    /// Cluster profile, checked against the user-data.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// CA certificates added to the images' trust store. Default: the checkout's certs/.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Push the provider images to IMAGE_REGISTRY.
    #[arg(long)]
    push: bool,
    /// Build the images only, no installer ISO.
    #[arg(long, conflicts_with_all = ["push_iso", "verify"])]
    no_iso: bool,
    /// Boot each ISO in QEMU after mastering it (see `forge verify`); a failed boot fails the
    /// build.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    boot: BootArgs,
    /// Provider images built at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
    /// Build on this Docker Engine (unix:///PATH or tcp://HOST:PORT, TLS as with DOCKER_HOST);
    /// repeatable: provider images are spread over the engines, each engine getting the base
    /// image once (from the --cache-from/--cache-to registry cache when there is one, else
    /// built there); the first engine builds the rest and masters the ISOs. Default:
    /// DOCKER_HOST.
    #[arg(long, value_name = "URL")]
    engine: Vec<String>,
    /// Make only this step, with what it needs: base, provider:VERSION, installer, or iso
    /// (the installer image and the ISOs); repeatable. What each CI job of `forge plan` runs.
    #[arg(long, value_name = "STEP")]
    only: Vec<build::Only>,
    /// Pull the images other runs pushed with --cache-to instead of building them: `registry`
    /// (IMAGE_REGISTRY/forge-cache) or a repository.
    #[arg(long, value_name = "registry|REPOSITORY")]
    cache_from: Option<String>,
    /// Push every image this run builds to a registry cache (`registry` or a repository, as
    /// --cache-from), tagged <kind>-<input hash>, for other runs to pull.
    #[arg(long, value_name = "registry|REPOSITORY")]
    cache_to: Option<String>,
    /// Print the plan (steps, tags, the images each starts FROM, where the edge host pulls
    /// from; with --format json also each rendered Dockerfile) and build nothing. Probes the
    /// base and stylus images, pulling them when the engine does not have them.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub(super) struct IsoArgs {
    /// The installer image to master ISOs from (built before, or pulled when the engine does
    /// not have it). Optional only to clap, which leaves it out with `forge iso push`.
    #[arg(long, value_name = "REF", required = true)]
    image: Option<String>,
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    mastering: Mastering,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// The jobs, one per line, with what each makes.
    Text,
    /// `forge schema output plan`.
    Json,
    /// A GitHub Actions workflow.
    GithubActions,
    /// A GitLab CI pipeline.
    GitlabCi,
}

#[derive(Args)]
pub(super) struct PlanArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// CA certificates added to the images' trust store. Default: the checkout's certs/.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The registry cache the jobs share images through (their --cache-from and --cache-to):
    /// `registry` (IMAGE_REGISTRY/forge-cache) or a repository.
    #[arg(long, value_name = "registry|REPOSITORY", default_value = "registry")]
    cache: String,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// The forge git repository the CI files' first job builds forge from (cargo install
    /// --git), for the other jobs. Required by github-actions and gitlab-ci.
    #[arg(long, value_name = "URL", required_if_eq_any = [("format", "github-actions"), ("format", "gitlab-ci")])]
    forge_git: Option<String>,
    /// The commit of --forge-git to build. Default: the commit this forge was built from.
    #[arg(long, value_name = "COMMIT")]
    forge_rev: Option<String>,
    /// The branch whose pushes run the GitHub Actions workflow (the repository's default
    /// branch; GitLab pipelines read $CI_DEFAULT_BRANCH).
    #[arg(long, value_name = "NAME", default_value = "main")]
    branch: String,
    /// The ISO job uploads the ISOs with its output directory as a CI artifact. They hold
    /// the user-data's credentials, so by default they are left out.
    #[arg(long)]
    upload_iso: bool,
}

/// The user-data files `--user-data` names: files as given, each directory as its `*.yaml`
/// files in name order.
pub(super) fn user_data_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in args {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the user-data directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.is_dir() && p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        if found.is_empty() {
            anyhow::bail!(
                "the user-data directory {} holds no *.yaml file; put one user-data per site there",
                path.display()
            );
        }
        found.sort();
        files.append(&mut found);
    }
    Ok(files)
}

/// The ISO file name of each user-data: `<ISO_NAME>.iso` for one, `<ISO_NAME>-<stem>.iso`
/// for several, whose file stems must then differ and be ISO names themselves.
fn iso_names(iso_name: &str, files: &[PathBuf]) -> Result<Vec<String>> {
    if let [_] = files {
        return Ok(vec![format!("{iso_name}.iso")]);
    }
    let mut names: Vec<String> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        if !crate::config::is_iso_name(&stem) {
            anyhow::bail!(
                "{}: with several user-data files each ISO is named after its file stem, and `{}` is not an ISO name ({}, as ISO_NAME); rename the file",
                file.display(),
                stem.escape_debug(),
                crate::config::ISO_NAME_CHARACTERS
            );
        }
        let name = format!("{iso_name}-{stem}.iso");
        if let Some(j) = names.iter().position(|n| *n == name) {
            anyhow::bail!(
                "{} and {} would both be {name}: one ISO per user-data is named after its file stem; rename one",
                files[j].display(),
                files[i].display()
            );
        }
        names.push(name);
    }
    Ok(names)
}

/// `--FLAG PATH` as words.
fn path_words(flag: &str, path: &Path) -> [String; 2] {
    [format!("--{flag}"), path.display().to_string()]
}

impl Inputs {
    /// These flags as command-line words again (for the jobs `forge plan` emits), but the
    /// user-data and `--secret-file`, which CI jobs get from CI secrets.
    fn words(&self) -> Vec<String> {
        let mut words = self.settings.words();
        for (flag, dir) in [
            ("templates", &self.templates),
            ("overlays", &self.overlays),
            ("content-dir", &self.content_dir),
        ] {
            if let Some(dir) = dir {
                words.extend(path_words(flag, dir));
            }
        }
        words.extend(path_words("output", &self.output));
        words
    }

    fn checkout(&self) -> PathBuf {
        self.settings.checkout()
    }

    fn content_dir(&self) -> PathBuf {
        self.content_dir.clone().unwrap_or_else(|| self.checkout())
    }

    fn overlays(&self) -> Option<PathBuf> {
        existing(&self.overlays, &self.checkout(), &["overlay", "overlays"])
    }

    /// Validate the settings, `profile` and every user-data (each user-data's own findings
    /// once, the settings' once) and name their ISOs; stops with exit 1 on an error.
    fn validate(&self, profile: Option<&Path>) -> Result<Validated> {
        let files = user_data_files(&self.user_data)?;
        let mut first: Option<Outcome> = None;
        let mut errors = 0;
        for file in &files {
            let request = Request {
                user_data: Some(file.clone()),
                profile: profile.map(Path::to_path_buf),
                content_dir: Some(self.content_dir()),
                settings: self.settings.inputs()?,
                ..Request::default()
            };
            let mut outcome = validate::run(&request).context("the inputs could not be read")?;
            if let Some(first) = &mut first {
                outcome.report.diagnostics.retain(|d| d.file == *file);
                first.redactor.merge(&outcome.redactor);
            }
            let shown = first.as_ref().map_or(&outcome.redactor, |f| &f.redactor);
            if !outcome.report.diagnostics.is_empty() {
                output::report(shown, &outcome.report);
            }
            errors += outcome.report.errors();
            first.get_or_insert(outcome);
        }
        if errors > 0 {
            output::error(&Default::default(), "validation failed: nothing was built");
            return Err(Exit::failure());
        }
        let outcome = first.expect("at least one user-data");
        let iso_name = outcome
            .settings
            .get("ISO_NAME")
            .unwrap_or("palette-edge-installer");
        Ok(Validated {
            iso_names: iso_names(iso_name, &files)?,
            outcome,
            user_data: files,
        })
    }
}

/// Valid inputs: the first user-data's outcome (its redactor knows every user-data's
/// secrets), the user-data files, and the ISO each is mastered into.
struct Validated {
    outcome: Outcome,
    user_data: Vec<PathBuf>,
    iso_names: Vec<String>,
}

impl Mastering {
    fn mode(&self) -> Mode {
        progress_mode(self.progress)
    }

    /// The ISO tools' place.
    fn tools(&self) -> ToolPlace {
        match self.iso_tools {
            IsoTools::Container => ToolPlace::Container,
            IsoTools::Host => ToolPlace::Host,
        }
    }
}

/// How progress shows: nothing with `-q`; `auto` spinners when stderr is styled (a terminal
/// without NO_COLOR), lines otherwise.
fn progress_mode(progress: ProgressArg) -> Mode {
    let verbose = output::voice().verbose;
    match progress {
        _ if output::voice().quiet => Mode::Quiet,
        ProgressArg::Json => Mode::Json,
        ProgressArg::Tty => Mode::Tty { verbose },
        ProgressArg::Plain => Mode::Plain,
        ProgressArg::Auto if output::stderr_styled() => Mode::Tty { verbose },
        ProgressArg::Auto => Mode::Plain,
    }
}

/// The flag's directory, else the first of `defaults` in the checkout that exists.
fn existing(flag: &Option<PathBuf>, checkout: &Path, defaults: &[&str]) -> Option<PathBuf> {
    flag.clone().or_else(|| {
        defaults
            .iter()
            .map(|d| checkout.join(d))
            .find(|p| p.is_dir())
    })
}

/// A build's plan, and what made it.
struct Prepared {
    outcome: Outcome,
    user_data: Vec<PathBuf>,
    iso_names: Vec<String>,
    templates: Templates,
    overlays: Option<PathBuf>,
    plan: Plan,
    /// The images the build starts from.
    sources: Sources,
    progress: Progress,
    /// Stands in for absent certs/ and overlays/ in build contexts: an ordinary directory.
    _empty: tempfile::TempDir,
}

/// Probe the source images and plan the build of the validated inputs (exit 1 on findings).
fn prepare(
    inputs: &Inputs,
    validated: Validated,
    certs: &Option<PathBuf>,
    mode: Mode,
    engine: &str,
) -> Result<Prepared> {
    let Validated {
        outcome,
        user_data,
        iso_names,
    } = validated;
    let checkout = inputs.checkout();
    let content_dir = inputs.content_dir();
    let templates = Templates::load(inputs.templates.as_deref())?;
    let settings = &outcome.settings;
    let empty = run::temp_dir()?;
    std::fs::set_permissions(empty.path(), std::fs::Permissions::from_mode(0o755))?;
    let certs = existing(certs, &checkout, &["certs"]);
    let overlays = inputs.overlays();
    let progress = Progress::new(mode, outcome.redactor.clone());
    note_absent_inputs(&checkout, &content_dir, &progress);
    let sources = templates.sources(settings).map_err(finding)?;
    plan::check(settings, &sources).map_err(finding)?;
    let facts = run_async(async {
        let docker = crate::engine::connect_to(engine).await?;
        Ok(build::facts(&docker, settings, &sources, &progress).await?)
    })
    .context("probing the source images")?;
    let planned = plan::Inputs {
        settings,
        templates: &templates,
        sources: &sources,
        facts,
        certs: certs.as_deref(),
        overlays: overlays.as_deref(),
        output: &inputs.output,
        user_data: &user_data,
        empty: empty.path(),
    };
    let plan = plan::plan(&planned).map_err(finding)?;
    Ok(Prepared {
        outcome,
        user_data,
        iso_names,
        templates,
        overlays,
        plan,
        sources,
        progress,
        _empty: empty,
    })
}

pub(super) fn build(args: BuildArgs) -> Result<ExitStatus> {
    let (inputs, mastering) = (&args.inputs, &args.mastering);
    let addresses = engines(&args.engine);
    let validated = inputs.validate(args.profile.as_deref())?;
    let sharing = args.cache_from.is_some() || args.cache_to.is_some();
    let pool = match args.push || mastering.push_iso || sharing {
        true => Some(push_pool(&validated.outcome, &mastering.access)?),
        false => None,
    };
    let masters_isos = !args.no_iso
        && !args.dry_run
        && (args.only.is_empty() || args.only.contains(&build::Only::Iso));
    let needs = Needs {
        engines: addresses.clone(),
        iso_tools: masters_isos.then_some(mastering.iso_tools),
        push: pool.is_some(),
        verify: args.verify,
        uefi: args.verify && args.boot.uefi(),
        secure_boot: args.verify && args.boot.secure_boot,
        templates: inputs.templates.clone(),
    };
    let outcome = &validated.outcome;
    preflight(&needs, &outcome.settings, pool.as_ref(), &outcome.redactor)?;
    let Prepared {
        outcome,
        user_data,
        iso_names,
        templates,
        overlays,
        plan,
        progress,
        sources: _,
        _empty,
    } = prepare(
        inputs,
        validated,
        &args.certs,
        mastering.mode(),
        &addresses[0],
    )?;
    let settings = &outcome.settings;
    if args.dry_run {
        print_plan(&plan, &outcome, mastering.format)?;
        return Ok(ExitStatus::Success);
    }
    build::Only::check(&args.only, &plan).map_err(finding)?;
    let repository = cache_repository(settings, &args.cache_from, &args.cache_to)?;
    let workspace = open_workspace(&inputs.output)?;
    let job = async {
        let mut engines = Vec::new();
        for address in &addresses {
            let engine = crate::engine::Engine::connect(address).await?;
            clean_leftovers(&engine.docker, &inputs.output, &progress).await?;
            build::check_arch(&engine.docker, settings)
                .await
                .map_err(|e| anyhow::anyhow!("the engine at {address}: {e}"))?;
            engines.push(engine);
        }
        let docker = engines[0].docker.clone();
        build::check_host(&docker, &plan).await?;
        let build_args = build_args(&outcome.settings);
        let log = |line: &str| progress.line("cache", line);
        let syncer = match (&pool, &repository) {
            (Some(pool), Some(_)) => Some(Syncer::new(pool, None, 4, &log)?),
            _ => None,
        };
        let shared = match (&syncer, repository) {
            (Some(syncer), Some(repository)) => Some(build::Shared {
                repository,
                from: args.cache_from.is_some(),
                to: args.cache_to.is_some(),
                syncer,
            }),
            _ => None,
        };
        let run = build::Run {
            args: &build_args,
            jobs: usize::from(args.jobs),
            work: workspace.dir(),
            only: &args.only,
            shared: shared.as_ref(),
            progress: &progress,
        };
        let mut built = build::run(&engines, &plan, &run).await?;
        let isos = match built.iter().find(|b| b.step.kind == Kind::Installer) {
            Some(installer) if masters_isos => {
                let sites = sites(&user_data, &iso_names);
                let job = IsoJob {
                    inputs,
                    mastering,
                    settings,
                    templates: &templates,
                    image: &installer.step.tag,
                    overlays: overlays.as_deref(),
                    work: workspace.dir(),
                    build_args: &build_args,
                    pool: pool.as_ref(),
                    progress: &progress,
                };
                master_sites(&docker, &job, &sites).await?
            }
            _ => Vec::new(),
        };
        if let (true, Some(pool)) = (args.push, &pool) {
            let log = |line: &str| progress.line("push", line);
            let syncer = Syncer::new(pool, None, 4, &log)?;
            build::push(&engines, &syncer, &mut built, &progress).await?;
        }
        Ok::<_, anyhow::Error>((built, isos))
    };
    let (built, isos) = finish_job(run_async(job), &outcome)?;
    let snippet =
        build::write_outputs(&inputs.output, &outcome.settings, &templates, &built, &isos)?;
    let manifest = inputs.output.join("manifest.json");
    let snippet_file = inputs.output.join("profile-snippet.yaml");
    let mut boots = Vec::new();
    if args.verify {
        for iso in &isos {
            boots.extend(run_async(boot_all(&iso.path, &args.boot, &templates))?);
        }
    }
    let redactor = &outcome.redactor;
    match mastering.format {
        Format::Json => {
            let images: Vec<_> = built.iter().map(|b| json!({"kind": b.step.kind.label(), "image": b.step.tag, "digest": b.digest})).collect();
            let isos: Vec<_> = isos.iter().map(iso_json).collect();
            let body = json!({"manifest": manifest, "profile_snippet": snippet_file, "images": images, "isos": isos, "boots": boots});
            output::json(redactor, Shape::Build, body)?;
        }
        Format::Text => {
            let mut out = String::new();
            for b in built
                .iter()
                .filter(|b| !matches!(b.step.kind, Kind::Os | Kind::Base))
            {
                out.push_str(&format!(
                    "{:9}  {}{}\n",
                    b.step.kind.label(),
                    b.step.tag,
                    b.digest
                        .as_ref()
                        .map(|d| format!("@{d}"))
                        .unwrap_or_default()
                ));
            }
            out.push_str(&isos_text(&isos));
            out.push_str(&format!(
                "\nwrote {} and {}\n\nOS pack values for the cluster profile:\n\n{snippet}",
                manifest.display(),
                snippet_file.display()
            ));
            if !boots.is_empty() {
                out.push('\n');
                out.push_str(&boots_text(&boots));
            }
            output::text(redactor, &out)?;
        }
    }
    Ok(ExitStatus::from_ok(boots.iter().all(|b| b.passed)))
}

/// `forge iso`: master one ISO per user-data from an installer image built (or pulled) before.
pub(super) fn iso(args: IsoArgs) -> Result<ExitStatus> {
    let image = args.image.as_deref().context("forge iso needs --image")?;
    let (inputs, mastering) = (&args.inputs, &args.mastering);
    let Validated {
        outcome,
        user_data,
        iso_names,
    } = inputs.validate(None)?;
    let templates = Templates::load(inputs.templates.as_deref())?;
    let settings = &outcome.settings;
    let overlays = inputs.overlays();
    let progress = Progress::new(mastering.mode(), outcome.redactor.clone());
    let pool = match mastering.push_iso {
        true => Some(push_pool(&outcome, &mastering.access)?),
        false => None,
    };
    let needs = Needs {
        engines: engines(&[]),
        iso_tools: Some(mastering.iso_tools),
        push: pool.is_some(),
        verify: false,
        uefi: false,
        secure_boot: false,
        templates: inputs.templates.clone(),
    };
    preflight(&needs, settings, pool.as_ref(), &outcome.redactor)?;
    let workspace = open_workspace(&inputs.output)?;
    let job = async {
        let docker = crate::engine::connect().await?;
        clean_leftovers(&docker, &inputs.output, &progress).await?;
        build::check_arch(&docker, settings).await?;
        let credentials = crate::engine::credentials_for(&[image.to_string()]).await?;
        crate::engine::ensure_image(&docker, image, &credentials)
            .await
            .map_err(BuildError::from)?;
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
            progress: &progress,
        };
        let isos = master_sites(&docker, &job, &sites(&user_data, &iso_names)).await?;
        Ok::<_, anyhow::Error>(isos)
    };
    let isos = finish_job(run_async(job), &outcome)?;
    build::write_manifest(&inputs.output, settings, &[], &isos)?;
    let redactor = &outcome.redactor;
    match mastering.format {
        Format::Json => {
            let isos: Vec<_> = isos.iter().map(iso_json).collect();
            let body = json!({"manifest": inputs.output.join("manifest.json"), "isos": isos});
            output::json(redactor, Shape::Iso, body)?;
        }
        Format::Text => output::text(redactor, &isos_text(&isos))?,
    }
    Ok(ExitStatus::Success)
}

/// The repository of the registry cache `--cache-from` and `--cache-to` name (`registry`:
/// IMAGE_REGISTRY/forge-cache); they must agree.
fn cache_repository(
    settings: &crate::config::Resolved,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<Option<String>> {
    let resolve = |value: &String| -> Result<String> {
        match value.as_str() {
            "registry" => settings
                .get("IMAGE_REGISTRY")
                .map(|r| format!("{}/forge-cache", r.trim_end_matches('/')))
                .context("--cache-from/--cache-to registry keeps the images in IMAGE_REGISTRY/forge-cache: set IMAGE_REGISTRY, or name a repository"),
            repository => {
                Reference::parse(&format!("{repository}:probe")).with_context(|| {
                    format!(
                        "`{}` is not a repository (REGISTRY/PATH) for the registry cache",
                        crate::limits::clip(repository)
                    )
                })?;
                Ok(repository.to_string())
            }
        }
    };
    let from = from.as_ref().map(resolve).transpose()?;
    let to = to.as_ref().map(resolve).transpose()?;
    match (from, to) {
        (Some(from), Some(to)) if from != to => anyhow::bail!(
            "--cache-from {from} and --cache-to {to} name two caches; give one repository to both"
        ),
        (from, to) => Ok(from.or(to)),
    }
}

/// `forge plan`: the build as independent CI jobs.
pub(super) fn plan(args: PlanArgs) -> Result<ExitStatus> {
    let inputs = &args.inputs;
    let prepared = prepare(
        inputs,
        inputs.validate(None)?,
        &args.certs,
        Mode::Plain,
        &crate::engine::default_address(),
    )?;
    let settings = &prepared.outcome.settings;
    let cache = cache_repository(settings, &Some(args.cache.clone()), &None)?;
    let carried = crate::ci::carried(settings);
    let mut shared = inputs.words();
    shared.extend(carried.sets);
    if let Some(certs) = &args.certs {
        shared.extend(path_words("certs", certs));
    }
    let mut build = vec!["forge".to_string(), "build".to_string()];
    build.extend(shared.iter().cloned());
    build.extend(inputs.settings.secret_file_words());
    for file in &inputs.user_data {
        build.extend(path_words("user-data", file));
    }
    let output = inputs.output.display().to_string();
    let jobs = crate::ci::jobs(&prepared.plan, &build, &args.cache, &output);
    let redactor = &prepared.outcome.redactor;
    let pipeline = || {
        let install = crate::ci::Install::new(
            args.forge_git.as_deref().unwrap_or_default(),
            args.forge_rev.as_deref(),
        )?;
        crate::ci::Pipeline::new(crate::ci::Request {
            jobs: &jobs,
            build: shared.clone(),
            user_data: &prepared.user_data,
            registries: crate::ci::registries(settings, &prepared.sources, cache.as_deref()),
            secret_settings: carried.secrets.clone(),
            install,
            branch: args.branch.clone(),
            upload_iso: args.upload_iso,
        })
    };
    let text = match args.format {
        PlanFormat::Json => {
            let body = json!({"cache": args.cache, "jobs": jobs});
            output::json(redactor, Shape::Plan, body)?;
            return Ok(ExitStatus::Success);
        }
        PlanFormat::Text => crate::ci::text(&jobs),
        PlanFormat::GithubActions => pipeline()
            .and_then(|p| p.github_actions())
            .map_err(finding)?,
        PlanFormat::GitlabCi => pipeline().map(|p| p.gitlab_ci()).map_err(finding)?,
    };
    output::text(redactor, &text)?;
    Ok(ExitStatus::Success)
}

/// The sites: each user-data with its ISO's name.
fn sites<'a>(user_data: &'a [PathBuf], names: &[String]) -> Vec<iso::Site<'a>> {
    user_data
        .iter()
        .zip(names)
        .map(|(user_data, name)| iso::Site {
            user_data,
            name: name.clone(),
        })
        .collect()
}

/// The registry connections a push uses (credentials from the Docker config, the user-data's
/// registries and the access flags).
fn push_pool(outcome: &Outcome, access: &AccessArgs) -> Result<Pool> {
    let rewriter = outcome
        .rewriter
        .as_ref()
        .context("user-data was not parsed")?;
    Ok(Pool::new(policy(rewriter, access)?))
}

/// A problem with the inputs, said as it is: exit 1.
fn finding(e: impl std::fmt::Display) -> anyhow::Error {
    output::error(&Default::default(), &e.to_string());
    Exit::failure()
}

/// The output directory, locked for this run; a busy one stops with exit 1.
fn open_workspace(output: &Path) -> Result<Workspace> {
    match Workspace::open(output) {
        Err(e @ RunError::Busy { .. }) => Err(finding(e)),
        other => other.context("the output directory is not usable"),
    }
}

/// Remove what a stopped earlier run left, and say so.
async fn clean_leftovers(
    docker: &bollard::Docker,
    output: &Path,
    progress: &Progress,
) -> Result<()> {
    let removed = run::clean_leftovers(docker, output).await?;
    if let Some(summary) = removed.summary() {
        progress.finish(
            "cleanup",
            "removed",
            &format!("{summary} left by an earlier run that was stopped"),
        );
    }
    Ok(())
}

/// A build or mastering failure is a finding (exit 1, secrets masked); other errors go up.
fn finish_job<T>(result: Result<T>, outcome: &Outcome) -> Result<T> {
    match result {
        Err(e)
            if matches!(
                e.downcast_ref::<BuildError>(),
                Some(BuildError::Engine(EngineError::Build { .. }) | BuildError::OnEngine { .. })
            ) =>
        {
            output::error(&outcome.redactor, &super::describe(&e));
            Err(Exit::failure())
        }
        Err(e) if e.downcast_ref::<IsoError>().is_some() => {
            let said = format!("mastering the ISO: {}", super::describe(&e));
            output::error(&outcome.redactor, &said);
            Err(Exit::failure())
        }
        other => other,
    }
}

/// What mastering the sites' ISOs needs.
struct IsoJob<'a> {
    inputs: &'a Inputs,
    mastering: &'a Mastering,
    settings: &'a crate::config::Resolved,
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
    docker: &bollard::Docker,
    job: &IsoJob<'_>,
    sites: &[iso::Site<'_>],
) -> Result<Vec<iso::Mastered>> {
    let (inputs, mastering) = (job.inputs, job.mastering);
    let cache_dir = mastering
        .cache_dir
        .clone()
        .unwrap_or_else(Cache::default_dir);
    let cache = Cache::open(&cache_dir)
        .with_context(|| format!("the cache directory {} is not usable", cache_dir.display()))?;
    let spec = iso::Spec {
        image: job.image,
        settings: job.settings,
        templates: job.templates,
        overlays: job.overlays,
        content_dir: &inputs.content_dir(),
        output: &inputs.output,
        work: job.work,
        source_date_epoch: super::source_date_epoch()?,
        tools: mastering.tools(),
        build_args: job.build_args,
        cache: &cache,
    };
    let mut isos = iso::master(docker, &spec, sites, job.progress).await?;
    if let (true, Some(pool)) = (mastering.push_iso, job.pool) {
        let log = |line: &str| job.progress.line("push", line);
        let syncer = Syncer::new(pool, None, 4, &log)?;
        for iso in &mut isos {
            build::push_iso(
                &syncer,
                job.settings,
                iso,
                spec.source_date_epoch,
                job.progress,
            )
            .await?;
        }
    }
    Ok(isos)
}

/// An ISO in the `build` and `iso` documents.
fn iso_json(iso: &iso::Mastered) -> serde_json::Value {
    json!({"path": iso.path, "user_data": iso.user_data, "sha256": iso.sha256, "size": iso.size, "cached": iso.cached, "reference": iso.pushed.as_ref().map(|p| &p.0), "digest": iso.pushed.as_ref().map(|p| &p.1)})
}

/// The ISOs, one line each (and where each was pushed).
fn isos_text(isos: &[iso::Mastered]) -> String {
    let mut out = String::new();
    for iso in isos {
        out.push_str(&format!(
            "{:9}  {} ({}, sha256 {})\n",
            "iso",
            iso.path.display(),
            crate::registry::sync::human(iso.size),
            iso.sha256
        ));
        if let Some((tag, digest)) = &iso.pushed {
            out.push_str(&format!("{:9}  {tag}@{digest}\n", "iso image"));
        }
    }
    out
}

/// Notes on the checkout's optional inputs that are absent and skipped, as CanvOS skips them
/// (CLUSTERCONFIG and EDGE_CUSTOM_CONFIG are noted by validation).
fn note_absent_inputs(checkout: &Path, content_dir: &Path, progress: &Progress) {
    if !checkout.join(plan::LUET_AUTH).is_file() {
        progress.finish(
            "checkout",
            "skipped",
            &format!(
                "{} (absent): luet reads SPECTRO_LUET_REPO without credentials",
                plan::LUET_AUTH
            ),
        );
    }
    let bundles = std::fs::read_dir(content_dir)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("content-"))
        })
        .unwrap_or(false);
    if !bundles {
        progress.finish(
            "checkout",
            "skipped",
            &format!(
                "content bundles (no content-*/ in {})",
                content_dir.display()
            ),
        );
    }
}

/// `--dry-run`: the steps, their images, and where the edge host will pull provider images from.
fn print_plan(plan: &Plan, outcome: &Outcome, format: Format) -> Result<()> {
    let pulled_from = |tag: &str| -> Option<String> {
        let reference = Reference::parse(tag).ok()?;
        let rewriter = outcome.rewriter.as_ref()?;
        rewriter
            .rewrite(&reference)
            .ok()
            .map(|r| r.to.to_string())
            .filter(|to| to != &reference.canonical().to_string())
    };
    match format {
        Format::Json => {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .map(|s| {
                    let context = match &s.context {
                        plan::Context::Files(files) => json!({"files": files.iter().map(|(dest, _)| dest).collect::<Vec<_>>()}),
                        plan::Context::Directory { root } => json!({"directory": root, "exclude": s.exclude.paths()}),
                    };
                    json!({
                        "step": s.name(),
                        "kind": s.kind.label(),
                        "image": s.tag,
                        "from": s.from_images(),
                        "build_args": s.build_args,
                        "context": context,
                        "dockerfile": s.dockerfile,
                        "input_hash": s.input_hash,
                        "edge_pulls_from": if matches!(s.kind, Kind::Provider { .. }) { pulled_from(&s.tag) } else { None },
                    })
                })
                .collect();
            let body = json!({"bundle": plan.bundle, "steps": steps});
            output::json(&outcome.redactor, Shape::BuildPlan, body)
        }
        Format::Text => {
            let width = plan.steps.iter().map(|s| s.name().len()).max().unwrap_or(0);
            let mut lines = Vec::new();
            for s in &plan.steps {
                lines.push(format!("{:width$}  {}", s.name(), s.tag));
                lines.push(format!(
                    "{:width$}    from {}",
                    "",
                    s.from_images().join(", ")
                ));
                if let Some(to) =
                    pulled_from(&s.tag).filter(|_| matches!(s.kind, Kind::Provider { .. }))
                {
                    lines.push(format!("{:width$}    edge host pulls {to}", ""));
                }
            }
            lines.push(String::new());
            Ok(output::text(&outcome.redactor, &lines.join("\n"))?)
        }
    }
}
