//! Per-trunk gates: the trunk's own `max_channels` and `max_cps`, shared by every campaign
//! dialing through it and by a call failing over onto it.
//!
//! A dial takes a [`TrunkSlot`]; the channel is given back when the slot is dropped (the
//! call reported its result, or its actor ended), so a call that moves to its failover
//! trunk gives its first trunk's channel back and holds the second one's, and no path can
//! forget to release.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::core::Pacer;
use crate::config::Trunk;

struct Gate {
    pacer: Pacer,
    active: u32,
}

type Gates = Arc<Mutex<HashMap<String, Gate>>>;

fn lock(g: &Gates) -> MutexGuard<'_, HashMap<String, Gate>> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every configured trunk's gate; cheap to clone.
#[derive(Clone, Default)]
pub struct TrunkGates {
    gates: Gates,
}

/// One channel held on a trunk; dropping it gives the channel back.
pub struct TrunkSlot {
    gates: Gates,
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
                Some((t.name.clone(), Gate { pacer, active: 0 }))
            })
            .collect();
        TrunkGates {
            gates: Arc::new(Mutex::new(map)),
        }
    }

    /// Ok when `trunk` may take a call at `now`; Err(Some(t)): its rate allows one at `t`;
    /// Err(None): all its channels are busy (they free up on call events, not on time).
    pub fn check(&self, trunk: &str, now: Instant) -> Result<(), Option<Instant>> {
        match lock(&self.gates).get(trunk) {
            None => Ok(()),
            Some(g) if g.pacer.can_dial(now, g.active) => Ok(()),
            Some(g) if g.active >= g.pacer.max_channels() => Err(None),
            Some(g) => Err(Some(g.pacer.next_token_at(now))),
        }
    }

    /// Take a channel and a rate token on `trunk` whether or not [`check`](Self::check)
    /// allowed it (the caller checked before its awaits; a forced dial is paid back by the
    /// pacer waiting longer).
    pub fn take(&self, trunk: &str, now: Instant) -> TrunkSlot {
        if let Some(g) = lock(&self.gates).get_mut(trunk) {
            g.pacer.take(now);
            g.active += 1;
        }
        TrunkSlot {
            gates: self.gates.clone(),
            trunk: trunk.to_string(),
        }
    }

    /// Check and take in one step: the slot only when the gate allows it now.
    pub fn try_take(&self, trunk: &str, now: Instant) -> Option<TrunkSlot> {
        let mut map = lock(&self.gates);
        if let Some(g) = map.get_mut(trunk) {
            if !g.pacer.can_dial(now, g.active) {
                return None;
            }
            g.pacer.take(now);
            g.active += 1;
        }
        Some(TrunkSlot {
            gates: self.gates.clone(),
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
