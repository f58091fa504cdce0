# Ownership (issue 15): on a shared engine, developers and CI act only on
# what is theirs.
#
# moat labels what each identity creates (io.moat.owner, io.moat.scope,
# io.moat.auth) and shows the policy the objects a request names, with
# their owners, as input.resources. This file decides on them:
#
#   caller scope  team:<t> when one of the caller's groups maps to team <t>
#                 in data.moat.owner_scopes, else user:<name> (ci: the
#                 token's subject). Two mapped groups: refused.
#   admin         acts on everything; what it creates is labelled with its
#                 scope; lists are not narrowed.
#   developer, ci act only on objects whose owner scope is theirs, plus the
#                 networks of data.moat.shared_networks and the named
#                 volumes a container create will make; lists, events and
#                 prunes are narrowed to their scope (view_scope), and what
#                 cannot be narrowed (system df, image and build prune) is
#                 refused by moat.
#   viewer        reads everything as before, except the inspect of a
#                 container or exec that is not theirs (its environment
#                 holds secrets).
#
# Objects without an owner (created before moat, or by the engine's own
# tooling) are the admins' alone. A reference to an object that reaches the
# host (privileged, a host namespace, a host bind, a bind-type volume) is
# refused unless the caller itself created that object, even within a team.
# Images are shared: pull, build, tag, push and delete are decided by the
# role alone (authz.rego), as before.
package docker.authz

import rego.v1

owner_scope_map := object.get(data.moat, "owner_scopes", {})

shared_networks := object.get(data.moat, "shared_networks", ["bridge", "none"])

# The teams the caller's groups map to.
caller_teams contains team if {
	some group in input.user.groups
	team := owner_scope_map[group]
	is_string(team)
}

caller_scope := sprintf("team:%s", [team]) if {
	count(caller_teams) == 1
	some team in caller_teams
} else := sprintf("user:%s", [user])

# The scope stamped on everything the caller creates (every role).
owner_scope := caller_scope

# Developers and CI (and not admins) are held to their own objects.
owned_only if {
	not "admin" in roles
	some role in roles
	role in {"developer", "ci"}
}

# Lists, events and prunes show them only their scope.
view_scope := caller_scope if owned_only

deny contains msg if {
	count(caller_teams) > 1
	msg := sprintf(
		"moat policy: %s is in groups of several teams (%s) in data.moat.owner_scopes; one identity, one owner scope: ask an admin to fix the groups",
		[user, concat(", ", sort(caller_teams))],
	)
}

# --- The objects the request names (input.resources) ------------------------

named := input.resources if is_array(input.resources)

else := []

owner_text(r) := sprintf("%s (scope %s)", [r.owner.user, r.owner.scope]) if {
	is_object(r.owner)
} else := "unowned (no io.moat.* labels: created outside moat)"

position_text(r) := "the request path" if {
	r.position == "path"
} else := r.position

theirs(r) if {
	is_object(r.owner)
	r.owner.scope == caller_scope
}

# A host cgroup namespace (`cgroupns=host`) only shows the host's cgroup
# paths, and it is every container's default on a cgroup v1 engine: it does
# not make an object host-reaching here (the sandbox still refuses
# developers asking for it).
reaches_host(r) if {
	some access in object.get(r, "host_access", [])
	access != "cgroupns=host"
}

# A resource the caller may name without owning it.
shared(r) if {
	r.kind == "network"
	r.name in shared_networks
	not reaches_host(r)
}

shared(r) if {
	r.kind == "volume"
	r.exists == false
}

deny contains msg if {
	owned_only
	some r in named
	not theirs(r)
	not shared(r)
	msg := sprintf(
		"%s policy: %s %s (named in %s) belongs to %s, not to your scope %s; you act only on your own objects: ask its owner or an admin",
		[label, r.kind, r.ref, position_text(r), owner_text(r), caller_scope],
	)
}

# Within a scope (a team), an object that reaches the host is still only
# its creator's to use.
deny contains msg if {
	owned_only
	some r in named
	theirs(r)
	reaches_host(r)
	r.owner.user != user
	msg := sprintf(
		"%s policy: %s %s (named in %s) reaches the host (%s) and belongs to %s; only its creator or an admin may use it",
		[label, r.kind, r.ref, position_text(r), concat(", ", r.host_access), owner_text(r)],
	)
}

# Viewers read everything, but not the environment (secrets) of another's
# container or exec.
viewer_only if {
	"viewer" in roles
	not "admin" in roles
	not owned_only
}

secret_reads := {"ContainerInspect", "ExecInspect"}

deny contains msg if {
	viewer_only
	op in secret_reads
	some r in named
	not theirs(r)
	msg := sprintf(
		"viewer policy: %s of %s %s is not allowed: it shows the environment (secrets) of an object that belongs to %s; ask its owner or an admin",
		[op, r.kind, r.ref, owner_text(r)],
	)
}

