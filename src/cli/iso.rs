//! `forge inspect ISO`, `forge verify ISO` and `forge iso push ISO REF`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::{stream, StreamExt as _};
use regex::Regex;

use super::images::{policy, run_async, AccessArgs};
use super::output::{self, Exit, ExitStatus, Format, Shape};
use crate::iso::arch::Arch;
use crate::iso::artifact;
use crate::iso::cache::{Cache, Skipped};
use crate::iso::inspect::inspect as read_report;
use crate::iso::verify::{self, name, Accel, Boot, Expect, Firmware, Media, Options, Outcome};
use crate::iso::ReadError;
use crate::limits::FileKind;
use crate::reference::Reference;
use crate::registry::rewrite::{Rewriter, Rules};
use crate::registry::sync::{human, Syncer};
use crate::registry::Pool;
use crate::render::Templates;
use crate::secret::{mask_yaml, Redactor};

#[derive(Args)]
pub(super) struct InspectArgs {
    /// The installer ISO.
    iso: PathBuf,
    /// Compare the ISO's /config.yaml with this user-data file.
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Also print /config.yaml, secrets masked.
    #[arg(long)]
    show_config: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn inspect(args: InspectArgs) -> Result<ExitStatus> {
    let user_data = args
        .user_data
        .as_ref()
        .map(|p| {
            crate::limits::read(FileKind::UserData, p).with_context(|| {
                format!(
                    "cannot read {} `{}`",
                    FileKind::UserData.what(),
                    p.display()
                )
            })
        })
        .transpose()?;
    let arches = Arch::known(&Templates::load(None)?)?;
    let report = match read_report(&args.iso, user_data.as_deref(), &arches) {
        Ok(report) => report,
        Err(ReadError::Io(e)) => {
            return Err(e).with_context(|| format!("cannot read {}", args.iso.display()))
        }
        // A damaged image is a finding, like a missing file: exit 1.
        Err(e) => {
            output::error(&Redactor::new(), &format!("{}: {e}", args.iso.display()));
            return Err(Exit::failure());
        }
    };
    let mut redactor = Redactor::new();
    let config = report.config.as_deref().map(|config| {
        redactor.scan(config);
        let validation = crate::userdata::validate(Path::new("/config.yaml"), config);
        validation.secrets.iter().for_each(|s| redactor.add(s));
        mask_yaml(config, &redactor)
    });
    match args.format {
        Format::Json => {
            let mut value = serde_json::to_value(&report)?;
            if args.show_config {
                value["config"] = config.into();
            }
            output::json(&redactor, Shape::Inspect, value)?;
        }
        Format::Text => {
            let mut text = report.render_text();
            if let (true, Some(config)) = (args.show_config, &config) {
                text.push_str("\n/config.yaml:\n");
                text.push_str(config);
            }
            output::text(&redactor, &text)?;
        }
    }
    Ok(ExitStatus::from_ok(report.problems.is_empty()))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FirmwareArg {
    Bios,
    Uefi,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MediaArg {
    Cdrom,
    Disk,
    Usb,
    All,
}

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// The installer ISO.
    iso: PathBuf,
    #[command(flatten)]
    boot: BootArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How to boot; shared by `forge verify` and `forge build --verify`.
#[derive(Args)]
pub(super) struct BootArgs {
    /// Firmware: SeaBIOS, OVMF (UEFI), or both.
    #[arg(long, value_enum, default_value_t = FirmwareArg::All)]
    firmware: FirmwareArg,
    /// How the ISO is attached: CD, virtio disk (the USB-stick path through the hybrid MBR),
    /// USB mass storage, or each of them.
    #[arg(long, value_enum, default_value_t = MediaArg::Cdrom)]
    media: MediaArg,
    /// Accelerator. `auto`: KVM on bare metal, TCG in a virtual machine (nested KVM is
    /// unreliable) or without /dev/kvm; a KVM boot that errors or stalls is redone with TCG.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Boot under OVMF with Secure Boot enforced (Microsoft's keys enrolled, as on most
    /// hardware): a boot passes only when Linux also says `Secure boot enabled`. UEFI only.
    #[arg(long)]
    pub(super) secure_boot: bool,
    /// Pass when the serial console matches this regular expression. Default: the system
    /// reached the squashfs root (systemd's `Welcome to ...!` after the initramfs).
    #[arg(long, value_name = "REGEX")]
    expect: Option<String>,
    /// Seconds each boot may take.
    #[arg(long, value_name = "S", default_value_t = 600)]
    timeout: u64,
    /// Where the serial console of each boot is saved. Default: ISO_DIR/<iso name>.verify/
    #[arg(long, value_name = "DIR")]
    log: Option<PathBuf>,
    /// Boots run at once. Default: the number of CPUs.
    #[arg(long)]
    boot_jobs: Option<usize>,
}

pub(super) fn verify(args: VerifyArgs) -> Result<ExitStatus> {
    let templates = Templates::load(None)?;
    let outcomes = run_async(boot_all(&args.iso, &args.boot, &templates))?;
    let redactor = Redactor::new();
    match args.format {
        Format::Json => {
            let body = serde_json::json!({"iso": args.iso, "boots": outcomes});
            output::json(&redactor, Shape::Verify, body)?;
        }
        Format::Text => output::text(&redactor, &boots_text(&outcomes))?,
    }
    Ok(ExitStatus::from_ok(outcomes.iter().all(|o| o.passed)))
}

impl BootArgs {
    /// Some boot is a UEFI one (it needs OVMF).
    pub(super) fn uefi(&self) -> bool {
        self.secure_boot || matches!(self.firmware, FirmwareArg::Uefi | FirmwareArg::All)
    }
}

/// Boot `iso` every way `args` asks for, as its architecture boots (of those `templates`
/// know; `all` firmware is UEFI alone where there is no BIOS).
pub(super) async fn boot_all(
    iso: &Path,
    args: &BootArgs,
    templates: &Templates,
) -> Result<Vec<Outcome>> {
    let firmwares: &[Firmware] = match (args.firmware, args.secure_boot) {
        (FirmwareArg::Bios, true) => {
            anyhow::bail!("--secure-boot is a UEFI boot: leave out --firmware bios")
        }
        (FirmwareArg::Bios, false) => &[Firmware::Bios],
        (FirmwareArg::Uefi | FirmwareArg::All, true) | (FirmwareArg::Uefi, false) => {
            &[Firmware::Uefi]
        }
        (FirmwareArg::All, false) => &[Firmware::Bios, Firmware::Uefi],
    };
    let medias: &[Media] = match args.media {
        MediaArg::Cdrom => &[Media::Cdrom],
        MediaArg::Disk => &[Media::Disk],
        MediaArg::Usb => &[Media::Usb],
        MediaArg::All => &[Media::Cdrom, Media::Disk, Media::Usb],
    };
    let boots: Vec<Boot> = firmwares
        .iter()
        .flat_map(|f| {
            medias.iter().map(|m| Boot {
                firmware: *f,
                media: *m,
                secure_boot: args.secure_boot,
            })
        })
        .collect();
    if !iso.is_file() {
        anyhow::bail!(
            "{} does not exist; build it with `forge build` first",
            iso.display()
        );
    }
    let arch = verify::arch_of(iso, Arch::known(templates)?)?;
    let boots: Vec<Boot> = match args.firmware {
        FirmwareArg::All => boots
            .into_iter()
            .filter(|b| b.firmware == Firmware::Uefi || arch.bios.is_some())
            .collect(),
        _ => boots,
    };
    verify::preflight(&boots, &arch)?;
    let expect = match &args.expect {
        Some(re) => Expect::Regex(Regex::new(re).map_err(|e| {
            anyhow::anyhow!(
                "--expect `{}` is not a valid regular expression: {}",
                crate::limits::clip(re),
                crate::schema::regex_problem(&e)
            )
        })?),
        None => Expect::SquashfsRoot,
    };
    let log_dir = args.log.clone().unwrap_or_else(|| {
        let stem = iso
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        iso.with_file_name(format!("{stem}.verify"))
    });
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let options = Options {
        iso,
        arch: &arch,
        accel: args.accel,
        expect,
        timeout: Duration::from_secs(args.timeout),
        log_dir: &log_dir,
        memory_mib: 1536,
    };
    let jobs = args
        .boot_jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    if args.accel == Accel::Auto {
        let (accel, why) = verify::auto_choice();
        note(&format!("accelerator: {accel} ({why})"));
    }
    let runs = boots.iter().map(|boot| {
        let options = &options;
        async move {
            note(&format!("booting {}", boot.name()));
            verify::run(options, boot, &|line| note(line)).await
        }
    });
    let outcomes: Vec<Outcome> = stream::iter(runs)
        .buffered(jobs)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok(outcomes)
}

fn note(line: &str) {
    output::note(&Redactor::new(), line);
}

/// The boots, one line each, and the console line that passed each or why it failed.
pub(super) fn boots_text(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let firmware = match o.secure_boot {
            true => format!("{} (Secure Boot)", name(o.firmware)),
            false => name(o.firmware),
        };
        out.push_str(&format!(
            "{:18}  {:5}  {:3}  {:6}  {:6.1}s  {}{}\n",
            firmware,
            name(o.media),
            o.accel,
            if o.passed { "passed" } else { "FAILED" },
            o.seconds,
            o.log.display(),
            o.fallback
                .as_deref()
                .map(|f| format!("  ({f}; TCG used)"))
                .unwrap_or_default()
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

/// `forge iso [--image REF --user-data ...]` or `forge iso push ...`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct IsoCommandArgs {
    #[command(subcommand)]
    pub command: Option<IsoCommand>,
    #[command(flatten)]
    pub master: super::build::IsoArgs,
}

#[derive(Subcommand)]
pub(super) enum IsoCommand {
    /// Push an installer ISO as an image, as CanvOS's +iso-disk-image: one layer holding
    /// /disk/<file name>, streamed from the file; the manifest is checked by digest.
    Push(PushArgs),
}

#[derive(Args)]
pub(super) struct PushArgs {
    /// The installer ISO.
    iso: PathBuf,
    /// Where to push it: REGISTRY/REPOSITORY:TAG (CanvOS: IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION[-CUSTOM_TAG]).
    reference: String,
    /// The image's architecture.
    #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
    arch: String,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn push(args: PushArgs) -> Result<ExitStatus> {
    if !args.iso.is_file() {
        anyhow::bail!(
            "{} is not a file; build the ISO with `forge build` first",
            args.iso.display()
        );
    }
    let reference = Reference::parse(&args.reference).with_context(|| {
        format!(
            "`{}` is not an image reference (REGISTRY/REPOSITORY:TAG)",
            crate::limits::clip(&args.reference)
        )
    })?;
    let epoch = super::source_date_epoch()?;
    let no_user_data = Rewriter {
        rules: Rules::Unchanged,
        registries: Vec::new(),
    };
    let pool = Pool::new(policy(&no_user_data, &args.access)?);
    let log = |line: &str| note(&format!("  {line}"));
    let syncer = Syncer::new(&pool, None, 1, &log)?;
    note(&format!("pushing {} to {reference}", args.iso.display()));
    let synced = run_async(async {
        Ok(artifact::push(&syncer, &args.iso, &reference, &args.arch, epoch).await?)
    })?;
    let uploaded = synced
        .stats
        .uploaded_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let redactor = Redactor::new();
    match args.format {
        Format::Json => output::json(
            &redactor,
            Shape::IsoPush,
            serde_json::json!({
                "reference": reference.to_string(),
                "digest": synced.digest,
                "up_to_date": synced.up_to_date,
                "uploaded_bytes": uploaded,
            }),
        )?,
        Format::Text => output::text(
            &redactor,
            &format!(
                "{reference}@{}  ({})\n",
                synced.digest,
                match synced.up_to_date {
                    true => "already there".to_string(),
                    false => format!("{} uploaded in {:.1} s", human(uploaded), synced.seconds),
                }
            ),
        )?,
    }
    Ok(ExitStatus::Success)
}

#[derive(Subcommand)]
pub(super) enum CacheCommand {
    /// List the cache's entries, most recently used first.
    Ls {
        #[command(flatten)]
        dir: CacheDir,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove entries, least recently used first: all of them, or until the rest fit in
    /// --max-size. Entries a running build uses are kept.
    Prune {
        #[command(flatten)]
        dir: CacheDir,
        /// Keep the most recently used entries that fit in this size (split's syntax: 20GB,
        /// 500MB, 10G).
        #[arg(long, value_name = "SIZE", value_parser = parse_max_size)]
        max_size: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Args)]
pub(super) struct CacheDir {
    /// The cache directory. Default: $XDG_CACHE_HOME/forge, else ~/.cache/forge.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_max_size(text: &str) -> Result<u64, String> {
    crate::config::parse_size(text)
        .ok_or_else(|| "expected a size such as 20GB, 500MB or 10G (split's syntax)".to_string())
}

/// A line saying what is wrong with a name in the cache directory and what forge does.
fn skipped_line(dir: &Path, skipped: &Skipped, done: &str) -> String {
    let path = dir.join(&skipped.name);
    format!("{} {}: {done}\n", path.display(), skipped.problem)
}

pub(super) fn cache(command: CacheCommand) -> Result<ExitStatus> {
    let redactor = Redactor::new();
    let open = |dir: &CacheDir| {
        let dir = dir.cache_dir.clone().unwrap_or_else(Cache::default_dir);
        Cache::open(&dir)
            .with_context(|| format!("the cache directory {} is not usable", dir.display()))
    };
    match command {
        CacheCommand::Ls { dir, format } => {
            let cache = open(&dir)?;
            let listing = cache
                .list()
                .with_context(|| format!("cannot read {}", cache.dir().display()))?;
            match format {
                Format::Json => output::json(
                    &redactor,
                    Shape::CacheList,
                    serde_json::json!({
                        "dir": cache.dir(),
                        "entries": listing.entries,
                        "skipped": listing.skipped,
                    }),
                )?,
                Format::Text => {
                    let mut out = String::new();
                    for e in &listing.entries {
                        let line =
                            format!("{}  {:>10}  {}\n", &e.key[..16], human(e.bytes), e.image);
                        out.push_str(&line);
                    }
                    let total: u64 = listing.entries.iter().map(|e| e.bytes).sum();
                    out.push_str(&format!("{} in {}\n", human(total), cache.dir().display()));
                    for skipped in &listing.skipped {
                        let done = match skipped.left_alone {
                            true => "forge leaves it alone",
                            false => "the next build that needs it makes it again, and forge cache prune removes it",
                        };
                        out.push_str(&skipped_line(cache.dir(), skipped, done));
                    }
                    output::text(&redactor, &out)?;
                }
            }
        }
        CacheCommand::Prune {
            dir,
            max_size,
            format,
        } => {
            let cache = open(&dir)?;
            let pruned = cache
                .prune(max_size)
                .with_context(|| format!("cannot prune {}", cache.dir().display()))?;
            match format {
                Format::Json => output::json(&redactor, Shape::CachePrune, &pruned)?,
                Format::Text => {
                    let mut said = format!(
                        "removed {} ({}{}), kept {}{}\n",
                        match pruned.removed.len() {
                            1 => "1 entry".to_string(),
                            n => format!("{n} entries"),
                        },
                        human(pruned.removed_bytes),
                        match pruned.unusable.len() {
                            0 => String::new(),
                            n => format!(", {n} of them unusable"),
                        },
                        human(pruned.kept_bytes),
                        match pruned.busy.len() {
                            0 => String::new(),
                            n => format!(" ({n} in use by a running build)"),
                        }
                    );
                    for skipped in &pruned.left_alone {
                        said.push_str(&skipped_line(cache.dir(), skipped, "left alone"));
                    }
                    output::text(&redactor, &said)?;
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}
