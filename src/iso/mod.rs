//! The installer ISO (DESIGN.md §5): mastering it from the installer image without
//! privileges (`master`, with the tools in a builder container or on the host), reading it
//! back (`inspect`), booting it in QEMU (`verify`), and pushing it as an OCI image
//! (`artifact`).

pub mod arch;
pub mod artifact;
pub mod cache;
mod fat;
mod image;
pub mod inspect;
pub mod master;
mod read;
mod tools;
pub mod verify;

pub use master::{master, Bundle, Mastered, Site, Spec, ToolPlace};
pub use read::ReadError;
pub use tools::host_missing;

use crate::engine::EngineError;
use crate::render::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Tools(String),
    #[error("`{command}` failed (exit code {code}); its last output:\n{tail}")]
    Command {
        command: String,
        code: i64,
        tail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the installer image {image} has no {what}: nothing matches {searched} (links are followed); the image must carry a kernel and an initrd, e.g. a kernel package and an initrd made by `dracut --add dmsquash-live`")]
    NoBootFile {
        image: String,
        what: &'static str,
        searched: String,
    },
    #[error("not enough space: {0}")]
    Space(String),
    #[error("overlays: {0}")]
    Overlay(String),
    #[error("content bundles: {0}")]
    Content(String),
    #[error(transparent)]
    ContentDir(#[from] crate::content::ReadError),
}

/// Whether `cmd` is an executable file in a `PATH` directory.
pub fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(cmd).is_file())
}
