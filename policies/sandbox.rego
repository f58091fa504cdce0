# The sandbox: what developers and CI may not do even on operations their
# role allows. Each message names the rule, the field and what to change.
package docker.authz

import rego.v1

# --- Null-safe views of the request body ---------------------------------

body := input.request.body if is_object(input.request.body)

else := {}

host_config := body.HostConfig if is_object(body.HostConfig)

else := {}

# The fields that set resources: HostConfig on create, the body itself on update.
resources := host_config if op == "ContainerCreate"

else := body if op == "ContainerUpdate"

else := {}

# Null-safe lists of the ContainerCreate fields the rules read. Rules, not
# functions: each is computed once per evaluation.
cap_add := host_config.CapAdd if is_array(host_config.CapAdd)

else := []

security_opt := host_config.SecurityOpt if is_array(host_config.SecurityOpt)

else := []

mounts := host_config.Mounts if is_array(host_config.Mounts)

else := []

volumes_from := host_config.VolumesFrom if is_array(host_config.VolumesFrom)

else := []

bind_mounts := input.BindMounts if is_array(input.BindMounts)

else := []

str(x) := x if is_string(x)

else := ""

# --- Privileged ----------------------------------------------------------

deny contains msg if {
	restricted
	op == "ContainerCreate"
	host_config.Privileged == true
	msg := sprintf("%s policy: privileged containers are not allowed (HostConfig.Privileged); ask an admin or drop --privileged", [label])
}

deny contains msg if {
	restricted
	op == "ContainerExec"
	body.Privileged == true
	msg := sprintf("%s policy: privileged exec is not allowed (Privileged); ask an admin or drop --privileged", [label])
}

# --- Host namespaces ------------------------------------------------------

namespace_flags := {
	"NetworkMode": "--network host",
	"PidMode": "--pid host",
	"IpcMode": "--ipc host",
	"UTSMode": "--uts host",
	"UsernsMode": "--userns host",
	"CgroupnsMode": "--cgroupns host",
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some field, flag in namespace_flags
	mode := host_config[field]
	is_string(mode)
	lower(mode) == "host"
	msg := sprintf("%s policy: host namespaces are not allowed (HostConfig.%s=host); ask an admin or drop %s", [label, field, flag])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some name, _ in object.get(object.get(body, "NetworkingConfig", {}), "EndpointsConfig", {})
	lower(name) == "host"
	msg := sprintf("%s policy: the host network is not allowed (NetworkingConfig.EndpointsConfig.host); ask an admin or use a bridge network", [label])
}

deny contains msg if {
	restricted
	op == "NetworkConnect"
	lower(object.get(input.operation.params, "id", "")) == "host"
	msg := sprintf("%s policy: connecting to the host network is not allowed; ask an admin or use a bridge network", [label])
}

# The classic builder runs every RUN step in a container whose network mode
# is the build's `networkmode`, which the daemon does not check: `host`, the
# namespace of someone else's container (`container:NAME`, which may be on
# the host network), or any network by name. Those containers are the
# engine's own: they never pass through moat's ownership checks. So builds
# run on the default network or none.
build_network_modes := {"", "default", "bridge", "none"}

deny contains msg if {
	restricted
	op == "ImageBuild"
	some mode in object.get(input.request.query, "networkmode", [])
	not mode in build_network_modes
	msg := sprintf("%s policy: builds may run only on the default network or none, not networkmode=%s (the build's RUN steps would join that network or container); ask an admin or drop --network", [label, mode])
}

# --- Addresses the engine would contact (server-side request forgery) -----
# input.operation.fetches lists every address the engine will contact because
# of the request: URLs it downloads, registries, log servers, file servers,
# swarm managers (docs/policy-input.md). moat does not resolve names (the
# engine resolves them later, so a check on moat's own lookup could be
# outwitted): a host is allowed by its literal name or address, never by its
# address_class, and names that point at the host (ip6-localhost, a DNS name
# for 127.0.0.1) are refused like any host not listed.

fetches := input.operation.fetches if is_array(input.operation.fetches)

else := []

# A URL, log server, file server or swarm manager: allowed when its host (or
# host:port) is in data.moat.allowed_hosts (default: none).
deny contains msg if {
	restricted
	some f in fetches
	f.kind != "registry"
	not host_allowed(f)
	msg := sprintf("%s policy: %s=%s makes the engine connect to %s (%s), which is not in data.moat.allowed_hosts; %s", [label, f.param, f.value, host_port(f), f.address_class, fetch_advice(f.param)])
}

# A registry to pull from, push to, search or log in to: allowed when it is in
# data.moat.allowed_registries (default: docker.io).
deny contains msg if {
	restricted
	some f in fetches
	f.kind == "registry"
	not registry_allowed(f)
	msg := sprintf("%s policy: registry %s is not allowed (%s=%s; allowed registries: data.moat.allowed_registries); use an image of an allowed registry, or ask an admin to allow %s", [label, f.registry, f.param, f.value, f.registry])
}

host_allowed(f) if {
	some allowed in object.get(data.moat, "allowed_hosts", [])
	lower(allowed) in {f.host, host_port(f)}
}

registry_allowed(f) if {
	some allowed in object.get(data.moat, "allowed_registries", ["docker.io"])
	lower(allowed) == f.registry
}

host_port(f) := sprintf("[%s]:%d", [f.host, f.port]) if {
	is_number(f.port)
	contains(f.host, ":")
} else := sprintf("%s:%d", [f.host, f.port]) if {
	is_number(f.port)
} else := f.host

# What to change, by parameter.
fetch_advice(param) := "import an upload instead (fromSrc=-, docker import - < file.tar), or ask an admin to allow the host" if {
	param == "fromSrc"
} else := "send the build context from the client instead (docker build DIR, or - < context.tar), or ask an admin to allow the host" if {
	param == "remote"
} else := "ask an admin to join the swarm" if {
	param == "RemoteAddrs"
} else := "use a log driver without a network address (json-file, local, journald), or ask an admin to allow the host" if {
	log_param(param)
} else := "create a plain named volume, without a network file system's device or addr= option, or ask an admin to allow the host" if {
	volume_param(param)
} else := "ask an admin to allow the host"

log_param(param) if startswith(param, "HostConfig.LogConfig.")

log_param(param) if startswith(param, "TaskTemplate.LogDriver.")

volume_param(param) if contains(param, "DriverOpts.")

volume_param(param) if contains(param, "DriverConfig.Options.")

# --- The classic builder's host options ----------------------------------------

deny contains msg if {
	restricted
	op == "ImageBuild"
	some value in object.get(input.request.query, "securityopt", [])
	value != ""
	msg := sprintf("%s policy: build security options are not allowed (securityopt=%s); ask an admin or drop --security-opt from docker build", [label, value])
}

deny contains msg if {
	restricted
	op == "ImageBuild"
	some value in object.get(input.request.query, "isolation", [])
	not lower(value) in {"", "default"}
	msg := sprintf("%s policy: a build isolation other than the default is not allowed (isolation=%s); ask an admin or drop --isolation from docker build", [label, value])
}

# --- Capabilities ---------------------------------------------------------

cap_name(c) := upper(trim_prefix(upper(c), "CAP_"))

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some cap in cap_add
	not cap_name(cap) in data.moat.allowed_capabilities
	msg := sprintf("%s policy: capability %s is not in the allowlist (HostConfig.CapAdd, data.moat.allowed_capabilities); ask an admin or drop --cap-add %s", [label, cap_name(cap), cap])
}

# --- Devices --------------------------------------------------------------

device_fields := {
	"Devices": "--device",
	"DeviceRequests": "--gpus",
	"DeviceCgroupRules": "--device-cgroup-rule",
}

deny contains msg if {
	restricted
	some field, flag in device_fields
	devices := resources[field]
	is_array(devices)
	count(devices) > 0
	msg := sprintf("%s policy: host devices are not allowed (%s); ask an admin or drop %s", [label, field, flag])
}

# --- Security options -----------------------------------------------------

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some opt in security_opt
	parts := regex.find_all_string_submatch_n(`^(seccomp|apparmor|systempaths)[=:]unconfined$`, lower(opt), 1)
	count(parts) > 0
	msg := sprintf("%s policy: %s=unconfined is not allowed (HostConfig.SecurityOpt); ask an admin or drop --security-opt %s", [label, parts[0][1], opt])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some opt in security_opt
	regex.match(`^seccomp[=:]`, lower(opt))
	not regex.match(`^seccomp[=:](unconfined|builtin)$`, lower(opt))
	msg := sprintf("%s policy: custom seccomp profiles are not allowed (HostConfig.SecurityOpt); ask an admin or drop --security-opt seccomp=...", [label])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some opt in security_opt
	regex.match(`^label[=:]disable$`, lower(opt))
	msg := sprintf("%s policy: disabling SELinux labels is not allowed (HostConfig.SecurityOpt label=disable); ask an admin or drop --security-opt label=disable", [label])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some field in ["MaskedPaths", "ReadonlyPaths"]
	is_array(host_config[field])
	msg := sprintf("%s policy: overriding the masked /proc paths is not allowed (HostConfig.%s); ask an admin or drop --security-opt systempaths=unconfined", [label, field])
}

# --- Runtime and cgroups --------------------------------------------------

deny contains msg if {
	restricted
	op == "ContainerCreate"
	runtime := host_config.Runtime
	is_string(runtime)
	not runtime in {"", "runc"}
	msg := sprintf("%s policy: custom runtimes are not allowed (HostConfig.Runtime=%s); ask an admin or drop --runtime", [label, runtime])
}

deny contains msg if {
	restricted
	parent := resources.CgroupParent
	is_string(parent)
	parent != ""
	msg := sprintf("%s policy: a custom cgroup parent is not allowed (CgroupParent); ask an admin or drop --cgroup-parent", [label])
}

deny contains msg if {
	restricted
	op == "ImageBuild"
	some parent in object.get(input.request.query, "cgroupparent", [])
	parent != ""
	msg := sprintf("%s policy: a custom cgroup parent is not allowed (cgroupparent); ask an admin or drop --cgroup-parent", [label])
}

# --- The host file system ---------------------------------------------------

under_allowed_root(path) if {
	some root in data.moat.allowed_bind_roots
	path in {root, trim_suffix(root, "/")}
}

under_allowed_root(path) if {
	some root in data.moat.allowed_bind_roots
	startswith(path, concat("", [trim_suffix(root, "/"), "/"]))
}

bind_path(m) := m.Resolved if m.Resolved != ""

else := m.Source

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some m in bind_mounts
	not under_allowed_root(bind_path(m))
	msg := sprintf("%s policy: bind mounts of %s are not allowed (HostConfig.Binds/Mounts; allowed roots: data.moat.allowed_bind_roots); ask an admin or use a named volume", [label, m.Source])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some m in bind_mounts
	some path in [m.Source, bind_path(m)]
	contains(path, "docker.sock")
	msg := sprintf("%s policy: mounting the Docker socket is not allowed (%s); ask an admin", [label, m.Source])
}

# A bind that moat could not describe (a Mounts entry of an unexpected shape).
deny contains msg if {
	restricted
	op == "ContainerCreate"
	some m in mounts
	not m.Type in {"volume", "tmpfs", "image", "bind"}
	msg := sprintf("%s policy: mounts of type %v are not allowed (HostConfig.Mounts); use a named volume or tmpfs", [label, object.get(m, "Type", null)])
}

# The local volume driver bind-mounts host paths with type=none,o=bind,device=...
bind_like_options(opts) if lower(str(opts.type)) == "none"

bind_like_options(opts) if contains(lower(str(opts.o)), "bind")

bind_like_options(opts) if startswith(str(opts.device), "/")

deny contains msg if {
	restricted
	op == "ContainerCreate"
	some m in mounts
	m.Type == "volume"
	opts := object.get(object.get(object.get(m, "VolumeOptions", {}), "DriverConfig", {}), "Options", {})
	is_object(opts)
	bind_like_options(opts)
	msg := sprintf("%s policy: volume options that bind-mount the host are not allowed (HostConfig.Mounts VolumeOptions type=none,o=bind,device=...); ask an admin or use a plain named volume", [label])
}

deny contains msg if {
	restricted
	op == "VolumeCreate"
	opts := object.get(body, "DriverOpts", {})
	is_object(opts)
	bind_like_options(opts)
	msg := sprintf("%s policy: volume options that bind-mount the host are not allowed (DriverOpts type=none,o=bind,device=...); ask an admin or create the volume without --opt", [label])
}

deny contains msg if {
	restricted
	op == "ContainerCreate"
	count(volumes_from) > 0
	msg := sprintf("%s policy: sharing another container's volumes is not allowed (HostConfig.VolumesFrom); ask an admin or drop --volumes-from", [label])
}

# --- Swarm, plugins, secrets -------------------------------------------------

cluster_prefixes := ["Swarm", "Service", "Node", "Task", "Secret", "Config", "Plugin", "GetPluginPrivileges", "Checkpoint"]

deny contains msg if {
	restricted
	some prefix in cluster_prefixes
	startswith(op, prefix)
	msg := sprintf("%s policy: swarm, plugin, secret and config operations are not allowed (%s); ask an admin", [label, op])
}
