//! SMS fallback: after a contact's last failed attempt the campaign runner queues one text
//! (`campaign_sms`, keyed by the contact, so at most one per contact, also across restarts);
//! this module renders it and a sender task delivers it through a generic HTTP SMS gateway
//! (`[sms]` in the config), off the call path.
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

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SmsGateway;
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

/// One HTTP/1.1 POST (http:// only), bounded by `timeout` as a whole.
pub async fn post(
    url: &str,
    token: Option<&str>,
    key: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> PostResult {
    let Some(rest) = url.strip_prefix("http://") else {
        return PostResult::NotSent("only http:// gateways".into());
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let connect = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await;
    let mut s = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return PostResult::NotSent(format!("connect {addr}: {e}")),
        Err(_) => return PostResult::NotSent(format!("connect {addr}: timed out")),
    };
    let payload = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n{auth}\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        // The status line is all we need; read until it is complete.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => PostResult::NoAnswer(format!("timed out after {timeout:?}")),
        Ok(Err(e)) => PostResult::NoAnswer(e.to_string()),
        Ok(Ok(buf)) => {
            let head = String::from_utf8_lossy(&buf);
            let status = head
                .lines()
                .next()
                .filter(|l| l.starts_with("HTTP/1."))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|c| c.parse::<u16>().ok());
            match status {
                Some(code) => PostResult::Answered(code),
                None => PostResult::NoAnswer("no HTTP status line in the answer".into()),
            }
        }
    }
}

/// The sender: delivers due texts one at a time until shutdown. `wake` is notified when a
/// text is queued.
pub async fn run_sender(db: Db, gw: SmsGateway, wake: Arc<Notify>, shutdown: CancellationToken) {
    match campaigns::sms_fail_interrupted(&db, &now_ts()).await {
        Ok(0) => {}
        Ok(n) => warn!(
            texts = n,
            "SMS tries cut by the last stop are not repeated (the gateway may have them)"
        ),
        Err(e) => warn!(error = %e, "cannot check for interrupted SMS tries"),
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
async fn pass(db: &Db, gw: &SmsGateway, shutdown: &CancellationToken) -> Result<(), StoreError> {
    let timeout = Duration::from_secs(gw.timeout_s);
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
            let body = request_body(gw, &sms);
            let result = tokio::select! {
                r = post(&gw.url, gw.token.as_deref(), &key, &body, timeout) => r,
                // Left `sending`: the next start records it as failed, never sends it twice.
                _ = shutdown.cancelled() => return Ok(()),
            };
            let now = chrono::Utc::now();
            let stamp =
                |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            match next_after(&result, tries_made, gw.max_tries, gw.retry_s) {
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
