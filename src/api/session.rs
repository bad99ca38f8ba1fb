//! Browser agents' sessions and the web login's password-guessing guard, both sans-IO
//! (time is an argument) and held in memory behind the API's mutex.
//!
//! A session is a random 256-bit id (hex, from the OS-seeded CSPRNG) in an `HttpOnly`,
//! `SameSite=Strict` cookie; the table maps it to one agent and an expiry that slides with
//! every authorised request. **One session per agent**: a second login of the same agent
//! takes over (Genesys Cloud and Twilio Flex do the same): the new session wins, the old one
//! is revoked at once and its event stream is told so. A restart forgets every session
//! (agents log in again), which is the safe default for a credential.
//!
//! The login guard counts wrong passwords per source address the way the registrar counts
//! failed digest responses: 10 within 60 s ban the source for 300 s, during which even the
//! right password is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The agent page's cookie.
pub const COOKIE: &str = "sb_agent";
/// The operators' (console, wallboard) cookie: a separate table and cookie, so an agent's
/// session never authorises the console and one browser can hold both.
pub const OPERATOR_COOKIE: &str = "sb_operator";
/// Sessions held at most; beyond it the oldest-expiring goes first.
pub const MAX_SESSIONS: usize = 10_000;
/// Wrong passwords from one address within [`FAIL_WINDOW`] before it is banned.
pub const MAX_FAILURES: u32 = 10;
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
pub const BAN_TIME: Duration = Duration::from_secs(300);
/// Sources tracked by the login guard at most.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Session {
    agent: String,
    expires: Instant,
    /// Cancelled when the session ends (logout, take-over, expiry): its event streams stop.
    ended: CancellationToken,
}

/// A session that was just created.
#[derive(Debug)]
pub struct NewSession {
    pub id: String,
    /// Whether an older session of the same agent was revoked by this login.
    pub took_over: bool,
}

/// What an authorised request learns about its session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub agent: String,
    pub ended: CancellationToken,
}

#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: HashMap<String, Session>,
    by_agent: HashMap<String, String>,
}

/// A fresh random session id: 32 bytes from `rand`'s thread RNG (ChaCha, seeded from the
/// OS), 64 hex characters.
fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            by_id: HashMap::new(),
            by_agent: HashMap::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Log `agent` in: a new session, replacing (revoking) the agent's previous one.
    pub fn create(&mut self, now: Instant, agent: &str) -> NewSession {
        self.purge(now);
        let took_over = match self.by_agent.remove(agent) {
            Some(old) => self.end(&old),
            None => false,
        };
        if self.by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
            {
                self.revoke(&oldest);
            }
        }
        let id = new_id();
        self.by_id.insert(
            id.clone(),
            Session {
                agent: agent.to_string(),
                expires: now + self.ttl,
                ended: CancellationToken::new(),
            },
        );
        self.by_agent.insert(agent.to_string(), id.clone());
        NewSession { id, took_over }
    }

    /// The live session `id`, its expiry slid forward; None when unknown or expired (an
    /// expired one is removed).
    pub fn check(&mut self, now: Instant, id: &str) -> Option<SessionInfo> {
        let expired = self.by_id.get(id)?.expires <= now;
        if expired {
            self.revoke(id);
            return None;
        }
        let s = self.by_id.get_mut(id)?;
        s.expires = now + self.ttl;
        Some(SessionInfo {
            id: id.to_string(),
            agent: s.agent.clone(),
            ended: s.ended.clone(),
        })
    }

    /// End session `id` (logout). True when it existed.
    pub fn revoke(&mut self, id: &str) -> bool {
        let Some(agent) = self.by_id.get(id).map(|s| s.agent.clone()) else {
            return false;
        };
        if self.by_agent.get(&agent).is_some_and(|cur| cur == id) {
            self.by_agent.remove(&agent);
        }
        self.end(id)
    }

    /// The agent's live session, if any.
    pub fn of_agent(&self, agent: &str) -> Option<&str> {
        self.by_agent.get(agent).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn end(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(s) => {
                s.ended.cancel();
                true
            }
            None => false,
        }
    }

    fn purge(&mut self, now: Instant) {
        let dead: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.revoke(&id);
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` header(s), if any.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// A `Set-Cookie` value for session cookie `name`: `HttpOnly`, `SameSite=Strict`, `Path=/`,
/// `Secure` when the port serves HTTPS; an empty `value` with age 0 clears it.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age_s: u64,
    secure: bool,
) -> axum::http::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    axum::http::HeaderValue::from_str(&v)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("sb_session=; Max-Age=0"))
}

#[derive(Debug, Default, Clone, Copy)]
struct Source {
    window_start: Option<Instant>,
    failures: u32,
    banned_until: Option<Instant>,
}

/// A web login whose name or password did not match (agent page, console): counted against
/// the source (banned after too many), logged as a security event (`log` is the line's
/// text), and the `401` to answer. One place for both pages, so their bans cannot drift.
pub(super) fn login_refused(
    guard: &std::sync::Mutex<LoginGuard>,
    ip: IpAddr,
    user: &str,
    log: &str,
    answer: &str,
) -> super::ApiError {
    let now_banned = guard
        .lock()
        .map(|mut g| g.failed(Instant::now(), ip))
        .unwrap_or(false);
    tracing::warn!(target: "security", source = %ip, %user, "{log}");
    if now_banned {
        tracing::warn!(target: "security", source = %ip,
            "too many failed web logins: source banned for {} s", BAN_TIME.as_secs());
    }
    super::ApiError(axum::http::StatusCode::UNAUTHORIZED, answer.into())
}

/// A web login that matched: the source's failures are forgotten and a session is opened in
/// `sessions` for `name`, with the table's lifetime.
pub(super) fn login_accepted(
    guard: &std::sync::Mutex<LoginGuard>,
    sessions: &std::sync::Mutex<Sessions>,
    ip: IpAddr,
    name: &str,
) -> Result<(NewSession, Duration), super::ApiError> {
    if let Ok(mut g) = guard.lock() {
        g.succeeded(ip);
    }
    match sessions.lock() {
        Ok(mut s) => Ok((s.create(Instant::now(), name), s.ttl())),
        Err(_) => Err(super::ApiError(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "session table unavailable".into(),
        )),
    }
}

/// Per-source count of wrong web-login passwords, with temporary bans.
#[derive(Debug, Default)]
pub struct LoginGuard {
    sources: HashMap<IpAddr, Source>,
    pub bans: u64,
}

impl LoginGuard {
    /// Whether `ip` is banned now (a login from it is refused without checking).
    pub fn banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Count a wrong password from `ip`; true when this failure started a ban.
    pub fn failed(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.sources.len() >= MAX_TRACKED {
            self.sources.retain(|_, s| {
                s.banned_until.is_some_and(|t| t > now)
                    || s.window_start.is_some_and(|w| now < w + FAIL_WINDOW)
            });
        }
        let s = self.sources.entry(ip).or_default();
        if s.window_start.is_none_or(|w| now >= w + FAIL_WINDOW) {
            s.window_start = Some(now);
            s.failures = 0;
        }
        s.failures += 1;
        if s.failures >= MAX_FAILURES {
            s.banned_until = Some(now + BAN_TIME);
            s.failures = 0;
            s.window_start = None;
            self.bans += 1;
            return true;
        }
        false
    }

    /// A right password: the source's count starts again.
    pub fn succeeded(&mut self, ip: IpAddr) {
        if let Some(s) = self.sources.get_mut(&ip) {
            s.failures = 0;
            s.window_start = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_random_and_distinct() {
        let mut s = Sessions::new(Duration::from_secs(60));
        let t = Instant::now();
        let a = s.create(t, "alice").id;
        let b = s.create(t, "bob").id;
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn second_login_takes_over_and_revokes_the_first() {
        let mut s = Sessions::new(Duration::from_secs(60));
        let t = Instant::now();
        let first = s.create(t, "alice");
        assert!(!first.took_over);
        let info = s.check(t, &first.id).expect("live");
        assert_eq!(info.agent, "alice");
        let second = s.create(t, "alice");
        assert!(second.took_over);
        assert!(info.ended.is_cancelled(), "the old event stream is told");
        assert!(s.check(t, &first.id).is_none(), "old session revoked");
        assert_eq!(
            s.check(t, &second.id).map(|i| i.agent),
            Some("alice".into())
        );
        assert_eq!(s.of_agent("alice"), Some(second.id.as_str()));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn expiry_slides_with_use_and_logout_revokes() {
        let ttl = Duration::from_secs(60);
        let mut s = Sessions::new(ttl);
        let t = Instant::now();
        let id = s.create(t, "alice").id;
        assert!(s.check(t + Duration::from_secs(50), &id).is_some());
        assert!(s.check(t + Duration::from_secs(100), &id).is_some(), "slid");
        assert!(
            s.check(t + Duration::from_secs(161), &id).is_none(),
            "expired"
        );
        assert!(s.is_empty());
        let id = s.create(t, "bob").id;
        assert!(s.revoke(&id));
        assert!(!s.revoke(&id));
        assert!(s.check(t, &id).is_none());
        assert!(s.check(t, "forged").is_none());
        assert_eq!(s.of_agent("bob"), None);
    }

    #[test]
    fn wrong_passwords_ban_the_source_for_a_while() {
        let mut g = LoginGuard::default();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        let t = Instant::now();
        for i in 1..MAX_FAILURES {
            assert!(!g.failed(t + Duration::from_secs(i as u64), ip));
        }
        assert!(!g.banned(t, ip));
        assert!(
            g.failed(t + Duration::from_secs(20), ip),
            "tenth failure bans"
        );
        assert!(g.banned(t + Duration::from_secs(21), ip));
        assert!(!g.banned(t + Duration::from_secs(21), other));
        assert!(!g.banned(t + Duration::from_secs(20) + BAN_TIME, ip));
        assert_eq!(g.bans, 1);
        // Failures spread over more than the window never ban; a success resets.
        let mut g = LoginGuard::default();
        for i in 0..30u64 {
            // 9 failures fit in a window at most: the count restarts before the tenth.
            assert!(!g.failed(t + Duration::from_secs(7 * i), ip), "failure {i}");
        }
        let mut g = LoginGuard::default();
        for _ in 1..MAX_FAILURES {
            g.failed(t, ip);
        }
        g.succeeded(ip);
        assert!(!g.failed(t, ip));
    }
}
