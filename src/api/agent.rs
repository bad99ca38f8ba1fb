//! The browser agent's own API, authorised by its session cookie (never the admin token):
//! `POST /api/agent/login` and `logout`, `GET /api/agent/me`, `POST /api/agent/state`,
//! `GET /api/agent/events` (SSE: state changes and offered calls with the screen pop) and
//! `POST /api/agent/disposition` (written to `dispositions`, the ticket moved when asked).
//! The browser phone: `POST /api/agent/phone` (take calls in the page), `answer` (the
//! page's WebRTC offer in, the SDP answer out), `reject` and `hangup`; the event stream
//! rings it with `incoming-call` and ends it with `call-ended`.
//! `GET /agent` serves the workspace page compiled into the binary.
//!
//! Sessions and the wrong-password guard are [`super::session`]; a login of an agent that
//! already has a session takes over (the old one is revoked). The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, and `Secure` when the port serves HTTPS; POSTs must be JSON
//! (`Content-Type: application/json`), which a cross-site form cannot send.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;
use tracing::{info, warn};

use super::session::{SessionInfo, COOKIE};
use super::{ApiError, ApiState};
use crate::acd::{AgentCommand, AgentFeed, AgentState};
use crate::sip::auth::{ha1, Algorithm};
use crate::webrtc::phones::PhoneEvent;

/// The workspace page (plain HTML/CSS/JS, no build step): `web/agent.html`.
pub const PAGE: &str = include_str!("../../web/agent.html");

/// `GET /agent`.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page loads nothing from elsewhere; keep it that way.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                 style-src 'self' 'unsafe-inline'; media-src 'self' blob:; \
                 connect-src 'self' ws: wss:; frame-ancestors 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "not logged in, or the session expired or was taken over".into(),
    )
}

/// The session id in the request's `Cookie` header(s), if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    super::session::cookie(headers, COOKIE)
}

fn set_cookie(st: &ApiState, value: &str, max_age_s: u64) -> HeaderValue {
    super::session::set_cookie(COOKIE, value, max_age_s, st.https)
}

/// Middleware of every `/api/agent/*` endpoint but login: a live session or 401.
pub async fn require_session(
    State(st): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(id) = session_cookie(req.headers()) else {
        return unauthorized().into_response();
    };
    let info = match st.sessions.lock() {
        Ok(mut s) => s.check(Instant::now(), &id),
        Err(_) => None,
    };
    match info {
        Some(info) => {
            req.extensions_mut().insert(info);
            next.run(req).await
        }
        None => unauthorized().into_response(),
    }
}

/// A POST body as JSON; anything else (a form post from another site) is refused.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn db_error(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
}

/// Constant-time string comparison.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    name: String,
    password: String,
}

/// `POST /api/agent/login {"name", "password"}`: the password `switchboard agent add` set,
/// checked against the stored HA1. 200 with the session cookie; 401 for a wrong name or
/// password (the same answer for both); 429 while the source is banned.
pub async fn login(
    State(st): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody = json_body(&headers, &body)?;
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
    let row = if crate::store::agents::valid_name(&b.name) {
        crate::store::agents::find_by_user(&st.ctx.db, &b.name)
            .await
            .map_err(db_error)?
            .filter(|a| a.name == b.name)
    } else {
        None
    };
    let ok = match &row {
        Some(a) => {
            let given = ha1(Algorithm::Md5, &a.name, &a.realm, &b.password);
            a.enabled && same(&given, &a.ha1_md5)
        }
        None => {
            // Same work for an unknown name, so timing does not tell which names exist.
            let _ = ha1(Algorithm::Md5, &b.name, &st.ctx.config.realm, &b.password);
            false
        }
    };
    if !ok {
        return Err(super::session::login_refused(
            &st.login_guard,
            ip,
            &b.name,
            "web login failed",
            "wrong agent name or password",
        ));
    }
    let (new, ttl) = super::session::login_accepted(&st.login_guard, &st.sessions, ip, &b.name)?;
    info!(agent = %b.name, source = %ip, took_over = new.took_over, "agent web login");
    if new.took_over {
        // The old page's phone goes with its session; the new page turns its own on.
        phone_off(&st, &b.name).await;
    }
    // Logging in on the page is going on duty: the ACD logs the agent in (it is offered
    // calls once it is also reachable).
    let state = st.ctx.acd.command(&b.name, AgentCommand::Login).await;
    let mut resp = Json(json!({
        "agent": b.name,
        "state": state.unwrap_or(AgentState::LoggedOut),
        "took_over": new.took_over,
        "expires_in_s": ttl.as_secs(),
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&st, &new.id, ttl.as_secs()));
    Ok(resp)
}

/// `POST /api/agent/logout`: the session ends (the cookie is cleared) and the ACD logs the
/// agent out.
pub async fn logout(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
) -> Response {
    if let Ok(mut t) = st.sessions.lock() {
        t.revoke(&s.id);
    }
    phone_off(&st, &s.agent).await;
    let state = st.ctx.acd.command(&s.agent, AgentCommand::Logout).await;
    info!(agent = %s.agent, "agent web logout");
    let mut resp = Json(json!({"agent": s.agent, "state": state.unwrap_or(AgentState::LoggedOut)}))
        .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&st, "", 0));
    resp
}

/// `GET /api/agent/me`: the agent's live state, queues, the configured lists, wrap-up time
/// and the pending callbacks of its queues.
pub async fn me(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
) -> Result<Json<Value>, ApiError> {
    let views = st.ctx.acd.agents().await;
    // Blind-transfer targets for the page: every configured queue and the other agents
    // with their state (an agent directory, as contact-centre workspaces show).
    let transfer_agents: Vec<Value> = views
        .iter()
        .filter(|v| v.name != s.agent)
        .map(|v| json!({"name": v.name, "state": v.state}))
        .collect();
    let transfer_queues: Vec<&str> = st
        .ctx
        .config
        .queue_settings
        .iter()
        .map(|q| q.acd.name.as_str())
        .collect();
    let view = views.into_iter().find(|v| v.name == s.agent);
    let queues: Vec<String> = view.as_ref().map(|v| v.queues.clone()).unwrap_or_default();
    let callbacks: Vec<Value> = st
        .ctx
        .acd
        .queues()
        .await
        .into_iter()
        .filter(|q| queues.contains(&q.name) && q.callbacks_pending > 0)
        .map(|q| json!({"queue": q.name, "waiting": q.callbacks_pending}))
        .collect();
    let wrapup_s = st
        .ctx
        .config
        .queue_settings
        .iter()
        .filter(|q| queues.contains(&q.acd.name))
        .map(|q| q.acd.wrapup.as_secs())
        .max()
        .unwrap_or(0);
    Ok(Json(json!({
        "name": s.agent,
        "state": view.as_ref().map_or(AgentState::LoggedOut, |v| v.state),
        "paused_reason": view.as_ref().and_then(|v| v.paused_reason.clone()),
        "reachable": view.as_ref().is_some_and(|v| v.reachable),
        "call": view.as_ref().and_then(|v| v.call.clone()),
        "state_for_s": view.as_ref().map_or(0, |v| v.state_for_s),
        "calls_taken": view.as_ref().map_or(0, |v| v.calls_taken),
        "queues": queues,
        "wrapup_s": wrapup_s,
        "pending_callbacks": callbacks,
        "pause_reasons": st.ctx.config.pause_reasons,
        "dispositions": st.ctx.config.dispositions,
        "resolutions": ["unchanged", "wait", "refund"],
        "phone": st.ctx.phones.is_on(&s.agent),
        "ice_servers": st.ctx.config.webrtc_ice_servers,
        "transfer_targets": {"queues": transfer_queues, "agents": transfer_agents},
    })))
}

/// Turning the browser phone off changes the ACD's state (the agent is no longer
/// reachable there): the request waits for room in the ACD's mailbox rather than dropping it.
async fn phone_off(st: &ApiState, agent: &str) {
    if st.ctx.phones.set(agent, false) {
        st.ctx
            .acd
            .send_wait(crate::acd::AcdMsg::BrowserPhone {
                name: agent.to_string(),
                def: None,
                on: false,
            })
            .await;
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneBody {
    on: bool,
}

/// `POST /api/agent/phone {"on": true}`: take calls in this page (the ACD rings the page
/// instead of a SIP phone); `false` goes back to the SIP phone, if any.
pub async fn phone(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: PhoneBody = json_body(&headers, &body)?;
    if b.on {
        // The account as stored (queues, skills): the ACD may not know an agent added since
        // it started, as a REGISTER would tell it.
        let def = crate::store::agents::find_by_user(&st.ctx.db, &s.agent)
            .await
            .map_err(db_error)?
            .filter(|a| a.name == s.agent && a.enabled)
            .map(|a| crate::acd::AgentDef {
                name: a.name,
                queues: a.queues,
                skills: a.skills,
            });
        let Some(def) = def else {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("agent '{}' is disabled or gone", s.agent),
            ));
        };
        st.ctx.phones.set(&s.agent, true);
        // State-changing (the agent becomes reachable here): waits for room, never dropped.
        st.ctx
            .acd
            .send_wait(crate::acd::AcdMsg::BrowserPhone {
                name: s.agent.clone(),
                def: Some(def),
                on: true,
            })
            .await;
        // Taking calls here is being on duty (as the web login is).
        st.ctx.acd.command(&s.agent, AgentCommand::Login).await;
    } else {
        phone_off(&st, &s.agent).await;
    }
    info!(agent = %s.agent, on = b.on, "browser phone");
    Ok(Json(json!({
        "phone": b.on,
        "ice_servers": st.ctx.config.webrtc_ice_servers,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    call_id: String,
    sdp: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    call_id: String,
}

/// Largest SDP offer accepted from a page (Chromium's are about 5 KiB with every codec).
const MAX_OFFER: usize = 64 * 1024;
/// How long the answer may take (a port, the str0m session): a stuck leg is an error.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn phone_error(e: crate::webrtc::phones::PhoneError) -> ApiError {
    ApiError(StatusCode::CONFLICT, e.to_string())
}

/// `POST /api/agent/answer {"call_id", "sdp"}`: answer the call the page is rung for with
/// its WebRTC offer; the reply carries the SDP answer (`{"sdp"}`). 400 for an offer the leg
/// refuses (no DTLS fingerprint, no audio, no common codec), 409 when the call is no
/// longer ringing here.
pub async fn answer(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AnswerBody = json_body(&headers, &body)?;
    if b.sdp.len() > MAX_OFFER {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SDP offer too large".into(),
        ));
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    let action = crate::webrtc::phones::PageAction::Answer {
        offer: b.sdp,
        reply,
        page_ip: host_ip(&headers),
    };
    st.ctx
        .phones
        .act(&s.agent, &b.call_id, action)
        .map_err(phone_error)?;
    match tokio::time::timeout(ANSWER_WAIT, rx).await {
        Ok(Ok(Ok(sdp))) => Ok(Json(json!({"call_id": b.call_id, "sdp": sdp}))),
        Ok(Ok(Err(why))) => Err(ApiError(StatusCode::BAD_REQUEST, why)),
        Ok(Err(_)) => Err(ApiError(
            StatusCode::CONFLICT,
            "the call ended while answering".into(),
        )),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the call did not answer in time".into(),
        )),
    }
}

/// The IP literal of the request's `Host` (`10.0.5.20:8080`, `[fd00::5]:8443`, `10.0.5.20`),
/// None for a name or no header: where the page reached this server.
fn host_ip(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a.ip());
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// `POST /api/agent/reject {"call_id"}`: refuse a ringing call (a miss for the ACD).
pub async fn reject(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    page_action(
        &st,
        &s,
        &headers,
        &body,
        crate::webrtc::phones::PageAction::Reject,
    )
}

/// `POST /api/agent/hangup {"call_id"}`: end the page's call (both sides).
pub async fn hangup(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    page_action(
        &st,
        &s,
        &headers,
        &body,
        crate::webrtc::phones::PageAction::Hangup,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    call_id: String,
    on: bool,
}

/// `POST /api/agent/hold {"call_id", "on"}`: put the page's call on hold (the caller hears
/// the queue's music on hold, as with a SIP phone's hold) or take it back.
pub async fn hold(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: HoldBody = json_body(&headers, &body)?;
    st.ctx
        .phones
        .act(
            &s.agent,
            &b.call_id,
            crate::webrtc::phones::PageAction::Hold { on: b.on },
        )
        .map_err(phone_error)?;
    Ok(Json(json!({"call_id": b.call_id, "on": b.on})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtmfBody {
    call_id: String,
    digits: String,
}

/// Digits one request may carry (a pad press is one; a pasted number a few).
const MAX_DIGITS: usize = 32;

/// `POST /api/agent/dtmf {"call_id", "digits"}`: send DTMF to the caller from the pad, as
/// RFC 4733 telephone-events on the caller's leg (`0-9 * # A-D`, at most 32 per request).
pub async fn dtmf(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: DtmfBody = json_body(&headers, &body)?;
    if !valid_digits(&b.digits) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("digits: 1 to {MAX_DIGITS} of 0-9 * # A-D"),
        ));
    }
    st.ctx
        .phones
        .act(
            &s.agent,
            &b.call_id,
            crate::webrtc::phones::PageAction::Dtmf {
                digits: b.digits.clone(),
            },
        )
        .map_err(phone_error)?;
    Ok(Json(json!({"call_id": b.call_id, "digits": b.digits})))
}

fn valid_digits(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DIGITS
        && d.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    call_id: String,
    /// A configured queue.
    target: Option<String>,
    /// A named agent.
    agent: Option<String>,
}

/// `POST /api/agent/transfer {"call_id", "target"}` or `{"call_id", "agent"}`: blind
/// transfer of the page's caller, as a SIP phone's REFER. To the queue `target` (a
/// configured `[[queue]]`): the caller waits there with a new place in line. To the agent
/// `agent`: the caller is offered to that agent only and waits for it with music (at most
/// [`crate::acd::TRANSFER_WAIT`] for it to become available, then its ring timeout), else
/// goes back to the queue it came from with its priority. Either way the agent's part of the
/// call ends (wrap-up). 400 for both or neither, 404 for an unknown queue or agent, 409 for
/// a transfer to oneself (or a call not up).
pub async fn transfer(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::webrtc::phones::TransferTarget;
    let b: TransferBody = json_body(&headers, &body)?;
    let target = match (
        b.target.as_deref().map(str::trim),
        b.agent.as_deref().map(str::trim),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give either target (a queue) or agent, not both".into(),
            ))
        }
        (None, None) | (Some(""), None) | (None, Some("")) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give target (a queue) or agent (an agent's name)".into(),
            ))
        }
        (Some(q), None) => {
            if !st.ctx.acd.has_queue(q) {
                return Err(ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no queue '{q}' (a blind transfer goes to a configured [[queue]] or an agent)"),
                ));
            }
            TransferTarget::Queue(q.to_string())
        }
        (None, Some(a)) => {
            if a == s.agent {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    "an agent cannot transfer a call to itself".into(),
                ));
            }
            if !st.ctx.acd.has_agent(a) {
                return Err(ApiError(StatusCode::NOT_FOUND, format!("no agent '{a}'")));
            }
            TransferTarget::Agent(a.to_string())
        }
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    st.ctx
        .phones
        .act(
            &s.agent,
            &b.call_id,
            crate::webrtc::phones::PageAction::Transfer {
                target: target.clone(),
                reply,
            },
        )
        .map_err(phone_error)?;
    match tokio::time::timeout(ANSWER_WAIT, rx).await {
        Ok(Ok(Ok(()))) => {
            info!(agent = %s.agent, %target, "browser agent transfer");
            Ok(Json(match target {
                TransferTarget::Queue(q) => json!({"call_id": b.call_id, "target": q}),
                TransferTarget::Agent(a) => json!({"call_id": b.call_id, "agent": a}),
            }))
        }
        Ok(Ok(Err(why))) => Err(ApiError(StatusCode::CONFLICT, why)),
        Ok(Err(_)) => Err(ApiError(
            StatusCode::CONFLICT,
            "the call ended before the transfer".into(),
        )),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the call did not take the transfer in time".into(),
        )),
    }
}

fn page_action(
    st: &ApiState,
    s: &SessionInfo,
    headers: &HeaderMap,
    body: &[u8],
    action: crate::webrtc::phones::PageAction,
) -> Result<Json<Value>, ApiError> {
    let b: CallBody = json_body(headers, body)?;
    st.ctx
        .phones
        .act(&s.agent, &b.call_id, action)
        .map_err(phone_error)?;
    Ok(Json(json!({"call_id": b.call_id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    state: String,
    reason: Option<String>,
}

/// `POST /api/agent/state {"state": "available" | "paused", "reason"}`: a pause needs a
/// reason from `[acd] pause_reasons`; `available` logs in (if needed) and unpauses.
pub async fn set_state(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: StateBody = json_body(&headers, &body)?;
    let acd = &st.ctx.acd;
    let state = match b.state.as_str() {
        "available" => {
            acd.command(&s.agent, AgentCommand::Login).await;
            acd.command(&s.agent, AgentCommand::Unpause).await
        }
        "paused" => {
            let reason = b.reason.unwrap_or_default();
            if !st.ctx.config.pause_reasons.contains(&reason) {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "reason must be one of {:?} ([acd] pause_reasons)",
                        st.ctx.config.pause_reasons
                    ),
                ));
            }
            acd.command(&s.agent, AgentCommand::Pause(reason)).await
        }
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("state '{other}': use \"available\" or \"paused\""),
            ))
        }
    };
    let Some(state) = state else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("agent '{}' is not known to the ACD", s.agent),
        ));
    };
    let reason = acd
        .agents()
        .await
        .into_iter()
        .find(|v| v.name == s.agent)
        .and_then(|v| v.paused_reason);
    Ok(Json(
        json!({"name": s.agent, "state": state, "paused_reason": reason}),
    ))
}

/// `GET /api/agent/events`: the session's agent's SSE stream (`hello`, `state`, `offer`
/// with the screen pop); a `revoked` event and the end of the stream when the session ends.
pub async fn events(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let watch = PageWatch::new(st.clone(), &s.agent);
    agent_stream(st, s.agent, Some(s.ended), Some(watch))
}

/// An open page event stream of an agent (see [`crate::webrtc::phones::Phones::watch`]):
/// when the last one of the agent closes, an idle browser phone goes off and the ACD is told.
pub struct PageWatch {
    st: Arc<ApiState>,
    agent: String,
}

impl PageWatch {
    fn new(st: Arc<ApiState>, agent: &str) -> PageWatch {
        st.ctx.phones.watch(agent);
        PageWatch {
            st,
            agent: agent.to_string(),
        }
    }
}

impl Drop for PageWatch {
    fn drop(&mut self) {
        if self.st.ctx.phones.unwatch(&self.agent) {
            info!(agent = %self.agent, "the page's event stream closed: browser phone off");
            // A drop cannot wait: the state-changing message goes from a task on the server's
            // tracker that waits for room in the ACD's mailbox, instead of being dropped when
            // it is full.
            let acd = self.st.ctx.acd.clone();
            let msg = crate::acd::AcdMsg::BrowserPhone {
                name: self.agent.clone(),
                def: None,
                on: false,
            };
            self.st
                .ctx
                .tracker
                .spawn(async move { acd.send_wait(msg).await });
        }
    }
}

/// The per-agent event stream shared with the admin `GET /api/agents/{name}/events`.
pub fn agent_stream(
    st: Arc<ApiState>,
    name: String,
    ended: Option<tokio_util::sync::CancellationToken>,
    watch: Option<PageWatch>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = st.ctx.acd.subscribe();
    let phone_rx = st.ctx.phones.subscribe();
    let hello = Event::default()
        .event("hello")
        .data(json!({ "agent": name }).to_string());
    let ended = ended.unwrap_or_default();
    let state = (st, name, (rx, phone_rx, watch), Some(hello), ended, false);
    let stream = futures_util::stream::unfold(
        state,
        |(st, name, (mut rx, mut phone_rx, watch), hello, ended, done)| async move {
            if done {
                return None;
            }
            if let Some(h) = hello {
                return Some((Ok(h), (st, name, (rx, phone_rx, watch), None, ended, false)));
            }
            loop {
                let item = tokio::select! {
                    _ = ended.cancelled() => {
                        let e = Event::default().event("revoked").data("{}");
                        return Some((Ok(e), (st, name, (rx, phone_rx, watch), None, ended, true)));
                    }
                    r = rx.recv() => match r {
                        Ok(i) => Ok(i),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                    r = phone_rx.recv() => match r {
                        Ok(p) => Err(p),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                };
                let event = match item {
                    Ok(AgentFeed::State { agent, state }) if agent == name => Event::default()
                        .event("state")
                        .data(json!({ "agent": agent, "state": state }).to_string()),
                    Ok(AgentFeed::Offer {
                        agent,
                        call,
                        queue,
                        caller,
                        ticket_id,
                    }) if agent == name => {
                        let pop = screen_pop(&st, &call, &caller, ticket_id).await;
                        let data = json!({
                            "agent": agent, "call_id": call, "queue": queue,
                            "caller": caller, "screen_pop": pop,
                        });
                        Event::default().event("offer").data(data.to_string())
                    }
                    Err(PhoneEvent::Ring { agent, call }) if agent == name => Event::default()
                        .event("incoming-call")
                        .data(json!({ "agent": agent, "call_id": call }).to_string()),
                    Err(PhoneEvent::Ended { agent, call, why }) if agent == name => Event::default(
                    )
                    .event("call-ended")
                    .data(json!({ "agent": agent, "call_id": call, "why": why }).to_string()),
                    _ => continue,
                };
                return Some((
                    Ok(event),
                    (st, name, (rx, phone_rx, watch), None, ended, false),
                ));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The screen pop of an offered call: the caller's ticket (customer name, order id, status,
/// delay days, new ETA, segment, language, resolution), what the caller chose in the IVR on
/// this call, and the last calls on the ticket (or from the number) with their outcomes,
/// the agents' dispositions and whether they were recorded.
pub async fn screen_pop(st: &ApiState, call: &str, caller: &str, ticket_id: Option<i64>) -> Value {
    let db = &st.ctx.db;
    let ticket = match ticket_id {
        Some(id) => crate::store::tickets::by_id(db, id).await.ok().flatten(),
        None => crate::store::tickets::by_phone(db, caller)
            .await
            .ok()
            .flatten(),
    };
    let ticket_key: i64 = ticket
        .as_ref()
        .and_then(|t| t.get("id"))
        .and_then(|v| v.parse().ok())
        .or(ticket_id)
        .unwrap_or(-1);
    let ivr = sqlx::query(
        "SELECT kind, detail FROM call_events WHERE call_id = $1 \
         AND kind IN ('dtmf', 'menu', 'choice', 'language', 'lookup') ORDER BY seq",
    )
    .bind(call)
    .fetch_all(&db.pool)
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| {
                json!({
                    "kind": r.try_get::<String, _>("kind").unwrap_or_default(),
                    "detail": r.try_get::<String, _>("detail").unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
    let history = sqlx::query(
        "SELECT r.id, r.started_at, r.direction, r.disposition, r.agent, r.recording_path, \
         o.choice, d.outcome, d.resolution, d.note \
         FROM call_records r LEFT JOIN call_outcomes o ON o.call_id = r.id \
         LEFT JOIN dispositions d ON d.call_id = r.id \
         WHERE r.ticket_id = $1 OR r.caller = $2 \
         ORDER BY r.started_at DESC LIMIT 10",
    )
    .bind(ticket_key)
    .bind(caller)
    .fetch_all(&db.pool)
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| {
                let s = |c: &str| r.try_get::<Option<String>, _>(c).ok().flatten();
                json!({
                    "call_id": s("id"),
                    "started_at": s("started_at"),
                    "direction": s("direction"),
                    "disposition": s("disposition"),
                    "agent": s("agent"),
                    "outcome": s("choice"),
                    "agent_outcome": s("outcome"),
                    "resolution": s("resolution"),
                    "note": s("note"),
                    "recorded": s("recording_path").is_some(),
                })
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_else(|e| {
        warn!(error = %e, "screen pop history query failed");
        Vec::new()
    });
    json!({ "ticket": ticket, "ivr": ivr, "recent_calls": history })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispositionBody {
    call_id: String,
    outcome: String,
    #[serde(default)]
    note: String,
    #[serde(default = "unchanged")]
    resolution: String,
}

fn unchanged() -> String {
    "unchanged".into()
}

/// `POST /api/agent/disposition {"call_id", "outcome", "note", "resolution"}`: the call must
/// be one the agent handled (`call_records.agent`); the outcome one of `[acd] dispositions`;
/// `resolution` `wait`, `refund` (a refund request is filed) or `unchanged`. One per call
/// and agent (a second answers 409). Ends the agent's wrap-up.
pub async fn disposition(
    State(st): State<Arc<ApiState>>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: DispositionBody = json_body(&headers, &body)?;
    if !st.ctx.config.dispositions.contains(&b.outcome) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "outcome must be one of {:?} ([acd] dispositions)",
                st.ctx.config.dispositions
            ),
        ));
    }
    if !matches!(b.resolution.as_str(), "wait" | "refund" | "unchanged") {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "resolution must be wait, refund or unchanged".into(),
        ));
    }
    if b.note.len() > 2000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "note: at most 2000 bytes".into(),
        ));
    }
    let db = &st.ctx.db;
    let row = sqlx::query("SELECT agent, ticket_id FROM call_records WHERE id = $1")
        .bind(&b.call_id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no call '{}'", b.call_id)))?;
    let agent: Option<String> = row.try_get("agent").ok().flatten();
    if agent.as_deref() != Some(s.agent.as_str()) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "call '{}' was not handled by agent '{}'",
                b.call_id, s.agent
            ),
        ));
    }
    let ticket: Option<i64> = row.try_get("ticket_id").ok().flatten();
    let now = crate::store::now_ts();
    let d = db.dialect;
    let mut tx = db.pool.begin().await.map_err(db_error)?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO dispositions (call_id, ticket_id, agent, outcome, note, resolution, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, {}) ON CONFLICT (call_id, agent) DO NOTHING",
        d.ts(7)
    ))
    .bind(&b.call_id)
    .bind(ticket)
    .bind(&s.agent)
    .bind(&b.outcome)
    .bind(b.note.trim())
    .bind(&b.resolution)
    .bind(&now)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "a disposition for call '{}' was already submitted",
                b.call_id
            ),
        ));
    }
    let mut ticket_moved = false;
    if let (Some(t), "wait" | "refund") = (ticket, b.resolution.as_str()) {
        // The agent's decision is the newest: it moves the ticket unless another writer
        // decided later still (the same guard as the IVR's outcomes, store/ops.rs).
        let sql = format!(
            "UPDATE tickets SET resolution = $1, resolved_at = {at}, updated_at = {at} \
             WHERE id = $3 AND (resolved_at IS NULL OR resolved_at <= {at})",
            at = d.ts(2)
        );
        ticket_moved = sqlx::query(&sql)
            .bind(&b.resolution)
            .bind(&now)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
            == 1;
        if ticket_moved && b.resolution == "refund" {
            let sql = format!(
                "INSERT INTO refund_requests (ticket_id, call_id, requested_at) VALUES ($1, $2, {}) \
                 ON CONFLICT (call_id) DO NOTHING",
                d.ts(3)
            );
            sqlx::query(&sql)
                .bind(t)
                .bind(&b.call_id)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
    }
    tx.commit().await.map_err(db_error)?;
    st.ctx.acd.command(&s.agent, AgentCommand::EndWrapUp).await;
    info!(agent = %s.agent, call = %b.call_id, outcome = %b.outcome, resolution = %b.resolution,
        "agent disposition");
    Ok(Json(json!({
        "call_id": b.call_id,
        "accepted": true,
        "ticket_id": ticket,
        "ticket_moved": ticket_moved,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ip_reads_ip_literals_only() {
        let host = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(v));
            host_ip(&h)
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(host("10.0.5.20:8080"), ip("10.0.5.20"));
        assert_eq!(host("10.0.5.20"), ip("10.0.5.20"));
        assert_eq!(host("[fd00::5]:8443"), ip("fd00::5"));
        assert_eq!(host("[fd00::5]"), ip("fd00::5"));
        assert_eq!(host("switchboard.lan:8443"), None);
        assert_eq!(host_ip(&HeaderMap::new()), None);
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_agent=abc ; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc".into()));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("x=1"));
        h.append(header::COOKIE, HeaderValue::from_static("sb_agent=zz"));
        assert_eq!(session_cookie(&h), Some("zz".into()));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn dtmf_digits_are_checked() {
        assert!(valid_digits("5"));
        assert!(valid_digits("0123456789*#ABCD"));
        assert!(!valid_digits(""));
        assert!(!valid_digits("5e"));
        assert!(!valid_digits(&"1".repeat(MAX_DIGITS + 1)));
    }

    #[test]
    fn json_only_posts() {
        let mut h = HeaderMap::new();
        let r: Result<LoginBody, _> = json_body(&h, br#"{"name":"a","password":"b"}"#);
        assert_eq!(
            r.err().map(|e| e.0),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let r: Result<LoginBody, _> = json_body(&h, br#"{"name":"a","password":"b"}"#);
        assert!(r.is_ok());
        let r: Result<LoginBody, _> = json_body(&h, br#"{"name":"a"}"#);
        assert_eq!(r.err().map(|e| e.0), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn page_carries_every_contract_test_id() {
        for id in [
            "login-user",
            "login-password",
            "login-submit",
            "agent-state",
            "state-available",
            "state-pause",
            "pause-reason",
            "incoming-call",
            "answer",
            "reject",
            "hangup",
            "mute",
            "hold",
            "dtmf-pad",
            "transfer-target",
            "transfer-submit",
            "screen-pop-order",
            "screen-pop-name",
            "screen-pop-status",
            "screen-pop-history",
            "disposition-select",
            "disposition-note",
            "resolution-select",
            "disposition-submit",
            "call-stats-rx-packets",
            "call-stats-tx-packets",
        ] {
            assert!(
                PAGE.contains(&format!("data-testid=\"{id}\"")),
                "web/agent.html lacks data-testid=\"{id}\""
            );
        }
    }
}
