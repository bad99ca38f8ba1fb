//! Outbound registration to a carrier (RFC 3261 §10.2), sans-IO: the REGISTER client of a
//! trunk with `register = true`. The shell ([`crate::trunk_reg`]) feeds it responses and
//! the clock and sends the bytes it returns; everything here is unit-tested in virtual
//! time.
//!
//! - One Call-ID and From tag for the life of the binding, CSeq + 1 per request (§10.2.4).
//! - 401/407: answered with digest (MD5 or SHA-256, qop=auth when offered) by
//!   [`auth::DigestClient`], the one challenge answer of every client here (the trunk's
//!   INVITE uses it too); the challenge is kept and reused (nc + 1) on refreshes. A second
//!   challenge right after an answered one, not marked `stale`, means the credentials are
//!   wrong: the attempt fails.
//! - 423 Interval Too Brief: ask again with the `Min-Expires` the registrar named.
//! - 2xx: the granted expiry (our Contact's `expires`, else `Expires`, else what we asked
//!   for); refresh at 80 % of it, so a lost refresh still has time for its retransmissions.
//! - No final answer within Timer F (64·T1), or any other final answer: retry after a
//!   back-off (doubling from `retry_base` up to `retry_max`). Each REGISTER runs in a
//!   [`NonInviteClient`] (`sip::transaction`, RFC 3261 §17.1.2, the machine the call's BYE
//!   uses): over UDP it resends the request per Timer E (T1 doubling to T2, every T2 after
//!   a provisional), and it reports Timer F; this core only matches the response to its
//!   transaction (branch and CSeq) and acts on the final answer.
//! - Unregister: the same binding with `Expires: 0` (shutdown).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sip::auth::DigestClient;
use crate::sip::message::{HeaderName, Message, Method, StartLine};
use crate::sip::transaction::{Event, NonInviteClient, TimerConfig};
use crate::sip::uri::{NameAddr, Uri};

/// RFC 3261 Timer F (64·T1, §17.1.2.2): how long a REGISTER waits for its final answer.
pub const TIMER_F: Duration = Duration::from_secs(32);

/// Everything a REGISTER needs, fixed for the life of the binding.
#[derive(Debug, Clone)]
pub struct RegConfig {
    /// Request-URI: the registrar (`sip:HOST:PORT`).
    pub registrar: Uri,
    /// Address of record: `sip:USER@HOST` (From and To).
    pub aor: String,
    /// Our Contact value (`<sip:user@ip:port>`).
    pub contact: String,
    /// Via `SIP/2.0/<transport> <sent-by>`.
    pub via_transport: &'static str,
    pub via_host: String,
    pub user_agent: String,
    pub auth_user: String,
    pub password: String,
    /// Expires we ask for.
    pub expires: u32,
    /// UDP: retransmit per Timer E; stream transports do not.
    pub unreliable: bool,
    pub call_id: String,
    pub from_tag: String,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// Where the binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// A REGISTER transaction is running.
    Registering,
    /// Bound; refresh due at `refresh_at`.
    Registered,
    /// Last attempt failed; next one at `retry_at`.
    Backoff,
    /// Sending `Expires: 0`.
    Unregistering,
    /// Unregistered (or gave up unregistering): nothing more to do.
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Registering => "registering",
            Phase::Registered => "registered",
            Phase::Backoff => "backoff",
            Phase::Unregistering => "unregistering",
            Phase::Done => "unregistered",
        }
    }
}

/// What the API shows for a registering trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegStatus {
    pub phase: Phase,
    /// The registrar's binding is valid now.
    pub registered: bool,
    /// Seconds left on the binding (None: not bound).
    pub expires_in: Option<u64>,
    pub last_error: Option<String>,
    /// REGISTERs answered 2xx so far (initial and refreshes).
    pub successes: u64,
}

/// The REGISTER in flight.
struct Txn {
    /// Its client transaction: retransmissions (Timer E) and the give-up (Timer F).
    client: NonInviteClient,
    branch: String,
    cseq: u32,
    /// Expires this request asked for (0: unregister).
    expires: u32,
}

pub struct Registration {
    cfg: RegConfig,
    phase: Phase,
    cseq: u32,
    txn: Option<Txn>,
    /// The last challenge, reused on refreshes.
    digest: DigestClient,
    expires: u32,
    bound_until: Option<Instant>,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
    successes: u64,
    /// 423 answers in this attempt (bounded: a registrar raising Min-Expires forever).
    too_brief: u8,
}

impl Registration {
    pub fn new(cfg: RegConfig) -> Registration {
        let expires = cfg.expires;
        let backoff = cfg.retry_base;
        Registration {
            cfg,
            phase: Phase::Idle,
            cseq: 0,
            txn: None,
            digest: DigestClient::default(),
            expires,
            bound_until: None,
            refresh_at: None,
            retry_at: None,
            backoff,
            last_error: None,
            successes: 0,
            too_brief: 0,
        }
    }

    pub fn call_id(&self) -> &str {
        &self.cfg.call_id
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The first REGISTER.
    pub fn start(&mut self, now: Instant) -> Vec<u8> {
        self.too_brief = 0;
        self.send(now, self.expires, Phase::Registering)
    }

    /// The next instant [`on_timer`](Self::on_timer) has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        if let Some(t) = &self.txn {
            return t.client.poll_timeout();
        }
        match self.phase {
            Phase::Registered => self.refresh_at,
            Phase::Backoff => self.retry_at,
            _ => None,
        }
    }

    /// Time passed: a retransmission, a refresh, a retry — or nothing.
    pub fn on_timer(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(t) = self.txn.as_mut() {
            t.client.handle_timeout(now);
            // Timer E: the request again (one retransmission per wake-up at most: the
            // shell wakes at each deadline).
            let resend = t.client.poll_transmit().map(|m| m.to_bytes());
            // (A shell that woke more than one interval late gets one copy, not several.)
            while t.client.poll_transmit().is_some() {}
            let timed_out = std::iter::from_fn(|| t.client.poll_event())
                .any(|e| matches!(e, Event::Timeout(_) | Event::TransportError));
            if !timed_out {
                return resend;
            }
            // Timer F: no final answer.
            self.txn = None;
            if self.phase == Phase::Unregistering {
                self.phase = Phase::Done;
                self.bound_until = None;
                return None;
            }
            return self.fail(now, "timeout: no answer to REGISTER".into());
        }
        match self.phase {
            Phase::Registered if self.refresh_at.is_some_and(|r| now >= r) => {
                self.too_brief = 0;
                Some(self.send(now, self.expires, Phase::Registering))
            }
            Phase::Backoff if self.retry_at.is_some_and(|r| now >= r) => {
                self.too_brief = 0;
                Some(self.send(now, self.expires, Phase::Registering))
            }
            _ => None,
        }
    }

    /// A response with our Call-ID. Returns the next request to send, if any.
    pub fn on_response(&mut self, now: Instant, msg: &Message) -> Option<Vec<u8>> {
        let StartLine::Response { code, .. } = msg.start else {
            return None;
        };
        let cseq = msg.cseq().ok()?;
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string));
        let t = self.txn.as_mut()?;
        if cseq.method != Method::Register
            || cseq.seq != t.cseq
            || branch.as_deref() != Some(t.branch.as_str())
        {
            return None; // an old transaction's retransmission
        }
        // The transaction takes it: a provisional slows its retransmissions to T2
        // (§17.1.2.2); a final one ends them.
        t.client.handle_response(msg.clone(), now);
        if code < 200 {
            return None;
        }
        // The final answer is ours to act on; its retransmissions will match no
        // transaction (the branch is gone), so Timer K's absorbing is not needed.
        let txn = self.txn.take()?;
        let unregistering = self.phase == Phase::Unregistering;
        // Every final answer goes to the digest client: a 401/407 is its to judge, any
        // other says the last answer (if any) got through.
        let challenge = self.digest.on_response(msg);
        match code {
            200..=299 => {
                if unregistering {
                    self.phase = Phase::Done;
                    self.bound_until = None;
                    return None;
                }
                let granted = granted_expires(msg, &self.cfg.contact).unwrap_or(txn.expires);
                if granted == 0 {
                    return self.fail(now, "registrar granted expires 0".into());
                }
                self.phase = Phase::Registered;
                self.bound_until = Some(now + Duration::from_secs(granted as u64));
                self.refresh_at = Some(now + Duration::from_millis(granted as u64 * 800));
                self.backoff = self.cfg.retry_base;
                self.last_error = None;
                self.successes += 1;
                None
            }
            401 | 407 => match challenge {
                Some(Ok(())) => {
                    let phase = self.phase;
                    Some(self.send(now, txn.expires, phase))
                }
                Some(Err(e)) => self.end_attempt(now, format!("{code}: {e}")),
                None => self.end_attempt(now, format!("{code}: no challenge")),
            },
            423 => {
                let min = msg
                    .header_named("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > txn.expires && self.too_brief < 3 && !unregistering => {
                        self.too_brief += 1;
                        self.expires = m;
                        Some(self.send(now, m, Phase::Registering))
                    }
                    _ => self.end_attempt(now, "423 without a usable Min-Expires".into()),
                }
            }
            _ => {
                let reason = match &msg.start {
                    StartLine::Response { reason, .. } => reason.clone(),
                    StartLine::Request { .. } => String::new(),
                };
                self.end_attempt(now, format!("{code} {reason}").trim().to_string())
            }
        }
    }

    /// Remove the binding (`Expires: 0`); None when there is nothing to remove.
    pub fn unregister(&mut self, now: Instant) -> Option<Vec<u8>> {
        let bound = self.bound_until.is_some_and(|b| b > now);
        if !bound && self.txn.is_none() {
            self.phase = Phase::Done;
            return None;
        }
        Some(self.send(now, 0, Phase::Unregistering))
    }

    pub fn status(&self, now: Instant) -> RegStatus {
        let left = self.bound_until.filter(|b| *b > now).map(|b| b - now);
        RegStatus {
            phase: self.phase,
            registered: left.is_some(),
            expires_in: left.map(|d| d.as_secs()),
            last_error: self.last_error.clone(),
            successes: self.successes,
        }
    }

    fn end_attempt(&mut self, now: Instant, error: String) -> Option<Vec<u8>> {
        if self.phase == Phase::Unregistering {
            self.phase = Phase::Done;
            self.bound_until = None;
            self.last_error = Some(error);
            return None;
        }
        self.fail(now, error)
    }

    fn fail(&mut self, now: Instant, error: String) -> Option<Vec<u8>> {
        self.last_error = Some(error);
        self.phase = Phase::Backoff;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.cfg.retry_max);
        None
    }

    fn send(&mut self, now: Instant, expires: u32, phase: Phase) -> Vec<u8> {
        self.cseq += 1;
        let branch = super::build::new_branch();
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Register,
                uri: self.cfg.registrar.clone(),
            },
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
        };
        m.push_header(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.cfg.via_transport, self.cfg.via_host
            ),
        );
        m.push_header(HeaderName::MaxForwards, "70");
        m.push_header(
            HeaderName::From,
            format!("<{}>;tag={}", self.cfg.aor, self.cfg.from_tag),
        );
        m.push_header(HeaderName::To, format!("<{}>", self.cfg.aor));
        m.push_header(HeaderName::CallId, self.cfg.call_id.clone());
        m.push_header(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        m.push_header(HeaderName::Contact, self.cfg.contact.clone());
        m.push_header(HeaderName::Expires, expires.to_string());
        m.push_header(HeaderName::UserAgent, self.cfg.user_agent.clone());
        if let Some((name, v)) = self.digest.authorize(
            "REGISTER",
            &self.cfg.registrar.to_string(),
            &self.cfg.auth_user,
            &self.cfg.password,
        ) {
            m.push_header(name, v);
        }
        let bytes = m.to_bytes();
        self.phase = phase;
        let mut client = NonInviteClient::new(m, now, TimerConfig::default(), !self.cfg.unreliable);
        // Its first transmission is `bytes`, returned to the shell below.
        while client.poll_transmit().is_some() {}
        self.txn = Some(Txn {
            client,
            branch,
            cseq: self.cseq,
            expires,
        });
        bytes
    }
}

/// The expiry the registrar granted us: our Contact's `expires` parameter (matched by URI,
/// §10.2.4), else the `Expires` header.
fn granted_expires(msg: &Message, our_contact: &str) -> Option<u32> {
    let ours = NameAddr::parse(our_contact).ok().map(|n| n.uri);
    for v in msg.header_values(&HeaderName::Contact) {
        let Ok(c) = NameAddr::parse(v) else { continue };
        let same = ours.as_ref().is_some_and(|o| {
            o.user == c.uri.user && o.host.eq_ignore_ascii_case(&c.uri.host) && o.port == c.uri.port
        });
        if same {
            if let Some(Some(e)) = c.param("expires") {
                if let Ok(e) = e.trim().parse() {
                    return Some(e);
                }
            }
        }
    }
    msg.header(&HeaderName::Expires)
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::auth::{self, Algorithm, NonceKey};
    use crate::sip::message::Framing;

    fn cfg(unreliable: bool) -> RegConfig {
        RegConfig {
            registrar: Uri::parse("sip:127.0.0.1:5090").expect("uri"),
            aor: "sip:acct@127.0.0.1".into(),
            contact: "<sip:acct@127.0.0.1:5060>".into(),
            via_transport: "UDP",
            via_host: "127.0.0.1:5060".into(),
            user_agent: "switchboard".into(),
            auth_user: "acct".into(),
            password: "secret".into(),
            expires: 3600,
            unreliable,
            call_id: "reg-1@127.0.0.1".into(),
            from_tag: "ft".into(),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
        }
    }

    fn parse(b: &[u8]) -> Message {
        Message::parse(b, Framing::Datagram).expect("parse")
    }

    fn answer(req: &[u8], code: u16, extra: &[(&str, String)]) -> Message {
        let r = parse(req);
        let mut resp = r.response(code, "X", Some("rt"));
        for (n, v) in extra {
            resp.push_header(HeaderName::parse(n), v.clone());
        }
        parse(&resp.to_bytes())
    }

    /// The registrar side: check the digest like the real registrar does.
    fn verify(req: &[u8], header: &str, realm: &str, key: &NonceKey) -> bool {
        let r = parse(req);
        let Some(v) = r.header_named(header) else {
            return false;
        };
        let creds = auth::parse_credentials(v).expect("creds");
        auth::verify(
            &creds,
            "REGISTER",
            |alg| Some(auth::ha1(alg, "acct", realm, "secret")),
            realm,
            key,
            NOW,
        )
        .is_ok()
    }

    const NOW: u64 = 1_000_000;

    fn challenge(key: &NonceKey, alg: Algorithm) -> String {
        auth::challenge_header("carrier", &key.issue_nonce(NOW), alg, false, None)
    }

    #[test]
    fn challenge_answered_with_sha256_and_qop_then_refresh_at_80_percent() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(true));
        let first = r.start(t0);
        let m = parse(&first);
        assert_eq!(m.header(&HeaderName::Expires), Some("3600"));
        assert!(m.header(&HeaderName::Authorization).is_none());
        let key = NonceKey::new(300);
        let ch = challenge(&key, Algorithm::Sha256);
        let second = r
            .on_response(t0, &answer(&first, 401, &[("WWW-Authenticate", ch)]))
            .expect("answered");
        let m2 = parse(&second);
        assert_eq!(m2.cseq().expect("cseq").seq, 2);
        assert_eq!(m2.call_id().ok(), m.call_id().ok(), "same Call-ID");
        let a = m2.header(&HeaderName::Authorization).expect("auth");
        assert!(a.contains("SHA-256") && a.contains("qop=auth"), "{a}");
        assert!(verify(&second, "Authorization", "carrier", &key));
        // Granted less than asked: the Contact's expires wins over Expires.
        let ok = answer(
            &second,
            200,
            &[
                ("Contact", "<sip:acct@127.0.0.1:5060>;expires=100".into()),
                ("Expires", "3600".into()),
            ],
        );
        assert_eq!(r.on_response(t0, &ok), None);
        let st = r.status(t0);
        assert!(st.registered);
        assert_eq!(st.expires_in, Some(100));
        assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(80)));
        assert_eq!(r.on_timer(t0 + Duration::from_secs(79)), None);
        let refresh = r
            .on_timer(t0 + Duration::from_secs(80))
            .expect("refresh at 80 %");
        let m3 = parse(&refresh);
        assert_eq!(m3.cseq().expect("cseq").seq, 3);
        // The kept challenge is reused with nc = 2: no extra round trip.
        let a = m3.header(&HeaderName::Authorization).expect("auth reused");
        assert!(a.contains("nc=00000002"), "{a}");
    }

    #[test]
    fn proxy_challenge_and_md5() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        let first = r.start(t0);
        let key = NonceKey::new(300);
        let ch = challenge(&key, Algorithm::Md5);
        let second = r
            .on_response(t0, &answer(&first, 407, &[("Proxy-Authenticate", ch)]))
            .expect("answered");
        assert!(verify(&second, "Proxy-Authorization", "carrier", &key));
        assert!(parse(&second).header(&HeaderName::Authorization).is_none());
    }

    #[test]
    fn wrong_password_backs_off_and_doubles() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        let first = r.start(t0);
        let key = NonceKey::new(300);
        let ch = challenge(&key, Algorithm::Md5);
        let second = r
            .on_response(
                t0,
                &answer(&first, 401, &[("WWW-Authenticate", ch.clone())]),
            )
            .expect("answered");
        // Challenged again, not stale: the credentials are wrong.
        assert_eq!(
            r.on_response(
                t0,
                &answer(&second, 401, &[("WWW-Authenticate", ch.clone())])
            ),
            None
        );
        let st = r.status(t0);
        assert_eq!(st.phase, Phase::Backoff);
        assert!(!st.registered);
        assert!(st
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("credentials refused")));
        assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(5)));
        let t1 = t0 + Duration::from_secs(5);
        let third = r.on_timer(t1).expect("retry");
        // Other failure: the back-off doubles (5 s, then 10 s).
        assert_eq!(r.on_response(t1, &answer(&third, 403, &[])), None);
        assert_eq!(r.deadline(), Some(t1 + Duration::from_secs(10)));
        assert_eq!(r.status(t1).last_error.as_deref(), Some("403 X"));
    }

    #[test]
    fn stale_nonce_is_answered_again() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        let first = r.start(t0);
        let key = NonceKey::new(300);
        let ch = challenge(&key, Algorithm::Md5);
        let second = r
            .on_response(
                t0,
                &answer(&first, 401, &[("WWW-Authenticate", ch.clone())]),
            )
            .expect("answered");
        let stale = format!("{ch}, stale=true");
        let third = r
            .on_response(t0, &answer(&second, 401, &[("WWW-Authenticate", stale)]))
            .expect("stale: answered again");
        assert_eq!(parse(&third).cseq().expect("cseq").seq, 3);
    }

    #[test]
    fn interval_too_brief_uses_min_expires() {
        let t0 = Instant::now();
        let mut c = cfg(false);
        c.expires = 60;
        let mut r = Registration::new(c);
        let first = r.start(t0);
        let again = r
            .on_response(t0, &answer(&first, 423, &[("Min-Expires", "600".into())]))
            .expect("asks again");
        assert_eq!(parse(&again).header(&HeaderName::Expires), Some("600"));
        // A 423 whose Min-Expires is not above what we asked: give up this attempt.
        assert_eq!(
            r.on_response(t0, &answer(&again, 423, &[("Min-Expires", "600".into())])),
            None
        );
        assert_eq!(r.phase(), Phase::Backoff);
    }

    #[test]
    fn udp_retransmits_per_timer_e_then_times_out_per_timer_f() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(true));
        let first = r.start(t0);
        let mut at = Vec::new();
        let mut now = t0;
        while let Some(d) = r.deadline() {
            if d > t0 + TIMER_F {
                break;
            }
            now = d;
            if let Some(b) = r.on_timer(now) {
                assert_eq!(b, first, "the same request, byte for byte");
                at.push((now - t0).as_millis());
            }
            if r.phase() == Phase::Backoff {
                break;
            }
        }
        // 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) until 32 s.
        assert_eq!(
            &at[..6],
            &[500, 1500, 3500, 7500, 11500, 15500],
            "Timer E: {at:?}"
        );
        assert_eq!(r.phase(), Phase::Backoff);
        assert_eq!((now - t0), TIMER_F);
        assert!(r
            .status(now)
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout")));
        // A late answer to the timed-out request is ignored.
        assert_eq!(r.on_response(now, &answer(&first, 200, &[])), None);
        assert_eq!(r.phase(), Phase::Backoff);
    }

    #[test]
    fn tcp_does_not_retransmit() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        r.start(t0);
        assert_eq!(
            TIMER_F,
            TimerConfig::default().t64(),
            "the transaction's Timer F"
        );
        assert_eq!(r.deadline(), Some(t0 + TIMER_F));
        assert_eq!(r.on_timer(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.deadline(), Some(t0 + TIMER_F), "nothing but Timer F");
        assert_eq!(r.on_timer(t0 + TIMER_F), None);
        assert_eq!(r.phase(), Phase::Backoff, "Timer F over TCP too");
    }

    /// A provisional (a registrar that answers 100 first) slows Timer E to T2 (§17.1.2.2);
    /// the final answer ends the resending.
    #[test]
    fn provisional_slows_retransmission_to_t2() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(true));
        let first = r.start(t0);
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(r.on_response(t1, &answer(&first, 100, &[])), None);
        assert_eq!(r.phase(), Phase::Registering);
        // In Proceeding Timer E keeps its schedule (0.5 s), then runs every T2 (4 s).
        let mut at = Vec::new();
        while let Some(d) = r.deadline().filter(|d| *d < t0 + Duration::from_secs(10)) {
            if let Some(b) = r.on_timer(d) {
                assert_eq!(b, first);
                at.push((d - t0).as_millis());
            }
        }
        assert_eq!(at, [500, 4500, 8500]);
        let ok = answer(&first, 200, &[("Expires", "600".into())]);
        assert_eq!(r.on_response(t0 + Duration::from_secs(9), &ok), None);
        assert_eq!(r.phase(), Phase::Registered);
        assert_eq!(
            r.deadline(),
            Some(t0 + Duration::from_secs(9) + Duration::from_secs(480)),
            "the refresh, no retransmission"
        );
    }

    #[test]
    fn expired_binding_is_not_registered_and_unregister_sends_expires_0() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        let first = r.start(t0);
        r.on_response(t0, &answer(&first, 200, &[("Expires", "30".into())]));
        assert_eq!(r.status(t0).expires_in, Some(30));
        assert!(!r.status(t0 + Duration::from_secs(31)).registered);
        let bye = r
            .unregister(t0 + Duration::from_secs(1))
            .expect("unregister");
        let m = parse(&bye);
        assert_eq!(m.header(&HeaderName::Expires), Some("0"));
        assert_eq!(r.phase(), Phase::Unregistering);
        assert_eq!(
            r.on_response(t0 + Duration::from_secs(1), &answer(&bye, 200, &[])),
            None
        );
        assert_eq!(r.phase(), Phase::Done);
        assert!(!r.status(t0 + Duration::from_secs(1)).registered);
        // Nothing bound: nothing to remove.
        let mut idle = Registration::new(cfg(false));
        assert_eq!(idle.unregister(t0), None);
    }

    #[test]
    fn responses_of_other_transactions_are_ignored() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(false));
        let first = r.start(t0);
        let mut resp = parse(&first).response(200, "OK", Some("x"));
        resp.set_header(
            HeaderName::Via,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother",
        );
        assert_eq!(r.on_response(t0, &parse(&resp.to_bytes())), None);
        assert_eq!(r.phase(), Phase::Registering, "not ours: still waiting");
        assert_eq!(
            Registration::new(cfg(false)).status(t0).phase.as_str(),
            "idle"
        );
    }
}
