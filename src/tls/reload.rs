//! The TLS side of reloading without a restart: watching the files that
//! hold the server certificate and key, the client CA bundle and the CRL.
//!
//! [`watch_files`] watches the *directories* holding the `tls.*` files
//! (tools replace files by rename, which a watch on the file itself would
//! miss), debounced. Which certificates a CRL revokes is
//! [`super::revocation`]. What a change triggers (rebuilding the rustls
//! configuration, closing revoked connections, SIGHUP) is orchestrated in
//! the `reload` module, above this one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use tokio::sync::mpsc;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot watch {path} for certificate changes: {message}")]
    Watch { path: PathBuf, message: String },
}

/// Debounce window for file events.
const DEBOUNCE: Duration = Duration::from_millis(250);

type Watcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Watches the directories holding `files`; the receiver gets one message
/// per debounced batch of events that touches one of them.
pub fn watch_files(files: &[PathBuf]) -> Result<(Watcher, mpsc::Receiver<()>), ReloadError> {
    let mut wanted: HashSet<PathBuf> = HashSet::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for f in files {
        let parent = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(parent).map_err(|e| ReloadError::Watch {
            path: parent.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(name) = f.file_name() {
            wanted.insert(dir.join(name));
        }
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let (tx, rx) = mpsc::channel(1);
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
        let relevant = match res {
            Ok(events) => events
                .iter()
                .flat_map(|e| e.paths.iter())
                .any(|p| wanted.contains(p)),
            // Lost events: reload to be safe.
            Err(_) => true,
        };
        if relevant {
            // A full channel already holds a pending reload.
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| ReloadError::Watch {
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| ReloadError::Watch {
                path: dir.clone(),
                message: e.to_string(),
            })?;
    }
    Ok((debouncer, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_replaced_by_rename_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("crl.pem");
        let other = tmp.path().join("unrelated");
        std::fs::write(&file, "old").unwrap();
        let (_w, mut rx) = watch_files(std::slice::from_ref(&file)).unwrap();

        // Unrelated files in the same directory do not trigger a reload.
        std::fs::write(&other, "x").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(800), rx.recv()).await;
        assert!(quiet.is_err(), "unrelated file triggered a reload");

        let tmp_file = tmp.path().join(".crl.pem.tmp");
        std::fs::write(&tmp_file, "new").unwrap();
        std::fs::rename(&tmp_file, &file).unwrap();
        // Generous bound: the test only fails if the change is never seen.
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(matches!(got, Ok(Some(()))), "rename not noticed");
    }
}
