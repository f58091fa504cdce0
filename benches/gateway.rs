//! `cargo bench --bench gateway`: moat beside the bare engine socket,
//! dockerd's own mutual-TLS listener and the reverse proxies a user would
//! pick instead (nginx and HAProxy, [`peers`]), on one private engine, in
//! one run (issues 7 and 17). Prints a table of figures with ratios against
//! the bare socket and moat against the best peer, and writes it as JSON to
//! `<target dir>/bench/gateway.json`.
//!
//! Figures are reported, never asserted. Needs root (it starts dockerd),
//! `docker`/`dockerd` and busybox-static, like the integration tests.
//!
//! Environment:
//! - `MOAT_BENCH_QUICK=1`: one round, short runs and a 64 MiB image (for
//!   development; the full run takes a few minutes on 2 cores).
//! - `MOAT_BENCH_ROUNDS=N`: rounds per measurement (medians are reported).
//! - `MOAT_BENCH_OUT=FILE`: where to write the JSON.
//! - `MOAT_BENCH_ONLY=a,b`: run only these phases (`requests`, `stream`,
//!   `cli`, `memory`), e.g. while profiling moat with `perf -p`; `c32` is
//!   the c=32 throughput of the `requests` phase alone.
//! - `MOAT_BENCH_COMPARE_BIN=PATH`: also run this moat binary as a fourth
//!   path, measured in the same rounds (an A/B of two builds on a noisy
//!   machine).
//! - `MOAT_BENCH_AUDIT_SYNC=batch`: moat's `audit.sync` (default: moat's
//!   default, `always`), to see what per-record fsync costs.
//! - `MOAT_BENCH_POLICY_DIR=DIR`: another policy directory than the shipped
//!   pack (for example one that allows everything, to see the policy's
//!   share).
//! - `MOAT_BENCH_PEERS=0`: leave out nginx and HAProxy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "gateway/client.rs"]
mod client;
#[path = "gateway/measure.rs"]
mod measure;
#[path = "gateway/peers.rs"]
mod peers;
#[path = "gateway/report.rs"]
mod report;
#[path = "gateway/setup.rs"]
mod setup;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use client::Target;
use measure::Cli;
use report::Samples;

struct Plan {
    quick: bool,
    rounds: usize,
    ping_n: usize,
    containers_n: usize,
    window: Duration,
    image_bytes: u64,
    cli_rounds: usize,
    idle_conns: usize,
    only: Option<Vec<String>>,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("MOAT_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let mut p = if quick {
            Plan {
                quick,
                rounds: 1,
                ping_n: 500,
                containers_n: 200,
                window: Duration::from_secs(1),
                image_bytes: 64 << 20,
                cli_rounds: 3,
                idle_conns: 1000,
                only: None,
            }
        } else {
            Plan {
                quick,
                rounds: 3,
                ping_n: 3000,
                containers_n: 1000,
                window: Duration::from_secs(3),
                image_bytes: 260 << 20,
                cli_rounds: 7,
                idle_conns: 1000,
                only: None,
            }
        };
        p.only = std::env::var("MOAT_BENCH_ONLY")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        if let Some(r) = std::env::var("MOAT_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            p.rounds = r;
        }
        p
    }
}

impl Plan {
    fn runs(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    }
}

fn out_path() -> PathBuf {
    if let Ok(p) = std::env::var("MOAT_BENCH_OUT") {
        return PathBuf::from(p);
    }
    // The bench binary lives in <target>/release/deps/.
    let target = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(PathBuf::from))
        .unwrap_or_else(|| support::repo().join("target"));
    target.join("bench").join("gateway.json")
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": kernel.trim(),
        "loadavg_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let plan = Plan::from_env();
    let began = Instant::now();
    let machine = machine();
    let world = setup::World::start(plan.image_bytes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    moat::tls::install_crypto_provider();

    let bundle = world.bundle.clone();
    let config_dir = world.dir.join("docker-config").display().to_string();
    // Each path: name, client target, docker CLI, and the process groups whose
    // CPU is read per new connection (front end first, then dockerd).
    let mut paths: Vec<(&'static str, Target, Cli, Vec<Vec<u32>>)> = vec![
        (
            "bare",
            Target::Unix(world.engine.socket.clone()),
            Cli {
                env: vec![
                    ("DOCKER_HOST", world.engine.host()),
                    ("DOCKER_CONFIG", config_dir.clone()),
                ],
            },
            vec![vec![world.dockerd_pid]],
        ),
        (
            "dockerd_tls",
            Target::tls(world.dockerd_tls, &bundle),
            tls_cli(world.dockerd_tls, &bundle, &config_dir),
            vec![vec![world.dockerd_pid]],
        ),
        (
            "moat",
            Target::tls(world.moat_addr, &bundle),
            tls_cli(world.moat_addr, &bundle, &config_dir),
            vec![vec![world.moat_pid], vec![world.dockerd_pid]],
        ),
    ];
    if let Some((addr, pid)) = world.moat_b {
        paths.push((
            "moat_b",
            Target::tls(addr, &bundle),
            tls_cli(addr, &bundle, &config_dir),
            vec![vec![pid], vec![world.dockerd_pid]],
        ));
    }
    for peer in &world.peers {
        paths.push((
            peer.name,
            Target::tls(peer.addr, &bundle),
            tls_cli(peer.addr, &bundle, &config_dir),
            vec![peer.pids.clone(), vec![world.dockerd_pid]],
        ));
    }
    eprintln!(
        "bench: moat pid {}, dockerd pid {}{}",
        world.moat_pid,
        world.dockerd_pid,
        world
            .peers
            .iter()
            .map(|p| format!(", {} pids {:?}", p.name, p.pids))
            .collect::<String>()
    );
    let inspect = format!("/containers/{}/json", world.container_id);
    let mut s = Samples::default();
    let rss_start = measure::rss_kib(world.moat_pid);
    // The executable's clean, shared pages (RssFile) are most of it at start.
    let rss_start_anon = measure::status_kib(world.moat_pid, "RssAnon:");
    let rss_start_file = measure::status_kib(world.moat_pid, "RssFile:");

    eprintln!(
        "bench: keep-alive latency, throughput, new connections ({} rounds)",
        plan.rounds
    );
    // `MOAT_BENCH_ONLY=c32`: only the c=32 throughput (for a profiler).
    let all_requests = plan.runs("requests");
    let c32 = all_requests
        || plan
            .only
            .as_ref()
            .is_some_and(|o| o.iter().any(|p| p == "c32"));
    for _ in 0..plan.rounds * usize::from(c32) {
        for (p, t, _, pids) in &paths {
            rt.block_on(async {
                if all_requests {
                    let m0 = measure::moat_internals(world.moat_metrics);
                    let memo0 = measure::memo_counts(world.moat_metrics);
                    let (p50, p99) = measure::latency(t, "/_ping", plan.ping_n)
                        .await
                        .expect("latency");
                    s.add(p, "ping_p50_us", p50);
                    s.add(p, "ping_p99_us", p99);
                    let m1 = measure::moat_internals(world.moat_metrics);
                    let memo1 = measure::memo_counts(world.moat_metrics);
                    let (p50, p99) = measure::latency(t, "/containers/json", plan.containers_n)
                        .await
                        .expect("latency");
                    s.add(p, "containers_p50_us", p50);
                    s.add(p, "containers_p99_us", p99);
                    let m2 = measure::moat_internals(world.moat_metrics);
                    let (p50, _) = measure::latency(t, &inspect, plan.containers_n)
                        .await
                        .expect("latency");
                    s.add(p, "inspect_p50_us", p50);
                    if *p == "moat" {
                        s.add(p, "memo_hit_pct_ping", measure::hit_pct(memo0, memo1));
                        // moat's own share (engine time excluded), from its metrics.
                        let keys = [
                            (m0, m1, "moat_overhead_ping_us", "moat_policy_ping_us"),
                            (
                                m1,
                                m2,
                                "moat_overhead_containers_us",
                                "moat_policy_containers_us",
                            ),
                        ];
                        for (a, b, overhead, policy) in keys {
                            let n = (b.2 - a.2).max(1.0);
                            s.add(p, overhead, (b.0 - a.0) / n * 1e6);
                            let n = (b.3 - a.3).max(1.0);
                            s.add(p, policy, (b.1 - a.1) / n * 1e6);
                        }
                    }
                }
                let (rps, cpu) = measure::throughput(t, "/_ping", 32, plan.window, pids)
                    .await
                    .expect("throughput");
                s.add(p, "ping_rps_c32", rps);
                if let [front, engine] = cpu[..] {
                    s.add(p, "front_cpu_us_per_req_c32", front);
                    s.add(p, "engine_cpu_us_per_req_c32", engine);
                } else {
                    s.add(p, "engine_cpu_us_per_req_c32", cpu[0]);
                }
                if all_requests {
                    let memo0 = measure::memo_counts(world.moat_metrics);
                    let (rate, cpu) = measure::new_connections(t, 8, plan.window, pids)
                        .await
                        .expect("new connections");
                    s.add(p, "new_conns_per_s_c8", rate);
                    if *p == "moat" {
                        let memo1 = measure::memo_counts(world.moat_metrics);
                        s.add(p, "memo_hit_pct_new_conns", measure::hit_pct(memo0, memo1));
                    }
                    match cpu[..] {
                        [front, engine, client] => {
                            s.add(p, "front_cpu_ms_per_conn", front);
                            s.add(p, "engine_cpu_ms_per_conn", engine);
                            s.add(p, "client_cpu_ms_per_conn", client);
                        }
                        [engine, client] => {
                            s.add(p, "engine_cpu_ms_per_conn", engine);
                            s.add(p, "client_cpu_ms_per_conn", client);
                        }
                        _ => {}
                    }
                }
            });
        }
    }

    eprintln!("bench: image save/load");
    let tar = Bytes::from(std::fs::read(&world.big_tar).expect("read image tar"));
    let mut saved_bytes = 0;
    for _ in 0..plan.rounds * usize::from(plan.runs("stream")) {
        for (p, t, _, _) in &paths {
            rt.block_on(async {
                let (mbs, n) = measure::save(t, setup::BIG_IMAGE).await.expect("save");
                saved_bytes = n;
                s.add(p, "save_mb_s", mbs);
                s.add(p, "load_mb_s", measure::load(t, &tar).await.expect("load"));
            });
        }
    }
    drop(tar);

    eprintln!("bench: docker run ({} rounds)", plan.cli_rounds);
    let img = setup::SMALL_IMAGE;
    let mut run_i_works = json!({});
    let cli_rounds = plan.cli_rounds * usize::from(plan.runs("cli"));
    for (_, _, cli, _) in paths.iter().take(cli_rounds.min(paths.len())) {
        // One untimed run each, so no path pays a first-use cost.
        cli.time(&["run", "--rm", img, "true"], None, "");
    }
    for _ in 0..cli_rounds {
        for (p, _, cli, _) in &paths {
            // What moat itself adds to a `docker run`, from its metrics.
            let before = (*p == "moat").then(|| {
                let m = measure::moat_internals(world.moat_metrics);
                (m, measure::fsyncs(world.moat_metrics))
            });
            let (ms, _) = cli.time(&["run", "--rm", img, "true"], None, "");
            s.add(p, "run_ms", ms);
            if let Some((m0, f0)) = before {
                let m1 = measure::moat_internals(world.moat_metrics);
                s.add(p, "moat_requests_per_run", m1.2 - m0.2);
                s.add(p, "moat_overhead_per_run_ms", (m1.0 - m0.0) * 1e3);
                s.add(
                    p,
                    "moat_fsyncs_per_run",
                    measure::fsyncs(world.moat_metrics) - f0,
                );
            }
            let (ms, ok) = cli.time(&["run", "-i", "--rm", img, "cat"], Some(b"hi\n"), "hi\n");
            s.add(p, "run_i_ms", ms);
            let prev = run_i_works[*p].as_bool().unwrap_or(true);
            run_i_works[*p] = json!(prev && ok);
            if !ok {
                s.broken(p, "run_i_ms");
            }
        }
    }

    let target_of = |name: &str| {
        paths
            .iter()
            .find(|p| p.0 == name)
            .map(|p| p.1.clone())
            .expect("path")
    };
    let moat_target = &target_of("moat");
    let rss_idle = measure::rss_kib(world.moat_pid);
    let idle_conns = plan.idle_conns * usize::from(plan.runs("memory"));
    if idle_conns > 0 {
        eprintln!("bench: moat memory with {idle_conns} idle connections");
    }
    let held = rt
        .block_on(measure::open_idle(moat_target, idle_conns, 8))
        .expect("open idle connections");
    std::thread::sleep(Duration::from_millis(500));
    let rss_held = measure::rss_kib(world.moat_pid);
    drop(held);
    let per_conn = |idle: u64, with: u64| {
        (idle_conns > 0).then(|| with.saturating_sub(idle) as f64 / idle_conns as f64)
    };
    let shown =
        |kib: Option<f64>| kib.map_or("not measured".to_string(), |k| format!("{k:.1} KiB each"));
    if let Some((_, pid)) = world.moat_b.filter(|_| idle_conns > 0) {
        let idle = measure::rss_kib(pid);
        let held = rt
            .block_on(measure::open_idle(&target_of("moat_b"), idle_conns, 8))
            .expect("open idle connections");
        std::thread::sleep(Duration::from_millis(500));
        let with = measure::rss_kib(pid);
        drop(held);
        println!(
            "moat B RSS: {idle} KiB idle, {with} KiB with {idle_conns} idle connections ({})",
            shown(per_conn(idle, with))
        );
    }

    let rss = json!({
        "rss_at_start_kib": rss_start,
        "rss_at_start_anon_kib": rss_start_anon,
        "rss_at_start_file_kib": rss_start_file,
        "rss_idle_kib": rss_idle,
        "idle_connections": idle_conns,
        "rss_with_idle_connections_kib": rss_held,
        "kib_per_idle_connection": per_conn(rss_idle, rss_held),
    });
    let extra = json!({
        "machine": machine,
        "quick": plan.quick,
        "rounds": plan.rounds,
        "cli_rounds": plan.cli_rounds,
        "image_bytes": saved_bytes,
        "docker_run_i_output_intact": run_i_works,
        "moat_memory": rss,
        "wall_seconds": began.elapsed().as_secs_f64(),
    });
    let doc = report::render(&s, extra);
    println!(
        "\nmoat RSS: {} KiB at start ({} KiB anonymous, {} KiB file-backed), {} KiB idle after the run, {} KiB with {} idle mTLS connections ({})",
        rss_start,
        rss_start_anon,
        rss_start_file,
        rss_idle,
        rss_held,
        idle_conns,
        shown(per_conn(rss_idle, rss_held))
    );
    println!(
        "`echo hi | docker run -i` output intact: {}",
        doc["docker_run_i_output_intact"]
    );
    println!("machine: {}", doc["machine"]);
    let out = out_path();
    std::fs::create_dir_all(out.parent().expect("parent")).expect("create output dir");
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write json");
    println!(
        "written: {} ({:.0} s)",
        out.display(),
        began.elapsed().as_secs_f64()
    );
    world.stop();
    // The watchdogs remove the engine's data once dockerd has stopped.
    let _ = std::fs::remove_file(&world.big_tar);
}

fn tls_cli(addr: std::net::SocketAddr, bundle: &support::pki::Bundle, config_dir: &str) -> Cli {
    Cli {
        env: vec![
            ("DOCKER_HOST", format!("tcp://{addr}")),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", bundle.dir.display().to_string()),
            ("DOCKER_CONFIG", config_dir.to_string()),
        ],
    }
}
