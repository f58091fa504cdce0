//! The hash chain's definition, shared by the writer and `verify`: how a line
//! is put together, what `prev` is, and where a chain starts.
//!
//! A line is `{"ts":…,` + the serialized [`Record`] fields + `,"prev":…}`.
//! `prev` is the lower-case hex SHA-256 of the previous line's bytes without
//! its newline; the first line of a new log chains to [`GENESIS`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::Record;

/// `prev` of the very first record of a log: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// RFC 3339, UTC, microseconds: `2026-11-24T04:48:32.123456Z`.
const TS_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Longest last line `last_line` accepts before giving up (a record is a few
/// KB; bodies at level `request` are bounded by the body limits).
const MAX_LINE: usize = 64 << 20;

/// The record's fields serialized in order, without the enclosing braces,
/// so the writer can wrap them with `ts` and `prev` without re-encoding.
pub(super) fn fragment(rec: &Record) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string(rec)?;
    // serde_json writes a struct as `{…}`: drop both braces in place.
    s.pop();
    s.remove(0);
    Ok(s)
}

/// The current time as written in `ts`.
pub(super) fn now() -> String {
    OffsetDateTime::now_utc()
        .format(TS_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// The full line (without newline) for a record fragment.
pub(super) fn compose(ts: &str, fragment: &str, prev: &str) -> String {
    let mut line = String::with_capacity(fragment.len() + ts.len() + prev.len() + 24);
    line.push_str("{\"ts\":\"");
    line.push_str(ts);
    line.push_str("\",");
    line.push_str(fragment);
    line.push_str(",\"prev\":\"");
    line.push_str(prev);
    line.push_str("\"}");
    line
}

/// Hex SHA-256 of a line's bytes (without its newline): the next `prev`.
pub(crate) fn hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The last complete line of `file` (without newline) and the length of the
/// file up to and including that line's newline. Bytes after the last
/// newline are an incomplete line; the caller decides what to do with them.
pub(super) fn last_line(file: &File) -> io::Result<(Option<Vec<u8>>, u64)> {
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if let Some(nl) = buf.iter().rposition(|&b| b == b'\n') {
            if let Some(before) = buf[..nl].iter().rposition(|&b| b == b'\n') {
                return Ok((Some(buf[before + 1..nl].to_vec()), start + nl as u64 + 1));
            }
            if start == 0 {
                return Ok((Some(buf[..nl].to_vec()), nl as u64 + 1));
            }
        } else if start == 0 {
            return Ok((None, 0));
        }
        if buf.len() > MAX_LINE {
            return Err(io::Error::other("the last line is longer than 64 MiB"));
        }
        let n = start.min(64 * 1024);
        start -= n;
        let mut chunk = vec![0u8; n as usize];
        file.read_exact_at(&mut chunk, start)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_line_finds_the_final_complete_line() {
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, u64);
        let cases: &[Case] = &[
            (b"", None, 0),
            (b"partial", None, 0),
            (b"a\n", Some(b"a"), 2),
            (b"a\nbb\n", Some(b"bb"), 5),
            (b"a\nbb\ncc", Some(b"bb"), 5),
        ];
        for (content, want, good) in cases {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(content).unwrap();
            let (line, len) = last_line(&f).unwrap();
            assert_eq!(line.as_deref(), *want, "{content:?}");
            assert_eq!(len, *good, "{content:?}");
        }
        // A line longer than one read chunk.
        let long = vec![b'x'; 200_000];
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"first\n").unwrap();
        f.write_all(&long).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(last_line(&f).unwrap().0.unwrap(), long);
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let ts = now();
        assert_eq!(ts.len(), "2026-11-24T04:48:32.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!(OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339).is_ok());
    }
}
