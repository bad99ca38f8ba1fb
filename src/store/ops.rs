//! Record operations: what calls tell the store, and how each is applied idempotently.
//!
//! Every op carries its own key (call UUID, event sequence number) and timestamp taken when
//! it happened, so a replay after an outage or a crash writes the same rows once, with the
//! original times. Applying is `INSERT ... ON CONFLICT DO NOTHING` or a guarded `UPDATE`.
//!
//! The one field another system may also write is a ticket's `resolution` (an agent in the
//! order system, say). An outcome moves it only when its own time is not older than the
//! ticket's `resolved_at` (docs/schema.md "Two writers"), so the later decision wins no
//! matter which write arrives last — also when ours arrives from the spool after an outage.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};
use tracing::warn;

use super::Dialect;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOp {
    CallStarted {
        id: String,
        sip_call_id: String,
        direction: String,
        from_uri: String,
        to_uri: String,
        caller: Option<String>,
        dialplan: Option<String>,
        campaign_id: Option<i64>,
        started_at: String,
        /// The node that handles the call (`[server] node_id`); absent in ops journaled
        /// before nodes had names (written as NULL).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    CallAnswered {
        id: String,
        at: String,
    },
    CallTicket {
        id: String,
        ticket_id: i64,
    },
    /// The trunk an outbound call's INVITE went through (written again on failover).
    CallTrunk {
        id: String,
        trunk: String,
    },
    CallEvent {
        call_id: String,
        seq: i64,
        at: String,
        kind: String,
        detail: String,
    },
    Outcome {
        call_id: String,
        ticket_id: Option<i64>,
        choice: String,
        at: String,
    },
    CallEnded {
        id: String,
        ended_at: String,
        disposition: String,
        hangup_cause: String,
        sip_status: Option<i64>,
        queue: Option<String>,
        agent: Option<String>,
        wait_ms: Option<i64>,
    },
    /// Where a call's recording is (`call_records.recording_path`).
    CallRecording {
        id: String,
        path: String,
    },
    /// A recording `path` was dropped (a `record` step without speech): the call's
    /// `recording_path` goes back to `previous`, if it still names the dropped file.
    CallRecordingDropped {
        id: String,
        path: String,
        previous: Option<String>,
    },
    /// An agent's persistent choices (`agent_state`): last write wins, so replays are safe.
    AgentState {
        agent: String,
        logged_out: bool,
        paused_reason: Option<String>,
        at: String,
    },
    /// One ACD event (`queue_log`); `id` makes replays idempotent.
    QueueLog {
        id: String,
        at: String,
        queue: String,
        call_id: Option<String>,
        agent: Option<String>,
        event: String,
        position: Option<i64>,
        wait_ms: Option<i64>,
        talk_ms: Option<i64>,
        reason: Option<String>,
    },
    /// A post-call satisfaction survey (`call_surveys`, one per call): the first score
    /// stays; a later op of the same call only adds the recorded message if none is set yet,
    /// so a score is saved before the message is recorded and replays change nothing.
    Survey {
        call_id: String,
        ticket_id: Option<i64>,
        agent: Option<String>,
        queue: Option<String>,
        score: u8,
        recording: Option<String>,
        at: String,
    },
    /// A registrar binding written or refreshed (`registrations`, keyed by AOR and contact):
    /// last write wins, in submission order, so a replay after an outage or a crash leaves
    /// the binding the registrar answered last. `expires_at` is absolute, taken when the
    /// REGISTER was answered, so a late write never extends a binding.
    BindingSaved {
        aor: String,
        contact: String,
        expires_at: String,
        source: String,
        user_agent: String,
        call_id: String,
        cseq: i64,
        /// The REGISTER's Path (RFC 3327) as one header field value, in order
        /// (`sip::path::to_column`); absent: registered directly. Journals written before
        /// the field existed replay as "no path".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// A binding removed (unregistered, replaced or expired); every binding of the AOR when
    /// `contact` is absent. Deleting what is already gone is a no-op, so replays are safe.
    BindingRemoved {
        aor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
    },
}

/// Which ticket resolution an outcome choice sets (switchboard owns `resolution`).
pub fn resolution_for(choice: &str) -> Option<&'static str> {
    match choice {
        "wait" => Some("wait"),
        "refund" => Some("refund"),
        "opt_out" => Some("opt_out"),
        _ => None,
    }
}

/// Apply one op inside the writer's transaction.
pub async fn apply(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    op: &StoreOp,
) -> Result<(), sqlx::Error> {
    match op {
        StoreOp::CallStarted {
            id,
            sip_call_id,
            direction,
            from_uri,
            to_uri,
            caller,
            dialplan,
            campaign_id,
            started_at,
            node,
        } => {
            let sql = format!(
                "INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, dialplan, campaign_id, started_at, node) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {}, $10) ON CONFLICT (id) DO NOTHING",
                d.ts(9)
            );
            sqlx::query(&sql)
                .bind(id)
                .bind(sip_call_id)
                .bind(direction)
                .bind(from_uri)
                .bind(to_uri)
                .bind(caller.clone())
                .bind(dialplan.clone())
                .bind(*campaign_id)
                .bind(started_at)
                .bind(node.clone())
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallAnswered { id, at } => {
            let sql = format!(
                "UPDATE call_records SET answered_at = {} WHERE id = $2 AND answered_at IS NULL",
                d.ts(1)
            );
            sqlx::query(&sql)
                .bind(at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallTicket { id, ticket_id } => {
            sqlx::query("UPDATE call_records SET ticket_id = $1 WHERE id = $2")
                .bind(*ticket_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::Survey {
            call_id,
            ticket_id,
            agent,
            queue,
            score,
            recording,
            at,
        } => {
            let sql = format!(
                "INSERT INTO call_surveys (call_id, ticket_id, agent, queue, score, recording, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, {}) ON CONFLICT (call_id) DO UPDATE \
                 SET recording = COALESCE(call_surveys.recording, excluded.recording)",
                d.ts(7)
            );
            sqlx::query(&sql)
                .bind(call_id)
                .bind(*ticket_id)
                .bind(agent.clone())
                .bind(queue.clone())
                .bind(i64::from(*score))
                .bind(recording.clone())
                .bind(at)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallTrunk { id, trunk } => {
            sqlx::query("UPDATE call_records SET trunk = $1 WHERE id = $2")
                .bind(trunk)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallEvent {
            call_id,
            seq,
            at,
            kind,
            detail,
        } => {
            let sql = format!(
                "INSERT INTO call_events (call_id, seq, at, kind, detail) VALUES ($1, $2, {}, $4, $5) \
                 ON CONFLICT (call_id, seq) DO NOTHING",
                d.ts(3)
            );
            sqlx::query(&sql)
                .bind(call_id)
                .bind(*seq)
                .bind(at)
                .bind(kind)
                .bind(detail)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::Outcome {
            call_id,
            ticket_id,
            choice,
            at,
        } => {
            let sql = format!(
                "INSERT INTO call_outcomes (call_id, ticket_id, choice, at) VALUES ($1, $2, $3, {}) \
                 ON CONFLICT (call_id) DO NOTHING",
                d.ts(4)
            );
            let inserted = sqlx::query(&sql)
                .bind(call_id)
                .bind(*ticket_id)
                .bind(choice)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            // Only the first application of an outcome moves the ticket, so replays are no-ops.
            if inserted.rows_affected() == 1 {
                if let (Some(ticket), Some(resolution)) = (ticket_id, resolution_for(choice)) {
                    // The optimistic check: `resolved_at` is the version of `resolution`.
                    // The decision made last wins, whichever write reaches the database
                    // last: an outcome replayed after an outage never overwrites a resolution
                    // another writer (or a later call) decided after the caller chose. The
                    // row is re-read under its lock by the UPDATE itself (PostgreSQL
                    // re-evaluates the WHERE on the newest row version; SQLite has one
                    // writer), so no read-then-write gap exists. `updated_at` only moves
                    // forward: a late replay must not make the ticket look older.
                    let sql = format!(
                        "UPDATE tickets SET resolution = $1, resolved_at = {at2}, \
                         updated_at = CASE WHEN updated_at < {at3} THEN {at3} ELSE updated_at END \
                         WHERE id = $4 AND (resolved_at IS NULL OR resolved_at <= {at2})",
                        at2 = d.ts(2),
                        at3 = d.ts(3)
                    );
                    let moved = sqlx::query(&sql)
                        .bind(resolution)
                        .bind(at)
                        .bind(at)
                        .bind(*ticket)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if !moved {
                        warn!(
                            ticket = *ticket,
                            call_id = %call_id,
                            choice = %choice,
                            at = %at,
                            "outcome older than the ticket's resolution (decided by another \
                             writer meanwhile): the ticket keeps the newer one"
                        );
                    }
                    if moved && resolution == "refund" {
                        let sql = format!(
                            "INSERT INTO refund_requests (ticket_id, call_id, requested_at) VALUES ($1, $2, {}) \
                             ON CONFLICT (call_id) DO NOTHING",
                            d.ts(3)
                        );
                        sqlx::query(&sql)
                            .bind(*ticket)
                            .bind(call_id)
                            .bind(at)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
        }
        StoreOp::CallEnded {
            id,
            ended_at,
            disposition,
            hangup_cause,
            sip_status,
            queue,
            agent,
            wait_ms,
        } => {
            let sql = format!(
                "UPDATE call_records SET ended_at = {}, disposition = $2, hangup_cause = $3, sip_status = $4, \
                 queue = COALESCE($5, queue), agent = COALESCE($6, agent), wait_ms = COALESCE($7, wait_ms) \
                 WHERE id = $8 AND ended_at IS NULL",
                d.ts(1)
            );
            sqlx::query(&sql)
                .bind(ended_at)
                .bind(disposition)
                .bind(hangup_cause)
                .bind(*sip_status)
                .bind(queue.clone())
                .bind(agent.clone())
                .bind(*wait_ms)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallRecording { id, path } => {
            sqlx::query("UPDATE call_records SET recording_path = $1 WHERE id = $2")
                .bind(path)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::CallRecordingDropped { id, path, previous } => {
            sqlx::query(
                "UPDATE call_records SET recording_path = $1 WHERE id = $2 AND recording_path = $3",
            )
            .bind(previous)
            .bind(id)
            .bind(path)
            .execute(&mut **tx)
            .await?;
        }
        StoreOp::AgentState {
            agent,
            logged_out,
            paused_reason,
            at,
        } => {
            let sql = format!(
                "INSERT INTO agent_state (agent, logged_out, paused_reason, updated_at) VALUES ($1, $2, $3, {}) \
                 ON CONFLICT (agent) DO UPDATE SET logged_out = excluded.logged_out, \
                 paused_reason = excluded.paused_reason, updated_at = excluded.updated_at",
                d.ts(4)
            );
            sqlx::query(&sql)
                .bind(agent)
                .bind(i64::from(*logged_out))
                .bind(paused_reason.clone())
                .bind(at)
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::BindingSaved {
            aor,
            contact,
            expires_at,
            source,
            user_agent,
            call_id,
            cseq,
            path,
        } => {
            let sql = format!(
                "INSERT INTO registrations (aor, contact, expires_at, source, user_agent, call_id, cseq, path) \
                 VALUES ($1, $2, {}, $4, $5, $6, $7, $8) ON CONFLICT (aor, contact) DO UPDATE SET \
                 expires_at = excluded.expires_at, source = excluded.source, user_agent = excluded.user_agent, \
                 call_id = excluded.call_id, cseq = excluded.cseq, path = excluded.path",
                d.ts(3)
            );
            sqlx::query(&sql)
                .bind(aor)
                .bind(contact)
                .bind(expires_at)
                .bind(source)
                .bind(user_agent)
                .bind(call_id)
                .bind(*cseq)
                .bind(path.clone())
                .execute(&mut **tx)
                .await?;
        }
        StoreOp::BindingRemoved { aor, contact } => {
            match contact {
                Some(c) => {
                    sqlx::query("DELETE FROM registrations WHERE aor = $1 AND contact = $2")
                        .bind(aor)
                        .bind(c)
                        .execute(&mut **tx)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM registrations WHERE aor = $1")
                        .bind(aor)
                        .execute(&mut **tx)
                        .await?
                }
            };
        }
        StoreOp::QueueLog {
            id,
            at,
            queue,
            call_id,
            agent,
            event,
            position,
            wait_ms,
            talk_ms,
            reason,
        } => {
            let sql = format!(
                "INSERT INTO queue_log (id, at, queue, call_id, agent, event, position, wait_ms, talk_ms, reason) \
                 VALUES ($1, {}, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
                d.ts(2)
            );
            sqlx::query(&sql)
                .bind(id)
                .bind(at)
                .bind(queue)
                .bind(call_id.clone())
                .bind(agent.clone())
                .bind(event)
                .bind(*position)
                .bind(*wait_ms)
                .bind(*talk_ms)
                .bind(reason.clone())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_as_json_lines() {
        let op = StoreOp::CallEvent {
            call_id: "c".into(),
            seq: 3,
            at: "t".into(),
            kind: "dtmf".into(),
            detail: "2".into(),
        };
        let line = serde_json::to_string(&op).expect("json");
        assert!(line.starts_with("{\"op\":\"call_event\""));
        assert_eq!(serde_json::from_str::<StoreOp>(&line).expect("back"), op);
    }
}
