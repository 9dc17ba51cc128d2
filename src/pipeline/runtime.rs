//! Running a command's asynchronous work: on a runtime of its own, stopped cleanly by SIGINT
//! (Ctrl-C), SIGTERM and SIGHUP. A stopped job is dropped, which removes what it holds (its
//! containers, work directories and partial files); then the engine is swept of this run's
//! containers whose creation the stop cut short, and the command ends with 128 + the signal.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

use super::Error;
use crate::config::Environment;

/// Run `job` to its end, or until a signal stops it.
pub fn block_on<T>(
    env: &Environment,
    job: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        what: "cannot start the async runtime".into(),
        source,
    })?;
    runtime.block_on(async {
        let mut stops = Vec::new();
        for (kind, name) in [
            (SignalKind::interrupt(), "interrupted"),
            (SignalKind::terminate(), "terminated"),
            (SignalKind::hangup(), "hung up"),
        ] {
            let stream = signal(kind).map_err(|source| Error::Io {
                what: "cannot watch for signals".into(),
                source,
            })?;
            stops.push((stream, kind.as_raw_value(), name));
        }
        let stopped =
            futures_util::future::select_all(stops.iter_mut().map(|(stream, number, name)| {
                Box::pin(async move {
                    stream.recv().await;
                    (*number, *name)
                })
            }));
        let mut job = Box::pin(job);
        let (number, name) = tokio::select! {
            result = &mut job => return result,
            ((number, name), _, _) = stopped => (number, name),
        };
        drop(job);
        crate::engine::leftovers::sweep_after_stop(env).await;
        Err(Error::Stopped {
            number: number as u8,
            name,
        })
    })
}
