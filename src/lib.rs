//! # moat
//!
//! A security-hardened remote-access gateway for the Docker Engine API.
//!
//! A request travels through these stages, in this order; the one function
//! that strings them together is [`pipeline::handle`], which reads top to
//! bottom as this list:
//!
//! 1. [`server`]: the TCP listener, connection limits, idle keep-alive
//!    connections parked without HTTP buffers, graceful shutdown. New
//!    connections enter [`admission`]'s pre-authentication budget, and
//!    count for their identity once it is known. Beside it, the optional
//!    local unix socket (`listen.unix`) for users on the host.
//! 2. [`tls`]: mutual TLS (rustls), client chains verified once per
//!    certificate and configuration ([`tls::verify`]).
//! 3. [`identity`]: who the client is, from its certificate or a bearer
//!    token ([`identity::token`]), or, on the local socket, from the
//!    kernel ([`identity::local`]).
//! 4. [`classify`]: which Engine API operation this is ([`classify::OpId`]),
//!    exactly as the daemon routes it; then the identity's limits
//!    ([`admission`]: requests in flight, streams, rate).
//! 5. [`body`]: the request body, read whole and parsed strictly where the
//!    policy must see it, streamed where it is an upload.
//! 6. [`effective`]: the API version the engine will apply, and the
//!    effective body (deprecated positions refused, version adjustments
//!    applied) that the policy decides on and the engine receives, and the
//!    addresses the engine will contact because of it
//!    ([`effective::fetch`]).
//! 7. [`resolve`]: the containers, volumes, networks and execs the request
//!    names (path and body), looked up in the engine with their owners
//!    ([`owner`]) and host access, and rewritten to their ids.
//! 8. [`policy`]: the Rego decision on [`policy::input`], the input
//!    document described once.
//! 9. [`audit`]: the hash-chained audit record, written before forwarding
//!    (the pipeline's trail and completion record in [`pipeline`]).
//! 10. [`scope`]: ownership at forwarding (issue 15). Before the decision
//!     it refuses client labels in moat's `io.moat.*` namespace; after it,
//!     owner labels are stamped on what is created and lists, events and
//!     prunes are narrowed to the decision's `view_scope`.
//! 11. [`forward`] and [`hijack`]: the engine's unix socket, streamed or
//!     hijacked with half-close; keep-alive engine connections are driven
//!     by the task that serves the client.
//! 12. [`respond`]: the one place a refusal becomes a client response.
//!
//! The module graph is acyclic and reads bottom-up (`tests/layout.rs` fails
//! on a cycle; CONTRIBUTING.md has the rules):
//!
//! - leaves: [`config`] (the typed config file), [`classify`], [`metrics`]
//!   (Prometheus and health endpoints), [`resbody`] (the body type of every
//!   response), [`owner`] (moat's owner labels and the resolved objects the
//!   policy sees, `input.resources`);
//! - the stages and what they need: [`identity`], [`engine`] (the bundled
//!   dockerd and its supervisor), [`tls`], [`body`], [`forward`],
//!   [`effective`], [`resolve`], [`admission`] (connection budgets and
//!   per-identity limits), [`conn`] (what is known about one client
//!   connection, and the registry of open ones), [`policy`], [`audit`],
//!   [`hijack`], [`scope`],
//!   [`respond`];
//! - [`gateway`]: the state every request shares, loaded from the config;
//! - [`pipeline`] (the request path) and [`reload`] (reloads without a
//!   restart: TLS files changed, SIGHUP);
//! - [`server`], then [`launch`] (engine, then gateway; stopped in
//!   reverse);
//! - beside the request path: [`pki`] (moat's own CA), [`up`] (the `moat up`
//!   bootstrap of a state directory), the admin's tools [`replay`] (`moat
//!   audit replay`: a candidate policy against recorded traffic) and
//!   [`policy::explain`], and the command line in [`cli`].

#![forbid(unsafe_code)]
// The docs are for contributors and are built with
// `--document-private-items` (scripts/check.sh), where links to private
// items resolve.
#![allow(rustdoc::private_intra_doc_links)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admission;
pub mod audit;
pub mod body;
pub mod classify;
pub mod cli;
pub mod config;
pub mod conn;
pub mod effective;
pub mod engine;
pub mod forward;
pub mod gateway;
pub mod hijack;
pub mod identity;
pub mod launch;
pub mod metrics;
pub mod owner;
pub mod pipeline;
pub mod pki;
pub mod policy;
pub mod reload;
pub mod replay;
pub mod resbody;
pub mod resolve;
pub mod respond;
pub mod scope;
pub mod server;
pub mod tls;
pub mod up;
