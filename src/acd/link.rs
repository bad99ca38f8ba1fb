//! The ACD's link to the other nodes of a cluster (docs/adr/0011): a tokio task that holds
//! one PostgreSQL session for the leader lock and for sending, and one `LISTEN` session.
//!
//! It decides nothing about queues. It tells the ACD shell ([`super::AcdService`]) when this
//! node leads (won `pg_try_advisory_lock`), when it follows, when it lost the database, what
//! arrived on its channels, and which nodes were declared dead; and it sends what the shell
//! hands it, in order, on its one session (PostgreSQL delivers one session's notifications
//! in the order they were sent, so a caller's `Join` never overtakes its `Leave`).
//!
//! Channels: [`wire::LEADER_CHANNEL`] (nodes → leader; listened to only while leading),
//! [`wire::node_channel`] (leader → one node), [`wire::BROADCAST_CHANNEL`] (leader → all).

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::wire::{self, Broadcast, Down, Up};
use crate::store::Db;

/// The advisory-lock key of the ACD leader ("sbACD" in ASCII): one per database.
const LEADER_LOCK: i64 = 0x0073_6241_4344;
/// How soon a lost database session is tried again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How many messages may wait to be sent before the shell's `try_send` fails.
pub const OUTBOX: usize = 4096;

/// A message with its sender, as it travels in a payload.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Envelope<T> {
    pub from: String,
    pub msg: T,
}

/// What the shell asks to send.
#[derive(Debug)]
pub enum Outgoing {
    /// To the leader.
    Up(Up),
    /// To one node.
    Down { node: String, msg: Down },
    /// To every node.
    All(Broadcast),
}

/// What the link tells the shell.
#[derive(Debug)]
pub enum LinkEvent {
    /// This node holds the leader lock from now on; `epoch` is the database's clock in ms at
    /// the take-over (it grows with every take-over).
    Leading { epoch: i64 },
    /// Connected, another node leads (or none yet): send up what this node holds.
    Following,
    /// The database is gone: no leader can be reached (and this node leads nobody).
    Disconnected,
    /// From a node, to the leader (only while leading).
    Up { from: String, msg: Up },
    /// From the leader, to this node.
    Down(Down),
    /// From the leader, to all.
    All { from: String, msg: Broadcast },
    /// A node was declared dead (`nodes.state`): its callers are gone.
    NodeDead(String),
}

/// The two sides of the link as the shell holds them.
#[derive(Debug)]
pub struct LinkIo {
    pub node: String,
    pub events: mpsc::Receiver<LinkEvent>,
    pub out: mpsc::Sender<Outgoing>,
}

/// Start the link task; the shell gets its [`LinkIo`].
pub fn start(
    url: String,
    db: Db,
    node: String,
    every: Duration,
    tracker: &tokio_util::task::TaskTracker,
    close: CancellationToken,
) -> LinkIo {
    let (ev_tx, ev_rx) = mpsc::channel(OUTBOX);
    let (out_tx, out_rx) = mpsc::channel(OUTBOX);
    tracker.spawn(run(url, db, node.clone(), every, ev_tx, out_rx, close));
    LinkIo {
        node,
        events: ev_rx,
        out: out_tx,
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the ACD shell is gone")]
    ShellGone,
}

async fn run(
    url: String,
    db: Db,
    node: String,
    every: Duration,
    events: mpsc::Sender<LinkEvent>,
    mut out: mpsc::Receiver<Outgoing>,
    close: CancellationToken,
) {
    loop {
        let session = tokio::select! {
            _ = close.cancelled() => return,
            r = session(&url, &db, &node, every, &events, &mut out, &close) => r,
        };
        match session {
            Ok(()) => return,
            Err(LinkError::ShellGone) => return,
            Err(e) => {
                warn!(error = %e, "ACD link to the cluster lost; retrying");
                if events.send(LinkEvent::Disconnected).await.is_err() {
                    return;
                }
            }
        }
        // What the shell queued meanwhile cannot reach anyone: it re-sends what it holds
        // when the link is back (Following / Leading).
        while out.try_recv().is_ok() {}
        tokio::select! {
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

/// One database session: returns Ok on close, Err when the database is lost.
async fn session(
    url: &str,
    db: &Db,
    node: &str,
    every: Duration,
    events: &mpsc::Sender<LinkEvent>,
    out: &mut mpsc::Receiver<Outgoing>,
    close: &CancellationToken,
) -> Result<(), LinkError> {
    let mut conn = PgConnection::connect(url).await?;
    let mut listener = PgListener::connect(url).await?;
    listener.listen(wire::BROADCAST_CHANNEL).await?;
    listener.listen(&wire::node_channel(node)).await?;
    let mut leading = false;
    let mut told_following = false;
    let mut dead_seen: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once: try the lock now.
    loop {
        tokio::select! {
            _ = close.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if !leading {
                    if try_lead(&mut conn).await? {
                        listener.listen(wire::LEADER_CHANNEL).await?;
                        let epoch: i64 = sqlx::query_scalar(
                            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                        )
                        .fetch_one(&mut conn)
                        .await?;
                        leading = true;
                        info!(node, epoch, "this node leads the cluster's queues");
                        tell(events, LinkEvent::Leading { epoch }).await?;
                    } else if !told_following {
                        // Once per session: the shell sends up what it holds.
                        tell(events, LinkEvent::Following).await?;
                        told_following = true;
                    }
                } else {
                    // Still ours? The lock dies with the session, so a query that works
                    // on this session means we still hold it.
                    for dead in dead_nodes(db).await {
                        if dead != node && dead_seen.insert(dead.clone()) {
                            tell(events, LinkEvent::NodeDead(dead)).await?;
                        }
                    }
                    sqlx::query("SELECT 1").execute(&mut conn).await?;
                }
            }
            msg = out.recv() => {
                let Some(msg) = msg else { return Err(LinkError::ShellGone) };
                send(&mut conn, node, msg).await?;
            }
            n = listener.try_recv() => {
                // None: the LISTEN session was lost (notifications in between are gone).
                let Some(n) = n? else {
                    return Err(LinkError::Db(sqlx::Error::PoolClosed));
                };
                if let Some(ev) = received(n.channel(), n.payload(), node) {
                    tell(events, ev).await?;
                }
            }
        }
    }
}

async fn tell(events: &mpsc::Sender<LinkEvent>, ev: LinkEvent) -> Result<(), LinkError> {
    events.send(ev).await.map_err(|_| LinkError::ShellGone)
}

async fn try_lead(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(conn)
        .await
}

/// Nodes whose row says `dead` (a survivor's sweep declared them, ADR 0007).
async fn dead_nodes(db: &Db) -> Vec<String> {
    match crate::store::nodes::list(db).await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| r.state == "dead")
            .map(|r| r.node_id)
            .collect(),
        Err(e) => {
            debug!(error = %e, "cannot read the nodes table");
            Vec::new()
        }
    }
}

async fn send(conn: &mut PgConnection, node: &str, msg: Outgoing) -> Result<(), LinkError> {
    let (channel, payload) = match msg {
        Outgoing::Up(m) => (wire::LEADER_CHANNEL.to_string(), envelope(node, m)),
        Outgoing::Down { node: to, msg } => (wire::node_channel(&to), envelope(node, msg)),
        Outgoing::All(m) => (wire::BROADCAST_CHANNEL.to_string(), envelope(node, m)),
    };
    let Some(payload) = payload else {
        return Ok(());
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

fn envelope<T: serde::Serialize>(from: &str, msg: T) -> Option<String> {
    match wire::encode(&Envelope {
        from: from.to_string(),
        msg,
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "ACD message not sent");
            None
        }
    }
}

/// A notification as a [`LinkEvent`]; a malformed one is logged and dropped.
fn received(channel: &str, payload: &str, me: &str) -> Option<LinkEvent> {
    let bad = |e: wire::WireError| {
        warn!(channel, error = %e, "malformed ACD notification dropped");
        None
    };
    if channel == wire::LEADER_CHANNEL {
        match wire::decode::<Envelope<Up>>(payload) {
            Ok(e) => Some(LinkEvent::Up {
                from: e.from,
                msg: e.msg,
            }),
            Err(e) => bad(e),
        }
    } else if channel == wire::BROADCAST_CHANNEL {
        match wire::decode::<Envelope<Broadcast>>(payload) {
            // Our own announcements come back to us too.
            Ok(e) if e.from == me => None,
            Ok(e) => Some(LinkEvent::All {
                from: e.from,
                msg: e.msg,
            }),
            Err(e) => bad(e),
        }
    } else {
        match wire::decode::<Envelope<Down>>(payload) {
            Ok(e) => Some(LinkEvent::Down(e.msg)),
            Err(e) => bad(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_sorted_by_channel_and_own_broadcasts_ignored() {
        let up = envelope("b", Up::Position { call: "c".into() }).expect("test value");
        assert!(matches!(
            received(wire::LEADER_CHANNEL, &up, "a"),
            Some(LinkEvent::Up { from, msg: Up::Position { .. } }) if from == "b"
        ));
        let all = envelope(
            "a",
            Broadcast::Leader {
                node: "a".into(),
                epoch: 5,
            },
        )
        .expect("test value");
        assert!(received(wire::BROADCAST_CHANNEL, &all, "a").is_none());
        assert!(matches!(
            received(wire::BROADCAST_CHANNEL, &all, "b"),
            Some(LinkEvent::All {
                msg: Broadcast::Leader { epoch: 5, .. },
                ..
            })
        ));
        let down = envelope(
            "a",
            Down::Queued {
                call: "c".into(),
                position: 2,
            },
        )
        .expect("test value");
        assert!(matches!(
            received(&wire::node_channel("b"), &down, "b"),
            Some(LinkEvent::Down(Down::Queued { position: 2, .. }))
        ));
        assert!(received(wire::LEADER_CHANNEL, "{not json", "a").is_none());
    }
}
