//! `forge inspect`, `forge verify` (and the boots of `forge build --verify`), `forge cache`:
//! ISOs read back, booted in QEMU, and the mastering cache they come from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{stream, StreamExt as _};
use regex::Regex;
use serde::Serialize;

use super::{block_on, Error};
use crate::config::Environment;
use crate::iso::arch::Arch as IsoArch;
use crate::iso::cache::{Cache, Listing, Pruned};
use crate::iso::inspect::Report;
use crate::iso::verify::{self, Accel, Boot, Expect, Firmware, Media, Options, Outcome};
use crate::iso::ReadError;
use crate::limits::FileKind;
use crate::progress::{Event, Progress};
use crate::render::Templates;
use crate::secret::Redactor;

/// `forge inspect`.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub iso: PathBuf,
    /// A user-data file to compare the ISO's `/config.yaml` with.
    pub user_data: Option<PathBuf>,
    /// Include `/config.yaml`, secrets masked.
    pub show_config: bool,
}

/// What an ISO holds.
#[derive(Debug, Serialize)]
pub struct InspectOutcome {
    #[serde(flatten)]
    pub report: Report,
    /// With `--show-config`: `/config.yaml`, the values of its secret keys masked (null when
    /// there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Option<String>>,
}

/// `forge inspect`: what the ISO holds. A damaged image is a finding ([`Error::Finding`]).
pub fn inspect(request: &InspectRequest, progress: &Progress) -> Result<InspectOutcome, Error> {
    let user_data = request
        .user_data
        .as_ref()
        .map(|p| {
            crate::limits::read(FileKind::UserData, p).map_err(|source| {
                Error::Inputs(crate::validate::Error::Read {
                    kind: FileKind::UserData,
                    path: p.clone(),
                    source,
                })
            })
        })
        .transpose()?;
    let arches = IsoArch::known(&Templates::load(None)?)?;
    let report = match crate::iso::inspect::inspect(&request.iso, user_data.as_deref(), &arches) {
        Ok(report) => report,
        Err(ReadError::Io(e)) => {
            return Err(Error::read(request.iso.display().to_string())(e));
        }
        Err(e) => return Err(Error::Finding(format!("{}: {e}", request.iso.display()))),
    };
    let config = report.config.as_deref().map(|config| {
        let mut redactor = Redactor::new();
        redactor.scan(config);
        let validation = crate::userdata::validate(Path::new("/config.yaml"), config);
        validation.secrets.iter().for_each(|s| redactor.add(s));
        progress.tell(Event::Secrets(&redactor));
        crate::yaml::mask_secrets(config)
    });
    let config = request.show_config.then_some(config);
    Ok(InspectOutcome { report, config })
}

/// Which firmware to boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmwares {
    Bios,
    Uefi,
    All,
}

/// How an ISO is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Medias {
    Cdrom,
    Disk,
    Usb,
    All,
}

/// How to boot; `forge verify` and `forge build --verify`.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub firmware: Firmwares,
    pub media: Medias,
    pub accel: Accel,
    /// OVMF with Secure Boot enforced (UEFI only).
    pub secure_boot: bool,
    /// A regular expression the serial console must match; default: the root was reached.
    pub expect: Option<String>,
    /// How long each boot may take.
    pub timeout: Duration,
    /// Where each boot's console is saved; default: `<ISO dir>/<ISO name>.verify/`.
    pub log: Option<PathBuf>,
    /// Boots at once; default: the number of CPUs.
    pub boot_jobs: Option<usize>,
}

impl BootRequest {
    /// Some boot is a UEFI one (it needs OVMF).
    pub fn uefi(&self) -> bool {
        self.secure_boot || matches!(self.firmware, Firmwares::Uefi | Firmwares::All)
    }

    /// The boots asked for, each firmware on each media.
    fn boots(&self) -> Result<Vec<Boot>, Error> {
        let firmwares: &[Firmware] = match (self.firmware, self.secure_boot) {
            (Firmwares::Bios, true) => {
                return Err(Error::Usage(
                    "--secure-boot is a UEFI boot: leave out --firmware bios".into(),
                ))
            }
            (Firmwares::Bios, false) => &[Firmware::Bios],
            (Firmwares::Uefi | Firmwares::All, true) | (Firmwares::Uefi, false) => {
                &[Firmware::Uefi]
            }
            (Firmwares::All, false) => &[Firmware::Bios, Firmware::Uefi],
        };
        let medias: &[Media] = match self.media {
            Medias::Cdrom => &[Media::Cdrom],
            Medias::Disk => &[Media::Disk],
            Medias::Usb => &[Media::Usb],
            Medias::All => &[Media::Cdrom, Media::Disk, Media::Usb],
        };
        Ok(firmwares
            .iter()
            .flat_map(|f| {
                medias.iter().map(|m| Boot {
                    firmware: *f,
                    media: *m,
                    secure_boot: self.secure_boot,
                })
            })
            .collect())
    }

    fn expect(&self) -> Result<Expect, Error> {
        Ok(match &self.expect {
            Some(re) => Expect::Regex(Regex::new(re).map_err(|e| {
                Error::Usage(format!(
                    "--expect `{}` is not a valid regular expression: {}",
                    crate::limits::clip(re),
                    crate::schema::regex_problem(&e)
                ))
            })?),
            None => Expect::SquashfsRoot,
        })
    }
}

/// `forge verify`: the boots of one ISO.
#[derive(Debug, Serialize)]
pub struct VerifyOutcome {
    pub iso: PathBuf,
    pub boots: Vec<Outcome>,
}

impl VerifyOutcome {
    pub fn passed(&self) -> bool {
        self.boots.iter().all(|b| b.passed)
    }
}

/// `forge verify`: boot `iso` every way `request` asks for, as the built-in boot facts of
/// its architecture say.
pub fn verify(
    iso: &Path,
    request: &BootRequest,
    env: &Environment,
    progress: &Progress,
) -> Result<VerifyOutcome, Error> {
    let templates = Templates::load(None)?;
    let boots = block_on(env, boot_all(iso, request, &templates, progress))?;
    Ok(VerifyOutcome {
        iso: iso.to_path_buf(),
        boots,
    })
}

/// Boot `iso` every way `request` asks for, `boot_jobs` at a time, as its architecture boots
/// (of those `templates` know; `all` firmware is UEFI alone where there is no BIOS).
pub(super) async fn boot_all(
    iso: &Path,
    request: &BootRequest,
    templates: &Templates,
    progress: &Progress,
) -> Result<Vec<Outcome>, Error> {
    let boots = request.boots()?;
    if !iso.is_file() {
        return Err(Error::Usage(format!(
            "{} does not exist; build it with `forge build` first",
            iso.display()
        )));
    }
    let arch = verify::arch_of(iso, IsoArch::known(templates)?)?;
    let boots: Vec<Boot> = match request.firmware {
        Firmwares::All => boots
            .into_iter()
            .filter(|b| b.firmware == Firmware::Uefi || arch.bios.is_some())
            .collect(),
        _ => boots,
    };
    verify::preflight(&boots, &arch)?;
    let log_dir = request.log.clone().unwrap_or_else(|| {
        let stem = iso.file_stem().unwrap_or_default().to_string_lossy();
        iso.with_file_name(format!("{stem}.verify"))
    });
    std::fs::create_dir_all(&log_dir).map_err(|source| Error::Io {
        what: format!("cannot create {}", log_dir.display()),
        source,
    })?;
    let options = Options {
        iso,
        arch: &arch,
        accel: request.accel,
        expect: request.expect()?,
        timeout: request.timeout,
        log_dir: &log_dir,
        memory_mib: 1536,
    };
    let jobs = request
        .boot_jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    if request.accel == Accel::Auto {
        let (accel, why) = verify::auto_choice();
        progress.note(&format!("accelerator: {accel} ({why})"));
    }
    let runs = boots.iter().map(|boot| {
        let options = &options;
        async move {
            progress.note(&format!("booting {}", boot.name()));
            verify::run(options, boot, &|line| progress.note(line)).await
        }
    });
    let outcomes: Vec<Result<Outcome, _>> = stream::iter(runs).buffered(jobs).collect().await;
    Ok(outcomes.into_iter().collect::<Result<_, _>>()?)
}

/// The mastering cache in `dir`, else the default one.
fn open_cache(dir: Option<&Path>, env: &Environment) -> Result<Cache, Error> {
    let dir = dir.map_or_else(|| Cache::default_dir(env), Path::to_path_buf);
    Cache::open(&dir).map_err(|source| Error::Cache { dir, source })
}

/// `forge cache ls`.
#[derive(Debug, Serialize)]
pub struct CacheListOutcome {
    pub dir: PathBuf,
    #[serde(flatten)]
    pub listing: Listing,
}

/// `forge cache ls`: the entries, most recently used first.
pub fn cache_ls(dir: Option<&Path>, env: &Environment) -> Result<CacheListOutcome, Error> {
    let cache = open_cache(dir, env)?;
    let listing = cache
        .list()
        .map_err(Error::read(cache.dir().display().to_string()))?;
    Ok(CacheListOutcome {
        dir: cache.dir().to_path_buf(),
        listing,
    })
}

/// `forge cache prune`.
#[derive(Debug, Serialize)]
pub struct CachePruneOutcome {
    #[serde(skip)]
    pub dir: PathBuf,
    #[serde(flatten)]
    pub pruned: Pruned,
}

/// `forge cache prune`: entries removed, least recently used first, until the rest fit in
/// `max_size` (all of them without).
pub fn cache_prune(
    dir: Option<&Path>,
    max_size: Option<u64>,
    env: &Environment,
) -> Result<CachePruneOutcome, Error> {
    let cache = open_cache(dir, env)?;
    let pruned = cache.prune(max_size).map_err(|source| Error::Io {
        what: format!("cannot prune {}", cache.dir().display()),
        source,
    })?;
    Ok(CachePruneOutcome {
        dir: cache.dir().to_path_buf(),
        pruned,
    })
}

impl InspectOutcome {
    /// What the ISO holds, and its `/config.yaml` with `--show-config`.
    pub fn text(&self) -> String {
        let mut text = self.report.render_text();
        if let Some(Some(config)) = &self.config {
            text.push_str("\n/config.yaml:\n");
            text.push_str(config);
        }
        text
    }
}

impl VerifyOutcome {
    pub fn text(&self) -> String {
        boots_text(&self.boots)
    }
}

/// The boots, one line each, and the console line that passed each or why it failed.
pub(super) fn boots_text(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let firmware = match o.secure_boot {
            true => format!("{} (Secure Boot)", verify::name(o.firmware)),
            false => verify::name(o.firmware),
        };
        let result = if o.passed { "passed" } else { "FAILED" };
        let fallback = o.fallback.as_deref().map(|f| format!("  ({f}; TCG used)"));
        out.push_str(&format!(
            "{firmware:18}  {:5}  {:3}  {result:6}  {:6.1}s  {}{}\n",
            verify::name(o.media),
            o.accel,
            o.seconds,
            o.log.display(),
            fallback.unwrap_or_default()
        ));
        if let Some(line) = &o.evidence {
            out.push_str(&format!("  seen: {line}\n"));
        }
        if let Some(failure) = &o.failure {
            out.push_str(&format!("{failure}\n"));
        }
    }
    out
}

/// A line saying what is wrong with a name in the cache directory and what forge does.
fn skipped_line(dir: &Path, skipped: &crate::iso::cache::Skipped, done: &str) -> String {
    let path = dir.join(&skipped.name);
    format!("{} {}: {done}\n", path.display(), skipped.problem)
}

impl CacheListOutcome {
    /// The entries, their total, and the names forge cannot use.
    pub fn text(&self) -> String {
        let human = crate::units::human;
        let mut out = String::new();
        for e in &self.listing.entries {
            out.push_str(&format!(
                "{}  {:>10}  {}\n",
                &e.key[..16],
                human(e.bytes),
                e.image
            ));
        }
        let total: u64 = self.listing.entries.iter().map(|e| e.bytes).sum();
        out.push_str(&format!("{} in {}\n", human(total), self.dir.display()));
        for skipped in &self.listing.skipped {
            let done = match skipped.left_alone {
                true => "forge leaves it alone",
                false => {
                    "the next build that needs it makes it again, and forge cache prune removes it"
                }
            };
            out.push_str(&skipped_line(&self.dir, skipped, done));
        }
        out
    }
}

impl CachePruneOutcome {
    /// What was removed and kept, and what was left alone.
    pub fn text(&self) -> String {
        let (pruned, human) = (&self.pruned, crate::units::human);
        let entries = match pruned.removed.len() {
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        };
        let unusable = match pruned.unusable.len() {
            0 => String::new(),
            n => format!(", {n} of them unusable"),
        };
        let busy = match pruned.busy.len() {
            0 => String::new(),
            n => format!(" ({n} in use by a running build)"),
        };
        let (removed, kept) = (human(pruned.removed_bytes), human(pruned.kept_bytes));
        let mut said = format!("removed {entries} ({removed}{unusable}), kept {kept}{busy}\n");
        for skipped in &pruned.left_alone {
            said.push_str(&skipped_line(&self.dir, skipped, "left alone"));
        }
        said
    }
}
