//! `POST /api/sms/inbound`: a customer's SMS reply to the delay notice, forwarded by the
//! gateway. Authenticated by the HMAC signature of `[sms] inbound_secret` (not the API
//! token: the gateway is not an operator); the rules are in `crate::dialer::sms_reply`.
//!
//! Answers: 200 with what was recorded (`choice`, or `null` and whether the help text was
//! sent); 400 malformed body; 401 bad or stale signature (the reason in `error`); 404 when
//! replies are off or the number has no open notice (4xx: the gateway should not retry).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::{info, warn};

use super::{ApiError, ApiState};
use crate::dialer::sms::{self, Gateway};
use crate::dialer::sms_reply::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::store::{campaigns, now_ts};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn internal(e: impl std::fmt::Display) -> Response {
    warn!(error = %e, "SMS reply not recorded: database error");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "database unavailable; try again".into(),
    )
    .into_response()
}

pub async fn inbound(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(gw) = s.ctx.config.sms.as_ref() else {
        return ApiError(
            StatusCode::NOT_FOUND,
            "SMS replies are not enabled ([sms])".into(),
        )
        .into_response();
    };
    let Some(cfg) = gw.inbound.as_ref() else {
        return ApiError(
            StatusCode::NOT_FOUND,
            "SMS replies are not enabled ([sms] inbound_secret)".into(),
        )
        .into_response();
    };
    if let Err(e) = sms_reply::verify(
        cfg,
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        warn!(reason = %e, "SMS reply refused");
        return ApiError(StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let msg = match sms_reply::parse(&body) {
        Ok(m) => m,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let db = &s.ctx.db;
    // A re-delivery of a message already recorded: the same answer, nothing written again.
    match campaigns::sms_reply(db, &msg.id).await {
        Ok(Some(r)) => {
            return Json(json!({
                "id": msg.id,
                "duplicate": true,
                "contact_id": r.contact_id,
                "ticket_id": r.ticket_id,
                "choice": r.choice,
                "help_sent": false,
            }))
            .into_response()
        }
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    let notice = match campaigns::sms_open_notice(db, &msg.from).await {
        Ok(Some(n)) => n,
        Ok(None) => {
            info!(from = %msg.from, id = %msg.id, "SMS reply from a number with no open notice");
            return ApiError(
                StatusCode::NOT_FOUND,
                format!("no open notice for {}", msg.from),
            )
            .into_response();
        }
        Err(e) => return internal(e),
    };
    let choice = cfg.choice(&msg.text);
    let help = match choice {
        Some(_) => false,
        None => match campaigns::sms_help_given(db, notice.contact_id).await {
            Ok(given) => !given,
            Err(e) => return internal(e),
        },
    };
    let at = now_ts();
    let recorded = match campaigns::record_sms_reply(
        db,
        &msg.id,
        &notice,
        &msg.from,
        &msg.text,
        choice.map(|c| c.as_str()),
        help,
        &at,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    // Lost a race with a concurrent re-delivery of the same message: that one answered.
    let help = help && recorded;
    info!(
        from = %msg.from,
        id = %msg.id,
        contact = notice.contact_id,
        ticket = notice.ticket_id,
        choice = choice.map(|c| c.as_str()),
        help,
        "SMS reply recorded"
    );
    if help {
        send_help(
            &s.ctx.tracker,
            gw.clone(),
            &msg.from,
            notice.contact_id,
            &cfg.help_text,
        );
    }
    Json(json!({
        "id": msg.id,
        "duplicate": !recorded,
        "contact_id": notice.contact_id,
        "ticket_id": notice.ticket_id,
        "choice": choice.map(|c| c.as_str()),
        "help_sent": help,
    }))
    .into_response()
}

/// The help text goes out through the same gateway as the notice, once, off the request
/// (the gateway is waiting for our answer; it may even be single-threaded). On the server's
/// tracker, so shutdown waits for a help text in flight (bounded by the client's timeouts).
fn send_help(
    tracker: &tokio_util::task::TaskTracker,
    cfg: crate::config::SmsGateway,
    to: &str,
    contact: i64,
    text: &str,
) {
    let key = format!("switchboard-sms-help-{contact}");
    let body = json!({
        "id": key,
        "from": cfg.from,
        "to": to,
        "text": text,
        "contact_id": contact,
    });
    tracker.spawn(async move {
        let gw = match Gateway::new(cfg) {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "SMS help text not sent: gateway unusable");
                return;
            }
        };
        let result = sms::post(&gw.client, &gw.url, gw.config.token.as_deref(), &key, &body).await;
        match result {
            sms::PostResult::Answered(s) if (200..300).contains(&s) => {
                info!(contact, "SMS help text sent")
            }
            other => warn!(contact, result = ?other, "SMS help text not taken (not retried)"),
        }
    });
}
