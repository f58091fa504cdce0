//! The engine's log, relayed line by line into moat's own log with target
//! `engine`, and the last lines kept for error messages.
//!
//! dockerd (and the containerd it starts) write logrus text lines:
//! `time="…" level=info msg="…" key=value`. The relay drops the timestamp
//! (moat's subscriber adds its own), maps `level=` onto the tracing level and
//! logs the rest; a line that is not logrus (a flag error, a panic) is a
//! warning. gRPC connection chatter (`module=grpc`) at info is demoted
//! to debug: it is noise to an admin.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines kept for error messages.
const TAIL_LINES: usize = 20;
/// Longer lines are cut (a runaway line must not grow memory).
const MAX_LINE: usize = 4096;

/// The last lines dockerd wrote, shared by the relay tasks and whoever
/// reports a failure.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == TAIL_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    /// The kept lines, indented, for an error message.
    pub(crate) fn render(&self) -> String {
        match self.0.lock() {
            Ok(q) if !q.is_empty() => q
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => "  (dockerd wrote nothing)".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Splits a logrus line into its level and the text worth logging.
fn parse(line: &str) -> (Level, &str) {
    let mut rest = line.trim_end();
    if let Some(after) = rest.strip_prefix("time=\"") {
        if let Some(end) = after.find("\" ") {
            rest = &after[end + 2..];
        }
    }
    // dockerd writes plain lines only for failures (bad flags, a containerd
    // that will not start, a panic): they deserve attention.
    let Some(after) = rest.strip_prefix("level=") else {
        return (Level::Warn, rest);
    };
    let (word, text) = after.split_once(' ').unwrap_or((after, ""));
    let level = match word {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" if text.ends_with("module=grpc") => Level::Debug,
        "info" => Level::Info,
        "warning" | "warn" => Level::Warn,
        "error" | "fatal" | "panic" => Level::Error,
        _ => return (Level::Warn, rest),
    };
    (level, text)
}

fn emit(level: Level, text: &str) {
    match level {
        Level::Trace => tracing::trace!(target: "engine", "{text}"),
        Level::Debug => tracing::debug!(target: "engine", "{text}"),
        Level::Info => tracing::info!(target: "engine", "{text}"),
        Level::Warn => tracing::warn!(target: "engine", "{text}"),
        Level::Error => tracing::error!(target: "engine", "{text}"),
    }
}

/// Relays `stream` until it closes. Invalid UTF-8 is replaced, never fatal.
pub(crate) async fn relay<R: AsyncRead + Unpin>(stream: R, tail: LogTail) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        buf.truncate(MAX_LINE);
        let line = String::from_utf8_lossy(&buf);
        let (level, text) = parse(&line);
        if text.is_empty() {
            continue;
        }
        emit(level, text);
        tail.push(text.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logrus_lines_map_to_levels() {
        let cases = [
            (
                r#"time="2026-11-24T04:49:24.767311602Z" level=info msg="Starting up""#,
                Level::Info,
                r#"msg="Starting up""#,
            ),
            (
                r#"time="2026-11-24T04:49:24Z" level=warning msg="containerd config version `1`""#,
                Level::Warn,
                r#"msg="containerd config version `1`""#,
            ),
            (
                r#"time="x" level=error msg="failed" error="boom""#,
                Level::Error,
                r#"msg="failed" error="boom""#,
            ),
            (
                r#"time="x" level=fatal msg="bye""#,
                Level::Error,
                r#"msg="bye""#,
            ),
            (
                r#"time="x" level=debug msg="d""#,
                Level::Debug,
                r#"msg="d""#,
            ),
            (
                r#"time="x" level=info msg="[core] Channel" module=grpc"#,
                Level::Debug,
                r#"msg="[core] Channel" module=grpc"#,
            ),
            (
                "goroutine 1 [running]:",
                Level::Warn,
                "goroutine 1 [running]:",
            ),
            ("level=bogus msg=x", Level::Warn, "level=bogus msg=x"),
            ("", Level::Warn, ""),
        ];
        for (line, level, text) in cases {
            assert_eq!(parse(line), (level, text), "{line}");
        }
    }

    #[tokio::test]
    async fn relay_keeps_the_last_lines() {
        let mut input = Vec::new();
        for i in 0..30 {
            input.extend_from_slice(format!("time=\"t\" level=info msg=\"line {i}\"\n").as_bytes());
        }
        input.extend_from_slice(b"bad \xff utf8");
        let tail = LogTail::default();
        relay(&input[..], tail.clone()).await;
        let text = tail.render();
        assert!(!text.contains("line 10\""), "{text}");
        assert!(text.contains("line 29"), "{text}");
        assert!(text.ends_with("bad \u{fffd} utf8"), "{text}");
        assert_eq!(text.lines().count(), TAIL_LINES);
        assert_eq!(LogTail::default().render(), "  (dockerd wrote nothing)");
    }
}
