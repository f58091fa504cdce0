//! The results: medians per path and metric, printed as a table with ratios
//! against the bare socket, and written as JSON.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One row of the table.
pub(crate) struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
}

pub(crate) const METRICS: &[Metric] = &[
    Metric {
        key: "ping_p50_us",
        label: "/_ping p50, keep-alive, c=1",
        unit: "µs",
    },
    Metric {
        key: "ping_p99_us",
        label: "/_ping p99, keep-alive, c=1",
        unit: "µs",
    },
    Metric {
        key: "containers_p50_us",
        label: "/containers/json p50, c=1",
        unit: "µs",
    },
    Metric {
        key: "containers_p99_us",
        label: "/containers/json p99, c=1",
        unit: "µs",
    },
    Metric {
        key: "moat_overhead_ping_us",
        label: "  moat's own time per /_ping (mean)",
        unit: "µs",
    },
    Metric {
        key: "moat_policy_ping_us",
        label: "    of which policy (mean)",
        unit: "µs",
    },
    Metric {
        key: "moat_overhead_containers_us",
        label: "  moat's own time per /containers/json",
        unit: "µs",
    },
    Metric {
        key: "moat_policy_containers_us",
        label: "    of which policy (mean)",
        unit: "µs",
    },
    Metric {
        key: "ping_rps_c32",
        label: "/_ping req/s, c=32",
        unit: "req/s",
    },
    Metric {
        key: "new_conns_per_s_c8",
        label: "new connections/s (handshake + /_ping), c=8",
        unit: "conn/s",
    },
    Metric {
        key: "front_cpu_ms_per_conn",
        label: "front-end CPU per new connection",
        unit: "ms",
    },
    Metric {
        key: "engine_cpu_ms_per_conn",
        label: "dockerd CPU per new connection",
        unit: "ms",
    },
    Metric {
        key: "save_mb_s",
        label: "image save",
        unit: "MB/s",
    },
    Metric {
        key: "load_mb_s",
        label: "image load",
        unit: "MB/s",
    },
    Metric {
        key: "run_ms",
        label: "docker run --rm IMG true",
        unit: "ms",
    },
    Metric {
        key: "run_i_ms",
        label: "echo hi | docker run -i --rm IMG cat",
        unit: "ms",
    },
];

pub(crate) const PATHS: [(&str, &str); 4] = [
    ("bare", "bare unix socket"),
    ("dockerd_tls", "dockerd mTLS"),
    ("moat", "moat"),
    ("moat_b", "moat B (compare build)"),
];

/// Samples per path, per metric (one per round).
#[derive(Default)]
pub(crate) struct Samples(pub BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>);

impl Samples {
    pub(crate) fn add(&mut self, path: &'static str, key: &'static str, v: f64) {
        self.0
            .entry(path)
            .or_default()
            .entry(key)
            .or_default()
            .push(v);
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

/// Prints the table and returns the JSON document (`extra` is merged in).
pub(crate) fn render(samples: &Samples, extra: Value) -> Value {
    let mut out = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
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

    let w = 46;
    print!("\n{:w$}", "metric (median over rounds)");
    for (_, label) in &paths {
        print!(" | {label:>24}");
    }
    println!();
    println!("{}", "-".repeat(w + paths.len() * 27));
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
            print!(" | {cell:>24}");
        }
        println!();
    }
    let mut doc = json!({ "paths": out, "ratios_vs_bare": ratios });
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    doc
}
