//! The Docker Engine, through bollard: connecting (`DOCKER_HOST` unix or tcp, TLS with
//! `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH`, API version negotiated),
//! building images from a context streamed as tar (`.dockerignore` honoured, intermediate
//! containers always removed), inspecting images, and exporting an image into files ready to
//! push as an OCI image (config, gzip layers, manifest), streamed through disk rather than
//! memory; the containers forge runs for itself (`container`).

mod container;
pub mod leftovers;
pub use container::{Container, Finished};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use serde_json::json;

use crate::config::Environment;
use crate::oci::{Algorithm, Digest, Hasher};

use crate::oci::{BlobFile, LocalImage, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {host} ({detail}); start it (`dockerd`, or `systemctl start docker`) or point DOCKER_HOST at a running engine")]
    Unreachable { host: String, detail: String },
    #[error("image `{0}` is not in the local Docker Engine; build or pull it first")]
    NoSuchImage(String),
    #[error("pulling {image}: {detail}\n  (credentials come from the Docker config, `docker login`; a private registry's CA goes in /etc/docker/certs.d/HOST:PORT/ca.crt)")]
    Pull { image: String, detail: String },
    #[error("Docker Engine: {0}")]
    Api(String),
    #[error("`{path}` does not exist in the container")]
    NoSuchPath { path: String },
    #[error("building {image} failed: {message}\n{tail}")]
    Build {
        image: String,
        message: String,
        tail: String,
    },
    #[error("exported image `{image}` is malformed: {detail}")]
    Export { image: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// The engine `DOCKER_HOST` names (default: the local socket).
pub fn default_address(env: &Environment) -> String {
    env.docker_host
        .clone()
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// A Docker Engine a build uses, the address it was reached at and how (the environment's
/// TLS settings), so that it can be reached again (a container's removal on a stop).
#[derive(Clone)]
pub struct Engine {
    pub address: String,
    pub docker: Docker,
    pub env: Environment,
}

impl Engine {
    /// Connect to the engine at `address` (see [`connect_to`]).
    pub async fn connect(address: &str, env: &Environment) -> Result<Engine, EngineError> {
        Ok(Engine {
            address: address.to_string(),
            docker: connect_to(address, env).await?,
            env: env.clone(),
        })
    }

    /// Whether the engine runs on this machine (its data root is a local directory).
    pub fn is_local(&self) -> bool {
        self.address.starts_with("unix://")
    }
}

/// Connect to the engine `DOCKER_HOST` names (default: the local socket) and agree on an API
/// version both sides speak.
pub async fn connect(env: &Environment) -> Result<Docker, EngineError> {
    connect_to(&default_address(env), env).await
}

/// Connect to the engine at `url` (`unix:///PATH`, `tcp://HOST:PORT`, as `DOCKER_HOST`; TLS as
/// the Docker CLI: `DOCKER_TLS_VERIFY` with the client certificates in `DOCKER_CERT_PATH`) and
/// agree on an API version both sides speak.
pub async fn connect_to(url: &str, env: &Environment) -> Result<Docker, EngineError> {
    let unreachable = |detail: String| EngineError::Unreachable {
        host: url.to_string(),
        detail,
    };
    let tls = env.docker_tls_verify;
    const TIMEOUT: u64 = 120;
    let api = bollard::API_DEFAULT_VERSION;
    let docker = match url.split_once("://") {
        Some(("unix", path)) => Docker::connect_with_unix(path, TIMEOUT, api),
        Some(("tcp" | "https", address)) if tls => {
            let certs = env.docker_cert_path.clone().unwrap_or_default();
            Docker::connect_with_ssl(
                address,
                &certs.join("key.pem"),
                &certs.join("cert.pem"),
                &certs.join("ca.pem"),
                TIMEOUT,
                api,
            )
        }
        Some(("tcp" | "http", address)) => Docker::connect_with_http(address, TIMEOUT, api),
        _ => {
            return Err(unreachable(
                "not an engine address: give unix:///PATH or tcp://HOST:PORT".into(),
            ))
        }
    }
    .map_err(|e| unreachable(short(&e)))?;
    docker.ping().await.map_err(|e| unreachable(short(&e)))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(short(&e)))
}

fn short(e: &bollard::errors::Error) -> String {
    let text = e.to_string();
    if ["No such file", "Socket not found", "onnection refused"]
        .iter()
        .any(|s| text.contains(s))
    {
        "no engine is listening".into()
    } else {
        crate::limits::clip(&text).into_owned()
    }
}

/// The image's config digest (its ID), or `NoSuchImage`.
pub async fn image_id(docker: &Docker, image: &str) -> Result<String, EngineError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => inspect
            .id
            .ok_or_else(|| EngineError::Api(format!("image `{image}` has no ID"))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(EngineError::NoSuchImage(image.to_string())),
        Err(e) => Err(EngineError::Api(e.to_string())),
    }
}

/// Tag the local image `image` as `target` (`REPOSITORY:TAG`).
pub async fn tag(docker: &Docker, image: &str, target: &str) -> Result<(), EngineError> {
    let (repo, tag) = match target.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (target, "latest"),
    };
    let options = bollard::query_parameters::TagImageOptions {
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
    };
    docker
        .tag_image(image, Some(options))
        .await
        .map_err(|e| EngineError::Api(format!("tagging {image} as {target}: {e}")))
}

/// The labels of a local image, `None` when the engine does not have it.
pub async fn labels(
    docker: &Docker,
    image: &str,
) -> Result<Option<HashMap<String, String>>, EngineError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(
            inspect.config.and_then(|c| c.labels).unwrap_or_default(),
        )),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(EngineError::Api(e.to_string())),
    }
}

/// Label of the build-stage images that hold a secret (the luet repository's credentials):
/// the classic builder keeps every step's image as cache, so forge removes these after the
/// provider builds, and after a stop.
pub const SECRET_LABEL: &str = "dev.forge.secret";

/// Remove every image labelled [`SECRET_LABEL`], newest first (a step's image before the
/// one it was made from); how many went. Images in use or already gone are skipped.
pub async fn remove_secret_images(docker: &Docker) -> usize {
    let options = bollard::query_parameters::ListImagesOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![SECRET_LABEL.to_string()],
        )])),
        ..Default::default()
    };
    let mut images = docker.list_images(Some(options)).await.unwrap_or_default();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let mut removed = 0;
    for image in images {
        if docker
            .remove_image(
                &image.id,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
            .is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// What to build: the context directory (with its Dockerfile), the tag, labels and build
/// arguments (proxies: Docker keeps its predefined proxy arguments out of the history).
pub struct Build<'a> {
    pub context: &'a Path,
    /// What the context leaves out besides its `.dockerignore`.
    pub exclude: &'a crate::render::Exclude,
    pub tag: &'a str,
    pub labels: HashMap<String, String>,
    pub build_args: HashMap<String, String>,
    /// Credentials for the registries of the images the build starts `FROM`.
    pub credentials: Credentials,
}

/// Registry credentials by server address, as the engine takes them for pulls and builds.
pub type Credentials = HashMap<String, bollard::auth::DockerCredentials>;

/// The Docker config's credentials (helpers included) for the registries of `images`.
pub async fn credentials_for(
    env: &Environment,
    images: &[String],
) -> Result<Credentials, EngineError> {
    let config = crate::registry::credentials::DockerCredentials::load(env)
        .map_err(|e| EngineError::Api(e.to_string()))?;
    let mut found = Credentials::new();
    for image in images {
        let Ok(reference) = crate::reference::Reference::parse(image) else {
            continue;
        };
        let host = reference.canonical().host;
        let address = server_address(&host);
        if found.contains_key(&address) {
            continue;
        }
        let looked_up = config
            .lookup(&host)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))?;
        if let Some(crate::secret::Credentials { username, password }) = looked_up {
            found.insert(
                address.clone(),
                bollard::auth::DockerCredentials {
                    username: Some(username),
                    password: Some(password),
                    serveraddress: Some(address),
                    ..Default::default()
                },
            );
        }
    }
    Ok(found)
}

/// The key the engine files a registry's credentials under (Docker Hub's is historical).
fn server_address(host: &str) -> String {
    match host {
        "docker.io" => "https://index.docker.io/v1/".to_string(),
        host => host.to_string(),
    }
}

/// Make sure the engine has `image`: pull it, with the credentials for its registry, when it
/// does not. The engine verifies the registry's TLS with its own CAs
/// (`/etc/docker/certs.d/HOST:PORT/ca.crt`).
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    credentials: &Credentials,
) -> Result<(), EngineError> {
    match image_id(docker, image).await {
        Ok(_) => return Ok(()),
        Err(EngineError::NoSuchImage(_)) => {}
        Err(e) => return Err(e),
    }
    let auth = crate::reference::Reference::parse(image)
        .ok()
        .and_then(|r| {
            credentials
                .get(&server_address(&r.canonical().host))
                .cloned()
        });
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(image.to_string()),
        ..Default::default()
    };
    let mut pulling = docker.create_image(Some(options), None, auth);
    while let Some(item) = pulling.next().await {
        let info = item.map_err(|e| EngineError::Pull {
            image: image.to_string(),
            detail: match e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                bollard::errors::Error::DockerStreamError { error } => error,
                e => e.to_string(),
            },
        })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(EngineError::Pull {
                image: image.to_string(),
                detail: crate::limits::clip(&detail).into_owned(),
            });
        }
    }
    image_id(docker, image).await.map(drop)
}

/// How CanvOS finds an image's systemd version: the first `systemctl` on the PATH (or in the
/// usual places), the second word of `systemctl --version`; 0 when there is none.
const SYSTEMD_PROBE: &str = r#"for c in systemctl /usr/bin/systemctl /bin/systemctl /usr/local/bin/systemctl /usr/sbin/systemctl /sbin/systemctl; do
  if command -v "$c" >/dev/null 2>&1; then v=$("$c" --version 2>/dev/null | awk 'NR==1{print $2}'); break; fi
done
case "$v" in ''|*[!0-9]*) v=0 ;; esac
echo "systemd-version=$v""#;

/// The systemd version of `image` (which the engine must have), probed as CanvOS does.
pub async fn systemd_version(engine: &Engine, image: &str) -> Result<u32, EngineError> {
    let container = Container::create(
        engine,
        image,
        Some(vec!["sh".into(), "-c".into(), "sleep 600".into()]),
    )
    .await?;
    let found = std::sync::Mutex::new(None);
    let finished = container
        .exec(
            &["sh".into(), "-c".into(), SYSTEMD_PROBE.into()],
            "/",
            &[],
            None,
            &|line| {
                if let Some(v) = line.strip_prefix("systemd-version=") {
                    *found.lock().expect("not poisoned") = v.trim().parse::<u32>().ok();
                }
            },
        )
        .await;
    container.remove().await?;
    let finished = finished?;
    let version = found.into_inner().expect("not poisoned");
    version.ok_or_else(|| {
        EngineError::Api(format!(
            "probing the systemd version of {image} failed (exit {}):\n{}",
            finished.code,
            finished.tail.render()
        ))
    })
}

/// Whether `path` exists in `image` (which the engine must have).
pub async fn has_path(engine: &Engine, image: &str, path: &str) -> Result<bool, EngineError> {
    let container = Container::create(engine, image, None).await?;
    let found = match std::pin::pin!(container.download(path)).next().await {
        Some(Err(EngineError::NoSuchPath { .. })) => Ok(false),
        Some(Err(e)) => Err(e),
        _ => Ok(true),
    };
    container.remove().await?;
    found
}

/// The last lines of a command's output, kept for its error message.
#[derive(Debug, Default)]
pub struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 20;

    pub fn push(&mut self, line: &str) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }

    /// The lines, each indented with `  | `.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Build an image with the classic builder; `on_line` receives each output line. Returns the
/// image ID.
pub async fn build(
    docker: &Docker,
    build: Build<'_>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<String, EngineError> {
    leftovers::using_engine();
    let (writer, reader) = tokio::io::duplex(1 << 20);
    let context = build.context.to_path_buf();
    let exclude = build.exclude.clone();
    let packer = tokio::task::spawn_blocking(move || {
        write_context_tar(
            &context,
            &exclude,
            tokio_util::io::SyncIoBridge::new(writer),
        )
    });
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(reader));
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(build.tag.to_string()),
        rm: true,
        forcerm: true,
        labels: Some(build.labels),
        buildargs: Some(build.build_args),
        ..Default::default()
    };
    let credentials = Some(build.credentials).filter(|c| !c.is_empty());
    let mut stream = docker.build_image(options, credentials, Some(body));
    let mut tail = Tail::default();
    let mut id = None;
    let mut failure = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                failure = Some(error);
                break;
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        };
        if let Some(text) = info.stream.as_deref() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                on_line(line);
                tail.push(line);
            }
        }
        if let Some(detail) = info.error_detail {
            failure = Some(detail.message.unwrap_or_default());
        }
        if let Some(aux) = info.aux.and_then(|a| a.id) {
            id = Some(aux);
        }
    }
    packer
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?
        .map_err(|source| EngineError::Io {
            what: format!("build context of {}", build.tag),
            source,
        })?;
    let tail_text = tail.render();
    if let Some(message) = failure {
        return Err(EngineError::Build {
            image: build.tag.to_string(),
            message,
            tail: tail_text,
        });
    }
    match id {
        Some(id) => Ok(id),
        None => image_id(docker, build.tag).await,
    }
}

/// Write `dir` as a tar stream, leaving out what its `.dockerignore` excludes and `exclude`.
fn write_context_tar(
    dir: &Path,
    exclude: &crate::render::Exclude,
    out: impl Write,
) -> std::io::Result<()> {
    let ignore = crate::render::dockerignore(dir, exclude)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    // The engine's archive reader refuses GNU sparse entries (`unhandled tar header type
    // 83`): sparse files (a FAT image made by mkfs.vfat -C, say) go as plain files.
    tar.sparse(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("below the context root");
        let meta = entry.metadata().map_err(std::io::Error::other)?;
        if rel != Path::new("Dockerfile") && ignore(rel, &meta) {
            continue;
        }
        tar.append_path_with_name(entry.path(), rel)?;
    }
    tar.into_inner()?.flush()
}

/// `docker save` layout: `manifest.json` lists the config and the layer tar files.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    layers: Vec<String>,
}

/// Export `image` from the engine into `dir` as an OCI image: config blob, gzip-compressed
/// layers (deterministic, so a re-export gives the same digests) and manifest.
/// Compressed layers of one run, by diff ID, so that images sharing layers (provider images
/// over one base) compress them once.
#[derive(Clone)]
pub struct LayerCache {
    dir: PathBuf,
    known: Arc<Mutex<HashMap<String, Compressed>>>,
}

/// A compressed layer: its file, digest and size.
#[derive(Clone)]
struct Compressed {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

impl LayerCache {
    /// Keep the compressed layers in `dir` (which must outlive the pushes).
    pub fn new(dir: &Path) -> LayerCache {
        LayerCache {
            dir: dir.to_path_buf(),
            known: Arc::default(),
        }
    }

    fn get(&self, diff_id: &str) -> Option<Compressed> {
        self.known
            .lock()
            .expect("layer cache lock")
            .get(diff_id)
            .cloned()
    }
}

pub async fn export(
    docker: &Docker,
    image: &str,
    dir: &Path,
    layers: &LayerCache,
) -> Result<LocalImage, EngineError> {
    image_id(docker, image).await?;
    let unpacked = dir.join("export");
    let stream = docker.export_image(image).map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let target = unpacked.clone();
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || tar::Archive::new(bridge).unpack(&target))
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?
        .map_err(|source| EngineError::Io {
            what: format!("exporting `{image}`"),
            source,
        })?;
    let image = image.to_string();
    let layers = layers.clone();
    tokio::task::spawn_blocking(move || assemble(&image, &unpacked, &layers))
        .await
        .map_err(|e| EngineError::Api(e.to_string()))?
}

fn assemble(image: &str, unpacked: &Path, cache: &LayerCache) -> Result<LocalImage, EngineError> {
    let malformed = |detail: String| EngineError::Export {
        image: image.to_string(),
        detail,
    };
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |source| EngineError::Io { what, source }
    };
    let manifest_path = unpacked.join("manifest.json");
    let text = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let saved: Vec<SaveManifest> =
        serde_json::from_slice(&text).map_err(|e| malformed(format!("manifest.json: {e}")))?;
    let saved = saved
        .into_iter()
        .next()
        .ok_or_else(|| malformed("manifest.json lists no image".into()))?;
    let config_path = unpacked.join(&saved.config);
    let config = std::fs::read(&config_path).map_err(io(&config_path))?;
    let diff_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&config)
        .ok()
        .and_then(|c| c["rootfs"]["diff_ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    let config_digest = Digest::sha256(&config);
    let mut blobs = HashMap::from([(config_digest.clone(), BlobFile::plain(config_path))]);
    let mut layers = Vec::new();
    std::fs::create_dir_all(&cache.dir).map_err(io(&cache.dir))?;
    for (i, layer) in saved.layers.iter().enumerate() {
        let raw = unpacked.join(layer);
        let known = diff_ids.get(i).and_then(|d| cache.get(d));
        let Compressed {
            path: gz,
            digest,
            size,
        } = match known {
            Some(entry) => entry,
            None => {
                let staged = cache.dir.join(format!(
                    ".{image_hash}-{i}.tar.gz",
                    image_hash = Digest::sha256(image.as_bytes()).short()
                ));
                let (diff_id, digest, size) = compress(&raw, &staged).map_err(io(&raw))?;
                if diff_ids
                    .get(i)
                    .is_some_and(|expected| diff_id != **expected)
                {
                    return Err(malformed(format!(
                        "layer {i} has diff ID {diff_id}, the config says {}",
                        diff_ids[i]
                    )));
                }
                let gz = cache.dir.join(format!("{}.tar.gz", diff_id.hex()));
                std::fs::rename(&staged, &gz).map_err(io(&gz))?;
                let entry = Compressed {
                    path: gz,
                    digest,
                    size,
                };
                cache
                    .known
                    .lock()
                    .expect("layer cache lock")
                    .insert(diff_id.to_string(), entry.clone());
                entry
            }
        };
        std::fs::remove_file(&raw).map_err(io(&raw))?;
        layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size}));
        blobs.insert(digest, BlobFile::plain(gz));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    Ok(LocalImage {
        media_type: OCI_MANIFEST.into(),
        manifest: serde_json::to_vec(&manifest).expect("manifest serializes"),
        blobs,
    })
}

/// Gzip `raw` into `gz`: (sha256 of the tar, sha256 of the gzip, gzip size).
fn compress(raw: &Path, gz: &Path) -> std::io::Result<(Digest, Digest, u64)> {
    struct Hashing<W: Write> {
        inner: W,
        hasher: Hasher,
        size: u64,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let mut input = BufReader::with_capacity(1 << 20, File::open(raw)?);
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, File::create(gz)?),
        hasher: Hasher::new(Algorithm::Sha256),
        size: 0,
    };
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::default());
    let mut tar_hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tar_hasher.update(&buf[..n]);
        encoder.write_all(&buf[..n])?;
    }
    let mut out = encoder.finish()?;
    out.flush()?;
    Ok((tar_hasher.finish(), out.hasher.finish(), out.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic_and_hashes_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("layer.tar");
        std::fs::write(&raw, vec![7u8; 300_000]).unwrap();
        let a = compress(&raw, &dir.path().join("a.gz")).unwrap();
        let b = compress(&raw, &dir.path().join("b.gz")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, Digest::sha256(&vec![7u8; 300_000]));
        assert_eq!(
            a.1,
            Digest::sha256(&std::fs::read(dir.path().join("a.gz")).unwrap())
        );
    }
}
