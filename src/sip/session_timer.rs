//! RFC 4028 session timers for dialogs we answer (UAS), as a sans-IO core.
//!
//! Inputs are the headers of the INVITE, of each refresh (re-INVITE or UPDATE) and of the
//! answers to our own refreshes, plus `now`; outputs are the header values to put in our
//! 2xx (or the 422), the next deadline and the events "refresh due" (we are the refresher:
//! send one at SE/2) and "expired" (the peer is the refresher and stayed silent until
//! SE − min(32 s, SE/3), RFC 4028 §10: send BYE). The call actor owns the I/O and only
//! feeds this core from its single deadline; the logic is tested here in virtual time.

use std::time::{Duration, Instant};

use crate::sip::message::{HeaderName, Message};

/// The RFC 4028 §4 floor for Min-SE. Config may go lower (tests), never to zero.
pub const RFC_MIN_SE: u32 = 90;

/// `Session-Expires` (compact form `x`, RFC 4028 §4).
pub fn session_expires_name() -> HeaderName {
    HeaderName::Other("Session-Expires".into())
}

pub fn min_se_name() -> HeaderName {
    HeaderName::Other("Min-SE".into())
}

/// Our limits (`[server] session_expires_s`, `session_min_se_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The interval we prefer (we lower a larger request to this).
    pub session_expires: u32,
    /// The smallest interval we accept; smaller requests get 422 with this as Min-SE.
    pub min_se: u32,
}

/// Who refreshes the session (RFC 4028 §7.1 `refresher` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A parsed `Session-Expires` value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let delta = parts.next()?.trim().parse::<u32>().ok()?;
        let mut refresher = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("refresher") {
                    refresher = match v.trim().to_ascii_lowercase().as_str() {
                        "uac" => Some(Refresher::Uac),
                        "uas" => Some(Refresher::Uas),
                        _ => None,
                    };
                }
            }
        }
        Some(SessionExpires { delta, refresher })
    }
}

/// The Session-Expires of a message, long or compact name.
pub fn session_expires_of(msg: &Message) -> Option<SessionExpires> {
    msg.header(&session_expires_name())
        .or_else(|| msg.header(&HeaderName::Other("x".into())))
        .and_then(SessionExpires::parse)
}

/// Whether `msg` lists `option` in Supported (compact `k` is expanded by the parser).
pub fn supports(msg: &Message, option: &str) -> bool {
    msg.header_values(&HeaderName::Supported)
        .any(|v| v.trim().eq_ignore_ascii_case(option))
}

/// Whether `msg`'s Allow lists `method`.
pub fn allows(msg: &Message, method: &str) -> bool {
    msg.header_values(&HeaderName::Allow)
        .any(|v| v.trim().eq_ignore_ascii_case(method))
}

/// What to answer to a request that may ask for a session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The peer did not ask (no Session-Expires): no timer, no headers.
    NoTimer,
    /// `422 Session Interval Too Small` with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// 2xx with `Session-Expires: interval;refresher=...`, plus `Require: timer` when set.
    Timer {
        interval: u32,
        refresher: Refresher,
        require_timer: bool,
    },
}

impl Answer {
    /// Headers for the 2xx (or the 422) answering the request.
    pub fn headers(&self) -> Vec<(HeaderName, String)> {
        match *self {
            Answer::NoTimer => Vec::new(),
            Answer::TooSmall { min_se } => vec![(min_se_name(), min_se.to_string())],
            Answer::Timer {
                interval,
                refresher,
                require_timer,
            } => {
                let mut h = vec![(
                    session_expires_name(),
                    format!("{interval};refresher={}", refresher.as_str()),
                )];
                if require_timer {
                    h.push((HeaderName::Require, "timer".into()));
                }
                h
            }
        }
    }
}

/// RFC 4028 §9: how a UAS answers a request's Session-Expires / Min-SE / Supported.
pub fn answer(limits: Limits, req: &Message) -> Answer {
    let Some(se) = session_expires_of(req) else {
        return Answer::NoTimer;
    };
    if se.delta < limits.min_se {
        return Answer::TooSmall {
            min_se: limits.min_se,
        };
    }
    // We may lower the interval (to our preference) but never below the request's Min-SE.
    let their_min = req
        .header(&min_se_name())
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let interval = se
        .delta
        .min(limits.session_expires.max(limits.min_se))
        .max(their_min);
    let uac_supports = supports(req, "timer");
    // Keep the peer's choice; when it made none, the UAC refreshes if it can (§9: a UAC
    // that does not support timers cannot, so then we do).
    let refresher = match se.refresher {
        Some(r) => r,
        None if uac_supports => Refresher::Uac,
        None => Refresher::Uas,
    };
    Answer::Timer {
        interval,
        refresher,
        require_timer: uac_supports,
    }
}

/// What the timer asks the actor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// We are the refresher: send a refresh now (UPDATE or re-INVITE).
    RefreshDue,
    /// No refresh in time: end the session with BYE (RFC 4028 §10).
    Expired,
}

/// A running session timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    interval: Duration,
    refresher: Refresher,
    refreshed_at: Instant,
    /// Our refresh is on the wire (no new one until it is answered or fails).
    in_flight: bool,
    /// When to try the refresh again (postponed, or after a 422).
    retry_at: Option<Instant>,
}

impl SessionTimer {
    /// Start (or restart) from the answer we gave.
    pub fn start(now: Instant, interval: u32, refresher: Refresher) -> SessionTimer {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval)),
            refresher,
            refreshed_at: now,
            in_flight: false,
            retry_at: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn refresher(&self) -> Refresher {
        self.refresher
    }

    /// The headers our own refresh request carries (we stay the refresher).
    pub fn refresh_headers(&self) -> Vec<(HeaderName, String)> {
        vec![
            (
                session_expires_name(),
                format!("{};refresher=uas", self.interval.as_secs()),
            ),
            (HeaderName::Supported, "timer".into()),
        ]
    }

    /// When the peer refreshes: expiry minus min(32 s, SE/3) (RFC 4028 §10).
    fn expiry_deadline(&self) -> Instant {
        let margin = (self.interval / 3).min(Duration::from_secs(32));
        self.refreshed_at + self.interval - margin
    }

    pub fn deadline(&self) -> Instant {
        match self.refresher {
            Refresher::Uac => self.expiry_deadline(),
            Refresher::Uas if self.in_flight => self.refreshed_at + self.interval,
            // A retry (postponed, after 422) never goes past the expiry itself.
            Refresher::Uas => self
                .retry_at
                .map_or(self.refreshed_at + self.interval / 2, |r| {
                    r.min(self.refreshed_at + self.interval)
                }),
        }
    }

    /// The event due at `now`, if any. `RefreshDue` marks the refresh as in flight.
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        if now < self.deadline() {
            return None;
        }
        match self.refresher {
            Refresher::Uac => Some(Event::Expired),
            Refresher::Uas if self.in_flight || now >= self.refreshed_at + self.interval => {
                Some(Event::Expired)
            }
            Refresher::Uas => {
                self.in_flight = true;
                self.retry_at = None;
                Some(Event::RefreshDue)
            }
        }
    }

    /// Not now (an offer/answer of the peer is in progress): try the refresh again at `at`.
    pub fn postpone(&mut self, at: Instant) {
        self.in_flight = false;
        self.retry_at = Some(at);
    }

    /// A refresh request arrived and we answered it with `answer` (a 2xx): restart.
    /// Returns false when the refresh turned the timer off (no Session-Expires in it).
    pub fn on_peer_refresh(&mut self, now: Instant, answer: &Answer) -> bool {
        match *answer {
            Answer::Timer {
                interval,
                refresher,
                ..
            } => {
                *self = SessionTimer::start(now, interval, refresher);
                true
            }
            Answer::NoTimer | Answer::TooSmall { .. } => false,
        }
    }

    /// The answer to our refresh. 2xx restarts the timer with the interval and refresher
    /// the peer put in it (RFC 4028 §7.2: absent means none changed); 422 raises the
    /// interval to its Min-SE and retries at once. A 491 is the dialog's (`sip::dialog`
    /// sends the refresh again after its RFC 3261 §14.1 back-off): like anything else, it
    /// leaves the session to expire at the old deadline unless a refresh succeeds.
    pub fn on_refresh_response(&mut self, now: Instant, resp: &Message) {
        self.in_flight = false;
        let code = resp.status().unwrap_or(0);
        match code {
            200..=299 => {
                let se = session_expires_of(resp);
                let interval = se.map_or(self.interval.as_secs() as u32, |s| s.delta);
                let refresher = se.and_then(|s| s.refresher).unwrap_or(Refresher::Uas);
                *self = SessionTimer::start(now, interval.max(1), refresher);
            }
            422 => {
                if let Some(min) = resp
                    .header(&min_se_name())
                    .and_then(|v| v.split(';').next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    self.interval = self.interval.max(Duration::from_secs(min));
                }
                self.retry_at = Some(now);
            }
            _ => {
                // Keep in_flight semantics: expire at the end of the interval.
                self.in_flight = true;
            }
        }
    }

    /// Our refresh got no answer at all (transaction timeout): expire at the old deadline.
    pub fn on_refresh_timeout(&mut self) {
        self.in_flight = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:hotline@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes(), Framing::Datagram).expect("parse")
    }

    fn response(code: u16, extra: &str) -> Message {
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKy\r\n\
             From: <sip:hotline@127.0.0.1>;tag=2\r\nTo: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: c1\r\n\
             CSeq: 2 UPDATE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes(), Framing::Datagram).expect("parse")
    }

    const LIMITS: Limits = Limits {
        session_expires: 1800,
        min_se: 90,
    };

    #[test]
    fn no_session_expires_means_no_timer() {
        assert_eq!(answer(LIMITS, &invite("")), Answer::NoTimer);
        assert!(Answer::NoTimer.headers().is_empty());
    }

    #[test]
    fn peer_choice_is_kept_and_require_follows_supported() {
        let a = answer(
            LIMITS,
            &invite("Session-Expires: 600;refresher=uas\r\nSupported: timer, 100rel\r\n"),
        );
        assert_eq!(
            a,
            Answer::Timer {
                interval: 600,
                refresher: Refresher::Uas,
                require_timer: true
            }
        );
        let h = a.headers();
        assert_eq!(h[0].1, "600;refresher=uas");
        assert_eq!(h[1], (HeaderName::Require, "timer".to_string()));
    }

    #[test]
    fn compact_form_and_absent_refresher() {
        // `x` is the compact form; no refresher and Supported: timer -> uac refreshes.
        let a = answer(LIMITS, &invite("x: 300\r\nk: timer\r\n"));
        assert_eq!(
            a,
            Answer::Timer {
                interval: 300,
                refresher: Refresher::Uac,
                require_timer: true
            }
        );
        // Without Supported: timer the UAC cannot refresh: we do, and no Require.
        let a = answer(LIMITS, &invite("Session-Expires: 300\r\n"));
        assert_eq!(
            a,
            Answer::Timer {
                interval: 300,
                refresher: Refresher::Uas,
                require_timer: false
            }
        );
    }

    #[test]
    fn too_small_gets_422_with_min_se_and_large_is_lowered() {
        let a = answer(LIMITS, &invite("Session-Expires: 60\r\n"));
        assert_eq!(a, Answer::TooSmall { min_se: 90 });
        assert_eq!(a.headers(), vec![(min_se_name(), "90".to_string())]);
        let a = answer(LIMITS, &invite("Session-Expires: 7200;refresher=uac\r\n"));
        assert!(matches!(a, Answer::Timer { interval: 1800, .. }), "{a:?}");
        // ... but never below the request's own Min-SE.
        let a = answer(
            LIMITS,
            &invite("Session-Expires: 7200;refresher=uac\r\nMin-SE: 3600\r\n"),
        );
        assert!(matches!(a, Answer::Timer { interval: 3600, .. }), "{a:?}");
        // A low configured floor (tests) is honoured.
        let low = Limits {
            session_expires: 1800,
            min_se: 1,
        };
        assert!(matches!(
            answer(low, &invite("Session-Expires: 2\r\n")),
            Answer::Timer { interval: 2, .. }
        ));
    }

    #[test]
    fn peer_refresher_expires_at_se_minus_a_third_or_32_s() {
        let t0 = Instant::now();
        let mut t = SessionTimer::start(t0, 90, Refresher::Uac);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(60));
        assert_eq!(t.poll(t0 + Duration::from_secs(59)), None);
        assert_eq!(t.poll(t0 + Duration::from_secs(60)), Some(Event::Expired));
        // Long intervals: 32 s before the end.
        let t = SessionTimer::start(t0, 1800, Refresher::Uac);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(1768));
    }

    #[test]
    fn a_refresh_restarts_the_timer() {
        let t0 = Instant::now();
        let mut t = SessionTimer::start(t0, 90, Refresher::Uac);
        let t1 = t0 + Duration::from_secs(45);
        let a = answer(LIMITS, &invite("Session-Expires: 120;refresher=uac\r\n"));
        assert!(t.on_peer_refresh(t1, &a));
        assert_eq!(t.poll(t0 + Duration::from_secs(61)), None);
        // 120 s: min(32, 40) = 32 s before the end.
        assert_eq!(t.deadline(), t1 + Duration::from_secs(88));
        // A refresh without Session-Expires turns the timer off.
        assert!(!t.on_peer_refresh(t1, &Answer::NoTimer));
    }

    #[test]
    fn we_refresh_at_half_and_expire_if_unanswered() {
        let t0 = Instant::now();
        let mut t = SessionTimer::start(t0, 100, Refresher::Uas);
        assert_eq!(t.poll(t0 + Duration::from_secs(49)), None);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(50)),
            Some(Event::RefreshDue)
        );
        // In flight: no second refresh, expiry at the end of the interval.
        assert_eq!(t.poll(t0 + Duration::from_secs(60)), None);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(100));
        let t1 = t0 + Duration::from_secs(51);
        t.on_refresh_response(t1, &response(200, ""));
        assert_eq!(t.refresher(), Refresher::Uas);
        assert_eq!(t.deadline(), t1 + Duration::from_secs(50));
        // The 2xx may change the interval.
        let t2 = t1 + Duration::from_secs(50);
        assert_eq!(t.poll(t2), Some(Event::RefreshDue));
        t.on_refresh_response(t2, &response(200, "Session-Expires: 200;refresher=uas\r\n"));
        assert_eq!(t.deadline(), t2 + Duration::from_secs(100));
        // No answer at all: BYE at the end of the interval.
        let t3 = t2 + Duration::from_secs(100);
        assert_eq!(t.poll(t3), Some(Event::RefreshDue));
        t.on_refresh_timeout();
        assert_eq!(t.poll(t3 + Duration::from_secs(99)), None);
        assert_eq!(t.poll(t3 + Duration::from_secs(100)), Some(Event::Expired));
    }

    #[test]
    fn glare_491_waits_for_the_dialog_and_422_raises_the_interval() {
        let t0 = Instant::now();
        let mut t = SessionTimer::start(t0, 100, Refresher::Uas);
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(t.poll(t1), Some(Event::RefreshDue));
        // 491: the dialog's back-off resends the refresh; the timer keeps only the expiry.
        t.on_refresh_response(t1, &response(491, ""));
        assert_eq!(t.deadline(), t0 + Duration::from_secs(100));
        assert_eq!(t.poll(t1 + Duration::from_secs(3)), None);
        t.on_refresh_response(t1, &response(422, "Min-SE: 300\r\n"));
        assert_eq!(t.interval(), Duration::from_secs(300));
        assert_eq!(t.poll(t1), Some(Event::RefreshDue));
        assert_eq!(t.refresh_headers()[0].1, "300;refresher=uas");
        // A postponed refresh never lands past SE: the session expires at SE instead.
        let mut t = SessionTimer::start(t0, 4, Refresher::Uas);
        assert_eq!(t.poll(t0 + Duration::from_secs(2)), Some(Event::RefreshDue));
        t.postpone(t0 + Duration::from_secs(5));
        assert_eq!(t.deadline(), t0 + Duration::from_secs(4));
        assert_eq!(t.poll(t0 + Duration::from_secs(4)), Some(Event::Expired));
    }

    #[test]
    fn parses_values() {
        assert_eq!(
            SessionExpires::parse(" 1800 ; refresher = UAC"),
            Some(SessionExpires {
                delta: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(SessionExpires::parse("abc"), None);
        assert!(allows(&invite("Allow: INVITE, UPDATE\r\n"), "update"));
        assert!(!supports(&invite("Supported: 100rel\r\n"), "timer"));
    }
}
