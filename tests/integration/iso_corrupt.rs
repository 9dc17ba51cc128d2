//! The ISO corruption suite: `forge inspect` trusts nothing an image says. A small image made
//! here with xorriso (Rock Ridge, BIOS and UEFI El Torito entries, the ESP appended as GPT
//! partition 2, forge's live files) is cut short at ten places and crafted to point past its
//! end, at its own ancestors, and many times at one directory. Every damaged image exits 1
//! within 3 s and 64 MiB, naming the image and what is wrong; the intact one exits 0 and shows
//! its user-data with every secret masked. An arm64 image (UEFI only) is read as one.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{measured, root, Measured};

tests! {
    the_intact_image_passes_and_shows_its_user_data_with_secrets_masked => [Commands(TOOLS)],
    an_image_cut_short_anywhere_is_refused => [Commands(TOOLS)],
    crafted_extents_and_directory_graphs_are_refused => [Commands(TOOLS)],
    links_are_shown_as_links_not_as_what_they_point_to => [Commands(TOOLS)],
    an_arm64_image_is_read_as_one_that_boots_with_uefi_only => [Commands(TOOLS)],
}

const SECTOR: usize = 2048;
/// The tools the image is made with.
const TOOLS: &[&str] = &["xorriso", "mkfs.vfat", "mmd", "mcopy"];
/// What a damaged image may cost `forge inspect`.
const MAX_SECONDS: Duration = Duration::from_secs(3);
const MAX_RSS_BYTES: u64 = 64 << 20;
/// Subdirectories of `/fan` and files of `/big`: the material of the crafted directory graphs.
const FAN_OUT: usize = 200;
const BIG: usize = 2000;

/// The intact image and the bytes every case starts from.
struct Image {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
}

impl Image {
    /// An image laid out like forge's installer ISO, plus `/etc/deep/er/file`, `/fan/d000`...
    /// (empty directories) and `/big/f0000`... (empty files).
    fn make() -> Image {
        Image::make_with(|_| {})
    }

    /// That image, its tree changed by `edit` before it is mastered.
    fn make_with(edit: impl FnOnce(&Path)) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let files: [(&str, Vec<u8>); 7] = [
            ("boot/kernel", b"kernel".to_vec()),
            ("boot/initrd", b"initrd".to_vec()),
            ("boot/bios.img", vec![0; SECTOR]),
            ("boot/grub2/grub.cfg", b"menuentry live {}\n".to_vec()),
            (
                "rootfs.squashfs",
                (0..300_000).map(|i| (i % 251) as u8).collect(),
            ),
            (
                "config.yaml",
                std::fs::read(root().join("tests/fixtures/iso/config.yaml")).unwrap(),
            ),
            ("etc/deep/er/file", b"deep\n".to_vec()),
        ];
        for (path, data) in files {
            let path = tree.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        for i in 0..FAN_OUT {
            std::fs::create_dir_all(tree.join(format!("fan/d{i:03}"))).unwrap();
        }
        std::fs::create_dir_all(tree.join("big")).unwrap();
        for i in 0..BIG {
            std::fs::write(tree.join(format!("big/f{i:04}")), b"").unwrap();
        }
        edit(&tree);
        let esp = esp(dir.path(), "bootx64.efi");
        let iso = dir.path().join("intact.iso");
        let out = Command::new("xorriso")
            .args(["-as", "mkisofs", "-R", "-V", "COS_LIVE", "-o"])
            .arg(&iso)
            .args([
                "-b",
                "boot/bios.img",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
            ])
            .args([
                "-eltorito-alt-boot",
                "-e",
                "--interval:appended_partition_2:all::",
            ])
            .args(["-no-emul-boot", "-append_partition", "2", "0xef"])
            .arg(&esp)
            .arg("-appended_part_as_gpt")
            .arg(&tree)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::text(&out));
        let bytes = std::fs::read(&iso).unwrap();
        Image { dir, bytes }
    }

    fn sectors(&self) -> u32 {
        (self.bytes.len() / SECTOR) as u32
    }

    fn le32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn set_le32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// A both-endian 32-bit field of a directory record.
    fn set_both(&mut self, at: usize, value: u32) {
        self.set_le32(at, value);
        self.bytes[at + 4..at + 8].copy_from_slice(&value.to_be_bytes());
    }

    /// The byte offsets of the records of the directory at `extent`, with their Rock Ridge
    /// names (`.` and `..` left out).
    fn records(&self, (lba, len): (u32, u32)) -> Vec<(usize, String)> {
        let (start, end) = (lba as usize * SECTOR, (lba + len) as usize * SECTOR);
        let end = start + (len as usize).min(end - start);
        let mut records = Vec::new();
        let mut at = start;
        while at < end {
            let rec_len = self.bytes[at] as usize;
            if rec_len == 0 {
                at = (at / SECTOR + 1) * SECTOR;
                continue;
            }
            let record = &self.bytes[at..at + rec_len];
            let system_use = &record[33 + record[32] as usize..];
            if let Some(nm) = system_use.windows(2).position(|w| w == b"NM") {
                let len = system_use[nm + 2] as usize;
                let name = String::from_utf8_lossy(&system_use[nm + 5..nm + len]);
                records.push((at, name.into_owned()));
            }
            at += rec_len;
        }
        records
    }

    /// The root directory's record in the primary volume descriptor.
    fn root_record(&self) -> usize {
        16 * SECTOR + 156
    }

    /// The byte offset of the directory record of `path` (`/` for the root).
    fn record(&self, path: &str) -> usize {
        path.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root_record(), |record, name| {
                self.records(self.extent_at(record))
                    .into_iter()
                    .find(|(_, n)| n == name)
                    .unwrap_or_else(|| panic!("{path}: no {name}"))
                    .0
            })
    }

    fn extent_at(&self, record: usize) -> (u32, u32) {
        (self.le32(record + 2), self.le32(record + 10))
    }

    fn extent(&self, path: &str) -> (u32, u32) {
        self.extent_at(self.record(path))
    }

    /// Point the record of `path` at `lba`, claiming `len` bytes.
    fn set_extent(&mut self, path: &str, (lba, len): (u32, u32)) {
        let record = self.record(path);
        self.set_both(record + 2, lba);
        self.set_both(record + 10, len);
    }

    /// Where the boot record (sector 17) keeps the sector of the El Torito boot catalog.
    const CATALOG_POINTER: usize = 17 * SECTOR + 71;

    /// The byte offset of the El Torito boot catalog: a validation entry, the BIOS entry, a
    /// section header and the UEFI entry, 32 bytes each.
    fn catalog(&self) -> usize {
        assert_eq!(
            &self.bytes[17 * SECTOR + 7..17 * SECTOR + 30],
            b"EL TORITO SPECIFICATION"
        );
        self.le32(Self::CATALOG_POINTER) as usize * SECTOR
    }

    /// The byte offset of the backup GPT header.
    fn backup_gpt(&self) -> usize {
        u64::from_le_bytes(self.bytes[512 + 32..512 + 40].try_into().unwrap()) as usize * 512
    }

    /// Write `bytes` as `name` next to the intact image.
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn inspect(iso: &Path, extra: &[&str]) -> Measured {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.arg("inspect").arg(iso).args(extra);
    // Far above MAX_SECONDS: a hang is measured, not waited for forever.
    measured(&mut cmd, Duration::from_secs(30))
}

/// `forge inspect` exits 1 on the image, in bounded time and memory, naming it and saying
/// `expected`; the measurements go to the test's log.
fn refused(name: &str, iso: &Path, expected: &str) {
    let run = inspect(iso, &[]);
    eprintln!(
        "{name:52} exit {:?}  {:5.0} ms  {:5.1} MiB",
        run.code,
        run.elapsed.as_secs_f64() * 1000.0,
        run.peak_rss_bytes as f64 / f64::from(1 << 20)
    );
    assert_eq!(run.code, Some(1), "{name}: {}{}", run.stdout, run.stderr);
    assert!(run.elapsed < MAX_SECONDS, "{name}: took {:?}", run.elapsed);
    assert!(
        run.peak_rss_bytes < MAX_RSS_BYTES,
        "{name}: peak RSS {} bytes",
        run.peak_rss_bytes
    );
    let named = format!("error: {}: ", iso.display());
    assert!(
        run.stderr.starts_with(&named) && run.stderr.contains(expected),
        "{name}: expected `{named}...{expected}` in\n{}",
        run.stderr
    );
}

/// A 1 MiB FAT ESP as forge writes it: labelled EFI_LIVE, with `EFI/BOOT/<loader>` (an
/// unsigned stand-in for `bootx64.efi` or `bootaa64.efi`) and the GRUB stub
/// `EFI/BOOT/grub.cfg`.
fn esp(dir: &Path, loader_name: &str) -> PathBuf {
    let esp = dir.join("esp.img");
    let loader = dir.join(loader_name);
    let stub = dir.join("grub.cfg");
    std::fs::write(&loader, b"MZ stand-in loader").unwrap();
    std::fs::write(&stub, b"configfile /boot/grub2/grub.cfg\n").unwrap();
    let image = esp.to_str().unwrap();
    let target = format!("::/EFI/BOOT/{loader_name}");
    let steps: [Vec<&str>; 4] = [
        vec!["mkfs.vfat", "-C", "-n", "EFI_LIVE", image, "1024"],
        vec!["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"],
        vec!["mcopy", "-i", image, loader.to_str().unwrap(), &target],
        vec![
            "mcopy",
            "-i",
            image,
            stub.to_str().unwrap(),
            "::/EFI/BOOT/grub.cfg",
        ],
    ];
    for step in steps {
        let out = Command::new(step[0]).args(&step[1..]).output().unwrap();
        assert!(out.status.success(), "{step:?}: {}", support::text(&out));
    }
    esp
}

fn the_intact_image_passes_and_shows_its_user_data_with_secrets_masked() {
    let image = Image::make();
    let iso = image.dir.path().join("intact.iso");
    for format in ["text", "json"] {
        let run = inspect(&iso, &["--show-config", "--format", format]);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        for secret in ["Kair0s", "Pass", "b0}", "Tok3nV4lue"] {
            assert!(
                !run.stdout.contains(secret),
                "{secret} printed:\n{}",
                run.stdout
            );
        }
        let config = match format {
            "json" => serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["config"]
                .as_str()
                .unwrap()
                .to_string(),
            _ => run.stdout,
        };
        for masked in [
            r#"passwd: "****""#,
            "{name: bob, passwd: ****}",
            r#"edgeHostToken: "****""#,
        ] {
            assert!(config.contains(masked), "no `{masked}` in\n{config}");
        }
    }
}

fn an_image_cut_short_anywhere_is_refused() {
    let image = Image::make();
    let sector = |lba: u32| lba as usize * SECTOR;
    let path_table = image.le32(16 * SECTOR + 140);
    let (root, _) = image.extent("/");
    let (boot, _) = image.extent("/boot");
    let (rootfs, rootfs_len) = image.extent("/rootfs.squashfs");
    let esp = sector(image.le32(image.catalog() + 96 + 8));
    let cuts: [(&str, usize); 10] = [
        ("in the system area", 100),
        ("in the primary volume descriptor", 16 * SECTOR + 500),
        ("in the El Torito boot record", 17 * SECTOR + 100),
        ("in the path table", sector(path_table) + 10),
        ("in the root directory", sector(root) + 40),
        ("in the /boot directory", sector(boot) + 40),
        ("in the boot catalog", image.catalog() + 10),
        (
            "in the middle of /rootfs.squashfs",
            sector(rootfs) + rootfs_len as usize / 2,
        ),
        ("in the EFI system partition", esp + 4096),
        ("in the backup GPT header", image.backup_gpt() + 10),
    ];
    for (name, at) in cuts {
        assert!(at < image.bytes.len(), "{name}: {at}");
        let iso = image.write("cut.iso", &image.bytes[..at]);
        refused(
            &format!("cut {name}"),
            &iso,
            "extends beyond the end of the image (sector ",
        );
    }
}

/// Craft an image from the intact one; the error it must give.
type Craft = fn(&mut Image) -> String;

fn crafted_extents_and_directory_graphs_are_refused() {
    let intact = Image::make();
    let cases: [(&str, Craft); 11] = [
        ("a directory extent past the end", |i| {
            let past = i.sectors() + 100;
            i.set_extent("/boot", (past, 2048));
            format!("directory /boot/ extends beyond the end of the image (sector {past}, image has {} sectors)", i.sectors())
        }),
        ("a file extent past the end", |i| {
            let (_, len) = i.extent("/rootfs.squashfs");
            i.set_extent("/rootfs.squashfs", (i.sectors() - 1, len));
            "/rootfs.squashfs extends beyond the end of the image".into()
        }),
        ("a file claiming 4 GiB", |i| {
            let (lba, _) = i.extent("/config.yaml");
            i.set_extent("/config.yaml", (lba, u32::MAX));
            "/config.yaml extends beyond the end of the image".into()
        }),
        ("a huge claimed directory size", |i| {
            let (lba, _) = i.extent("/boot");
            i.set_extent("/boot", (lba, 0xffff_f000));
            "damaged image: directory /boot/ claims 4294963200 bytes".into()
        }),
        ("a directory size past the end, under the cap", |i| {
            let (lba, _) = i.extent("/big");
            i.set_extent("/big", (lba, 60 << 20));
            "directory /big/ extends beyond the end of the image".into()
        }),
        ("a directory that is its own parent", |i| {
            let fan = i.extent("/fan");
            i.set_extent("/fan/d000", fan);
            "damaged image: directory /fan/d000/ is the directory /fan again".into()
        }),
        ("a deep directory pointing at the root", |i| {
            let root = i.extent("/");
            i.set_extent("/etc/deep/er", root);
            "damaged image: directory /etc/deep/er/ is the directory / again".into()
        }),
        ("fan-out: every /fan/dNNN points back at /fan", |i| {
            let fan = i.extent("/fan");
            for d in 0..FAN_OUT {
                i.set_extent(&format!("/fan/d{d:03}"), fan);
            }
            "damaged image: directory /fan/d000/ is the directory /fan again".into()
        }),
        ("many records pointing at one big directory", |i| {
            let big = i.extent("/big");
            for d in 0..FAN_OUT {
                i.set_extent(&format!("/fan/d{d:03}"), big);
            }
            "damaged image: directory /fan/d000/ is the directory /big again".into()
        }),
        ("a boot catalog past the end", |i| {
            let past = i.sectors() + 7;
            i.set_le32(Image::CATALOG_POINTER, past);
            "the El Torito boot catalog extends beyond the end of the image".into()
        }),
        ("a boot image past the end", |i| {
            let past = i.sectors() + 7;
            i.set_le32(i.catalog() + 32 + 8, past);
            "the El Torito BIOS boot image extends beyond the end of the image".into()
        }),
    ];
    for (name, craft) in cases {
        let mut image = Image {
            dir: tempfile::tempdir().unwrap(),
            bytes: intact.bytes.clone(),
        };
        let expected = craft(&mut image);
        let iso = image.write("crafted.iso", &image.bytes);
        refused(name, &iso, &expected);
    }
}

fn links_are_shown_as_links_not_as_what_they_point_to() {
    // Long targets take several Rock Ridge SL entries and a continuation area; a component
    // too long for one SL entry (250 bytes) is split in records that continue one another.
    let long = vec!["component"; 100].join("/");
    let wide = "w".repeat(250);
    let links = [
        ("etc/relative", "deep/er/file".to_string()),
        ("etc/absolute", "/boot/kernel".to_string()),
        ("etc/up", "../boot/./kernel".to_string()),
        ("etc/long", long.clone()),
        ("etc/wide", format!("{wide}/x")),
        ("config.yaml", "etc/deep/er/file".to_string()),
    ];
    let image = Image::make_with(|tree| {
        std::fs::remove_file(tree.join("config.yaml")).unwrap();
        for (link, target) in &links {
            std::os::unix::fs::symlink(target, tree.join(link)).unwrap();
        }
    });
    let iso = image.dir.path().join("intact.iso");
    let run = inspect(&iso, &["--show-config"]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    for (link, target) in &links[..5] {
        let line = format!("overlay      /{link} -> {target}\n");
        assert!(run.stdout.contains(&line), "no {line:?} in\n{}", run.stdout);
    }
    for said in [
        "file         /config.yaml -> etc/deep/er/file\n",
        "problem      /config.yaml is a link to etc/deep/er/file, not the file forge writes\n",
    ] {
        assert!(run.stdout.contains(said), "no {said:?} in\n{}", run.stdout);
    }
    assert!(
        !run.stdout.contains("sha256") && !run.stdout.contains("deep\n"),
        "the link's target was read as /config.yaml:\n{}",
        run.stdout
    );
    let json = inspect(&iso, &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let overlay = report["overlay_files"].as_array().unwrap();
    let long_link = overlay
        .iter()
        .find(|f| f["path"] == "/etc/long")
        .unwrap_or_else(|| panic!("no /etc/long in {overlay:?}"));
    assert_eq!(long_link["link"], long.as_str());
    assert_eq!(long_link["size"], 0);
    let file = overlay
        .iter()
        .find(|f| f["path"] == "/etc/deep/er/file")
        .unwrap();
    assert!(file.get("link").is_none(), "{file}");
}

/// An arm64 installer ISO as forge masters it: UEFI only (no El Torito BIOS entry, no hybrid
/// MBR), the ESP holding `EFI/BOOT/bootaa64.efi` appended as GPT partition 2.
fn an_arm64_image_is_read_as_one_that_boots_with_uefi_only() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for (path, data) in [
        ("boot/kernel", &b"kernel"[..]),
        ("boot/initrd", b"initrd"),
        ("boot/grub2/grub.cfg", b"menuentry live {}\n"),
        ("rootfs.squashfs", b"squashfs"),
        ("config.yaml", b"#cloud-config\n"),
    ] {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let esp = esp(dir.path(), "bootaa64.efi");
    let iso = dir.path().join("arm64.iso");
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-R", "-V", "COS_LIVE", "-o"])
        .arg(&iso)
        .args([
            "-e",
            "--interval:appended_partition_2:all::",
            "-no-emul-boot",
        ])
        .args(["-append_partition", "2", "0xef"])
        .arg(&esp)
        .arg("-appended_part_as_gpt")
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out));

    let run = inspect(&iso, &[]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("EFI boot     1. GRUB EFI/BOOT/bootaa64.efi (unsigned)\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("problem"), "{}", run.stdout);

    // forge verify boots it as arm64: UEFI only, with arm64's QEMU, which it names when the
    // machine lacks it (here: a PATH with nothing on it).
    let nothing = dir.path().join("empty-path");
    std::fs::create_dir(&nothing).unwrap();
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("verify")
            .arg(&iso)
            .args(extra)
            .env("PATH", &nothing)
            .output()
            .unwrap()
    };
    let bios = verify(&["--firmware", "bios"]);
    assert_eq!(bios.status.code(), Some(2), "{}", support::text(&bios));
    assert!(
        support::text(&bios).contains("arm64 ISOs boot with UEFI only: leave out --firmware bios"),
        "{}",
        support::text(&bios)
    );
    let all = verify(&[]);
    assert_eq!(all.status.code(), Some(2), "{}", support::text(&all));
    assert!(
        support::text(&all)
            .contains("forge verify needs qemu-system-aarch64 (apt-get install qemu-system-arm)"),
        "{}",
        support::text(&all)
    );
}
