//! Admission of new calls under overload: how many INVITEs per second the router lets
//! through, and the memory of the ones it refused. Sans-IO: the router hands in the time and
//! the waits it measured, and gets back a decision.
//!
//! Why a rate and not only a threshold. The router measures three waits (the INVITE's time
//! in the socket, the oldest call task not yet started, the call runtime's lag). Refusing
//! each INVITE whose wait is over `[server] overload_queue_ms` sheds load only once the
//! backlog is already there, and admits *everything* again the moment the wait dips under
//! the limit: at three times the knee that is a burst of hundreds of calls per 100 ms, each
//! of which costs a full set-up and then fights the next burst (docs/benchmarks.md,
//! "Overload": most excess calls timed out instead of being refused). So the waits drive an
//! admitted rate instead, the way RFC 7415's rate-based overload control and TCP's congestion
//! window do: when a window of [`WINDOW`] saw a wait over the limit, the rate drops to a
//! fraction of what was admitted in it (multiplicative decrease); while the waits stay low
//! and INVITEs are still being refused, it grows a little each window (additive increase);
//! once nothing has been refused for [`CALM_WINDOWS`] windows, the limit is lifted. Under no
//! overload the gate is one comparison per INVITE.
//!
//! Why the memory ([`InviteMemory`]). A refused INVITE is a finished server transaction
//! (RFC 3261 §17.2.1): its retransmissions must get the same `503`, not a fresh decision. A
//! retransmission that arrives after the backlog cleared would otherwise be admitted, and the
//! caller — who already took the `503`, sent its ACK and gave up — never ACKs the `200`: the
//! server then ran a whole call for nobody for four seconds (21 263 such calls in the
//! overload run of 2026-12-06). The memory is a hash and an expiry per refusal, 24 bytes,
//! kept for Timer H (64·T1); the `503` is rebuilt with the same To tag from the same hash.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// The control interval: decisions about the rate are taken once per window.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Windows without a refusal (and without an overload signal) before the limit is lifted.
pub const CALM_WINDOWS: u32 = 20;
/// The rate never drops under this (calls/s): the server keeps learning whether it has
/// recovered, and a trickle of calls still gets through a long overload.
pub const MIN_RATE: f64 = 20.0;
/// What is left of the admitted rate after a window that saw overload.
const DECREASE: f64 = 0.7;
/// Growth per calm window that still refused calls: the larger of this share of the rate...
const INCREASE_SHARE: f64 = 0.05;
/// ...and this many calls/s.
const INCREASE_MIN: f64 = 25.0;

/// What to do with a new INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// Refuse with `503`: one of the waits is over the limit right now.
    RefuseBacklog,
    /// Refuse with `503`: the admitted rate is used up for this instant.
    RefuseRate,
}

/// The admitted-rate controller (see the module doc).
#[derive(Debug)]
pub struct RateGate {
    limit: Duration,
    /// Calls/s let through; `None`: no limit (no recent overload).
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
    window_start: Instant,
    admitted: u32,
    refused: u32,
    overloaded: bool,
    calm: u32,
}

impl RateGate {
    pub fn new(limit: Duration, now: Instant) -> RateGate {
        RateGate {
            limit,
            rate: None,
            tokens: 0.0,
            refilled: now,
            window_start: now,
            admitted: 0,
            refused: 0,
            overloaded: false,
            calm: 0,
        }
    }

    /// The admitted rate now (calls/s), `None` when there is no limit.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Decide on one new INVITE, given the longest of the waits the router measured.
    pub fn offer(&mut self, now: Instant, waited: Duration) -> Decision {
        self.roll(now);
        if waited > self.limit {
            self.overloaded = true;
            self.refused += 1;
            return Decision::RefuseBacklog;
        }
        if let Some(rate) = self.rate {
            let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.refilled = now;
            // A bucket of one window's worth: an admitted burst is never larger than that.
            let burst = (rate * WINDOW.as_secs_f64()).max(1.0);
            self.tokens = (self.tokens + rate * dt).min(burst);
            if self.tokens < 1.0 {
                self.refused += 1;
                return Decision::RefuseRate;
            }
            self.tokens -= 1.0;
        }
        self.admitted += 1;
        Decision::Admit
    }

    /// Close the window(s) that ended before `now` and adjust the rate.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let admitted_rate = f64::from(self.admitted) / elapsed.as_secs_f64();
        if self.overloaded {
            let base = self.rate.map_or(admitted_rate, |r| r.min(admitted_rate));
            self.rate = Some((base * DECREASE).max(MIN_RATE));
            // The bucket starts empty at the new rate.
            self.tokens = 0.0;
            self.refilled = now;
            self.calm = 0;
        } else if let Some(rate) = self.rate {
            // A long idle gap counts as calm windows too.
            let windows = (elapsed.as_nanos() / WINDOW.as_nanos()).min(u128::from(u32::MAX));
            self.calm = self.calm.saturating_add(windows as u32);
            if self.refused == 0 && self.calm >= CALM_WINDOWS {
                self.rate = None;
            } else if self.refused > 0 {
                self.rate = Some(rate + (rate * INCREASE_SHARE).max(INCREASE_MIN));
            }
        }
        if self.rate.is_none() {
            self.calm = 0;
        }
        self.window_start = now;
        self.admitted = 0;
        self.refused = 0;
        self.overloaded = false;
    }
}

/// A memory of INVITE transactions by a keyed hash of two of their identifiers, each kept
/// for a fixed time (24 bytes an entry): the INVITEs refused for overload, for Timer H (a
/// retransmission gets the same `503` with the same To tag, see the module doc), and in the
/// router the INVITEs answered 2xx, for Timer L (a retransmission is absorbed).
#[derive(Debug)]
pub struct InviteMemory {
    hasher: RandomState,
    keys: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
    keep: Duration,
    cap: usize,
}

impl InviteMemory {
    /// Keep each refusal for `keep` (Timer H, 64·T1), at most `cap` at once (the oldest go
    /// first beyond that: a retransmission that late is rare and then gets a fresh decision).
    pub fn new(keep: Duration, cap: usize) -> InviteMemory {
        InviteMemory {
            hasher: RandomState::new(),
            keys: HashSet::new(),
            order: VecDeque::new(),
            keep,
            cap,
        }
    }

    /// The key of an INVITE transaction from two of its identifiers (refusals: Call-ID and
    /// top Via branch; accepted INVITEs: sent-by and branch, the transaction key's parts).
    pub fn key(&self, call_id: &str, branch: &str) -> u64 {
        self.hasher.hash_one((call_id, branch))
    }

    /// The To tag of the `503` for this key (the same for every retransmission).
    pub fn tag(key: u64) -> String {
        format!("{:016x}", key.rotate_left(17) ^ 0x005e_ed0f_0ad5)
    }

    pub fn remember(&mut self, key: u64, now: Instant) {
        self.expire(now);
        if self.keys.len() >= self.cap {
            if let Some((_, old)) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        if self.keys.insert(key) {
            self.order.push_back((now + self.keep, key));
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forget the refusals whose Timer H ran out (and give the memory back after a burst).
    pub fn expire(&mut self, now: Instant) {
        let before = self.keys.len();
        while let Some(&(until, key)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&key);
        }
        if before > 0 && self.keys.is_empty() {
            self.keys.shrink_to(1024);
            self.order.shrink_to(1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(150);

    /// Offer `per_s` INVITEs/s for `secs`, evenly spaced; `waited(t)` is the wait the router
    /// would measure at time t. Returns (admitted, refused) and the gate's rate at the end.
    fn drive(
        gate: &mut RateGate,
        t: &mut Instant,
        per_s: u32,
        secs: f64,
        waited: impl Fn(u32, u32) -> Duration,
    ) -> (u32, u32) {
        let n = (f64::from(per_s) * secs) as u32;
        let step = Duration::from_secs_f64(1.0 / f64::from(per_s));
        let (mut ok, mut no) = (0, 0);
        for i in 0..n {
            *t += step;
            match gate.offer(*t, waited(i, ok)) {
                Decision::Admit => ok += 1,
                _ => no += 1,
            }
        }
        (ok, no)
    }

    #[test]
    fn no_overload_admits_everything_without_a_limit() {
        let mut t = Instant::now();
        let mut gate = RateGate::new(LIMIT, t);
        let (ok, no) = drive(&mut gate, &mut t, 3000, 2.0, |_, _| {
            Duration::from_millis(2)
        });
        assert_eq!((ok, no), (6000, 0));
        assert_eq!(gate.rate(), None);
    }

    #[test]
    fn a_backlog_refuses_at_once_and_sets_a_rate_below_what_was_admitted() {
        let mut t = Instant::now();
        let mut gate = RateGate::new(LIMIT, t);
        // 0.5 s fine at 6000/s, then the waits go over the limit.
        let (ok, _) = drive(&mut gate, &mut t, 6000, 0.5, |_, _| Duration::ZERO);
        assert_eq!(ok, 3000);
        assert_eq!(
            gate.offer(t + Duration::from_micros(100), Duration::from_millis(400)),
            Decision::RefuseBacklog
        );
        t += Duration::from_millis(150);
        // The window that saw the backlog closes: a rate under the 6000/s that caused it,
        // its bucket empty at first (no burst right after an overload).
        assert_eq!(gate.offer(t, Duration::ZERO), Decision::RefuseRate);
        let rate = gate.rate().expect("a rate after overload");
        assert!(
            (MIN_RATE..6000.0 * DECREASE + 1.0).contains(&rate),
            "{rate}"
        );
    }

    /// The server can serve `capacity` calls/s: admitting more makes the wait grow (a
    /// backlog that drains at the capacity). The gate must settle near the capacity,
    /// refuse the rest with no backlog-sized bursts, and lift the limit after the surge.
    #[test]
    fn settles_near_capacity_and_recovers_after_the_surge() {
        use std::cell::Cell;
        let capacity = 1500.0;
        let mut t = Instant::now();
        let mut gate = RateGate::new(LIMIT, t);
        let backlog = Cell::new(0.0f64);
        let last = Cell::new(t);
        let offered_s = |gate: &mut RateGate, t: &mut Instant, per_s: u32, secs: f64| {
            let n = (f64::from(per_s) * secs) as u32;
            let step = Duration::from_secs_f64(1.0 / f64::from(per_s));
            let (mut ok, mut no, mut max_backlog) = (0u32, 0u32, 0.0f64);
            for _ in 0..n {
                *t += step;
                let dt = t.duration_since(last.get()).as_secs_f64();
                last.set(*t);
                backlog.set((backlog.get() - capacity * dt).max(0.0));
                let wait = Duration::from_secs_f64(backlog.get() / capacity);
                match gate.offer(*t, wait) {
                    Decision::Admit => {
                        ok += 1;
                        backlog.set(backlog.get() + 1.0);
                    }
                    _ => no += 1,
                }
                max_backlog = max_backlog.max(backlog.get());
            }
            (ok, no, max_backlog)
        };
        // 10 s at 6000/s: four times the capacity.
        let (ok, no, max_backlog) = offered_s(&mut gate, &mut t, 6000, 10.0);
        let admitted_rate = f64::from(ok) / 10.0;
        assert!(
            admitted_rate > 0.5 * capacity && admitted_rate < 1.2 * capacity,
            "admitted {admitted_rate}/s of a {capacity}/s capacity"
        );
        assert!(no > 40_000, "refused {no}");
        // The backlog never holds more than a few hundred ms of work.
        assert!(max_backlog / capacity < 0.5, "worst backlog {max_backlog}");
        // Then the normal load (1000/s, under capacity): everything is admitted within
        // seconds and the limit is lifted.
        let (_, no_first, _) = offered_s(&mut gate, &mut t, 1000, 3.0);
        let (ok_after, no_after, _) = offered_s(&mut gate, &mut t, 1000, 3.0);
        assert_eq!(no_after, 0, "still refusing 3 s after the surge");
        assert_eq!(ok_after, 3000);
        assert!(no_first < 1500, "slow recovery: {no_first} refused");
        assert_eq!(gate.rate(), None, "the limit is lifted once calm");
    }

    #[test]
    fn the_rate_never_drops_under_the_floor() {
        let mut t = Instant::now();
        let mut gate = RateGate::new(LIMIT, t);
        let (_, _) = drive(&mut gate, &mut t, 1000, 5.0, |_, _| Duration::from_secs(1));
        t += WINDOW;
        gate.offer(t, Duration::ZERO);
        assert!(gate.rate().is_some_and(|r| r >= MIN_RATE));
        // With no wait at all, a floor-rate gate still lets calls through.
        let (ok, _) = drive(&mut gate, &mut t, 1000, 1.0, |_, _| Duration::ZERO);
        assert!(ok >= 10, "{ok}");
    }

    #[test]
    fn refused_invites_are_remembered_for_timer_h_then_forgotten() {
        let mut r = InviteMemory::new(Duration::from_secs(32), 10);
        let t0 = Instant::now();
        let k = r.key("call-1@host", "z9hG4bK1");
        assert_ne!(
            k,
            r.key("call-1@host", "z9hG4bK2"),
            "a new transaction is new"
        );
        r.remember(k, t0);
        assert!(r.contains(k));
        assert_eq!(InviteMemory::tag(k), InviteMemory::tag(k));
        r.expire(t0 + Duration::from_secs(31));
        assert!(r.contains(k));
        r.expire(t0 + Duration::from_secs(32));
        assert!(!r.contains(k));
        assert!(r.is_empty());
    }

    #[test]
    fn refused_invites_are_capped() {
        let mut r = InviteMemory::new(Duration::from_secs(32), 3);
        let t0 = Instant::now();
        let keys: Vec<u64> = (0..5).map(|i| r.key(&format!("c{i}"), "b")).collect();
        for k in &keys {
            r.remember(*k, t0);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains(keys[0]) && !r.contains(keys[1]));
        assert!(r.contains(keys[4]));
    }
}
