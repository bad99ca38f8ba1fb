//! Cluster membership: this node's heartbeat in the `nodes` table and, on PostgreSQL, the
//! survivors' dead-node sweep (docs/adr/0007-cluster-state.md).
//!
//! [`Membership`] is the sans-IO core: it says when to beat and when to sweep, and what to
//! do after a beat failed or found this node declared dead; unit-tested in virtual time.
//! [`run`] is the thin tokio shell that does the database work it asks for.
//!
//! A sweep looks for other nodes whose heartbeat (by the database's clock) is older than
//! `[cluster] dead_after_s`, declares each dead with one guarded `UPDATE` (one survivor
//! wins), and the winner closes that node's open call rows as `interrupted`. Its campaign
//! contacts are taken over by the survivors' campaign runners once their leases expire
//! (`store::campaigns::take_orphans`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::call::CallContext;
use crate::config::ClusterTiming;
use crate::store::nodes::{self, Beat, NodeInfo, NodeState};
use crate::store::{Db, Dialect};

/// A failed heartbeat is retried this soon (or at the heartbeat interval, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What the shell should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Write the heartbeat with this state.
    pub beat: NodeState,
    /// Then look for dead peers.
    pub sweep: bool,
}

/// How a heartbeat went, as the shell reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatResult {
    Ok,
    /// The database did not answer.
    Failed,
    /// Our row said `dead`: the shell has re-registered; survivors already closed our calls.
    DeclaredDead,
}

/// The membership timer, sans IO.
#[derive(Debug)]
pub struct Membership {
    timing: ClusterTiming,
    /// Sweeping for dead peers: only on a shared database (PostgreSQL).
    sweeps: bool,
    next_beat: Instant,
    last_ok: Option<Instant>,
    draining: bool,
    /// Set once a beat found us declared dead; reported by [`Membership::rejoins`].
    rejoins: u32,
}

impl Membership {
    /// The first beat is due at once (the row was just registered, but the shell's first
    /// step also renews leases and sweeps).
    pub fn new(timing: ClusterTiming, sweeps: bool, now: Instant) -> Membership {
        Membership {
            timing,
            sweeps,
            next_beat: now,
            last_ok: Some(now),
            draining: false,
            rejoins: 0,
        }
    }

    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn state(&self) -> NodeState {
        if self.draining {
            NodeState::Draining
        } else {
            NodeState::Running
        }
    }

    /// The step due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        if now < self.next_beat {
            return None;
        }
        // Until the result comes, no second beat: the shell reports before polling again.
        self.next_beat = now + self.timing.heartbeat;
        Some(Step {
            beat: self.state(),
            sweep: self.sweeps,
        })
    }

    pub fn on_beat(&mut self, now: Instant, result: BeatResult) {
        match result {
            BeatResult::Ok => self.last_ok = Some(now),
            BeatResult::DeclaredDead => {
                self.last_ok = Some(now);
                self.rejoins += 1;
            }
            BeatResult::Failed => {
                self.next_beat = now + RETRY_AFTER_FAILURE.min(self.timing.heartbeat);
            }
        }
    }

    pub fn next_wake(&self) -> Instant {
        self.next_beat
    }

    /// No heartbeat has reached the database for `dead_after`: survivors may have declared
    /// this node dead (and will retry its campaign contacts) — worth a loud log line.
    pub fn out_of_touch(&self, now: Instant) -> bool {
        self.last_ok
            .is_none_or(|t| now.saturating_duration_since(t) >= self.timing.dead_after)
    }

    pub fn rejoins(&self) -> u32 {
        self.rejoins
    }
}

/// The shell: register, then beat (and sweep on PostgreSQL) until `close`; the caller writes
/// the final `stopped` state once calls have finished.
pub async fn run(ctx: Arc<CallContext>, me: NodeInfo, close: CancellationToken) {
    let db: &Db = &ctx.db;
    let timing = ctx.config.cluster;
    let dead_after_s = timing.dead_after.as_secs() as i64;
    let mut core = Membership::new(timing, db.dialect == Dialect::Postgres, Instant::now());
    let mut warned = false;
    loop {
        if ctx.draining.load(Ordering::Relaxed) {
            core.drain();
        }
        let now = Instant::now();
        if let Some(step) = core.poll(now) {
            let result = match nodes::beat(db, &me.node_id, step.beat, dead_after_s).await {
                Ok(Beat::Written) => BeatResult::Ok,
                Ok(Beat::DeclaredDead) => {
                    warn!(node = %me.node_id, "this node was declared dead by another (its heartbeats did not reach the database); rejoining — calls it had open were closed as interrupted");
                    match nodes::register(db, &me).await {
                        Ok(()) => {
                            if step.beat == NodeState::Draining {
                                let _ =
                                    nodes::set_state(db, &me.node_id, NodeState::Draining).await;
                            }
                            BeatResult::DeclaredDead
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot rejoin");
                            BeatResult::Failed
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat not written");
                    BeatResult::Failed
                }
            };
            let now = Instant::now();
            core.on_beat(now, result);
            if core.out_of_touch(now) && !warned {
                error!(dead_after_s, "no heartbeat written for [cluster] dead_after_s: other nodes may declare this node dead and retry its campaign contacts");
                warned = true;
            } else if result != BeatResult::Failed {
                warned = false;
            }
            if step.sweep && result != BeatResult::Failed {
                sweep(db, &me.node_id, dead_after_s).await;
            }
        }
        tokio::select! {
            _ = close.cancelled() => break,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(core.next_wake())) => {}
        }
    }
}

/// Declare stale peers dead; the survivor whose `UPDATE` moved the row closes their calls.
async fn sweep(db: &Db, me: &str, dead_after_s: i64) {
    let stale = match nodes::stale_peers(db, me, dead_after_s).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "dead-node sweep failed");
            return;
        }
    };
    for peer in stale {
        match nodes::declare_dead(db, &peer, dead_after_s).await {
            Ok(true) => match nodes::finalize_node_calls(db, &peer).await {
                Ok(n) => warn!(
                    node = %peer,
                    calls = n,
                    "node declared dead (no heartbeat for {dead_after_s} s): its open calls closed as 'interrupted'"
                ),
                Err(e) => {
                    error!(node = %peer, error = %e, "node declared dead but its calls could not be closed")
                }
            },
            Ok(false) => {} // another survivor was first, or it came back
            Err(e) => warn!(node = %peer, error = %e, "cannot declare node dead"),
        }
    }
}

/// Put this node in draining (idempotent): OPTIONS and new INVITEs get 503, campaign
/// runners stop claiming contacts, the `nodes` row says `draining` at once.
pub async fn drain(ctx: &CallContext) {
    if !ctx.draining.swap(true, Ordering::AcqRel) {
        info!(node = %ctx.config.node_id, "draining: new calls refused with 503, calls in progress finish");
    }
    if let Err(e) = nodes::set_state(&ctx.db, &ctx.config.node_id, NodeState::Draining).await {
        warn!(error = %e, "draining state not written to the nodes table (the next heartbeat writes it)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped `[cluster]` timing (heartbeat 5 s, dead after 15 s).
    fn timing() -> ClusterTiming {
        ClusterTiming::default()
    }

    #[test]
    fn beats_every_interval_and_retries_failures_sooner() {
        let t0 = Instant::now();
        let mut m = Membership::new(timing(), true, t0);
        let s = m.poll(t0).expect("first beat at once");
        assert_eq!(
            s,
            Step {
                beat: NodeState::Running,
                sweep: true
            }
        );
        assert!(m.poll(t0).is_none(), "one beat at a time");
        m.on_beat(t0, BeatResult::Ok);
        assert_eq!(m.next_wake(), t0 + Duration::from_secs(5));
        assert!(m.poll(t0 + Duration::from_secs(4)).is_none());
        let t5 = t0 + Duration::from_secs(5);
        assert!(m.poll(t5).is_some());
        m.on_beat(t5, BeatResult::Failed);
        assert_eq!(
            m.next_wake(),
            t5 + Duration::from_secs(1),
            "a failed beat is retried in 1 s"
        );
        assert!(!m.out_of_touch(t5 + Duration::from_secs(1)));
    }

    #[test]
    fn out_of_touch_after_dead_after_without_a_written_beat() {
        let t0 = Instant::now();
        let mut m = Membership::new(timing(), false, t0);
        let mut t = t0;
        for _ in 0..20 {
            if m.poll(t).is_some() {
                m.on_beat(t, BeatResult::Failed);
            }
            t += Duration::from_secs(1);
        }
        assert!(m.out_of_touch(t));
        m.poll(t);
        m.on_beat(t, BeatResult::DeclaredDead);
        assert!(!m.out_of_touch(t));
        assert_eq!(m.rejoins(), 1);
    }

    #[test]
    fn draining_is_written_by_the_next_beat_and_sqlite_never_sweeps() {
        let t0 = Instant::now();
        let mut m = Membership::new(timing(), false, t0);
        m.drain();
        assert_eq!(
            m.poll(t0),
            Some(Step {
                beat: NodeState::Draining,
                sweep: false
            })
        );
    }
}
