# A policy in the style of the opa-docker-authz documentation (the OPA
# "Docker authorization" tutorial): flat input fields (input.Body, ...) and a
# boolean `deny`. moat must run it unchanged.
package docker.authz

default allow := false

allow if not deny

deny if {
	input.Body.HostConfig.Privileged == true
}

deny if seccomp_unconfined

seccomp_unconfined if {
	# The string on the right must equal an element of SecurityOpt.
	input.Body.HostConfig.SecurityOpt[_] == "seccomp:unconfined"
}
