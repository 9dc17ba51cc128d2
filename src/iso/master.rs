//! Mastering the installer ISO (DESIGN.md §5): stage the tree (user-data, kernel, initrd, grub
//! menu and stubs, overlays, cluster config, content bundles), then, through a [`Runner`],
//! squashfs from the image's exported root filesystem, the BIOS El Torito GRUB image (where the
//! architecture has BIOS), the EFI system partition and xorriso; the ISO lands in the output
//! directory only when complete. What differs per architecture comes from its [`Arch`].

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use futures_util::StreamExt as _;

use super::arch::{Arch, Efi};
use super::cache::{Cache, Found, Meta, Stored};
use super::image::{boot_files, efi_loader};
use super::tools::Runner;
use super::IsoError;
use crate::config::Settings;
use crate::content;
use crate::engine::{Container, Engine};
use crate::progress::Progress;
use crate::render::{context, Templates};
use crate::run::write_output;
use crate::units::human;

/// The volume label the live initrd looks for (`root=live:CDLABEL=COS_LIVE`).
pub const LABEL: &str = "COS_LIVE";
/// The label of the ISO's EFI system partition.
pub const ESP_LABEL: &str = "EFI_LIVE";
/// Where content bundles and the cluster config go on the ISO.
pub const CONTENT_DIR: &str = "/opt/spectrocloud/content";
pub const CLUSTER_CONFIG: &str = "/opt/spectrocloud/clusterconfig/spc.tgz";
/// `/EFI/BOOT/grub.cfg` and `/boot/grub/grub.cfg`: find the ISO, load the real menu.
pub const STUB: &str = "search --no-floppy --file --set=root /boot/kernel\nset prefix=($root)/boot/grub2\nconfigfile $prefix/grub.cfg\n";
/// GRUB modules built into the boot images (there is no module directory on the ISO).
const COMMON_MODULES: &[&str] = &[
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "normal",
    "configfile",
    "search",
    "search_fs_file",
    "search_label",
    "echo",
    "test",
    "linux",
    "serial",
    "terminal",
    "boot",
    "all_video",
];
/// The boot menu on the ISO.
pub const MENU: &str = "boot/grub2/grub.cfg";
/// What DEBUG adds to a checkout menu's installer lines, as CanvOS does.
const DEBUG_ARGS: &str = "rd.immucore.debug console=tty0 rd.debug";
/// Where EDGE_CUSTOM_CONFIG goes on the ISO.
pub const EDGE_CUSTOM_CONFIG: &str = "/.edge_custom_config.yaml";
/// Paths (below the ISO root) forge always writes itself, and the BIOS El Torito image of
/// the architecture; an overlay may not replace them.
pub const RESERVED: &[&str] = &[
    "config.yaml",
    "rootfs.squashfs",
    "boot/kernel",
    "boot/initrd",
    "boot/grub/grub.cfg",
    "EFI/BOOT/grub.cfg",
];

/// Where the mastering tools run (`--iso-tools`): in a builder container forge builds, or on
/// this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ToolPlace {
    Container,
    Host,
}

/// What to master: the parts every site's ISO shares.
pub struct Spec<'a> {
    /// The installer image (its root filesystem becomes `rootfs.squashfs`).
    pub image: &'a str,
    pub settings: &'a Settings,
    pub templates: &'a Templates,
    /// The overlays directory; its `files-iso/` goes to the ISO root.
    pub overlays: Option<&'a Path>,
    /// Searched for `content-*/*.zst`.
    pub content_dir: &'a Path,
    pub output: &'a Path,
    /// The run's private directory, where the ISO trees are staged.
    pub work: &'a Path,
    /// `SOURCE_DATE_EPOCH`: every date on the ISO, and the FAT serial and GPT GUIDs from it.
    pub source_date_epoch: Option<u64>,
    pub tools: ToolPlace,
    pub build_args: &'a HashMap<String, String>,
    /// Where the image-dependent parts are kept between runs.
    pub cache: &'a Cache,
}

/// One site's ISO: its user-data (the file, and the text that was validated, which the ISO
/// carries) and the ISO's file name.
pub struct Site<'a> {
    pub user_data: &'a Path,
    pub text: &'a str,
    pub name: String,
}

/// A content bundle and where it went on the ISO.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub source: PathBuf,
    pub size: u64,
    /// Bytes per part when split.
    pub part_size: u64,
    /// ISO paths: the file itself, or its parts in order.
    pub parts: Vec<String>,
}

/// An ISO made.
#[derive(Debug, Clone)]
pub struct Mastered {
    pub path: PathBuf,
    /// The installer image it was mastered from.
    pub image: String,
    pub checksum_path: PathBuf,
    pub user_data: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub rootfs_bytes: u64,
    /// `image: PATH` for each EFI binary taken from the image, or `grub-mkimage`.
    pub efi_loader: Vec<String>,
    pub bundles: Vec<Bundle>,
    /// Whether the image-dependent parts came from the mastering cache.
    pub cached: bool,
    /// Where `--push-iso` pushed it as an image, and the manifest's digest.
    pub pushed: Option<(String, crate::oci::Digest)>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IsoError {
    let what = what.into();
    move |source| IsoError::Io { what, source }
}

/// The parts every ISO of an installer image shares, in the cache directory `sys/` links to,
/// and where they go on the ISO: the squashfs, kernel and initrd, and the BIOS El Torito
/// image where the architecture has one.
fn system_files(arch: &Arch) -> Vec<(&'static str, &str)> {
    let mut files = vec![
        ("rootfs.squashfs", "rootfs.squashfs"),
        ("kernel", "boot/kernel"),
        ("initrd", "boot/initrd"),
    ];
    files.extend(
        arch.bios
            .as_ref()
            .map(|b| ("eltorito.img", b.image.as_str())),
    );
    files
}

/// Master one ISO per site from the installer image of `spec`. The image-dependent parts
/// (squashfs, kernel, initrd, BIOS and UEFI boot images) come from the cache when an earlier
/// run made them from the same inputs, and are made and cached otherwise; each site's ISO
/// adds its own tree (user-data, overlays, menu) and lands in the output directory only when
/// complete.
pub async fn master(
    engine: &Engine,
    spec: &Spec<'_>,
    sites: &[Site<'_>],
    progress: &Progress,
) -> Result<Vec<Mastered>, IsoError> {
    let docker = &engine.docker;
    let settings = spec.settings;
    let on_line = |line: &str| progress.line("iso", line);
    std::fs::create_dir_all(spec.output)
        .map_err(io(format!("creating {}", spec.output.display())))?;
    let staging = tempfile::Builder::new()
        .prefix("iso-")
        .tempdir_in(spec.work)
        .map_err(io("creating a staging directory"))?;
    let root = staging.path();
    std::fs::create_dir_all(root.join("content")).map_err(io("creating the staging"))?;
    let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    progress.start("iso", "mastering", &names.join(", "));

    // On the host xorriso reads the bundles where they are; a builder container gets them
    // uploaded from links in the staging directory.
    let host = spec.tools == ToolPlace::Host;
    let bundles = content_bundles(spec, (!host).then(|| root.join("content")).as_deref())?;
    let menu = boot_menu(spec)?;
    let arch = Arch::of(spec.templates, settings)?;
    let efi = Efi::of(spec.templates, settings)?;
    let image_id = crate::engine::image_id(docker, spec.image).await?;
    let runner = match spec.tools {
        ToolPlace::Host => Runner::host(root, &arch)?,
        ToolPlace::Container => {
            let templates = spec.templates;
            Runner::container(
                engine,
                templates,
                settings,
                &arch,
                spec.build_args,
                &on_line,
            )
            .await?
        }
    };
    let compression = settings.squashfs_compression.as_str();
    let key = crate::oci::Digest::sha256(
        [
            env!("CARGO_PKG_VERSION"),
            &image_id,
            compression,
            &runner.tools_id(),
            &format!("{efi:?} {:?} {:?}", arch.uefi, arch.bios),
            &menu,
            &format!("{:?}", spec.source_date_epoch),
        ]
        .join("\n")
        .as_bytes(),
    )
    .hex()
    .to_string();
    let cache_error = |e| IsoError::Io {
        what: format!("the mastering cache in {}", spec.cache.dir().display()),
        source: e,
    };
    let hit = match spec.cache.get(&key) {
        Found::Hit(entry) => Some(entry),
        Found::Miss => None,
        Found::Unusable(unusable) => {
            on_line(&format!("{unusable}; the parts are made again"));
            None
        }
    };
    let cached = hit.is_some();
    check_space(docker, spec, &bundles, sites.len(), cached).await?;
    let system = match hit {
        Some(entry) => {
            link_system(root, &entry.dir)?;
            runner.put(root, "").await?;
            on_line(&format!(
                "squashfs, kernel, initrd and boot images of {} from the cache",
                spec.image
            ));
            entry
        }
        None => {
            let staged = spec.cache.staging().map_err(cache_error)?;
            link_system(root, staged.path())?;
            let boot = (&arch, &efi);
            let meta = system_parts(engine, spec, &runner, root, boot, &image_id, &on_line).await?;
            // Made by the tools; the kernel and initrd were read into the staging directly.
            let bios = arch.bios.as_ref().map(|_| "eltorito.img");
            for file in ["rootfs.squashfs", "esp.img"].into_iter().chain(bios) {
                let dest = staged.path().join(file);
                runner.take(&format!("sys/{file}"), &dest).await?;
            }
            let entry = match spec
                .cache
                .insert(&key, staged, &meta)
                .map_err(cache_error)?
            {
                Stored::Cached(entry) => entry,
                Stored::Uncached(entry, why) => {
                    on_line(&format!(
                        "{why}; this run uses its parts without caching them"
                    ));
                    entry
                }
            };
            std::fs::remove_file(root.join("sys")).map_err(io("staging the ISO"))?;
            link_system(root, &entry.dir)?;
            entry
        }
    };
    let sys = std::fs::canonicalize(root.join("sys")).map_err(io("reading the staging"))?;

    let mut mastered = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let dir = format!("site-{i}");
        let tree = root.join(&dir);
        stage_tree(spec, &arch, site.text, &menu, &tree)?;
        runner.put(&tree, &dir).await?;
        // The ISO, written next to its final name and renamed when complete.
        let partial = crate::run::partial_file(spec.output, &site.name)
            .map_err(io(format!("creating a file in {}", spec.output.display())))?;
        let system_path = |file: &str| match host {
            true => sys.join(file).display().to_string(),
            false => format!("sys/{file}"),
        };
        let xorriso = xorriso_args(
            &runner.iso_path(partial.path()),
            &dir,
            &arch,
            &system_path,
            &bundles,
            host,
            spec.source_date_epoch,
        );
        runner
            .run(&xorriso, &tool_env(spec.source_date_epoch), None, &on_line)
            .await?;
        runner.take("out.iso", partial.path()).await?;
        runner.discard("out.iso").await?;
        let path = partial.path().to_path_buf();
        let (sha256, size) = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| IsoError::Tools(e.to_string()))?
            .map_err(io("hashing the ISO"))?;
        let dest = spec.output.join(&site.name);
        partial.persist(&dest).map_err(|e| IsoError::Io {
            what: format!("writing {}", dest.display()),
            source: e.error,
        })?;
        let checksum_path = write_output(
            spec.output,
            &format!("{}.sha256", site.name),
            &format!("{sha256}  {}\n", site.name),
        )
        .map_err(io(format!("writing {}.sha256", site.name)))?;
        progress.finish(
            "iso",
            "mastered",
            &format!("{} ({})", dest.display(), human(size)),
        );
        mastered.push(Mastered {
            path: dest,
            image: spec.image.to_string(),
            checksum_path,
            user_data: site.user_data.to_path_buf(),
            sha256,
            size,
            rootfs_bytes: system.meta.rootfs_bytes,
            efi_loader: system.meta.efi_loader.clone(),
            bundles: bundles.clone(),
            cached,
            pushed: None,
        });
    }
    runner.finish().await?;
    Ok(mastered)
}

/// `root/sys`: the directory of the image-dependent parts (a cache entry or its staging).
fn link_system(root: &Path, dir: &Path) -> Result<(), IsoError> {
    std::os::unix::fs::symlink(dir, root.join("sys")).map_err(io("staging the ISO"))
}

/// Make the image-dependent parts in `root/sys` for `boot` (the architecture and the UEFI
/// chain to take from the image): kernel and initrd from the image, the squashfs streamed
/// from the engine into sqfstar, GRUB's BIOS El Torito image (where the architecture has
/// BIOS) and the ESP (the image's signed loader, else GRUB built with iso9660 support).
async fn system_parts(
    engine: &Engine,
    spec: &Spec<'_>,
    runner: &Runner,
    root: &Path,
    (arch, efi): (&Arch, &Efi),
    image_id: &str,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<Meta, IsoError> {
    let esp = root.join("esp/EFI/BOOT");
    let scratch = root.join("scratch");
    for dir in [&esp, &scratch] {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let image = Container::create(engine, spec.image, None).await?;
    boot_files(&image, spec.image, &root.join("sys"), &scratch).await?;
    let loader = efi_loader(&image, spec.image, efi, &arch.uefi, &esp, &scratch).await?;
    // The GRUB config where every signed GRUB looks: beside the loader, and in the vendor's
    // directory (Ubuntu's reads only EFI/ubuntu/grub.cfg).
    let mut configs = vec![esp.clone()];
    configs.extend(
        loader
            .as_ref()
            .and_then(|l| l.vendor.as_ref())
            .map(|vendor| root.join("esp/EFI").join(vendor)),
    );
    for dir in &configs {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join("grub.cfg"), STUB))
            .map_err(io("staging the ESP"))?;
    }
    std::fs::remove_dir_all(&scratch).map_err(io("removing scratch files"))?;
    runner.put(root, "").await?;
    let env = tool_env(spec.source_date_epoch);

    // The root filesystem, streamed from the engine into sqfstar.
    let streamed = AtomicU64::new(0);
    let report_every = 256 << 20;
    let export = image.export().map(|chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let before = streamed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if (before + chunk.len() as u64) / report_every > before / report_every {
            on_line(&format!(
                "rootfs: {} read from {}",
                human(before + chunk.len() as u64),
                spec.image
            ));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let mut reader = tokio_util::io::StreamReader::new(export);
    let compression = spec.settings.squashfs_compression.as_str();
    runner
        .run(
            &argv(&[
                "sqfstar",
                "-quiet",
                "-no-progress",
                "-comp",
                compression,
                "-root-mode",
                "755",
                "-root-uid",
                "0",
                "-root-gid",
                "0",
                "sys/rootfs.squashfs",
                ".dockerenv",
            ]),
            &env,
            Some(&mut reader),
            on_line,
        )
        .await?;
    drop(reader);
    image.remove().await?;
    let rootfs_bytes = streamed.load(Ordering::Relaxed);
    on_line(&format!(
        "rootfs: {} squashed ({compression})",
        human(rootfs_bytes)
    ));

    // BIOS: GRUB's El Torito core image; its hybrid MBR comes from the tool environment.
    if let Some(bios) = &arch.bios {
        let mut eltorito = argv(&[
            "grub-mkimage",
            "-O",
            &bios.grub_platform,
            "-p",
            "/boot/grub",
            "-o",
            "sys/eltorito.img",
            "biosdisk",
        ]);
        eltorito.extend(argv(COMMON_MODULES));
        runner.run(&eltorito, &env, None, on_line).await?;
    }

    // UEFI: the image's loader, else GRUB built with iso9660 support, on a FAT ESP.
    let efi_loader = match &loader {
        Some(loader) => loader
            .files
            .iter()
            .map(|(_, source)| format!("image: {source}"))
            .collect(),
        None => {
            let mut efi = argv(&[
                "grub-mkimage",
                "-O",
                &arch.uefi.grub_platform,
                "-p",
                "/EFI/BOOT",
                "-o",
                &format!("esp/EFI/BOOT/{}", arch.uefi.loader),
                "efi_gop",
            ]);
            efi.extend(argv(COMMON_MODULES));
            runner.run(&efi, &env, None, on_line).await?;
            vec!["grub-mkimage".to_string()]
        }
    };
    // EFI_LIVE, not COS_GRUB: the Kairos agent finds the installed system's EFI partition by
    // that label, and must not take a USB stick left plugged in for it.
    let mut mkfs = argv(&["mkfs.vfat", "-C", "-n", ESP_LABEL]);
    if let Some(epoch) = spec.source_date_epoch {
        mkfs.extend([
            "--invariant".to_string(),
            "-i".to_string(),
            format!("{:08x}", epoch as u32),
        ]);
    }
    mkfs.extend([
        "sys/esp.img".to_string(),
        esp_kib(&root.join("esp"), &arch.uefi.loader)?.to_string(),
    ]);
    runner.run(&mkfs, &env, None, on_line).await?;
    runner
        .run(
            &argv(&["mcopy", "-s", "-i", "sys/esp.img", "esp/EFI", "::"]),
            &env,
            None,
            on_line,
        )
        .await?;
    Ok(Meta {
        image: spec.image.to_string(),
        image_id: image_id.to_string(),
        rootfs_bytes,
        efi_loader,
    })
}

/// Refuse to start when there is no room for the ISOs: each about half the installer image
/// (squashfs) plus the content bundles and boot files in the output directory, and on a cache
/// miss the squashfs once more in the cache directory.
async fn check_space(
    docker: &Docker,
    spec: &Spec<'_>,
    bundles: &[Bundle],
    isos: usize,
    cached: bool,
) -> Result<(), IsoError> {
    let image = docker
        .inspect_image(spec.image)
        .await
        .map_err(|e| IsoError::Tools(format!("inspecting {}: {e}", spec.image)))?;
    let squashfs = image.size.unwrap_or(0).max(0) as u64 / 2;
    let per_iso = squashfs + bundles.iter().map(|b| b.size).sum::<u64>() + (64 << 20);
    let mut needs = vec![(
        spec.output,
        per_iso * isos as u64,
        "choose another --output",
    )];
    if !cached {
        needs.push((
            spec.cache.dir(),
            squashfs,
            "choose another --cache-dir or run forge cache prune",
        ));
    }
    for (dir, need, fix) in needs {
        let free = fs4::available_space(dir)
            .map_err(io(format!("reading the free space of {}", dir.display())))?;
        if free < need {
            return Err(IsoError::Space(format!(
                "{} has {} free, and mastering {} needs about {} there; free space or {fix}",
                dir.display(),
                human(free),
                spec.image,
                human(need)
            )));
        }
    }
    Ok(())
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The tools' environment: UTC (FAT stores local times), and SOURCE_DATE_EPOCH, which
/// sqfstar, mtools and xorriso honour.
fn tool_env(epoch: Option<u64>) -> Vec<(String, String)> {
    let mut env = vec![
        ("TZ".to_string(), "UTC".to_string()),
        ("LC_ALL".to_string(), "C".to_string()),
    ];
    if let Some(epoch) = epoch {
        env.push(("SOURCE_DATE_EPOCH".to_string(), epoch.to_string()));
    }
    env
}

/// The ESP's size in KiB: its files plus room for FAT metadata, at least 4 MiB, whole MiB;
/// 8 MiB when GRUB is still to be built (there is no `loader` yet).
fn esp_kib(esp: &Path, loader: &str) -> Result<u64, IsoError> {
    let mut bytes = 0;
    let mut has_loader = false;
    for entry in walkdir::WalkDir::new(esp) {
        let entry = entry.map_err(|e| IsoError::Io {
            what: "reading the ESP staging".into(),
            source: e.into(),
        })?;
        has_loader |= entry.file_name() == loader;
        bytes += entry
            .metadata()
            .map_err(|e| IsoError::Io {
                what: "reading the ESP staging".into(),
                source: e.into(),
            })?
            .len();
    }
    if !has_loader {
        return Ok(8192);
    }
    Ok((bytes / 1024 + 1024).div_ceil(1024).max(4) * 1024)
}

/// Copy the files forge puts on one site's ISO root into `tree`: the overlay's `files-iso/`,
/// the user-data, cluster and edge configuration, the boot menu and GRUB's stubs.
fn stage_tree(
    spec: &Spec<'_>,
    arch: &Arch,
    user_data: &str,
    menu: &str,
    tree: &Path,
) -> Result<(), IsoError> {
    for dir in ["boot/grub2", "boot/grub", "EFI/BOOT"] {
        let dir = tree.join(dir);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if let Some(overlays) = spec.overlays {
        crate::render::check_overlay_links(overlays, &spec.settings.checkout)?;
    }
    if let Some(files) = spec
        .overlays
        .map(|o| o.join("files-iso"))
        .filter(|d| d.is_dir())
    {
        for entry in walkdir::WalkDir::new(&files)
            .min_depth(1)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| IsoError::Io {
                what: format!("reading {}", files.display()),
                source: e.into(),
            })?;
            let rel = entry.path().strip_prefix(&files).expect("below files-iso");
            let eltorito = arch.bios.as_ref().map(|b| b.image.as_str());
            if RESERVED
                .iter()
                .copied()
                .chain(eltorito)
                .any(|r| Path::new(r) == rel)
            {
                return Err(IsoError::Overlay(format!(
                    "{} would replace /{}, which forge writes itself; remove it (the boot menu comes from the grub.cfg template: use --templates DIR to change it)",
                    entry.path().display(),
                    rel.display()
                )));
            }
            if rel == Path::new(MENU) {
                continue; // the checkout's own menu, completed below
            }
            let target = tree.join(rel);
            // Staged for the user alone (the owner's bits kept, so scripts stay executable);
            // the ISO gets its modes from xorriso.
            let private = |mode: u32| std::fs::Permissions::from_mode(mode & 0o700);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&target)
            } else if entry.path_is_symlink() {
                // Inside the checkout (checked above): kept as a link, never followed.
                std::fs::read_link(entry.path())
                    .and_then(|link| std::os::unix::fs::symlink(link, &target))
            } else {
                crate::limits::copy(entry.path(), &target).and_then(|_| {
                    let source = std::fs::metadata(entry.path())?.permissions().mode();
                    std::fs::set_permissions(&target, private(source))
                })
            }
            .map_err(io(format!("copying {}", entry.path().display())))?;
        }
    }
    // User-data and configuration are copied into new files, which the umask makes the
    // user's alone (`fs::copy` would keep the source's mode).
    let copy = |from: &Path, to: &str| -> Result<(), IsoError> {
        let target = tree.join(to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        crate::limits::open(from)
            .and_then(|mut source| {
                std::io::copy(&mut source, &mut std::fs::File::create_new(&target)?)
            })
            .map(drop)
            .map_err(io(format!("copying {}", from.display())))
    };
    std::fs::File::create_new(tree.join("config.yaml"))
        .and_then(|mut file| std::io::Write::write_all(&mut file, user_data.as_bytes()))
        .map_err(io("writing config.yaml"))?;
    if let Some(path) = &spec.settings.clusterconfig {
        copy(path, CLUSTER_CONFIG.trim_start_matches('/'))?;
    }
    if let Some(path) = &spec.settings.edge_custom_config {
        copy(path, EDGE_CUSTOM_CONFIG.trim_start_matches('/'))?;
    }
    for (path, text) in [
        (MENU, menu),
        ("boot/grub/grub.cfg", STUB),
        ("EFI/BOOT/grub.cfg", STUB),
    ] {
        std::fs::write(tree.join(path), text).map_err(io(format!("writing {path}")))?;
    }
    Ok(())
}

/// The boot menu: the checkout's `overlay/files-iso/boot/grub2/grub.cfg` as CanvOS uses it
/// (`{{DEFAULT_ENTRY}}` set to 0, or 2 with FORCE_INTERACTIVE_INSTALL; with DEBUG, Kairos's
/// debug arguments after `rd.immucore.sysrootwait`), else the `iso/grub.cfg` template.
fn boot_menu(spec: &Spec<'_>) -> Result<String, IsoError> {
    let settings = spec.settings;
    let default_entry = if settings.force_interactive_install {
        "2"
    } else {
        "0"
    };
    let own = spec
        .overlays
        .map(|o| o.join("files-iso").join(MENU))
        .filter(|p| p.is_file());
    let Some(own) = own else {
        let mut ctx = context(settings);
        ctx.insert("label", LABEL);
        ctx.insert("default_entry", default_entry);
        ctx.insert("debug_args", DEBUG_ARGS);
        return Ok(spec.templates.render("iso/grub.cfg", &ctx)?);
    };
    let text = crate::limits::open(&own)
        .and_then(std::io::read_to_string)
        .map_err(io(format!("reading {}", own.display())))?;
    let debug = settings.debug;
    Ok(text
        .replace("{{DEFAULT_ENTRY}}", default_entry)
        .lines()
        .map(
            |line| match debug && line.contains("rd.immucore.sysrootwait") {
                true => format!("{line} {DEBUG_ARGS}\n"),
                false => format!("{line}\n"),
            },
        )
        .collect())
}

/// The content bundles (`content-*/*.zst` in the content directory), linked into `staged`
/// when given, each cut into parts of CONTENT_PART_SIZE named as CanvOS's
/// `split --bytes=3GB --numeric-suffixes` names them: `NAME_part00`, `NAME_part01`, ... (a
/// bundle smaller than a part is `NAME_part00` alone). The Palette agent joins them again.
fn content_bundles(spec: &Spec<'_>, staged: Option<&Path>) -> Result<Vec<Bundle>, IsoError> {
    let part = spec.settings.content_part_size.0;
    let mut bundles: Vec<Bundle> = Vec::new();
    for file in content::find(spec.content_dir)? {
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if let Some(other) = bundles
            .iter()
            .find(|b| b.source.file_name() == file.file_name())
        {
            return Err(IsoError::Content(format!(
                "{} and {} have the same name and would both be {CONTENT_DIR}/{name}_part*; rename one",
                other.source.display(),
                file.display()
            )));
        }
        let size = file
            .metadata()
            .map_err(io(format!("reading {}", file.display())))?
            .len();
        let parts = (0..size.div_ceil(part))
            .map(|i| format!("{CONTENT_DIR}/{name}_part{}", split_suffix(i)))
            .collect();
        let absolute =
            std::fs::canonicalize(&file).map_err(io(format!("reading {}", file.display())))?;
        if let Some(staged) = staged {
            std::os::unix::fs::symlink(&absolute, staged.join(&name))
                .map_err(io("staging content bundles"))?;
        }
        bundles.push(Bundle {
            source: absolute,
            size,
            part_size: part,
            parts,
        });
    }
    Ok(bundles)
}

/// The suffix GNU `split --numeric-suffixes` gives part `i`: two digits, and when those run
/// out, `9000`, `9001`, ... (so that names still sort in order).
fn split_suffix(i: u64) -> String {
    match i {
        0..90 => format!("{i:02}"),
        _ => format!("{}", 9000 + (i - 90)),
    }
}

/// The xorriso command: label, the site's tree, the image-dependent parts of `arch` (`system`
/// names each where the tools see it), content bundles (cut into parts), ownership and modes,
/// BIOS El Torito with GRUB's hybrid MBR where the architecture has BIOS, the ESP appended as
/// GPT partition 2 and named by the UEFI El Torito entry.
fn xorriso_args(
    out: &str,
    tree: &str,
    arch: &Arch,
    system: &dyn Fn(&str) -> String,
    bundles: &[Bundle],
    host: bool,
    epoch: Option<u64>,
) -> Vec<String> {
    let mut args = argv(&[
        "xorriso",
        "-report_about",
        "WARNING",
        "-outdev",
        out,
        "-volid",
        LABEL,
        "-joliet",
        "off",
        "-padding",
        "0",
        "-map",
        tree,
        "/",
    ]);
    for (file, iso_path) in system_files(arch) {
        args.extend(["-map".into(), system(file), format!("/{iso_path}")]);
    }
    for bundle in bundles {
        let staged = if host {
            bundle.source.display().to_string()
        } else {
            format!(
                "content/{}",
                bundle
                    .source
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
            )
        };
        if let [whole] = bundle.parts.as_slice() {
            args.extend(["-map".into(), staged, whole.clone()]);
            continue;
        }
        for (i, iso_path) in bundle.parts.iter().enumerate() {
            let offset = bundle.part_size * i as u64;
            let length = bundle.part_size.min(bundle.size - offset);
            args.extend([
                "-cut_out".into(),
                staged.clone(),
                offset.to_string(),
                length.to_string(),
                iso_path.clone(),
            ]);
        }
    }
    args.extend(argv(&[
        "-chown_r",
        "0",
        "/",
        "--",
        "-chgrp_r",
        "0",
        "/",
        "--",
        "-chmod_r",
        "a+r,go-w",
        "/",
        "--",
        "-find",
        "/",
        "-type",
        "d",
        "-exec",
        "chmod",
        "0755",
        "--",
        "-chmod",
        "0600",
        "/config.yaml",
        "--",
    ]));
    if let Some(epoch) = epoch {
        args.extend([
            "-volume_date".into(),
            "all_file_dates".into(),
            format!("={epoch}"),
        ]);
    }
    let bios = arch.bios.as_ref();
    let boot = |kind: &str, setting: &str| argv(&["-boot_image", kind, setting]);
    if let Some(bios) = bios {
        for setting in [
            format!("bin_path=/{}", bios.image),
            format!("grub2_mbr={}", bios.hybrid_mbr),
            "grub2_boot_info=on".to_string(),
        ] {
            args.extend(boot("grub", &setting));
        }
    }
    args.extend(boot("any", "partition_offset=16"));
    if bios.is_some() {
        args.extend(boot("any", "mbr_force_bootable=on"));
    }
    for setting in ["cat_path=/boot/boot.catalog", "cat_hidden=on"] {
        args.extend(boot("any", setting));
    }
    if bios.is_some() {
        for setting in [
            "boot_info_table=on",
            "platform_id=0x00",
            "emul_type=no_emulation",
            "load_size=2048",
        ] {
            args.extend(boot("any", setting));
        }
    }
    args.extend(argv(&[
        "-append_partition",
        "2",
        "0xef",
        &system("esp.img"),
    ]));
    if bios.is_some() {
        args.extend(boot("any", "next"));
    }
    for setting in [
        "efi_path=--interval:appended_partition_2:all::",
        "platform_id=0xef",
        "emul_type=no_emulation",
        "appended_part_as=gpt",
    ] {
        args.extend(boot("any", setting));
    }
    args
}

/// sha256 (hex) and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let (digest, size) = crate::oci::BlobFile::plain(path.to_path_buf()).sha256()?;
    Ok((digest.hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Layers, Templates};

    /// forge's own boot facts of the architecture `name`.
    fn arch(name: &str) -> Arch {
        let templates = Templates::load(None).unwrap();
        templates.data("boot.yaml", &Layers::arch(name)).unwrap()
    }

    /// The boot part of the xorriso command for `arch`: what follows `-volume_date`.
    fn boot_args(arch: &Arch) -> Vec<String> {
        let args = xorriso_args(
            "out.iso",
            "site-0",
            arch,
            &|f| format!("sys/{f}"),
            &[],
            false,
            Some(1),
        );
        let start = args.iter().position(|a| a == "-volume_date").unwrap() + 3;
        args[start..].to_vec()
    }

    #[test]
    fn amd64_isos_boot_from_bios_el_torito_with_the_hybrid_mbr_and_from_the_esp() {
        let amd64 = arch("amd64");
        let args = xorriso_args(
            "out.iso",
            "site-0",
            &amd64,
            &|f| format!("sys/{f}"),
            &[],
            false,
            None,
        );
        let maps: Vec<&[String]> = args.windows(3).filter(|w| w[0] == "-map").collect();
        assert_eq!(
            maps.iter()
                .map(|w| format!("{} {}", w[1], w[2]))
                .collect::<Vec<_>>(),
            [
                "site-0 /",
                "sys/rootfs.squashfs /rootfs.squashfs",
                "sys/kernel /boot/kernel",
                "sys/initrd /boot/initrd",
                "sys/eltorito.img /boot/grub/i386-pc/eltorito.img",
            ]
        );
        // As forge has always written it.
        let expected = [
            "-boot_image grub bin_path=/boot/grub/i386-pc/eltorito.img",
            "-boot_image grub grub2_mbr=/usr/lib/grub/i386-pc/boot_hybrid.img",
            "-boot_image grub grub2_boot_info=on",
            "-boot_image any partition_offset=16",
            "-boot_image any mbr_force_bootable=on",
            "-boot_image any cat_path=/boot/boot.catalog",
            "-boot_image any cat_hidden=on",
            "-boot_image any boot_info_table=on",
            "-boot_image any platform_id=0x00",
            "-boot_image any emul_type=no_emulation",
            "-boot_image any load_size=2048",
            "-append_partition 2 0xef sys/esp.img",
            "-boot_image any next",
            "-boot_image any efi_path=--interval:appended_partition_2:all::",
            "-boot_image any platform_id=0xef",
            "-boot_image any emul_type=no_emulation",
            "-boot_image any appended_part_as=gpt",
        ];
        assert_eq!(boot_args(&amd64).join(" "), expected.join(" "));
    }

    #[test]
    fn arm64_isos_boot_from_the_esp_alone() {
        let arm64 = arch("arm64");
        let args = xorriso_args(
            "out.iso",
            "site-0",
            &arm64,
            &|f| format!("sys/{f}"),
            &[],
            false,
            None,
        );
        assert!(!args.iter().any(|a| a.contains("eltorito")), "{args:?}");
        let expected = [
            "-boot_image any partition_offset=16",
            "-boot_image any cat_path=/boot/boot.catalog",
            "-boot_image any cat_hidden=on",
            "-append_partition 2 0xef sys/esp.img",
            "-boot_image any efi_path=--interval:appended_partition_2:all::",
            "-boot_image any platform_id=0xef",
            "-boot_image any emul_type=no_emulation",
            "-boot_image any appended_part_as=gpt",
        ];
        assert_eq!(boot_args(&arm64).join(" "), expected.join(" "));
    }

    #[test]
    fn the_esp_is_sized_for_the_architecture_s_loader() {
        let dir = tempfile::tempdir().unwrap();
        let esp = dir.path().join("EFI/BOOT");
        std::fs::create_dir_all(&esp).unwrap();
        std::fs::write(esp.join("bootaa64.efi"), vec![0u8; (5 << 20) + (100 << 10)]).unwrap();
        assert_eq!(esp_kib(dir.path(), "bootaa64.efi").unwrap(), 7 * 1024);
        assert_eq!(
            esp_kib(dir.path(), "bootx64.efi").unwrap(),
            8192,
            "no loader yet: room for the GRUB forge builds"
        );
    }
}
