//! `[sms]` and `[webhooks]`: how campaigns reach customers and systems beyond the call —
//! the SMS gateway (with replies to the notice) and the fallback webhooks.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

/// `[webhooks]`: how campaigns' fallback webhooks (`webhook_url`) are sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    pub(super) ca_file: Option<String>,
    pub(super) timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSms {
    pub(super) url: String,
    pub(super) from: String,
    pub(super) token: Option<String>,
    pub(super) text: Option<String>,
    pub(super) max_tries: Option<u32>,
    pub(super) retry_s: Option<u64>,
    pub(super) timeout_s: Option<u64>,
    pub(super) ca_file: Option<String>,
    /// HMAC key of `POST /api/sms/inbound` (replies to the notice); unset: replies off.
    pub(super) inbound_secret: Option<String>,
    pub(super) replay_window_s: Option<u64>,
    pub(super) help_text: Option<String>,
    /// `[sms.replies]`: choice -> words that choose it.
    pub(super) replies: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// The text a campaign's SMS fallback sends when neither the campaign's `sms_text` nor
/// `[sms] text` is given.
pub const DEFAULT_SMS_TEXT: &str = "Hello ${name}, your order ${order_id} is delayed; the new delivery date is ${new_date}. Call us to keep waiting or get a refund.";

/// The SMS gateway used by campaigns' SMS fallback (`[sms]`): a generic HTTP endpoint that
/// takes one JSON POST per text.
#[derive(Debug, Clone, PartialEq)]
pub struct SmsGateway {
    /// `https://HOST[:PORT]/PATH` (or `http://`) of the gateway.
    pub url: String,
    /// Sender number or name the gateway puts on the text.
    pub from: String,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Template (`${name}`, `${order_id}`, `${new_date}`, `${delay_days}`, `${phone}`,
    /// `${campaign}`, `${ticket.COLUMN}`).
    pub text: String,
    /// Requests per text before it is given up as failed (>= 1).
    pub max_tries: u32,
    /// Back-off before the second try; doubles per try, at most an hour.
    pub retry_s: u64,
    /// Bound on connecting to the gateway (TCP and TLS), and again on the exchange.
    pub timeout_s: u64,
    /// Extra trust anchors (PEM) for an `https://` gateway, beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Replies to the notice (`POST /api/sms/inbound`): set by `[sms] inbound_secret`.
    pub inbound: Option<crate::dialer::sms_reply::InboundConfig>,
}

/// How campaigns' fallback webhooks are sent (`[webhooks]`; defaults without it).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhooks {
    /// Extra trust anchors (PEM) for `https://` webhooks, beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Bound on connecting (TCP and TLS), and again on the exchange.
    pub timeout_s: u64,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks {
            ca_file: None,
            timeout_s: 10,
        }
    }
}

/// Check `[sms]`; None: no SMS fallback.
pub(super) fn sms(
    raw: Option<&Spanned<RawSms>>,
    s: &Source<'_>,
) -> Result<Option<SmsGateway>, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let sms = match raw {
        None => None,
        Some(sp) => {
            let at = sp.span().start;
            let r = sp.get_ref();
            if let Err(e) = crate::http_client::Url::parse(&r.url) {
                return Err(err(
                    at,
                    format!("[sms] url must be an https:// or http:// URL: {e}"),
                ));
            }
            if r.from.trim().is_empty() {
                return Err(err(at, "[sms] from must not be empty".into()));
            }
            let text = r.text.clone().unwrap_or_else(|| DEFAULT_SMS_TEXT.into());
            if text.trim().is_empty() || !crate::ivr::expr::template_is_valid(&text) {
                return Err(err(
                    at,
                    "[sms] text must be a non-empty template (${name} ...)".into(),
                ));
            }
            let max_tries = r.max_tries.unwrap_or(5);
            if !(1..=20).contains(&max_tries) {
                return Err(err(at, "[sms] max_tries must be 1..=20".into()));
            }
            let timeout_s = r.timeout_s.unwrap_or(10);
            if !(1..=120).contains(&timeout_s) {
                return Err(err(at, "[sms] timeout_s must be 1..=120".into()));
            }
            let inbound = match r.inbound_secret.as_deref() {
                None => None,
                Some(secret) if secret.len() < 16 => {
                    return Err(err(
                        at,
                        "[sms] inbound_secret must be at least 16 characters".into(),
                    ));
                }
                Some(secret) => {
                    let replay_window_s = r.replay_window_s.unwrap_or(300);
                    if !(10..=3600).contains(&replay_window_s) {
                        return Err(err(at, "[sms] replay_window_s must be 10..=3600".into()));
                    }
                    let help_text = r
                        .help_text
                        .clone()
                        .unwrap_or_else(|| crate::dialer::sms_reply::DEFAULT_HELP_TEXT.into());
                    if help_text.trim().is_empty() {
                        return Err(err(at, "[sms] help_text must not be empty".into()));
                    }
                    let replies = crate::dialer::sms_reply::InboundConfig::replies_from(
                        &r.replies.clone().unwrap_or_default(),
                    )
                    .map_err(|e| err(at, e))?;
                    Some(crate::dialer::sms_reply::InboundConfig {
                        secret: secret.to_string(),
                        replay_window_s,
                        replies,
                        help_text,
                    })
                }
            };
            if inbound.is_none() && (r.replies.is_some() || r.help_text.is_some()) {
                return Err(err(
                    at,
                    "[sms] replies/help_text need inbound_secret (replies are off without it)"
                        .into(),
                ));
            }
            Some(SmsGateway {
                inbound,
                url: r.url.clone(),
                from: r.from.clone(),
                token: r.token.clone().filter(|t| !t.is_empty()),
                text,
                max_tries,
                retry_s: r.retry_s.unwrap_or(30).clamp(1, 3600),
                timeout_s,
                ca_file: r.ca_file.as_ref().map(PathBuf::from),
            })
        }
    };
    Ok(sms)
}

/// Check `[webhooks]` (defaults without it).
pub(super) fn webhooks(
    raw: Option<&Spanned<RawWebhooks>>,
    s: &Source<'_>,
) -> Result<Webhooks, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let webhooks = match raw {
        None => Webhooks::default(),
        Some(sp) => {
            let r = sp.get_ref();
            let timeout_s = r.timeout_s.unwrap_or(10);
            if !(1..=120).contains(&timeout_s) {
                return Err(err(
                    sp.span().start,
                    "[webhooks] timeout_s must be 1..=120".into(),
                ));
            }
            Webhooks {
                ca_file: r.ca_file.as_ref().map(PathBuf::from),
                timeout_s,
            }
        }
    };
    Ok(webhooks)
}
