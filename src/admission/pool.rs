//! The pre-authentication budget: connections that have not proven an
//! identity yet (still in the TLS handshake, or, with `tls.client_cert:
//! optional`, without a request carrying a valid token yet).
//!
//! They get a budget of their own, smaller than `limits.max_connections`.
//! When it is full, a new connection evicts the oldest unauthenticated one
//! of the source address that holds the most of them (with one attacker
//! address, the attacker's; behind one NAT, simply the oldest). A connection
//! is safe from eviction for `limits.unauthenticated.grace`: the accept loop
//! waits rather than evict a younger one, so that a flood of reconnecting
//! attackers churns at most `budget / grace` connections a second and a
//! legitimate client always has that long to authenticate.
//! `limits.unauthenticated.max_per_source`, when set, caps one address: its
//! next connection evicts its own oldest.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The unauthenticated connections, oldest first.
pub struct Pool {
    state: Mutex<State>,
    budget: usize,
    per_source: Option<usize>,
    grace: Duration,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// By admission order: the first entry of a source is its oldest.
    open: BTreeMap<u64, Entry>,
    per_source: HashMap<IpAddr, usize>,
}

struct Entry {
    source: IpAddr,
    since: Instant,
    cancel: CancellationToken,
}

/// What admitting a connection from some source takes now.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// There is room.
    Room,
    /// Evict this one first.
    Evict(u64),
    /// The one to evict is still within its grace period until then.
    WaitUntil(Instant),
}

impl State {
    fn insert(&mut self, source: IpAddr, cancel: CancellationToken) -> u64 {
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Entry {
                source,
                since: Instant::now(),
                cancel,
            },
        );
        *self.per_source.entry(source).or_default() += 1;
        id
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.open.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        Some(e)
    }

    fn oldest_of(&self, source: IpAddr) -> Option<(u64, Instant)> {
        self.open
            .iter()
            .find(|(_, e)| e.source == source)
            .map(|(id, e)| (*id, e.since))
    }

    /// The oldest connection of the source holding the most (ties: the
    /// source whose oldest is oldest).
    fn victim(&self) -> Option<(u64, Instant)> {
        let most = self.per_source.values().copied().max()?;
        self.open
            .iter()
            .find(|(_, e)| self.per_source.get(&e.source) == Some(&most))
            .map(|(id, e)| (*id, e.since))
    }

    fn plan(
        &self,
        source: Option<IpAddr>,
        budget: usize,
        per_source: Option<usize>,
        grace: Duration,
        now: Instant,
    ) -> Plan {
        let capped = match (source, per_source) {
            (Some(s), Some(cap)) => self.per_source.get(&s).copied().unwrap_or(0) >= cap,
            _ => false,
        };
        let victim = if capped {
            source.and_then(|s| self.oldest_of(s))
        } else if source.is_none() || self.open.len() >= budget {
            self.victim()
        } else {
            None
        };
        match victim {
            None => Plan::Room,
            Some((id, since)) if since + grace <= now => Plan::Evict(id),
            Some((_, since)) => Plan::WaitUntil(since + grace),
        }
    }
}

/// An unauthenticated connection's place in the pool; given up when
/// dropped (authenticated or closed).
pub struct Unauth {
    pool: Arc<Pool>,
    id: u64,
}

impl Drop for Unauth {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        if state.remove(self.id).is_some() {
            self.pool.metrics.unauthenticated_open(state.open.len());
        }
    }
}

impl Pool {
    pub fn new(
        budget: usize,
        per_source: Option<usize>,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Pool {
        Pool {
            state: Mutex::new(State::default()),
            budget: budget.max(1),
            per_source: per_source.map(|n| n.max(1)),
            grace,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked while holding it;
        // the counts are updated in single steps and stay consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are unauthenticated now.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a new connection from `source` as unauthenticated, evicting
    /// (cancelling) another when the budget or the source's cap is full;
    /// waits while the one to evict is within its grace period.
    pub async fn admit(self: &Arc<Self>, source: IpAddr, cancel: CancellationToken) -> Unauth {
        loop {
            let until = {
                let mut state = self.lock();
                let plan = state.plan(
                    Some(source),
                    self.budget,
                    self.per_source,
                    self.grace,
                    Instant::now(),
                );
                match plan {
                    Plan::WaitUntil(t) => t,
                    plan => {
                        if let Plan::Evict(victim) = plan {
                            self.evict(&mut state, victim);
                        }
                        let id = state.insert(source, cancel.clone());
                        self.metrics.unauthenticated_open(state.open.len());
                        return Unauth {
                            pool: self.clone(),
                            id,
                        };
                    }
                }
            };
            tokio::time::sleep_until(until).await;
        }
    }

    /// Makes room among `limits.max_connections` for a new connection:
    /// evicts the oldest unauthenticated connection (of the source holding
    /// the most) once its grace period is over. Never completes while no
    /// connection is unauthenticated: the caller waits for a slot instead.
    pub async fn evict_one(&self) {
        loop {
            let until = {
                let mut state = self.lock();
                match state.plan(None, self.budget, None, self.grace, Instant::now()) {
                    Plan::Room => None,
                    Plan::Evict(victim) => {
                        self.evict(&mut state, victim);
                        return;
                    }
                    Plan::WaitUntil(t) => Some(t),
                }
            };
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn evict(&self, state: &mut State, victim: u64) {
        if let Some(e) = state.remove(victim) {
            e.cancel.cancel();
            self.metrics.unauthenticated_eviction();
            self.metrics.unauthenticated_open(state.open.len());
            tracing::debug!(source = %e.source, "unauthenticated connection evicted to admit a new one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn pool(budget: usize, per_source: Option<usize>, grace_ms: u64) -> Arc<Pool> {
        Arc::new(Pool::new(
            budget,
            per_source,
            Duration::from_millis(grace_ms),
            Arc::new(Metrics::new()),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_evicts_the_oldest_once_its_grace_is_over() {
        let p = pool(2, None, 100);
        let a = CancellationToken::new();
        let b = CancellationToken::new();
        let _ga = p.admit(ip(1), a.clone()).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        let _gb = p.admit(ip(1), b.clone()).await;
        let started = Instant::now();
        // Full: the third waits until the oldest is 100 ms old, then evicts it.
        let _gc = p.admit(ip(1), CancellationToken::new()).await;
        assert_eq!(started.elapsed(), Duration::from_millis(90));
        assert!(a.is_cancelled() && !b.is_cancelled());
        assert_eq!(p.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_source_holding_the_most_loses_its_oldest_first() {
        let p = pool(3, None, 0);
        let legit = CancellationToken::new();
        let _g = p.admit(ip(1), legit.clone()).await;
        let attackers: Vec<_> = (0..2).map(|_| CancellationToken::new()).collect();
        let mut held = Vec::new();
        for a in &attackers {
            held.push(p.admit(ip(9), a.clone()).await);
        }
        // The legitimate client is the oldest, but the attacker holds more.
        held.push(p.admit(ip(9), CancellationToken::new()).await);
        assert!(!legit.is_cancelled());
        assert!(attackers[0].is_cancelled() && !attackers[1].is_cancelled());
        // Behind one address (NAT), the oldest goes.
        let q = pool(2, None, 0);
        let first = CancellationToken::new();
        let _a = q.admit(ip(1), first.clone()).await;
        let _b = q.admit(ip(1), CancellationToken::new()).await;
        let _c = q.admit(ip(1), CancellationToken::new()).await;
        assert!(first.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_source_cap_evicts_that_sources_oldest_even_with_room() {
        let p = pool(100, Some(2), 0);
        let other = CancellationToken::new();
        let _o = p.admit(ip(1), other.clone()).await;
        let first = CancellationToken::new();
        let _a = p.admit(ip(9), first.clone()).await;
        let _b = p.admit(ip(9), CancellationToken::new()).await;
        let _c = p.admit(ip(9), CancellationToken::new()).await;
        assert!(first.is_cancelled());
        assert!(!other.is_cancelled());
        assert_eq!(p.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_the_pool_frees_its_place_and_an_evicted_guard_is_harmless() {
        let p = pool(1, None, 0);
        let a = CancellationToken::new();
        let ga = p.admit(ip(1), a.clone()).await;
        let gb = p.admit(ip(2), CancellationToken::new()).await;
        assert!(a.is_cancelled());
        // The evicted connection's guard drops later: the count stays right.
        drop(ga);
        assert_eq!(p.len(), 1);
        drop(gb);
        assert!(p.is_empty());
        let c = CancellationToken::new();
        let _gc = p.admit(ip(3), c.clone()).await;
        assert!(!c.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn making_room_waits_for_grace_and_never_completes_when_empty() {
        let p = pool(10, None, 50);
        let none = tokio::time::timeout(Duration::from_secs(3600), p.evict_one()).await;
        assert!(none.is_err(), "nothing to evict, yet it completed");
        let a = CancellationToken::new();
        let _g = p.admit(ip(1), a.clone()).await;
        let started = Instant::now();
        p.evict_one().await;
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        assert!(a.is_cancelled());
        assert!(p.is_empty());
    }
}
