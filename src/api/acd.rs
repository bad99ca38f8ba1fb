//! ACD endpoints: live agent and queue state (read-only, open like `/api/status` so wall
//! boards can poll them), agent commands (token), and the per-agent event stream (SSE) that
//! carries state changes and the screen pop: the offered caller's ticket and recent calls.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::{ApiError, ApiState};
use crate::acd::AgentCommand;

/// Parse a JSON body ourselves so every refusal is a JSON `{"error": ...}` 400 naming the
/// problem (axum's extractor answers in plain text).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// `GET /api/agents`: every agent account with its live state.
pub async fn agents(State(st): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let live = st.ctx.acd.agents().await;
    let accounts = crate::store::agents::list(&st.ctx.db)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut out: Vec<Value> = Vec::with_capacity(accounts.len());
    for a in accounts {
        let view = live.iter().find(|v| v.name == a.name);
        let mut v = match view {
            Some(v) => serde_json::to_value(v).unwrap_or(Value::Null),
            None => json!({
                "name": a.name,
                "state": "logged_out",
                "reachable": false,
                "paused_reason": null,
                "call": null,
                "queues": a.queues,
                "skills": a.skills,
                "calls_taken": 0,
                "missed_in_a_row": 0,
                "state_for_s": 0,
            }),
        };
        if let Some(o) = v.as_object_mut() {
            o.insert("extension".into(), json!(a.extension));
            o.insert("enabled".into(), json!(a.enabled));
        }
        out.push(v);
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /api/agents/{name}`.
pub async fn agent(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Json(all) = agents(State(st)).await?;
    all.as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == name.as_str()).cloned())
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no agent '{name}'")))
}

/// `GET /api/queues`: waiting callers, agents, service level, ASA, AHT, abandonment.
pub async fn queues(State(st): State<Arc<ApiState>>) -> Json<Value> {
    Json(serde_json::to_value(st.ctx.acd.queues().await).unwrap_or(Value::Null))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    reason: Option<String>,
}

/// `POST /api/agents/{name}/{login|logout|pause|unpause}` (pause takes `{"reason": ...}`).
pub async fn command(
    State(st): State<Arc<ApiState>>,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: CommandBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommandBody::default()
    } else {
        json_body(&body)?
    };
    let cmd = match action.as_str() {
        "login" => AgentCommand::Login,
        "logout" => AgentCommand::Logout,
        "pause" => AgentCommand::Pause(body.reason.unwrap_or_else(|| "break".into())),
        "unpause" => AgentCommand::Unpause,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action '{other}' (login, logout, pause, unpause)"),
            ))
        }
    };
    match st.ctx.acd.command(&name, cmd).await {
        Some(state) => Ok(Json(json!({"name": name, "state": state}))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no agent '{name}' known to the ACD (it appears once its phone registers)"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disposition {
    call_id: String,
    disposition: String,
    note: Option<String>,
}

/// `POST /api/agents/{name}/disposition`: after a call, the agent's disposition and note go
/// onto the call (a `call_events` row of kind `agent_disposition`) for the ticket's history.
pub async fn disposition(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let d: Disposition = json_body(&body)?;
    if d.disposition.trim().is_empty() || d.disposition.len() > 64 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "disposition must be 1..64 characters".into(),
        ));
    }
    let row = sqlx::query("SELECT agent FROM call_records WHERE id = $1")
        .bind(&d.call_id)
        .fetch_optional(&st.ctx.db.pool)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let Some(row) = row else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no call '{}'", d.call_id),
        ));
    };
    let agent: Option<String> = row.try_get("agent").ok().flatten();
    if agent.as_deref() != Some(name.as_str()) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("call '{}' was not handled by agent '{name}'", d.call_id),
        ));
    }
    let detail = match &d.note {
        Some(n) => format!("{}: {}", d.disposition.trim(), n.trim()),
        None => d.disposition.trim().to_string(),
    };
    // Sequence numbers above the call's own events (the call is over; nothing races it).
    st.ctx.store.submit(crate::store::ops::StoreOp::CallEvent {
        call_id: d.call_id.clone(),
        seq: 1_000_000 + (rand::random::<u32>() % 1_000_000) as i64,
        at: crate::store::now_ts(),
        kind: "agent_disposition".into(),
        detail,
    });
    Ok(Json(json!({"call_id": d.call_id, "accepted": true})))
}

/// `GET /api/agents/{name}/events`: Server-Sent Events for one agent (`state`, and `offer`
/// with the screen pop). Token required: it carries customer data.
pub async fn events(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    super::agent::agent_stream(st, name, None, None)
}
