//! Caps held across nodes: each node's *block* of a trunk's or a campaign's `max_channels`,
//! reserved in PostgreSQL's `cap_shares` table (docs/adr/0010-shared-caps.md).
//!
//! A node dials only within its block; the local gate ([`super::gate::TrunkGates`] for a
//! trunk, the runner's [`super::core::Pacer`] for a campaign) stays the per-dial check, so
//! a dial costs no query unless the block must grow. [`ShareCore`] is the sans-IO policy
//! for one cap (when to grow, by how much, when to give channels back, what an expired
//! block or a database outage means), unit-tested in virtual time; [`Shares`] is the
//! node's set of them, shared by the gates and the shell; [`run`] is the thin tokio shell
//! that does the SQL (`store::cap_shares::sync`).
//!
//! Rules, and why:
//! - The sum of every node's unexpired block never exceeds the cap: a block grows only in
//!   one transaction serialised per cap (advisory lock) that counts the others' blocks.
//! - A block is proven until `sent + dead_after` (the request was sent before the database
//!   stamped `expires_at = now() + dead_after`), so the node stops using it before any
//!   other node can count it free. A database outage keeps the block until then and never
//!   grows it; after that the node dials nothing new on that cap (live calls go on).
//! - Rate: a node paces at `max_cps × rate_channels / max_channels`. `rate_channels`
//!   follows the block down at once and up one sliding window after a grant, so the
//!   channels another node gave back (its rate fell when it decided to give them) never
//!   pace twice in one second: the sum of the nodes' rates stays ≤ `max_cps`, and any
//!   1-second window holds at most `max_cps` + one rounding per node (each pacer's burst
//!   is `ceil` of its rate).
//! - Fairness: a node whose block is full while it has work says so (`wants`); a holder
//!   above its fair share (`cap / wanting nodes`) dials no more beyond it and gives its
//!   channels back as its calls end. Live calls always keep their channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{Pacer, MAX_CPS, MIN_CPS, SLIDING_WINDOW};
use crate::config::ClusterTiming;
use crate::store::{cap_shares, Db};
// The cap's name and what a sync asks and gets are the table's vocabulary: defined with
// it in `store` (a lower layer, src/layers.rs), used here.
pub use crate::store::cap_shares::{Grant, Request, Scope, ShareKey};

/// A refused grow (the others hold the rest) is asked again this soon.
pub const GROW_RETRY: Duration = Duration::from_millis(500);
/// A failed sync (database error) is retried this soon (renewal only: no grow meanwhile).
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// While other nodes wait, channels above the fair share are given back this often.
const GIVE_BACK_EVERY: Duration = Duration::from_millis(500);

/// The shell's shortest sleep: bounds its loop if a core's deadline were ever in the past.
const MIN_SLEEP: Duration = Duration::from_millis(20);

/// The block policy for one cap on one node, sans IO.
#[derive(Debug)]
pub struct ShareCore {
    cap: u32,
    ttl: Duration,
    renew: Duration,
    /// Channels the database granted at the last successful sync.
    held: u32,
    /// Until when `held` is proven (None: never granted).
    valid_until: Option<Instant>,
    others_wanting: u32,
    active: u32,
    /// The fewest free channels of the block seen since the last sync: that many were idle
    /// the whole time and are given back at the renewal.
    min_free: u32,
    /// A dial was refused for want of channels in the block since the last sync.
    starved: bool,
    /// Since the last sync the node had work it could not start yet (its rate, or its
    /// block): its free channels were not idle, so none goes back — its rate is
    /// proportional to its block, and giving channels back would only slow it further.
    busy: bool,
    /// When the last sync succeeded, and when the rate last rose to a new block: channels
    /// count as idle only over a period in which their rate allowed using them.
    last_sync: Instant,
    rate_ready_at: Instant,
    /// A request is out (sent at): one at a time.
    sent: Option<(Instant, Request)>,
    next_renew: Instant,
    grow_after: Instant,
    give_back_after: Instant,
    rate_channels: u32,
    rate_raise: Option<(Instant, u32)>,
    closing: bool,
}

impl ShareCore {
    /// No block yet: the first dial that finds it empty asks for one.
    pub fn new(cap: u32, timing: ClusterTiming, now: Instant) -> ShareCore {
        ShareCore {
            cap,
            ttl: timing.dead_after,
            renew: timing.heartbeat.min(timing.dead_after / 2),
            held: 0,
            valid_until: None,
            others_wanting: 0,
            active: 0,
            min_free: 0,
            starved: false,
            busy: false,
            last_sync: now,
            rate_ready_at: now,
            sent: None,
            next_renew: now + timing.heartbeat,
            grow_after: now,
            give_back_after: now,
            rate_channels: 0,
            rate_raise: None,
            closing: false,
        }
    }

    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// A live edit of the cap (campaign `max_channels`): a lower cap is honoured at once
    /// locally; the block shrinks at the next sync.
    pub fn set_cap(&mut self, cap: u32) {
        self.cap = cap;
    }

    /// Channels granted by the last sync (what the node's row says), proven or not.
    pub fn held(&self) -> u32 {
        self.held
    }

    fn fair(&self) -> u32 {
        if self.others_wanting == 0 {
            self.cap
        } else {
            // Rounded up: the database still never grants past the cap, and no channel
            // stays unused because every share was rounded down.
            self.cap.div_ceil(self.others_wanting + 1).max(1)
        }
    }

    fn proven(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|t| now < t)
    }

    /// Channels the node may have in use at `now`: its proven block, no more than the cap
    /// and, while others wait, no more than its fair share.
    pub fn limit(&self, now: Instant) -> u32 {
        if !self.proven(now) {
            return 0;
        }
        self.held.min(self.cap).min(self.fair())
    }

    /// Channels the node paces for at `now` (`max_cps × this / cap`): ≤ [`limit`](Self::limit),
    /// raised one sliding window after a grant.
    pub fn rate_channels(&self, now: Instant) -> u32 {
        let r = match self.rate_raise {
            Some((at, n)) if now >= at => n,
            _ => self.rate_channels,
        };
        r.min(self.limit(now))
    }

    /// The gate's report: `active` channels in use; `refused`: a dial found the block full.
    pub fn observe(&mut self, now: Instant, active: u32, refused: bool) {
        // A raise that came due starts the idle count afresh: the channels could not be
        // used at their rate before.
        if let Some((at, n)) = self.rate_raise {
            if now >= at {
                self.rate_channels = n;
                self.rate_raise = None;
                self.rate_ready_at = at;
            }
        }
        self.active = active;
        if refused {
            self.busy = true;
        }
        self.min_free = self.min_free.min(self.held.saturating_sub(active));
        if refused && active >= self.limit(now) && self.limit(now) < self.cap {
            self.starved = true;
        }
    }

    /// The gate's report: a dial waits for the rate (work is at hand).
    pub fn paced(&mut self) {
        self.busy = true;
    }

    /// Give the whole block back (the campaign's runner ended, the node stops).
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Closed and written back: the shell forgets the cap.
    pub fn finished(&self) -> bool {
        self.closing && self.sent.is_none() && self.held == 0
    }

    /// The sync due at `now`, if any (one at a time: the shell reports before polling again).
    pub fn poll(&mut self, now: Instant) -> Option<Request> {
        if self.sent.is_some() {
            return None;
        }
        let req = self.decide(now)?;
        self.sent = Some((now, req));
        Some(req)
    }

    fn decide(&self, now: Instant) -> Option<Request> {
        if self.closing {
            // Live calls keep their channel until they end; the row goes once they have.
            let target = self.active.min(self.held);
            let due = target < self.held
                || (self.held == 0 && self.valid_until.is_some())
                || (self.held > 0 && now >= self.next_renew);
            return due.then_some(Request {
                target,
                wants: false,
            });
        }
        let fair = self.fair().min(self.cap);
        let proven = self.proven(now);
        if self.starved && now >= self.grow_after {
            // Grow in steps of a quarter of the cap: few queries for a big cap, and the
            // free rest is given back at the renewal if it was not needed.
            let step = self.cap.div_ceil(4).max(1);
            // Unproven (expired, or never granted): ask for what is in use plus a step.
            let base = if proven {
                self.held
            } else {
                self.active.min(self.cap)
            };
            let target = (base + step).min(fair);
            if target > base || !proven {
                return Some(Request {
                    target,
                    wants: true,
                });
            }
        }
        let keep = self.active.max(fair);
        if self.others_wanting > 0 && self.held > keep && now >= self.give_back_after {
            return Some(Request {
                target: keep.min(self.held),
                wants: false,
            });
        }
        if now >= self.next_renew && (self.held > 0 || self.starved) {
            // Channels idle since the last sync go back (none while the node had work, or
            // its rate had not followed its block yet); the rest is renewed.
            let idle =
                if self.busy || self.rate_raise.is_some() || self.rate_ready_at > self.last_sync {
                    0
                } else {
                    self.min_free
                };
            let target = self
                .held
                .saturating_sub(idle)
                .max(self.active.min(self.held))
                .min(self.cap);
            return Some(Request {
                target,
                wants: self.starved,
            });
        }
        None
    }

    /// The shell's report on the request [`poll`](Self::poll) gave; `now` when it returned.
    pub fn on_result(&mut self, now: Instant, result: Result<Grant, ()>) {
        let Some((sent_at, req)) = self.sent.take() else {
            return;
        };
        match result {
            Ok(g) => {
                // Down at once; up one sliding window after the grant (a pending raise to a
                // higher level restarts its window: later is never less safe).
                let heading = self.rate_raise.map_or(self.rate_channels, |(_, n)| n);
                if g.channels > heading {
                    self.rate_raise = Some((now + SLIDING_WINDOW, g.channels));
                } else if g.channels > self.rate_channels {
                    self.rate_raise = self.rate_raise.map(|(at, _)| (at, g.channels));
                } else {
                    self.rate_channels = g.channels;
                    self.rate_raise = None;
                }
                if req.wants && g.channels <= self.held {
                    self.grow_after = now + GROW_RETRY;
                }
                self.held = g.channels;
                self.valid_until = Some(sent_at + self.ttl);
                self.others_wanting = g.others_wanting;
                self.starved = false;
                self.busy = false;
                self.min_free = self.held.saturating_sub(self.active);
                self.next_renew = now + self.renew;
                self.last_sync = now;
                self.give_back_after = now + GIVE_BACK_EVERY;
                if self.closing && self.held == 0 {
                    self.valid_until = None;
                }
            }
            Err(()) => {
                // Keep what is proven (it expires by itself), never grow meanwhile.
                self.grow_after = now + SYNC_RETRY;
                self.next_renew = now + SYNC_RETRY;
            }
        }
        // The raise, once due, becomes the rate.
        if let Some((at, n)) = self.rate_raise {
            if now >= at {
                self.rate_channels = n;
                self.rate_raise = None;
            }
        }
    }

    /// When [`poll`](Self::poll) will next have something to do, given no new report
    /// (None: nothing until a report or a result). Exact, not a guess: the policy is pure,
    /// so the shell never spins on a deadline that asks for nothing.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        if self.sent.is_some() {
            return None;
        }
        let mut at = [
            now,
            self.next_renew,
            self.grow_after,
            self.give_back_after,
            self.valid_until.unwrap_or(now),
        ];
        at.sort();
        at.into_iter()
            .map(|t| t.max(now))
            .find(|t| self.decide(*t).is_some())
    }

    /// Something is due at `now`.
    fn ready(&self, now: Instant) -> bool {
        self.sent.is_none() && self.decide(now).is_some()
    }
}

/// Fits a local [`Pacer`] to the node's block of a shared cap: `max_channels` = the
/// block, `max_cps` = the cap's rate × `rate_channels / cap`.
#[derive(Debug, Clone)]
pub struct Fit {
    cap: u32,
    cps: f64,
    applied: Option<(u32, u32)>,
}

impl Fit {
    pub fn new(cap: u32, cps: f64) -> Fit {
        Fit {
            cap,
            cps,
            applied: None,
        }
    }

    /// Apply `(channels, rate_channels)` from [`Shares::limits`]. False while the block's
    /// rate is not usable yet (channels granted less than a sliding window ago, none
    /// before): wait a little, the rate follows.
    pub fn apply(&mut self, limits: (u32, u32), pacer: &mut Pacer) -> bool {
        let (channels, rate) = limits;
        if self.applied != Some(limits) {
            let cps = if rate == 0 {
                pacer.max_cps() // no dial anyway: keep the bucket's history as it is
            } else {
                (self.cps * f64::from(rate) / f64::from(self.cap.max(1))).clamp(MIN_CPS, MAX_CPS)
            };
            if pacer.set_limits(cps, channels).is_ok() {
                self.applied = Some(limits);
            }
        }
        rate > 0 || channels == 0
    }
}

/// The node's caps, shared by the gates, the campaign runners and the shell; cheap to clone.
#[derive(Clone)]
pub struct Shares {
    cores: Arc<Mutex<HashMap<ShareKey, ShareCore>>>,
    wake: Arc<Notify>,
    timing: ClusterTiming,
}

impl std::fmt::Debug for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shares")
    }
}

impl Shares {
    pub fn new(timing: ClusterTiming) -> Shares {
        Shares {
            cores: Default::default(),
            wake: Arc::new(Notify::new()),
            timing,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ShareKey, ShareCore>> {
        self.cores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start holding a block of `key`'s cap (idempotent; a new cap value replaces the old,
    /// a closing one is reopened).
    pub fn register(&self, key: ShareKey, cap: u32, now: Instant) {
        let mut m = self.lock();
        let core = m
            .entry(key)
            .or_insert_with(|| ShareCore::new(cap, self.timing, now));
        core.set_cap(cap);
        core.closing = false;
    }

    /// `(channels, rate_channels)` the node may use on `key` now; None: not shared (the
    /// local cap alone rules).
    pub fn limits(&self, key: &ShareKey, now: Instant) -> Option<(u32, u32)> {
        self.lock()
            .get(key)
            .map(|c| (c.limit(now), c.rate_channels(now)))
    }

    /// The gate's report (see [`ShareCore::observe`]); a starved cap wakes the shell.
    pub fn observe(&self, key: &ShareKey, now: Instant, active: u32, refused: bool) {
        let wake = {
            let mut m = self.lock();
            let Some(c) = m.get_mut(key) else {
                return;
            };
            c.observe(now, active, refused);
            // A grow, or channels to give back as calls end: the shell acts now.
            c.ready(now)
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// The node's block of `key` as last granted (operators' view).
    pub fn held(&self, key: &ShareKey) -> Option<u32> {
        self.lock().get(key).map(|c| c.held())
    }

    /// A dial on `key` waits for the rate: the node has work, its channels are not idle.
    pub fn paced(&self, key: &ShareKey) {
        if let Some(c) = self.lock().get_mut(key) {
            c.paced();
        }
    }

    /// Give `key`'s block back as its calls end.
    pub fn close(&self, key: &ShareKey) {
        if let Some(c) = self.lock().get_mut(key) {
            c.close();
        }
        self.wake.notify_one();
    }

    fn due(&self, now: Instant) -> Vec<(ShareKey, u32, Request)> {
        let mut m = self.lock();
        m.retain(|_, c| !c.finished());
        m.iter_mut()
            .filter_map(|(k, c)| c.poll(now).map(|r| (k.clone(), c.cap(), r)))
            .collect()
    }

    fn report(&self, key: &ShareKey, now: Instant, result: Result<Grant, ()>) {
        if let Some(c) = self.lock().get_mut(key) {
            c.on_result(now, result);
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        self.lock()
            .values()
            .filter_map(|c| c.next_wake(now))
            .min()
            .unwrap_or(now + self.timing.heartbeat)
    }
}

/// The shell: sync each cap's block when its core asks, until `close`; then give every
/// block back. Rows a previous run of this node left are dropped first (it has no calls).
pub async fn run(db: Db, shares: Shares, node: String, close: CancellationToken) {
    let ttl_s = shares.timing.dead_after.as_secs_f64();
    match cap_shares::release_all(&db, &node).await {
        Ok(n) if n > 0 => info!(rows = n, "cap shares of this node's previous run released"),
        Ok(_) => {}
        Err(e) => {
            warn!(error = %e, "cannot release this node's old cap shares (they expire by themselves)")
        }
    }
    loop {
        let now = Instant::now();
        for (key, cap, req) in shares.due(now) {
            let res = cap_shares::sync(&db, &key, &node, cap, req, ttl_s).await;
            debug!(scope = key.scope.as_str(), key = %key.key, target = req.target, wants = req.wants, result = ?res.as_ref().ok(), "cap share synced");
            let res = res.map_err(|e| {
                warn!(scope = key.scope.as_str(), key = %key.key, error = %e, "cap share not synced: keeping the block until it expires, not growing");
            });
            shares.report(&key, Instant::now(), res);
        }
        let wake = shares.next_wake(Instant::now());
        tokio::select! {
            _ = close.cancelled() => break,
            _ = shares.wake.notified() => {}
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.max(Instant::now() + MIN_SLEEP))) => {}
        }
    }
    if let Err(e) = cap_shares::release_all(&db, &node).await {
        warn!(error = %e, "cap shares not released at stop (they expire by themselves)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped `[cluster]` timing (heartbeat 5 s, dead after 15 s).
    fn timing() -> ClusterTiming {
        ClusterTiming::default()
    }

    /// The database in miniature: each node's row (channels, wants, expires_at), the same
    /// grant rule as `store::cap_shares::sync`.
    #[derive(Default)]
    struct Table {
        rows: HashMap<usize, (u32, bool, Instant)>,
    }

    impl Table {
        fn sync(
            &mut self,
            node: usize,
            cap: u32,
            req: Request,
            now: Instant,
            ttl: Duration,
        ) -> Grant {
            let live = |r: &(u32, bool, Instant)| r.2 > now;
            let others: u32 = self
                .rows
                .iter()
                .filter(|(n, r)| **n != node && live(r))
                .map(|(_, r)| r.0)
                .sum();
            let wanting = self
                .rows
                .iter()
                .filter(|(n, r)| **n != node && live(r) && r.1)
                .count() as u32;
            let channels = req.target.min(cap.saturating_sub(others));
            self.rows.insert(node, (channels, req.wants, now + ttl));
            Grant {
                channels,
                others_wanting: wanting,
            }
        }

        fn live_sum(&self, now: Instant) -> u32 {
            self.rows.values().filter(|r| r.2 > now).map(|r| r.0).sum()
        }
    }

    /// A simulated node: its core and its calls (each ends at an instant).
    struct Node {
        core: ShareCore,
        calls: Vec<Instant>,
        alive: bool,
        db_up: bool,
        dialed: u32,
    }

    /// Every node dials whenever its block allows (always has work); calls last `hold`.
    /// Returns the most channels in use at once across nodes.
    fn simulate(
        nodes: &mut [Node],
        table: &mut Table,
        cap: u32,
        until: Duration,
        hold: Duration,
    ) -> u32 {
        let t0 = Instant::now();
        let step = Duration::from_millis(50);
        let mut t = t0;
        let mut peak = 0;
        while t < t0 + until {
            for (i, n) in nodes.iter_mut().enumerate() {
                if !n.alive {
                    continue;
                }
                n.calls.retain(|end| *end > t);
                let mut refused = false;
                while (n.calls.len() as u32) < n.core.limit(t) {
                    n.calls.push(t + hold);
                    n.dialed += 1;
                }
                if n.calls.len() as u32 >= n.core.limit(t) {
                    refused = true;
                }
                n.core.observe(t, n.calls.len() as u32, refused);
                if let Some(req) = n.core.poll(t) {
                    let r = if n.db_up {
                        Ok(table.sync(i, cap, req, t, timing().dead_after))
                    } else {
                        Err(())
                    };
                    n.core.on_result(t, r);
                }
            }
            let in_use: u32 = nodes
                .iter()
                .filter(|n| n.alive)
                .map(|n| n.calls.len() as u32)
                .sum();
            peak = peak.max(in_use);
            assert!(
                table.live_sum(t) <= cap,
                "rows exceed the cap at {:?}",
                t - t0
            );
            t += step;
        }
        peak
    }

    fn node(cap: u32, now: Instant) -> Node {
        Node {
            core: ShareCore::new(cap, timing(), now),
            calls: vec![],
            alive: true,
            db_up: true,
            dialed: 0,
        }
    }

    #[test]
    fn three_busy_nodes_never_exceed_the_cap_and_all_get_channels() {
        let now = Instant::now();
        let mut nodes: Vec<Node> = (0..3).map(|_| node(4, now)).collect();
        let mut table = Table::default();
        let peak = simulate(
            &mut nodes,
            &mut table,
            4,
            Duration::from_secs(60),
            Duration::from_millis(1500),
        );
        assert!(
            (3..=4).contains(&peak),
            "the cap is used, never exceeded: {peak}"
        );
        for (i, n) in nodes.iter().enumerate() {
            assert!(n.dialed > 10, "node {i} dialed {} calls: starved", n.dialed);
        }
    }

    /// The rate rule: each node's pacer fitted to its block (`Fit`), always work to do,
    /// channels moving between the nodes as they start and stop asking; in no 1-second
    /// window do the nodes together start more than `max_cps` + one call per node.
    #[test]
    fn paced_nodes_together_stay_within_max_cps_plus_one_per_node() {
        let (cap, cps) = (4u32, 5.0);
        let t0 = Instant::now();
        let mut table = Table::default();
        let mut cores: Vec<ShareCore> = (0..2).map(|_| ShareCore::new(cap, timing(), t0)).collect();
        let mut pacers: Vec<Pacer> = (0..2)
            .map(|_| Pacer::new(cps, cap, t0).expect("pacer"))
            .collect();
        let mut fits: Vec<Fit> = (0..2).map(|_| Fit::new(cap, cps)).collect();
        let mut calls: Vec<Vec<Instant>> = vec![vec![], vec![]];
        let mut dials: Vec<Instant> = vec![];
        let mut t = t0;
        let step = Duration::from_millis(10);
        while t < t0 + Duration::from_secs(60) {
            let secs = (t - t0).as_secs();
            for i in 0..2 {
                // Node 1 has work only in its first 10 s of every 20; node 0 always.
                let has_work = i == 0 || secs % 20 < 10;
                calls[i].retain(|e| *e > t);
                let active = calls[i].len() as u32;
                let limits = (cores[i].limit(t), cores[i].rate_channels(t));
                let ready = fits[i].apply(limits, &mut pacers[i]);
                if has_work && ready && pacers[i].can_dial(t, active) {
                    pacers[i].take(t);
                    calls[i].push(t + Duration::from_millis(700));
                    dials.push(t);
                } else if has_work {
                    cores[i].paced();
                }
                let active = calls[i].len() as u32;
                let full = active >= cores[i].limit(t);
                cores[i].observe(t, active, has_work && full);
                if let Some(req) = cores[i].poll(t) {
                    let g = table.sync(i, cap, req, t, timing().dead_after);
                    cores[i].on_result(t, Ok(g));
                }
            }
            let in_use: usize = calls.iter().map(Vec::len).sum();
            assert!(in_use <= cap as usize, "{in_use} calls at {:?}", t - t0);
            t += step;
        }
        dials.sort();
        let worst = (0..dials.len())
            .map(|i| {
                dials[i..]
                    .iter()
                    .take_while(|d| **d < dials[i] + SLIDING_WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(worst <= cps as usize + 2, "{worst} dials in one second");
        assert!(
            dials.len() > 150,
            "the cap was used: {} dials in 60 s",
            dials.len()
        );
    }

    #[test]
    fn a_dead_nodes_block_comes_back_after_it_expires() {
        let now = Instant::now();
        let mut nodes: Vec<Node> = (0..2).map(|_| node(4, now)).collect();
        nodes[1].alive = false;
        let mut table = Table::default();
        simulate(
            &mut nodes[..1],
            &mut table,
            4,
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        assert_eq!(nodes[0].core.held(), 4, "alone, node 0 holds the whole cap");
        // Node 0 dies holding 4; node 1 starts: nothing until node 0's rows expire.
        let t = Instant::now();
        let mut table2 = Table::default();
        table2.rows.insert(0, (4, false, t + timing().dead_after));
        let mut n1 = node(4, t);
        let mut got_at = None;
        let mut tt = t;
        while tt < t + Duration::from_secs(30) {
            n1.core.observe(tt, n1.core.held(), true);
            if let Some(req) = n1.core.poll(tt) {
                let g = table2.sync(1, 4, req, tt, timing().dead_after);
                n1.core.on_result(tt, Ok(g));
            }
            if got_at.is_none() && n1.core.limit(tt) > 0 {
                got_at = Some(tt - t);
            }
            tt += Duration::from_millis(100);
        }
        let got = got_at.expect("channels came back");
        assert!(
            got >= timing().dead_after,
            "not before the block expired: {got:?}"
        );
        assert!(
            got <= timing().dead_after + Duration::from_secs(1),
            "within a retry of expiry: {got:?}"
        );
        assert_eq!(n1.core.held(), 4);
    }

    #[test]
    fn an_outage_keeps_the_proven_block_never_grows_and_ends_at_expiry() {
        let t0 = Instant::now();
        let mut c = ShareCore::new(10, timing(), t0);
        c.observe(t0, 0, true);
        let req = c.poll(t0).expect("starved: grow");
        assert_eq!(
            req,
            Request {
                target: 3,
                wants: true
            }
        );
        c.on_result(
            t0,
            Ok(Grant {
                channels: 3,
                others_wanting: 0,
            }),
        );
        assert_eq!(c.limit(t0), 3);
        assert_eq!(c.rate_channels(t0), 0, "rate follows one window later");
        assert_eq!(c.rate_channels(t0 + SLIDING_WINDOW), 3);
        // The database goes away: the block is kept, a grow is not granted by itself.
        let t1 = t0 + Duration::from_secs(1);
        c.observe(t1, 3, true);
        let req = c.poll(t1).expect("asks");
        assert_eq!(req.target, 6);
        c.on_result(t1, Err(()));
        assert_eq!(c.limit(t1), 3, "kept, not grown");
        assert!(c.poll(t1).is_none(), "retry waits");
        let mut t = t1;
        while t < t0 + Duration::from_secs(20) {
            if c.poll(t).is_some() {
                c.on_result(t, Err(()));
            }
            assert!(c.limit(t) <= 3);
            t += Duration::from_millis(100);
        }
        assert_eq!(
            c.limit(t0 + timing().dead_after),
            0,
            "unproven after dead_after: no new dial"
        );
        assert_eq!(c.rate_channels(t0 + timing().dead_after), 0);
        // Back: the renewal asks again.
        let tb = t0 + Duration::from_secs(21);
        c.observe(tb, 3, true);
        let req = c.poll(tb).expect("asks again");
        assert!(req.target >= 3);
        c.on_result(
            tb,
            Ok(Grant {
                channels: req.target,
                others_wanting: 0,
            }),
        );
        assert!(c.limit(tb) >= 3);
    }

    /// Regression: with renewals as frequent as the rate's one-second lag, a fresh block
    /// was given back as idle before its rate allowed a dial, for ever (seen in the
    /// two-node test). Channels waiting for their rate, or a node with work, are not idle.
    #[test]
    fn a_fresh_block_waiting_for_its_rate_is_not_idle() {
        let fast = ClusterTiming {
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            drain: Duration::ZERO,
            queues: Default::default(),
        };
        let t0 = Instant::now();
        let mut c = ShareCore::new(4, fast, t0);
        c.observe(t0, 0, true);
        c.poll(t0).expect("grow");
        c.on_result(
            t0,
            Ok(Grant {
                channels: 1,
                others_wanting: 0,
            }),
        );
        c.observe(t0 + Duration::from_millis(500), 0, false);
        let t1 = t0 + Duration::from_secs(1);
        c.observe(t1, 0, false);
        assert_eq!(c.rate_channels(t1), 1);
        let r = c.poll(t1).expect("renewal");
        assert_eq!(r.target, 1, "kept: it could not be used before its rate");
        c.on_result(
            t1,
            Ok(Grant {
                channels: 1,
                others_wanting: 0,
            }),
        );
        // Paced (work waiting for the rate) for a whole period: kept too.
        c.paced();
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(c.poll(t2).map(|r| r.target), Some(1));
        c.on_result(
            t2,
            Ok(Grant {
                channels: 1,
                others_wanting: 0,
            }),
        );
        // Truly idle for a period: given back.
        let t3 = t2 + Duration::from_secs(1);
        c.observe(t3, 0, false);
        assert_eq!(c.poll(t3).map(|r| r.target), Some(0));
    }

    #[test]
    fn idle_channels_go_back_at_the_renewal_live_calls_keep_theirs() {
        let t0 = Instant::now();
        let mut c = ShareCore::new(4, timing(), t0);
        c.observe(t0, 0, true);
        let r = c.poll(t0).expect("grow");
        c.on_result(
            t0,
            Ok(Grant {
                channels: r.target.max(4),
                others_wanting: 0,
            }),
        );
        assert_eq!(c.held(), 4);
        // The first period: the rate rose only at t0 + 1 s, nothing counts as idle.
        c.observe(t0 + Duration::from_secs(1), 2, false);
        let t4 = t0 + Duration::from_secs(5);
        assert_eq!(
            c.poll(t4),
            Some(Request {
                target: 4,
                wants: false
            })
        );
        c.on_result(
            t4,
            Ok(Grant {
                channels: 4,
                others_wanting: 0,
            }),
        );
        // Two calls for the whole next period: two channels idle.
        c.observe(t4 + Duration::from_secs(1), 2, false);
        let t5 = t4 + Duration::from_secs(5);
        assert_eq!(
            c.poll(t5),
            Some(Request {
                target: 2,
                wants: false
            })
        );
        c.on_result(
            t5,
            Ok(Grant {
                channels: 2,
                others_wanting: 0,
            }),
        );
        assert_eq!(c.rate_channels(t5), 2, "rate falls at once");
        // Closing keeps the live calls' channels until they end.
        c.close();
        c.observe(t5, 1, false);
        assert_eq!(
            c.poll(t5),
            Some(Request {
                target: 1,
                wants: false
            })
        );
        c.on_result(
            t5,
            Ok(Grant {
                channels: 1,
                others_wanting: 0,
            }),
        );
        assert!(!c.finished());
        c.observe(t5, 0, false);
        assert_eq!(
            c.poll(t5),
            Some(Request {
                target: 0,
                wants: false
            })
        );
        c.on_result(
            t5,
            Ok(Grant {
                channels: 0,
                others_wanting: 0,
            }),
        );
        assert!(c.finished());
    }

    #[test]
    fn a_holder_above_its_fair_share_stops_there_when_others_wait() {
        let t0 = Instant::now();
        let mut c = ShareCore::new(4, timing(), t0);
        c.observe(t0, 0, true);
        c.poll(t0);
        c.on_result(
            t0,
            Ok(Grant {
                channels: 4,
                others_wanting: 0,
            }),
        );
        c.observe(t0, 4, false);
        let t1 = t0 + Duration::from_secs(5);
        c.poll(t1).expect("renewal");
        c.on_result(
            t1,
            Ok(Grant {
                channels: 4,
                others_wanting: 1,
            }),
        );
        assert_eq!(
            c.limit(t1),
            2,
            "no new dial above half while the other waits"
        );
        // Calls end: the freed channels go back, not more.
        let t2 = t1 + GIVE_BACK_EVERY;
        c.observe(t2, 3, false);
        assert_eq!(
            c.poll(t2),
            Some(Request {
                target: 3,
                wants: false
            })
        );
        c.on_result(
            t2,
            Ok(Grant {
                channels: 3,
                others_wanting: 1,
            }),
        );
        let t3 = t2 + GIVE_BACK_EVERY;
        c.observe(t3, 1, false);
        assert_eq!(
            c.poll(t3),
            Some(Request {
                target: 2,
                wants: false
            })
        );
    }
}
