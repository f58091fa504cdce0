//! The results: medians per path and metric, printed as a table with ratios
//! against the bare socket and moat against the best peer (nginx or
//! HAProxy, whichever did better on that figure), and written as JSON.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One row of the table.
pub(crate) struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Whether more is better (throughput) rather than less (time, CPU).
    pub higher_is_better: bool,
}

pub(crate) const METRICS: &[Metric] = &[
    Metric {
        key: "ping_p50_us",
        label: "/_ping p50, keep-alive, c=1",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "ping_p99_us",
        label: "/_ping p99, keep-alive, c=1",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "containers_p50_us",
        label: "/containers/json p50, c=1",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "containers_p99_us",
        label: "/containers/json p99, c=1",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "inspect_p50_us",
        label: "/containers/{id}/json p50, c=1",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "moat_overhead_ping_us",
        label: "  moat's own time per /_ping (mean)",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "moat_policy_ping_us",
        label: "    of which policy (mean)",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "moat_overhead_containers_us",
        label: "  moat's own time per /containers/json",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "moat_policy_containers_us",
        label: "    of which policy (mean)",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "memo_hit_pct_ping",
        label: "  moat's policy memo hits, /_ping c=1",
        unit: "%",
        higher_is_better: true,
    },
    Metric {
        key: "ping_rps_c32",
        label: "/_ping req/s, c=32",
        unit: "req/s",
        higher_is_better: true,
    },
    Metric {
        key: "front_cpu_us_per_req_c32",
        label: "front-end CPU per /_ping, c=32",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "engine_cpu_us_per_req_c32",
        label: "dockerd CPU per /_ping, c=32",
        unit: "µs",
        higher_is_better: false,
    },
    Metric {
        key: "new_conns_per_s_c8",
        label: "new connections/s (handshake + /_ping), c=8",
        unit: "conn/s",
        higher_is_better: true,
    },
    Metric {
        key: "memo_hit_pct_new_conns",
        label: "  moat's policy memo hits, new connections",
        unit: "%",
        higher_is_better: true,
    },
    Metric {
        key: "front_cpu_ms_per_conn",
        label: "front-end CPU per new connection",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "engine_cpu_ms_per_conn",
        label: "dockerd CPU per new connection",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "client_cpu_ms_per_conn",
        label: "the bench client's CPU per new connection",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "save_mb_s",
        label: "image save",
        unit: "MB/s",
        higher_is_better: true,
    },
    Metric {
        key: "load_mb_s",
        label: "image load",
        unit: "MB/s",
        higher_is_better: true,
    },
    Metric {
        key: "run_ms",
        label: "docker run --rm IMG true",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "run_i_ms",
        label: "echo hi | docker run -i --rm IMG cat",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "moat_requests_per_run",
        label: "  requests per docker run (moat's count)",
        unit: "requests",
        higher_is_better: false,
    },
    Metric {
        key: "moat_overhead_per_run_ms",
        label: "  moat's own time per docker run",
        unit: "ms",
        higher_is_better: false,
    },
    Metric {
        key: "moat_fsyncs_per_run",
        label: "  audit fsyncs per docker run",
        unit: "fsyncs",
        higher_is_better: false,
    },
];

pub(crate) const PATHS: [(&str, &str); 6] = [
    ("bare", "bare unix socket"),
    ("dockerd_tls", "dockerd mTLS"),
    ("nginx", "nginx mTLS"),
    ("haproxy", "HAProxy TLS"),
    ("moat", "moat"),
    ("moat_b", "moat B (compare build)"),
];

/// The peers, for "moat against the best peer".
const PEERS: [&str; 2] = ["nginx", "haproxy"];

/// Samples per path, per metric (one per round), and the figures whose
/// result was wrong (`docker run -i` without its output): shown marked, and
/// never the best peer's.
#[derive(Default)]
pub(crate) struct Samples(
    pub BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    pub std::collections::BTreeSet<(&'static str, &'static str)>,
);

impl Samples {
    pub(crate) fn add(&mut self, path: &'static str, key: &'static str, v: f64) {
        self.0
            .entry(path)
            .or_default()
            .entry(key)
            .or_default()
            .push(v);
    }

    /// Marks `path`'s `key` as measured on a wrong result.
    pub(crate) fn broken(&mut self, path: &'static str, key: &'static str) {
        self.1.insert((path, key));
    }

    pub(crate) fn median(&self, path: &str, key: &str) -> Option<f64> {
        let mut v = self.0.get(path)?.get(key)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        Some(if v.len() % 2 == 0 {
            (v[m - 1] + v[m]) / 2.0
        } else {
            v[m]
        })
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The best peer's median for `metric` (the higher or the lower, as the
/// metric wants), with its name.
pub(crate) fn best_peer(samples: &Samples, metric: &Metric) -> Option<(&'static str, f64)> {
    PEERS
        .iter()
        .filter(|p| !samples.1.contains(&(**p, metric.key)))
        .filter_map(|p| samples.median(p, metric.key).map(|v| (*p, v)))
        .reduce(|a, b| {
            let b_better = if metric.higher_is_better {
                b.1 > a.1
            } else {
                b.1 < a.1
            };
            if b_better {
                b
            } else {
                a
            }
        })
}

/// Prints the table and returns the JSON document (`extra` is merged in).
pub(crate) fn render(samples: &Samples, extra: Value) -> Value {
    let mut out = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    let mut vs_peer = serde_json::Map::new();
    let paths: Vec<_> = PATHS
        .iter()
        .filter(|(p, _)| samples.0.contains_key(p))
        .collect();
    for (p, _) in &paths {
        let mut m = serde_json::Map::new();
        let mut r = serde_json::Map::new();
        for metric in METRICS {
            if let Some(v) = samples.median(p, metric.key) {
                m.insert(metric.key.into(), json!(v));
                if let Some(b) = samples.median("bare", metric.key).filter(|b| *b > 0.0) {
                    r.insert(metric.key.into(), json!(v / b));
                }
            }
        }
        out.insert((*p).into(), Value::Object(m));
        ratios.insert((*p).into(), Value::Object(r));
    }
    for metric in METRICS {
        if let (Some(v), Some((peer, b))) = (
            samples.median("moat", metric.key),
            best_peer(samples, metric),
        ) {
            if b > 0.0 {
                vs_peer.insert(
                    metric.key.into(),
                    json!({ "peer": peer, "peer_value": b, "moat_over_peer": v / b }),
                );
            }
        }
    }

    let w = 46;
    let c = 20;
    print!("\n{:w$}", "metric (median over rounds)");
    for (_, label) in &paths {
        print!(" | {label:>c$}");
    }
    let with_peers = PEERS.iter().any(|p| samples.0.contains_key(p));
    if with_peers {
        print!(" | {:>c$}", "moat vs best peer");
    }
    println!();
    println!(
        "{}",
        "-".repeat(w + (paths.len() + usize::from(with_peers)) * (c + 3))
    );
    for metric in METRICS {
        let label = format!("{} ({})", metric.label, metric.unit);
        print!("{label:w$}");
        for (p, _) in &paths {
            let cell = match samples.median(p, metric.key) {
                None => "n/a".to_string(),
                Some(v) => match samples.median("bare", metric.key).filter(|b| *b > 0.0) {
                    Some(b) if *p != "bare" => format!("{} ({:.2}×)", fmt(v), v / b),
                    _ => fmt(v),
                },
            };
            let cell = if samples.1.contains(&(*p, metric.key)) {
                format!("{cell} BROKEN")
            } else {
                cell
            };
            print!(" | {cell:>c$}");
        }
        if with_peers {
            let cell = match (
                samples.median("moat", metric.key),
                best_peer(samples, metric),
            ) {
                (Some(v), Some((peer, b))) if b > 0.0 => format!("{:.2}× {peer}", v / b),
                _ => String::new(),
            };
            print!(" | {cell:>c$}");
        }
        println!();
    }
    let broken: Vec<String> = samples.1.iter().map(|(p, k)| format!("{p}.{k}")).collect();
    if !broken.is_empty() {
        println!("BROKEN: measured on a wrong result (see `docker_run_i_output_intact`), never the best peer: {broken:?}");
    }
    let mut doc = json!({
        "broken": broken,
        "paths": out,
        "ratios_vs_bare": ratios,
        "moat_vs_best_peer": vs_peer,
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    doc
}
