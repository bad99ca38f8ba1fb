//! How a call ended, as typed values: the [`Disposition`] (`call_records.disposition`,
//! `campaign_attempts.disposition`, the dialer's retry rules, the `/metrics` label) and the
//! [`HangupCause`] (`call_records.hangup_cause`).
//!
//! A leaf module (nothing of the crate imported) so that the call actor, the dialer and the
//! store's callers share one vocabulary without importing each other. The strings are a
//! public contract (docs/schema.md, the API's JSON, the CSV export): `as_str` gives exactly
//! what was written before these types existed. A disposition parses from exactly those
//! strings (anything else is an error); a hangup cause may be any text (a dialplan's own
//! `cause`), so its parse is total and gives back the text it was given.

use std::borrow::Cow;
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

/// Why a call ended (`call_records.hangup_cause`, docs/schema.md). Most causes are fixed
/// names; three carry a part (`sip_NNN`, `queue_<reason>`, `callback_<reason>`), and a
/// dialplan's `hangup` step may name any cause, written verbatim ([`HangupCause::Custom`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HangupCause {
    CallerHangup,
    AgentHangup,
    /// A browser agent's page and media vanished mid-call (ICE consent lost, page closed).
    AgentLost,
    /// A dialplan `hangup` step without a `cause` (the interpreter's `normal`).
    DialplanHangup,
    CallbackRequested,
    FeatureCode,
    StepBudget,
    DialplanError,
    NoDialplan,
    MediaTimeout,
    AckTimeout,
    SessionExpired,
    RefreshFailed,
    SessionIntervalTooSmall,
    IncompatibleMedia,
    Shutdown,
    CallerCancel,
    NoRtpPort,
    /// The RTP socket was gone when media had to start.
    NoRtpSocket,
    RingTimeout,
    CancelTimeout,
    TrunkTimeout,
    /// The trunk (or the agent's flow) could not be reached to send the INVITE.
    TransportError,
    ActorStopped,
    ServerRestart,
    NodeDead,
    /// An answering machine: the voicemail message was played to the end.
    VoicemailLeft,
    /// An answering machine, hung up on (`[amd]` handling `hangup`).
    AnsweringMachine,
    /// An agent leg whose caller went away.
    CallerGone,
    /// An agent leg withdrawn while ringing (its caller went away).
    Cancelled,
    /// `sip_NNN`: the trunk's final status.
    Sip(u16),
    /// `queue_<reason>`: a transferred caller the new queue did not serve.
    Queue(String),
    /// `callback_<reason>`: a parked callback that lost its place in line.
    Callback(String),
    /// A dialplan `hangup` step's own `cause`, verbatim.
    Custom(String),
}

impl HangupCause {
    /// Every cause with a fixed name.
    pub const NAMED: [HangupCause; 30] = [
        HangupCause::CallerHangup,
        HangupCause::AgentHangup,
        HangupCause::AgentLost,
        HangupCause::DialplanHangup,
        HangupCause::CallbackRequested,
        HangupCause::FeatureCode,
        HangupCause::StepBudget,
        HangupCause::DialplanError,
        HangupCause::NoDialplan,
        HangupCause::MediaTimeout,
        HangupCause::AckTimeout,
        HangupCause::SessionExpired,
        HangupCause::RefreshFailed,
        HangupCause::SessionIntervalTooSmall,
        HangupCause::IncompatibleMedia,
        HangupCause::Shutdown,
        HangupCause::CallerCancel,
        HangupCause::NoRtpPort,
        HangupCause::NoRtpSocket,
        HangupCause::RingTimeout,
        HangupCause::CancelTimeout,
        HangupCause::TrunkTimeout,
        HangupCause::TransportError,
        HangupCause::ActorStopped,
        HangupCause::ServerRestart,
        HangupCause::NodeDead,
        HangupCause::VoicemailLeft,
        HangupCause::AnsweringMachine,
        HangupCause::CallerGone,
        HangupCause::Cancelled,
    ];

    /// The database spelling.
    pub fn as_str(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            HangupCause::Sip(code) => return Cow::Owned(format!("sip_{code}")),
            HangupCause::Queue(reason) => return Cow::Owned(format!("queue_{reason}")),
            HangupCause::Callback(reason) => return Cow::Owned(format!("callback_{reason}")),
            HangupCause::Custom(c) => c,
            HangupCause::CallerHangup => "caller_hangup",
            HangupCause::AgentHangup => "agent_hangup",
            HangupCause::AgentLost => "agent_lost",
            HangupCause::DialplanHangup => "dialplan_hangup",
            HangupCause::CallbackRequested => "callback_requested",
            HangupCause::FeatureCode => "feature_code",
            HangupCause::StepBudget => "step_budget",
            HangupCause::DialplanError => "dialplan_error",
            HangupCause::NoDialplan => "no_dialplan",
            HangupCause::MediaTimeout => "media_timeout",
            HangupCause::AckTimeout => "ack_timeout",
            HangupCause::SessionExpired => "session_expired",
            HangupCause::RefreshFailed => "refresh_failed",
            HangupCause::SessionIntervalTooSmall => "session_interval_too_small",
            HangupCause::IncompatibleMedia => "incompatible_media",
            HangupCause::Shutdown => "shutdown",
            HangupCause::CallerCancel => "caller_cancel",
            HangupCause::NoRtpPort => "no_rtp_port",
            HangupCause::NoRtpSocket => "no_rtp_socket",
            HangupCause::RingTimeout => "ring_timeout",
            HangupCause::CancelTimeout => "cancel_timeout",
            HangupCause::TrunkTimeout => "trunk_timeout",
            HangupCause::TransportError => "transport_error",
            HangupCause::ActorStopped => "actor_stopped",
            HangupCause::ServerRestart => "server_restart",
            HangupCause::NodeDead => "node_dead",
            HangupCause::VoicemailLeft => "voicemail_left",
            HangupCause::AnsweringMachine => "answering_machine",
            HangupCause::CallerGone => "caller_gone",
            HangupCause::Cancelled => "cancelled",
        })
    }

    /// A cause as written: a fixed name, `sip_NNN` (canonical digits only), `queue_…`,
    /// `callback_…`, else a custom cause. Total (any text is a valid custom cause), and
    /// `parse(s).as_str() == s` for every `s`.
    pub fn parse(s: &str) -> HangupCause {
        if let Some(v) = Self::NAMED.into_iter().find(|v| v.as_str() == s) {
            return v;
        }
        if let Some(code) = s
            .strip_prefix("sip_")
            .and_then(|d| d.parse::<u16>().ok())
            .filter(|c| format!("sip_{c}") == s)
        {
            return HangupCause::Sip(code);
        }
        if let Some(r) = s.strip_prefix("queue_") {
            return HangupCause::Queue(r.to_string());
        }
        if let Some(r) = s.strip_prefix("callback_") {
            return HangupCause::Callback(r.to_string());
        }
        HangupCause::Custom(s.to_string())
    }

    /// The cause of a dialplan `hangup` step: the interpreter's `normal` (no `cause` given)
    /// is `dialplan_hangup`; any other is kept as written.
    pub fn from_dialplan(cause: &str) -> HangupCause {
        if cause == "normal" {
            HangupCause::DialplanHangup
        } else {
            HangupCause::parse(cause)
        }
    }
}

impl FromStr for HangupCause {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl fmt::Display for HangupCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
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
    fn hangup_causes_round_trip_with_todays_strings() {
        // Every fixed name as docs/schema.md and the code wrote it before the type.
        let names: Vec<String> = HangupCause::NAMED.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            names,
            [
                "caller_hangup",
                "agent_hangup",
                "agent_lost",
                "dialplan_hangup",
                "callback_requested",
                "feature_code",
                "step_budget",
                "dialplan_error",
                "no_dialplan",
                "media_timeout",
                "ack_timeout",
                "session_expired",
                "refresh_failed",
                "session_interval_too_small",
                "incompatible_media",
                "shutdown",
                "caller_cancel",
                "no_rtp_port",
                "no_rtp_socket",
                "ring_timeout",
                "cancel_timeout",
                "trunk_timeout",
                "transport_error",
                "actor_stopped",
                "server_restart",
                "node_dead",
                "voicemail_left",
                "answering_machine",
                "caller_gone",
                "cancelled",
            ]
        );
        for v in HangupCause::NAMED {
            assert_eq!(HangupCause::parse(&v.as_str()), v);
            assert_eq!(v.as_str().parse::<HangupCause>(), Ok(v.clone()));
        }
        for (v, s) in [
            (HangupCause::Sip(486), "sip_486"),
            (HangupCause::Sip(503), "sip_503"),
            (HangupCause::Queue("no_agents".into()), "queue_no_agents"),
            (HangupCause::Queue("timeout".into()), "queue_timeout"),
            (HangupCause::Callback("full".into()), "callback_full"),
            (HangupCause::Custom("wrong_number".into()), "wrong_number"),
        ] {
            assert_eq!(v.as_str(), s);
            assert_eq!(HangupCause::parse(s), v);
        }
    }

    #[test]
    fn any_other_cause_is_custom_and_kept_verbatim() {
        for s in [
            "",
            "sip_",
            "sip_0486",
            "sip_99999",
            "sip_4x",
            "Shutdown",
            "no answer",
        ] {
            assert_eq!(HangupCause::parse(s), HangupCause::Custom(s.to_string()));
            assert_eq!(HangupCause::parse(s).as_str(), s);
        }
        assert_eq!(
            HangupCause::from_dialplan("normal"),
            HangupCause::DialplanHangup
        );
        assert_eq!(
            HangupCause::from_dialplan("step_budget"),
            HangupCause::StepBudget
        );
        assert_eq!(
            HangupCause::from_dialplan("customer_angry"),
            HangupCause::Custom("customer_angry".into())
        );
        // `normal` is only the interpreter's word: a stored `normal` stays as written.
        assert_eq!(HangupCause::parse("normal").as_str(), "normal");
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
