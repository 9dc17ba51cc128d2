//! Where the mastering tools run: in a builder container (image built from
//! `templates/iso/iso-tools.Dockerfile` with the architecture's GRUB packages) or on the host. Both run the same command lines in a work
//! directory laid out the same way; only the transport differs (files uploaded to and
//! downloaded from the container as tar streams, never held in memory).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _};

use super::arch::Arch;
use super::IsoError;
use crate::engine::{self, Container, Engine, Tail};
use crate::plan::{INPUT_HASH_LABEL, LOCAL_HOST};
use crate::render::{write_context, Exclude, Templates};

/// The commands mastering needs, and the Debian packages holding them (GRUB's platform files
/// and their packages are the architecture's: [`Arch::grub_files`]).
pub const COMMANDS: &[(&str, &str)] = &[
    ("sqfstar", "squashfs-tools"),
    ("xorriso", "xorriso"),
    ("grub-mkimage", "grub-common"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
];

/// Where the work directory is in the builder container.
const WORK: &str = "/forge";

/// The place tools run.
pub enum Runner {
    /// On this machine, in `root` (the staging directory itself).
    Host { root: PathBuf },
    /// In a builder container of `image`; the staging directory is uploaded to `/forge`.
    Container {
        container: Box<Container>,
        image: String,
    },
}

/// The Debian packages of the commands and `arch`'s GRUB files this machine lacks for
/// `--iso-tools host`.
pub fn host_missing(arch: &Arch) -> Vec<&str> {
    let mut missing: Vec<&str> = COMMANDS
        .iter()
        .filter(|(cmd, _)| !super::on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.extend(
        arch.grub_files
            .iter()
            .filter(|grub| !Path::new(&grub.file).is_file())
            .map(|grub| grub.package.as_str()),
    );
    missing.dedup();
    missing
}

impl Runner {
    /// Tools on the host: every command and GRUB file of `arch` must be there.
    pub fn host(root: &Path, arch: &Arch) -> Result<Runner, IsoError> {
        let missing = host_missing(arch);
        if !missing.is_empty() {
            return Err(IsoError::Tools(format!(
                "--iso-tools host needs {} on this machine (apt-get install {}); or leave out --iso-tools host to run them in the builder container",
                missing.join(", "),
                missing.join(" ")
            )));
        }
        Ok(Runner::Host {
            root: root.to_path_buf(),
        })
    }

    /// Tools in a builder container, started from the builder image with `arch`'s GRUB
    /// packages (built when missing).
    pub async fn container(
        engine: &Engine,
        templates: &Templates,
        settings: &crate::config::Settings,
        arch: &Arch,
        build_args: &std::collections::HashMap<String, String>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<Runner, IsoError> {
        let docker = &engine.docker;
        let image = builder_image(docker, templates, settings, arch, build_args, on_line).await?;
        let container = Container::create(
            engine,
            &image,
            Some(vec!["sleep".into(), "infinity".into()]),
        )
        .await?;
        container
            .exec(
                &["mkdir".into(), "-p".into(), WORK.into()],
                "/",
                &[],
                None,
                &|_| {},
            )
            .await?;
        Ok(Runner::Container {
            container: Box::new(container),
            image,
        })
    }

    /// What the tools' output depends on: the builder image (its tag holds its input hash),
    /// or the host's tools.
    pub fn tools_id(&self) -> String {
        match self {
            Runner::Host { .. } => "host".to_string(),
            Runner::Container { image, .. } => image.clone(),
        }
    }

    /// Copy `dir` (links followed) to `under` in the work directory, where the tools see it
    /// (a no-op on the host, where the tools work in the staging directory itself).
    pub async fn put(&self, dir: &Path, under: &str) -> Result<(), IsoError> {
        let Runner::Container { container, .. } = self else {
            return Ok(());
        };
        let target = format!("{WORK}/{under}");
        if !under.is_empty() {
            container
                .exec(
                    &["mkdir".into(), "-p".into(), target.clone()],
                    "/",
                    &[],
                    None,
                    &|_| {},
                )
                .await?;
        }
        let staging = dir;
        let (writer, reader) = tokio::io::duplex(1 << 20);
        let dir = staging.to_path_buf();
        let packer = tokio::task::spawn_blocking(move || {
            tar_dir(&dir, tokio_util::io::SyncIoBridge::new(writer))
        });
        let body = tokio_util::io::ReaderStream::new(reader).map(Result::unwrap_or_default);
        let uploaded = container.upload(&target, body).await;
        packer
            .await
            .map_err(|e| IsoError::Tools(e.to_string()))?
            .map_err(|source| IsoError::Io {
                what: format!("uploading {}", staging.display()),
                source,
            })?;
        Ok(uploaded?)
    }

    /// Run `argv` in the work directory; `stdin` is streamed to it. A non-zero exit is an
    /// error carrying the last lines of output.
    pub async fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<(), IsoError> {
        let (code, tail) = match self {
            Runner::Container { container, .. } => {
                let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let finished = container.exec(argv, WORK, &env, stdin, on_line).await?;
                (finished.code, finished.tail)
            }
            Runner::Host { root } => run_host(root, argv, env, stdin, on_line).await?,
        };
        if code != 0 {
            return Err(IsoError::Command {
                command: argv.join(" "),
                code,
                tail: tail.render(),
            });
        }
        Ok(())
    }

    /// Where xorriso writes the ISO: `dest` on the host, the work directory in a container.
    pub fn iso_path(&self, dest: &Path) -> String {
        match self {
            Runner::Host { .. } => dest.display().to_string(),
            Runner::Container { .. } => format!("{WORK}/out.iso"),
        }
    }

    /// Bring the file the tools wrote at `path` in the work directory (for the ISO:
    /// `iso_path(dest)`) to `dest` (a no-op on the host, where the tools wrote it there).
    pub async fn take(&self, file: &str, dest: &Path) -> Result<(), IsoError> {
        let Runner::Container { container, .. } = self else {
            return Ok(());
        };
        let stream = container.download(&format!("{WORK}/{file}"));
        let reader =
            tokio_util::io::StreamReader::new(stream.map(|c| c.map_err(std::io::Error::other)));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let path = dest.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut archive = tar::Archive::new(bridge);
            let mut entry = archive
                .entries()?
                .next()
                .ok_or_else(|| std::io::Error::other("empty archive"))??;
            let mut out = std::fs::File::create(&path)?;
            std::io::copy(&mut entry, &mut out)?;
            out.sync_all()
        })
        .await
        .map_err(|e| IsoError::Tools(e.to_string()))?
        .map_err(|source| IsoError::Io {
            what: format!(
                "copying {file} out of the builder container to {}",
                dest.display()
            ),
            source,
        })
    }

    /// Remove the file the tools wrote at `file` in the work directory of a builder container,
    /// once taken (xorriso writes only onto an empty output); on the host the file is already
    /// where it belongs.
    pub async fn discard(&self, file: &str) -> Result<(), IsoError> {
        if let Runner::Container { container, .. } = self {
            let path = format!("{WORK}/{file}");
            container
                .exec(&["rm".into(), "-f".into(), path], "/", &[], None, &|_| {})
                .await?;
        }
        Ok(())
    }

    /// Remove the builder container (dropping the runner does it too).
    pub async fn finish(self) -> Result<(), IsoError> {
        if let Runner::Container { container, .. } = self {
            container.remove().await?;
        }
        Ok(())
    }
}

async fn run_host(
    root: &Path,
    argv: &[String],
    env: &[(String, String)],
    stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<(i64, Tail), IsoError> {
    let io = |source| IsoError::Io {
        what: format!("running {}", argv[0]),
        source,
    };
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
    let mut child_stdin = child.stdin.take();
    let feed = async {
        if let (Some(from), Some(to)) = (stdin, child_stdin.as_mut()) {
            tokio::io::copy(from, to).await?;
            to.shutdown().await?;
        }
        drop(child_stdin);
        Ok::<_, std::io::Error>(())
    };
    let tail = std::sync::Mutex::new(Tail::default());
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (fed, _, _, status) = tokio::join!(
        feed,
        lines(stdout, &tail, on_line),
        lines(stderr, &tail, on_line),
        child.wait()
    );
    let status = status.map_err(io)?;
    let code = status.code().map_or(-1, i64::from);
    if let (Err(e), 0) = (fed, code) {
        return Err(io(e));
    }
    Ok((code, tail.into_inner().expect("tail lock")))
}

/// Hand each non-empty line of `reader` to `on_line`, keeping the last ones in `tail`.
async fn lines(
    reader: impl AsyncRead + Unpin,
    tail: &std::sync::Mutex<Tail>,
    on_line: &(dyn Fn(&str) + Sync),
) {
    let mut lines = tokio::io::BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        on_line(&line);
        tail.lock().expect("tail lock").push(&line);
    }
}

/// The builder image's Dockerfile: `iso-tools.Dockerfile` with the settings and `arch`'s GRUB
/// packages (`grub_packages`).
fn builder_dockerfile(
    templates: &Templates,
    settings: &crate::config::Settings,
    arch: &Arch,
) -> Result<String, IsoError> {
    let mut context = crate::render::context(settings);
    context.insert("grub_packages", &arch.grub_packages().join(" "));
    Ok(templates.render_dockerfile("iso/iso-tools.Dockerfile", &context)?)
}

/// The builder image: [`builder_dockerfile`] on ISO_TOOLS_IMAGE, tagged by its input hash and
/// built only when the engine does not have that tag.
async fn builder_image(
    docker: &Docker,
    templates: &Templates,
    settings: &crate::config::Settings,
    arch: &Arch,
    build_args: &std::collections::HashMap<String, String>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<String, IsoError> {
    let dockerfile = builder_dockerfile(templates, settings, arch)?;
    let hash = crate::oci::Digest::sha256(dockerfile.as_bytes());
    let tag = format!("{LOCAL_HOST}/forge-iso-tools:{}", hash.short());
    if engine::labels(docker, &tag).await?.is_some() {
        return Ok(tag);
    }
    let scratch = crate::run::temp_dir().map_err(|source| IsoError::Io {
        what: "a temporary directory".into(),
        source,
    })?;
    write_context(scratch.path(), &dockerfile, &[], &Exclude::default())?;
    let build = engine::Build {
        context: scratch.path(),
        exclude: &Exclude::default(),
        tag: &tag,
        labels: [(INPUT_HASH_LABEL.to_string(), hash.to_string())].into(),
        build_args: build_args.clone(),
        credentials: engine::credentials_for(
            &settings.environment,
            std::slice::from_ref(&settings.iso_tools_image),
        )
        .await?,
    };
    engine::build(docker, build, on_line).await?;
    Ok(tag)
}

/// `dir` as a tar stream, owned by root; modes and times as on disk. Absolute links are
/// followed (forge stages the cache entry and the content bundles as links to them); relative
/// ones, an overlay's own, stay links, as xorriso keeps them on the host.
fn tar_dir(dir: &Path, out: impl std::io::Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut entries = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(dir).expect("below the root");
        let link = entry
            .path_is_symlink()
            .then(|| std::fs::read_link(entry.path()))
            .transpose()?
            .filter(|link| link.is_relative());
        if let Some(link) = link {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, rel, link)?;
            if entry.file_type().is_dir() {
                entries.skip_current_dir();
            }
            continue;
        }
        let meta = entry.metadata().map_err(std::io::Error::other)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata(&meta);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, rel, std::io::empty())?;
        } else {
            tar.append_data(&mut header, rel, crate::limits::open(entry.path())?)?;
        }
    }
    tar.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    fn dockerfile(arch: &str) -> String {
        let settings = resolve(&Inputs {
            sets: vec![
                ("ARCH".into(), arch.into()),
                ("ISO_TOOLS_IMAGE".into(), "debian:bookworm".into()),
            ],
            ..Inputs::default()
        })
        .settings;
        let templates = Templates::load(None).unwrap();
        let arch = Arch::of(&templates, &settings).unwrap();
        builder_dockerfile(&templates, &settings, &arch).unwrap()
    }

    #[test]
    fn the_builder_image_installs_the_architecture_s_grub_packages() {
        // amd64's is the Dockerfile forge has always built (so the same builder image tag).
        assert_eq!(
            dockerfile("amd64"),
            "# The ISO builder image: the tools forge runs to master the installer ISO (squashfs-tools,
# xorriso, GRUB, mtools, dosfstools), on ISO_TOOLS_IMAGE (any Debian-like image with apt).
FROM debian:bookworm
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      squashfs-tools xorriso mtools dosfstools grub-common grub-pc-bin grub-efi-amd64-bin \\
 && rm -rf /var/lib/apt/lists/*
"
        );
        let arm64 = dockerfile("arm64");
        assert!(
            arm64.contains("dosfstools grub-common grub-efi-arm64-bin \\\n"),
            "{arm64}"
        );
    }
}
