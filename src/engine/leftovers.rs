//! The containers of forge's runs in the engine: which runs used the engine, the creations a
//! stop cut short, and the removal of what a run left (its own after a signal, dead runs' at
//! the start of the next). Containers carry the run's labels (`run::RUN_LABEL`, ...), so that
//! whether their run is alive is a question `/proc` answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

use crate::run::{self, HOST_LABEL, RUN_LABEL, UID_LABEL};

/// Whether this run has created anything in the engine.
static USED_ENGINE: AtomicBool = AtomicBool::new(false);

/// Note that this run creates something in the engine (a container, an image), so that a stop
/// sweeps the engine.
pub fn using_engine() {
    USED_ENGINE.store(true, Ordering::Relaxed);
}

/// The labels of what this run creates in the engine (noting that it uses the engine).
pub fn labels() -> HashMap<String, String> {
    using_engine();
    run::current().labels()
}

/// Remove the containers that runs of this user on this host left and that are no longer
/// alive; how many.
pub async fn remove_dead(docker: &Docker) -> usize {
    let me = &run::current().id;
    remove_containers(docker, |id| id != me && !run::alive(id)).await
}

/// Container creations that were stopped before the engine answered.
static CANCELLED_CREATES: AtomicUsize = AtomicUsize::new(0);

/// Held while the engine creates a container; dropped before [`Creating::done`], it counts a
/// creation the engine may still complete with no guard to remove the container.
pub struct Creating(bool);

impl Creating {
    pub fn start() -> Creating {
        Creating(false)
    }

    pub fn done(mut self) {
        self.0 = true;
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        if !self.0 {
            CANCELLED_CREATES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// After a signal stopped this run: remove the build-stage images that hold a secret, and the
/// containers of this run still in the engine (those whose creation was cut short have no
/// guard, and may appear a moment later).
pub async fn sweep_after_stop(env: &crate::config::Environment) {
    if !USED_ENGINE.load(Ordering::Relaxed) {
        return;
    }
    let Ok(docker) = super::connect(env).await else {
        return;
    };
    super::remove_secret_images(&docker).await;
    let expected = CANCELLED_CREATES.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut removed = 0;
    loop {
        removed += remove_containers(&docker, |id| id == run::current().id).await;
        if removed >= expected || std::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Remove the containers of this user on this host whose run `select` picks; how many.
async fn remove_containers(docker: &Docker, select: impl Fn(&str) -> bool) -> usize {
    let me = run::current();
    let filters: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![
            RUN_LABEL.to_string(),
            format!("{HOST_LABEL}={}", me.host),
            format!("{UID_LABEL}={}", me.uid),
        ],
    )]
    .into();
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    // An engine that cannot list or remove is reported by the build's own next call.
    let containers = docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default();
    let mut removed = 0;
    for container in containers {
        let run = container
            .labels
            .as_ref()
            .and_then(|l| l.get(RUN_LABEL))
            .cloned()
            .unwrap_or_default();
        let Some(id) = container.id.filter(|_| select(&run)) else {
            continue;
        };
        let force = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if docker.remove_container(&id, Some(force)).await.is_ok() {
            removed += 1;
        }
    }
    removed
}
