# Tests of authz.rego: roles and the operations they allow.
# Run them with `moat policy test policies`.
package docker.authz_test

import rego.v1

import data.docker.authz

user(groups, scopes) := {"name": "u", "groups": groups, "scopes": scopes, "auth_method": "certificate"}

request(op, readonly, groups, scopes) := {
	"operation": {"id": op, "params": {}, "resource": "test", "readonly": readonly},
	"user": user(groups, scopes),
	"request": {"method": "GET", "path": "/test", "query": {}, "headers": {}, "body": null},
	"BindMounts": [],
}

allowed(op, readonly, groups, scopes) if {
	authz.allow with input as request(op, readonly, groups, scopes)
	count(authz.deny) == 0 with input as request(op, readonly, groups, scopes)
}

denied_with(op, readonly, groups, scopes, fragment) if {
	some msg in authz.deny with input as request(op, readonly, groups, scopes)
	contains(msg, fragment)
}

test_admin_allowed_everything if {
	allowed("ContainerCreate", false, ["admin"], [])
	allowed("SwarmInit", false, ["admin"], [])
	allowed("PluginPull", false, ["admin"], [])
}

test_unknown_denied_for_admin if {
	not allowed("Unknown", false, ["admin"], [])
	denied_with("Unknown", false, ["admin"], [], "not a Docker Engine API operation")
}

test_no_groups_no_access if {
	not authz.allow with input as request("SystemPing", true, [], [])
}

test_unmapped_group_no_access if {
	not authz.allow with input as request("SystemPing", true, ["sales"], [])
}

test_group_mapping_comes_from_data if {
	authz.allow with input as request("ContainerCreate", false, ["platform"], [])
		with data.moat.group_roles as {"platform": ["admin"]}
}

test_developer_operations if {
	allowed("ContainerCreate", false, ["developer"], [])
	allowed("ImageBuild", false, ["developer"], [])
	allowed("VolumeCreate", false, ["developer"], [])
	allowed("NetworkCreate", false, ["developer"], [])
	allowed("ExecStart", false, ["developer"], [])
	allowed("SystemPing", true, ["developer"], [])
}

test_developer_not_debug if {
	not authz.allow with input as request("DebugPprof", true, ["developer"], [])
}

test_viewer_reads if {
	allowed("ContainerList", true, ["viewer"], [])
	allowed("ContainerInspect", true, ["viewer"], [])
	allowed("ImageList", true, ["viewer"], [])
}

test_viewer_no_writes if {
	not authz.allow with input as request("ContainerCreate", false, ["viewer"], [])
	not authz.allow with input as request("ContainerExec", false, ["viewer"], [])
}

test_viewer_no_file_contents if {
	some op in ["ContainerArchive", "ContainerArchiveInfo", "ContainerExport", "ImageGet", "ImageGetAll"]
	not allowed(op, true, ["viewer"], [])
}

test_viewer_file_content_messages if {
	every op in ["ContainerArchive", "ContainerArchiveInfo", "ContainerExport", "ImageGet", "ImageGetAll"] {
		denied_with(op, true, ["viewer"], [], "viewer policy")
	}
}

test_viewer_and_developer_can_export if {
	allowed("ContainerExport", true, ["viewer", "developer"], [])
}

test_ci_base if {
	allowed("SystemPing", true, ["ci"], [])
	not authz.allow with input as request("ContainerCreate", false, ["ci"], [])
}

test_ci_scopes if {
	allowed("ContainerCreate", false, ["ci"], ["containers:run"])
	allowed("ImageBuild", false, ["ci"], ["images:build"])
	allowed("ImagePush", false, ["ci"], ["images:push"])
	allowed("ImageCreate", false, ["ci"], ["images:pull"])
	not authz.allow with input as request("ImageBuild", false, ["ci"], ["containers:run"])
	not authz.allow with input as request("ContainerCreate", false, ["ci"], ["unknown:scope"])
}

test_label if {
	authz.label == "developer" with input as request("X", false, ["developer", "ci"], [])
	authz.label == "ci" with input as request("X", false, ["ci"], [])
	authz.label == "viewer" with input as request("X", false, ["viewer"], [])
	authz.label == "moat" with input as request("X", false, [], [])
}

local_request(name, groups) := {
	"operation": {"id": "ContainerList", "params": {}, "resource": "containers", "readonly": true},
	"user": {"name": name, "groups": groups, "scopes": [], "auth_method": "peer", "local": {"uid": 1001, "gid": 1001, "pid": 42}},
	"request": {"method": "GET", "path": "/containers/json", "query": {}, "headers": {}, "body": null},
	"BindMounts": [],
}

test_unmapped_local_user_is_told_how_to_map_it if {
	not authz.allow with input as local_request("bob", [])
	some msg in authz.deny with input as local_request("bob", [])
	contains(msg, "local user bob (uid 1001) has no moat role")
	contains(msg, "auth.local.users")
}

test_mapped_local_user_gets_the_role if {
	authz.allow with input as local_request("bob", ["viewer"])
	count(authz.deny) == 0 with input as local_request("bob", ["viewer"])
}

test_root_on_the_local_socket_is_admin_by_mapping if {
	authz.allow with input as local_request("root", ["admin"])
}
