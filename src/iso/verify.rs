//! Booting the ISO in QEMU: SeaBIOS or OVMF firmware, OVMF with Secure Boot enforced too; the
//! ISO as a CD, as a virtio disk (the path a USB stick takes through the hybrid MBR) or as a
//! USB mass-storage device. The serial console is saved per run and watched for the
//! expectation (and, under Secure Boot, for the kernel saying it booted with it).
//!
//! Nested KVM is unreliable on CI machines (OVMF dies with an emulation failure, BIOS boots
//! stall while GRUB loads the kernel), so `auto` uses KVM only on bare metal and falls back to
//! TCG when KVM reports an internal error or the console stays silent for [`KVM_STALL`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Silence on the console after which a KVM boot counts as stalled (`auto` then uses TCG).
pub const KVM_STALL: Duration = Duration::from_secs(45);
/// Kept of the console for matching (the whole console goes to the log file).
const WINDOW: usize = 1 << 20;
/// OVMF builds that work with `-bios`, in order of preference.
const OVMF: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
];
/// OVMF with Secure Boot (it needs SMM: a q35 machine) and its variable store with
/// Microsoft's keys enrolled, as Debian's `ovmf` package ships them: Secure Boot is enforced
/// from the first boot, and anything signed through Microsoft's UEFI CA (shim) starts.
const OVMF_SECURE_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
/// What Linux prints when the firmware booted it with Secure Boot on.
const SECURE_BOOT_ON: &str = "Secure boot enabled";
/// What OVMF prints when Secure Boot refuses a boot loader.
const ACCESS_DENIED: &str = "Access Denied";

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
    /// The system reached the squashfs root: systemd's `Welcome to ...!` after the switch out
    /// of the initramfs (the initramfs's own welcome line says `(Initramfs)`).
    SquashfsRoot,
    Regex(Regex),
}

impl Expect {
    fn matches(&self, console: &str) -> bool {
        match self {
            Expect::SquashfsRoot => console.lines().any(|l| {
                l.trim_start().starts_with("Welcome to ")
                    && l.trim_end().ends_with('!')
                    && !l.contains("Initramfs")
            }),
            Expect::Regex(re) => re.is_match(console),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Expect::SquashfsRoot => {
                "the squashfs root was reached (systemd's welcome after the initramfs)".into()
            }
            Expect::Regex(re) => format!("/{}/", re.as_str()),
        }
    }
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
}

/// The verification settings.
pub struct Options<'a> {
    pub iso: &'a Path,
    pub accel: Accel,
    pub expect: Expect,
    pub timeout: Duration,
    pub log_dir: &'a Path,
    pub memory_mib: u32,
}

/// Check QEMU (and OVMF when a UEFI boot is asked for) before booting anything.
pub fn preflight(boots: &[Boot]) -> Result<(), VerifyError> {
    if !super::on_path("qemu-system-x86_64") {
        return Err(VerifyError::Missing(
            "forge verify needs qemu-system-x86_64 (apt-get install qemu-system-x86)".into(),
        ));
    }
    if boots.iter().any(|b| b.firmware == Firmware::Uefi) && ovmf().is_none() {
        return Err(VerifyError::Missing(format!(
            "UEFI boots need OVMF firmware ({}; apt-get install ovmf)",
            OVMF.join(", ")
        )));
    }
    if boots.iter().any(|b| b.secure_boot) {
        if let Err(missing) = secure_boot_firmware() {
            return Err(VerifyError::Missing(format!(
                "Secure Boot boots need OVMF built with Secure Boot and Microsoft's keys ({missing} is missing; apt-get install ovmf)"
            )));
        }
    }
    Ok(())
}

/// The OVMF build UEFI boots use, if this machine has one.
pub fn ovmf() -> Option<&'static str> {
    OVMF.iter().copied().find(|p| Path::new(p).is_file())
}

/// The Secure Boot firmware and its variable store with Microsoft's keys, or the first of
/// them that is missing.
pub fn secure_boot_firmware() -> Result<[&'static str; 2], &'static str> {
    let files = [OVMF_SECURE_CODE, OVMF_MS_VARS];
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
                let failure = match attempt {
                    Attempt::Passed => None,
                    Attempt::KvmTrouble(why) => Some(format!("KVM {why}")),
                    Attempt::Exited(tail) => Some(format!(
                        "QEMU exited before {}:\n{tail}",
                        options.expect.describe()
                    )),
                    Attempt::Refused(tail) => Some(format!(
                        "Secure Boot refused the ISO's EFI loader (`{ACCESS_DENIED}`): it is not signed by a key the firmware trusts; an image with its distribution's signed shim and GRUB gives an ISO that boots:\n{tail}"
                    )),
                    Attempt::SecureBootOff(tail) => Some(format!(
                        "{} but Linux did not say `{SECURE_BOOT_ON}`:\n{tail}",
                        options.expect.describe()
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
    Passed,
    KvmTrouble(String),
    Exited(String),
    TimedOut(String),
    /// Secure Boot: the firmware refused the loader.
    Refused(String),
    /// Secure Boot: the expectation was met, but Linux did not run with Secure Boot on.
    SecureBootOff(String),
}

/// A path as a QEMU option value (`,` doubled).
fn qemu_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The QEMU command line of one boot; `vars` is the boot's own copy of the UEFI variable
/// store (Secure Boot).
fn qemu_args(iso: &Path, boot: &Boot, accel: &str, memory_mib: u32, vars: &Path) -> Vec<String> {
    let iso = qemu_path(iso);
    let machine = match boot.secure_boot {
        true => "q35,smm=on",
        false => "pc",
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
    args.extend(match accel {
        "kvm" => ["-accel", "kvm", "-cpu", "host"].map(String::from).to_vec(),
        _ => ["-accel", "tcg"].map(String::from).to_vec(),
    });
    if boot.secure_boot {
        args.extend([
            "-global".into(),
            "driver=cfi.pflash01,property=secure,value=on".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_SECURE_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", qemu_path(vars)),
        ]);
    } else if boot.firmware == Firmware::Uefi {
        args.extend(["-bios".into(), ovmf().unwrap_or(OVMF[0]).into()]);
    }
    let drive = |extra: &str| format!("if=none,id=iso,file={iso},format=raw,readonly=on{extra}");
    let devices: Vec<String> = match boot.media {
        Media::Cdrom => vec![
            "-drive".into(),
            drive(",media=cdrom"),
            "-device".into(),
            "ide-cd,drive=iso,bootindex=1".into(),
        ],
        Media::Disk => vec![
            "-drive".into(),
            drive(""),
            "-device".into(),
            "virtio-blk-pci,drive=iso,bootindex=1".into(),
        ],
        Media::Usb => vec![
            "-device".into(),
            "qemu-xhci,id=xhci".into(),
            "-drive".into(),
            drive(""),
            "-device".into(),
            "usb-storage,bus=xhci.0,drive=iso,bootindex=1".into(),
        ],
    };
    args.extend(devices);
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
    if boot.secure_boot {
        std::fs::copy(OVMF_MS_VARS, &vars)
            .map_err(io(format!("copying {OVMF_MS_VARS} to {}", vars.display())))?;
    }
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args(qemu_args(
            options.iso,
            boot,
            accel,
            options.memory_mib,
            &vars,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting qemu-system-x86_64".into()))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut file = tokio::fs::File::create(log)
        .await
        .map_err(io(format!("creating {}", log.display())))?;
    let mut console = String::new();
    let mut errors = String::new();
    let (mut buf, mut ebuf) = (vec![0u8; 1 << 16], vec![0u8; 4096]);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_output = tokio::time::Instant::now();
    let mut stderr_open = true;
    let mut secure_boot_on = false;
    let outcome = loop {
        let stall = last_output + KVM_STALL;
        tokio::select! {
            n = stdout.read(&mut buf) => {
                let n = n.map_err(io("reading the console".into()))?;
                if n == 0 {
                    let _ = child.wait().await;
                    break Attempt::Exited(tail(&console, &errors));
                }
                file.write_all(&buf[..n]).await.map_err(io(format!("writing {}", log.display())))?;
                console.push_str(&strip_ansi(&String::from_utf8_lossy(&buf[..n])));
                // Said early in the boot: noted before the window drops it.
                secure_boot_on |= console.contains(SECURE_BOOT_ON);
                if console.len() > WINDOW {
                    let cut = console.len() - WINDOW / 2;
                    let cut = (cut..console.len()).find(|i| console.is_char_boundary(*i)).unwrap_or(0);
                    console.drain(..cut);
                }
                last_output = tokio::time::Instant::now();
                if options.expect.matches(&console) {
                    break match !boot.secure_boot || secure_boot_on {
                        true => Attempt::Passed,
                        false => Attempt::SecureBootOff(tail(&console, &errors)),
                    };
                }
                if boot.secure_boot && console.contains(ACCESS_DENIED) {
                    break Attempt::Refused(tail(&console, &errors));
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
            _ = tokio::time::sleep_until(deadline) => break Attempt::TimedOut(tail(&console, &errors)),
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

/// The last lines of the console (and QEMU's own errors).
fn tail(console: &str, errors: &str) -> String {
    let lines: Vec<&str> = console.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out: Vec<String> = lines[lines.len().saturating_sub(15)..]
        .iter()
        .map(|l| format!("  | {}", l.trim_end()))
        .collect();
    out.extend(
        errors
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("  qemu: {l}")),
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

    #[test]
    fn the_default_expectation_wants_the_welcome_after_the_initramfs() {
        let initramfs = "Welcome to Debian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)!\n";
        assert!(!Expect::SquashfsRoot.matches(initramfs));
        let root = format!("{initramfs}[  OK  ] Reached target Switch Root.\nWelcome to Debian GNU/Linux 12 (bookworm)!\n");
        assert!(Expect::SquashfsRoot.matches(&root));
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
            "tcg",
            1024,
            vars,
        )
        .join(" ");
        assert!(
            cd.contains("file=/tmp/a,,b.iso,format=raw,readonly=on,media=cdrom"),
            "{cd}"
        );
        assert!(cd.contains("ide-cd,drive=iso,bootindex=1"));
        assert!(cd.contains("-machine pc "), "{cd}");
        let usb = qemu_args(
            iso,
            &boot(Firmware::Uefi, Media::Usb, false),
            "kvm",
            1024,
            vars,
        )
        .join(" ");
        assert!(usb.contains("usb-storage,bus=xhci.0,drive=iso"), "{usb}");
        assert!(usb.contains("-bios"));
        assert!(usb.contains("-accel kvm -cpu host"));
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
            "tcg",
            1024,
            Path::new("/tmp/logs/uefi-secureboot-disk.vars.fd"),
        )
        .join(" ");
        for part in [
            "-machine q35,smm=on",
            "-global driver=cfi.pflash01,property=secure,value=on",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "if=pflash,format=raw,unit=1,file=/tmp/logs/uefi-secureboot-disk.vars.fd",
        ] {
            assert!(args.contains(part), "{part}: {args}");
        }
        assert!(!args.contains("-bios"), "{args}");
    }
}
