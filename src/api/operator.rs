//! Operators' web login for `/console` and `/wallboard`: `POST /api/operator/login`,
//! `POST /api/operator/logout`, `GET /api/operator/me`, and [`who`], which the API's guards
//! ask for a request that carries no bearer token.
//!
//! Sessions are the agent page's ([`super::session::Sessions`], its own table and the
//! `sb_operator` cookie), so the same rules hold: 256-bit random id, `HttpOnly`,
//! `SameSite=Strict`, sliding expiry, one session per operator (a second login takes over),
//! and the same per-source wrong-password guard. The role is read on every request (from
//! the config's `[[operator]]` list, which wins for its names, else the `operators` table),
//! so a changed role or a disabled operator counts at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::session::{cookie, set_cookie, OPERATOR_COOKIE};
use super::{ApiError, ApiState};
use crate::store::operators::{self, Role};

/// An operator whose session cookie is live, with its current role.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub session: String,
}

/// The operator behind the request's `sb_operator` cookie: None when there is no cookie,
/// the session is unknown or expired, or the operator was removed or disabled since.
pub async fn who(st: &ApiState, headers: &HeaderMap) -> Option<Operator> {
    let id = cookie(headers, OPERATOR_COOKIE)?;
    let info = st
        .operator_sessions
        .lock()
        .ok()?
        .check(Instant::now(), &id)?;
    match find(st, &info.agent).await {
        Ok(Some(op)) if op.enabled => Some(Operator {
            name: op.name,
            role: op.role,
            session: id,
        }),
        Ok(_) => {
            if let Ok(mut s) = st.operator_sessions.lock() {
                s.revoke(&id);
            }
            None
        }
        Err(e) => {
            warn!("operator lookup: {e}");
            None
        }
    }
}

/// Operator `name`: the config file's `[[operator]]` of that name if there is one (it takes
/// precedence, docs/configuration.md#operator), else the `operators` table's row.
pub async fn find(
    st: &ApiState,
    name: &str,
) -> Result<Option<operators::OperatorRow>, crate::store::StoreError> {
    if let Some(o) = st.ctx.config.operators.iter().find(|o| o.name == name) {
        return Ok(Some(operators::OperatorRow {
            id: 0,
            name: o.name.clone(),
            role: o.role,
            password_hash: o.password_hash.clone(),
            enabled: true,
        }));
    }
    operators::find(&st.ctx.db, name).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    name: String,
    password: String,
}

/// `POST /api/operator/login {"name", "password"}`: 200 `{name, role, expires_in_s}` with
/// the `sb_operator` cookie; 401 for a wrong name or password (one answer for both); 429
/// while the source is banned.
pub async fn login(
    State(st): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody = super::agent::json_body(&headers, &body)?;
    let ip = peer.ip();
    let banned = st
        .login_guard
        .lock()
        .map(|g| g.banned(Instant::now(), ip))
        .unwrap_or(true);
    if banned {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later".into(),
        ));
    }
    let row = if operators::valid_name(&b.name) {
        find(&st, &b.name)
            .await
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")))?
    } else {
        None
    };
    // argon2 is deliberately slow (tens of ms): off the async workers.
    let hash = row
        .as_ref()
        .map(|r| r.password_hash.clone())
        .unwrap_or_else(|| operators::dummy_hash().to_string());
    let password = b.password.clone();
    let matches = tokio::task::spawn_blocking(move || operators::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let ok = matches && row.as_ref().is_some_and(|r| r.enabled);
    let (Some(op), true) = (row, ok) else {
        return Err(super::session::login_refused(
            &st.login_guard,
            ip,
            &b.name,
            "operator login failed",
            "wrong operator name or password",
        ));
    };
    let (new, ttl) =
        super::session::login_accepted(&st.login_guard, &st.operator_sessions, ip, &op.name)?;
    info!(operator = %op.name, role = op.role.as_str(), source = %ip,
        took_over = new.took_over, "operator login");
    let mut resp = Json(json!({
        "name": op.name,
        "role": op.role,
        "took_over": new.took_over,
        "expires_in_s": ttl.as_secs(),
    }))
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(OPERATOR_COOKIE, &new.id, ttl.as_secs(), st.https),
    );
    Ok(resp)
}

fn not_logged_in() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "not logged in, or the session expired or was taken over".into(),
    )
}

/// `POST /api/operator/logout`: the session ends and the cookie is cleared.
pub async fn logout(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let op = who(&st, &headers).await.ok_or_else(not_logged_in)?;
    if let Ok(mut s) = st.operator_sessions.lock() {
        s.revoke(&op.session);
    }
    info!(operator = %op.name, "operator logout");
    let mut resp = Json(json!({ "name": op.name, "logged_out": true })).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(OPERATOR_COOKIE, "", 0, st.https),
    );
    Ok(resp)
}

/// `GET /api/operator/me`: `{name, role}` of the session's operator.
pub async fn me(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let op = who(&st, &headers).await.ok_or_else(not_logged_in)?;
    Ok(Json(json!({ "name": op.name, "role": op.role })))
}
