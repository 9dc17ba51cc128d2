//! `forge inspect`: what an installer ISO holds, read natively (see `read`): label, El Torito
//! entries, system area, the live files and their sizes, the overlay files and content
//! bundles (a symbolic link shown as one), and the sha256 of `/config.yaml` (compared with a
//! user-data file when given). The ISO's architecture is the one whose UEFI loader its EFI
//! system partition holds (`EFI/BOOT/bootx64.efi`: amd64); an architecture without BIOS
//! (arm64) needs no El Torito BIOS entry.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::arch::Arch;
use super::fat::{is_signed, Fat};
use super::master::{
    CLUSTER_CONFIG, CONTENT_DIR, EDGE_CUSTOM_CONFIG, ESP_LABEL, LABEL, MENU, RESERVED,
};
use super::read::{BootEntry, Entry, Iso, Partition, ReadError};

/// A user-data file is a few KiB; more means this is not one.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[derive(Debug, Serialize)]
pub struct Report {
    pub iso: String,
    pub size: u64,
    pub label: String,
    pub label_ok: bool,
    pub el_torito: Vec<BootEntry>,
    pub mbr: Vec<Partition>,
    pub mbr_boot_code: bool,
    pub gpt: Vec<Partition>,
    pub esp: bool,
    /// The UEFI boot chain in the EFI system partition.
    pub efi: Option<EfiChain>,
    pub files: Vec<File>,
    pub overlay_files: Vec<File>,
    pub content_bundles: Vec<File>,
    pub config_sha256: Option<String>,
    /// Whether `/config.yaml` equals the `--user-data` file, when one was given.
    pub config_matches: Option<bool>,
    /// Problems found (a missing live file, a wrong label, ...).
    pub problems: Vec<String>,
    #[serde(skip)]
    pub config: Option<String>,
    /// The architecture whose UEFI loader the EFI system partition holds, when one does.
    #[serde(skip)]
    pub arch: Option<String>,
}

/// What the EFI system partition holds and how UEFI firmware boots from it.
#[derive(Debug, Serialize)]
pub struct EfiChain {
    pub label: String,
    /// The binaries firmware runs, in order: `shim EFI/BOOT/bootx64.efi (signed)`, ...
    pub chain: Vec<String>,
    /// Where GRUB configurations lie (`EFI/BOOT/grub.cfg`, `EFI/<vendor>/grub.cfg`).
    pub grub_configs: Vec<String>,
    pub files: Vec<File>,
}

/// Read the EFI system partition `esp` of `iso` and name its boot chain, and the architecture
/// of `arches` whose loader it holds; problems go to `problems`.
fn efi_chain<'a>(
    iso: &Path,
    esp: &Partition,
    arches: &'a [Arch],
    problems: &mut Vec<String>,
) -> Option<(EfiChain, Option<&'a Arch>)> {
    let fat = match Fat::open(iso, esp.start_sector * 512, esp.sectors * 512) {
        Ok(fat) => fat,
        Err(e) => {
            problems.push(e.to_string());
            return None;
        }
    };
    let files = fat.files();
    let find = |path: &str| files.iter().find(|f| f.path.eq_ignore_ascii_case(path));
    let signed = |path: &str| {
        find(path).map(|f| match is_signed(&fat.read(f, 4096)) {
            true => "signed",
            false => "unsigned",
        })
    };
    let in_boot = |name: &str| format!("EFI/BOOT/{name}");
    let found = arches
        .iter()
        .find_map(|arch| Some((arch, signed(&in_boot(&arch.uefi.loader))?)));
    let chain = match found {
        Some((arch, first)) => {
            let loader = in_boot(&arch.uefi.loader);
            match signed(&in_boot(&arch.uefi.grub)) {
                Some(grub) => vec![
                    format!("shim {loader} ({first})"),
                    format!("GRUB {} ({grub})", in_boot(&arch.uefi.grub)),
                ],
                None => vec![format!("GRUB {loader} ({first})")],
            }
        }
        None => {
            let loaders: Vec<String> = arches.iter().map(|a| in_boot(&a.uefi.loader)).collect();
            problems.push(format!(
                "the EFI system partition has no {}",
                loaders.join(" or ")
            ));
            Vec::new()
        }
    };
    let grub_configs: Vec<String> = files
        .iter()
        .filter(|f| f.path.to_ascii_lowercase().ends_with("/grub.cfg"))
        .map(|f| f.path.clone())
        .collect();
    if !grub_configs
        .iter()
        .any(|c| c.eq_ignore_ascii_case("EFI/BOOT/grub.cfg"))
    {
        problems.push("the EFI system partition has no EFI/BOOT/grub.cfg".into());
    }
    if fat.label != ESP_LABEL {
        problems.push(format!(
            "the EFI system partition is labelled `{}`, not {ESP_LABEL}{}",
            fat.label,
            if fat.label == "COS_GRUB" {
                ": the Kairos agent would take it for an installed system's EFI partition"
            } else {
                ""
            }
        ));
    }
    let chain = EfiChain {
        label: fat.label.clone(),
        chain,
        grub_configs,
        files: files
            .iter()
            .map(|f| File {
                path: f.path.clone(),
                size: f.size,
                link: None,
            })
            .collect(),
    };
    Some((chain, found.map(|(arch, _)| arch)))
}

#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    pub size: u64,
    /// The target, when it is a symbolic link (shown as the link, never as what it points to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl File {
    fn of(entry: &Entry) -> File {
        File {
            path: entry.path.clone(),
            size: entry.size,
            link: entry.link.clone(),
        }
    }

    /// `path  size`, or `path -> target` for a link.
    fn line(&self) -> String {
        match &self.link {
            Some(target) => format!("{} -> {target}", self.path),
            None => format!("{:24} {}", self.path, crate::units::human(self.size)),
        }
    }
}

/// Whether forge writes `path` itself, on an ISO of any of `arches` (the rest of the tree came
/// from `overlays/files-iso/`).
fn forge_writes(path: &str, arches: &[Arch]) -> bool {
    let path_in_tree = path.trim_start_matches('/');
    let eltorito = arches.iter().filter_map(|a| a.bios.as_ref());
    RESERVED.contains(&path_in_tree)
        || eltorito.into_iter().any(|b| b.image == path_in_tree)
        || path_in_tree == MENU
        || [CLUSTER_CONFIG, EDGE_CUSTOM_CONFIG].contains(&path)
}

/// Read `iso`, an ISO of one of `arches`; compare its `/config.yaml` with `user_data` when
/// given.
pub fn inspect(iso: &Path, user_data: Option<&[u8]>, arches: &[Arch]) -> Result<Report, ReadError> {
    let mut image = Iso::open(iso)?;
    let file = |path: &str| image.get(path).filter(|e| !e.dir).map(File::of);
    let mut problems = Vec::new();
    let files: Vec<File> = [
        "/boot/kernel",
        "/boot/initrd",
        "/rootfs.squashfs",
        "/config.yaml",
        "/boot/grub2/grub.cfg",
    ]
    .iter()
    .filter_map(|p| {
        let found = file(p);
        match found.as_ref().map(|f| &f.link) {
            None => problems.push(format!("{p} is missing")),
            Some(Some(target)) => problems.push(format!(
                "{p} is a link to {target}, not the file forge writes"
            )),
            Some(None) => {}
        }
        found
    })
    .collect();
    let overlay_files = image
        .entries
        .iter()
        .filter(|e| {
            !e.dir
                && !forge_writes(&e.path, arches)
                && !e.path.starts_with(&format!("{CONTENT_DIR}/"))
        })
        .map(File::of)
        .collect();
    let content_bundles = image
        .entries
        .iter()
        .filter(|e| !e.dir && e.path.starts_with(&format!("{CONTENT_DIR}/")))
        .map(File::of)
        .collect();
    let config = image.read("/config.yaml", MAX_CONFIG_BYTES)?;
    let config_sha256 = config.as_ref().map(|c| hex::encode(Sha256::digest(c)));
    let config_matches = user_data.map(|u| config.as_deref() == Some(u));
    if config_matches == Some(false) {
        problems.push("/config.yaml differs from the given user-data".into());
    }
    let label_ok = image.label == LABEL;
    if !label_ok {
        problems.push(format!(
            "the volume label is `{}`, the live initrd looks for `{LABEL}`",
            image.label
        ));
    }
    let esp_partition = image.gpt.iter().chain(&image.mbr).find(|p| p.efi_system);
    let esp = esp_partition.is_some();
    let (efi, arch) = match esp_partition.and_then(|p| efi_chain(iso, p, arches, &mut problems)) {
        Some((chain, arch)) => (Some(chain), arch),
        None => (None, None),
    };
    // An ISO of an architecture without BIOS has no BIOS entry; any other needs one.
    let bios = arch.is_none_or(|a| a.bios.is_some());
    for platform in ["BIOS", "UEFI"] {
        let needed = platform == "UEFI" || bios;
        if needed && !image.boot.iter().any(|b| b.platform == platform) {
            problems.push(format!("no El Torito {platform} boot entry"));
        }
    }
    if !esp {
        problems.push("no EFI system partition in the GPT or MBR".into());
    }
    Ok(Report {
        iso: iso.display().to_string(),
        size: image.size,
        label: image.label.clone(),
        label_ok,
        el_torito: image.boot.clone(),
        mbr: image.mbr.clone(),
        mbr_boot_code: image.mbr_boot_code,
        gpt: image.gpt.clone(),
        esp,
        efi,
        files,
        overlay_files,
        content_bundles,
        config_sha256,
        config_matches,
        problems,
        config: config.map(|c| String::from_utf8_lossy(&c).into_owned()),
        arch: arch.map(|a| a.name.clone()),
    })
}

impl Report {
    pub fn render_text(&self) -> String {
        let human = crate::units::human;
        let mut out = vec![
            format!("ISO          {} ({})", self.iso, human(self.size)),
            format!(
                "label        {}{}",
                self.label,
                if self.label_ok {
                    ""
                } else {
                    "  (expected COS_LIVE)"
                }
            ),
        ];
        for b in &self.el_torito {
            out.push(format!(
                "El Torito    {:4}  emulation {}  {} sectors at {}{}",
                b.platform,
                b.emulation,
                b.load_sectors,
                b.lba,
                b.file
                    .as_deref()
                    .map(|f| format!("  {f}"))
                    .unwrap_or_else(|| "  (appended partition)".into())
            ));
        }
        out.push(format!(
            "MBR          {}{}",
            if self.mbr_boot_code {
                "boot code (hybrid)"
            } else {
                "no boot code"
            },
            self.mbr
                .iter()
                .map(|p| format!(", partition {} type {}", p.number, p.kind))
                .collect::<String>()
        ));
        for p in &self.gpt {
            out.push(format!(
                "GPT          partition {} {:12} {}{}",
                p.number,
                p.name,
                human(p.sectors * 512),
                if p.efi_system {
                    "  EFI system partition"
                } else {
                    ""
                }
            ));
        }
        if let Some(efi) = &self.efi {
            out.push(format!("ESP          label {}", efi.label));
            for (i, step) in efi.chain.iter().enumerate() {
                out.push(format!("EFI boot     {}. {step}", i + 1));
            }
            for config in &efi.grub_configs {
                out.push(format!("EFI config   {config}"));
            }
        }
        for (kind, files) in [
            ("file", &self.files),
            ("overlay", &self.overlay_files),
            ("content", &self.content_bundles),
        ] {
            for f in files {
                out.push(format!("{kind:12} {}", f.line()));
            }
        }
        if let Some(sha) = &self.config_sha256 {
            let verdict = match self.config_matches {
                Some(true) => "  (equals the user-data)",
                Some(false) => "  (DIFFERS from the user-data)",
                None => "",
            };
            out.push(format!("config.yaml  sha256 {sha}{verdict}"));
        }
        for p in &self.problems {
            out.push(format!("problem      {p}"));
        }
        out.join("\n") + "\n"
    }
}
