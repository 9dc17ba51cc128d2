//! `forge doctor`: the inputs a command line names and the host checks of [`crate::doctor`]
//! for it, each with its fix; and [`preflight`], the same host checks `forge build` runs
//! before anything else.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::json;

use super::build::{user_data_files, IsoTools};
use super::images::{policy, run_async, AccessArgs};
use super::output::{self, Exit, ExitStatus, Format, Shape};
use super::SettingsArgs;
use crate::config::Resolved;
use crate::doctor::{self, Check, Status};
use crate::iso::arch::Arch;
use crate::reference::parse_domain;
use crate::registry::rewrite::{Rewriter, Rules};
use crate::registry::Pool;
use crate::render::Templates;
use crate::secret::Redactor;
use crate::validate::{self, Request};

#[derive(Args)]
pub(super) struct DoctorArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Edge installer user-data to validate; repeatable, or a directory of *.yaml files.
    #[arg(long, value_name = "FILE|DIR")]
    user_data: Vec<PathBuf>,
    /// Directory whose templates replace the built-in ones (as `forge build --templates`).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Where the ISO tools will run (`host`: they must be on this machine).
    #[arg(long, value_enum, default_value_t = IsoTools::Container)]
    iso_tools: IsoTools,
    /// The engines the build uses (as `forge build --engine`). Default: DOCKER_HOST.
    #[arg(long, value_name = "URL")]
    engine: Vec<String>,
    /// The build pushes (`--push`, `--push-iso`, a registry cache): IMAGE_REGISTRY must
    /// answer.
    #[arg(long)]
    push: bool,
    /// The build boots its ISOs (`forge build --verify`, `forge verify`): QEMU and OVMF must
    /// be there.
    #[arg(long)]
    verify: bool,
    /// The boots enforce Secure Boot: OVMF's Secure Boot build must be there.
    #[arg(long)]
    secure_boot: bool,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How long `forge doctor` waits for a registry, retries included.
const REGISTRY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// How to make the push target answer.
const PUSH_FIX: &str = "check the address and the network; a private CA goes in --registry-ca or the user-data's registry caCerts; credentials come from `docker login`";
/// How to make a source registry answer.
const SOURCE_FIX: &str = "the engine pulls the source images from here when it lacks them: check its network and proxy, `docker login` for credentials, /etc/docker/certs.d/HOST/ca.crt for a private CA";
/// The settings naming registries the source images are pulled from.
const SOURCE_REGISTRIES: &[&str] = &[
    "SPECTRO_PUB_REPO",
    "SPECTRO_LUET_REPO",
    "KAIROS_BASE_IMAGE_URL",
];

/// What a command line needs of the host.
pub(super) struct Needs {
    pub engines: Vec<String>,
    pub iso_tools: Option<IsoTools>,
    pub push: bool,
    /// Boots: QEMU; `uefi` ones the UEFI firmware too, `secure_boot` ones its Secure Boot
    /// build.
    pub verify: bool,
    pub uefi: bool,
    pub secure_boot: bool,
    /// The `--templates` directory, where the architecture's boot facts (GRUB packages, QEMU,
    /// firmware) may be replaced.
    pub templates: Option<PathBuf>,
}

/// The engines `--engine` names, else DOCKER_HOST's.
pub(super) fn engines(flags: &[String]) -> Vec<String> {
    match flags.is_empty() {
        true => vec![crate::engine::default_address()],
        false => flags.to_vec(),
    }
}

/// The host checks for `needs`, concurrently: every one (`all`, as `forge doctor` shows
/// them), or only what the command line needs (`forge build`); the registry's with a `pool`.
async fn host_checks(
    needs: &Needs,
    settings: &Resolved,
    pool: Option<&Pool>,
    all: bool,
) -> Vec<Check> {
    let arch = settings.get("ARCH").unwrap_or("amd64");
    let engines =
        futures_util::future::join_all(needs.engines.iter().map(|e| doctor::engine(e, arch)));
    // The push target, then (for `forge doctor`) where the source images come from when the
    // engine lacks them; each registry once.
    let targets = std::iter::once(("IMAGE_REGISTRY", needs.push, PUSH_FIX));
    let sources = SOURCE_REGISTRIES
        .iter()
        .filter(|_| all)
        .map(|n| (*n, false, SOURCE_FIX));
    let mut named: Vec<(&str, String, bool, &str)> = Vec::new();
    for (name, needed, fix) in targets.chain(sources) {
        // An invalid value is a validation finding, not a host to probe.
        let host = settings.get(name).and_then(|v| parse_domain(v).ok());
        if let Some(host) = host
            .map(|d| d.authority())
            .filter(|h| named.iter().all(|n| n.1 != *h))
        {
            named.push((name, host, needed, fix));
        }
    }
    let registries =
        futures_util::future::join_all(named.iter().filter_map(|(name, host, needed, fix)| {
            Some(doctor::registry(pool?, name, host, *needed, fix))
        }));
    let (engines, registries) = tokio::join!(engines, registries);
    let mut checks: Vec<Check> = engines.into_iter().flatten().collect();
    checks.extend(registries);
    let boots = all || needs.verify;
    if needs.iso_tools.is_none() && !boots {
        return checks;
    }
    // The ISO tools, QEMU and firmware of the build's architecture.
    let arch = Templates::load(needs.templates.as_deref()).and_then(|t| Arch::of(&t, settings));
    let arch = match arch {
        Ok(arch) => arch,
        Err(e) => {
            checks.push(Check::problem(
                "boot facts",
                true,
                e.to_string(),
                "correct the data file it names, or remove it from the --templates directory",
            ));
            return checks;
        }
    };
    if let Some(place) = needs.iso_tools {
        checks.push(doctor::iso_tools(place == IsoTools::Host, &arch));
    }
    if boots {
        checks.push(doctor::qemu(needs.verify, &arch));
        checks.extend(doctor::firmware(needs.uefi, needs.secure_boot, &arch));
        checks.push(doctor::kvm());
    }
    checks
}

/// `forge build`'s first step after validation: the host checks its command line needs (the
/// registry with the `pool` it pushes with); a failing one stops it (exit 2) with the words
/// `forge doctor` uses (redacted by `redactor`).
pub(super) fn preflight(
    needs: &Needs,
    settings: &Resolved,
    pool: Option<&Pool>,
    redactor: &Redactor,
) -> Result<()> {
    let checks = run_async(async { Ok(host_checks(needs, settings, pool, false).await) })?;
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status == Status::Error)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    for check in failed {
        let fix = check.fix.as_deref().unwrap_or_default();
        let said = format!("{}: {}; {fix}", check.name, check.found);
        output::error(redactor, &said);
    }
    output::note(
        redactor,
        "`forge doctor` with the same flags shows every check",
    );
    Err(Exit(ExitStatus::Error).into())
}

pub(super) fn doctor(args: DoctorArgs) -> Result<ExitStatus> {
    let mut checks = Vec::new();
    let mut redactor = Redactor::new();
    let files = user_data_files(&args.user_data)?;
    let mut settings = None;
    let mut rewriter = None;
    for file in files
        .iter()
        .map(Some)
        .chain(files.is_empty().then_some(None))
    {
        let request = Request {
            user_data: file.cloned(),
            settings: args.settings.inputs()?,
            ..Request::default()
        };
        let outcome = validate::run(&request).context("the inputs could not be read")?;
        redactor.merge(&outcome.redactor);
        let (name, found) = match file {
            Some(file) => (
                "user-data",
                format!("{}: {}", file.display(), outcome.report.summary()),
            ),
            None => ("settings", outcome.report.summary()),
        };
        // The command that shows the findings, with the flags given here.
        let mut words = match file {
            Some(file) => vec![
                "forge".into(),
                "validate".into(),
                "--user-data".into(),
                file.display().to_string(),
            ],
            None => vec!["forge".into(), "config".into(), "show".into()],
        };
        words.extend(args.settings.words());
        checks.push(match outcome.report.errors() {
            0 => Check::ok(name, found),
            _ => Check::problem(
                name,
                true,
                found,
                &format!(
                    "`{}` shows each problem and its fix",
                    crate::ci::shell_words(&words)
                ),
            ),
        });
        rewriter = rewriter.or(outcome.rewriter);
        settings.get_or_insert(outcome.settings);
    }
    let settings = settings.expect("the settings are resolved once at least");
    checks.push(build_settings(&settings, args.templates.as_deref()));
    let rewriter = rewriter.unwrap_or(Rewriter {
        rules: Rules::Unchanged,
        registries: Vec::new(),
    });
    // A registry answers within seconds or is reported: doctor is quick.
    let pool = match policy(&rewriter, &args.access) {
        Ok(mut policy) => {
            if let Some((_, password)) = &policy.credentials {
                redactor.add(password);
            }
            policy.retry.deadline = policy.retry.deadline.min(REGISTRY_DEADLINE);
            Some(Pool::new(policy))
        }
        Err(e) => {
            checks.push(Check::problem(
                "registry access",
                true,
                super::describe(&e),
                "fix the file named (the Docker config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json) or the flags",
            ));
            None
        }
    };
    let needs = Needs {
        engines: engines(&args.engine),
        iso_tools: Some(args.iso_tools),
        push: args.push,
        verify: args.verify || args.secure_boot,
        uefi: args.verify || args.secure_boot,
        secure_boot: args.secure_boot,
        templates: args.templates.clone(),
    };
    checks.extend(run_async(async {
        Ok(host_checks(&needs, &settings, pool.as_ref(), true).await)
    })?);
    let passed = doctor::passed(&checks);
    match args.format {
        Format::Json => output::json(
            &redactor,
            Shape::Doctor,
            json!({"passed": passed, "checks": checks}),
        )?,
        Format::Text => output::stdout(&text(&checks, passed, &redactor))?,
    }
    Ok(ExitStatus::from_ok(passed))
}

/// Whether the settings name a complete build (what `forge build` plans from): IMAGE_REGISTRY,
/// K8S_DISTRIBUTION, a base image, Kubernetes versions.
fn build_settings(settings: &Resolved, templates: Option<&std::path::Path>) -> Check {
    const NAME: &str = "build settings";
    let planned = Templates::load(templates)
        .map_err(|e| e.to_string())
        .and_then(|templates| templates.sources(settings).map_err(|e| e.to_string()))
        .and_then(|sources| crate::plan::check(settings, &sources).map_err(|e| e.to_string()));
    match planned {
        Ok(versions) => Check::ok(
            NAME,
            format!("a build of Kubernetes {}", versions.join(", ")),
        ),
        Err(e) => Check::problem(
            NAME,
            true,
            e,
            "set it in the .arg file, forge.yaml, FORGE_<NAME> or --set",
        ),
    }
}

/// The checks, one per line with a mark (coloured on a terminal), the fix below each problem;
/// what they say redacted and escaped.
fn text(checks: &[Check], passed: bool, redactor: &Redactor) -> String {
    let shown = |text: &str| crate::diagnostic::escape_control(&redactor.redact(text));
    let styled = output::stdout_styled();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let mark = match check.status {
            Status::Ok => output::paint(styled, "32", "ok  "),
            Status::Warning => output::paint(styled, "33", "warn"),
            Status::Error => output::paint(styled, "1;31", "FAIL"),
        };
        out.push_str(&format!(
            "{mark}  {:width$}  {}\n",
            check.name,
            shown(&check.found)
        ));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("      {:width$}  fix: {}\n", "", shown(fix)));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Error).count();
    out.push_str(&match passed {
        true => "\nthis command line can run\n".to_string(),
        false => format!(
            "\n{failed} {} this command line\n",
            if failed == 1 {
                "problem stops"
            } else {
                "problems stop"
            }
        ),
    });
    out
}
