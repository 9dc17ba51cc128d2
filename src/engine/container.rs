//! Containers forge runs itself: one created from an image to read its files (never started),
//! and tool containers that run commands through `exec`. Each is removed when its guard is
//! dropped, also on errors and Ctrl-C.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWriteExt as _};

use super::{image_id, Engine, EngineError, Tail};

/// A container the engine holds for forge, labelled with the run that made it; removed
/// (forcibly) on drop, or by the next run when this one was killed.
pub struct Container {
    engine: Engine,
    id: String,
    removed: bool,
}

/// The end of a command run in a container.
pub struct Finished {
    pub code: i64,
    /// The last lines of its output (stdout and stderr).
    pub tail: Tail,
}

/// The command of a container that is never started: it only gives access to the files.
const NEVER_STARTED: &str = "/forge-reads-files-only";

fn api(e: bollard::errors::Error) -> EngineError {
    EngineError::Api(e.to_string())
}

impl Container {
    /// Create a container from `image`. With `cmd` it is started (a long-running command such
    /// as `sleep infinity`, for `exec`); without, it only gives access to the image's files.
    /// It never gets a network or privileges. Its command is always forge's own, never the
    /// image's: files-only images (built `FROM scratch`) have no `CMD`, which the engine
    /// refuses to create a container without, and an image's `ENTRYPOINT` would take `cmd`
    /// for its arguments.
    pub async fn create(
        engine: &Engine,
        image: &str,
        cmd: Option<Vec<String>>,
    ) -> Result<Container, EngineError> {
        let docker = &engine.docker;
        image_id(docker, image).await?;
        let start = cmd.is_some();
        let entrypoint = cmd.unwrap_or_else(|| vec![NEVER_STARTED.to_string()]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(entrypoint),
            network_disabled: Some(true),
            labels: Some(
                super::leftovers::labels()
                    .into_iter()
                    .chain([("dev.forge.role".to_string(), "tool".to_string())])
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let creating = super::leftovers::Creating::start();
        let created = docker
            .create_container(None::<CreateContainerOptions>, body)
            .await;
        creating.done();
        let created = created.map_err(api)?;
        let container = Container {
            engine: engine.clone(),
            id: created.id,
            removed: false,
        };
        if start {
            docker
                .start_container(&container.id, None)
                .await
                .map_err(api)?;
        }
        Ok(container)
    }

    /// The container's whole filesystem as a tar stream (`docker export`).
    pub fn export(&self) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        self.engine
            .docker
            .export_container(&self.id)
            .map(|chunk| chunk.map_err(api))
    }

    /// `path` in the container as a tar stream (`docker cp` out).
    pub fn download(
        &self,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let path = path.to_string();
        self.engine
            .docker
            .download_from_container(&self.id, Some(options))
            .map(move |chunk| {
                chunk.map_err(|e| match e {
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404, ..
                    } => EngineError::NoSuchPath { path: path.clone() },
                    e => api(e),
                })
            })
    }

    /// Unpack the tar stream `tar` into directory `path` of the container.
    pub async fn upload(
        &self,
        path: &str,
        tar: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<(), EngineError> {
        let options = UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        self.engine
            .docker
            .upload_to_container(&self.id, Some(options), bollard::body_stream(tar))
            .await
            .map_err(api)
    }

    /// Run `argv` in the (started) container in `workdir` with `env`, feeding it `stdin`.
    /// `on_line` sees every output line.
    pub async fn exec(
        &self,
        argv: &[String],
        workdir: &str,
        env: &[String],
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<Finished, EngineError> {
        let config = bollard::models::ExecConfig {
            cmd: Some(argv.to_vec()),
            env: Some(env.to_vec()),
            working_dir: Some(workdir.to_string()),
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .engine
            .docker
            .create_exec(&self.id, config)
            .await
            .map_err(api)?;
        let started = self
            .engine
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(api)?;
        let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(EngineError::Api("exec did not attach".into()));
        };
        let feed = async {
            if let Some(stdin) = stdin {
                tokio::io::copy(stdin, &mut input).await?;
            }
            input.shutdown().await
        };
        let mut tail = Tail::default();
        let mut partial = String::new();
        let read = async {
            while let Some(chunk) = output.next().await {
                partial.push_str(&String::from_utf8_lossy(&chunk.map_err(api)?.into_bytes()));
                while let Some(end) = partial.find(['\n', '\r']) {
                    let line: String = partial.drain(..=end).collect();
                    let line = line.trim_end();
                    if line.is_empty() {
                        continue;
                    }
                    on_line(line);
                    tail.push(line);
                }
            }
            Ok::<_, EngineError>(())
        };
        let (fed, read) = tokio::join!(feed, read);
        read?;
        if !partial.trim().is_empty() {
            tail.push(partial.trim());
        }
        let inspect = self
            .engine
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(api)?;
        let code = inspect.exit_code.unwrap_or(-1);
        if let (Err(e), 0) = (fed, code) {
            return Err(EngineError::Io {
                what: format!("feeding {}", argv[0]),
                source: e,
            });
        }
        Ok(Finished { code, tail })
    }

    /// Remove the container now.
    pub async fn remove(mut self) -> Result<(), EngineError> {
        self.removed = true;
        self.engine
            .docker
            .remove_container(&self.id, Some(force()))
            .await
            .map_err(api)
    }
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    }
}

impl Drop for Container {
    /// Removal on an error path or Ctrl-C: on a thread of its own with a fresh connection, as
    /// the runtime that made this container may be shutting down.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let id = std::mem::take(&mut self.id);
        let (address, env) = (self.engine.address.clone(), self.engine.env.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let docker = super::connect_to(&address, &env).await.ok()?;
                docker.remove_container(&id, Some(force())).await.ok()
            })
        });
        let _ = cleanup.join();
    }
}
