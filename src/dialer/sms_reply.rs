//! SMS replies to the delay notice (`POST /api/sms/inbound`): the sans-IO part.
//!
//! The gateway forwards each inbound text as JSON (`id`, `from`, `text`), signed with the
//! shared `[sms] inbound_secret`: `X-Switchboard-Timestamp: <unix seconds>` and
//! `X-Switchboard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The
//! timestamp is inside the MAC, so a captured request cannot be replayed once it is older
//! than the replay window; within the window a re-delivery carries the same message `id` and
//! is recorded once (the store keys replies by it).
//!
//! A reply is matched to a choice by a configurable word list (`[sms.replies]`): the same
//! choices a keypad menu records (`call_outcomes.choice`), so the ticket moves exactly as it
//! would after a call. Anything else is not understood and gets the help text once.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Header with the sender's Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";
/// Header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
/// Longest accepted gateway message id.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted reply text (a long text is no menu answer anyway).
pub const MAX_TEXT_LEN: usize = 1000;

/// What a reply chose: the keypad outcomes an SMS can record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplyChoice {
    /// Keep waiting (keypad 1).
    Wait,
    /// A full refund (keypad 2).
    Refund,
    /// An agent calls back (keypad 0 when no agent is free; by SMS always a callback).
    Callback,
    /// No more notices (keypad 8; "STOP").
    OptOut,
}

impl ReplyChoice {
    pub const ALL: [ReplyChoice; 4] = [
        ReplyChoice::Wait,
        ReplyChoice::Refund,
        ReplyChoice::Callback,
        ReplyChoice::OptOut,
    ];

    /// The `call_outcomes.choice` value (the contract shared with keypad outcomes).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyChoice::Wait => "wait",
            ReplyChoice::Refund => "refund",
            ReplyChoice::Callback => "callback",
            ReplyChoice::OptOut => "opt_out",
        }
    }

    pub fn parse(s: &str) -> Option<ReplyChoice> {
        ReplyChoice::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The words understood for this choice when `[sms.replies]` does not list it.
    pub fn default_words(self) -> &'static [&'static str] {
        match self {
            ReplyChoice::Wait => &["1", "等", "等待", "继续等待", "wait"],
            ReplyChoice::Refund => &["2", "退款", "退", "refund"],
            ReplyChoice::Callback => &["0", "人工", "客服", "回电", "agent", "call me"],
            ReplyChoice::OptOut => &["8", "退订", "stop", "unsubscribe"],
        }
    }
}

/// The help text sent once for a reply that is not understood (both languages).
pub const DEFAULT_HELP_TEXT: &str = "回复 1 继续等待，2 退款，0 客服回电，退订 不再通知。\
Reply 1 to keep waiting, 2 for a refund, 0 for a call back, STOP to opt out.";

/// `[sms]` settings for inbound replies.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundConfig {
    /// The HMAC key shared with the gateway.
    pub secret: String,
    /// How far the signed timestamp may be from our clock, either way.
    pub replay_window_s: u64,
    /// Normalised word -> choice.
    pub replies: BTreeMap<String, ReplyChoice>,
    pub help_text: String,
}

impl InboundConfig {
    /// The word table: the defaults, with each choice `overrides` names replaced by its list.
    /// Err names the word that two choices claim, or a choice that does not exist.
    pub fn replies_from(
        overrides: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, ReplyChoice>, String> {
        let mut table = BTreeMap::new();
        for (name, _) in overrides.iter() {
            if ReplyChoice::parse(name).is_none() {
                return Err(format!(
                    "[sms.replies] {name}: not a choice (wait, refund, callback, opt_out)"
                ));
            }
        }
        for choice in ReplyChoice::ALL {
            let words: Vec<String> = match overrides.get(choice.as_str()) {
                Some(w) => w.clone(),
                None => choice
                    .default_words()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            for w in words {
                let n = normalize(&w);
                if n.is_empty() {
                    return Err(format!("[sms.replies] {}: empty word", choice.as_str()));
                }
                if let Some(other) = table.insert(n.clone(), choice) {
                    if other != choice {
                        return Err(format!(
                            "[sms.replies] {n:?} is listed for both {} and {}",
                            other.as_str(),
                            choice.as_str()
                        ));
                    }
                }
            }
        }
        Ok(table)
    }

    /// What a reply chose, None when it is not understood.
    pub fn choice(&self, text: &str) -> Option<ReplyChoice> {
        self.replies.get(&normalize(text)).copied()
    }
}

/// A reply as compared with the word list: trimmed (also of the ideographic space and
/// closing punctuation people add), full-width digits and letters made ASCII, lower case,
/// inner runs of white space made one space.
pub fn normalize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            // Full-width ASCII (FF01..FF5E) as typed by Chinese input methods.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '.' | '!' | '?' | ',' | '。' | '，' | '！' | '？' | '~')
    });
    trimmed
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Why a request was not accepted as coming from the gateway (401, this text as the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("X-Switchboard-Timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("timestamp outside the replay window ({skew_s} s from now, at most {window_s} s)")]
    Stale { skew_s: i64, window_s: u64 },
    #[error("X-Switchboard-Signature must be sha256=<64 hex digits>")]
    BadSignatureFormat,
    #[error("signature does not match")]
    BadSignature,
}

/// The signature a sender puts on `body` at `timestamp` (also what the tests sign with).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = mac(secret, timestamp);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(secret: &str, timestamp: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(timestamp.as_bytes());
    m.update(b".");
    m
}

/// Check a request's signature headers against `body`, at `now_unix`. The MAC comparison is
/// constant-time (`Mac::verify_slice`); the timestamp is checked after it, so an unsigned
/// request learns nothing about the window.
pub fn verify(
    cfg: &InboundConfig,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), AuthError> {
    let timestamp = timestamp.ok_or(AuthError::Missing("X-Switchboard-Timestamp"))?;
    let signature = signature.ok_or(AuthError::Missing("X-Switchboard-Signature"))?;
    let digest = signature
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(AuthError::BadSignatureFormat)?;
    let mut m = mac(&cfg.secret, timestamp);
    m.update(body);
    m.verify_slice(&digest)
        .map_err(|_| AuthError::BadSignature)?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AuthError::BadTimestamp)?;
    let skew_s = now_unix.saturating_sub(at);
    if skew_s.unsigned_abs() > cfg.replay_window_s {
        return Err(AuthError::Stale {
            skew_s,
            window_s: cfg.replay_window_s,
        });
    }
    Ok(())
}

/// The gateway's JSON for one inbound text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Inbound {
    /// The gateway's message id: a re-delivery has the same one.
    pub id: String,
    /// The customer's number (E.164).
    pub from: String,
    /// Our number the text was sent to (informational).
    #[serde(default)]
    pub to: Option<String>,
    pub text: String,
}

/// Why a body is not an inbound text (400, this text as the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not the inbound JSON (id, from, text): {0}")]
    Json(String),
    #[error("id must be 1..={MAX_ID_LEN} printable characters")]
    Id,
    #[error("from must be an E.164 number (+ and 6..=15 digits)")]
    From,
    #[error("text must be at most {MAX_TEXT_LEN} characters")]
    Text,
}

/// Parse and check an inbound body.
pub fn parse(body: &[u8]) -> Result<Inbound, ParseError> {
    let m: Inbound = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if m.id.is_empty() || m.id.len() > MAX_ID_LEN || !m.id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::Id);
    }
    let digits = m.from.strip_prefix('+').unwrap_or("");
    if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::From);
    }
    if m.text.chars().count() > MAX_TEXT_LEN {
        return Err(ParseError::Text);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> InboundConfig {
        InboundConfig {
            secret: "s3cret".into(),
            replay_window_s: 300,
            replies: InboundConfig::replies_from(&BTreeMap::new()).expect("defaults"),
            help_text: DEFAULT_HELP_TEXT.into(),
        }
    }

    #[test]
    fn replies_in_both_languages_map_to_keypad_choices() {
        let c = cfg();
        for (text, want) in [
            ("1", Some(ReplyChoice::Wait)),
            (" 1。", Some(ReplyChoice::Wait)),
            ("１", Some(ReplyChoice::Wait)), // full-width digit
            ("等", Some(ReplyChoice::Wait)),
            ("2", Some(ReplyChoice::Refund)),
            ("退款！", Some(ReplyChoice::Refund)),
            ("Refund", Some(ReplyChoice::Refund)),
            ("0", Some(ReplyChoice::Callback)),
            ("人工", Some(ReplyChoice::Callback)),
            ("Call  me", Some(ReplyChoice::Callback)),
            ("STOP", Some(ReplyChoice::OptOut)),
            ("退订", Some(ReplyChoice::OptOut)),
            ("3", None),
            ("12", None),
            ("", None),
            ("where is my parcel", None),
        ] {
            assert_eq!(c.choice(text), want, "{text:?}");
        }
        assert_eq!(ReplyChoice::Refund.as_str(), "refund");
        for ch in ReplyChoice::ALL {
            assert!(
                crate::ivr::dialplan::OUTCOME_CHOICES.contains(&ch.as_str()),
                "{ch:?} is a call_outcomes choice"
            );
        }
    }

    #[test]
    fn the_word_table_is_configurable_and_checked() {
        let mut o = BTreeMap::new();
        o.insert(
            "refund".to_string(),
            vec!["R".to_string(), "我要退款".to_string()],
        );
        let t = InboundConfig::replies_from(&o).expect("table");
        assert_eq!(t.get("r"), Some(&ReplyChoice::Refund));
        assert_eq!(t.get("我要退款"), Some(&ReplyChoice::Refund));
        assert_eq!(t.get("2"), None, "the refund list was replaced");
        assert_eq!(t.get("1"), Some(&ReplyChoice::Wait), "others keep defaults");

        o.insert("wait".to_string(), vec!["r".to_string()]);
        let e = InboundConfig::replies_from(&o).expect_err("clash");
        assert!(e.contains("both"), "{e}");
        let mut o = BTreeMap::new();
        o.insert("maybe".to_string(), vec!["x".to_string()]);
        assert!(InboundConfig::replies_from(&o)
            .expect_err("unknown")
            .contains("not a choice"));
        let mut o = BTreeMap::new();
        o.insert("wait".to_string(), vec![" ".to_string()]);
        assert!(InboundConfig::replies_from(&o)
            .expect_err("empty")
            .contains("empty"));
    }

    #[test]
    fn signatures_are_checked_with_the_timestamp_inside() {
        let c = cfg();
        let body = br#"{"id":"m1","from":"+8613800000001","text":"2"}"#;
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = sign("s3cret", &ts, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(verify(&c, Some(&ts), Some(&sig), body, now), Ok(()));
        // Within the window, either way.
        assert_eq!(verify(&c, Some(&ts), Some(&sig), body, now + 300), Ok(()));
        assert_eq!(verify(&c, Some(&ts), Some(&sig), body, now - 300), Ok(()));
        // A replay after the window.
        assert_eq!(
            verify(&c, Some(&ts), Some(&sig), body, now + 301),
            Err(AuthError::Stale {
                skew_s: 301,
                window_s: 300
            })
        );
        // The body, the timestamp or the key changed.
        let other = br#"{"id":"m1","from":"+8613800000001","text":"1"}"#;
        assert_eq!(
            verify(&c, Some(&ts), Some(&sig), other, now),
            Err(AuthError::BadSignature)
        );
        let later = (now + 10).to_string();
        assert_eq!(
            verify(&c, Some(&later), Some(&sig), body, now),
            Err(AuthError::BadSignature)
        );
        let forged = sign("guess", &ts, body);
        assert_eq!(
            verify(&c, Some(&ts), Some(&forged), body, now),
            Err(AuthError::BadSignature)
        );
        // Missing or malformed headers.
        assert_eq!(
            verify(&c, None, Some(&sig), body, now),
            Err(AuthError::Missing("X-Switchboard-Timestamp"))
        );
        assert_eq!(
            verify(&c, Some(&ts), None, body, now),
            Err(AuthError::Missing("X-Switchboard-Signature"))
        );
        assert_eq!(
            verify(&c, Some(&ts), Some("md5=abc"), body, now),
            Err(AuthError::BadSignatureFormat)
        );
        let signed_junk = sign("s3cret", "soon", body);
        assert_eq!(
            verify(&c, Some("soon"), Some(&signed_junk), body, now),
            Err(AuthError::BadTimestamp)
        );
    }

    #[test]
    fn bodies_are_checked() {
        let ok = parse(
            r#"{"id":"m-1","from":"+8613800000001","to":"+15550100","text":"退款"}"#.as_bytes(),
        )
        .expect("ok");
        assert_eq!(ok.text, "退款");
        assert_eq!(ok.to.as_deref(), Some("+15550100"));
        for (body, want) in [
            (&b"not json"[..], "not the inbound JSON"),
            (
                br#"{"id":"m","from":"+8613800000001"}"#,
                "not the inbound JSON",
            ),
            (
                br#"{"id":"","from":"+8613800000001","text":"1"}"#,
                "id must",
            ),
            (
                br#"{"id":"a b","from":"+8613800000001","text":"1"}"#,
                "id must",
            ),
            (
                br#"{"id":"m","from":"8613800000001","text":"1"}"#,
                "from must",
            ),
            (br#"{"id":"m","from":"+86-138","text":"1"}"#, "from must"),
        ] {
            let e = parse(body).expect_err("bad");
            assert!(
                e.to_string().contains(want),
                "{e} for {:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(
            r#"{{"id":"m","from":"+8613800000001","text":"{}"}}"#,
            "x".repeat(MAX_TEXT_LEN + 1)
        );
        assert_eq!(parse(long.as_bytes()), Err(ParseError::Text));
    }
}
