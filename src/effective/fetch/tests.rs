//! Which parameters of which operations yield which fetches: cases as data.

use serde_json::{json, Value};

use super::*;

/// (param, kind, host, port, class, registry)
type Want = (
    &'static str,
    &'static str,
    &'static str,
    Option<u16>,
    &'static str,
    Option<&'static str>,
);

struct Case {
    op: OpId,
    query: &'static [(&'static str, &'static str)],
    params: &'static [(&'static str, &'static str)],
    body: Value,
    /// (param, kind, host, port, class, registry)
    want: Vec<Want>,
}

fn cases() -> Vec<Case> {
    let c = |op, query, params, body, want| Case {
        op,
        query,
        params,
        body,
        want,
    };
    vec![
        c(
            OpId::ImageCreate,
            &[("fromSrc", "http://127.0.0.1:9/x")],
            &[],
            Value::Null,
            vec![("fromSrc", "url", "127.0.0.1", Some(9), "loopback", None)],
        ),
        c(
            OpId::ImageCreate,
            &[("fromSrc", "-")],
            &[],
            Value::Null,
            vec![],
        ),
        c(
            OpId::ImageCreate,
            &[("fromSrc", "-"), ("fromSrc", "10.0.0.1/x")],
            &[],
            Value::Null,
            vec![("fromSrc", "url", "10.0.0.1", None, "private", None)],
        ),
        c(
            OpId::ImageCreate,
            &[("fromImage", "busybox"), ("tag", "latest")],
            &[],
            Value::Null,
            vec![(
                "fromImage",
                "registry",
                "docker.io",
                None,
                "name",
                Some("docker.io"),
            )],
        ),
        c(
            OpId::ImageCreate,
            &[("fromImage", "[::1]:5000/img")],
            &[],
            Value::Null,
            vec![(
                "fromImage",
                "registry",
                "::1",
                Some(5000),
                "loopback",
                Some("[::1]:5000"),
            )],
        ),
        c(
            OpId::ImageCreate,
            &[("fromImage", "")],
            &[],
            Value::Null,
            vec![],
        ),
        c(
            OpId::ImageBuild,
            &[("remote", "http://169.254.169.254/ctx.tar"), ("t", "x")],
            &[],
            Value::Null,
            vec![("remote", "url", "169.254.169.254", None, "link_local", None)],
        ),
        c(
            OpId::ImageBuild,
            &[("remote", "git@github.com:a/b.git")],
            &[],
            Value::Null,
            vec![("remote", "url", "github.com", None, "name", None)],
        ),
        c(
            OpId::ImageBuild,
            &[("remote", "client-session")],
            &[],
            Value::Null,
            vec![],
        ),
        c(
            OpId::ImageBuild,
            &[(
                "cachefrom",
                r#"["localhost:5000/c","type=local,src=/x","type=registry,ref=10.1.1.1/c"]"#,
            )],
            &[],
            Value::Null,
            vec![
                (
                    "cachefrom",
                    "registry",
                    "localhost",
                    Some(5000),
                    "loopback",
                    Some("localhost:5000"),
                ),
                (
                    "cachefrom",
                    "registry",
                    "10.1.1.1",
                    None,
                    "private",
                    Some("10.1.1.1"),
                ),
            ],
        ),
        c(
            OpId::ImageBuild,
            &[("cachefrom", "not json")],
            &[],
            Value::Null,
            vec![],
        ),
        c(
            OpId::ImagePush,
            &[("tag", "v1")],
            &[("name", "127.0.0.1:5000/me/img")],
            Value::Null,
            vec![(
                "name",
                "registry",
                "127.0.0.1",
                Some(5000),
                "loopback",
                Some("127.0.0.1:5000"),
            )],
        ),
        c(
            OpId::ImageSearch,
            &[("term", "localhost/x")],
            &[],
            Value::Null,
            vec![(
                "term",
                "registry",
                "localhost",
                None,
                "loopback",
                Some("localhost"),
            )],
        ),
        c(
            OpId::DistributionInspect,
            &[],
            &[("name", "busybox")],
            Value::Null,
            vec![(
                "name",
                "registry",
                "docker.io",
                None,
                "name",
                Some("docker.io"),
            )],
        ),
        c(
            OpId::PluginPull,
            &[("remote", "192.168.0.1:5000/p"), ("name", "p")],
            &[],
            Value::Null,
            vec![(
                "remote",
                "registry",
                "192.168.0.1",
                Some(5000),
                "private",
                Some("192.168.0.1:5000"),
            )],
        ),
        c(
            OpId::PluginCreate,
            &[("name", "p")],
            &[],
            Value::Null,
            vec![],
        ),
        c(
            OpId::SystemAuth,
            &[],
            &[],
            json!({"username": "u", "serveraddress": "https://127.0.0.1:5000/v1/"}),
            vec![(
                "serveraddress",
                "registry",
                "127.0.0.1",
                Some(5000),
                "loopback",
                Some("127.0.0.1:5000"),
            )],
        ),
        c(
            OpId::SystemAuth,
            &[],
            &[],
            json!({"username": "u"}),
            vec![(
                "serveraddress",
                "registry",
                "docker.io",
                None,
                "name",
                Some("docker.io"),
            )],
        ),
        c(
            OpId::SwarmJoin,
            &[],
            &[],
            json!({"RemoteAddrs": ["[::1]:2377", "mgr:2377"]}),
            vec![
                (
                    "RemoteAddrs",
                    "address",
                    "::1",
                    Some(2377),
                    "loopback",
                    None,
                ),
                ("RemoteAddrs", "address", "mgr", Some(2377), "name", None),
            ],
        ),
        c(
            OpId::SwarmInit,
            &[],
            &[],
            json!({"Spec": {"CAConfig": {"ExternalCAs": [{"Protocol": "cfssl", "URL": "https://127.0.0.1:8888"}]}}}),
            vec![(
                "Spec.CAConfig.ExternalCAs.URL",
                "url",
                "127.0.0.1",
                Some(8888),
                "loopback",
                None,
            )],
        ),
        c(
            OpId::ContainerCreate,
            &[],
            &[],
            json!({"Image": "a", "HostConfig": {"LogConfig": {"Type": "syslog", "Config": {
                "syslog-address": "tcp://127.0.0.1:514", "tag": "x"}}}}),
            vec![(
                "HostConfig.LogConfig.Config.syslog-address",
                "url",
                "127.0.0.1",
                Some(514),
                "loopback",
                None,
            )],
        ),
        c(
            OpId::ContainerCreate,
            &[],
            &[],
            json!({"Image": "a", "HostConfig": {"LogConfig": {"Type": "fluentd", "Config": {}}}}),
            vec![(
                "HostConfig.LogConfig.Config.fluentd-address",
                "address",
                "localhost",
                Some(24224),
                "loopback",
                None,
            )],
        ),
        c(
            OpId::ContainerCreate,
            &[],
            &[],
            json!({"Image": "a", "HostConfig": {"LogConfig": {"Type": "loki", "Config": {
                "loki-url": "http://10.0.0.2:3100/loki/api/v1/push"}}}}),
            vec![(
                "HostConfig.LogConfig.Config.loki-url",
                "url",
                "10.0.0.2",
                Some(3100),
                "private",
                None,
            )],
        ),
        c(
            OpId::ContainerCreate,
            &[],
            &[],
            json!({"Image": "a", "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}}}),
            vec![],
        ),
        c(
            OpId::ContainerCreate,
            &[],
            &[],
            json!({"Image": "a", "HostConfig": {"Mounts": [{"Type": "volume", "Target": "/d",
                "VolumeOptions": {"DriverConfig": {"Options": {"type": "nfs", "o": "addr=127.0.0.1,rw", "device": ":/export"}}}}]}}),
            vec![(
                "HostConfig.Mounts.VolumeOptions.DriverConfig.Options.o",
                "address",
                "127.0.0.1",
                None,
                "loopback",
                None,
            )],
        ),
        c(
            OpId::VolumeCreate,
            &[],
            &[],
            json!({"Name": "v", "DriverOpts": {"type": "nfs", "device": "10.0.0.9:/export"}}),
            vec![(
                "DriverOpts.device",
                "address",
                "10.0.0.9",
                None,
                "private",
                None,
            )],
        ),
        c(
            OpId::VolumeCreate,
            &[],
            &[],
            json!({"Name": "v", "Driver": "local", "DriverOpts": {"type": "cifs", "device": "//[::1]/share", "o": "username=u"}}),
            vec![(
                "DriverOpts.device",
                "address",
                "::1",
                None,
                "loopback",
                None,
            )],
        ),
        c(
            OpId::VolumeCreate,
            &[],
            &[],
            json!({"Name": "v", "Driver": "someplugin", "DriverOpts": {"type": "nfs", "device": "10.0.0.9:/export"}}),
            vec![],
        ),
        c(
            OpId::VolumeCreate,
            &[],
            &[],
            json!({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}}),
            vec![],
        ),
        c(
            OpId::ServiceCreate,
            &[],
            &[],
            json!({"TaskTemplate": {"ContainerSpec": {"Image": "localhost:5000/s"},
                "LogDriver": {"Name": "gelf", "Options": {"gelf-address": "udp://[fe80::1]:12201"}}}}),
            vec![
                (
                    "TaskTemplate.ContainerSpec.Image",
                    "registry",
                    "localhost",
                    Some(5000),
                    "loopback",
                    Some("localhost:5000"),
                ),
                (
                    "TaskTemplate.LogDriver.Options.gelf-address",
                    "url",
                    "fe80::1",
                    Some(12201),
                    "link_local",
                    None,
                ),
            ],
        ),
        c(
            OpId::ContainerStart,
            &[("fromSrc", "http://127.0.0.1/")],
            &[],
            Value::Null,
            vec![],
        ),
    ]
}

#[test]
fn every_case() {
    for case in cases() {
        let query: Vec<(String, String)> = case
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let params: Vec<(&'static str, String)> = case
            .params
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let got = fetches(case.op, &query, &params, Some(&case.body));
        let got: Vec<_> = got
            .iter()
            .map(|f| {
                let j = serde_json::to_value(f).unwrap();
                (
                    f.param.clone(),
                    j["kind"].as_str().unwrap().to_owned(),
                    f.host.clone(),
                    f.port,
                    j["address_class"].as_str().unwrap().to_owned(),
                    f.registry.clone(),
                )
            })
            .collect();
        let want: Vec<_> = case
            .want
            .iter()
            .map(|(p, k, h, port, c, r)| {
                (
                    p.to_string(),
                    k.to_string(),
                    h.to_string(),
                    *port,
                    c.to_string(),
                    r.map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "{:?} {:?} {:?} {}",
            case.op, case.query, case.params, case.body
        );
    }
}

#[test]
fn the_document_shape() {
    let f = fetches(
        OpId::ImageCreate,
        &[("fromSrc".into(), "http://[::ffff:127.0.0.1]:8/x".into())],
        &[],
        None,
    );
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        json!([{"param": "fromSrc", "kind": "url", "value": "http://[::ffff:127.0.0.1]:8/x",
                "host": "::ffff:127.0.0.1", "port": 8, "address_class": "loopback", "registry": null}])
    );
}
