# Tests of sandbox.rego: one or more per rule, each checking the message.
package docker.authz.sandbox_test

import rego.v1

import data.docker.authz

dev := {"name": "dana", "groups": ["developer"], "scopes": [], "auth_method": "certificate"}

admin := {"name": "ada", "groups": ["admin"], "scopes": [], "auth_method": "certificate"}

req(op, body, binds) := {
	"operation": {"id": op, "params": {}, "resource": "test", "readonly": false},
	"user": dev,
	"request": {"method": "POST", "path": "/test", "query": {}, "headers": {}, "body": body},
	"BindMounts": binds,
}

create(hc) := req("ContainerCreate", {"Image": "alpine", "HostConfig": hc}, [])

denies(inp, fragment) if {
	some msg in authz.deny with input as inp
	contains(msg, fragment)
}

clean(inp) if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
}

test_plain_create_allowed if clean(create({"Binds": null, "CapAdd": null, "Mounts": null}))

test_null_body_allowed if clean(req("ContainerCreate", null, []))

test_null_host_config_allowed if clean(req("ContainerCreate", {"Image": "alpine", "HostConfig": null}, []))

test_privileged if denies(create({"Privileged": true}), "developer policy: privileged containers are not allowed (HostConfig.Privileged); ask an admin or drop --privileged")

test_admin_privileged if clean(object.union(create({"Privileged": true}), {"user": admin}))

test_privileged_exec if denies(req("ContainerExec", {"Cmd": ["sh"], "Privileged": true}, []), "privileged exec")

test_plain_exec if clean(req("ContainerExec", {"Cmd": ["sh"]}, []))

test_host_namespaces if {
	denies(create({"NetworkMode": "host"}), "--network host")
	denies(create({"PidMode": "host"}), "--pid host")
	denies(create({"IpcMode": "host"}), "--ipc host")
	denies(create({"UTSMode": "host"}), "--uts host")
	denies(create({"UsernsMode": "host"}), "--userns host")
	denies(create({"CgroupnsMode": "host"}), "--cgroupns host")
	denies(create({"NetworkMode": "HOST"}), "--network host")
}

test_private_namespaces if clean(create({"NetworkMode": "bridge", "PidMode": "container:abc", "IpcMode": "private"}))

test_host_endpoint if denies(
	req("ContainerCreate", {"Image": "a", "NetworkingConfig": {"EndpointsConfig": {"host": {}}}}, []),
	"NetworkingConfig.EndpointsConfig.host",
)

test_network_connect_host if denies(
	object.union(req("NetworkConnect", {"Container": "c"}, []), {"operation": {"id": "NetworkConnect", "params": {"id": "host"}, "readonly": false}}),
	"host network",
)

build(mode) := object.union(req("ImageBuild", null, []), {"request": {"query": {"networkmode": [mode]}, "body": null}})

test_build_host_network if denies(build("host"), "networkmode=host")

test_build_other_network_modes if {
	denies(build("container:admin-ctr"), "not networkmode=container:admin-ctr")
	denies(build("HOST"), "networkmode=HOST")
	denies(build("team-net"), "networkmode=team-net")
	clean(build("default"))
	clean(build("none"))
	clean(build(""))
	clean(object.union(build("container:x"), {"user": admin}))
}

test_build_cgroup_parent if denies(
	object.union(req("ImageBuild", null, []), {"request": {"query": {"cgroupparent": ["/x"]}, "body": null}}),
	"cgroup parent",
)

test_cap_add_outside_allowlist if {
	denies(create({"CapAdd": ["SYS_ADMIN"]}), "capability SYS_ADMIN is not in the allowlist")
	denies(create({"CapAdd": ["CAP_SYS_ADMIN"]}), "capability SYS_ADMIN")
	denies(create({"CapAdd": ["all"]}), "capability ALL")
}

test_cap_add_in_allowlist if clean(create({"CapAdd": ["NET_BIND_SERVICE", "cap_chown"]}))

test_cap_allowlist_from_data if clean(create({"CapAdd": ["SYS_PTRACE"]})) with data.moat.allowed_capabilities as ["SYS_PTRACE"]

test_devices if {
	denies(create({"Devices": [{"PathOnHost": "/dev/sda"}]}), "(Devices)")
	denies(create({"DeviceRequests": [{"Count": -1}]}), "--gpus")
	denies(create({"DeviceCgroupRules": ["c 1:3 mr"]}), "--device-cgroup-rule")
	denies(req("ContainerUpdate", {"Devices": [{"PathOnHost": "/dev/kmsg"}]}, []), "(Devices)")
}

test_empty_devices if clean(create({"Devices": [], "DeviceRequests": null}))

test_security_opt_unconfined if {
	denies(create({"SecurityOpt": ["seccomp=unconfined"]}), "seccomp=unconfined is not allowed")
	denies(create({"SecurityOpt": ["seccomp:unconfined"]}), "seccomp=unconfined")
	denies(create({"SecurityOpt": ["apparmor=unconfined"]}), "apparmor=unconfined")
	denies(create({"SecurityOpt": ["systempaths=unconfined"]}), "systempaths=unconfined")
}

test_custom_seccomp if denies(create({"SecurityOpt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}), "custom seccomp")

test_label_disable if denies(create({"SecurityOpt": ["label=disable"]}), "SELinux labels")

test_harmless_security_opt if clean(create({"SecurityOpt": ["no-new-privileges", "apparmor=docker-default"]}))

test_masked_paths if {
	denies(create({"MaskedPaths": []}), "HostConfig.MaskedPaths")
	denies(create({"ReadonlyPaths": []}), "HostConfig.ReadonlyPaths")
}

test_runtime if {
	denies(create({"Runtime": "kata"}), "custom runtimes")
	clean(create({"Runtime": "runc"}))
	clean(create({"Runtime": ""}))
}

test_cgroup_parent if {
	denies(create({"CgroupParent": "/sys"}), "cgroup parent")
	denies(req("ContainerUpdate", {"CgroupParent": "/sys"}, []), "cgroup parent")
	clean(create({"CgroupParent": ""}))
}

bind(src) := {"Source": src, "ReadOnly": false, "Resolved": src}

test_bind_denied_by_default if denies(req("ContainerCreate", {"Image": "a"}, [bind("/home/dana")]), "bind mounts of /home/dana are not allowed")

test_bind_under_allowed_root if {
	clean(req("ContainerCreate", {"Image": "a"}, [bind("/home/dana/src")])) with data.moat.allowed_bind_roots as ["/home/dana"]
	clean(req("ContainerCreate", {"Image": "a"}, [bind("/home/dana")])) with data.moat.allowed_bind_roots as ["/home/dana/"]
}

test_bind_prefix_is_not_a_root if denies(
	req("ContainerCreate", {"Image": "a"}, [bind("/home/danaevil")]),
	"bind mounts of /home/danaevil",
) with data.moat.allowed_bind_roots as ["/home/dana"]

test_bind_symlink_escape if denies(
	req("ContainerCreate", {"Image": "a"}, [{"Source": "/home/dana/link", "ReadOnly": false, "Resolved": "/etc"}]),
	"bind mounts of /home/dana/link",
) with data.moat.allowed_bind_roots as ["/home/dana"]

test_docker_socket if denies(
	req("ContainerCreate", {"Image": "a"}, [bind("/var/run/docker.sock")]),
	"Docker socket",
) with data.moat.allowed_bind_roots as ["/var/run"]

test_odd_mount_type if denies(create({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}), "mounts of type")

test_tmpfs_and_volume_mounts if clean(create({"Mounts": [{"Type": "tmpfs", "Target": "/t"}, {"Type": "volume", "Source": "v", "Target": "/v"}]}))

test_bind_volume_options if {
	m := {"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}
	denies(create({"Mounts": [m]}), "VolumeOptions type=none,o=bind,device=")
}

test_volume_create_bind if {
	denies(req("VolumeCreate", {"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}}, []), "DriverOpts")
	denies(req("VolumeCreate", {"Name": "v", "DriverOpts": {"o": "rbind"}}, []), "DriverOpts")
	denies(req("VolumeCreate", {"Name": "v", "DriverOpts": {"device": "/dev/sda1", "type": "ext4"}}, []), "DriverOpts")
}

test_volume_create_plain if {
	clean(req("VolumeCreate", {"Name": "v"}, []))
	clean(req("VolumeCreate", {"Name": "v", "DriverOpts": null}, []))
	clean(req("VolumeCreate", {"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}}, []))
}

test_volumes_from if denies(create({"VolumesFrom": ["db"]}), "--volumes-from")

test_cluster_operations if {
	every op in ["SwarmInit", "ServiceCreate", "NodeList", "TaskList", "SecretCreate", "ConfigCreate", "PluginPull", "GetPluginPrivileges", "CheckpointCreate"] {
		denies(req(op, null, []), sprintf("(%s)", [op]))
	}
}

test_admin_unrestricted if clean(object.union(
	create({"NetworkMode": "host", "CapAdd": ["SYS_ADMIN"], "Devices": [{"PathOnHost": "/dev/sda"}]}),
	{"user": admin},
))

# --- Addresses the engine would contact --------------------------------------
# The facts are given as moat computes them (src/effective/fetch/tests.rs
# checks the computation); these cases check the rules.

fetch(param, kind, value, host, port, class, registry) := {
	"param": param, "kind": kind, "value": value, "host": host,
	"port": port, "address_class": class, "registry": registry,
}

url(param, value, host, port, class) := fetch(param, "url", value, host, port, class, null)

reg(param, value, registry, host, port, class) := fetch(param, "registry", value, host, port, class, registry)

fetching(op, fetches) := object.union(req(op, null, []), {"operation": {"id": op, "params": {}, "readonly": false, "fetches": fetches}})

as_admin(inp) := object.union(inp, {"user": admin})

# (case, operation, fetches, message fragment): each is refused for a developer
# and allowed for an admin.
refused_fetches := [
	["import from loopback", "ImageCreate", [url("fromSrc", "http://127.0.0.1:8080/x.tar", "127.0.0.1", 8080, "loopback")], "developer policy: fromSrc=http://127.0.0.1:8080/x.tar makes the engine connect to 127.0.0.1:8080 (loopback), which is not in data.moat.allowed_hosts; import an upload instead"],
	["build from metadata", "ImageBuild", [url("remote", "http://169.254.169.254/ctx.tar", "169.254.169.254", null, "link_local")], "remote=http://169.254.169.254/ctx.tar makes the engine connect to 169.254.169.254 (link_local)"],
	["build from git", "ImageBuild", [url("remote", "git@github.com:a/b.git", "github.com", null, "name")], "send the build context from the client instead"],
	["v6 loopback", "ImageCreate", [url("fromSrc", "http://[::1]:9/x", "::1", 9, "loopback")], "connect to [::1]:9 (loopback)"],
	["pull from a local registry", "ImageCreate", [reg("fromImage", "localhost:5000/x", "localhost:5000", "localhost", 5000, "loopback")], "developer policy: registry localhost:5000 is not allowed (fromImage=localhost:5000/x; allowed registries: data.moat.allowed_registries)"],
	["push", "ImagePush", [reg("name", "10.0.0.1/x", "10.0.0.1", "10.0.0.1", null, "private")], "registry 10.0.0.1 is not allowed (name=10.0.0.1/x"],
	["login", "SystemAuth", [reg("serveraddress", "https://127.0.0.1:5000/v1/", "127.0.0.1:5000", "127.0.0.1", 5000, "loopback")], "registry 127.0.0.1:5000 is not allowed (serveraddress="],
	["search", "ImageSearch", [reg("term", "localhost/x", "localhost", "localhost", null, "loopback")], "registry localhost is not allowed (term="],
	["syslog", "ContainerCreate", [url("HostConfig.LogConfig.Config.syslog-address", "udp://127.0.0.1:514", "127.0.0.1", 514, "loopback")], "HostConfig.LogConfig.Config.syslog-address=udp://127.0.0.1:514 makes the engine connect to 127.0.0.1:514 (loopback), which is not in data.moat.allowed_hosts; use a log driver without a network address"],
	["fluentd default", "ContainerCreate", [fetch("HostConfig.LogConfig.Config.fluentd-address", "address", "", "localhost", 24224, "loopback", null)], "connect to localhost:24224"],
	["nfs", "VolumeCreate", [fetch("DriverOpts.o", "address", "addr=127.0.0.1", "127.0.0.1", null, "loopback", null)], "DriverOpts.o=addr=127.0.0.1 makes the engine connect to 127.0.0.1 (loopback), which is not in data.moat.allowed_hosts; create a plain named volume"],
	["cifs in a mount", "ContainerCreate", [fetch("HostConfig.Mounts.VolumeOptions.DriverConfig.Options.device", "address", "//fileserver/share", "fileserver", null, "name", null)], "create a plain named volume"],
	["swarm join", "SwarmJoin", [fetch("RemoteAddrs", "address", "10.0.0.1:2377", "10.0.0.1", 2377, "private", null)], "ask an admin to join the swarm"],
	["a second, refused fetch", "ImageCreate", [reg("fromImage", "busybox", "docker.io", "docker.io", null, "name"), url("fromSrc", "http://10.0.0.1/x", "10.0.0.1", null, "private")], "fromSrc=http://10.0.0.1/x"],
]

test_refused_fetches if {
	every c in refused_fetches {
		denies(fetching(c[1], c[2]), c[3])
	}
}

test_admin_may_fetch if {
	every c in refused_fetches {
		count(authz.deny) == 0 with input as as_admin(fetching(c[1], c[2]))
	}
}

test_no_fetches_allowed if {
	clean(fetching("ImageCreate", []))
	clean(query_req("ImageCreate", {"fromSrc": ["-"]}))
}

test_pull_from_docker_hub_allowed if clean(fetching("ImageCreate", [reg("fromImage", "busybox", "docker.io", "docker.io", null, "name")]))

test_allowed_host if {
	inp := fetching("ImageBuild", [url("remote", "https://User@Git.Example.com:443/ctx.tar", "git.example.com", 443, "name")])
	clean(inp) with data.moat.allowed_hosts as ["Git.Example.com"]
	clean(inp) with data.moat.allowed_hosts as ["git.example.com:443"]
	denies(inp, "git.example.com:443 (name)") with data.moat.allowed_hosts as ["git.example.com:80"]
}

test_allowed_host_is_exact if denies(
	fetching("ImageBuild", [url("remote", "https://git.example.com.evil.net/x", "git.example.com.evil.net", null, "name")]),
	"remote=",
) with data.moat.allowed_hosts as ["git.example.com"]

test_allowed_v6_host_port if clean(fetching("ImageCreate", [url("fromSrc", "http://[fd00::1]:8/x", "fd00::1", 8, "private")])) with data.moat.allowed_hosts as ["[fd00::1]:8"]

test_allowed_registry if {
	inp := fetching("ImageCreate", [reg("fromImage", "localhost:5000/x", "localhost:5000", "localhost", 5000, "loopback")])
	clean(inp) with data.moat.allowed_registries as ["docker.io", "localhost:5000"]
	denies(inp, "registry localhost:5000") with data.moat.allowed_registries as ["localhost"]
}

test_no_registry_allowed if denies(
	fetching("ImageCreate", [reg("fromImage", "busybox", "docker.io", "docker.io", null, "name")]),
	"registry docker.io is not allowed",
) with data.moat.allowed_registries as []

# --- The classic builder's host options ----------------------------------------

query_req(op, query) := object.union(req(op, null, []), {"request": {"query": query, "body": null}})

test_build_security_opt if denies(query_req("ImageBuild", {"securityopt": ["seccomp=unconfined"]}), "developer policy: build security options are not allowed (securityopt=seccomp=unconfined); ask an admin or drop --security-opt")

test_build_isolation if {
	denies(query_req("ImageBuild", {"isolation": ["hyperv"]}), "isolation=hyperv")
	clean(query_req("ImageBuild", {"isolation": ["default"], "securityopt": [""]}))
	clean(query_req("ImageBuild", {"isolation": [""]}))
	count(authz.deny) == 0 with input as as_admin(query_req("ImageBuild", {"securityopt": ["seccomp=unconfined"], "isolation": ["x"]}))
}
