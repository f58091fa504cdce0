//! Reload on change: watches the policy directory (not single files, since
//! editors and ConfigMaps replace files by rename) and reloads shortly after
//! the last change, well within the two seconds the gateway promises.

use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Policy;

/// How long the directory must be quiet before a reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the policy directory {dir} for changes: {source}")]
    Watch {
        dir: String,
        #[source]
        source: notify::Error,
    },
}

impl Policy {
    /// Starts watching the policy directory; every change reloads the policy
    /// (see [`Policy::reload`]). Runs until `shutdown` is cancelled. Must be
    /// called inside a tokio runtime.
    pub fn watch(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, WatchError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            if let Ok(events) = res {
                if !events.is_empty() {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|e| self.watch_error(e))?;
        debouncer
            .watch(self.dir(), RecursiveMode::Recursive)
            .map_err(|e| self.watch_error(e))?;
        let policy = Arc::clone(self);
        Ok(tokio::spawn(async move {
            // Owned by the task: dropping it stops the OS watch.
            let _debouncer = debouncer;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    got = rx.recv() => {
                        if got.is_none() {
                            break;
                        }
                        while rx.try_recv().is_ok() {}
                        let p = Arc::clone(&policy);
                        // Compiling takes milliseconds: keep it off the
                        // request threads. Errors are logged by reload.
                        let _ = tokio::task::spawn_blocking(move || p.reload()).await;
                    }
                }
            }
        }))
    }

    fn watch_error(&self, source: notify::Error) -> WatchError {
        WatchError::Watch {
            dir: self.dir().display().to_string(),
            source,
        }
    }
}
