# Tests of ownership.rego. The cases are data: who asks, which operation,
# which objects it names (input.resources), and the expected outcome (a
# fragment of the deny message, or "" for allowed).
package docker.authz.ownership_test

import rego.v1

import data.docker.authz

person(name, groups) := {"name": name, "groups": groups, "scopes": [], "auth_method": "certificate"}

alice := person("alice", ["developer"])

bob := person("bob", ["developer"])

ada := person("ada", ["admin"])

vic := person("vic", ["viewer"])

owner(name) := {"user": name, "scope": sprintf("user:%s", [name]), "auth": "tls"}

team_owner(name, team) := {"user": name, "scope": sprintf("team:%s", [team]), "auth": "tls"}

res(kind, position, ref, own, host) := {
	"kind": kind, "position": position, "ref": ref, "id": ref, "name": ref,
	"exists": true, "owner": own, "host_access": host,
}

req(who, op, resources) := {
	"operation": {"id": op, "params": {}, "resource": "test", "readonly": false},
	"user": who,
	"request": {"method": "POST", "path": "/test", "query": {}, "headers": {}, "body": {}},
	"BindMounts": [],
	"resources": resources,
}

# "" when allowed, else the deny messages joined.
outcome(inp) := "" if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
} else := msg if {
	msg := concat(" | ", authz.deny) with input as inp
}

expect(case) if {
	case.want == ""
	outcome(case.input) == ""
}

expect(case) if {
	case.want != ""
	got := outcome(case.input)
	contains(got, case.want)
}

alices_ctr := res("container", "path", "web", owner("alice"), [])

bobs_ctr := res("container", "path", "db", owner("bob"), [])

admins_ops_ctr := res("container", "path", "ops", owner("ada"), ["bind:/"])

admins_hostnet_ctr := res("container", "HostConfig.NetworkMode", "hostnet", owner("ada"), ["network=host"])

legacy_ctr := res("container", "path", "legacy", null, [])

admins_bind_volume := object.union(
	res("volume", "HostConfig.Binds[0]", "hostroot", owner("ada"), ["volume-bind:/"]),
	{"volume": {"driver": "local", "options": {"type": "none", "o": "bind", "device": "/"}}},
)

new_volume := object.union(res("volume", "HostConfig.Binds[0]", "fresh", null, []), {"exists": false})

bridge := object.union(res("network", "NetworkingConfig.EndpointsConfig.bridge", "bridge", null, []), {"network": {"driver": "bridge", "builtin": true}})

host_network := object.union(res("network", "HostConfig.NetworkMode", "host", null, ["network=host"]), {"network": {"driver": "host", "builtin": true}})

# The attacks of issue 15, and the developer's own work.
test_developers_act_only_on_their_own if {
	cases := [
		{"input": req(alice, "ContainerDelete", [alices_ctr]), "want": ""},
		{"input": req(alice, "ExecStart", [object.union(alices_ctr, {"kind": "exec"})]), "want": ""},
		{"input": req(alice, "ContainerDelete", [bobs_ctr]), "want": "container db (named in the request path) belongs to bob (scope user:bob), not to your scope user:alice"},
		{"input": req(alice, "ContainerExec", [admins_ops_ctr]), "want": "belongs to ada"},
		{"input": req(alice, "ContainerArchive", [admins_ops_ctr]), "want": "belongs to ada"},
		{"input": req(alice, "PutContainerArchive", [admins_ops_ctr]), "want": "belongs to ada"},
		{"input": req(alice, "ContainerAttach", [admins_ops_ctr]), "want": "belongs to ada"},
		{"input": req(alice, "ContainerInspect", [admins_ops_ctr]), "want": "belongs to ada"},
		{"input": req(alice, "ContainerCreate", [admins_hostnet_ctr]), "want": "container hostnet (named in HostConfig.NetworkMode) belongs to ada"},
		{"input": req(alice, "ContainerCreate", [admins_bind_volume]), "want": "volume hostroot (named in HostConfig.Binds[0]) belongs to ada"},
		{"input": req(alice, "ContainerDelete", [legacy_ctr]), "want": "unowned"},
		{"input": req(alice, "ContainerCreate", [new_volume, bridge]), "want": ""},
		{"input": req(alice, "ContainerCreate", [host_network]), "want": "network host"},
		{"input": req(bob, "ContainerDelete", [bobs_ctr]), "want": ""},
	]
	every case in cases {
		expect(case)
	}
}

test_admins_act_on_everything if {
	every r in [bobs_ctr, admins_ops_ctr, legacy_ctr, admins_bind_volume, host_network] {
		outcome(req(ada, "ContainerDelete", [r])) == ""
	}
}

test_viewers_read_but_not_anothers_environment if {
	cases := [
		{"input": object.union(req(vic, "ContainerInspect", [bobs_ctr]), {"operation": {"readonly": true}}), "want": "shows the environment (secrets) of an object that belongs to bob"},
		{"input": object.union(req(vic, "ExecInspect", [object.union(bobs_ctr, {"kind": "exec"})]), {"operation": {"readonly": true}}), "want": "belongs to bob"},
		{"input": object.union(req(vic, "ContainerLogs", [bobs_ctr]), {"operation": {"readonly": true}}), "want": ""},
		{"input": object.union(req(vic, "ContainerList", []), {"operation": {"readonly": true}}), "want": ""},
	]
	every case in cases {
		expect(case)
	}
}

test_scopes_and_narrowing if {
	authz.owner_scope == "user:alice" with input as req(alice, "ContainerCreate", [])
	authz.view_scope == "user:alice" with input as req(alice, "ContainerList", [])
	authz.owner_scope == "user:ada" with input as req(ada, "ContainerCreate", [])
	not authz.view_scope with input as req(ada, "ContainerList", [])
	not authz.view_scope with input as req(vic, "ContainerList", [])
	ci := object.union(person("build-42", ["ci"]), {"auth_method": "token", "scopes": ["containers:run"]})
	authz.view_scope == "user:build-42" with input as req(ci, "ContainerList", [])
	authz.view_scope == "user:alice" with input as req(person("alice", ["developer", "viewer"]), "ContainerList", [])
}

test_teams_share_a_scope if {
	teams := {"web-devs": "web", "db-devs": "db"}
	carol := person("carol", ["developer", "web-devs"])
	dan := person("dan", ["developer", "web-devs"])
	authz.owner_scope == "team:web" with input as req(carol, "ContainerCreate", []) with data.moat.owner_scopes as teams
	authz.view_scope == "team:web" with input as req(carol, "ContainerList", []) with data.moat.owner_scopes as teams
	dans_ctr := res("container", "path", "app", team_owner("dan", "web"), [])
	outcome(req(carol, "ContainerStop", [dans_ctr])) == "" with data.moat.owner_scopes as teams

	# Within the team, an object that reaches the host stays its creator's.
	dans_priv := res("container", "HostConfig.PidMode", "app", team_owner("dan", "web"), ["privileged"])
	contains(outcome(req(carol, "ContainerCreate", [dans_priv])), "reaches the host (privileged) and belongs to dan") with data.moat.owner_scopes as teams
	outcome(req(dan, "ContainerCreate", [dans_priv])) == "" with data.moat.owner_scopes as teams

	# A host cgroup namespace alone (cgroup v1's default) is shared.
	dans_v1 := res("container", "path", "app", team_owner("dan", "web"), ["cgroupns=host"])
	outcome(req(carol, "ContainerExec", [dans_v1])) == "" with data.moat.owner_scopes as teams

	# One identity, one scope.
	both := person("eve", ["developer", "web-devs", "db-devs"])
	contains(outcome(req(both, "ContainerList", [])), "groups of several teams (db, web)") with data.moat.owner_scopes as teams
}

test_shared_networks_come_from_data if {
	mine := object.union(res("network", "NetworkingConfig.EndpointsConfig.frontend", "frontend", owner("ada"), []), {"network": {"driver": "bridge", "builtin": false}})
	contains(outcome(req(alice, "ContainerCreate", [mine])), "network frontend")
	outcome(req(alice, "ContainerCreate", [mine])) == "" with data.moat.shared_networks as ["frontend"]
	contains(outcome(req(alice, "ContainerCreate", [bridge])), "network bridge") with data.moat.shared_networks as []
}

test_no_resources_no_ownership_denial if {
	outcome(object.remove(req(alice, "ContainerList", []), ["resources"])) == ""
}

