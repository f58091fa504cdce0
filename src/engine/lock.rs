//! The state-directory lock: two moats on one DIR would fight over the same
//! engine, PKI and audit log, so the second one refuses to start.
//!
//! An exclusive, non-blocking `flock` on `DIR/moat.lock`. The kernel drops it
//! when the process dies, so a crash never leaves a stale lock behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::EngineError;

/// Held for as long as moat runs on a directory; dropping it unlocks.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl DirLock {
    /// The lock file, `DIR/moat.lock`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock on `dir` (creating `dir` if needed), or says that another
/// moat holds it. The lock file records the holder's pid for the admin.
pub fn lock_dir(dir: &Path) -> Result<DirLock, EngineError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("moat.lock");
    let io = |what, source| EngineError::Io {
        path: path.clone(),
        what,
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| EngineError::Io {
        path: dir.to_path_buf(),
        what: "cannot create the state directory",
        source: e,
    })?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io("cannot open the lock file", e))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, Errno::EWOULDBLOCK)) => {
            return Err(EngineError::Locked {
                dir: dir.to_path_buf(),
                lock: path,
            })
        }
        Err((_, errno)) => return Err(io("cannot lock", std::io::Error::from(errno))),
    };
    // Best effort: the pid is for humans; the flock is what counts.
    let _ = lock.set_len(0);
    let _ = writeln!(*lock, "{}", std::process::id());
    Ok(DirLock { path, _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_dir_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        assert_eq!(first.path(), dir.path().join("moat.lock"));
        let err = lock_dir(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "another moat is running on {} (lock held on {}/moat.lock)",
                dir.path().display(),
                dir.path().display()
            )
        );
        drop(first);
        let again = lock_dir(dir.path()).unwrap();
        let pid = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
