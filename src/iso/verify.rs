//! Booting the ISO in QEMU: SeaBIOS or UEFI firmware (OVMF on amd64), UEFI with Secure Boot
//! enforced too; the ISO as a CD, as a virtio disk (the path a USB stick takes through the
//! hybrid MBR or the GPT) or as a USB mass-storage device. The ISO's architecture ([`arch_of`],
//! from its UEFI loader) says which QEMU, machine, devices and firmware boot it. The serial console is saved per run and watched for the
//! expectation (and, under Secure Boot, for the kernel saying it booted with it). By default
//! that is the live system running from its root, told from what reaches the serial console
//! whichever console the kernel command line names last (CanvOS's UEFI entry names tty0 last,
//! so systemd's own lines go to the screen); a boot loader's banner never counts. A kernel
//! panic, or Secure Boot refusing the loader, ends a boot at once.
//!
//! Nested KVM is unreliable on CI machines (OVMF dies with an emulation failure, BIOS boots
//! stall while GRUB loads the kernel), so `auto` uses KVM only on bare metal and falls back to
//! TCG when KVM reports an internal error or the console stays silent for [`KVM_STALL`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::arch::Arch;

/// Silence on the console after which a KVM boot counts as stalled (`auto` then uses TCG).
pub const KVM_STALL: Duration = Duration::from_secs(45);
/// Kept of the console for matching (the whole console goes to the log file).
const WINDOW: usize = 1 << 20;
/// What the UEFI firmware (EDK II: OVMF, AAVMF) prints when Secure Boot refuses a boot loader.
const ACCESS_DENIED: &str = "Access Denied";
/// What the kernel prints when it panics, on every console.
const KERNEL_PANIC: &str = "Kernel panic - not syncing";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Cdrom,
    Disk,
    Usb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// What the console must show for a boot to pass.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The live system runs from its root, the squashfs: see [`root_reached`].
    SquashfsRoot,
    /// A marker the boot prints (`--expect`).
    Regex(Regex),
}

impl Expect {
    /// The console line that meets the expectation, if one does. `from` is where the lines
    /// not yet looked at start: the default expectation reads line by line and looks only
    /// there, a regular expression may span lines and looks at the whole console.
    fn met<'c>(&self, console: &'c str, from: usize) -> Option<&'c str> {
        match self {
            Expect::SquashfsRoot => root_reached(&console[from..]),
            Expect::Regex(re) => re.find(console).map(|m| line_at(console, m.start())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Expect::SquashfsRoot => "the live system reached its root (systemd's welcome after the initramfs, the real root's systemd stopping the initramfs's switch-root unit, or the serial getty's login prompt)".into(),
            Expect::Regex(re) => format!("/{}/", crate::limits::clip(re.as_str())),
        }
    }
}

/// The first console line showing that the live system runs from its real root, whichever
/// console the kernel command line names last (that one is `/dev/console`, where systemd
/// writes its welcome and status lines; kernel messages go to every console):
/// - systemd's welcome, `Welcome to Debian GNU/Linux 12 (bookworm)!`, when the serial console
///   is `/dev/console` (`console=tty1 console=ttyS0`); the initramfs's own welcome says
///   `(Initramfs)`, and GRUB's banner `Welcome to GRUB!` is no system's;
/// - the real root's systemd stopping the initramfs's switch-root unit, a kernel message
///   (`systemd[1]: initrd-switch-root.service: Deactivated successfully.`; `Succeeded.` and
///   `Stopped Switch Root.` from older systemd), also when `/dev/console` is the screen
///   (`console=ttyS0,115200n8 console=tty0`, CanvOS's UEFI entry);
/// - the serial getty's prompt, `localhost login:`, which systemd starts on the serial consoles
///   the kernel command line names, also with `quiet`.
///
/// Lines count once complete, but for the last one, a prompt that waits for input.
fn root_reached(console: &str) -> Option<&str> {
    let (complete, prompt) = console.rsplit_once('\n').unwrap_or(("", console));
    complete
        .lines()
        .map(str::trim)
        .find_map(|line| {
            if systemd_welcome(line) || switch_root_done(line) {
                Some(line)
            } else {
                getty_prompt(line)
            }
        })
        .or_else(|| getty_prompt(prompt.trim()))
}

/// `Welcome to NAME!` from systemd out of the initramfs; not GRUB's banner.
fn systemd_welcome(line: &str) -> bool {
    line.strip_prefix("Welcome to ")
        .and_then(|rest| rest.strip_suffix('!'))
        .is_some_and(|name| name != "GRUB" && !name.ends_with("(Initramfs)"))
}

/// The real root's systemd saying the initramfs's switch-root unit is done (a kernel message,
/// or a status line on `/dev/console`).
fn switch_root_done(line: &str) -> bool {
    [
        "initrd-switch-root.service: Deactivated successfully",
        "initrd-switch-root.service: Succeeded",
        "Stopped initrd-switch-root.service",
        "Stopped Switch Root.",
    ]
    .iter()
    .any(|sign| line.contains(sign))
}

/// agetty's `HOSTNAME login:` prompt at the start of `line` (with autologin, `HOSTNAME login:
/// root (automatic login)` follows), if it is there.
fn getty_prompt(line: &str) -> Option<&str> {
    let (host, _) = line.split_once(" login:")?;
    let hostname = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    hostname.then(|| &line[..host.len() + " login:".len()])
}

/// The line of `text` holding byte `at`.
fn line_at(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[start..end].trim()
}

/// One boot to try.
#[derive(Debug, Clone)]
pub struct Boot {
    pub firmware: Firmware,
    pub media: Media,
    /// UEFI with Secure Boot enforced (Microsoft's keys enrolled).
    pub secure_boot: bool,
}

impl Boot {
    /// `bios-cdrom`, `uefi-disk`, `uefi-secureboot-cdrom`, ...
    pub fn name(&self) -> String {
        let firmware = match self.secure_boot {
            true => format!("{}-secureboot", name(self.firmware)),
            false => name(self.firmware),
        };
        format!("{firmware}-{}", name(self.media))
    }
}

/// How a boot went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub firmware: Firmware,
    pub media: Media,
    pub secure_boot: bool,
    /// `kvm` or `tcg`: the accelerator of the last attempt.
    pub accel: &'static str,
    pub passed: bool,
    pub seconds: f64,
    pub log: PathBuf,
    /// Why KVM was left for TCG, when it was.
    pub fallback: Option<String>,
    /// The console line that met the expectation, when one did.
    pub evidence: Option<String>,
    /// Why it failed, with the console's last lines.
    pub failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot read {iso}: {source}")]
    Read {
        iso: PathBuf,
        source: super::ReadError,
    },
    #[error("cannot tell the architecture of {iso}: its EFI system partition holds none of {loaders}, the UEFI loaders of the architectures forge knows; forge verify boots installer ISOs forge made")]
    UnknownArch { iso: PathBuf, loaders: String },
    #[error("{arch} ISOs boot with UEFI only: leave out --firmware bios")]
    NoBios { arch: String },
}

/// The architecture of `iso`, of `arches`: the one whose UEFI loader its EFI system partition
/// holds (what `forge inspect` reads).
pub fn arch_of(iso: &Path, arches: Vec<Arch>) -> Result<Arch, VerifyError> {
    let report =
        super::inspect::inspect(iso, None, &arches).map_err(|source| VerifyError::Read {
            iso: iso.to_path_buf(),
            source,
        })?;
    let loaders = arches
        .iter()
        .map(|a| format!("EFI/BOOT/{}", a.uefi.loader))
        .collect::<Vec<_>>()
        .join(", ");
    arches
        .into_iter()
        .find(|a| report.arch.as_deref() == Some(a.name.as_str()))
        .ok_or_else(|| VerifyError::UnknownArch {
            iso: iso.to_path_buf(),
            loaders,
        })
}

/// The verification settings.
pub struct Options<'a> {
    pub iso: &'a Path,
    /// The ISO's architecture: how QEMU boots it.
    pub arch: &'a Arch,
    pub accel: Accel,
    pub expect: Expect,
    pub timeout: Duration,
    pub log_dir: &'a Path,
    pub memory_mib: u32,
}

/// Check that `arch` boots the way each of `boots` asks (BIOS), and QEMU and the firmware
/// they need, before booting anything.
pub fn preflight(boots: &[Boot], arch: &Arch) -> Result<(), VerifyError> {
    let (qemu, firmware) = (&arch.qemu, &arch.firmware);
    if arch.bios.is_none() && boots.iter().any(|b| b.firmware == Firmware::Bios) {
        return Err(VerifyError::NoBios {
            arch: arch.name.clone(),
        });
    }
    if !super::on_path(&qemu.command) {
        return Err(VerifyError::Missing(format!(
            "forge verify needs {} (apt-get install {})",
            qemu.command, qemu.package
        )));
    }
    if boots.iter().any(|b| b.firmware == Firmware::Uefi) && uefi_firmware(arch).is_none() {
        return Err(VerifyError::Missing(format!(
            "UEFI boots need {} firmware ({}; apt-get install {})",
            firmware.name,
            firmware.uefi.join(", "),
            firmware.package
        )));
    }
    if boots.iter().any(|b| b.secure_boot) {
        if let Err(missing) = secure_boot_firmware(arch) {
            return Err(VerifyError::Missing(format!(
                "Secure Boot boots need {} built with Secure Boot and Microsoft's keys ({missing} is missing; apt-get install {})",
                firmware.name, firmware.package
            )));
        }
    }
    Ok(())
}

/// The UEFI firmware build of `arch` that UEFI boots use, if this machine has one.
pub fn uefi_firmware(arch: &Arch) -> Option<&str> {
    let builds = &arch.firmware.uefi;
    builds
        .iter()
        .map(String::as_str)
        .find(|p| Path::new(p).is_file())
}

/// The Secure Boot firmware of `arch` and its variable store with Microsoft's keys, or the
/// first of them that is missing.
pub fn secure_boot_firmware(arch: &Arch) -> Result<[&str; 2], &str> {
    let secure = &arch.firmware.secure_boot;
    let files = [secure.code.as_str(), secure.vars.as_str()];
    match files.into_iter().find(|p| !Path::new(p).is_file()) {
        Some(missing) => Err(missing),
        None => Ok(files),
    }
}

/// KVM is usable: `/dev/kvm` opens read-write.
fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// This machine is itself a virtual machine (KVM here would be nested).
fn nested() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
    })
}

/// What `auto` starts with, and why.
pub fn auto_choice() -> (&'static str, &'static str) {
    if !kvm_available() {
        ("tcg", "/dev/kvm is not available")
    } else if nested() {
        (
            "tcg",
            "this machine is a virtual machine and nested KVM is unreliable",
        )
    } else {
        ("kvm", "/dev/kvm is available")
    }
}

/// Boot `boot`; `on_line` gets progress notes.
pub async fn run(
    options: &Options<'_>,
    boot: &Boot,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, VerifyError> {
    let name = boot.name();
    let log = options.log_dir.join(format!("{name}.log"));
    let started = Instant::now();
    let (first, _) = match options.accel {
        Accel::Auto => auto_choice(),
        Accel::Kvm => ("kvm", "asked for"),
        Accel::Tcg => ("tcg", "asked for"),
    };
    let mut accel = first;
    let mut fallback = None;
    loop {
        let left = options.timeout.saturating_sub(started.elapsed());
        let watch_stall = options.accel == Accel::Auto && accel == "kvm";
        let attempt = boot_once(options, boot, accel, &log, left, watch_stall).await?;
        match attempt {
            Attempt::KvmTrouble(why) if options.accel == Accel::Auto => {
                on_line(&format!("{name}: KVM {why}; booting again with TCG"));
                fallback = Some(format!("KVM {why}"));
                accel = "tcg";
            }
            attempt => {
                let evidence = match &attempt {
                    Attempt::Passed(line) => Some(line.clone()),
                    _ => None,
                };
                let failure = match attempt {
                    Attempt::Passed(_) => None,
                    Attempt::KvmTrouble(why) => Some(format!("KVM {why}")),
                    Attempt::Exited(tail) => Some(format!(
                        "QEMU exited before {}:\n{tail}",
                        options.expect.describe()
                    )),
                    Attempt::Panicked(panic, tail) => Some(format!(
                        "the kernel panicked (`{}`) before {}:\n{tail}",
                        crate::limits::clip(&panic),
                        options.expect.describe()
                    )),
                    Attempt::Refused(tail) => Some(format!(
                        "Secure Boot refused the ISO's EFI loader (`{ACCESS_DENIED}`): it is not signed by a key the firmware trusts; an image with its distribution's signed shim and GRUB gives an ISO that boots:\n{tail}"
                    )),
                    Attempt::SecureBootOff(tail) => Some(format!(
                        "{} but Linux did not say `{}`:\n{tail}",
                        options.expect.describe(),
                        options.arch.firmware.secure_boot.evidence
                    )),
                    Attempt::TimedOut(tail) => Some(format!(
                        "no sign that {} within {} s; the console's last lines:\n{tail}",
                        options.expect.describe(),
                        options.timeout.as_secs()
                    )),
                };
                return Ok(Outcome {
                    firmware: boot.firmware,
                    media: boot.media,
                    secure_boot: boot.secure_boot,
                    accel,
                    passed: failure.is_none(),
                    seconds: started.elapsed().as_secs_f64(),
                    log,
                    fallback,
                    evidence,
                    failure,
                });
            }
        }
    }
}

/// The command-line name of a value: `bios`, `cdrom`, ...
pub fn name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

enum Attempt {
    /// The expectation was met, by this console line.
    Passed(String),
    KvmTrouble(String),
    Exited(String),
    TimedOut(String),
    /// The kernel panicked (it waits there for ever): its panic line, the console's last lines.
    Panicked(String, String),
    /// Secure Boot: the firmware refused the loader.
    Refused(String),
    /// Secure Boot: the expectation was met, but Linux did not run with Secure Boot on.
    SecureBootOff(String),
}

/// A path as a QEMU option value (`,` doubled).
fn qemu_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The QEMU command line of one boot of an ISO of `arch`; `vars` is the boot's own copy of
/// the UEFI variable store (Secure Boot).
fn qemu_args(
    iso: &Path,
    boot: &Boot,
    arch: &Arch,
    accel: &str,
    memory_mib: u32,
    vars: &Path,
) -> Vec<String> {
    let iso = qemu_path(iso);
    let secure = &arch.firmware.secure_boot;
    let machine = match boot.secure_boot {
        true => &secure.machine,
        false => &arch.qemu.machine,
    };
    let mut args: Vec<String> = [
        "-machine",
        machine,
        "-m",
        &memory_mib.to_string(),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-nic",
        "none",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(match (accel, &arch.qemu.cpu) {
        ("kvm", _) => ["-accel", "kvm", "-cpu", "host"].map(String::from).to_vec(),
        (_, Some(cpu)) => ["-accel", "tcg", "-cpu", cpu].map(String::from).to_vec(),
        (_, None) => ["-accel", "tcg"].map(String::from).to_vec(),
    });
    if boot.secure_boot {
        args.extend(secure.options.iter().cloned());
        args.extend([
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                secure.code
            ),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", qemu_path(vars)),
        ]);
    } else if boot.firmware == Firmware::Uefi {
        let first = arch.firmware.uefi.first().map(String::as_str);
        if let Some(firmware) = uefi_firmware(arch).or(first) {
            args.extend(["-bios".into(), firmware.into()]);
        }
    }
    // The medium's controllers, the ISO's drive, then the device that attaches it (the last).
    let media = &arch.qemu.media;
    let (devices, extra) = match boot.media {
        Media::Cdrom => (&media.cdrom, ",media=cdrom"),
        Media::Disk => (&media.disk, ""),
        Media::Usb => (&media.usb, ""),
    };
    let drive = format!("if=none,id=iso,file={iso},format=raw,readonly=on{extra}");
    let (controllers, attach) = devices.split_at(devices.len().saturating_sub(1));
    let device = |device: &String| ["-device".to_string(), device.clone()];
    args.extend(controllers.iter().flat_map(device));
    args.extend(["-drive".into(), drive]);
    args.extend(attach.iter().flat_map(device));
    args
}

async fn boot_once(
    options: &Options<'_>,
    boot: &Boot,
    accel: &str,
    log: &Path,
    timeout: Duration,
    watch_stall: bool,
) -> Result<Attempt, VerifyError> {
    let io = |what: String| move |source| VerifyError::Io { what, source };
    // Each boot starts from the variable store as shipped.
    let vars = log.with_extension("vars.fd");
    let (qemu, secure) = (&options.arch.qemu, &options.arch.firmware.secure_boot);
    if boot.secure_boot {
        std::fs::copy(&secure.vars, &vars).map_err(io(format!(
            "copying {} to {}",
            secure.vars,
            vars.display()
        )))?;
    }
    let mut child = tokio::process::Command::new(&qemu.command)
        .args(qemu_args(
            options.iso,
            boot,
            options.arch,
            accel,
            options.memory_mib,
            &vars,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("starting {}", qemu.command)))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut file = tokio::fs::File::create(log)
        .await
        .map_err(io(format!("creating {}", log.display())))?;
    let evidence = boot.secure_boot.then_some(secure.evidence.as_str());
    let mut console = Console::new(&options.expect, evidence);
    let mut errors = String::new();
    let (mut buf, mut ebuf) = (vec![0u8; 1 << 16], vec![0u8; 4096]);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_output = tokio::time::Instant::now();
    let mut stderr_open = true;
    let outcome = loop {
        let stall = last_output + KVM_STALL;
        tokio::select! {
            n = stdout.read(&mut buf) => {
                let n = n.map_err(io("reading the console".into()))?;
                if n == 0 {
                    let _ = child.wait().await;
                    break Attempt::Exited(tail(&console.text, &errors));
                }
                file.write_all(&buf[..n]).await.map_err(io(format!("writing {}", log.display())))?;
                last_output = tokio::time::Instant::now();
                if let Some(verdict) = console.feed(&buf[..n]) {
                    let tail = tail(&console.text, &errors);
                    break match verdict {
                        Verdict::Met(line) => Attempt::Passed(line),
                        Verdict::SecureBootOff => Attempt::SecureBootOff(tail),
                        Verdict::Panicked(line) => Attempt::Panicked(line, tail),
                        Verdict::Refused => Attempt::Refused(tail),
                    };
                }
            }
            n = stderr.read(&mut ebuf), if stderr_open => {
                match n {
                    Ok(0) | Err(_) => stderr_open = false,
                    Ok(n) => {
                        errors.push_str(&String::from_utf8_lossy(&ebuf[..n]));
                        if accel == "kvm" && (errors.contains("KVM internal error") || errors.contains("emulation failure")) {
                            break Attempt::KvmTrouble("reported an internal error (emulation failure)".into());
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(stall), if watch_stall => {
                break Attempt::KvmTrouble(format!("left the console silent for {} s", KVM_STALL.as_secs()));
            }
            _ = tokio::time::sleep_until(deadline) => break Attempt::TimedOut(tail(&console.text, &errors)),
        }
    };
    let _ = child.kill().await;
    if boot.secure_boot {
        let _ = std::fs::remove_file(&vars);
    }
    file.flush()
        .await
        .map_err(io(format!("writing {}", log.display())))?;
    Ok(outcome)
}

/// The serial console as QEMU writes it, watched for the expectation and for what ends a boot
/// at once.
struct Console<'e> {
    expect: &'e Expect,
    /// Under Secure Boot, what Linux prints when it booted with it on.
    secure_boot: Option<&'e str>,
    /// The console's last [`WINDOW`] bytes, without escape sequences.
    text: String,
    /// What the last read cut inside an escape sequence or a UTF-8 character: it is read
    /// with the next bytes (QEMU writes the console as the guest's UART sends it, a few
    /// bytes at a time).
    cut: Vec<u8>,
    /// Where the lines not yet looked at start (the last one may still grow).
    unread: usize,
    /// Linux said it booted with Secure Boot on (early in the boot: kept when the window
    /// drops the line).
    secure_boot_on: bool,
}

/// How the console decided a boot.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The expectation was met, by this line.
    Met(String),
    /// Secure Boot: the expectation was met, but Linux did not say it booted with it on.
    SecureBootOff,
    /// The kernel panicked, with this line.
    Panicked(String),
    /// Secure Boot: the firmware refused the loader.
    Refused,
}

impl<'e> Console<'e> {
    fn new(expect: &'e Expect, secure_boot: Option<&'e str>) -> Self {
        Console {
            expect,
            secure_boot,
            text: String::new(),
            cut: Vec::new(),
            unread: 0,
            secure_boot_on: false,
        }
    }

    /// Take what QEMU wrote next; the verdict once the console has one.
    fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        self.cut.extend_from_slice(bytes);
        let whole = whole_prefix(&self.cut);
        self.text
            .push_str(&strip_ansi(&String::from_utf8_lossy(&self.cut[..whole])));
        self.cut.drain(..whole);
        if self.text.len() > WINDOW {
            let cut = self.text.len() - WINDOW / 2;
            let cut = (cut..self.text.len())
                .find(|i| self.text.is_char_boundary(*i))
                .unwrap_or(0);
            self.text.drain(..cut);
            self.unread = self.unread.saturating_sub(cut);
        }
        let unread = &self.text[self.unread..];
        self.secure_boot_on |= self.secure_boot.is_some_and(|on| unread.contains(on));
        if let Some(line) = self.expect.met(&self.text, self.unread) {
            return Some(match self.secure_boot.is_none() || self.secure_boot_on {
                true => Verdict::Met(line.to_string()),
                false => Verdict::SecureBootOff,
            });
        }
        // Complete lines only: the panic line names the reason at its end.
        let complete = unread.rfind('\n').map_or(0, |i| i + 1);
        if let Some(panic) = unread[..complete]
            .lines()
            .find(|l| l.contains(KERNEL_PANIC))
        {
            return Some(Verdict::Panicked(panic.trim().to_string()));
        }
        if self.secure_boot.is_some() && unread.contains(ACCESS_DENIED) {
            return Some(Verdict::Refused);
        }
        self.unread += complete;
        None
    }
}

/// How much of `bytes` is whole characters and escape sequences: all but an escape sequence
/// or a UTF-8 character the end cuts.
fn whole_prefix(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    if let Some(esc) = bytes.iter().rposition(|&b| b == 0x1b) {
        let rest = &bytes[esc + 1..];
        let whole = match rest.split_first() {
            None => false,
            Some((b'[', rest)) => rest.iter().any(|b| (b'@'..=b'~').contains(b)),
            Some(_) => true,
        };
        if !whole {
            end = esc;
        }
    }
    match std::str::from_utf8(&bytes[..end]) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => end,
    }
}

/// The last lines of the console (and QEMU's own errors).
fn tail(console: &str, errors: &str) -> String {
    let lines: Vec<&str> = console.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out: Vec<String> = lines[lines.len().saturating_sub(15)..]
        .iter()
        .map(|l| format!("  | {}", crate::limits::clip(l.trim_end())))
        .collect();
    out.extend(
        errors
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("  qemu: {}", crate::limits::clip(l))),
    );
    out.join("\n")
}

/// The console without terminal escape sequences (GRUB's menu, systemd's colours).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A serial console as QEMU writes it: `lines` with the UART's CR LF, the last one (a
    /// prompt) without.
    fn serial(lines: &[&str]) -> String {
        lines.join("\r\n")
    }

    /// forge's own boot facts of the architecture `name`.
    fn arch(name: &str) -> Arch {
        let templates = crate::render::Templates::load(None).unwrap();
        let known = Arch::known(&templates).unwrap();
        known.into_iter().find(|a| a.name == name).unwrap()
    }

    /// The verdict of a console that writes `console` five bytes at a time, as a UART
    /// does: escape sequences, characters and lines cut between reads; `secure_boot` as on
    /// amd64.
    fn verdict(expect: &Expect, secure_boot: bool, console: &str) -> Option<Verdict> {
        let amd64 = arch("amd64");
        let evidence = secure_boot.then_some(amd64.firmware.secure_boot.evidence.as_str());
        let mut watched = Console::new(expect, evidence);
        console
            .as_bytes()
            .chunks(5)
            .find_map(|bytes| watched.feed(bytes))
    }

    /// The line at which the default expectation is met.
    fn root_reached_at(console: &str) -> Option<String> {
        match verdict(&Expect::SquashfsRoot, false, console) {
            Some(Verdict::Met(line)) => Some(line),
            None => None,
            Some(other) => panic!("{other:?} instead of the root"),
        }
    }

    /// A UEFI boot of CanvOS's menu, `console=ttyS0,115200n8 console=tty0` (abridged from the
    /// example's ISO under OVMF): `/dev/console` is tty0, so systemd's welcome and status lines
    /// never reach ttyS0; GRUB's banner, the kernel's messages and the serial getty do.
    const TTY0_LAST: &[&str] = &[
        "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM QM00003 \" from PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x0)",
        "BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM QM00003 \" from PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x0)",
        "\u{1b}[0m\u{1b}[30m\u{1b}[47mWelcome to GRUB!",
        "",
        "\u{1b}[2J\u{1b}[01;01H\u{1b}[02;24HGNU GRUB  version 2.06-13+deb12u2",
        "\u{1b}[05;03H*Palette eXtended Kubernetes Edge Installer",
        "Loading kernel...",
        "Loading initrd...",
        "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)",
        "[    0.000000] Command line: BOOT_IMAGE=(cd0)/boot/kernel cdroot root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs net.ifnames=1 console=ttyS0,115200n8 console=tty0 rd.cos.disable nodepair.enable selinux=0",
        "[    0.000000] secureboot: Secure boot disabled",
        "[    3.788464] Console: switching to colour frame buffer device 100x37",
        "[    5.172333] Run /init as init process",
        "[    5.600111] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP)",
        "[    5.619335] systemd[1]: Running in initrd.",
        "[    9.004845] systemd[1]: Queued start job for default target initrd.target.",
        "[   11.517975] systemd[1]: Starting dracut-cmdline.service - dracut cmdline hook...",
        "[   11.759114] systemd[1]: Started systemd-journald.service - Journal Service.",
        "[   28.204380] squashfs: version 4.0 (2009/01/31) Phillip Lougher",
        "[   28.704788] loop0: detected capacity change from 0 to 384528",
        "[   35.643485] systemd-journald[140]: Received SIGTERM from PID 1 (systemd).",
        "[   37.026591] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP)",
        "[   37.045315] systemd[1]: Detected virtualization qemu.",
        "[   41.662988] systemd[1]: initrd-switch-root.service: Deactivated successfully.",
        "[   41.672732] systemd[1]: Stopped initrd-switch-root.service - Switch Root.",
        "[   41.756681] systemd[1]: Created slice system-serial\\x2dgetty.slice - Slice /system/serial-getty.",
        "[   45.875086] systemd[1]: Started systemd-journald.service - Journal Service.",
        "",
        "Debian GNU/Linux 12 localhost ttyS0",
        "",
        "localhost login: ",
    ];

    /// A BIOS boot of the same menu, `console=tty1 console=ttyS0` (abridged from the example's
    /// ISO under SeaBIOS): `/dev/console` is ttyS0, so systemd's welcome and status lines, in
    /// colour, are there too.
    const TTYS0_LAST: &[&str] = &[
        "\u{1b}[H\u{1b}[J\u{1b}[1;1H\u{1b}[?25l\u{1b}[m\u{1b}[2;24HGNU GRUB  version 2.06-13+deb12u2",
        "\u{1b}[5;3H*Palette eXtended Kubernetes Edge Installer",
        "Loading kernel...",
        "vga=795 is deprecated. Use set gfxpayload=1280x1024x24,1280x1024 before linux",
        "command instead.",
        "Loading initrd...",
        "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)",
        "[    0.000000] Command line: BOOT_IMAGE=(cd)/boot/kernel cdroot root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs net.ifnames=1 console=tty1 console=ttyS0 rd.cos.disable vga=795 nomodeset",
        "[    3.775390] systemd[1]: Running in initrd.",
        "",
        "Welcome to \u{1b}[1mDebian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)\u{1b}[0m!",
        "",
        "[\u{1b}[0;32m  OK  \u{1b}[0m] Reached target \u{1b}[0;1;39minitrd-root-device.target\u{1b}[0m - Initrd Root Device.",
        "         Mounting \u{1b}[0;1;39msysroot.mount\u{1b}[0m - /sysroot...",
        "[\u{1b}[0;32m  OK  \u{1b}[0m] Reached target \u{1b}[0;1;39minitrd-switch-root.target\u{1b}[0m - Switch Root.",
        "         Starting \u{1b}[0;1;39minitrd-switch-root.service\u{1b}[0m - Switch Root...",
        "[   18.150339] systemd-journald[139]: Received SIGTERM from PID 1 (systemd).",
        "[   18.917797] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP)",
        "[   18.930050] systemd[1]: Detected virtualization qemu.",
        "",
        "Welcome to \u{1b}[1mDebian GNU/Linux 12 (bookworm)\u{1b}[0m!",
        "",
        "[   19.840211] systemd[1]: initrd-switch-root.service: Deactivated successfully.",
        "[\u{1b}[0;32m  OK  \u{1b}[0m] Stopped \u{1b}[0;1;39minitrd-switch-root.service\u{1b}[0m - Switch Root.",
        "",
        "Debian GNU/Linux 12 localhost ttyS0",
        "",
        "localhost login: ",
    ];

    /// The lines of `console` before the first one containing `line`, and from it on.
    fn split<'a>(console: &[&'a str], line: &str) -> (Vec<&'a str>, Vec<&'a str>) {
        let at = console.iter().position(|l| l.contains(line)).unwrap();
        (console[..at].to_vec(), console[at..].to_vec())
    }

    /// The lines of `console` before the first one containing `line`.
    fn before<'a>(console: &[&'a str], line: &str) -> Vec<&'a str> {
        split(console, line).0
    }

    #[test]
    fn with_tty0_last_the_root_shows_in_the_kernel_messages_of_the_real_roots_systemd() {
        assert_eq!(
            root_reached_at(&serial(TTY0_LAST)).as_deref(),
            Some(
                "[   41.662988] systemd[1]: initrd-switch-root.service: Deactivated successfully."
            )
        );
        // GRUB's banner, the kernel and the initramfs up to its switch root are not the root.
        let initramfs = before(TTY0_LAST, "initrd-switch-root.service");
        assert_eq!(root_reached_at(&serial(&initramfs)), None);
    }

    #[test]
    fn with_the_serial_console_last_the_root_shows_in_systemds_welcome_after_the_initramfs() {
        assert_eq!(
            root_reached_at(&serial(TTYS0_LAST)).as_deref(),
            Some("Welcome to Debian GNU/Linux 12 (bookworm)!")
        );
        let initramfs = before(TTYS0_LAST, "systemd-journald[139]: Received SIGTERM");
        assert!(initramfs.iter().any(|l| l.contains("(Initramfs)")));
        assert_eq!(root_reached_at(&serial(&initramfs)), None);
    }

    #[test]
    fn with_quiet_the_serial_gettys_prompt_shows_the_root() {
        // `quiet`: no kernel messages below warnings, no systemd status lines.
        for console in [TTY0_LAST, TTYS0_LAST] {
            let quiet: Vec<&str> = console
                .iter()
                .copied()
                .filter(|l| !l.starts_with('[') && !l.contains("Welcome to \u{1b}[1m"))
                .collect();
            assert_eq!(
                root_reached_at(&serial(&quiet)).as_deref(),
                Some("localhost login:")
            );
        }
        let autologin = serial(&[
            "",
            "Debian GNU/Linux 12 kairos ttyS0",
            "",
            "kairos login: root (automatic login)",
            "",
        ]);
        assert_eq!(
            root_reached_at(&autologin).as_deref(),
            Some("kairos login:")
        );
    }

    #[test]
    fn older_systemd_says_switch_root_in_its_older_words() {
        let console = serial(&[
            "[   21.302113] systemd[1]: initrd-switch-root.service: Succeeded.",
            "[   21.310982] systemd[1]: Stopped Switch Root.",
        ]);
        assert_eq!(
            root_reached_at(&console).as_deref(),
            Some("[   21.302113] systemd[1]: initrd-switch-root.service: Succeeded.")
        );
    }

    /// A Secure Boot boot of Debian's signed shim and GRUB with forge's menu (tty0 last), up
    /// to the initramfs.
    const SIGNED_GRUB: &[&str] = &[
        "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0)",
        "BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0)",
        "\u{1b}[0m\u{1b}[30m\u{1b}[47mWelcome to GRUB!",
        "",
        "Loading kernel...",
        "Loading initrd...",
        "EFI stub: UEFI Secure Boot is enabled.",
        "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)",
        "[    0.000000] secureboot: Secure boot enabled",
        "[    0.000000] Kernel is locked down from EFI Secure Boot mode; see man kernel_lockdown.7",
        "[    6.214409] systemd[1]: Running in initrd.",
    ];

    #[test]
    fn grubs_banner_is_not_the_root_under_secure_boot_either() {
        assert_eq!(
            verdict(&Expect::SquashfsRoot, true, &serial(SIGNED_GRUB)),
            None
        );
        let (_, switch_root) = split(TTY0_LAST, "systemd-journald[140]: Received SIGTERM");
        let root = [SIGNED_GRUB, &switch_root].concat();
        assert_eq!(
            verdict(&Expect::SquashfsRoot, true, &serial(&root)),
            Some(Verdict::Met(
                "[   41.662988] systemd[1]: initrd-switch-root.service: Deactivated successfully."
                    .into()
            ))
        );
        // The same console without Linux saying Secure Boot is on.
        let off: Vec<&str> = root
            .iter()
            .copied()
            .filter(|l| !l.contains("Secure boot enabled"))
            .collect();
        assert_eq!(
            verdict(&Expect::SquashfsRoot, true, &serial(&off)),
            Some(Verdict::SecureBootOff)
        );
    }

    #[test]
    fn a_loader_secure_boot_refuses_ends_the_boot_at_once() {
        let console = serial(&[
            "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0)",
            "BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0): Access Denied",
            "",
        ]);
        assert_eq!(
            verdict(&Expect::SquashfsRoot, true, &console),
            Some(Verdict::Refused)
        );
    }

    #[test]
    fn a_kernel_panic_ends_the_boot_at_once_naming_its_reason() {
        let mut console = before(TTY0_LAST, "Run /init");
        console.extend([
            "[    5.172333] Run /init as init process",
            "[    5.431082] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
            "[    5.431990] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-50-amd64 #1  Debian 6.1.176-1",
            "[    5.432811] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 0.0.0 02/06/2015",
            "[    5.433602] Call Trace:",
        ]);
        assert_eq!(
            verdict(&Expect::SquashfsRoot, false, &serial(&console)),
            Some(Verdict::Panicked(
                "[    5.431082] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100".into()
            ))
        );
    }

    #[test]
    fn a_marker_asked_for_is_met_by_the_line_that_holds_it_whatever_the_console_order() {
        let expect =
            Expect::Regex(Regex::new("forge-fixture: config.yaml sha256 [0-9a-f]{64}").unwrap());
        let marker = "forge-fixture: config.yaml sha256 6005ead6ef37f995d26df6fb23d7a73cd451585f3b431b908bc35a046814c7b4";
        for console in [TTY0_LAST, TTYS0_LAST] {
            let mut console = console.to_vec();
            assert_eq!(verdict(&expect, false, &serial(&console)), None);
            console.insert(console.len() - 3, marker);
            assert_eq!(
                verdict(&expect, false, &serial(&console)),
                Some(Verdict::Met(marker.into()))
            );
        }
    }

    #[test]
    fn the_root_is_seen_after_more_console_than_the_window_keeps() {
        let (mut console, root) = split(TTY0_LAST, "initrd-switch-root.service");
        let noise = "[   30.000000] audit: type=1400 audit(1796415440.176:6): apparmor=\"STATUS\" operation=\"profile_load\"";
        console.extend(std::iter::repeat_n(noise, 2 * WINDOW / noise.len()));
        console.extend(root);
        assert_eq!(
            root_reached_at(&serial(&console)).as_deref(),
            Some(
                "[   41.662988] systemd[1]: initrd-switch-root.service: Deactivated successfully."
            )
        );
    }

    #[test]
    fn escape_sequences_are_removed_from_the_console() {
        assert_eq!(
            strip_ansi("Welcome to \u{1b}[1mDebian\u{1b}[0m!\r\n\u{1b}[5;3H*entry"),
            "Welcome to Debian!\n*entry"
        );
    }

    #[test]
    fn each_medium_boots_from_its_own_device() {
        let amd64 = arch("amd64");
        let iso = Path::new("/tmp/a,b.iso");
        let vars = Path::new("/tmp/vars.fd");
        let boot = |firmware, media, secure_boot| Boot {
            firmware,
            media,
            secure_boot,
        };
        let cd = qemu_args(
            iso,
            &boot(Firmware::Bios, Media::Cdrom, false),
            &amd64,
            "tcg",
            1024,
            vars,
        )
        .join(" ");
        assert_eq!(
            cd,
            "-machine pc -m 1024 -display none -monitor none -serial stdio -nic none -no-reboot \
             -accel tcg -drive if=none,id=iso,file=/tmp/a,,b.iso,format=raw,readonly=on,media=cdrom \
             -device ide-cd,drive=iso,bootindex=1"
        );
        let usb = qemu_args(
            iso,
            &boot(Firmware::Uefi, Media::Usb, false),
            &amd64,
            "kvm",
            1024,
            vars,
        )
        .join(" ");
        let ovmf = uefi_firmware(&amd64).unwrap_or("/usr/share/ovmf/OVMF.fd");
        assert_eq!(
            usb,
            format!(
                "-machine pc -m 1024 -display none -monitor none -serial stdio -nic none -no-reboot \
                 -accel kvm -cpu host -bios {ovmf} -device qemu-xhci,id=xhci \
                 -drive if=none,id=iso,file=/tmp/a,,b.iso,format=raw,readonly=on \
                 -device usb-storage,bus=xhci.0,drive=iso,bootindex=1"
            )
        );
    }

    #[test]
    fn secure_boot_enforces_it_in_ovmf_with_microsofts_keys_on_a_copy_of_the_store() {
        let boot = Boot {
            firmware: Firmware::Uefi,
            media: Media::Disk,
            secure_boot: true,
        };
        assert_eq!(boot.name(), "uefi-secureboot-disk");
        let args = qemu_args(
            Path::new("/tmp/x.iso"),
            &boot,
            &arch("amd64"),
            "tcg",
            1024,
            Path::new("/tmp/logs/uefi-secureboot-disk.vars.fd"),
        )
        .join(" ");
        assert_eq!(
            args,
            "-machine q35,smm=on -m 1024 -display none -monitor none -serial stdio -nic none \
             -no-reboot -accel tcg -global driver=cfi.pflash01,property=secure,value=on \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/logs/uefi-secureboot-disk.vars.fd \
             -drive if=none,id=iso,file=/tmp/x.iso,format=raw,readonly=on \
             -device virtio-blk-pci,drive=iso,bootindex=1"
        );
    }

    #[test]
    fn arm64_boots_on_the_virt_machine_with_aavmf_and_a_scsi_cd() {
        let arm64 = arch("arm64");
        let boot = |media, secure_boot| Boot {
            firmware: Firmware::Uefi,
            media,
            secure_boot,
        };
        let iso = Path::new("/tmp/x.iso");
        let vars = Path::new("/tmp/vars.fd");
        let cd = qemu_args(iso, &boot(Media::Cdrom, false), &arm64, "tcg", 1024, vars).join(" ");
        let firmware = uefi_firmware(&arm64).unwrap_or("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd");
        assert_eq!(
            cd,
            format!(
                "-machine virt -m 1024 -display none -monitor none -serial stdio -nic none \
                 -no-reboot -accel tcg -cpu max -bios {firmware} -device virtio-scsi-pci,id=scsi \
                 -drive if=none,id=iso,file=/tmp/x.iso,format=raw,readonly=on,media=cdrom \
                 -device scsi-cd,bus=scsi.0,drive=iso,bootindex=1"
            )
        );
        let secure = qemu_args(iso, &boot(Media::Disk, true), &arm64, "kvm", 1024, vars).join(" ");
        assert_eq!(
            secure,
            "-machine virt -m 1024 -display none -monitor none -serial stdio -nic none \
             -no-reboot -accel kvm -cpu host \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.ms.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd \
             -drive if=none,id=iso,file=/tmp/x.iso,format=raw,readonly=on \
             -device virtio-blk-pci,drive=iso,bootindex=1"
        );
    }

    #[test]
    fn an_architecture_without_bios_refuses_bios_boots_before_anything() {
        let bios = Boot {
            firmware: Firmware::Bios,
            media: Media::Cdrom,
            secure_boot: false,
        };
        let err = preflight(&[bios], &arch("arm64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "arm64 ISOs boot with UEFI only: leave out --firmware bios"
        );
    }
}
