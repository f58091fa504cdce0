//! The supervisor: keeps the bundled dockerd running until moat stops.
//!
//! When dockerd exits on its own, the status turns `Restarting` (requests
//! get 503 `engine restarting`, `/readyz` is unready), a warning carries its
//! exit status and last log lines, and a new dockerd starts after a backoff
//! that doubles from 0.5 s up to 30 s and starts over once an engine has
//! stayed up for a minute. The status turns `Running` again once the new
//! engine answers `/_ping`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::process::{self, Running, Spec};
use super::{EngineError, EngineState, EngineStatus};

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An engine that ran this long counts as stable: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Exponential restart delay.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// The delay before the next start, given how long the last engine ran.
    fn delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= STABLE_AFTER {
            self.next = BACKOFF_MIN;
        }
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

/// Supervises `running` until `stop` is cancelled, then stops it.
pub(crate) async fn run(
    spec: Spec,
    mut running: Running,
    status: Arc<EngineStatus>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let exit = tokio::select! {
            exit = running.child.wait() => exit,
            () = stop.cancelled() => {
                status.set(EngineState::Stopped);
                process::stop(running, &spec).await;
                status.set_pid(None);
                return;
            }
        };
        status.set(EngineState::Restarting);
        status.set_pid(None);
        let uptime = running.started.elapsed();
        let tail = process::after_crash(running, &spec).await;
        let mut delay = backoff.delay(uptime);
        tracing::warn!(
            target: "engine",
            "dockerd exited unexpectedly ({}) after {}; restarting in {}; its last log lines:\n{}",
            exit.map_or_else(|e| e.to_string(), |s| s.to_string()),
            humantime::format_duration(Duration::from_secs(uptime.as_secs())),
            humantime::format_duration(delay),
            tail.render()
        );
        running = loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {
                    status.set(EngineState::Stopped);
                    return;
                }
            }
            match process::start_ready(&spec, &status, &stop).await {
                Ok(r) => break r,
                Err(EngineError::Cancelled) => {
                    status.set(EngineState::Stopped);
                    return;
                }
                Err(e) => {
                    delay = backoff.delay(Duration::ZERO);
                    tracing::warn!(target: "engine", "restarting the engine failed; next try in {}: {e}", humantime::format_duration(delay));
                }
            }
        };
        status.set(EngineState::Running);
        tracing::info!(target: "engine", pid = running.pid(), "bundled engine restarted and ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new();
        let short = Duration::from_secs(1);
        let got: Vec<Duration> = (0..9).map(|_| b.delay(short)).collect();
        assert_eq!(
            got,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000),
                ms(30000)
            ]
        );
        assert_eq!(b.delay(STABLE_AFTER), ms(500));
        assert_eq!(b.delay(Duration::ZERO), ms(1000));
    }
}
