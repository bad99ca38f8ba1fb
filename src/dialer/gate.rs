//! Per-trunk gates: the trunk's own `max_channels` and `max_cps`, shared by every campaign
//! dialing through it and by a call failing over onto it.
//!
//! A dial takes a [`TrunkSlot`]; the channel is given back when the slot is dropped (the
//! call reported its result, or its actor ended), so a call that moves to its failover
//! trunk gives its first trunk's channel back and holds the second one's, and no path can
//! forget to release.
//!
//! In a cluster (PostgreSQL) the gate also holds the node's block of each trunk's caps
//! ([`super::share`]): its pacer is fitted to the block before each check, and a dial the
//! block (not the trunk) refuses tells the share shell to grow it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::core::Pacer;
use super::share::{Fit, ShareKey, Shares};
use crate::config::Trunk;

/// While a fresh block's rate is not usable yet, a dial is retried this soon.
const RATE_PENDING_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

struct Gate {
    pacer: Pacer,
    active: u32,
    /// In a cluster: the node's share of this trunk's caps.
    share: Option<(ShareKey, Fit)>,
}

impl Gate {
    /// Fit the pacer to the node's block; Err(t): the block's rate is not usable before `t`.
    fn fit(&mut self, shares: Option<&Shares>, now: Instant) -> Result<(), Instant> {
        let (Some(shares), Some((key, fit))) = (shares, self.share.as_mut()) else {
            return Ok(());
        };
        let Some(limits) = shares.limits(key, now) else {
            return Ok(());
        };
        if fit.apply(limits, &mut self.pacer) {
            Ok(())
        } else {
            Err(now + RATE_PENDING_RETRY)
        }
    }

    /// Tell the share shell how the block is used; `refused`: a dial found no channel.
    fn report(&self, shares: Option<&Shares>, now: Instant, refused: bool) {
        if let (Some(shares), Some((key, _))) = (shares, self.share.as_ref()) {
            shares.observe(key, now, self.active, refused);
        }
    }
}

type Gates = Arc<Mutex<HashMap<String, Gate>>>;

fn lock(g: &Gates) -> MutexGuard<'_, HashMap<String, Gate>> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every configured trunk's gate; cheap to clone.
#[derive(Clone, Default)]
pub struct TrunkGates {
    gates: Gates,
    /// In a cluster: the node's blocks of every shared cap (trunks and campaigns).
    shares: Option<Shares>,
}

/// One channel held on a trunk; dropping it gives the channel back.
pub struct TrunkSlot {
    gates: Gates,
    shares: Option<Shares>,
    trunk: String,
}

impl std::fmt::Debug for TrunkGates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrunkGates")
    }
}

impl std::fmt::Debug for TrunkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrunkSlot({})", self.trunk)
    }
}

impl TrunkSlot {
    pub fn trunk(&self) -> &str {
        &self.trunk
    }
}

impl Drop for TrunkSlot {
    fn drop(&mut self) {
        if let Some(g) = lock(&self.gates).get_mut(&self.trunk) {
            g.active = g.active.saturating_sub(1);
            g.report(self.shares.as_ref(), Instant::now(), false);
        }
    }
}

impl TrunkGates {
    /// A gate per trunk (a trunk whose limits a Pacer refuses gets none: never gated; the
    /// config's own checks make that unreachable).
    pub fn new(trunks: &[Trunk], now: Instant) -> TrunkGates {
        let map = trunks
            .iter()
            .filter_map(|t| {
                let pacer = Pacer::new(t.max_cps, t.max_channels, now).ok()?;
                Some((
                    t.name.clone(),
                    Gate {
                        pacer,
                        active: 0,
                        share: None,
                    },
                ))
            })
            .collect();
        TrunkGates {
            gates: Arc::new(Mutex::new(map)),
            shares: None,
        }
    }

    /// In a cluster: hold each trunk's caps as a block of `shares` (registered here), so
    /// that every node together stays within `max_channels` and `max_cps`.
    pub fn with_shares(mut self, trunks: &[Trunk], shares: Shares, now: Instant) -> TrunkGates {
        {
            let mut map = lock(&self.gates);
            for t in trunks {
                if let Some(g) = map.get_mut(&t.name) {
                    let key = ShareKey::trunk(&t.name);
                    shares.register(key.clone(), t.max_channels, now);
                    g.share = Some((key, Fit::new(t.max_channels, t.max_cps)));
                }
            }
        }
        self.shares = Some(shares);
        self
    }

    /// The node's blocks of shared caps (None: a single node holds every cap alone).
    pub fn shares(&self) -> Option<&Shares> {
        self.shares.as_ref()
    }

    /// The node's block of `trunk`'s channels (None: not shared).
    pub fn share(&self, trunk: &str) -> Option<u32> {
        self.shares.as_ref()?.held(&ShareKey::trunk(trunk))
    }

    /// Ok when `trunk` may take a call at `now`; Err(Some(t)): its rate allows one at `t`;
    /// Err(None): all its channels are busy (they free up on call events, not on time; in a
    /// cluster also when the node's block of them is full and must grow).
    pub fn check(&self, trunk: &str, now: Instant) -> Result<(), Option<Instant>> {
        let mut map = lock(&self.gates);
        let Some(g) = map.get_mut(trunk) else {
            return Ok(());
        };
        if let Err(at) = g.fit(self.shares.as_ref(), now) {
            if let (Some(shares), Some((key, _))) = (self.shares.as_ref(), g.share.as_ref()) {
                shares.paced(key);
            }
            return Err(Some(at));
        }
        if g.pacer.can_dial(now, g.active) {
            Ok(())
        } else if g.active >= g.pacer.max_channels() {
            g.report(self.shares.as_ref(), now, true);
            Err(None)
        } else {
            if let (Some(shares), Some((key, _))) = (self.shares.as_ref(), g.share.as_ref()) {
                shares.paced(key);
            }
            Err(Some(g.pacer.next_token_at(now)))
        }
    }

    /// Take a channel and a rate token on `trunk` whether or not [`check`](Self::check)
    /// allowed it (the caller checked before its awaits; a forced dial is paid back by the
    /// pacer waiting longer).
    pub fn take(&self, trunk: &str, now: Instant) -> TrunkSlot {
        if let Some(g) = lock(&self.gates).get_mut(trunk) {
            g.pacer.take(now);
            g.active += 1;
            g.report(self.shares.as_ref(), now, false);
        }
        TrunkSlot {
            gates: self.gates.clone(),
            shares: self.shares.clone(),
            trunk: trunk.to_string(),
        }
    }

    /// Check and take in one step: the slot only when the gate allows it now.
    pub fn try_take(&self, trunk: &str, now: Instant) -> Option<TrunkSlot> {
        let mut map = lock(&self.gates);
        if let Some(g) = map.get_mut(trunk) {
            if g.fit(self.shares.as_ref(), now).is_err() {
                return None;
            }
            if !g.pacer.can_dial(now, g.active) {
                if g.active >= g.pacer.max_channels() {
                    g.report(self.shares.as_ref(), now, true);
                }
                return None;
            }
            g.pacer.take(now);
            g.active += 1;
            g.report(self.shares.as_ref(), now, false);
        }
        Some(TrunkSlot {
            gates: self.gates.clone(),
            shares: self.shares.clone(),
            trunk: trunk.to_string(),
        })
    }

    /// Channels in use on `trunk`.
    pub fn active(&self, trunk: &str) -> u32 {
        lock(&self.gates).get(trunk).map_or(0, |g| g.active)
    }
}

/// The trunk to dial `first` through: itself when its gate allows, else the first of its
/// `failover` chain that does. Err: when `first` allows the next dial (None: its channels
/// are full and so is every failover).
pub fn pick_trunk<'a>(
    gates: &TrunkGates,
    trunks: &'a [Trunk],
    first: &'a Trunk,
    now: Instant,
) -> Result<&'a Trunk, Option<Instant>> {
    let first_err = match gates.check(&first.name, now) {
        Ok(()) => return Ok(first),
        Err(e) => e,
    };
    let mut seen = vec![first.name.as_str()];
    let mut next = first.failover.as_deref();
    while let Some(name) = next {
        if seen.contains(&name) {
            break; // config refuses cycles; never loop anyway
        }
        seen.push(name);
        let Some(t) = trunks.iter().find(|t| t.name == name) else {
            break;
        };
        // Only a full first trunk fails over: a rate-limited one waits for its next token
        // (spilling every surplus dial onto the failover would make it the main trunk).
        if first_err.is_none() && gates.check(&t.name, now).is_ok() {
            return Ok(t);
        }
        next = t.failover.as_deref();
    }
    Err(first_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trunk(name: &str, channels: u32, failover: Option<&str>) -> Trunk {
        let mut t = Trunk::peer(name.into(), "127.0.0.1:5090".parse().expect("addr"));
        t.max_channels = channels;
        t.max_cps = 100.0;
        t.failover = failover.map(str::to_string);
        t
    }

    #[test]
    fn slots_count_channels_and_give_them_back_on_drop() {
        let now = Instant::now();
        let trunks = vec![trunk("a", 2, None)];
        let g = TrunkGates::new(&trunks, now);
        let s1 = g.try_take("a", now).expect("1st");
        let _s2 = g.try_take("a", now).expect("2nd");
        assert_eq!(g.active("a"), 2);
        assert!(g.try_take("a", now).is_none(), "full");
        assert_eq!(g.check("a", now), Err(None));
        drop(s1);
        assert_eq!(g.active("a"), 1);
        assert!(g.check("a", now + Duration::from_secs(1)).is_ok());
        assert_eq!(
            s1_name(&g.take("x", now)),
            "x",
            "unknown trunks are not gated"
        );
    }

    fn s1_name(s: &TrunkSlot) -> String {
        s.trunk().to_string()
    }

    #[test]
    fn a_full_trunk_fails_over_a_rate_limited_one_waits() {
        let now = Instant::now();
        let trunks = vec![
            trunk("a", 1, Some("b")),
            trunk("b", 1, Some("c")),
            trunk("c", 1, None),
        ];
        let g = TrunkGates::new(&trunks, now);
        assert_eq!(
            pick_trunk(&g, &trunks, &trunks[0], now).map(|t| t.name.as_str()),
            Ok("a")
        );
        let _a = g.take("a", now);
        assert_eq!(
            pick_trunk(&g, &trunks, &trunks[0], now).map(|t| t.name.as_str()),
            Ok("b")
        );
        let _b = g.take("b", now);
        assert_eq!(
            pick_trunk(&g, &trunks, &trunks[0], now).map(|t| t.name.as_str()),
            Ok("c"),
            "the chain is followed"
        );
        let _c = g.take("c", now);
        assert_eq!(
            pick_trunk(&g, &trunks, &trunks[0], now).map(|t| t.name.as_str()),
            Err(None)
        );
        // Rate-limited (not full): wait for the token instead of spilling over.
        let mut slow = trunks.clone();
        slow[0].max_cps = 1.0;
        slow[0].max_channels = 5;
        let g = TrunkGates::new(&slow, now);
        let _x = g.take("a", now);
        match pick_trunk(&g, &slow, &slow[0], now) {
            Err(Some(t)) => assert!(t > now),
            other => panic!("expected a wait, got {:?}", other.map(|t| &t.name)),
        }
    }
}
