//! moat's integration tests: one binary, so the private engine, the test
//! image and the PKI are set up once. Every test drives a real dockerd
//! through moat with the real docker CLI or raw HTTP over mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod audit;
mod chain;
mod compose;
mod effective;
mod faults;
mod gateway;
mod identity;
mod limits;
mod local;
mod names;
mod ownership;
mod policy;
mod replay;
mod resolve;
mod scope;
mod slow_clients;
mod ssrf;
mod up;
