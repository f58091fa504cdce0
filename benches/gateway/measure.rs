//! The measurements themselves, one function each. Every function takes
//! the path as a [`Target`] (or docker CLI environment) and returns plain
//! figures; the caller decides rounds and ordering.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::client::{self, connect, get, Sender, Target};

/// Keep-alive latency on one connection: p50 and p99 in microseconds.
pub(crate) async fn latency(t: &Target, path: &str, n: usize) -> std::io::Result<(f64, f64)> {
    let mut s = connect(t).await?;
    for _ in 0..(n / 10).max(10) {
        get(&mut s, path).await?;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        get(&mut s, path).await?;
        v.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(f64::total_cmp);
    Ok((pct(&v, 0.50), pct(&v, 0.99)))
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Requests per second with `conns` keep-alive connections for `dur`
/// (connections are opened before the clock starts), and the CPU
/// microseconds each group of processes in `groups` spent per request.
pub(crate) async fn throughput(
    t: &Target,
    path: &'static str,
    conns: usize,
    dur: Duration,
    groups: &[Vec<u32>],
) -> std::io::Result<(f64, Vec<f64>)> {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = connect(t).await?;
        get(&mut s, path).await?;
        senders.push(s);
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticks = |g: &Vec<u32>| g.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    let cpu0: Vec<u64> = groups.iter().map(ticks).collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut s in senders {
        let done = done.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                get(&mut s, path).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    // The requests still in flight at the stop are few (one per connection)
    // next to those counted.
    let total = done.load(Ordering::Relaxed).max(1) as f64;
    let cpu = groups
        .iter()
        .zip(cpu0)
        .map(|(g, c0)| ticks_to_ms(ticks(g).saturating_sub(c0)) * 1000.0 / total)
        .collect();
    Ok((n as f64 / elapsed.as_secs_f64(), cpu))
}

/// New connections per second (connect + full handshake + one `/_ping` +
/// close) with `conc` at once, and the CPU milliseconds each group of
/// processes in `groups` spent per connection, followed by the bench's own
/// (the client's).
pub(crate) async fn new_connections(
    t: &Target,
    conc: usize,
    dur: Duration,
    groups: &[Vec<u32>],
) -> std::io::Result<(f64, Vec<f64>)> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticks = |g: &Vec<u32>| g.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    // The client's half of the handshakes runs on the same cores: the
    // bench's own CPU is measured last, after the servers'.
    let mut groups = groups.to_vec();
    groups.push(vec![std::process::id()]);
    let cpu0: Vec<u64> = groups.iter().map(ticks).collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (done, stop, t) = (done.clone(), stop.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut s = connect(&t).await?;
                get(&mut s, "/_ping").await?;
                drop(s);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let elapsed = start.elapsed();
    // Let the servers finish closing what the clients just dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = done.load(Ordering::Relaxed);
    let cpu = groups
        .iter()
        .zip(cpu0)
        .map(|(g, c0)| ticks_to_ms(ticks(g).saturating_sub(c0)) / n.max(1) as f64)
        .collect();
    Ok((n as f64 / elapsed.as_secs_f64(), cpu))
}

/// `GET /images/{name}/get`: MB/s (10^6 bytes) of the tar stream.
pub(crate) async fn save(t: &Target, image: &str) -> std::io::Result<(f64, u64)> {
    let mut s = connect(t).await?;
    let start = Instant::now();
    let n = get(&mut s, &format!("/images/{image}/get")).await?;
    Ok((n as f64 / 1e6 / start.elapsed().as_secs_f64(), n))
}

/// `POST /images/load` of `tar` (streamed in slices): MB/s.
pub(crate) async fn load(t: &Target, tar: &Bytes) -> std::io::Result<f64> {
    let mut s = connect(t).await?;
    let start = Instant::now();
    let (status, _) = client::send(
        &mut s,
        Method::POST,
        "/images/load?quiet=1",
        client::chunked_body(tar.clone()),
        Some(tar.len() as u64),
    )
    .await?;
    if !status.is_success() {
        return Err(std::io::Error::other(format!("images/load: {status}")));
    }
    Ok(tar.len() as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// Opens `n` mutual-TLS connections (`conc` at a time), each with one
/// `/_ping` answered, and returns them open and idle.
pub(crate) async fn open_idle(t: &Target, n: usize, conc: usize) -> std::io::Result<Vec<Sender>> {
    let left = Arc::new(AtomicU64::new(n as u64));
    let held = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (left, held, t) = (left.clone(), held.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(1))
                .is_ok()
            {
                let mut s = connect(&t).await?;
                get(&mut s, "/_ping").await?;
                held.lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .push(s);
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let v = std::mem::take(&mut *held.lock().map_err(|_| std::io::Error::other("poisoned"))?);
    Ok(v)
}

/// utime + stime of a process (all threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// USER_HZ is 100 on every Linux architecture the bench runs on.
fn ticks_to_ms(t: u64) -> f64 {
    t as f64 * 10.0
}

/// VmRSS of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `RssAnon:`, `RssFile:`).
pub(crate) fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The docker CLI pointed at one path.
pub(crate) struct Cli {
    pub env: Vec<(&'static str, String)>,
}

impl Cli {
    /// Runs `docker args` (with `stdin` piped in); returns the wall time
    /// and whether it succeeded with the expected output.
    pub(crate) fn time(&self, args: &[&str], stdin: Option<&[u8]>, expect: &str) -> (f64, bool) {
        let mut cmd = std::process::Command::new("docker");
        cmd.env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args);
        let start = Instant::now();
        let out = crate::support::run_with_deadline(cmd, stdin, Duration::from_secs(120));
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let ok = out.status.success() && String::from_utf8_lossy(&out.stdout) == expect;
        if !ok {
            eprintln!(
                "bench: docker {args:?} failed ({}): stdout {:?} (want {expect:?}), stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        (ms, ok)
    }
}

/// moat's own time per request, from its metrics: (sum of
/// `moat_overhead_seconds`, sum of `moat_policy_eval_seconds`, requests,
/// policy evaluations).
pub(crate) fn moat_internals(metrics: std::net::SocketAddr) -> (f64, f64, f64, f64) {
    let value = scrape(metrics);
    (
        value("moat_overhead_seconds_sum"),
        value("moat_policy_eval_seconds_sum"),
        value("moat_overhead_seconds_count"),
        value("moat_policy_eval_seconds_count"),
    )
}

/// moat's audit fsyncs so far (`moat_audit_fsyncs_total`).
pub(crate) fn fsyncs(metrics: std::net::SocketAddr) -> f64 {
    scrape(metrics)("moat_audit_fsyncs_total")
}

/// moat's policy memo so far: (hits, misses) of `moat_policy_memo_total`.
pub(crate) fn memo_counts(metrics: std::net::SocketAddr) -> (f64, f64) {
    let value = scrape(metrics);
    (
        value("moat_policy_memo_total{result=\"hit\"}"),
        value("moat_policy_memo_total{result=\"miss\"}"),
    )
}

/// The share of memo hits between two [`memo_counts`], in per cent.
pub(crate) fn hit_pct(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (hits, misses) = (b.0 - a.0, b.1 - a.1);
    100.0 * hits / (hits + misses).max(1.0)
}

/// Scrapes moat's metrics once; returns a lookup of one sample by its
/// exact name (and labels), 0 when absent.
fn scrape(metrics: std::net::SocketAddr) -> impl Fn(&str) -> f64 {
    use std::io::{Read, Write};
    let mut text = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(metrics) {
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: moat\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    move |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }
}
