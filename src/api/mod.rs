//! HTTP API (axum): health, status, dialplan reload; campaigns and the ACD in submodules.
//! `/healthz` is anonymous; the read endpoints take the admin or the read-only token (or
//! none, when `[api] anonymous_read` opts in); everything else takes the admin token.
//! Every error is JSON `{"error": "..."}` with a 4xx/5xx.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::call::CallContext;

pub mod acd;
pub mod agent;
pub mod campaigns;
pub mod console;
pub mod https;
pub mod metrics;
pub mod operator;
pub mod reports;
pub mod session;
pub mod sms;
pub mod trunks;
pub mod wallboard;

pub struct ApiState {
    pub ctx: Arc<CallContext>,
    pub ready: AtomicBool,
    pub dialer: crate::dialer::DialerHandle,
    /// Admin bearer token: every `/api/*` endpoint.
    pub token: String,
    /// Read-only bearer token: the read endpoints only (`[api] read_token`).
    pub read_token: Option<String>,
    /// Read endpoints answer without a token (`[api] anonymous_read`, off by default).
    pub anonymous_read: bool,
    /// `GET /metrics` without a token (`[metrics] public`).
    pub metrics_public: bool,
    /// The wallboard streams' shared snapshot builder.
    pub wallboard: wallboard::Hub,
    /// The HTTP port serves HTTPS (`[http] tls_cert`): session cookies are `Secure`.
    pub https: bool,
    /// Browser agents' sessions (`/api/agent/*`); never held across an await.
    pub sessions: std::sync::Mutex<session::Sessions>,
    /// Operators' sessions (`/console`, `/wallboard`); never held across an await.
    pub operator_sessions: std::sync::Mutex<session::Sessions>,
    /// Wrong web-login passwords per source (agents and operators), with bans.
    pub login_guard: std::sync::Mutex<session::LoginGuard>,
}

/// The bearer token of a request, "" when there is none.
fn bearer(req: &axum::extract::Request) -> &str {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Constant-time comparison (the time taken says nothing about how much of a guess matched).
fn token_matches(given: &str, expected: &str) -> bool {
    let expected = expected.as_bytes();
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> Response {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token".into(),
    )
    .into_response()
}

/// The admin token or the read token: who may read without `anonymous_read` / `public`.
fn reader_token(s: &ApiState, given: &str) -> bool {
    token_matches(given, &s.token)
        || s.read_token
            .as_deref()
            .is_some_and(|t| token_matches(given, t))
}

/// The read endpoints (status, agents, queues, wallboard, reports): the admin token, the
/// read token, an operator's session of any role, or nothing at all when anonymous reads
/// were opted into.
async fn require_read_token(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !(s.anonymous_read || reader_token(&s, bearer(&req))) {
        let by_session =
            bearer(&req).is_empty() && operator::who(&s, req.headers()).await.is_some();
        if !by_session {
            return unauthorized();
        }
    }
    next.run(req).await
}

/// Whether a cookie-authorised request may change something: only JSON bodies, which a
/// form on another site cannot send (the cookie is `SameSite=Strict` as well).
fn json_request(req: &axum::extract::Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// `GET /metrics`: as the read endpoints, but opened to anonymous scrapers only by
/// `[metrics] public` (a Prometheus server on the same network usually has no token).
async fn require_metrics_token(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !(s.metrics_public || reader_token(&s, bearer(&req))) {
        return unauthorized();
    }
    next.run(req).await
}

/// Every ops endpoint: `Authorization: Bearer <admin token>` (constant-time comparison),
/// or, without a bearer token, an operator's session: an `admin` may do everything (changes
/// as JSON only), a `viewer` may read (GET) and gets 403 with the reason for any change.
async fn require_token(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = bearer(&req);
    if token_matches(given, &s.token) {
        return next.run(req).await;
    }
    if !given.is_empty() {
        return unauthorized();
    }
    let Some(op) = operator::who(&s, req.headers()).await else {
        return unauthorized();
    };
    let reading = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    match op.role {
        crate::store::operators::Role::Admin if reading || json_request(&req) => {
            next.run(req).await
        }
        crate::store::operators::Role::Admin => ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        )
        .into_response(),
        crate::store::operators::Role::Viewer if reading => next.run(req).await,
        crate::store::operators::Role::Viewer => {
            tracing::warn!(target: "security", operator = %op.name, method = %req.method(),
                path = %req.uri().path(), "viewer refused a change");
            ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "operator '{}' has the viewer role: {} {} needs the admin role",
                    op.name,
                    req.method(),
                    req.uri().path()
                ),
            )
            .into_response()
        }
    }
}

/// Longest `X-Request-Id` taken from a client (a proxy's id); longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// Every HTTP request runs in an `http` span with its request id, method and path, so each
/// log line it causes (text or JSON) carries the id; the id is the client's `X-Request-Id`
/// when it sent a sane one (a proxy's), else a new UUID, and is echoed in the response.
pub async fn request_span(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "http request"
        )
    });
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// A JSON error answer.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    use axum::routing::post;
    let ops = Router::new()
        .route(
            "/api/campaigns",
            post(campaigns::create).get(campaigns::list).layer(
                axum::extract::DefaultBodyLimit::max(campaigns::MAX_CREATE_BODY),
            ),
        )
        .route("/api/campaigns/{id}", get(campaigns::get))
        .route("/api/campaigns/{id}/contacts", get(campaigns::contacts))
        .route("/api/campaigns/{id}/{action}", post(campaigns::action))
        .route("/api/trunks", get(trunks::list))
        .route("/api/agents/{name}/events", get(acd::events))
        .route("/api/agents/{name}/disposition", post(acd::disposition))
        .route("/api/agents/{name}/{action}", post(acd::command))
        .route("/api/dialplans/reload", post(reload_dialplans))
        .route("/api/drain", post(drain))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    let reads = Router::new()
        .route("/api/status", get(status))
        .route("/api/agents", get(acd::agents))
        .route("/api/agents/{name}", get(acd::agent))
        .route("/api/queues", get(acd::queues))
        .route("/api/nodes", get(nodes))
        .route("/api/wallboard", get(wallboard::get))
        .route("/api/wallboard/events", get(wallboard::events))
        .route("/api/reports/queues", get(reports::queues_report))
        .route("/api/reports/calls", get(reports::calls_report))
        .route("/api/reports/agents", get(reports::agents_report))
        .route("/api/reports/campaigns/{id}", get(reports::campaign_report))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_read_token,
        ));
    let metrics = Router::new()
        .route("/metrics", get(metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_metrics_token,
        ));
    // The browser agent's own endpoints: its session cookie, never a bearer token.
    let agent_own = Router::new()
        .route("/api/agent/logout", post(agent::logout))
        .route("/api/agent/me", get(agent::me))
        .route("/api/agent/state", post(agent::set_state))
        .route("/api/agent/events", get(agent::events))
        .route("/api/agent/disposition", post(agent::disposition))
        .route("/api/agent/phone", post(agent::phone))
        .route("/api/agent/answer", post(agent::answer))
        .route("/api/agent/reject", post(agent::reject))
        .route("/api/agent/hangup", post(agent::hangup))
        .route("/api/agent/hold", post(agent::hold))
        .route("/api/agent/dtmf", post(agent::dtmf))
        .route("/api/agent/transfer", post(agent::transfer))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            agent::require_session,
        ));
    Router::new()
        .merge(ops)
        .merge(reads)
        .merge(metrics)
        .merge(agent_own)
        .route("/api/agent/login", post(agent::login))
        // The SMS gateway's webhook: signed with `[sms] inbound_secret`, no bearer token.
        .route("/api/sms/inbound", post(sms::inbound))
        .route("/api/operator/login", post(operator::login))
        .route("/api/operator/logout", post(operator::logout))
        .route("/api/operator/me", get(operator::me))
        .route("/console", get(console::page))
        .route("/agent", get(agent::page))
        // The load balancer's probe: anonymous, and it says nothing sensitive.
        .route("/healthz", get(healthz))
        // The page itself holds no figures: it reads them with the token it is given.
        .route("/wallboard", get(wallboard::page))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint".into(),
            )
        })
        .with_state(state)
}

async fn healthz(State(s): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    if !s.ready.load(Ordering::Acquire) {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "starting".into()));
    }
    if !s.ctx.db.ping().await {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable".into(),
        ));
    }
    Ok(Json(
        json!({ "status": "ok", "sip": s.ctx.sip_local.to_string() }),
    ))
}

async fn status(State(s): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let st = &s.ctx.store.stats;
    Json(json!({
        "sip": s.ctx.sip_local.to_string(),
        "node": s.ctx.config.node_id,
        "draining": s.ctx.draining.load(Ordering::Relaxed),
        "active_calls": s.ctx.active_calls.active(),
        "security_drops": s.ctx.security_drops.load(Ordering::Relaxed),
        "overload_refused": s.ctx.overload_refusals.load(Ordering::Relaxed),
        "call_lag_ms": u64::try_from(s.ctx.call_lag.lag(std::time::Instant::now()).as_millis())
            .unwrap_or(u64::MAX),
        "dialplans": s.ctx.dialplans().plans.keys().collect::<Vec<_>>(),
        "store": {
            "written": st.written.load(Ordering::Relaxed),
            "spooled": st.spooled.load(Ordering::Relaxed),
            "replayed": st.replayed.load(Ordering::Relaxed),
            "dead_letters": st.dead_letters.load(Ordering::Relaxed),
            "mailbox_full": st.mailbox_full.load(Ordering::Relaxed),
        }
    }))
}

/// `POST /api/drain`: put this node in draining (what SIGTERM starts with): OPTIONS and new
/// INVITEs are answered 503, calls in progress finish, the `nodes` row says `draining`.
/// Idempotent; there is no un-drain (restart the node to take calls again).
async fn drain(State(s): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    crate::cluster::drain(&s.ctx).await;
    Json(json!({
        "node": s.ctx.config.node_id,
        "draining": true,
        "active_calls": s.ctx.active_calls.active(),
    }))
}

/// `GET /api/nodes`: every node's row (state, heartbeat and its age by the database's clock).
async fn nodes(State(s): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = crate::store::nodes::list(&s.ctx.db)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "me": s.ctx.config.node_id, "nodes": rows })))
}

/// `POST /api/dialplans/reload`: what SIGHUP does, with the answer in the response — 200
/// with the loaded plan names, or 422 with every `file:line: reason` while the running set
/// stays. The folder is read on a blocking thread (file I/O must not stall the runtime's
/// workers, which also drive the calls' media).
async fn reload_dialplans(State(s): State<Arc<ApiState>>) -> Response {
    let ctx = s.ctx.clone();
    let result =
        tokio::task::spawn_blocking(move || crate::call::dialplans::reload_dialplans(&ctx)).await;
    match result {
        Ok(Ok(names)) => {
            tracing::info!(dialplans = names.len(), "dialplans reloaded (API)");
            Json(json!({ "reloaded": true, "dialplans": names })).into_response()
        }
        Ok(Err(errors)) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::warn!("dialplan reload refused (API); the running dialplans stay");
            let list: Vec<serde_json::Value> = errors
                .iter()
                .map(|e| {
                    json!({
                        "file": e.file,
                        "line": e.line,
                        "reason": e.reason,
                        "message": e.to_string(),
                    })
                })
                .collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": "dialplans have errors; the running dialplans stay",
                    "errors": list,
                    "running": s.ctx.dialplans().plans.keys().collect::<Vec<_>>(),
                })),
            )
                .into_response()
        }
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload task failed: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_shape() {
        use axum::response::IntoResponse;
        let r = super::ApiError(axum::http::StatusCode::BAD_REQUEST, "x".into()).into_response();
        assert_eq!(r.status(), 400);
    }
}
