//! The installer ISO: the example's ISO boots under SeaBIOS (CD and disk) in QEMU and reports
//! the sha256 of the user-data it carries, and under OVMF (CD) with the checkout's CanvOS menu,
//! tty0 last, `forge verify` sees it reach its root from the serial console (GRUB's banner not
//! taken for it); Secure Boot refuses its unsigned GRUB; the ISO of an image with Debian's
//! signed shim and GRUB reaches its root under OVMF with Secure Boot enforced (CD) and reports
//! the user-data (disk), and says Secure Boot is on, its GRUB menu where the vendor's GRUB
//! reads it (Debian, Ubuntu); xorriso sees BIOS and UEFI
//! El Torito entries and a GPT EFI partition; the squashfs keeps capabilities, owners, hard
//! links and device nodes; two builds give the same bytes; content bundles are cut into
//! `_partNN` parts as CanvOS's `split` cuts them, which concatenate to the original; an image without a kernel is refused clearly;
//! Ctrl-C while mastering leaves nothing behind; prunes keep the cache entry a build uses, a
//! killed build's staging directory is removed by the next run, and an entry cut short is
//! reported and made again while prunes run.

use crate::support;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{containers, docker, forge_build, root, text};

tests! {
    the_example_iso_boots_from_cd_under_seabios => [Fixtures, Commands(TOOLS)],
    the_example_iso_boots_as_a_disk_under_seabios => [Fixtures, Commands(TOOLS)],
    the_example_iso_reaches_its_root_under_ovmf_with_canvos_menu_naming_tty0_last => [
        Fixtures,
        Commands(TOOLS),
    ],
    secure_boot_refuses_the_example_iso_whose_grub_forge_built_unsigned => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_secure_boot_iso_reaches_its_root_from_cd_under_ovmf_with_secure_boot_enforced => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_secure_boot_iso_boots_as_a_disk_under_ovmf_with_secure_boot_enforced_with_the_user_data => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_secure_boot_iso_has_the_signed_chain_and_the_menu_where_debians_grub_reads_it => [
        Fixtures,
        Commands(TOOLS),
    ],
    an_image_that_says_it_is_ubuntu_gets_the_menu_where_ubuntus_grub_reads_it => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_example_iso_has_bios_and_uefi_entries_a_gpt_esp_and_its_checksum => [
        Fixtures,
        Commands(TOOLS),
    ],
    inspect_reads_the_layout_and_compares_the_user_data_with_secrets_masked => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_squashfs_keeps_capabilities_owners_links_and_devices_and_bundles_are_split => [
        Fixtures,
        Commands(TOOLS),
    ],
    the_iso_pushed_as_an_image_pulls_back_with_skopeo_to_the_same_bytes => [
        Fixtures,
        Commands(TOOLS),
        Commands(&["skopeo", "docker-registry", "htpasswd"]),
    ],
    the_same_inputs_and_source_date_epoch_give_the_same_iso => [Fixtures, Commands(TOOLS)],
    an_image_without_a_kernel_is_refused_naming_the_image_and_the_paths => [
        Fixtures,
        Commands(TOOLS),
    ],
    ctrl_c_while_mastering_leaves_no_container_staging_or_iso => [Fixtures, Commands(TOOLS)],
    prunes_keep_the_entry_a_build_uses_and_a_damaged_entry_is_made_again_while_prunes_run => [
        Fixtures,
        Commands(TOOLS),
    ],
    three_sites_give_three_isos_each_the_same_as_a_cold_build_of_its_own_user_data => [
        Fixtures,
        Commands(TOOLS),
    ],
    a_site_whose_file_stem_is_no_iso_name_is_refused_before_anything_is_built,
    two_user_data_files_with_one_stem_are_refused_before_anything_is_built,
}

/// ISO builds share the engine and the images they tag: one at a time.
static ENGINE: Mutex<()> = Mutex::new(());
/// The epoch every build here uses, so that builds can be compared byte for byte.
const EPOCH: &str = "1700000000";
/// Host tools mastering needs when `--iso-tools host` is used, and the test's checkers.
const TOOLS: &[&str] = &[
    "xorriso",
    "sqfstar",
    "unsquashfs",
    "getcap",
    "grub-mkimage",
    "mkfs.vfat",
    "mcopy",
    "qemu-system-x86_64",
];

fn forge(args: &[&str]) -> Output {
    support::forge_command()
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The example's ISO, mastered once (builder container) for every test that reads it.
fn example_iso() -> &'static Path {
    static ISO: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    ISO.get_or_init(|| {
        let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let before = containers();
        let out = forge_build(&["--output", dir.path().to_str().unwrap()])
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(containers(), before, "a container was left behind");
        let iso = dir.path().join("palette-edge-installer.iso");
        (dir, iso)
    })
    .1
    .as_path()
}

fn xorriso_report(iso: &Path) -> String {
    let out = Command::new("xorriso")
        .args([
            "-indev",
            iso.to_str().unwrap(),
            "-report_el_torito",
            "plain",
            "-report_system_area",
            "plain",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// `--expect` of the fixture's report of the example user-data's sha256.
fn user_data_reported() -> [String; 2] {
    let expected = sha256_hex(&support::example().join("user-data"));
    [
        "--expect".into(),
        format!("forge-fixture: config.yaml sha256 {expected}"),
    ]
}

/// `forge verify` of `iso` as `extra` says (by default until the system reached its root);
/// returns what it printed and the boot's console log.
fn boot(iso: &Path, extra: &[&str], log_name: &str) -> Booted {
    let logs = tempfile::tempdir().unwrap();
    let mut args = vec![
        "verify".to_string(),
        iso.to_str().unwrap().to_string(),
        "--timeout".into(),
        "600".into(),
        "--log".into(),
        logs.path().to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(root())
        .args(&args)
        .output()
        .unwrap();
    let log = std::fs::read(logs.path().join(format!("{log_name}.log")))
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    Booted { out, log }
}

/// What `forge verify` printed, and the console of its boot.
struct Booted {
    out: Output,
    log: String,
}

/// Boot the example ISO and expect the fixture's report of the user-data's sha256.
fn boots(firmware: &str, media: &str) {
    let iso = example_iso();
    let [expect, report] = user_data_reported();
    let run = boot(
        iso,
        &["--firmware", firmware, "--media", media, &expect, &report],
        &format!("{firmware}-{media}"),
    );
    assert!(run.out.status.success(), "{}", text(&run.out));
    assert!(
        run.log.contains("forge-fixture: reached the squashfs root"),
        "{}",
        run.log
    );
}

fn the_example_iso_boots_from_cd_under_seabios() {
    boots("bios", "cdrom");
}

fn the_example_iso_boots_as_a_disk_under_seabios() {
    boots("bios", "disk");
}

/// The line that passed a boot of `forge verify --format json`.
fn evidence(run: &Booted) -> String {
    let report: Value = serde_json::from_slice(&run.out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&run.out)));
    report["boots"][0]["evidence"]
        .as_str()
        .unwrap_or_else(|| panic!("no evidence: {report:#}"))
        .to_string()
}

fn the_example_iso_reaches_its_root_under_ovmf_with_canvos_menu_naming_tty0_last() {
    let iso = example_iso();
    let run = boot(
        iso,
        &["--firmware", "uefi", "--media", "cdrom", "--format", "json"],
        "uefi-cdrom",
    );
    assert!(run.out.status.success(), "{}\n{}", text(&run.out), run.log);
    // The checkout's menu (CanvOS's UEFI consoles): systemd writes its welcome to tty0, and
    // GRUB's banner, the first welcome on the serial console, is not taken for the root.
    for line in [
        "Welcome to GRUB!",
        "Command line: BOOT_IMAGE=(cd0)/boot/kernel cdroot root=live:CDLABEL=COS_LIVE",
        " console=ttyS0,115200n8 console=tty0 ",
        "systemd[1]: Running in initrd.",
    ] {
        assert!(run.log.contains(line), "no `{line}` in\n{}", run.log);
    }
    assert!(!run.log.contains("Welcome to Debian"), "{}", run.log);
    let evidence = evidence(&run);
    assert!(
        evidence.ends_with("systemd[1]: initrd-switch-root.service: Deactivated successfully."),
        "{evidence}"
    );
}

fn secure_boot_refuses_the_example_iso_whose_grub_forge_built_unsigned() {
    let iso = example_iso();
    let run = boot(
        iso,
        &["--secure-boot", "--media", "cdrom"],
        "uefi-secureboot-cdrom",
    );
    assert_eq!(run.out.status.code(), Some(1), "{}", text(&run.out));
    assert!(
        text(&run.out).contains("Secure Boot refused the ISO's EFI loader (`Access Denied`)"),
        "{}",
        text(&run.out)
    );
}

/// The ISO of the Secure Boot fixture (Debian's signed shim, GRUB and kernel), mastered once.
fn secure_boot_iso() -> &'static Path {
    static ISO: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    ISO.get_or_init(|| {
        let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let out = build_on(
            support::SECUREBOOT_FIXTURE,
            dir.path(),
            &dir.path().join("out"),
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        let iso = dir.path().join("out/palette-edge-installer.iso");
        (dir, iso)
    })
    .1
    .as_path()
}

fn the_secure_boot_iso_reaches_its_root_from_cd_under_ovmf_with_secure_boot_enforced() {
    let iso = secure_boot_iso();
    let run = boot(
        iso,
        &["--secure-boot", "--media", "cdrom", "--format", "json"],
        "uefi-secureboot-cdrom",
    );
    assert!(run.out.status.success(), "{}\n{}", text(&run.out), run.log);
    // Debian's signed GRUB says its banner on the serial console seconds into the boot; forge's
    // menu names tty0 last too.
    for line in [
        "Welcome to GRUB!",
        " console=ttyS0,115200n8 console=tty0 ",
        "Secure boot enabled",
    ] {
        assert!(run.log.contains(line), "no `{line}` in\n{}", run.log);
    }
    assert!(!run.log.contains("Welcome to Debian"), "{}", run.log);
    let evidence = evidence(&run);
    assert!(
        evidence.ends_with("systemd[1]: initrd-switch-root.service: Deactivated successfully."),
        "{evidence}"
    );
}

fn the_secure_boot_iso_boots_as_a_disk_under_ovmf_with_secure_boot_enforced_with_the_user_data() {
    let iso = secure_boot_iso();
    let [expect, report] = user_data_reported();
    let run = boot(
        iso,
        &["--secure-boot", "--media", "disk", &expect, &report],
        "uefi-secureboot-disk",
    );
    assert!(run.out.status.success(), "{}", text(&run.out));
    for line in [
        "Secure boot enabled",
        "forge-fixture: reached the squashfs root",
        "forge-fixture: secure boot enabled",
    ] {
        assert!(run.log.contains(line), "no `{line}` in\n{}", run.log);
    }
}

fn the_secure_boot_iso_has_the_signed_chain_and_the_menu_where_debians_grub_reads_it() {
    let iso = secure_boot_iso();
    let esp = esp(iso);
    assert_eq!(esp.label(), "EFI_LIVE");
    assert_eq!(
        esp.files(),
        [
            "EFI/BOOT/bootx64.efi",
            "EFI/BOOT/grub.cfg",
            "EFI/BOOT/grubx64.efi",
            "EFI/debian/grub.cfg"
        ]
    );
    let out = forge(&["inspect", iso.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["efi"]["chain"],
        serde_json::json!([
            "shim EFI/BOOT/bootx64.efi (signed)",
            "GRUB EFI/BOOT/grubx64.efi (signed)"
        ])
    );
    let entry = iso_entry(&iso.with_file_name("manifest.json"));
    // The CD variant of Debian's signed GRUB, as AuroraBoot takes it.
    assert_eq!(
        entry["inputs"]["efi_loader"],
        serde_json::json!([
            "image: /usr/lib/shim/shimx64.efi.signed",
            "image: /usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed"
        ])
    );
}

fn an_image_that_says_it_is_ubuntu_gets_the_menu_where_ubuntus_grub_reads_it() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    // Small: the Debian base with the fixture's boot files and signed binaries, and an
    // os-release saying Ubuntu.
    let image = "forge-test/iso-ubuntu-efi:1";
    let dockerfile = format!(
        "FROM {sb} AS chain\nFROM forge-fixtures/debian:bookworm\nCOPY --from=chain /boot /boot\n\
         COPY --from=chain /usr/lib/shim /usr/lib/shim\n\
         COPY --from=chain /usr/lib/grub/x86_64-efi-signed /usr/lib/grub/x86_64-efi-signed\n\
         RUN rm /etc/os-release && printf 'NAME=Ubuntu\\nID=ubuntu\\nVERSION_ID=\"22.04\"\\n' > /etc/os-release\n",
        sb = support::SECUREBOOT_FIXTURE
    );
    let context = work.path().join("image");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    let out = docker(&["build", "-q", "-t", image, context.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = build_on(image, work.path(), &work.path().join("out"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let esp = esp(&work.path().join("out/palette-edge-installer.iso"));
    assert_eq!(
        esp.files(),
        [
            "EFI/BOOT/bootx64.efi",
            "EFI/BOOT/grub.cfg",
            "EFI/BOOT/grubx64.efi",
            "EFI/ubuntu/grub.cfg"
        ]
    );
}

fn the_example_iso_has_bios_and_uefi_entries_a_gpt_esp_and_its_checksum() {
    let iso = example_iso();
    let report = xorriso_report(iso);
    assert!(report.contains("Volume id    : 'COS_LIVE'"), "{report}");
    let el_torito: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert!(
        el_torito
            .iter()
            .any(|l| l.contains("BIOS") && l.contains("none")),
        "{report}"
    );
    assert!(
        el_torito
            .iter()
            .any(|l| l.contains("UEFI") && l.contains("none")),
        "{report}"
    );
    assert!(
        report.contains("El Torito img path :   1  /boot/grub/i386-pc/eltorito.img"),
        "{report}"
    );
    assert!(
        report.contains("grub2-mbr") && report.contains("GPT"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("MBR partition      :") && l.contains(" 0x80 ")),
        "no MBR partition is marked bootable (mbr_force_bootable):\n{report}"
    );
    let esp_type = "28732ac11ff8d211ba4b00a0c93ec93b";
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("GPT type GUID      :   2") && l.contains(esp_type)),
        "partition 2 is not an EFI system partition:\n{report}"
    );

    assert_eq!(
        std::fs::metadata(iso).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sums = std::fs::read_to_string(iso.with_extension("iso.sha256")).unwrap();
    assert_eq!(
        sums,
        format!("{}  palette-edge-installer.iso\n", sha256_hex(iso))
    );
    let entry = iso_entry(&iso.with_file_name("manifest.json"));
    assert_eq!(entry["sha256"], sha256_hex(iso));
    assert_eq!(entry["inputs"]["efi_loader"][0], "grub-mkimage");

    // The ESP is EFI_LIVE (COS_GRUB names the installed system's EFI partition).
    let esp = esp(iso);
    assert_eq!(esp.label(), "EFI_LIVE");
    assert_eq!(esp.files(), ["EFI/BOOT/bootx64.efi", "EFI/BOOT/grub.cfg"]);

    // The checkout's own menu, its default entry set to the installer.
    let dir = tempfile::tempdir().unwrap();
    extract(iso, "/boot/grub2/grub.cfg", &dir.path().join("menu"));
    let own =
        std::fs::read_to_string(support::example().join("overlay/files-iso/boot/grub2/grub.cfg"))
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("menu")).unwrap(),
        own.replace("{{DEFAULT_ENTRY}}", "0")
    );
}

/// The ISO's entry in the manifest.json at `manifest`.
fn iso_entry(manifest: &Path) -> Value {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "iso")
        .cloned()
        .unwrap()
}

/// The EFI system partition of an ISO (GPT partition 2), read with mtools.
struct Esp(String);

fn esp(iso: &Path) -> Esp {
    let report = xorriso_report(iso);
    let start: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("GPT start and size :   2  "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a GPT partition 2")
        .parse()
        .unwrap();
    Esp(format!("{}@@{}", iso.display(), start * 512))
}

impl Esp {
    fn mtools(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .args(["-i", &self.0])
            .arg("::")
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn label(&self) -> String {
        let out = self.mtools("mlabel", &["-s"]);
        out.trim()
            .trim_start_matches("Volume label is")
            .trim()
            .to_string()
    }

    /// Every file, as `EFI/BOOT/name`, sorted.
    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .mtools("mdir", &["-/", "-b"])
            .lines()
            .filter(|l| !l.ends_with('/'))
            .map(|l| l.trim_start_matches("::/").to_string())
            .collect();
        files.sort();
        files
    }
}

fn inspect_reads_the_layout_and_compares_the_user_data_with_secrets_masked() {
    let iso = example_iso();
    let out = forge(&[
        "inspect",
        iso.to_str().unwrap(),
        "--user-data",
        "examples/canvos/user-data",
        "--show-config",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["label"], "COS_LIVE");
    assert_eq!(report["config_matches"], true);
    assert_eq!(report["efi"]["label"], "EFI_LIVE");
    assert_eq!(
        report["efi"]["chain"],
        serde_json::json!(["GRUB EFI/BOOT/bootx64.efi (unsigned)"])
    );
    assert_eq!(
        report["efi"]["grub_configs"],
        serde_json::json!(["EFI/BOOT/grub.cfg"])
    );
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(
        report["config_sha256"],
        sha256_hex(&support::example().join("user-data"))
    );
    assert_eq!(report["esp"], true);
    let files: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/boot/kernel",
            "/boot/initrd",
            "/rootfs.squashfs",
            "/config.yaml",
            "/boot/grub2/grub.cfg"
        ]
    );
    let config = report["config"].as_str().unwrap();
    assert!(config.contains("password: ****\n"), "{config}");
    let example = std::fs::read_to_string(support::example().join("user-data")).unwrap();
    let password = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap()
        .trim_matches('"');
    assert!(!text(&out).contains(password), "the password was printed");

    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), "#cloud-config\nstylus: {}\n").unwrap();
    let out = forge(&[
        "inspect",
        iso.to_str().unwrap(),
        "--user-data",
        other.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("DIFFERS from the user-data"),
        "{}",
        text(&out)
    );
}

/// A PAX header giving the next entry the extended attribute `key`.
fn pax_xattr(tar: &mut tar::Builder<impl std::io::Write>, key: &str, value: &[u8]) {
    let body = |len: usize| {
        [
            format!("{len} SCHILY.xattr.{key}=").into_bytes(),
            value.to_vec(),
            b"\n".to_vec(),
        ]
        .concat()
    };
    let mut len = body(0).len();
    while body(len).len() != len {
        len = body(len).len();
    }
    let record = body(len);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(record.len() as u64);
    tar.append_data(&mut header, "PaxHeader", record.as_slice())
        .unwrap();
}

/// An installer base image with the metadata the squashfs must keep: a file with
/// `cap_net_raw+ep`, a file owned by 1234:1234 and its hard link, a device node, a symlink;
/// and a stand-in kernel and initrd (this image is mastered, not booted).
fn metadata_image(dir: &Path) -> &'static str {
    let tag = "forge-test/iso-metadata:1";
    let mut tar = tar::Builder::new(std::fs::File::create(dir.join("layer.tar")).unwrap());
    let mut add =
        |path: &str, kind: tar::EntryType, owner: u64, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_uid(owner);
            header.set_gid(owner);
            header.set_mtime(1_600_000_000);
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            if kind == tar::EntryType::Char {
                header.set_device_major(1).unwrap();
                header.set_device_minor(3).unwrap();
            }
            tar.append_data(&mut header, path, data).unwrap();
        };
    add("opt/meta/", tar::EntryType::Directory, 0, b"", None);
    add(
        "opt/meta/owned",
        tar::EntryType::Regular,
        1234,
        b"owned\n",
        None,
    );
    add(
        "opt/meta/hardlink",
        tar::EntryType::Link,
        1234,
        b"",
        Some("opt/meta/owned"),
    );
    add("opt/meta/null", tar::EntryType::Char, 0, b"", None);
    add(
        "opt/meta/symlink",
        tar::EntryType::Symlink,
        0,
        b"",
        Some("owned"),
    );
    add("boot/", tar::EntryType::Directory, 0, b"", None);
    add(
        "boot/vmlinuz-0-test",
        tar::EntryType::Regular,
        0,
        b"stand-in kernel\n",
        None,
    );
    add(
        "boot/initrd.img-0-test",
        tar::EntryType::Regular,
        0,
        b"stand-in initrd\n",
        None,
    );
    // VFS capability v2: effective, permitted CAP_NET_RAW (13).
    let cap = [
        &0x0200_0001u32.to_le_bytes()[..],
        &(1u32 << 13).to_le_bytes(),
        &[0; 12],
    ]
    .concat();
    pax_xattr(&mut tar, "security.capability", &cap);
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o755);
    header.set_size(4);
    header.set_mtime(1_600_000_000);
    tar.append_data(&mut header, "opt/meta/capped", &b"cap\n"[..])
        .unwrap();
    tar.into_inner().unwrap().flush().unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM forge-fixtures/debian:bookworm\nADD layer.tar /\n",
    )
    .unwrap();
    let out = docker(&["build", "-q", "-t", tag, dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    tag
}

/// `forge build` of the example's settings on `base` as it is (templates that leave the user
/// steps and the base image's preparation out: these images are no Kairos system), ISO
/// mastered with the host's tools into `out`, with `work` as the checkout (its content bundles
/// and overlays).
fn build_on(base: &str, work: &Path, out: &Path, extra: &[&str]) -> Output {
    build_on_cmd(base, work, out, extra).output().unwrap()
}

/// The command [`build_on`] runs.
fn build_on_cmd(base: &str, work: &Path, out: &Path, extra: &[&str]) -> Command {
    let user_data = support::example().join("user-data");
    let mut cmd = build_sites_cmd(base, work, out, &[user_data.to_str().unwrap()]);
    cmd.args(extra);
    cmd
}

/// [`build_on_cmd`] with these `--user-data` arguments.
fn build_sites_cmd(base: &str, work: &Path, out: &Path, user_data: &[&str]) -> Command {
    let arg = support::example().join(".arg");
    let templates = work.join("templates");
    std::fs::create_dir_all(templates.join("images")).unwrap();
    std::fs::write(
        templates.join("images/os.Dockerfile"),
        "ARG BASE\nFROM $BASE\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("images/base.Dockerfile"),
        "FROM {{ os_tag }}\n",
    )
    .unwrap();
    let mut cmd = support::forge_command();
    cmd.current_dir(work)
        .args(["build", "--arg", arg.to_str().unwrap(), "--checkout", "."])
        .args(user_data.iter().flat_map(|u| ["--user-data", u]))
        .args(["--templates", templates.to_str().unwrap()])
        .args([
            "--progress",
            "plain",
            "--iso-tools",
            "host",
            "--output",
            out.to_str().unwrap(),
        ])
        .args(["--set", &format!("BASE_IMAGE={base}")])
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

fn extract(iso: &Path, path: &str, to: &Path) {
    let out = Command::new("xorriso")
        .args([
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            path,
            to.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn the_squashfs_keeps_capabilities_owners_links_and_devices_and_bundles_are_split() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let image = metadata_image(work.path());
    // A 7 MB content bundle (2⅓ parts of 3 MB) and a small one, an overlay file, a cluster
    // config.
    let bundle: Vec<u8> = (0..7_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(work.path().join("content-demo")).unwrap();
    std::fs::write(work.path().join("content-demo/core.zst"), &bundle).unwrap();
    std::fs::create_dir_all(work.path().join("content-apps")).unwrap();
    std::fs::write(work.path().join("content-apps/apps.zst"), b"small bundle").unwrap();
    std::fs::create_dir_all(work.path().join("overlays/files-iso/extra")).unwrap();
    std::fs::write(
        work.path().join("overlays/files-iso/extra/hello.txt"),
        "hello\n",
    )
    .unwrap();
    // A link inside the overlay stays a link, as Docker's COPY keeps one.
    std::os::unix::fs::symlink("hello.txt", work.path().join("overlays/files-iso/extra/hi"))
        .unwrap();
    std::fs::write(work.path().join("spc.tgz"), "cluster definition").unwrap();
    let out_dir = work.path().join("out");
    let out = build_on(
        image,
        work.path(),
        &out_dir,
        &[
            "--set",
            "CONTENT_PART_SIZE=3MB",
            "--set",
            &format!("CLUSTERCONFIG={}", work.path().join("spc.tgz").display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let iso = out_dir.join("palette-edge-installer.iso");

    extract(
        &iso,
        "/rootfs.squashfs",
        &work.path().join("rootfs.squashfs"),
    );
    let listing = Command::new("unsquashfs")
        .args([
            "-lln",
            work.path().join("rootfs.squashfs").to_str().unwrap(),
            "opt/meta",
        ])
        .output()
        .unwrap();
    let listing = text(&listing);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| {
                l.ends_with(&format!("/opt/meta/{name}"))
                    || l.contains(&format!("/opt/meta/{name} ->"))
            })
            .unwrap_or_else(|| panic!("{name} missing:\n{listing}"))
            .to_string()
    };
    assert!(
        line("owned").starts_with("-rw-r--r-- 1234/1234"),
        "{listing}"
    );
    assert!(
        line("hardlink").starts_with("-rw-r--r-- 1234/1234"),
        "{listing}"
    );
    assert!(
        line("null").starts_with("crw-r--r-- 0/0") && line("null").contains("1,  3"),
        "{listing}"
    );
    assert!(line("symlink").contains("-> owned"), "{listing}");
    assert!(!listing.contains(".dockerenv"));
    let unpacked = work.path().join("unpacked");
    let out = Command::new("unsquashfs")
        .args([
            "-q",
            "-d",
            unpacked.to_str().unwrap(),
            work.path().join("rootfs.squashfs").to_str().unwrap(),
            "opt/meta",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let caps = Command::new("getcap")
        .arg(unpacked.join("opt/meta/capped"))
        .output()
        .unwrap();
    assert!(text(&caps).contains("cap_net_raw=ep"), "{}", text(&caps));
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(unpacked.join("opt/meta/owned"))
            .unwrap()
            .ino(),
        std::fs::metadata(unpacked.join("opt/meta/hardlink"))
            .unwrap()
            .ino(),
        "the hard link became a copy"
    );

    let report: Value = serde_json::from_slice(
        &forge(&["inspect", iso.to_str().unwrap(), "--format", "json"]).stdout,
    )
    .unwrap();
    let paths = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    };
    // As `split --bytes=3MB --numeric-suffixes` cuts them.
    let mut bundles = paths("content_bundles");
    bundles.sort();
    assert_eq!(
        bundles,
        [
            "/opt/spectrocloud/content/apps.zst_part00",
            "/opt/spectrocloud/content/core.zst_part00",
            "/opt/spectrocloud/content/core.zst_part01",
            "/opt/spectrocloud/content/core.zst_part02"
        ]
    );
    assert_eq!(paths("overlay_files"), ["/extra/hello.txt", "/extra/hi"]);
    let extra = Command::new("xorriso")
        .args(["-indev", iso.to_str().unwrap(), "-lsl", "/extra"])
        .output()
        .unwrap();
    assert!(
        text(&extra).contains("'hi' -> 'hello.txt'"),
        "the link is a link on the ISO:\n{}",
        text(&extra)
    );
    let mut joined = Vec::new();
    for (i, size) in [3_000_000, 3_000_000, 1_000_000].into_iter().enumerate() {
        let part = work.path().join(format!("part-{i}"));
        extract(
            &iso,
            &format!("/opt/spectrocloud/content/core.zst_part{i:02}"),
            &part,
        );
        let data = std::fs::read(&part).unwrap();
        assert_eq!(data.len(), size, "part {i}");
        joined.extend(data);
    }
    assert!(
        joined == bundle,
        "the parts do not concatenate to the bundle"
    );
    extract(
        &iso,
        "/opt/spectrocloud/content/apps.zst_part00",
        &work.path().join("apps.out"),
    );
    assert_eq!(
        std::fs::read(work.path().join("apps.out")).unwrap(),
        b"small bundle"
    );
    extract(
        &iso,
        "/opt/spectrocloud/clusterconfig/spc.tgz",
        &work.path().join("spc.out"),
    );
    assert_eq!(
        std::fs::read(work.path().join("spc.out")).unwrap(),
        b"cluster definition"
    );
}

fn the_iso_pushed_as_an_image_pulls_back_with_skopeo_to_the_same_bytes() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let image = metadata_image(work.path());
    // A TLS registry with htpasswd authentication; the Docker config holds the credentials.
    let pki = support::Pki::generate();
    let registry = support::Registry::start(Some(&pki), true);
    let host = registry.host();
    let config = work.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        support::auth_file(std::slice::from_ref(&host)),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let out_dir = work.path().join("out");
    let out = build_on_cmd(
        image,
        work.path(),
        &out_dir,
        &[
            "--set",
            &format!("IMAGE_REGISTRY={host}/edge"),
            "--push-iso",
            "--registry-ca",
            ca.to_str().unwrap(),
        ],
    )
    .env("DOCKER_CONFIG", &config)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(support::PASSWORD));
    let iso = out_dir.join("palette-edge-installer.iso");

    // CanvOS's tag: IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION-CUSTOM_TAG.
    let reference = format!("{host}/edge/ubuntu/palette-edge-installer:v4.9.38-demo");
    let skopeo = support::Skopeo::new(Some(&pki.ca_pem), std::slice::from_ref(&host));
    let digest = skopeo
        .digest(&reference, true)
        .expect("the ISO image was pushed");
    let entry = iso_entry(&out_dir.join("manifest.json"));
    assert_eq!(entry["reference"], reference.as_str());
    assert_eq!(entry["digest"], digest.as_str());

    // Pulled back by another client: one layer, /disk/<name>.iso, the same bytes.
    let pulled = work.path().join("pulled");
    skopeo.pull_to_dir(&reference, &pulled);
    let image_manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("manifest.json")).unwrap())
            .unwrap();
    let layers = image_manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = layers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut archive = tar::Archive::new(std::fs::File::open(pulled.join(layer)).unwrap());
    let unpacked = work.path().join("unpacked");
    archive.unpack(&unpacked).unwrap();
    assert_eq!(
        sha256_hex(&unpacked.join("disk/palette-edge-installer.iso")),
        sha256_hex(&iso)
    );

    // `forge iso push` makes the same image of the same ISO.
    let again = format!("{host}/edge/installers:site-a");
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["iso", "push", iso.to_str().unwrap(), &again])
        .args(["--registry-ca", ca.to_str().unwrap(), "--format", "json"])
        .env("DOCKER_CONFIG", &config)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["digest"], digest.as_str());
    assert_eq!(skopeo.digest(&again, true), Some(digest));
}

fn the_same_inputs_and_source_date_epoch_give_the_same_iso() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let image = metadata_image(work.path());
    // The checkout's own menu, with the interactive installer as the default entry.
    let menu = work.path().join("overlay/files-iso/boot/grub2");
    std::fs::create_dir_all(&menu).unwrap();
    std::fs::copy(
        support::example().join("overlay/files-iso/boot/grub2/grub.cfg"),
        menu.join("grub.cfg"),
    )
    .unwrap();
    let interactive = [
        "--set",
        "FORCE_INTERACTIVE_INSTALL=true",
        "--set",
        "DEBUG=true",
    ];
    let first = build_on(image, work.path(), &work.path().join("one"), &interactive);
    assert!(first.status.success(), "{}", text(&first));
    // Later, elsewhere: other output directory, files touched again.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = build_on(image, work.path(), &work.path().join("two"), &interactive);
    assert!(second.status.success(), "{}", text(&second));
    let (one, two) = (
        work.path().join("one/palette-edge-installer.iso"),
        work.path().join("two/palette-edge-installer.iso"),
    );
    assert_eq!(sha256_hex(&one), sha256_hex(&two), "the ISOs differ");
    extract(&one, "/boot/grub2/grub.cfg", &work.path().join("menu"));
    let menu = std::fs::read_to_string(work.path().join("menu")).unwrap();
    assert!(menu.contains("\nset default=2\n"), "{menu}");
    let installer_lines: Vec<&str> = menu
        .lines()
        .filter(|l| l.contains("rd.immucore.sysrootwait"))
        .collect();
    assert_eq!(installer_lines.len(), 3, "{menu}");
    for line in installer_lines {
        assert!(
            line.ends_with(" rd.immucore.debug console=tty0 rd.debug"),
            "{line}"
        );
    }
}

fn an_image_without_a_kernel_is_refused_naming_the_image_and_the_paths() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let before = containers();
    let out = build_on(
        "forge-fixtures/debian:bookworm",
        work.path(),
        &work.path().join("out"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("the installer image forge.local/palette-edge-installer:"),
        "{message}"
    );
    assert!(
        message.contains("has no kernel: nothing matches /boot/vmlinuz*"),
        "{message}"
    );
    assert_eq!(containers(), before, "a container was left behind");
    let left: Vec<_> = std::fs::read_dir(work.path().join("out"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "outputs left behind: {left:?}");
}

fn ctrl_c_while_mastering_leaves_no_container_staging_or_iso() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let staging = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".forge-run-"))
            .count()
    };
    let (before, staged_before) = (containers(), staging());
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let (mut child, stderr) = support::spawn_until(
        &mut forge_build(&["--output", out_dir.to_str().unwrap()]),
        |line| line.contains("iso: mastering"),
    );
    // Mastering has begun: wait for its containers, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, rest) = support::interrupt(&mut child, stderr);
    assert_eq!(status.code(), Some(130), "{rest}");
    assert_eq!(
        containers(),
        before,
        "a container was left behind after Ctrl-C"
    );
    assert_eq!(staging(), staged_before, "staging files were left behind");
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "outputs left behind: {left:?}");
}

/// The example's user-data for another site: its own name and registration token.
fn site_user_data(dir: &Path, site: &str) -> PathBuf {
    let text = std::fs::read_to_string(support::example().join("user-data"))
        .unwrap()
        .replace("edge-store-042", &format!("edge-{site}"))
        .replace(
            "ExampleToken0123456789abcdefXYZ",
            &format!("Token{site}0123456789abcdefXYZ"),
        );
    let path = dir.join(format!("{site}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `forge iso` of `image` in the checkout `work`, one ISO per user-data into `out`.
fn forge_iso(
    work: &Path,
    image: &str,
    user_data: &[&Path],
    out: &Path,
    cache: &Path,
    extra: &[&str],
) -> Output {
    forge_iso_cmd(work, image, user_data, out, cache, extra)
        .output()
        .unwrap()
}

/// The command [`forge_iso`] runs.
fn forge_iso_cmd(
    work: &Path,
    image: &str,
    user_data: &[&Path],
    out: &Path,
    cache: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = support::forge_command();
    cmd.current_dir(work)
        .args(["iso", "--image", image, "--arg"])
        .arg(support::example().join(".arg"))
        .args(["--checkout", ".", "--progress", "plain"])
        .args(user_data.iter().flat_map(|u| [Path::new("--user-data"), u]))
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

/// `forge cache prune --format json` of `cache`, started.
fn start_prune(cache: &Path) -> std::process::Child {
    support::forge_command()
        .args(["cache", "prune", "--format", "json", "--cache-dir"])
        .arg(cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a prune started by [`start_prune`] printed; it must have succeeded.
fn pruned(prune: std::process::Child) -> Value {
    let out = prune.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The mastering cache under real processes: prunes at once while a build holds its entry,
/// a build killed while it makes one, and an entry cut short made again while prunes run.
fn prunes_keep_the_entry_a_build_uses_and_a_damaged_entry_is_made_again_while_prunes_run() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let outs = tempfile::tempdir().unwrap();
    let image = metadata_image(work.path());
    let cache = outs.path().join("cache");
    let user_data = support::example().join("user-data");
    let iso = |out: &str| {
        forge_iso_cmd(
            work.path(),
            image,
            &[&user_data],
            &outs.path().join(out),
            &cache,
            &["--iso-tools", "host"],
        )
    };
    let made = iso("cold").output().unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let expected = sha256_hex(&outs.path().join("cold/palette-edge-installer.iso"));
    let keys: Vec<String> = std::fs::read_dir(cache.join("iso"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let [key] = &keys[..] else { panic!("{keys:?}") };

    // A build that took the entry, stopped there; three prunes at once leave it.
    let (mut build, stderr) =
        support::spawn_until(&mut iso("warm"), |line| line.contains("from the cache"));
    support::send(&build, "STOP");
    let prunes: Vec<_> = (0..3).map(|_| start_prune(&cache)).collect();
    for doc in prunes.into_iter().map(pruned) {
        assert_eq!(doc["busy"], serde_json::json!([key]), "{doc}");
        assert_eq!(doc["removed"], serde_json::json!([]), "{doc}");
    }
    support::send(&build, "CONT");
    let rest: String = stderr.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    assert!(build.wait().unwrap().success(), "{rest}");
    assert_eq!(
        sha256_hex(&outs.path().join("warm/palette-edge-installer.iso")),
        expected
    );

    // A build killed while it makes an entry (of another epoch, so another key) leaves its
    // staging directory, which the next run removes.
    let staging = || {
        std::fs::read_dir(cache.join("iso"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(".staging-")
            })
            .count()
    };
    let (mut killed, stderr) = support::spawn_until(
        iso("killed").env("SOURCE_DATE_EPOCH", "1700000001"),
        |line| line.contains("mastering"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while staging() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, rest) = support::stop(&mut killed, "KILL", stderr);
    assert!(!status.success(), "{rest}");
    assert_eq!(staging(), 1, "the killed build's staging directory");

    // The entry's squashfs cut short: the next build says so and makes it again, with prunes
    // running all along.
    let squashfs = cache.join("iso").join(key).join("rootfs.squashfs");
    let recorded = std::fs::metadata(&squashfs).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&squashfs)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let reported = std::cell::RefCell::new(String::new());
    let (mut build, stderr) = support::spawn_until(&mut iso("again"), |line| {
        let found = line.contains("the parts are made again");
        if found {
            *reported.borrow_mut() = line.to_string();
        }
        found
    });
    let drain =
        std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let mut prunes = 0;
    while build.try_wait().unwrap().is_none() {
        pruned(start_prune(&cache));
        prunes += 1;
    }
    let rest = drain.join().unwrap();
    assert!(build.wait().unwrap().success(), "{rest}");
    let said = format!(
        "iso: the cache entry {} has a rootfs.squashfs of 4096 bytes, not the {recorded} its \
         meta.json records: removed; the parts are made again",
        cache.join("iso").join(key).display()
    );
    assert!(reported.borrow().ends_with(&said), "{}", reported.borrow());
    assert!(prunes > 0, "no prune ran while the build ran");
    assert_eq!(staging(), 0, "a staging directory is left");
    assert_eq!(
        sha256_hex(&outs.path().join("again/palette-edge-installer.iso")),
        expected
    );
}

fn three_sites_give_three_isos_each_the_same_as_a_cold_build_of_its_own_user_data() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    // Outputs and caches outside the checkout (`work`), whose files are a build context.
    let outs = tempfile::tempdir().unwrap();
    let image = metadata_image(work.path());
    let sites = work.path().join("sites");
    std::fs::create_dir(&sites).unwrap();
    let files: Vec<PathBuf> = ["north", "south", "west"]
        .iter()
        .map(|site| site_user_data(&sites, site))
        .collect();
    let cache = outs.path().join("cache");
    let out = outs.path().join("all");
    let mut all = build_sites_cmd(image, work.path(), &out, &[sites.to_str().unwrap()]);
    let built = all
        .args(["--cache-dir", cache.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let isos: Vec<&Value> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "iso")
        .collect();
    assert_eq!(isos.len(), 3, "{manifest:#}");
    let installer = isos[0]["inputs"]["image"].as_str().unwrap().to_string();
    for (file, entry) in files.iter().zip(&isos) {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let iso = out.join(format!("palette-edge-installer-{stem}.iso"));
        assert_eq!(entry["path"], iso.to_str().unwrap());
        assert_eq!(entry["inputs"]["user_data"], file.to_str().unwrap());
        assert_eq!(
            std::fs::read_to_string(out.join(format!("palette-edge-installer-{stem}.iso.sha256")))
                .unwrap(),
            format!("{}  palette-edge-installer-{stem}.iso\n", sha256_hex(&iso))
        );
        let config = outs.path().join(format!("{stem}.config"));
        extract(&iso, "/config.yaml", &config);
        assert_eq!(
            std::fs::read(&config).unwrap(),
            std::fs::read(file).unwrap()
        );

        // The same site alone, on a cold cache.
        let alone = outs.path().join(format!("alone-{stem}"));
        let cold = build_sites_cmd(image, work.path(), &alone, &[file.to_str().unwrap()])
            .args(["--cache-dir", alone.join("cache").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(cold.status.success(), "{}", text(&cold));
        assert_eq!(
            sha256_hex(&alone.join("palette-edge-installer.iso")),
            sha256_hex(&iso),
            "{stem}: the ISO of three sites differs from its cold build"
        );
    }

    // One more site later, from the installer image alone: the cache makes it.
    let east = site_user_data(&sites, "east");
    let later = outs.path().join("later");
    let iso_only = forge_iso(
        work.path(),
        &installer,
        &[&east],
        &later,
        &cache,
        &["--iso-tools", "host"],
    );
    assert!(iso_only.status.success(), "{}", text(&iso_only));
    assert!(
        text(&iso_only).contains("from the cache"),
        "{}",
        text(&iso_only)
    );
    let config = outs.path().join("east.config");
    extract(
        &later.join("palette-edge-installer.iso"),
        "/config.yaml",
        &config,
    );
    assert_eq!(
        std::fs::read(&config).unwrap(),
        std::fs::read(&east).unwrap()
    );

    // Two sites with the tools in the builder container: one container, an ISO after the other.
    let contained = outs.path().join("contained");
    let two = forge_iso(
        work.path(),
        &installer,
        &[&east, &files[0]],
        &contained,
        &cache,
        &[],
    );
    assert!(two.status.success(), "{}", text(&two));
    for (stem, file) in [("east", &east), ("north", &files[0])] {
        let config = outs.path().join(format!("{stem}.contained"));
        extract(
            &contained.join(format!("palette-edge-installer-{stem}.iso")),
            "/config.yaml",
            &config,
        );
        assert_eq!(
            std::fs::read(&config).unwrap(),
            std::fs::read(file).unwrap()
        );
    }

    // The cache holds the installer image's parts, once per tool place; pruning to nothing
    // empties it.
    let ls = support::forge_command()
        .args([
            "cache",
            "ls",
            "--format",
            "json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&ls.stdout).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listed:#}");
    assert!(entries.iter().all(|e| e["image"] == installer.as_str()));
    let prune = support::forge_command()
        .args([
            "cache",
            "prune",
            "--max-size",
            "0",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        text(&prune).contains("removed 2 entries"),
        "{}",
        text(&prune)
    );
}

fn a_site_whose_file_stem_is_no_iso_name_is_refused_before_anything_is_built() {
    for stem in ["Store b", "store\nb"] {
        let work = tempfile::tempdir().unwrap();
        let a = site_user_data(work.path(), "a");
        let b = work.path().join(format!("{stem}.yaml"));
        std::fs::rename(site_user_data(work.path(), "b"), &b).unwrap();
        let out = support::forge_command()
            .current_dir(root())
            .args(["build", "--arg", "examples/canvos/.arg", "--user-data"])
            .arg(&a)
            .arg("--user-data")
            .arg(&b)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = format!(
            "`{}` is not an ISO name (lowercase letters and digits separated by `-`, `_` or `__`, as ISO_NAME); rename the file",
            stem.escape_debug()
        );
        assert!(text(&out).contains(&said), "{}", text(&out));
    }
}

fn two_user_data_files_with_one_stem_are_refused_before_anything_is_built() {
    let work = tempfile::tempdir().unwrap();
    for dir in ["a", "b"] {
        std::fs::create_dir(work.path().join(dir)).unwrap();
        site_user_data(&work.path().join(dir), "same");
    }
    let out = support::forge_command()
        .current_dir(root())
        .args(["build", "--arg", "examples/canvos/.arg", "--user-data"])
        .arg(work.path().join("a/same.yaml"))
        .arg("--user-data")
        .arg(work.path().join("b/same.yaml"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("would both be palette-edge-installer-same.iso"),
        "{}",
        text(&out)
    );
}
