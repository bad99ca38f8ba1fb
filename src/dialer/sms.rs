//! SMS fallback: after a contact's last failed attempt the campaign runner queues one text
//! (`campaign_sms`, keyed by the contact, so at most one per contact, also across restarts);
//! this module renders it and a sender task delivers it through a generic HTTP SMS gateway
//! (`[sms]` in the config; `https://` with certificate verification, recommended, or
//! `http://`) with the shared client (`crate::http_client`), off the call path.
//!
//! At most once: every try is recorded (`sending`, tries + 1) before the request goes out.
//! A try is made again, after a doubling back-off, only when the gateway certainly did not
//! take the text: the connection failed, or it answered 429 or 5xx. Any other 4xx gives up at
//! once (the request itself is wrong). No answer after the request was written, or a server
//! stop during a try, might mean the gateway took it: the text ends `failed` and is not sent
//! again. Every request carries `Idempotency-Key: switchboard-sms-<contact id>` (and `id` in
//! the body) so a gateway can drop duplicates of its own.
//!
//! The decisions (template, back-off, what an answer means) are pure functions, tested
//! here; `run_sender` is the thin tokio shell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SmsGateway;
use crate::http_client::{HttpClient, HttpError, Method, Request, Scheme, Url, DEFAULT_MAX_BODY};
use crate::store::campaigns::{self, SmsRow};
use crate::store::{now_ts, Db, StoreError};

/// Longest pause between two tries of one text.
pub const MAX_BACKOFF_S: u64 = 3600;
/// Texts read per pass of the sender.
const BATCH: i64 = 50;
/// The sender looks for due retries at least this often (new texts wake it at once).
const POLL: Duration = Duration::from_secs(1);

/// The text for one contact: the template with `${name}`, `${order_id}`, `${new_date}`,
/// `${delay_days}`, `${phone}`, `${campaign}` and every `${ticket.COLUMN}` filled in
/// (unknown names become empty).
pub fn render(
    template: &str,
    ticket: Option<&HashMap<String, String>>,
    phone: &str,
    campaign: &str,
) -> String {
    let mut vars = crate::ivr::expr::Vars::new();
    if let Some(t) = ticket {
        for (k, v) in t {
            vars.insert(format!("ticket.{k}"), v.clone());
        }
        for (short, column) in [
            ("name", "customer_name"),
            ("order_id", "order_id"),
            ("new_date", "new_eta"),
            ("delay_days", "delay_days"),
        ] {
            if let Some(v) = t.get(column) {
                vars.insert(short.into(), v.clone());
            }
        }
    }
    vars.insert("phone".into(), phone.to_string());
    vars.insert("campaign".into(), campaign.to_string());
    crate::ivr::expr::expand(template, &vars)
}

/// Pause after try number `tries_made` (1-based) before the next one: `retry_s`, doubling.
pub fn backoff(tries_made: u32, retry_s: u64) -> Duration {
    let shift = tries_made.saturating_sub(1).min(20);
    Duration::from_secs(
        retry_s
            .saturating_mul(1u64 << shift)
            .clamp(1, MAX_BACKOFF_S),
    )
}

/// How one request to the gateway went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostResult {
    /// The gateway answered with this status.
    Answered(u16),
    /// Nothing was sent: the connection could not be opened (or the URL is unusable).
    NotSent(String),
    /// The request was (perhaps partly) sent but no answer came: the gateway may have it.
    NoAnswer(String),
}

/// What to do with a text after a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Sent,
    /// Try again after the delay; the reason is kept on the row meanwhile.
    Retry(Duration, String),
    /// Given up; the reason is shown to operators.
    Failed(String),
}

/// The rule: sent on 2xx; retried (while tries remain) only when the gateway surely did not
/// take the text; failed otherwise.
pub fn next_after(result: &PostResult, tries_made: u32, max_tries: u32, retry_s: u64) -> Next {
    let retry = |reason: String| {
        if tries_made >= max_tries {
            Next::Failed(format!("{reason} (gave up after {tries_made} tries)"))
        } else {
            Next::Retry(backoff(tries_made, retry_s), reason)
        }
    };
    match result {
        PostResult::Answered(s) if (200..300).contains(s) => Next::Sent,
        PostResult::Answered(s) if *s == 429 || (500..600).contains(s) => {
            retry(format!("gateway answered {s}"))
        }
        PostResult::Answered(s) => Next::Failed(format!("gateway refused the text: {s}")),
        PostResult::NotSent(e) => retry(format!("gateway unreachable: {e}")),
        PostResult::NoAnswer(e) => Next::Failed(format!(
            "no answer from the gateway ({e}); not retried: it may have taken the text"
        )),
    }
}

/// The JSON body sent to the gateway.
pub fn request_body(gw: &SmsGateway, sms: &SmsRow) -> serde_json::Value {
    serde_json::json!({
        "id": idempotency_key(sms.contact_id),
        "from": gw.from,
        "to": sms.phone,
        "text": sms.body,
        "campaign_id": sms.campaign_id,
        "contact_id": sms.contact_id,
    })
}

pub fn idempotency_key(contact: i64) -> String {
    format!("switchboard-sms-{contact}")
}

/// One POST of a text to the gateway (`http://` or `https://`, through the shared client).
pub async fn post(
    client: &HttpClient,
    url: &Url,
    token: Option<&str>,
    key: &str,
    body: &serde_json::Value,
) -> PostResult {
    let req = Request::new(Method::POST, url.clone())
        .bearer(token)
        .header(HeaderName::from_static("idempotency-key"), key)
        .json(body);
    match client.send(req).await {
        Ok(r) => PostResult::Answered(r.status),
        // The status line came; the body is not needed to judge it.
        Err(HttpError::TooLarge { status, .. }) => PostResult::Answered(status),
        Err(e) if e.not_sent() => PostResult::NotSent(e.to_string()),
        Err(e) => PostResult::NoAnswer(e.to_string()),
    }
}

/// The gateway as the sender uses it: the URL checked and a client with the configured
/// timeout and extra trust (`[sms] ca_file`) made once, at start.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub config: SmsGateway,
    pub url: Url,
    pub client: HttpClient,
}

impl Gateway {
    pub fn new(config: SmsGateway) -> Result<Gateway, HttpError> {
        let url = Url::parse(&config.url)?;
        let client = HttpClient::new(
            Duration::from_secs(config.timeout_s),
            DEFAULT_MAX_BODY,
            config.ca_file.as_deref().map(|p| ("[sms] ca_file", p)),
        )?;
        Ok(Gateway {
            config,
            url,
            client,
        })
    }
}

/// The sender: delivers due texts one at a time until shutdown. `wake` is notified when a
/// text is queued.
pub async fn run_sender(db: Db, gw: Gateway, wake: Arc<Notify>, shutdown: CancellationToken) {
    match campaigns::sms_fail_interrupted(&db, &now_ts()).await {
        Ok(0) => {}
        Ok(n) => warn!(
            texts = n,
            "SMS tries cut by the last stop are not repeated (the gateway may have them)"
        ),
        Err(e) => warn!(error = %e, "cannot check for interrupted SMS tries"),
    }
    if gw.url.scheme == Scheme::Http {
        warn!(url = %gw.url, "the SMS gateway is plain http://: its token and the texts cross the network in clear; use https://");
    }
    info!(url = %gw.url, "SMS fallback sender running");
    loop {
        if let Err(e) = pass(&db, &gw, &shutdown).await {
            warn!(error = %e, "SMS sender hit a database error; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Try every due text once.
async fn pass(db: &Db, gw: &Gateway, shutdown: &CancellationToken) -> Result<(), StoreError> {
    let cfg = &gw.config;
    loop {
        let due = campaigns::sms_due(db, &now_ts(), BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        for sms in due {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if !campaigns::sms_begin_try(db, sms.contact_id, sms.tries, &now_ts()).await? {
                continue;
            }
            let tries_made = (sms.tries + 1).max(1) as u32;
            let key = idempotency_key(sms.contact_id);
            let body = request_body(cfg, &sms);
            let result = tokio::select! {
                r = post(&gw.client, &gw.url, cfg.token.as_deref(), &key, &body) => r,
                // Left `sending`: the next start records it as failed, never sends it twice.
                _ = shutdown.cancelled() => return Ok(()),
            };
            let now = chrono::Utc::now();
            let stamp =
                |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            match next_after(&result, tries_made, cfg.max_tries, cfg.retry_s) {
                Next::Sent => {
                    campaigns::sms_end_try(
                        db,
                        sms.contact_id,
                        "sent",
                        None,
                        &stamp(now),
                        &stamp(now),
                    )
                    .await?;
                    info!(contact = sms.contact_id, to = %sms.phone, tries = tries_made, "SMS sent");
                }
                Next::Retry(after, reason) => {
                    let at = now + chrono::Duration::from_std(after).unwrap_or_default();
                    campaigns::sms_end_try(
                        db,
                        sms.contact_id,
                        "pending",
                        Some(&reason),
                        &stamp(at),
                        &stamp(now),
                    )
                    .await?;
                    warn!(contact = sms.contact_id, tries = tries_made, retry_in = ?after, %reason, "SMS not taken; retrying");
                }
                Next::Failed(reason) => {
                    campaigns::sms_end_try(
                        db,
                        sms.contact_id,
                        "failed",
                        Some(&reason),
                        &stamp(now),
                        &stamp(now),
                    )
                    .await?;
                    warn!(contact = sms.contact_id, tries = tries_made, %reason, "SMS failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_ticket_fields() {
        let mut t = HashMap::new();
        t.insert("customer_name".to_string(), "Ada".to_string());
        t.insert("order_id".to_string(), "A-17".to_string());
        t.insert("new_eta".to_string(), "2026-12-24".to_string());
        t.insert("delay_days".to_string(), "3".to_string());
        let s = render(
            "Hi ${name}: ${order_id} by ${new_date} (${delay_days} d) ${ticket.order_id} ${campaign} ${phone} ${nope}.",
            Some(&t),
            "+15550101",
            "late-nov",
        );
        assert_eq!(
            s,
            "Hi Ada: A-17 by 2026-12-24 (3 d) A-17 late-nov +15550101 ."
        );
        assert_eq!(render("${name}!", None, "+1", "c"), "!");
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1, 30), Duration::from_secs(30));
        assert_eq!(backoff(2, 30), Duration::from_secs(60));
        assert_eq!(backoff(3, 30), Duration::from_secs(120));
        assert_eq!(backoff(40, 30), Duration::from_secs(MAX_BACKOFF_S));
        assert_eq!(backoff(0, 0), Duration::from_secs(1));
    }

    fn gateway(url: String, ca_file: Option<std::path::PathBuf>) -> Gateway {
        Gateway::new(SmsGateway {
            url,
            from: "+15550100".into(),
            token: Some("gw-token".into()),
            text: "t".into(),
            max_tries: 3,
            retry_s: 1,
            timeout_s: 5,
            ca_file,
            inbound: None,
        })
        .expect("gateway")
    }

    async fn post_to(gw: &Gateway) -> PostResult {
        let body = serde_json::json!({"to": "+15550199", "text": "late"});
        post(
            &gw.client,
            &gw.url,
            gw.config.token.as_deref(),
            "switchboard-sms-7",
            &body,
        )
        .await
    }

    #[tokio::test]
    async fn delivers_over_https_to_a_gateway_signed_by_the_configured_ca() {
        use crate::http_client::test_server::{start, TestCa};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = ca.write_ca(dir.path());
        let srv = start(
            Some(&ca),
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )
        .await;
        let url = format!("https://localhost:{}/sms/send", srv.port);
        let result = post_to(&gateway(url.clone(), Some(ca_file))).await;
        assert_eq!(result, PostResult::Answered(202));
        assert_eq!(next_after(&result, 1, 3, 1), Next::Sent);
        let got = srv.requests();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].head.starts_with("POST /sms/send HTTP/1.1"));
        assert_eq!(got[0].header("authorization"), Some("Bearer gw-token"));
        assert_eq!(got[0].header("idempotency-key"), Some("switchboard-sms-7"));
        let body: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
        assert_eq!(body["to"], "+15550199");

        // Without the CA the same gateway is refused at the handshake: nothing is sent, the
        // reason is kept and the text is tried again later.
        let result = post_to(&gateway(url, None)).await;
        let PostResult::NotSent(reason) = &result else {
            panic!("expected NotSent, got {result:?}");
        };
        assert!(reason.contains("certificate"), "{reason}");
        assert!(matches!(
            next_after(&result, 1, 3, 1),
            Next::Retry(_, r) if r.contains("gateway unreachable") && r.contains("certificate")
        ));
        assert_eq!(srv.requests().len(), 1, "nothing more reached the gateway");
        assert_eq!(srv.refused_eventually(1).await, 1);
    }

    #[tokio::test]
    async fn a_500_is_retried_and_a_huge_answer_is_judged_by_its_status() {
        use crate::http_client::test_server::start;
        let srv = start(
            None,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno".to_vec(),
        )
        .await;
        let result = post_to(&gateway(format!("http://127.0.0.1:{}/sms", srv.port), None)).await;
        assert_eq!(result, PostResult::Answered(500));
        assert!(matches!(next_after(&result, 1, 3, 1), Next::Retry(..)));

        let mut huge = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n".to_vec();
        huge.resize(huge.len() + 10 * DEFAULT_MAX_BODY, b'z');
        let srv = start(None, huge).await;
        let result = post_to(&gateway(format!("http://127.0.0.1:{}/sms", srv.port), None)).await;
        assert_eq!(result, PostResult::Answered(202));
    }

    #[test]
    fn retries_only_when_the_gateway_surely_did_not_take_it() {
        assert_eq!(next_after(&PostResult::Answered(202), 1, 3, 2), Next::Sent);
        for code in [429, 500, 503] {
            assert_eq!(
                next_after(&PostResult::Answered(code), 1, 3, 2),
                Next::Retry(Duration::from_secs(2), format!("gateway answered {code}"))
            );
        }
        assert!(matches!(
            next_after(&PostResult::NotSent("refused".into()), 2, 3, 2),
            Next::Retry(d, _) if d == Duration::from_secs(4)
        ));
        // Out of tries.
        assert!(matches!(
            next_after(&PostResult::Answered(503), 3, 3, 2),
            Next::Failed(r) if r.contains("gave up after 3 tries")
        ));
        // A wrong request is not repeated; nor one the gateway may have taken.
        assert!(matches!(
            next_after(&PostResult::Answered(401), 1, 3, 2),
            Next::Failed(r) if r.contains("401")
        ));
        assert!(matches!(
            next_after(&PostResult::NoAnswer("timed out".into()), 1, 3, 2),
            Next::Failed(r) if r.contains("not retried")
        ));
    }
}
