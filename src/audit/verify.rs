//! `moat audit verify`: walks the hash chain across files given in chain
//! order (`audit.log.2 audit.log.1 audit.log`) and names the first line that
//! cannot be trusted.
//!
//! Where the chain breaks between lines A and B (B's `prev` is not the hash
//! of A), one line of look-ahead tells the cases apart:
//! - B's `prev` is the hash of the line after B: B is out of order (reorder);
//! - the line after B chains to A: B was inserted;
//! - B chains to the line before A: A was inserted;
//! - otherwise A was edited, or records between A and B were deleted: A is
//!   reported (its successor no longer vouches for it).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{self, GENESIS};

/// The first untrustworthy line, printed as `FILE:LINE: why`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct VerifyError {
    pub file: PathBuf,
    /// 1-based; 0 when the file itself cannot be read.
    pub line: usize,
    pub reason: String,
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// The first line chains to [`GENESIS`]: nothing was cut off the front.
    /// `false` when the oldest file given continues a rotated-out one.
    pub from_genesis: bool,
    /// Hash of the last line. Keeping it elsewhere is what detects a later
    /// truncation of the log's end, which a chain cannot show by itself.
    pub head: String,
}

/// Checks the chain through `paths` (oldest first) and returns the number of
/// records.
pub fn verify(paths: &[PathBuf]) -> Result<usize, VerifyError> {
    verify_report(paths).map(|v| v.records)
}

/// As [`verify`], with where the chain starts and ends.
pub fn verify_report(paths: &[PathBuf]) -> Result<Verified, VerifyError> {
    let mut lines = Lines::new(paths);
    // (position, hash) of the two lines before the current one.
    let mut before_prev: Option<(Pos, String)> = None;
    let mut prev: Option<(Pos, String)> = None;
    let mut from_genesis = false;
    let mut records = 0usize;
    let mut next = lines.next_line()?;
    while let Some(cur) = next {
        next = lines.next_line()?;
        let cur_prev = prev_field(&cur)?;
        match &prev {
            None => from_genesis = cur_prev == GENESIS,
            Some((a_pos, a_hash)) if *a_hash != cur_prev => {
                return Err(diagnose(
                    a_pos,
                    a_hash,
                    &cur,
                    &cur_prev,
                    before_prev.as_ref(),
                    next.as_ref(),
                ));
            }
            Some(_) => {}
        }
        records += 1;
        before_prev = prev.take();
        prev = Some((cur.pos.clone(), chain::hash(&cur.bytes)));
    }
    Ok(Verified {
        records,
        from_genesis,
        head: prev.map(|(_, h)| h).unwrap_or_else(|| GENESIS.to_owned()),
    })
}

/// Names the broken line where B (`cur`) does not chain to A (`a`).
fn diagnose(
    a: &Pos,
    a_hash: &str,
    b: &Line,
    b_prev: &str,
    before_a: Option<&(Pos, String)>,
    after_b: Option<&Line>,
) -> VerifyError {
    if let Some(c) = after_b {
        if chain::hash(&c.bytes) == b_prev {
            return b.pos.error(format!(
                "out of order: this record chains to the record after it ({})",
                c.pos
            ));
        }
        if prev_field(c).ok().as_deref() == Some(a_hash) {
            return b.pos.error(format!(
                "inserted: the next record ({}) chains to the one before this ({a})",
                c.pos
            ));
        }
    }
    if let Some((_, h)) = before_a {
        if h == b_prev {
            return a.error(format!(
                "inserted: the next record ({}) chains to the one before this",
                b.pos
            ));
        }
    }
    a.error(format!(
        "edited, or the record(s) after it deleted: the next record ({}) records a different hash for its predecessor",
        b.pos
    ))
}

/// `prev` of a line, or why the line is not a record.
fn prev_field(line: &Line) -> Result<String, VerifyError> {
    let v: serde_json::Value = serde_json::from_slice(&line.bytes)
        .map_err(|e| line.pos.error(format!("not a JSON record: {e}")))?;
    let p = v.get("prev").and_then(|p| p.as_str()).ok_or_else(|| {
        line.pos
            .error("not an audit record: no \"prev\" field".into())
    })?;
    if p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(line.pos.error("\"prev\" is not a hex SHA-256".into()));
    }
    Ok(p.to_owned())
}

#[derive(Debug, Clone)]
struct Pos {
    file: PathBuf,
    line: usize,
}

impl Pos {
    fn error(&self, reason: String) -> VerifyError {
        VerifyError {
            file: self.file.clone(),
            line: self.line,
            reason,
        }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

struct Line {
    pos: Pos,
    bytes: Vec<u8>,
}

/// The lines of all files in order, one at a time.
struct Lines<'a> {
    paths: &'a [PathBuf],
    idx: usize,
    reader: Option<BufReader<File>>,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(paths: &'a [PathBuf]) -> Self {
        Lines {
            paths,
            idx: 0,
            reader: None,
            line: 0,
        }
    }

    fn next_line(&mut self) -> Result<Option<Line>, VerifyError> {
        loop {
            let Some(path) = self.paths.get(self.idx) else {
                return Ok(None);
            };
            if self.reader.is_none() {
                let f = File::open(path).map_err(|e| unreadable(path, &e))?;
                self.reader = Some(BufReader::with_capacity(256 * 1024, f));
                self.line = 0;
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let mut buf = Vec::new();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| unreadable(path, &e))?;
            if n == 0 {
                self.reader = None;
                self.idx += 1;
                continue;
            }
            self.line += 1;
            let pos = Pos {
                file: path.clone(),
                line: self.line,
            };
            if buf.pop() != Some(b'\n') {
                return Err(pos.error("incomplete line (no newline at the end)".into()));
            }
            return Ok(Some(Line { pos, bytes: buf }));
        }
    }
}

fn unreadable(path: &Path, e: &io::Error) -> VerifyError {
    VerifyError {
        file: path.to_owned(),
        line: 0,
        reason: format!("cannot be read: {e}"),
    }
}
