//! The installer ISO: the example's ISO boots under SeaBIOS (CD and disk) and OVMF
//! (CD) in QEMU and reports the sha256 of the user-data it carries; xorriso sees BIOS and UEFI
//! El Torito entries and a GPT EFI partition; the squashfs keeps capabilities, owners, hard
//! links and device nodes; two builds give the same bytes; content bundles are cut into
//! `_partNN` parts as CanvOS's `split` cuts them, which concatenate to the original; an image without a kernel is refused clearly;
//! Ctrl-C while mastering leaves nothing behind.

mod support;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{containers, docker, forge_build, have, ready, root, text};

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
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The example's ISO, mastered once (builder container) for every test that reads it.
fn example_iso() -> Option<&'static Path> {
    static ISO: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    ISO.get_or_init(|| {
        let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
        if !ready() || !have(TOOLS) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let before = containers();
        let out = forge_build(&["--output", dir.path().to_str().unwrap()])
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(containers(), before, "a container was left behind");
        let iso = dir.path().join("palette-edge-installer.iso");
        Some((dir, iso))
    })
    .as_ref()
    .map(|(_, iso)| iso.as_path())
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

/// Boot the example ISO and expect the fixture's report of the user-data's sha256.
fn boots(firmware: &str, media: &str) {
    let Some(iso) = example_iso() else { return };
    let expected = sha256_hex(&support::example().join("user-data"));
    let logs = tempfile::tempdir().unwrap();
    let out = forge(&[
        "verify",
        iso.to_str().unwrap(),
        "--firmware",
        firmware,
        "--media",
        media,
        "--expect",
        &format!("forge-fixture: config.yaml sha256 {expected}"),
        "--timeout",
        "420",
        "--log",
        logs.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(
        &std::fs::read(logs.path().join(format!("{firmware}-{media}.log"))).unwrap(),
    )
    .into_owned();
    assert!(
        log.contains("forge-fixture: reached the squashfs root"),
        "{log}"
    );
}

#[test]
fn the_example_iso_boots_from_cd_under_seabios() {
    boots("bios", "cdrom");
}

#[test]
fn the_example_iso_boots_as_a_disk_under_seabios() {
    boots("bios", "disk");
}

#[test]
fn the_example_iso_boots_from_cd_under_ovmf() {
    boots("uefi", "cdrom");
}

#[test]
fn the_example_iso_has_bios_and_uefi_entries_a_gpt_esp_and_its_checksum() {
    let Some(iso) = example_iso() else { return };
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
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(iso.with_file_name("manifest.json")).unwrap(),
    )
    .unwrap();
    let entry = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "iso")
        .unwrap();
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

#[test]
fn inspect_reads_the_layout_and_compares_the_user_data_with_secrets_masked() {
    let Some(iso) = example_iso() else { return };
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
    let user_data = support::example().join("user-data");
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
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(work)
        .args(["build", "--arg", arg.to_str().unwrap(), "--checkout", "."])
        .args(["--user-data", user_data.to_str().unwrap()])
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
        .args(extra)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
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

#[test]
fn the_squashfs_keeps_capabilities_owners_links_and_devices_and_bundles_are_split() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !have(TOOLS) {
        return;
    }
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
    assert_eq!(paths("overlay_files"), ["/extra/hello.txt"]);
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

#[test]
fn the_same_inputs_and_source_date_epoch_give_the_same_iso() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !have(TOOLS) {
        return;
    }
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

#[test]
fn an_image_without_a_kernel_is_refused_naming_the_image_and_the_paths() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !have(TOOLS) {
        return;
    }
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

#[test]
fn ctrl_c_while_mastering_leaves_no_container_staging_or_iso() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() || !have(TOOLS) {
        return;
    }
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
