//! What an architecture's installer ISO boots with, as data: `arch/<ARCH>/boot.yaml` (the UEFI
//! loader's names and GRUB platform, the BIOS boot where there is one, GRUB's platform files
//! and their packages, how QEMU boots it and with which firmware), and the UEFI chain to take
//! from the installer image (`arch/<ARCH>/efi.yaml`, `vendors.yaml`). Found in the layers of
//! [`Templates::find`]; templates/README.md describes every key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Settings;
use crate::render::{Layers, RenderError, Templates};

/// An architecture's boot facts (`boot.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Its name (`amd64`): the layer its data was looked up in.
    #[serde(skip)]
    pub name: String,
    pub uefi: Uefi,
    /// `None` where firmware boots with UEFI only (arm64).
    pub bios: Option<Bios>,
    pub grub_files: Vec<GrubFile>,
    pub qemu: Qemu,
    pub firmware: Firmware,
}

/// How UEFI firmware boots the ISO.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uefi {
    /// The loader firmware runs from removable media: `EFI/BOOT/<loader>` (`bootx64.efi`).
    pub loader: String,
    /// The name a shim chains to, beside it (`grubx64.efi`).
    pub grub: String,
    /// grub-mkimage's platform for the GRUB forge builds when the image has no loader.
    pub grub_platform: String,
}

/// How BIOS firmware boots the ISO: GRUB's El Torito image and GRUB's hybrid MBR.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bios {
    /// grub-mkimage's platform for the El Torito image (`i386-pc-eltorito`).
    pub grub_platform: String,
    /// Where the El Torito image lies on the ISO, below its root.
    pub image: String,
    /// GRUB's hybrid MBR in the tool environment.
    pub hybrid_mbr: String,
}

/// A GRUB platform file mastering needs, and the Debian package holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrubFile {
    pub file: String,
    pub package: String,
}

/// How `forge verify` runs QEMU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    /// The system emulator (`qemu-system-x86_64`) and its Debian package.
    pub command: String,
    pub package: String,
    /// The machine type (`-machine`) of BIOS and plain UEFI boots.
    pub machine: String,
    /// The CPU under TCG (`-cpu`); QEMU's default when `None`. KVM uses the host's.
    pub cpu: Option<String>,
    /// The devices (`-device`) that attach the ISO, whose drive is `iso`, per medium.
    pub media: Media,
}

/// The `-device` values of each medium.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub cdrom: Vec<String>,
    pub disk: Vec<String>,
    pub usb: Vec<String>,
}

/// The UEFI firmware `forge verify` boots with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// What it is called (`OVMF`) and the Debian package holding it.
    pub name: String,
    pub package: String,
    /// Builds that work with `-bios`, in order of preference.
    pub uefi: Vec<String>,
    pub secure_boot: SecureBoot,
}

/// The firmware build that enforces Secure Boot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureBoot {
    /// The machine type it needs (`q35,smm=on`) and further QEMU options.
    pub machine: String,
    pub options: Vec<String>,
    /// The firmware code (read-only flash) and the variable store with Microsoft's keys
    /// enrolled, copied for each boot.
    pub code: String,
    pub vars: String,
    /// What Linux prints when the firmware booted it with Secure Boot on.
    pub evidence: String,
}

impl Arch {
    /// The boot facts of the build's ARCH, in the layers of its settings.
    pub fn of(templates: &Templates, settings: &Settings) -> Result<Arch, RenderError> {
        Arch::read(templates, &Layers::of(settings))
    }

    /// The boot facts of every architecture the templates know ([`Templates::arches`]), each
    /// in its own layer: what an ISO, read without settings, may be.
    pub fn known(templates: &Templates) -> Result<Vec<Arch>, RenderError> {
        templates
            .arches()
            .iter()
            .map(|name| Arch::read(templates, &Layers::arch(name)))
            .collect()
    }

    fn read(templates: &Templates, layers: &Layers) -> Result<Arch, RenderError> {
        let mut arch: Arch = templates.data("boot.yaml", layers)?;
        arch.name.clone_from(&layers.arch);
        Ok(arch)
    }

    /// The Debian packages of GRUB's platform files, each once, in order.
    pub fn grub_packages(&self) -> Vec<&str> {
        let mut packages: Vec<&str> = Vec::new();
        for file in &self.grub_files {
            if !packages.contains(&file.package.as_str()) {
                packages.push(&file.package);
            }
        }
        packages
    }
}

/// The UEFI chain to take from an installer image: its architecture's shim and GRUB
/// candidates (`efi.yaml`) and the vendors' ESP directories (`vendors.yaml`).
#[derive(Debug, Clone)]
pub struct Efi {
    /// Shim binaries, in order of preference.
    pub shim: Vec<String>,
    /// GRUB binaries, in order of preference.
    pub grub: Vec<String>,
    /// `/etc/os-release` ID → the ESP directory the vendor's signed GRUB reads grub.cfg from.
    pub vendors: BTreeMap<String, String>,
}

/// `efi.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidates {
    shim: Vec<String>,
    grub: Vec<String>,
}

impl Efi {
    /// The chain of the build's ARCH, in the layers of its settings.
    pub fn of(templates: &Templates, settings: &Settings) -> Result<Efi, RenderError> {
        let layers = Layers::of(settings);
        let Candidates { shim, grub } = templates.data("efi.yaml", &layers)?;
        Ok(Efi {
            shim,
            grub,
            vendors: templates.data("vendors.yaml", &layers)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    fn settings(sets: &[(&str, &str)]) -> Settings {
        resolve(&Inputs {
            sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Inputs::default()
        })
        .settings
    }

    #[test]
    fn forge_knows_amd64_and_arm64() {
        let templates = Templates::load(None).unwrap();
        let known: Vec<String> = Arch::known(&templates)
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(known, ["amd64", "arm64"]);
    }

    #[test]
    fn amd64_boots_with_bios_and_uefi_as_before() {
        let templates = Templates::load(None).unwrap();
        let amd64 = Arch::of(&templates, &settings(&[])).unwrap();
        assert_eq!(amd64.name, "amd64", "the default ARCH");
        assert_eq!(amd64.uefi.loader, "bootx64.efi");
        assert_eq!(amd64.uefi.grub, "grubx64.efi");
        assert_eq!(amd64.uefi.grub_platform, "x86_64-efi");
        let bios = amd64.bios.as_ref().unwrap();
        assert_eq!(bios.grub_platform, "i386-pc-eltorito");
        assert_eq!(bios.image, "boot/grub/i386-pc/eltorito.img");
        assert_eq!(bios.hybrid_mbr, "/usr/lib/grub/i386-pc/boot_hybrid.img");
        assert_eq!(amd64.grub_packages(), ["grub-pc-bin", "grub-efi-amd64-bin"]);
        assert_eq!(amd64.qemu.command, "qemu-system-x86_64");
        assert_eq!(amd64.qemu.cpu, None);
        assert_eq!(amd64.firmware.name, "OVMF");
        assert_eq!(amd64.firmware.secure_boot.machine, "q35,smm=on");
    }

    #[test]
    fn arm64_boots_with_uefi_only() {
        let templates = Templates::load(None).unwrap();
        let arm64 = Arch::of(&templates, &settings(&[("ARCH", "arm64")])).unwrap();
        assert_eq!(arm64.uefi.loader, "bootaa64.efi");
        assert_eq!(arm64.uefi.grub, "grubaa64.efi");
        assert_eq!(arm64.uefi.grub_platform, "arm64-efi");
        assert!(
            arm64.bios.is_none(),
            "no El Torito BIOS entry, no hybrid MBR"
        );
        assert_eq!(arm64.grub_packages(), ["grub-efi-arm64-bin"]);
        assert_eq!(arm64.qemu.command, "qemu-system-aarch64");
        assert_eq!(arm64.qemu.package, "qemu-system-arm");
        assert_eq!(arm64.qemu.machine, "virt");
        assert_eq!(arm64.firmware.package, "qemu-efi-aarch64");
        assert_eq!(
            arm64.firmware.secure_boot.code,
            "/usr/share/AAVMF/AAVMF_CODE.ms.fd"
        );
        let efi = Efi::of(&templates, &settings(&[("ARCH", "arm64")])).unwrap();
        assert!(efi.grub.iter().all(|g| !g.contains("x86_64")), "{efi:?}");
        assert_eq!(efi.vendors["ubuntu"], "ubuntu", "vendors are shared");
    }

    #[test]
    fn a_boot_file_of_the_templates_directory_replaces_forge_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("arch/amd64");
        std::fs::create_dir_all(&own).unwrap();
        let text = Templates::load(None)
            .unwrap()
            .required("boot.yaml", &Layers::arch("amd64"))
            .unwrap()
            .read::<serde_json::Value>()
            .unwrap();
        let mut changed = text.clone();
        changed["qemu"]["command"] = "/opt/qemu/bin/qemu-system-x86_64".into();
        std::fs::write(own.join("boot.yaml"), changed.to_string()).unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let amd64 = Arch::of(&templates, &settings(&[])).unwrap();
        assert_eq!(amd64.qemu.command, "/opt/qemu/bin/qemu-system-x86_64");
    }

    #[test]
    fn a_misspelt_key_in_a_boot_file_is_named_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("arch/arm64");
        std::fs::create_dir_all(&own).unwrap();
        let builtin = include_str!("../../templates/arch/arm64/boot.yaml");
        std::fs::write(
            own.join("boot.yaml"),
            builtin.replace("  machine: virt", "  machin: virt"),
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let err = Arch::of(&templates, &settings(&[("ARCH", "arm64")]))
            .unwrap_err()
            .to_string();
        let line = builtin
            .lines()
            .position(|l| l == "  machine: virt")
            .unwrap()
            + 1;
        assert!(
            err.starts_with(&format!(
                "{}:{line}:3: qemu.machin: unknown field `machin`",
                own.join("boot.yaml").display()
            )),
            "{err}"
        );
        assert!(err.contains("templates/README.md"), "{err}");
    }
}
