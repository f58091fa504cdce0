//! Exact decision memoization (issue 17): a policy set whose result can only
//! depend on `input` and `data` decides the same input the same way every
//! time, so its decisions are remembered, keyed on a SHA-256 of the whole
//! input document.
//!
//! - **Only deterministic sets.** At compile time [`impure_builtins`] reads
//!   the builtins the compiled RVM program calls (regorus'
//!   `builtin_info_table`, filled by its compiler for every builtin call it
//!   emits; Rego has no dynamic calls). A set that calls one whose result is
//!   not a function of its arguments (the clock, randomness, UUIDs, the
//!   network, the runtime) or that has a side effect (`print`, `trace`) gets
//!   no memo at all: every request is evaluated.
//! - **The key is the whole document.** [`key`] hashes the policy set's
//!   revision and the serde_json serialization of the typed
//!   [`Input`](super::input::Input), the same value the VM is given (both are
//!   converted from it; `input/value.rs`' test checks they agree). Whatever
//!   the document carries (identity, method, path and query, headers,
//!   client address and port, body, and any field added later, such as
//!   resolved engine state) is therefore in the key, without a list to
//!   keep in step. A field that differs per connection (`input.client.port`)
//!   makes the first request of each connection a miss: correctness first.
//! - **Only clean results.** A timeout or an evaluation error is never
//!   remembered (it says nothing about the input).
//! - **Bounded, and gone on reload.** At most [`CAPACITY`] decisions, in two
//!   generations (a full young generation becomes the old one, the old one
//!   is dropped; a hit in the old one moves to the young one). The memo
//!   belongs to one compiled set ([`Compiled`](super::set::Compiled)): a
//!   reload that changes any policy or data file compiles a new set with an
//!   empty memo.

use std::collections::HashMap;
use std::sync::Mutex;

use regorus::rvm::Program;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Decision;

/// Most decisions one set remembers.
pub const CAPACITY: usize = 4096;

/// Builtins whose result is not a function of their arguments, or that
/// have an effect beyond their result. A family ends with `.`.
const IMPURE: [&str; 9] = [
    "time.now_ns",
    "rand.",
    "uuid.rfc4122",
    "http.",
    "opa.runtime",
    "net.lookup_ip_addr",
    "test.",
    "print",
    "trace",
];

/// The builtins `program` calls that make its decisions impossible to
/// memoize (empty when it has none).
pub fn impure_builtins(program: &Program) -> Vec<String> {
    let mut names: Vec<String> = program
        .builtin_info_table
        .iter()
        .map(|b| b.name.clone())
        .filter(|n| is_impure(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn is_impure(name: &str) -> bool {
    IMPURE.iter().any(|i| {
        if i.ends_with('.') {
            name.starts_with(i)
        } else {
            name == *i
        }
    })
}

/// A memo key: SHA-256 over the set's revision and the input document.
pub type Key = [u8; 32];

thread_local! {
    /// The serialized document, hashed in one call (serde_json writes in
    /// small pieces; hashing each piece costs more than copying it). Kept
    /// per thread so requests do not allocate it.
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer larger than this is not kept for the next key.
const KEEP_BUF: usize = 64 * 1024;

/// The key of `doc` under the set `revision`; `None` (do not memoize) if
/// the document cannot be serialized, which the typed input never does.
pub fn key<T: Serialize + ?Sized>(revision: &str, doc: &T) -> Option<Key> {
    BUF.with(|cell| {
        let mut fresh = Vec::new();
        let mut kept = cell.try_borrow_mut().ok();
        let buf = kept.as_deref_mut().unwrap_or(&mut fresh);
        buf.clear();
        buf.extend_from_slice(revision.as_bytes());
        buf.push(0);
        let written = serde_json::to_writer(&mut *buf, doc);
        let key = written.ok().map(|()| Sha256::digest(&buf[..]).into());
        if buf.capacity() > KEEP_BUF {
            *buf = Vec::new();
        }
        key
    })
}

/// The remembered decisions of one compiled set.
pub struct Memo {
    gens: Mutex<Generations>,
    /// Entries per generation.
    half: usize,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Key, Decision>,
    old: HashMap<Key, Decision>,
}

impl Memo {
    /// A memo of at most `capacity` decisions.
    pub fn new(capacity: usize) -> Self {
        Memo {
            gens: Mutex::new(Generations::default()),
            half: (capacity / 2).max(1),
        }
    }

    /// The remembered decision for `key`, if any.
    pub fn get(&self, key: &Key) -> Option<Decision> {
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = g.young.get(key) {
            return Some(d.clone());
        }
        let d = g.old.remove(key)?;
        g.insert(*key, d.clone(), self.half);
        Some(d)
    }

    /// Remembers `decision` for `key`.
    pub fn insert(&self, key: Key, decision: Decision) {
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(key, decision, self.half);
    }

    /// How many decisions are remembered.
    pub fn len(&self) -> usize {
        let g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        g.young.len() + g.old.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    fn insert(&mut self, key: Key, decision: Decision, half: usize) {
        if self.young.len() >= half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, decision);
    }
}

#[cfg(test)]
mod tests;
