//! docker-compose through moat (issue 14: "the docker CLI, docker-py and
//! docker-compose still work through moat for an admin and a developer").
//! Debian's `docker-compose` (1.29, on docker-py; `scripts/test.sh`
//! installs it) drives a small project, one service built from a local
//! Dockerfile and one on the test image (there is no registry), through
//! `up -d`, `ps`, `logs` and `down`, over mutual TLS. compose 1.29
//! negotiates its API version (`GET /version`, then the engine's newest),
//! which is above `engine.min_api_version`; forced below it
//! (`COMPOSE_API_VERSION`), it hears moat's refusal naming the setting.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{engine, image, pki, run_with_deadline, tempdir, unique, Docker, Moat};

/// Runs `docker-compose -p project ARGS` in `dir` as `d`'s client.
fn compose(d: &Docker, dir: &Path, project: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut all = vec!["-p", project];
    all.extend_from_slice(args);
    let mut cmd = d.program("docker-compose", &all);
    cmd.current_dir(dir);
    // requests lets these override the CA docker-py was given.
    for var in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_deadline(cmd, None, Duration::from_secs(300))
}

fn ok(d: &Docker, dir: &Path, project: &str, args: &[&str]) -> String {
    let out = compose(d, dir, project, &[], args);
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names of the engine's containers of compose project `project`.
fn project_containers(project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let out = engine().direct(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A compose project in a fresh directory: `web` built from a Dockerfile on
/// the test image, `worker` on the test image itself.
fn project_dir(built_image: &str) -> std::path::PathBuf {
    let dir = tempdir("moat-compose-");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {}\nCMD [\"sh\", \"-c\", \"echo hello-from-web; exec sleep 3600\"]\n",
            image()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            "version: \"3.8\"
services:
  web:
    build: .
    image: {built_image}
    stop_signal: SIGKILL
  worker:
    image: {test_image}
    command: [\"sh\", \"-c\", \"echo hello-from-worker; exec sleep 3600\"]
    stop_signal: SIGKILL
    depends_on: [web]
",
            test_image = image()
        ),
    )
    .unwrap();
    dir
}

/// up -d, ps, logs, down as `user` of `group`; every request moat saw from
/// that user was allowed and carried a version at or above the minimum.
fn up_ps_logs_down(moat: &Moat, user: &str, group: &str) {
    let d = Docker::new(moat, &pki().client(user, group));
    let project = unique("moatcompose").replace('-', "");
    let built = format!("moat-compose/{project}:latest");
    let dir = project_dir(&built);

    ok(&d, &dir, &project, &["up", "-d", "--build"]);
    let mut names = project_containers(&project);
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");

    let ps = ok(&d, &dir, &project, &["ps"]);
    for service in ["web", "worker"] {
        assert!(
            ps.lines()
                .any(|l| l.contains(&format!("{project}_{service}_1")) && l.contains("Up")),
            "{service} is not up in:\n{ps}"
        );
    }

    // The services print once they start; logs may lag the start.
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let logs = ok(&d, &dir, &project, &["logs", "--no-color"]);
        if (logs.contains("hello-from-web") && logs.contains("hello-from-worker"))
            || Instant::now() > deadline
        {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(logs.contains("hello-from-web"), "{logs}");
    assert!(logs.contains("hello-from-worker"), "{logs}");

    ok(&d, &dir, &project, &["down", "--rmi", "local"]);
    assert_eq!(project_containers(&project), Vec::<String>::new());

    // What moat saw of this user: all allowed, all at the negotiated version.
    let records = moat.audit_records();
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["stage"] == "complete" && r["user"]["name"] == user)
        .collect();
    assert!(mine.len() > 5, "{mine:?}");
    for r in &mine {
        // Compose asks for its network before creating it: moat answers
        // the engine's own 404 from its lookup, before any decision.
        let not_yet = r["request"]["operation"] == "NetworkInspect"
            && r["response"]["status"] == 404
            && r["decision"]["policy_revision"] == "";
        assert!(r["decision"]["allow"] == true || not_yet, "{r}");
        let uri = r["request"]["uri"].as_str().unwrap_or("");
        assert!(
            // Unversioned: docker-py's negotiation and the docker CLI's
            // ping (compose 1.29 builds with the CLI).
            matches!(uri, "/version" | "/_ping") || uri.starts_with("/v1.41/"),
            "compose used {uri}: {r}"
        );
    }
    let _ = engine().direct(&["rmi", "-f", &built]);
}

#[test]
fn compose_up_ps_logs_down_as_developer_and_admin() {
    let moat = Moat::start();
    up_ps_logs_down(&moat, "codi", "developer");
    up_ps_logs_down(&moat, "cadmin", "admin");
}

/// compose forced below `engine.min_api_version` hears why.
#[test]
fn compose_below_the_minimum_api_version_is_told_which_setting() {
    let moat = Moat::start();
    let d = Docker::new(&moat, &pki().client("codi", "developer"));
    let project = unique("moatcompose").replace('-', "");
    let dir = project_dir(&format!("moat-compose/{project}:latest"));
    let out = compose(
        &d,
        &dir,
        &project,
        &[("COMPOSE_API_VERSION", "1.22")],
        &["ps"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("engine.min_api_version"), "{stderr}");
}
