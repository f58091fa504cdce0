//! The one owner of the audit file: appends lines in queue order, chains
//! them, rotates, fsyncs as `audit.sync` asks, and reopens the file after a
//! failure so moat recovers by itself when writing works again.
//!
//! It runs on its own OS thread with a private current-thread runtime (for
//! the `batch` timer), so blocking file I/O never stalls the request path.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::chain;
use super::{Health, Job};
use crate::config::{self, AuditSync};
use crate::metrics::Metrics;

/// Records taken from the queue per write round (one fsync per round with
/// `sync: always`).
const MAX_BATCH: usize = 256;

/// Where the writer answers for one record (`None`: nobody waits).
type Ack = Option<oneshot::Sender<Result<(), String>>>;

/// Answers the waiting caller, or logs the failure of a record nobody waits
/// for (the completion record).
fn answer(ack: Ack, result: Result<(), String>) {
    match (ack, result) {
        (Some(ack), result) => {
            let _ = ack.send(result);
        }
        (None, Ok(())) => {}
        (None, Err(e)) => tracing::error!(error = %e, "completion audit record not written"),
    }
}

/// Why a write failed, as `/readyz` and the caller see it.
#[derive(Debug, Clone)]
pub(super) struct WriteFailure {
    /// With the file's path: for the log and `/readyz` (operators).
    pub reason: String,
    /// Without the path: what `record()` returns, which may reach clients.
    pub public: String,
    /// ENOSPC: `/readyz` then also checks the free space.
    pub no_space: bool,
}

impl WriteFailure {
    fn new(what: &Path, e: &io::Error) -> Self {
        WriteFailure {
            reason: format!("{}: {e}", what.display()),
            public: e.to_string(),
            no_space: e.kind() == io::ErrorKind::StorageFull,
        }
    }
}

/// The file currently appended to.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes in the file that are whole lines this writer knows of.
    len: u64,
}

pub(super) struct Writer {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    sync: AuditSync,
    interval: Duration,
    stdout: bool,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    file: Option<Open>,
    /// (dev, ino, whole-line length) of the file closed after a failed
    /// write: a partial line it may hold is cut off when it is reopened.
    broken: Option<(u64, u64, u64)>,
    /// Hash of the last line written: the next record's `prev`.
    prev: String,
    /// Lines written but not yet fsynced.
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    /// Prepares the log: directory, file, and the chain's current head.
    pub(super) fn open(
        cfg: &config::Audit,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> io::Result<Self> {
        let mut open = open_at(&cfg.file)?;
        let mut prev = None;
        if open.file.metadata()?.is_file() {
            let (last, whole) = chain::last_line(&open.file)?;
            if whole < open.len {
                // A line cut short by a crash was never acknowledged.
                tracing::warn!(
                    file = %cfg.file.display(),
                    bytes = open.len - whole,
                    "audit log ends with an incomplete line; removing it"
                );
                open.file.set_len(whole)?;
                open.len = whole;
            }
            prev = last.map(|l| chain::hash(&l));
        }
        let prev = match prev {
            Some(p) => p,
            // An empty log after a rotation continues the rotated file.
            None => match File::open(rotated(&cfg.file, 1)) {
                Ok(f) => chain::last_line(&f)?
                    .0
                    .map(|l| chain::hash(&l))
                    .unwrap_or_else(|| chain::GENESIS.to_owned()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => chain::GENESIS.to_owned(),
                Err(e) => return Err(e),
            },
        };
        Ok(Writer {
            path: cfg.file.clone(),
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            sync: cfg.sync,
            interval: cfg.batch_interval,
            stdout: cfg.stdout,
            metrics,
            health,
            file: Some(open),
            broken: None,
            prev,
            dirty: false,
            last_sync: Instant::now(),
        })
    }

    /// The writer thread's body: runs until every `Auditor` sender is gone.
    pub(super) fn run(self, mut rx: mpsc::Receiver<Job>) {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt.block_on(self.serve(rx)),
            Err(e) => {
                tracing::error!(error = %e, "audit writer cannot start its runtime");
                while let Some(job) = rx.blocking_recv() {
                    self.metrics.audit_write_error();
                    answer(job.ack, Err(format!("the audit writer cannot run: {e}")));
                }
            }
        }
    }

    async fn serve(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = if self.dirty {
                let deadline = self.last_sync + self.interval;
                match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) => break,
                    Err(_) => {
                        self.sync_now();
                        continue;
                    }
                }
            } else {
                match rx.recv().await {
                    Some(job) => job,
                    None => break,
                }
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch);
        }
        self.sync_now();
    }

    fn write_batch(&mut self, batch: &mut Vec<Job>) {
        let mut written: Vec<Ack> = Vec::with_capacity(batch.len());
        // Flush barriers (`Auditor::flush`): no line, an fsync, an answer.
        let mut flushes: Vec<Ack> = Vec::new();
        for job in batch.drain(..) {
            if job.fragment.is_empty() {
                flushes.push(job.ack);
                continue;
            }
            match self.write_record(&job.fragment) {
                Ok(()) => written.push(job.ack),
                Err(f) => {
                    self.failed(&f);
                    answer(job.ack, Err(f.public));
                }
            }
        }
        if !flushes.is_empty() {
            let result = self.fsync().map_err(|f| {
                self.failed_quietly(&f);
                f.public
            });
            for ack in flushes {
                answer(ack, result.clone());
            }
        }
        if written.is_empty() {
            return;
        }
        // With `sync: always`, a record somebody waits for (a decision, which
        // gates forwarding) is fsynced before the answer, and that fsync
        // covers every line before it. A round of records nobody waits for
        // (completion records: their response has already been sent) rides
        // the next such fsync, or the interval's: they are written now, so
        // they survive a crash of moat, and reach the disk within
        // `audit.batch_interval`.
        let awaited = written.iter().any(Option::is_some);
        let result = match self.sync {
            AuditSync::Always if awaited => self.fsync(),
            AuditSync::Always | AuditSync::Batch => {
                if self.last_sync.elapsed() >= self.interval {
                    self.sync_now();
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                self.succeeded();
                for ack in written {
                    self.metrics.audit_record();
                    answer(ack, Ok(()));
                }
            }
            Err(f) => {
                for ack in written {
                    self.metrics.audit_write_error();
                    answer(ack, Err(f.public.clone()));
                }
                self.failed_quietly(&f);
            }
        }
    }

    /// Appends one line; on success the chain's head moves to it.
    fn write_record(&mut self, fragment: &str) -> Result<(), WriteFailure> {
        self.ensure_open()?;
        let line = chain::compose(&chain::now(), fragment, &self.prev);
        let need = line.len() as u64 + 1;
        if self
            .file
            .as_ref()
            .is_some_and(|o| o.len > 0 && o.len + need > self.max_bytes)
        {
            self.rotate()?;
        }
        let head = chain::hash(line.as_bytes());
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let Some(open) = self.file.as_mut() else {
            return Err(WriteFailure {
                reason: format!("{}: not open", self.path.display()),
                public: "the file is not open".into(),
                no_space: false,
            });
        };
        if let Err(e) = open.file.write_all(&bytes) {
            // Cut off whatever part of the line reached the file; if that
            // fails too, the reopen does it.
            let _ = open.file.set_len(open.len);
            self.broken = Some((open.dev, open.ino, open.len));
            self.file = None;
            return Err(WriteFailure::new(&self.path, &e));
        }
        open.len += need;
        self.prev = head;
        self.dirty = true;
        if self.stdout {
            let mut out = io::stdout().lock();
            if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "audit.stdout: cannot write the record to stdout");
            }
        }
        Ok(())
    }

    /// Makes sure the open file is still the one at `audit.file`: after a
    /// failure, a deletion or an outside rotation it is (re)opened there.
    fn ensure_open(&mut self) -> Result<(), WriteFailure> {
        if let Some(open) = self.file.as_mut() {
            match fs::metadata(&self.path) {
                Ok(m) if m.dev() == open.dev && m.ino() == open.ino => {
                    if m.is_file() {
                        open.len = m.len();
                    }
                    return Ok(());
                }
                _ => {
                    // Moved away or deleted: finish it, start a new file.
                    let _ = open.file.sync_data();
                    self.file = None;
                }
            }
        }
        let mut open = open_at(&self.path).map_err(|e| WriteFailure::new(&self.path, &e))?;
        repair(&mut open, self.broken).map_err(|e| WriteFailure::new(&self.path, &e))?;
        self.broken = None;
        self.file = Some(open);
        Ok(())
    }

    /// `audit.log` -> `audit.log.1` -> … -> `audit.log.<keep>` (dropped).
    /// The chain goes on in the new file: its first `prev` is the hash of
    /// the last line of `audit.log.1`.
    fn rotate(&mut self) -> Result<(), WriteFailure> {
        let fail = |p: &Path, e: io::Error| WriteFailure::new(p, &e);
        if let Some(open) = self.file.take() {
            open.file.sync_all().map_err(|e| fail(&self.path, e))?;
        }
        self.dirty = false;
        if self.keep == 0 {
            ignore_missing(fs::remove_file(&self.path)).map_err(|e| fail(&self.path, e))?;
        } else {
            let oldest = rotated(&self.path, self.keep);
            ignore_missing(fs::remove_file(&oldest)).map_err(|e| fail(&oldest, e))?;
            for i in (1..self.keep).rev() {
                let from = rotated(&self.path, i);
                ignore_missing(fs::rename(&from, rotated(&self.path, i + 1)))
                    .map_err(|e| fail(&from, e))?;
            }
            fs::rename(&self.path, rotated(&self.path, 1)).map_err(|e| fail(&self.path, e))?;
        }
        self.file = Some(open_at(&self.path).map_err(|e| fail(&self.path, e))?);
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), WriteFailure> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(open) = self.file.as_ref() {
            if let Err(e) = open.file.sync_data() {
                // After a failed fsync the page cache is not to be trusted:
                // reopen before the next record.
                self.file = None;
                return Err(WriteFailure::new(&self.path, &e));
            }
        }
        self.metrics.audit_fsync();
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// `batch` mode's fsync: the records were acknowledged already, so a
    /// failure is counted and reported by `/readyz`.
    fn sync_now(&mut self) {
        if let Err(f) = self.fsync() {
            self.metrics.audit_write_error();
            self.failed_quietly(&f);
        }
    }

    fn failed(&self, f: &WriteFailure) {
        self.metrics.audit_write_error();
        self.failed_quietly(f);
    }

    fn failed_quietly(&self, f: &WriteFailure) {
        tracing::error!(reason = %f.reason, "audit record not written");
        if let Ok(mut g) = self.health.last_error.lock() {
            *g = Some(f.clone());
        }
    }

    fn succeeded(&self) {
        if let Ok(mut g) = self.health.last_error.lock() {
            if g.take().is_some() {
                tracing::info!("audit log writable again");
            }
        }
    }
}

/// After a reopen: cuts a partial line off the file this writer broke, or
/// makes sure someone else's file ends with a newline before our first line.
fn repair(open: &mut Open, broken: Option<(u64, u64, u64)>) -> io::Result<()> {
    if !open.file.metadata()?.is_file() {
        return Ok(());
    }
    if let Some((_, _, whole)) = broken.filter(|(dev, ino, _)| *dev == open.dev && *ino == open.ino)
    {
        if open.len > whole {
            open.file.set_len(whole)?;
            open.len = whole;
        }
        return Ok(());
    }
    if open.len > 0 {
        let mut last = [0u8; 1];
        open.file.read_exact_at(&mut last, open.len - 1)?;
        if last[0] != b'\n' {
            open.file.write_all(b"\n")?;
            open.len += 1;
        }
    }
    Ok(())
}

/// Creates the directory if needed and opens `path` for appending.
fn open_at(path: &Path) -> io::Result<Open> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let existed = fs::symlink_metadata(path).is_ok();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let m = file.metadata()?;
    if !existed {
        // Make the new directory entry durable too.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Open {
        len: if m.is_file() { m.len() } else { 0 },
        dev: m.dev(),
        ino: m.ino(),
        file,
    })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `audit.log` -> `audit.log.<n>`.
pub(super) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// `/readyz`: can the log be opened for appending now, and if the last
/// write failed for lack of space, is there space again?
pub(super) fn probe(path: &Path, last: Option<&WriteFailure>) -> Result<(), String> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(f) = last.filter(|f| f.no_space) {
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let free = if nix::unistd::geteuid().is_root() {
            st.blocks_free()
        } else {
            st.blocks_available()
        };
        if free == 0 {
            return Err(f.reason.clone());
        }
    }
    Ok(())
}
