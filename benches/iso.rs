//! Benchmark: the ISO stage of `forge build` (images cached, tools on the host) against the
//! plain tool pipeline on the same installer image with the same compression
//! (`docker export` → `mksquashfs` → GRUB images, ESP → `xorriso`), as a ratio, and forge's
//! peak RSS while mastering (VmHWM). Run with `make bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The plain pipeline: what a shell script would do with the same tools.
const PLAIN: &str = r#"
set -euo pipefail
cd "$WORK"
cid=$(docker create "$IMAGE")
trap 'docker rm -f "$cid" >/dev/null' EXIT
mkdir rootfs tree esp
docker export "$cid" | tar -C rootfs -x --numeric-owner --xattrs --xattrs-include='*'
mksquashfs rootfs tree/rootfs.squashfs -comp gzip -quiet -no-progress
mkdir -p tree/boot/grub/i386-pc tree/boot/grub2 tree/EFI/BOOT esp/EFI/BOOT
# The kernel and initrd forge takes: the first /boot/vmlinuz* and the first /boot/initrd* or
# /boot/initramfs* in byte order, links followed (CanvOS's /boot/initrd is one, relative).
LC_ALL=C
shopt -s nullglob extglob
kernels=(rootfs/boot/vmlinuz*)
initrds=(rootfs/boot/init@(rd|ramfs)*)
cp -L "${kernels[0]}" tree/boot/kernel
cp -L "${initrds[0]}" tree/boot/initrd
cp "$USER_DATA" tree/config.yaml
echo 'configfile /boot/grub2/grub.cfg' | tee tree/boot/grub/grub.cfg tree/EFI/BOOT/grub.cfg esp/EFI/BOOT/grub.cfg >/dev/null
echo 'menuentry live { linux /boot/kernel root=live:CDLABEL=COS_LIVE; initrd /boot/initrd; }' > tree/boot/grub2/grub.cfg
mods="iso9660 part_msdos part_gpt fat normal configfile search search_fs_file search_label echo test linux serial terminal boot all_video"
grub-mkimage -O i386-pc-eltorito -p /boot/grub -o tree/boot/grub/i386-pc/eltorito.img biosdisk $mods
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o esp/EFI/BOOT/bootx64.efi efi_gop $mods
mkfs.vfat -C -n COS_GRUB esp.img 8192 >/dev/null
mcopy -s -i esp.img esp/EFI ::
xorriso -report_about WARNING -outdev plain.iso -volid COS_LIVE -joliet off -padding 0 -map tree / \
  -boot_image grub bin_path=/boot/grub/i386-pc/eltorito.img \
  -boot_image grub grub2_mbr=/usr/lib/grub/i386-pc/boot_hybrid.img -boot_image grub grub2_boot_info=on \
  -boot_image any partition_offset=16 -boot_image any cat_path=/boot/boot.catalog -boot_image any cat_hidden=on \
  -boot_image any boot_info_table=on -boot_image any platform_id=0x00 -boot_image any emul_type=no_emulation \
  -boot_image any load_size=2048 -append_partition 2 0xef esp.img -boot_image any next \
  -boot_image any efi_path=--interval:appended_partition_2:all:: -boot_image any platform_id=0xef \
  -boot_image any emul_type=no_emulation -boot_image any appended_part_as=gpt
"#;

fn forge_build(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = support::forge_build(&["--output", out.to_str().unwrap()]);
    cmd.args(extra);
    cmd
}

/// Run forge, sampling its peak resident set (VmHWM) until it exits: (seconds, peak bytes).
fn timed_with_peak(mut cmd: Command) -> (f64, u64) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib * 1024);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "forge build failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (started.elapsed().as_secs_f64(), peak)
}

fn main() {
    if !support::ready()
        || !support::have(&[
            "xorriso",
            "mksquashfs",
            "sqfstar",
            "grub-mkimage",
            "mkfs.vfat",
            "mcopy",
        ])
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Images first (cached afterwards), so that the timed runs measure the ISO stage.
    let images = forge_build(&work.path().join("images"), &["--no-iso"])
        .output()
        .unwrap();
    assert!(images.status.success(), "{}", support::text(&images));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("images/manifest.json")).unwrap(),
    )
    .unwrap();
    let installer = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "installer")
        .unwrap()["reference"]
        .as_str()
        .unwrap()
        .to_string();

    let mut forge_runs = Vec::new();
    let mut plain_runs = Vec::new();
    let mut peak = 0;
    for run in 0..3 {
        // A cold mastering cache every time: the same work as the plain pipeline.
        let cache = work.path().join(format!("cache-{run}"));
        let (seconds, rss) = timed_with_peak(forge_build(
            &work.path().join(format!("forge-{run}")),
            &[
                "--iso-tools",
                "host",
                "--cache-dir",
                cache.to_str().unwrap(),
            ],
        ));
        forge_runs.push(seconds);
        peak = peak.max(rss);

        let plain = work.path().join(format!("plain-{run}"));
        std::fs::create_dir_all(&plain).unwrap();
        let started = Instant::now();
        let out = Command::new("bash")
            .args(["-c", PLAIN])
            .env("WORK", &plain)
            .env("IMAGE", &installer)
            .env("USER_DATA", support::example().join("user-data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::text(&out));
        plain_runs.push(started.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&plain).unwrap();
    }
    let best = |runs: &[f64]| runs.iter().cloned().fold(f64::INFINITY, f64::min);
    let (forge, plain) = (best(&forge_runs), best(&plain_runs));
    let iso_size = std::fs::metadata(work.path().join("forge-0/palette-edge-installer.iso"))
        .unwrap()
        .len();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("ISO stage, example installer image (gzip squashfs, tools on the host, best of 3)");
    println!("  forge build (images cached)  {forge:8.2} s   runs {forge_runs:.2?}");
    println!("  plain pipeline               {plain:8.2} s   runs {plain_runs:.2?}");
    println!("  forge / plain                {:8.2}", forge / plain);
    println!("  ISO size                     {:8.1} MiB", mib(iso_size));
    println!("  forge peak RSS               {:8.1} MiB", mib(peak));
    let result = serde_json::json!({"forge_seconds": forge_runs, "plain_seconds": plain_runs, "ratio": forge / plain, "iso_bytes": iso_size, "forge_peak_rss_bytes": peak});
    let dir = support::root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("iso.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
}
