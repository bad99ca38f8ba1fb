//! Ops API for outbound campaigns (`/api/campaigns...`): create (validated, unknown fields
//! named in a 400), read with live progress, lifecycle actions, contact listing.
//! The JSON contract is documented in docs/api.md and docs/openapi.yaml.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiState};
use crate::dialer::service::Fallback;
use crate::store::campaigns::{self, TicketFilter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsFilterSpec {
    pub status: Option<String>,
    pub min_delay_days: Option<i64>,
    pub segment: Option<String>,
    /// Include tickets that already have a resolution (default false).
    #[serde(default)]
    pub include_resolved: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    /// Lower dials first (default 100).
    pub priority: Option<i64>,
    /// The dialplan this segment's customers get (e.g. VIPs straight to an agent).
    pub dialplan: Option<String>,
    /// The language this segment's customers hear (overrides the ticket's).
    pub language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// `POST /api/campaigns` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    pub dialplan: String,
    pub trunk: String,
    pub caller_id: String,
    pub tickets: Option<TicketsFilterSpec>,
    pub ticket_ids: Option<Vec<i64>>,
    pub max_channels: Option<u32>,
    pub max_cps: Option<f64>,
    pub ring_timeout_s: Option<u64>,
    pub window: Option<WindowSpec>,
    pub retry: Option<Value>,
    pub schedule: Option<ScheduleSpec>,
    pub segments: Option<BTreeMap<String, SegmentRule>>,
    /// "hangup" (retry later, default) or "voicemail" (leave the short message).
    pub machine: Option<String>,
    /// Called with the ticket and outcome after the last failed attempt.
    pub webhook_url: Option<String>,
    /// After the last failed attempt: "webhook" (default), "sms" or "both".
    pub fallback: Option<String>,
    /// The SMS text template for this campaign (default `[sms] text`).
    pub sms_text: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn valid_hhmm(s: &str) -> bool {
    chrono::NaiveTime::parse_from_str(s, "%H:%M").is_ok()
}

/// Field checks beyond JSON shape; every error names the field.
pub fn validate(spec: &CampaignSpec, st: &ApiState) -> Result<(), ApiError> {
    let cfg = &st.ctx.config;
    if spec.name.trim().is_empty() || spec.name.len() > 100 {
        return Err(bad("name: must be 1-100 characters"));
    }
    if st.ctx.dialplans().get(&spec.dialplan).is_none() {
        return Err(bad(format!("dialplan: '{}' is not loaded", spec.dialplan)));
    }
    for (seg, rule) in spec.segments.iter().flatten() {
        if let Some(d) = &rule.dialplan {
            if st.ctx.dialplans().get(d).is_none() {
                return Err(bad(format!("segments.{seg}.dialplan: '{d}' is not loaded")));
            }
        }
        if let Some(l) = &rule.language {
            let ok = !l.is_empty()
                && l.len() <= 8
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(bad(format!(
                    "segments.{seg}.language: '{l}' is not a language tag"
                )));
            }
        }
    }
    let Some(trunk) = cfg.trunk(&spec.trunk) else {
        return Err(bad(format!("trunk: '{}' is not configured", spec.trunk)));
    };
    let digits = spec.caller_id.trim_start_matches('+');
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("caller_id: must be a phone number such as +15550100"));
    }
    match (&spec.tickets, &spec.ticket_ids) {
        (Some(_), Some(_)) => return Err(bad("tickets, ticket_ids: give one of them, not both")),
        (None, None) => {
            return Err(bad(
                "tickets: a filter (e.g. {\"status\": \"delayed\"}) or ticket_ids is required",
            ))
        }
        (None, Some(ids)) if ids.is_empty() => return Err(bad("ticket_ids: must not be empty")),
        _ => {}
    }
    if let Some(n) = spec.max_channels {
        if n == 0 || n > trunk.max_channels {
            return Err(bad(format!(
                "max_channels: must be 1..={} (the trunk's max_channels)",
                trunk.max_channels
            )));
        }
    }
    if let Some(c) = spec.max_cps {
        if !(c > 0.0 && c <= trunk.max_cps) {
            return Err(bad(format!(
                "max_cps: must be > 0 and <= {} (the trunk's max_cps)",
                trunk.max_cps
            )));
        }
    }
    if let Some(r) = spec.ring_timeout_s {
        if !(15..=120).contains(&r) {
            return Err(bad("ring_timeout_s: must be 15..=120"));
        }
    }
    if let Some(w) = &spec.window {
        if !valid_hhmm(&w.start) || !valid_hhmm(&w.end) {
            return Err(bad("window: start and end must be HH:MM"));
        }
        crate::dialer::core::CallingWindow::parse(&w.start, &w.end)
            .map_err(|e| bad(format!("window: {e}")))?;
    }
    if let Some(r) = &spec.retry {
        crate::dialer::retry_policy_from_json(r).map_err(|e| bad(format!("retry: {e}")))?;
    }
    if let Some(s) = &spec.schedule {
        for (k, v) in [("schedule.start", &s.start), ("schedule.end", &s.end)] {
            if let Some(v) = v {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map_err(|_| bad(format!("{k}: must be an RFC 3339 timestamp")))?;
            }
        }
    }
    if let Some(m) = spec.machine.as_deref() {
        if m != "hangup" && m != "voicemail" {
            return Err(bad("machine: must be 'hangup' or 'voicemail'"));
        }
    }
    if let Some(u) = spec.webhook_url.as_deref() {
        if crate::http_client::Url::parse(u).is_err() {
            return Err(bad("webhook_url: must be an https:// or http:// URL"));
        }
    }
    let fallback = match spec.fallback.as_deref() {
        None => Fallback::Webhook,
        Some(f) => {
            Fallback::parse(f).ok_or_else(|| bad("fallback: must be 'webhook', 'sms' or 'both'"))?
        }
    };
    if spec.fallback.is_some() && fallback != Fallback::Sms && spec.webhook_url.is_none() {
        return Err(bad(format!(
            "fallback: '{}' needs webhook_url",
            spec.fallback.as_deref().unwrap_or_default()
        )));
    }
    if fallback != Fallback::Webhook && cfg.sms.is_none() {
        return Err(bad(format!(
            "fallback: '{}' needs an [sms] gateway in the server's config",
            spec.fallback.as_deref().unwrap_or_default()
        )));
    }
    if let Some(t) = spec.sms_text.as_deref() {
        if t.trim().is_empty() || t.len() > 1000 || !crate::ivr::expr::template_is_valid(t) {
            return Err(bad(
                "sms_text: must be a template of 1-1000 characters (${name}, ${order_id}, ${new_date} ...)",
            ));
        }
        if fallback == Fallback::Webhook {
            return Err(bad("sms_text: needs fallback 'sms' or 'both'"));
        }
    }
    Ok(())
}

pub async fn create(
    State(st): State<Arc<ApiState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(raw) = body.map_err(|e| bad(format!("body: {}", e.body_text())))?;
    let spec: CampaignSpec = serde_json::from_value(raw.clone()).map_err(|e| bad(e.to_string()))?;
    validate(&spec, &st)?;
    let filter = match (&spec.tickets, &spec.ticket_ids) {
        (Some(t), _) => TicketFilter {
            status: t.status.clone(),
            min_delay_days: t.min_delay_days,
            segment: t.segment.clone(),
            ticket_ids: None,
            unresolved_only: !t.include_resolved,
        },
        (None, ids) => TicketFilter {
            ticket_ids: ids.clone(),
            unresolved_only: false,
            ..Default::default()
        },
    };
    let priorities: Vec<(String, i64)> = spec
        .segments
        .iter()
        .flatten()
        .map(|(seg, r)| (seg.clone(), r.priority.unwrap_or(100)))
        .collect();
    let result = campaigns::create(
        &st.ctx.db,
        &spec.name,
        &spec.dialplan,
        &spec.trunk,
        &spec.caller_id,
        &raw,
        &filter,
        &priorities,
        100,
    )
    .await;
    match result {
        Ok((id, contacts)) => Ok((
            StatusCode::CREATED,
            Json(json!({ "id": id, "name": spec.name, "state": "created", "contacts": contacts })),
        )),
        Err(e) if e.to_string().to_ascii_lowercase().contains("unique") => Err(ApiError(
            StatusCode::CONFLICT,
            format!("name: a campaign named '{}' exists", spec.name),
        )),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn campaign_json(st: &ApiState, id: i64) -> Result<Value, ApiError> {
    let Some(c) = campaigns::get(&st.ctx.db, id).await.map_err(internal)? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("campaign {id} does not exist"),
        ));
    };
    let (states, outcomes) = campaigns::progress(&st.ctx.db, id)
        .await
        .map_err(internal)?;
    let total: i64 = states.iter().map(|(_, n)| n).sum();
    let states: serde_json::Map<String, Value> =
        states.into_iter().map(|(k, v)| (k, json!(v))).collect();
    let outcomes: serde_json::Map<String, Value> =
        outcomes.into_iter().map(|(k, v)| (k, json!(v))).collect();
    let sms: serde_json::Map<String, Value> = campaigns::sms_progress(&st.ctx.db, id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    Ok(json!({
        "id": c.id, "name": c.name, "state": c.state, "dialplan": c.dialplan, "trunk": c.trunk,
        "caller_id": c.caller_id, "created_at": c.created_at, "started_at": c.started_at, "ended_at": c.ended_at,
        "spec": c.spec,
        "progress": { "total": total, "contacts": states, "outcomes": outcomes, "sms": sms },
        "active_calls": st.dialer.active_calls(id),
    }))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| bad(format!("id: '{raw}' is not a campaign id")))
}

pub async fn get(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&st, parse_id(&id)?).await?))
}

pub async fn list(State(st): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let all = campaigns::list(&st.ctx.db).await.map_err(internal)?;
    Ok(Json(json!(all
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "state": c.state}))
        .collect::<Vec<_>>())))
}

pub async fn action(
    State(st): State<Arc<ApiState>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let (from, to): (&[&str], &str) = match action.as_str() {
        "start" => (&["created"], "running"),
        "pause" => (&["running"], "paused"),
        "resume" => (&["paused"], "running"),
        "stop" => (&["created", "running", "paused"], "stopped"),
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action '{other}' (start, pause, resume, stop)"),
            ))
        }
    };
    if campaigns::get(&st.ctx.db, id)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("campaign {id} does not exist"),
        ));
    }
    if !campaigns::set_state(&st.ctx.db, id, from, to)
        .await
        .map_err(internal)?
    {
        let current = campaigns::get(&st.ctx.db, id)
            .await
            .map_err(internal)?
            .map(|c| c.state)
            .unwrap_or_default();
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("cannot {action} a campaign that is {current}"),
        ));
    }
    match to {
        "running" => st.dialer.run(id),
        _ => st.dialer.halt(id),
    }
    Ok(Json(campaign_json(&st, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsQuery {
    pub state: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub async fn contacts(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    q: Result<Query<ContactsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    if campaigns::get(&st.ctx.db, id)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("campaign {id} does not exist"),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = campaigns::contacts(
        &st.ctx.db,
        id,
        q.state.as_deref(),
        limit,
        q.offset.unwrap_or(0).max(0),
    )
    .await
    .map_err(internal)?;
    Ok(Json(json!(rows)))
}
