# moat's shipped policy: who may do what.
#
# Groups map to roles through data.moat.group_roles (data.json):
#   admin      everything
#   developer  containers, images, volumes, networks, builds (data.moat.developer_operations),
#              inside the sandbox rules of sandbox.rego
#   viewer     read-only operations, except those that copy file contents out
#   ci         the operations its token scopes grant (data.moat.ci_scopes), inside the sandbox
#
# A request is allowed when `allow` is true and `deny` holds no message.
package docker.authz

import rego.v1

op := input.operation.id

user := input.user.name

# The roles of the user, from its groups.
roles contains role if {
	some group in input.user.groups
	some role in object.get(data.moat.group_roles, group, [])
}

# Everyone but an admin is inside the sandbox rules.
restricted if not "admin" in roles

# The role named in deny messages.
label := "developer" if {
	"developer" in roles
} else := "ci" if {
	"ci" in roles
} else := "viewer" if {
	"viewer" in roles
} else := "moat"

default allow := false

allow if "admin" in roles

allow if {
	"developer" in roles
	op in data.moat.developer_operations
}

allow if {
	"viewer" in roles
	input.operation.readonly == true
	not op in data.moat.viewer_excluded_operations
}

allow if {
	"ci" in roles
	op in data.moat.ci_base_operations
}

allow if {
	"ci" in roles
	some scope in input.user.scopes
	op in object.get(data.moat.ci_scopes, scope, [])
}

# Requests moat could not match to an Engine API route are refused for everyone.
deny contains msg if {
	op == "Unknown"
	msg := sprintf(
		"moat policy: %s %s is not a Docker Engine API operation; check the path and API version",
		[input.request.method, input.request.path],
	)
}

# Local users (moat's unix socket, listen.unix) that auth.local gives no
# role: say how to give them one.
deny contains msg if {
	input.user.auth_method == "peer"
	count(roles) == 0
	msg := sprintf(
		"local user %s (uid %v) has no moat role: an administrator maps it in moat's config under auth.local.users (by user name) or auth.local.groups (by local group) to a group of data.moat.group_roles",
		[user, object.get(object.get(input.user, "local", {}), "uid", "?")],
	)
}

# Viewers get a precise message for the operations that copy file contents out.
deny contains msg if {
	"viewer" in roles
	not "admin" in roles
	not "developer" in roles
	op in data.moat.viewer_excluded_operations
	op != "Unknown"
	msg := sprintf(
		"viewer policy: %s copies file contents out of containers or images and is not allowed for viewers; ask an admin or a developer",
		[op],
	)
}
