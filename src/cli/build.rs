//! `forge build`: validate, plan, check the host, build on the Docker Engine, push, report.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::images::{policy, run_async, AccessArgs};
use super::iso::{boot_all, report as boot_report, BootArgs};
use super::{Exit, Format, SettingsArgs};
use crate::build::{self, build_args, BuildError};
use crate::engine::EngineError;
use crate::iso::{self, IsoError, ToolPlace};
use crate::plan::{self, Kind, Plan};
use crate::reference::Reference;
use crate::registry::sync::Syncer;
use crate::registry::Pool;
use crate::render::Templates;
use crate::report::{Mode, Progress};
use crate::run::{self, RunError, Workspace};
use crate::validate::{self, Outcome, Request};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    /// Spinners on a terminal, lines otherwise.
    Auto,
    Tty,
    Plain,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsoTools {
    Container,
    Host,
}

#[derive(Args)]
pub(super) struct BuildArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Edge installer user-data (#cloud-config); validated before anything is built.
    #[arg(long, value_name = "FILE")]
    user_data: PathBuf,
    /// Cluster profile, checked against the user-data.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Directory whose templates replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Overlays directory: files/ go into the images, files-iso/ onto the ISO. Default: the
    /// checkout's overlay/ (CanvOS's name) or overlays/.
    #[arg(long, value_name = "DIR")]
    overlays: Option<PathBuf>,
    /// CA certificates added to the images' trust store. Default: the checkout's certs/.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Push the provider images to IMAGE_REGISTRY.
    #[arg(long)]
    push: bool,
    /// Push the ISO as an image, as CanvOS's +iso-disk-image:
    /// IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG], /disk/<ISO_NAME>.iso inside.
    #[arg(long, conflicts_with = "no_iso")]
    push_iso: bool,
    /// Build the images only, no installer ISO.
    #[arg(long)]
    no_iso: bool,
    /// Where the ISO tools (squashfs-tools, xorriso, GRUB, mtools, dosfstools) run: in a
    /// builder container forge builds, or on this machine.
    #[arg(long, value_enum, default_value_t = IsoTools::Container)]
    iso_tools: IsoTools,
    /// Boot the ISO in QEMU after mastering it (see `forge verify`); a failed boot fails the build.
    #[arg(long, conflicts_with = "no_iso")]
    verify: bool,
    #[command(flatten)]
    boot: BootArgs,
    /// Directory searched for content bundles (content-*/*.zst). Default: the checkout.
    #[arg(long, value_name = "DIR")]
    content_dir: Option<PathBuf>,
    #[command(flatten)]
    access: AccessArgs,
    /// Provider images built at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
    /// Where the ISO, its checksum, manifest.json and profile-snippet.yaml go.
    #[arg(long, value_name = "DIR", default_value = "build")]
    output: PathBuf,
    /// Print the plan (steps, tags, the images each starts FROM, where the edge host pulls
    /// from; with --format json also each rendered Dockerfile) and build nothing. Probes the
    /// base and stylus images, pulling them when the engine does not have them.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// `json`: one event per line on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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

pub(super) fn build(args: BuildArgs) -> Result<u8> {
    let checkout = args.settings.checkout();
    let content_dir = args.content_dir.clone().unwrap_or_else(|| checkout.clone());
    let request = Request {
        user_data: Some(args.user_data.clone()),
        profile: args.profile.clone(),
        content_dir: Some(content_dir.clone()),
        settings: args.settings.inputs()?,
        ..Request::default()
    };
    let outcome = validate::run(&request).context("the inputs could not be read")?;
    if !outcome.report.diagnostics.is_empty() {
        eprint!("{}", outcome.report.render_text(&outcome.redactor));
    }
    if outcome.report.errors() > 0 {
        eprintln!("validation failed: nothing was built");
        return Err(Exit(1).into());
    }
    let templates = Templates::load(args.templates.as_deref())?;
    let settings = &outcome.settings;
    // Stands in for absent certs/ and overlays/ in build contexts: an ordinary directory.
    let empty = run::temp_dir()?;
    std::fs::set_permissions(empty.path(), std::fs::Permissions::from_mode(0o755))?;
    let certs = existing(&args.certs, &checkout, &["certs"]);
    let overlays = existing(&args.overlays, &checkout, &["overlay", "overlays"]);
    let mode = match (args.format, args.progress) {
        (Format::Json, _) if args.dry_run => Mode::Plain,
        (Format::Json, _) => Mode::Json,
        (_, ProgressArg::Tty) => Mode::Tty,
        (_, ProgressArg::Plain) => Mode::Plain,
        (_, ProgressArg::Auto) => Mode::auto(),
    };
    let progress = Progress::new(mode, outcome.redactor.clone());
    note_absent_inputs(&checkout, &content_dir, &progress);
    let sources = match templates.sources(settings) {
        Ok(sources) => sources,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Exit(1).into());
        }
    };
    if let Err(e) = plan::check(settings, &sources) {
        eprintln!("error: {e}");
        return Err(Exit(1).into());
    }
    let facts = run_async(async {
        let docker = crate::engine::connect().await?;
        Ok(build::facts(&docker, settings, &sources, &progress).await?)
    })
    .context("probing the source images")?;
    let inputs = plan::Inputs {
        settings,
        templates: &templates,
        sources: &sources,
        facts,
        certs: certs.as_deref(),
        overlays: overlays.as_deref(),
        output: &args.output,
        user_data: Some(&args.user_data),
        empty: empty.path(),
    };
    let plan = match plan::plan(&inputs) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Exit(1).into());
        }
    };
    if args.dry_run {
        print_plan(&plan, &outcome, args.format)?;
        return Ok(0);
    }
    let source_date_epoch = super::source_date_epoch()?;
    let push_policy = if args.push || args.push_iso {
        Some(policy(
            outcome
                .rewriter
                .as_ref()
                .context("user-data was not parsed")?,
            &args.access,
        )?)
    } else {
        None
    };
    let pool = push_policy.map(Pool::new);
    let log = |line: &str| progress.line("push", line);
    let workspace = match Workspace::open(&args.output) {
        Err(e @ RunError::Busy { .. }) => {
            eprintln!("error: {e}");
            return Err(Exit(1).into());
        }
        other => other.context("the output directory is not usable")?,
    };
    let job = async {
        let docker = crate::engine::connect().await?;
        let removed = run::clean_leftovers(&docker, &args.output).await?;
        if let Some(summary) = removed.summary() {
            progress.finish(
                "cleanup",
                "removed",
                &format!("{summary} left by an earlier run that was stopped"),
            );
        }
        build::check_host(&docker, &plan).await?;
        let build_args = build_args(&outcome.settings);
        let mut built = build::run(
            &docker,
            &plan,
            &build_args,
            usize::from(args.jobs),
            workspace.dir(),
            &progress,
        )
        .await?;
        let mut iso = match built.iter().find(|b| b.step.kind == Kind::Installer) {
            Some(installer) if !args.no_iso => {
                let spec = iso::Spec {
                    image: &installer.step.tag,
                    user_data: &args.user_data,
                    settings: &outcome.settings,
                    templates: &templates,
                    overlays: overlays.as_deref(),
                    content_dir: &content_dir,
                    output: &args.output,
                    work: workspace.dir(),
                    source_date_epoch,
                    tools: match args.iso_tools {
                        IsoTools::Container => ToolPlace::Container,
                        IsoTools::Host => ToolPlace::Host,
                    },
                    build_args: &build_args,
                };
                Some(iso::master(&docker, &spec, &progress).await?)
            }
            _ => None,
        };
        if let Some(pool) = &pool {
            let syncer = Syncer::new(pool, None, 4, &log)?;
            if args.push {
                build::push(&docker, &syncer, &mut built, &progress).await?;
            }
            if let (true, Some(iso)) = (args.push_iso, iso.as_mut()) {
                build::push_iso(
                    &syncer,
                    &outcome.settings,
                    iso,
                    source_date_epoch,
                    &progress,
                )
                .await?;
            }
        }
        Ok::<_, anyhow::Error>((built, iso))
    };
    let (built, iso) = match run_async(job) {
        Err(e)
            if matches!(
                e.downcast_ref::<BuildError>(),
                Some(BuildError::Engine(EngineError::Build { .. }))
            ) =>
        {
            eprintln!("error: {}", outcome.redactor.redact(&super::describe(&e)));
            return Err(Exit(1).into());
        }
        Err(e) if e.downcast_ref::<IsoError>().is_some() => {
            eprintln!(
                "error: mastering the ISO: {}",
                outcome.redactor.redact(&super::describe(&e))
            );
            return Err(Exit(1).into());
        }
        other => other?,
    };
    let snippet = build::write_outputs(
        &args.output,
        &outcome.settings,
        &templates,
        &built,
        iso.as_ref(),
    )?;
    let manifest = args.output.join("manifest.json");
    match args.format {
        Format::Json => progress.event("done", json!({"manifest": manifest, "profile_snippet": args.output.join("profile-snippet.yaml"), "images": built.iter().map(|b| json!({"kind": b.step.kind.label(), "image": b.step.tag, "digest": b.digest})).collect::<Vec<_>>(), "iso": iso.as_ref().map(|i| json!({"path": i.path, "sha256": i.sha256, "size": i.size, "reference": i.pushed.as_ref().map(|p| &p.0), "digest": i.pushed.as_ref().map(|p| &p.1)}))})),
        Format::Text => {
            let mut out = String::new();
            for b in built.iter().filter(|b| !matches!(b.step.kind, Kind::Os | Kind::Base)) {
                out.push_str(&format!("{:9}  {}{}\n", b.step.kind.label(), b.step.tag, b.digest.as_deref().map(|d| format!("@{d}")).unwrap_or_default()));
            }
            if let Some(iso) = &iso {
                out.push_str(&format!("{:9}  {} ({}, sha256 {})\n", "iso", iso.path.display(), crate::registry::sync::human(iso.size), iso.sha256));
                if let Some((tag, digest)) = &iso.pushed {
                    out.push_str(&format!("{:9}  {tag}@{digest}\n", "iso image"));
                }
            }
            out.push_str(&format!("\nwrote {} and {}\n\nOS pack values for the cluster profile:\n\n{snippet}", manifest.display(), args.output.join("profile-snippet.yaml").display()));
            print!("{}", outcome.redactor.redact(&out));
        }
    }
    match (&iso, args.verify) {
        (Some(iso), true) => {
            let outcomes = run_async(boot_all(&iso.path, &args.boot))?;
            boot_report(&outcomes, args.format)
        }
        _ => Ok(0),
    }
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
    let text = match format {
        Format::Json => {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .map(|s| {
                    let context = match &s.context {
                        plan::Context::Files(files) => json!({"files": files.iter().map(|(dest, _)| dest).collect::<Vec<_>>()}),
                        plan::Context::Directory { root, exclude } => json!({"directory": root, "exclude": exclude}),
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
            serde_json::to_string_pretty(&json!({"bundle": plan.bundle, "steps": steps}))?
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
            lines.join("\n")
        }
    };
    println!("{}", outcome.redactor.redact(&text));
    Ok(())
}
