//! Files the ISO takes from the installer image: the kernel and initrd (first `vmlinuz*` and
//! `initrd*` / `initramfs*` in `/boot`, links followed) and the EFI loader (shim and GRUB)
//! when the image has one. Read through the Engine's archive API from a created, never
//! started container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;

use super::arch::{Efi, Uefi};
use super::IsoError;
use crate::engine::{Container, EngineError};

/// Symbolic links followed at most.
const MAX_LINKS: usize = 16;

/// What a path in the image is.
enum Node {
    File(PathBuf),
    Link(String),
    Other,
}

/// The EFI loader found in the image.
pub struct EfiLoader {
    /// `(name in EFI/BOOT, image path)`: the architecture's loader (`bootx64.efi`), plus its
    /// GRUB name (`grubx64.efi`) behind a shim.
    pub files: Vec<(String, String)>,
    /// The ESP directory whose grub.cfg the image vendor's signed GRUB reads (`ubuntu`, ...).
    pub vendor: Option<String>,
}

/// Copy the image's kernel and initrd to `dir/kernel` and `dir/initrd`.
pub async fn boot_files(
    container: &Container,
    image: &str,
    dir: &Path,
    scratch: &Path,
) -> Result<(), IsoError> {
    let listing = read_tar(container, "/boot", scratch, |name| {
        ["vmlinuz", "initrd", "initramfs"]
            .iter()
            .any(|p| name.starts_with(p))
    })
    .await;
    let listing = match listing {
        Err(IsoError::Engine(EngineError::NoSuchPath { .. })) => BTreeMap::new(),
        other => other?,
    };
    for (what, prefixes, dest) in [
        ("kernel", &["vmlinuz"][..], "kernel"),
        ("initrd", &["initrd", "initramfs"][..], "initrd"),
    ] {
        let first = listing
            .keys()
            .filter(|name| !name.contains('/') && prefixes.iter().any(|p| name.starts_with(p)))
            .min()
            .ok_or_else(|| IsoError::NoBootFile {
                image: image.to_string(),
                what,
                searched: prefixes
                    .iter()
                    .map(|p| format!("/boot/{p}*"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let found = resolve(
            container,
            image,
            &listing,
            &format!("/boot/{first}"),
            scratch,
        )
        .await?;
        stage(&found, &dir.join(dest))?;
    }
    Ok(())
}

/// The image's shim and GRUB EFI binaries (`efi.shim`, `efi.grub`), copied to `dir` under the
/// names `uefi` gives them, when it has them, and the ESP directory of its vendor
/// (`/etc/os-release` ID in `efi.vendors`).
pub async fn efi_loader(
    container: &Container,
    image: &str,
    efi: &Efi,
    uefi: &Uefi,
    dir: &Path,
    scratch: &Path,
) -> Result<Option<EfiLoader>, IsoError> {
    let Some(grub) = first_present(container, image, &efi.grub, scratch).await? else {
        return Ok(None);
    };
    let files = match first_present(container, image, &efi.shim, scratch).await? {
        Some(shim) => vec![(&uefi.loader, shim), (&uefi.grub, grub)],
        None => vec![(&uefi.loader, grub)],
    };
    let vendor = match first_present(container, image, &OS_RELEASE, scratch).await? {
        Some((_, file)) => os_release_id(&file)?.and_then(|id| efi.vendors.get(&id).cloned()),
        None => None,
    };
    let mut loader = EfiLoader {
        files: Vec::new(),
        vendor,
    };
    for (name, (source, file)) in files {
        stage(&file, &dir.join(name))?;
        loader.files.push((name.clone(), source));
    }
    Ok(Some(loader))
}

/// Where an image says what it is.
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// The `ID` of an os-release file.
fn os_release_id(file: &Path) -> Result<Option<String>, IsoError> {
    let text = std::fs::read_to_string(file).map_err(|source| IsoError::Io {
        what: "reading the image's os-release".into(),
        source,
    })?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|id| id.trim().trim_matches(['"', '\'']).to_string()))
}

/// The first of `candidates` the image has, copied into `scratch`: (image path, copy).
async fn first_present(
    container: &Container,
    image: &str,
    candidates: &[impl AsRef<str>],
    scratch: &Path,
) -> Result<Option<(String, PathBuf)>, IsoError> {
    for path in candidates.iter().map(AsRef::as_ref) {
        match resolve(container, image, &BTreeMap::new(), path, scratch).await {
            Ok(file) => return Ok(Some((path.to_string(), file))),
            Err(IsoError::Engine(EngineError::NoSuchPath { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Move a file read from the image to its place in the staging tree.
fn stage(file: &Path, target: &Path) -> Result<(), IsoError> {
    std::fs::rename(file, target).map_err(|source| IsoError::Io {
        what: format!("staging {}", target.display()),
        source,
    })
}

/// Follow `path` through symbolic links to a regular file, copied into `scratch`.
async fn resolve(
    container: &Container,
    image: &str,
    boot: &BTreeMap<String, Node>,
    path: &str,
    scratch: &Path,
) -> Result<PathBuf, IsoError> {
    let mut path = path.to_string();
    for _ in 0..MAX_LINKS {
        let local = path.strip_prefix("/boot/").and_then(|name| boot.get(name));
        let fetched;
        let node = match local {
            Some(node) => node,
            None => {
                let mut one = read_tar(container, &path, scratch, |_| true).await?;
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                fetched = one.remove(&name).unwrap_or(Node::Other);
                &fetched
            }
        };
        match node {
            Node::File(file) => {
                let copy = scratch.join(format!("resolved{}", path.replace('/', "_")));
                std::fs::copy(file, &copy).map_err(|source| IsoError::Io {
                    what: format!("copying {path} out of {image}"),
                    source,
                })?;
                return Ok(copy);
            }
            Node::Link(target) => path = join(&path, target),
            Node::Other => {
                return Err(IsoError::Tools(format!(
                    "{path} in {image} is not a regular file"
                )))
            }
        }
    }
    Err(IsoError::Tools(format!(
        "{path} in {image}: more than {MAX_LINKS} symbolic links"
    )))
}

/// The absolute path a link at `link` pointing to `target` names.
fn join(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link.split('/').filter(|p| !p.is_empty()).collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Download `path` from the container; returns its entries by path below `path`'s parent
/// (the top entry by its own name), regular files saved in `scratch` when `keep` says so.
async fn read_tar(
    container: &Container,
    path: &str,
    scratch: &Path,
    keep: fn(&str) -> bool,
) -> Result<BTreeMap<String, Node>, IsoError> {
    let mut stream = Box::pin(container.download(path));
    // Surface "no such path" before handing the stream to the tar reader.
    let first = match stream.next().await {
        Some(chunk) => chunk?,
        None => return Ok(BTreeMap::new()),
    };
    let rest = futures_util::stream::iter([Ok(first)]).chain(stream);
    let reader = tokio_util::io::StreamReader::new(rest.map(|c| c.map_err(std::io::Error::other)));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let scratch = scratch.to_path_buf();
    let top = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let read = move || -> std::io::Result<BTreeMap<String, Node>> {
        let mut archive = tar::Archive::new(bridge);
        let mut nodes = BTreeMap::new();
        for (i, entry) in archive.entries()?.enumerate() {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let name = name
                .strip_prefix(&format!("{top}/"))
                .unwrap_or(&name)
                .trim_end_matches('/')
                .to_string();
            let node = match entry.header().entry_type() {
                tar::EntryType::Regular if keep(&name) => {
                    let file = scratch.join(format!("entry-{i}"));
                    std::io::copy(&mut entry, &mut std::fs::File::create(&file)?)?;
                    Node::File(file)
                }
                tar::EntryType::Symlink => Node::Link(
                    entry
                        .link_name()?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => Node::Other,
            };
            nodes.insert(name, node);
        }
        Ok(nodes)
    };
    let entries = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| IsoError::Tools(e.to_string()))?
        .map_err(|source| IsoError::Io {
            what: format!("reading {path} from the image"),
            source,
        })?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn links_resolve_like_the_kernel_would() {
        assert_eq!(
            join("/boot/vmlinuz", "vmlinuz-6.1.0"),
            "/boot/vmlinuz-6.1.0"
        );
        assert_eq!(join("/boot/initrd", "../usr/lib/initrd"), "/usr/lib/initrd");
        assert_eq!(
            join("/boot/vmlinuz", "/usr/lib/modules/6/vmlinuz"),
            "/usr/lib/modules/6/vmlinuz"
        );
        assert_eq!(join("/boot/a", "./b/../c"), "/boot/c");
    }
}
