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

test_build_host_network if denies(
	object.union(req("ImageBuild", null, []), {"request": {"query": {"networkmode": ["host"]}, "body": null}}),
	"networkmode=host",
)

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

# --- URLs the engine would fetch -------------------------------------------

query_req(op, query) := object.union(req(op, null, []), {"request": {"query": query, "body": null}})

test_import_from_url_denied if denies(query_req("ImageCreate", {"fromSrc": ["http://127.0.0.1:8080/x.tar"]}), "developer policy: fromSrc=http://127.0.0.1:8080/x.tar makes the engine fetch from that address")

test_import_from_upload_allowed if clean(query_req("ImageCreate", {"fromSrc": ["-"]}))

test_pull_allowed if clean(query_req("ImageCreate", {"fromImage": ["busybox"]}))

test_build_remote_denied if denies(query_req("ImageBuild", {"remote": ["http://169.254.169.254/ctx.tar"]}), "remote=http://169.254.169.254/ctx.tar makes the engine fetch")

test_build_git_remote_denied if denies(query_req("ImageBuild", {"remote": ["git@github.com:a/b.git"]}), "data.moat.allowed_url_hosts")

test_every_value_is_checked if denies(query_req("ImageCreate", {"fromSrc": ["-", "http://10.0.0.1/x"]}), "fromSrc=http://10.0.0.1/x")

test_allowed_host if clean(query_req("ImageBuild", {"remote": ["https://User@Git.Example.com:443/ctx.tar"]})) with data.moat.allowed_url_hosts as ["git.example.com"]

test_allowed_host_is_exact if denies(query_req("ImageBuild", {"remote": ["https://git.example.com.evil.net/x"]}), "remote=") with data.moat.allowed_url_hosts as ["git.example.com"]

test_admin_may_fetch if clean(object.union(query_req("ImageCreate", {"fromSrc": ["http://127.0.0.1/x"]}), {"user": admin}))
