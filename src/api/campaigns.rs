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
    /// The contacts as ticket CSV (the `tickets import` columns); new order ids become
    /// tickets, existing ones are used as stored. Checked row by row before anything is
    /// written; see [`create`] for `dry_run` and `csv_skip_bad_rows`.
    pub csv: Option<String>,
    /// Create the campaign from the good rows even though some rows are bad (default false:
    /// any bad row refuses the whole upload with 422 and the list of bad rows).
    #[serde(default)]
    pub csv_skip_bad_rows: bool,
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
    let sources = [
        spec.tickets.is_some(),
        spec.ticket_ids.is_some(),
        spec.csv.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            return Err(bad(
                "tickets: a filter (e.g. {\"status\": \"delayed\"}), ticket_ids or csv is required",
            ))
        }
        1 => {}
        _ if spec.csv.is_none() => {
            return Err(bad("tickets, ticket_ids: give one of them, not both"))
        }
        _ => return Err(bad("tickets, ticket_ids, csv: give one of them")),
    }
    if spec.ticket_ids.as_ref().is_some_and(|ids| ids.is_empty()) {
        return Err(bad("ticket_ids: must not be empty"));
    }
    if spec.csv_skip_bad_rows && spec.csv.is_none() {
        return Err(bad("csv_skip_bad_rows: only with csv"));
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

/// Largest `POST /api/campaigns` body (a campaign with its CSV); larger → 413.
pub const MAX_CREATE_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Check and preview only; nothing is written (needs `csv`).
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/campaigns[?dry_run=true]`. From a ticket filter or ids as before; from `csv`:
/// every row is checked first, and
/// - `dry_run=true` answers 200 with the preview (contacts, per segment, new and existing
///   tickets) and the bad rows by line, writing nothing;
/// - otherwise any bad row refuses the upload (422, the same list) unless
///   `csv_skip_bad_rows`; then tickets, campaign and contacts are written in one transaction.
pub async fn create(
    State(st): State<Arc<ApiState>>,
    q: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    // The rejection's own status: 413 for a body over the limit, 415 for a wrong type.
    let Json(mut raw) = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                status,
                format!("body: larger than {MAX_CREATE_BODY} bytes (split the CSV)"),
            )
        } else {
            ApiError(
                if status.is_client_error() {
                    status
                } else {
                    StatusCode::BAD_REQUEST
                },
                format!("body: {}", e.body_text()),
            )
        }
    })?;
    let spec: CampaignSpec = serde_json::from_value(raw.clone()).map_err(|e| bad(e.to_string()))?;
    validate(&spec, &st)?;
    if let Some(text) = &spec.csv {
        // The CSV is not kept in the campaign's stored spec: its rows are the contacts.
        if let Some(o) = raw.as_object_mut() {
            o.remove("csv");
        }
        return create_from_csv(&st, &spec, &raw, text, q.dry_run).await;
    }
    if q.dry_run {
        return Err(bad("dry_run: only for a campaign from csv"));
    }
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

fn priorities(spec: &CampaignSpec) -> Vec<(String, i64)> {
    spec.segments
        .iter()
        .flatten()
        .map(|(seg, r)| (seg.clone(), r.priority.unwrap_or(100)))
        .collect()
}

fn name_taken(e: &impl std::fmt::Display) -> bool {
    e.to_string().to_ascii_lowercase().contains("unique")
}

async fn create_from_csv(
    st: &ApiState,
    spec: &CampaignSpec,
    raw: &Value,
    text: &str,
    dry_run: bool,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cc = st.ctx.config.default_country_code.clone();
    let input = text.as_bytes().to_vec();
    let checked =
        tokio::task::spawn_blocking(move || crate::store::csv::check_tickets(&input, &cc))
            .await
            .map_err(internal)?
            .map_err(|e| bad(format!("csv: {e}")))?;
    let errors: Vec<Value> = checked
        .errors
        .iter()
        .map(|(line, e)| json!({"line": line, "error": e}))
        .collect();
    if dry_run {
        let p = campaigns::preview_rows(&st.ctx.db, &checked.rows)
            .await
            .map_err(internal)?;
        let taken = campaigns::list(&st.ctx.db)
            .await
            .map_err(internal)?
            .iter()
            .any(|c| c.name == spec.name);
        return Ok((
            StatusCode::OK,
            Json(json!({
                "dry_run": true, "name": spec.name, "name_taken": taken,
                "rows": checked.rows.len() + checked.errors.len(),
                "contacts": p.contacts, "segments": p.segments,
                "new_tickets": p.new_tickets, "existing_tickets": p.existing_tickets,
                "errors": errors,
            })),
        ));
    }
    if checked.rows.is_empty() || (!checked.errors.is_empty() && !spec.csv_skip_bad_rows) {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": format!(
                    "csv: {} bad rows, nothing imported (fix them, or confirm with csv_skip_bad_rows)",
                    checked.errors.len()
                ),
                "errors": errors,
            })),
        ));
    }
    let result = campaigns::create_from_rows(
        &st.ctx.db,
        &spec.name,
        &spec.dialplan,
        &spec.trunk,
        &spec.caller_id,
        raw,
        &checked.rows,
        &priorities(spec),
        100,
    )
    .await;
    match result {
        Ok((id, p)) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "id": id, "name": spec.name, "state": "created", "contacts": p.contacts,
                "segments": p.segments, "new_tickets": p.new_tickets,
                "existing_tickets": p.existing_tickets, "skipped_rows": errors,
            })),
        )),
        Err(e) if name_taken(&e) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("name: a campaign named '{}' exists", spec.name),
        )),
        Err(e) => Err(internal(e)),
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
    pub segment: Option<String>,
    pub outcome: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `json` (default) or `csv` (also `Accept: text/csv`): the results download.
    pub format: Option<String>,
}

/// The most rows one CSV download holds (without `limit`: every contact up to this).
const MAX_CSV_CONTACTS: i64 = 1_000_000;

/// `GET /api/campaigns/{id}/contacts?state=&segment=&outcome=&limit=&offset=&format=`: a page
/// of contacts (JSON array, the total matching in `X-Total-Count`) or, as CSV, the results.
pub async fn contacts(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    q: Result<Query<ContactsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let id = parse_id(&id)?;
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let csv = super::reports::wants_csv(q.format.as_deref(), &headers)?;
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
    let filter = campaigns::ContactFilter {
        state: q.state,
        segment: q.segment,
        outcome: q.outcome,
    };
    let limit = match (q.limit, csv) {
        (Some(l), true) => l.clamp(1, MAX_CSV_CONTACTS),
        (None, true) => MAX_CSV_CONTACTS,
        (l, false) => l.unwrap_or(100).clamp(1, 10_000),
    };
    let offset = q.offset.unwrap_or(0).max(0);
    let total = campaigns::count_contacts(&st.ctx.db, id, &filter)
        .await
        .map_err(internal)?;
    let rows = campaigns::contacts(&st.ctx.db, id, &filter, limit, offset)
        .await
        .map_err(internal)?;
    let total_header = [("x-total-count", total.to_string())];
    if !csv {
        return Ok((total_header, Json(json!(rows))).into_response());
    }
    let body = contacts_csv(&rows).map_err(internal)?;
    Ok((
        total_header,
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"campaign-{id}-contacts.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The results download: one line per contact, text cells neutralised against formulas.
fn contacts_csv(rows: &[campaigns::ContactListRow]) -> Result<Vec<u8>, csv::Error> {
    use crate::store::csv::neutralise_cell;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "contact_id",
        "order_id",
        "customer_name",
        "phone",
        "segment",
        "state",
        "attempts",
        "outcome",
        "last_disposition",
        "sms",
        "next_attempt_at",
        "last_call_id",
    ])?;
    for r in rows {
        let c = &r.contact;
        let o = |v: &Option<String>| neutralise_cell(v.as_deref().unwrap_or("")).into_owned();
        w.write_record([
            c.id.to_string(),
            o(&r.order_id),
            o(&r.customer_name),
            neutralise_cell(&c.phone).into_owned(),
            o(&r.segment),
            c.state.clone(),
            c.attempts.to_string(),
            o(&c.outcome),
            o(&c.last_disposition),
            o(&c.sms),
            o(&c.next_attempt_at),
            o(&c.last_call_id),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
