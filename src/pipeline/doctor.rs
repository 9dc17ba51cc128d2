//! `forge doctor`: the inputs a command line names and the host checks of [`crate::doctor`]
//! for it, each with its fix; and [`preflight`], the host checks `forge build` and `forge iso`
//! run before anything else, stopping on a failing one with the same words.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::images::Access;
use super::inputs::{user_data_files, SettingsRequest};
use super::{block_on, Error};
use crate::config::Settings;
use crate::doctor::{self, Check, Status};
use crate::iso::arch::Arch;
use crate::iso::ToolPlace;
use crate::output::{paint, shown};
use crate::progress::{Event, Progress};
use crate::reference::parse_domain;
use crate::registry::rewrite::Rewriter;
use crate::registry::Pool;
use crate::render::Templates;
use crate::validate::{self, Request};

/// How long `forge doctor` waits for a registry, retries included.
const REGISTRY_DEADLINE: Duration = Duration::from_secs(5);
/// How to make the push target answer.
const PUSH_FIX: &str = "check the address and the network; a private CA goes in --registry-ca or the user-data's registry caCerts; credentials come from `docker login`";
/// How to make a source registry answer.
const SOURCE_FIX: &str = "the engine pulls the source images from here when it lacks them: check its network and proxy, `docker login` for credentials, /etc/docker/certs.d/HOST/ca.crt for a private CA";

/// What a command line needs of the host.
#[derive(Debug, Clone)]
pub struct Needs {
    /// The engines it builds on (none: DOCKER_HOST's).
    pub engines: Vec<String>,
    /// Where its ISO tools run, when it masters ISOs.
    pub iso_tools: Option<ToolPlace>,
    /// It pushes to IMAGE_REGISTRY.
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

/// The host checks for `needs`, concurrently: every one (`all`, as `forge doctor` shows
/// them), or only what the command line needs (`forge build`); the registry's with a `pool`.
async fn host_checks(
    needs: &Needs,
    settings: &Settings,
    pool: Option<&Pool>,
    all: bool,
) -> Vec<Check> {
    let (arch, env) = (settings.arch.as_str(), &settings.environment);
    let engines =
        futures_util::future::join_all(needs.engines.iter().map(|e| doctor::engine(e, arch, env)));
    // The push target; for `forge doctor`, the luet repository too (the source images are
    // [`source_images`]'); each registry once.
    let target = (
        "IMAGE_REGISTRY",
        settings.image_registry.as_deref(),
        needs.push,
        PUSH_FIX,
    );
    let luet = (
        "SPECTRO_LUET_REPO",
        Some(settings.spectro_luet_repo.as_str()),
        false,
        SOURCE_FIX,
    );
    let mut named: Vec<(&str, String, bool, &str)> = Vec::new();
    for (name, value, needed, fix) in std::iter::once(target).chain(all.then_some(luet)) {
        // An invalid value is a validation finding, not a host to probe.
        let host = value
            .and_then(|v| parse_domain(v).ok())
            .map(|d| d.authority());
        if let Some(host) = host.filter(|h| named.iter().all(|n| n.1 != *h)) {
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
        checks.push(doctor::iso_tools(place == ToolPlace::Host, &arch));
    }
    if boots {
        checks.push(doctor::qemu(needs.verify, &arch));
        checks.extend(doctor::firmware(needs.uefi, needs.secure_boot, &arch));
        checks.push(doctor::kvm());
    }
    checks
}

/// The host checks a command line needs (the registry with the `pool` it pushes with),
/// before anything else: a failing one stops it with [`Error::Host`].
pub fn preflight(needs: &Needs, settings: &Settings, pool: Option<&Pool>) -> Result<(), Error> {
    let checks = block_on(&settings.environment, async {
        Ok(host_checks(needs, settings, pool, false).await)
    })?;
    let failed: Vec<Check> = checks
        .into_iter()
        .filter(|c| c.status == Status::Error)
        .collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Error::Host(failed)),
    }
}

/// `forge doctor`.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    pub settings: SettingsRequest,
    /// User-data files or directories to validate.
    pub user_data: Vec<PathBuf>,
    pub templates: Option<PathBuf>,
    pub access: Access,
    pub needs: Needs,
}

/// What `forge doctor` found.
#[derive(Debug, Serialize)]
pub struct DoctorOutcome {
    /// The command line can run.
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// `forge doctor`: each input and what the host has for the command line, with fixes.
pub fn doctor(request: &DoctorRequest, progress: &Arc<Progress>) -> Result<DoctorOutcome, Error> {
    let given = &request.settings;
    let mut user_data = request.user_data.clone();
    let mut picked = given.picked_up();
    if user_data.is_empty() {
        let file = given.in_checkout_file("user-data");
        if file.exists() {
            picked.push(file.clone());
            user_data.push(file);
        }
    }
    super::inputs::note_picked_up(&picked, progress);
    // With no input at all, the host alone is checked (and said to be).
    let inputs = !user_data.is_empty()
        || !picked.is_empty()
        || given.config.is_some()
        || given.arg.is_some()
        || !given.sets.is_empty()
        || !given.secret_files.is_empty();
    let files = user_data_files(&user_data)?;
    let settings_inputs = request.settings.read()?;
    let mut checks = Vec::new();
    if !inputs {
        checks.push(Check::ok(
            "inputs",
            "none given and no CanvOS checkout here: the host alone is checked",
        ));
    }
    let mut settings = None;
    let mut rewriter = None;
    let sites = files
        .iter()
        .map(Some)
        .chain(files.is_empty().then_some(None));
    for file in sites {
        let outcome = validate::run(&Request {
            user_data: file.cloned(),
            settings: settings_inputs.clone(),
            ..Request::default()
        })?;
        progress.tell(Event::Secrets(&outcome.redactor));
        let words = request.settings.words();
        if inputs {
            checks.push(input_check(
                file.map(PathBuf::as_path),
                &outcome.report,
                &words,
            ));
        }
        rewriter = rewriter.or(outcome.rewriter);
        settings.get_or_insert(outcome.settings);
    }
    let settings = settings.expect("the settings are resolved once at least");
    if inputs {
        checks.push(build_settings(&settings, request.templates.as_deref()));
    }
    let rewriter = rewriter.unwrap_or_else(Rewriter::none);
    // A registry answers within seconds or is reported: doctor is quick.
    let pool = match request
        .access
        .policy(&rewriter, &settings.environment, progress)
    {
        Ok(mut policy) => {
            policy.retry.deadline = policy.retry.deadline.min(REGISTRY_DEADLINE);
            Some(Pool::new(policy))
        }
        Err(e) => {
            checks.push(Check::problem(
                "registry access",
                true,
                e.to_string(),
                "fix the file named (the Docker config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json) or the flags",
            ));
            None
        }
    };
    let needs = &Needs {
        engines: super::build::engines(&request.needs.engines, &settings),
        ..request.needs.clone()
    };
    // No registry is the host's: without inputs, none is asked.
    let registries = pool.as_ref().filter(|_| inputs);
    checks.extend(block_on(&settings.environment, async {
        Ok(host_checks(needs, &settings, registries, true).await)
    })?);
    if inputs {
        checks.extend(source_images(&settings, needs, pool.as_ref()));
    }
    Ok(DoctorOutcome {
        passed: doctor::passed(&checks),
        checks,
    })
}

/// Each image the build starts from (base, provider, stylus framework, third-party, builder,
/// the ISO tools' base), there when the first engine has it or its registry answers.
fn source_images(settings: &Settings, needs: &Needs, pool: Option<&Pool>) -> Vec<Check> {
    let Ok(sources) = Templates::load(needs.templates.as_deref())
        .and_then(|templates| templates.sources(settings))
    else {
        // The build settings' check has said why.
        return Vec::new();
    };
    let mut images: Vec<String> = Vec::new();
    let provider = settings.k8s_distribution.map(|_| "provider_image");
    let keys = [
        "base_image",
        "agent_image",
        "third_party_image",
        "alpine_image",
    ];
    let named = keys
        .into_iter()
        .chain(provider)
        .map(|k| sources.get(k).to_string());
    let tools =
        (needs.iso_tools == Some(ToolPlace::Container)).then(|| settings.iso_tools_image.clone());
    for image in named
        .chain(tools)
        .filter(|i| !i.is_empty() && !i.contains('{'))
    {
        if !images.contains(&image) {
            images.push(image);
        }
    }
    let env = &settings.environment;
    let address = needs.engines.first().cloned().unwrap_or_default();
    block_on(env, async {
        let engine = crate::engine::Engine::connect(&address, env).await.ok();
        let checks = images
            .iter()
            .map(|image| doctor::source_image(engine.as_ref(), pool, image, SOURCE_FIX));
        Ok(futures_util::future::join_all(checks).await)
    })
    .unwrap_or_default()
}

/// The check of one input: a user-data file (`file`), else the settings alone; its fix is
/// the command that shows each finding, with the settings flags given.
fn input_check(file: Option<&Path>, report: &crate::diagnostic::Report, words: &[String]) -> Check {
    let (name, found, mut command) = match file {
        Some(file) => (
            "user-data",
            format!("{}: {}", file.display(), report.summary()),
            vec![
                "forge".into(),
                "validate".into(),
                "--user-data".into(),
                file.display().to_string(),
            ],
        ),
        None => (
            "settings",
            report.summary(),
            vec!["forge".into(), "config".into(), "show".into()],
        ),
    };
    command.extend(words.iter().cloned());
    match report.errors() {
        0 => Check::ok(name, found),
        _ => Check::problem(
            name,
            true,
            found,
            &format!(
                "`{}` shows each problem and its fix",
                crate::ci::shell_words(&command)
            ),
        ),
    }
}

/// Whether the settings name a complete build (what `forge build` plans from): IMAGE_REGISTRY,
/// K8S_DISTRIBUTION, a base image, Kubernetes versions.
fn build_settings(settings: &Settings, templates: Option<&Path>) -> Check {
    const NAME: &str = "build settings";
    let planned = Templates::load(templates)
        .map_err(|e| e.to_string())
        .and_then(|templates| templates.sources(settings).map_err(|e| e.to_string()))
        .and_then(|sources| {
            crate::plan::check(settings, &sources, true).map_err(|e| e.to_string())
        });
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

impl DoctorOutcome {
    /// The checks, one per line with a mark (coloured when `styled`), the fix below each
    /// problem, and whether the command line can run.
    pub fn text(&self, styled: bool) -> String {
        let outcome = self;
        let width = outcome
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for check in &outcome.checks {
            let mark = match check.status {
                Status::Ok => paint(styled, "32", "ok  "),
                Status::Warning => paint(styled, "33", "warn"),
                Status::Error => paint(styled, "1;31", "FAIL"),
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
        let failed = outcome
            .checks
            .iter()
            .filter(|c| c.status == Status::Error)
            .count();
        out.push_str(&match (outcome.passed, failed) {
            (true, _) => "\nthis command line can run\n".to_string(),
            (false, 1) => "\n1 problem stops this command line\n".to_string(),
            (false, n) => format!("\n{n} problems stop this command line\n"),
        });
        out
    }
}
