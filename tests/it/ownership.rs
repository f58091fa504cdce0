//! Ownership (issue 15), end to end with the shipped pack and the real
//! docker CLI: two developers and an admin share one engine. Every attack
//! of the issue's "Why" is refused with a message naming the object and
//! its owner, nothing changes on the engine, and nothing leaks; a
//! developer's own work goes on as before.
//!
//! The admin's "host" is a temporary directory bind-mounted where an ops
//! container would mount `/`: what moat refuses is the same, and a refusal
//! that failed writes into that directory, not into the host.

use std::path::{Path, PathBuf};

use crate::support::{as_role, engine, image, pki, raw, tempdir, unique, Docker, Moat};

/// The admin's ops setup: a running container with the "host" mounted at
/// /host and a secret in its environment, a host-network container, and a
/// bind-type volume of the "host".
struct AdminSetup {
    host: PathBuf,
    secret: String,
    ops: String,
    hostnet: String,
    bindvol: String,
}

impl AdminSetup {
    fn new(admin: &Docker) -> AdminSetup {
        let host = tempdir("moat-fake-host-");
        std::fs::write(host.join("hostname"), "the-host\n").unwrap();
        let secret = unique("hunter2");
        let (ops, hostnet, bindvol) = (unique("ops"), unique("hostnet"), unique("hostroot"));
        let bind = format!("{}:/host", host.display());
        let env = format!("DB_PASSWORD={secret}");
        admin.ok(&[
            "run",
            "-d",
            "--name",
            &ops,
            "-v",
            &bind,
            "-e",
            &env,
            image(),
            "sleep",
            "300",
        ]);
        admin.ok(&[
            "create",
            "--name",
            &hostnet,
            "--network",
            "host",
            image(),
            "sleep",
            "300",
        ]);
        let device = format!("device={}", host.display());
        admin.ok(&[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &device,
            &bindvol,
        ]);
        AdminSetup {
            host,
            secret,
            ops,
            hostnet,
            bindvol,
        }
    }

    fn host_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.host)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn cleanup(&self) {
        engine().remove(&[&self.ops, &self.hostnet], &[&self.bindvol], &[]);
    }
}

#[test]
fn every_attack_of_the_issue_is_refused_and_changes_nothing() {
    let moat = Moat::start();
    let admin_name = unique("ada");
    let admin = as_role(&moat, &admin_name, "admin");
    let dev_name = unique("dave");
    let dev = as_role(&moat, &dev_name, "developer");
    let setup = AdminSetup::new(&admin);
    let owner = format!("belongs to {admin_name} (scope user:{admin_name})");
    let ops = setup.ops.as_str();

    // The control: the admin reaches its own "host".
    assert_eq!(
        admin.ok(&["exec", ops, "cat", "/host/hostname"]),
        "the-host\n"
    );

    let mut messages = vec![
        dev.refused(
            &["exec", ops, "cat", "/host/hostname"],
            &[&format!("container {ops}"), &owner],
        ),
        dev.refused(&["cp", &format!("{ops}:/host/hostname"), "-"], &[&owner]),
    ];
    // `docker cp` into a container stats the target with HEAD first, whose
    // refusal has no body to print: the upload itself over raw HTTP.
    let upload = tempdir("moat-upload-");
    std::fs::write(upload.join("planted"), "x").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-C", &upload.display().to_string(), "-cf", "-", "planted"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut put = format!(
        "PUT /containers/{ops}/archive?path=/host HTTP/1.1\r\nHost: moat\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        tar.stdout.len()
    )
    .into_bytes();
    put.extend_from_slice(&tar.stdout);
    let answer = raw::exchange(moat.addr, &pki().client(&dev_name, "developer"), &put).unwrap();
    assert_eq!(raw::status(&answer), 403, "{answer}");
    assert!(answer.contains(&owner), "{answer}");
    messages.push(answer);
    messages.push(dev.refused(&["attach", "--no-stdin", ops], &[&owner]));
    let hostnet = format!("container:{}", setup.hostnet);
    messages.push(dev.refused(
        &["run", "--rm", "--network", &hostnet, image(), "true"],
        &[
            &format!("container {}", setup.hostnet),
            "HostConfig.NetworkMode",
            &owner,
        ],
    ));
    messages.push(dev.refused(
        &["run", "--rm", "--pid", &hostnet, image(), "true"],
        &["HostConfig.PidMode", &owner],
    ));
    let vol = format!("{}:/h", setup.bindvol);
    messages.push(dev.refused(
        &["run", "--rm", "-v", &vol, image(), "ls", "/h"],
        &[
            &format!("volume {}", setup.bindvol),
            "HostConfig.Binds[0]",
            &owner,
        ],
    ));
    messages.push(dev.refused(&["rm", "-f", ops], &[&owner]));
    messages.push(dev.refused(&["inspect", "--type", "container", ops], &[&owner]));
    messages.push(dev.refused(&["volume", "rm", &setup.bindvol], &[&owner]));

    // Nothing changed, nothing leaked.
    assert_eq!(
        setup.host_files(),
        vec!["hostname".to_string()],
        "a file reached the host"
    );
    assert!(engine().has("containers", ops) && engine().has("volumes", &setup.bindvol));
    let running = engine().direct(&["inspect", "--format", "{{.State.Running}}", ops]);
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    for m in &messages {
        assert!(!m.contains(&setup.secret), "the secret leaked: {m}");
        assert!(!m.contains("the-host"), "a host file leaked: {m}");
    }
    setup.cleanup();
}

#[test]
fn developers_act_only_on_their_own_objects() {
    let moat = Moat::start();
    let (alice, bob) = (unique("alice"), unique("bob"));
    let da = as_role(&moat, &alice, "developer");
    let db = as_role(&moat, &bob, "developer");
    let (bc, bv, bn) = (unique("bob-c"), unique("bob-v"), unique("bob-n"));
    let bobs = format!("belongs to {bob} (scope user:{bob})");
    db.ok(&["network", "create", &bn]);
    db.ok(&["volume", "create", &bv]);
    db.ok(&[
        "run",
        "-d",
        "--name",
        &bc,
        "--network",
        &bn,
        image(),
        "sleep",
        "300",
    ]);

    for args in [
        &["stop", &bc][..],
        &["logs", &bc],
        &["exec", &bc, "true"],
        &["rename", &bc, "mine"],
        &["kill", &bc],
    ] {
        da.refused(args, &[&bobs]);
    }
    let mount = format!("{bv}:/v");
    da.refused(
        &["run", "--rm", "-v", &mount, image(), "true"],
        &[&format!("volume {bv}"), &bobs],
    );
    da.refused(
        &["run", "--rm", "--network", &bn, image(), "true"],
        &[&format!("network {bn}"), &bobs],
    );
    da.refused(&["volume", "rm", &bv], &[&bobs]);
    da.refused(&["network", "rm", &bn], &[&bobs]);
    let ac = unique("alice-c");
    da.ok(&["create", "--name", &ac, image(), "true"]);
    da.refused(&["network", "connect", &bn, &ac], &[&bobs]);
    // alice's container on bob's network is bob's business: refused too.
    da.refused(&["network", "disconnect", &bn, &bc], &[&bobs]);

    // An unowned container (made on the engine directly) is admins' only.
    let legacy = unique("legacy");
    let out = engine().direct(&["create", "--name", &legacy, image(), "true"]);
    assert!(out.status.success());
    da.refused(&["rm", &legacy], &["unowned"]);
    assert!(engine().has("containers", &legacy));
    as_role(&moat, &unique("ada"), "admin").ok(&["rm", &legacy]);

    assert!(
        engine().has("containers", &bc)
            && engine().has("volumes", &bv)
            && engine().has("networks", &bn)
    );
    let running = engine().direct(&["inspect", "--format", "{{.State.Running}}", &bc]);
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    engine().remove(&[&bc, &ac], &[&bv], &[&bn]);
}

#[test]
fn a_developers_workflow_works_end_to_end() {
    let moat = Moat::start();
    let alice = unique("alice");
    let d = as_role(&moat, &alice, "developer");
    let (ctr, vol, net) = (unique("web"), unique("data"), unique("appnet"));
    d.ok(&["network", "create", &net]);
    // The named volume does not exist: moat creates it, labelled as alice's.
    let mount = format!("{vol}:/data");
    d.ok(&[
        "run",
        "-d",
        "--name",
        &ctr,
        "--network",
        &net,
        "-v",
        &mount,
        image(),
        "sleep",
        "300",
    ]);
    let (_, doc) = engine().api("GET", &format!("/volumes/{vol}"), None);
    assert_eq!(doc["Labels"]["io.moat.owner"], alice.as_str(), "{doc}");
    assert_eq!(
        doc["Labels"]["io.moat.scope"],
        format!("user:{alice}"),
        "{doc}"
    );

    d.ok(&["exec", &ctr, "sh", "-c", "echo hello > /data/f"]);
    assert_eq!(d.ok(&["exec", &ctr, "cat", "/data/f"]), "hello\n");
    d.ok(&["logs", &ctr]);
    let local = tempdir("moat-cp-");
    let file = local.join("in.txt");
    std::fs::write(&file, "from alice\n").unwrap();
    d.ok(&[
        "cp",
        &file.display().to_string(),
        &format!("{ctr}:/tmp/in.txt"),
    ]);
    assert_eq!(d.ok(&["exec", &ctr, "cat", "/tmp/in.txt"]), "from alice\n");
    let out = local.join("out");
    d.ok(&["cp", &format!("{ctr}:/data/f"), &out.display().to_string()]);
    assert_eq!(std::fs::read_to_string(Path::new(&out)).unwrap(), "hello\n");
    d.ok(&["inspect", &ctr]);
    d.ok(&["stop", "-t", "1", &ctr]);
    d.ok(&["start", &ctr]);
    d.ok(&["rm", "-f", &ctr]);
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &mount, image(), "cat", "/data/f"]),
        "hello\n"
    );
    d.ok(&["volume", "rm", &vol]);
    d.ok(&["network", "rm", &net]);
    assert!(
        !engine().has("containers", &ctr)
            && !engine().has("volumes", &vol)
            && !engine().has("networks", &net)
    );
}

/// Viewers read everything, except the environment of another's container.
#[test]
fn viewers_read_but_not_anothers_environment() {
    let moat = Moat::start();
    let alice = unique("alice");
    let da = as_role(&moat, &alice, "developer");
    let viewer_name = unique("vic");
    let viewer = as_role(&moat, &viewer_name, "viewer");
    let (ctr, secret) = (unique("env"), unique("s3cret"));
    let env = format!("TOKEN={secret}");
    // In the foreground: its output is in the logs when `run` returns.
    da.ok(&[
        "run",
        "--name",
        &ctr,
        "-e",
        &env,
        image(),
        "echo",
        "started",
    ]);
    let ps = viewer.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ps.lines().any(|l| l == ctr), "{ps}");
    // The docker CLI inspects before reading logs, so `docker logs` of
    // another's container fails for a viewer; the logs themselves are
    // readable.
    let bundle = pki().client(&viewer_name, "viewer");
    let target = format!(
        "GET /containers/{ctr}/logs?stdout=1 HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n"
    );
    let answer = raw::exchange(moat.addr, &bundle, target.as_bytes()).unwrap();
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert!(answer.contains("started"), "{answer}");
    let stderr = viewer.refused(
        &["inspect", "--type", "container", &ctr],
        &[
            "shows the environment (secrets)",
            &format!("belongs to {alice}"),
        ],
    );
    assert!(!stderr.contains(&secret), "{stderr}");
    engine().remove(&[&ctr], &[], &[]);
}

/// A pack whose data maps groups to roles and teams: `web-devs` are
/// developers of team `web`, `web-admins` admins of the same team.
fn team_pack() -> PathBuf {
    let dir = tempdir("moat-team-pack-");
    for entry in std::fs::read_dir(crate::support::repo().join("policies")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("data.json");
    let mut data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    data["moat"]["group_roles"]["web-devs"] = serde_json::json!(["developer"]);
    data["moat"]["group_roles"]["web-admins"] = serde_json::json!(["admin"]);
    data["moat"]["owner_scopes"] = serde_json::json!({"web-devs": "web", "web-admins": "web"});
    std::fs::write(&path, data.to_string()).unwrap();
    dir
}

/// A team shares its objects; an object of the team that reaches the host
/// stays its creator's.
#[test]
fn a_team_shares_its_objects_but_not_the_hosts() {
    let moat = Moat::start_with(crate::support::MoatOptions {
        policy_dir: Some(team_pack()),
        ..Default::default()
    });
    let (carol, dan, lead) = (unique("carol"), unique("dan"), unique("lead"));
    let dc = as_role(&moat, &carol, "web-devs");
    let dd = as_role(&moat, &dan, "web-devs");
    let dl = as_role(&moat, &lead, "web-admins");
    let outsider = as_role(&moat, &unique("bob"), "developer");
    let (app, ops) = (unique("team-app"), unique("team-ops"));
    dc.ok(&["run", "-d", "--name", &app, image(), "sleep", "300"]);
    let (_, doc) = engine().api("GET", &format!("/containers/{app}/json"), None);
    assert_eq!(
        doc["Config"]["Labels"]["io.moat.scope"], "team:web",
        "{doc}"
    );
    assert_eq!(
        doc["Config"]["Labels"]["io.moat.owner"],
        carol.as_str(),
        "{doc}"
    );

    // dan works on carol's container; an outsider does not see it.
    assert_eq!(dd.ok(&["exec", &app, "echo", "team"]), "team\n");
    let ps = dd.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.lines().any(|l| l == app), "{ps}");
    let ps = outsider.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(!ps.lines().any(|l| l == app), "{ps}");
    outsider.refused(&["stop", &app], &["belongs to", "scope team:web"]);

    // The team's admin runs a host-network container: the team's
    // developers may not use it.
    dl.ok(&[
        "create",
        "--name",
        &ops,
        "--network",
        "host",
        image(),
        "sleep",
        "300",
    ]);
    let hostnet = format!("container:{ops}");
    dc.refused(
        &["run", "--rm", "--network", &hostnet, image(), "true"],
        &[
            "reaches the host (network=host",
            &format!("belongs to {lead}"),
        ],
    );
    dd.refused(&["rm", "-f", &ops], &["reaches the host"]);
    assert!(engine().has("containers", &ops));
    dd.ok(&["rm", "-f", &app]);
    engine().remove(&[&ops], &[], &[]);
}
