//! How a call ended, as typed values: the [`Disposition`] (`call_records.disposition`,
//! `campaign_attempts.disposition`, the dialer's retry rules, the `/metrics` label) and the
//! [`HangupCause`] (`call_records.hangup_cause`).
//!
//! A leaf module (nothing of the crate imported) so that the call actor, the dialer and the
//! store's callers share one vocabulary without importing each other. The strings are a
//! public contract (docs/schema.md, the API's JSON, the CSV export): `as_str` gives exactly
//! what was written before these types existed, and parsing accepts exactly those strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that names no [`Disposition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disposition {0:?}")]
pub struct UnknownDisposition(pub String);

/// How a call (or a campaign attempt) ended. Database names:
/// answered|busy|no_answer|failed|machine|cancelled|interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A human answered (the IVR outcome tells what they chose).
    Answered,
    Busy,
    NoAnswer,
    /// Network / trunk failure, invalid number, rejected.
    Failed,
    /// Answering machine detected.
    Machine,
    /// Withdrawn before an answer: the caller's CANCEL (inbound), or ours (campaign paused
    /// or stopped, shutdown drain).
    Cancelled,
    /// The server stopped during the call (found unfinished at recovery), or the call's task
    /// ended without recording its end.
    Interrupted,
}

impl Disposition {
    pub const ALL: [Disposition; 7] = [
        Disposition::Answered,
        Disposition::Busy,
        Disposition::NoAnswer,
        Disposition::Failed,
        Disposition::Machine,
        Disposition::Cancelled,
        Disposition::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no_answer",
            Disposition::Failed => "failed",
            Disposition::Machine => "machine",
            Disposition::Cancelled => "cancelled",
            Disposition::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownDisposition> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDisposition(s.to_string()))
    }

    /// An outbound INVITE's final failure status (RFC 3261 §21): busy, not answered, or
    /// anything else (docs/schema.md, "Outbound (campaign) call").
    pub fn for_sip_failure(code: u16) -> Disposition {
        match code {
            486 | 600 | 603 => Disposition::Busy,
            408 | 480 | 487 => Disposition::NoAnswer,
            _ => Disposition::Failed,
        }
    }
}

impl FromStr for Disposition {
    type Err = UnknownDisposition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_round_trips_with_todays_strings() {
        let names: Vec<&str> = Disposition::ALL.iter().map(|d| d.as_str()).collect();
        // The database's, the API's and the CSV's values (docs/schema.md).
        assert_eq!(
            names,
            [
                "answered",
                "busy",
                "no_answer",
                "failed",
                "machine",
                "cancelled",
                "interrupted"
            ]
        );
        for d in Disposition::ALL {
            assert_eq!(Disposition::parse(d.as_str()), Ok(d));
            assert_eq!(d.to_string().parse::<Disposition>(), Ok(d));
            let json = serde_json::to_string(&d).expect("json");
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Disposition>(&json).expect("back"), d);
        }
    }

    #[test]
    fn unknown_disposition_is_an_error() {
        for s in [
            "",
            "NoAnswer",
            "Answered",
            "no-answer",
            "completed",
            "answered ",
        ] {
            assert_eq!(
                Disposition::parse(s),
                Err(UnknownDisposition(s.to_string()))
            );
        }
        assert!(serde_json::from_str::<Disposition>("\"completed\"").is_err());
    }

    #[test]
    fn sip_failures() {
        assert_eq!(Disposition::for_sip_failure(486), Disposition::Busy);
        assert_eq!(Disposition::for_sip_failure(600), Disposition::Busy);
        assert_eq!(Disposition::for_sip_failure(603), Disposition::Busy);
        assert_eq!(Disposition::for_sip_failure(408), Disposition::NoAnswer);
        assert_eq!(Disposition::for_sip_failure(480), Disposition::NoAnswer);
        assert_eq!(Disposition::for_sip_failure(487), Disposition::NoAnswer);
        assert_eq!(Disposition::for_sip_failure(503), Disposition::Failed);
        assert_eq!(Disposition::for_sip_failure(404), Disposition::Failed);
    }
}
