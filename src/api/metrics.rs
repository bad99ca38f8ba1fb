//! `GET /metrics`: the Prometheus text format (0.0.4). The process's counters come from
//! [`crate::metrics`]; the gauges of queues, agents and campaigns are computed here, at
//! scrape time, from the ACD's live state and one grouped query on `campaign_contacts`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use super::ApiState;
use crate::acd::AgentState;

/// Every agent state, so a state nobody is in reads 0 rather than vanishing.
const AGENT_STATES: [AgentState; 6] = [
    AgentState::LoggedOut,
    AgentState::Available,
    AgentState::Offered,
    AgentState::OnCall,
    AgentState::WrapUp,
    AgentState::Paused,
];

/// Contact states of `campaign_contacts.state` (docs/schema.md).
const CONTACT_STATES: [&str; 8] = [
    "pending",
    "dialing",
    "answered",
    "completed",
    "retry",
    "failed",
    "dnc",
    "opted_out",
];

pub async fn scrape(State(st): State<Arc<ApiState>>) -> Response {
    let m = crate::metrics::global();
    for q in st.ctx.acd.queues().await {
        m.set_gauge(
            "switchboard_queue_waiting",
            &[("queue", &q.name)],
            q.waiting as f64,
        );
        m.set_gauge(
            "switchboard_queue_longest_wait_seconds",
            &[("queue", &q.name)],
            q.longest_wait_s as f64,
        );
    }
    let agents = st.ctx.acd.agents().await;
    for s in AGENT_STATES {
        let n = agents.iter().filter(|a| a.state == s).count();
        m.set_gauge("switchboard_agents", &[("state", s.as_str())], n as f64);
    }
    // Campaigns: one grouped query; a database that does not answer leaves the last values
    // (the scrape still answers with everything else).
    let rows = sqlx::query(
        "SELECT campaign_id, state, COUNT(*) AS n FROM campaign_contacts GROUP BY campaign_id, state",
    )
    .fetch_all(&st.ctx.db.pool)
    .await;
    match rows {
        Ok(rows) => {
            let mut by_campaign: std::collections::BTreeMap<i64, [i64; 8]> = Default::default();
            for r in rows {
                let (Ok(id), Ok(state), Ok(n)) = (
                    r.try_get::<i64, _>("campaign_id"),
                    r.try_get::<String, _>("state"),
                    r.try_get::<i64, _>("n"),
                ) else {
                    continue;
                };
                if let Some(i) = CONTACT_STATES.iter().position(|s| *s == state) {
                    by_campaign.entry(id).or_default()[i] += n;
                }
            }
            for (id, counts) in by_campaign {
                let id = id.to_string();
                for (state, n) in CONTACT_STATES.iter().zip(counts) {
                    m.set_gauge(
                        "switchboard_campaign_contacts",
                        &[("campaign", &id), ("state", state)],
                        n as f64,
                    );
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "metrics: campaign contacts not read"),
    }
    let spooled = st
        .ctx
        .store
        .stats
        .spooled
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(spooled),
    )
        .into_response()
}
