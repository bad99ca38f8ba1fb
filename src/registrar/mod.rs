//! The registrar service (RFC 3261 §10.3) for agents' phones: digest authentication
//! against HA1 credentials (MD5 and SHA-256, RFC 8760; stale nonces answered with
//! `stale=true`), bindings with expiry kept across restarts, and protection against
//! password guessing and floods (per-source failure counting and temporary bans, logged as
//! security events). One actor owns the binding table; the router hands it REGISTERs and
//! the ACD asks it where an agent can be reached.

pub mod bindings;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::sip::auth::{self, NonceKey};
use crate::sip::build::{new_tag, response, LocalIdentity};
use crate::sip::message::{HeaderName, Message};
use crate::sip::transport::{Inbound, ReplyPath};
use crate::store::agents::{self, BindingRow};
use crate::store::Db;
use bindings::{Binding, Bindings, RegisterOutcome, MIN_EXPIRES};

/// Failed authentications from one address within `FAIL_WINDOW` before it is banned.
const MAX_FAILURES: u32 = 10;
const FAIL_WINDOW: Duration = Duration::from_secs(60);
const BAN_TIME: Duration = Duration::from_secs(300);
/// REGISTERs accepted from one address per `FLOOD_WINDOW` before it is banned.
const MAX_REQUESTS: u32 = 200;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Bounded tracking: beyond this many tracked sources, the oldest windows are forgotten.
const MAX_TRACKED_SOURCES: usize = 100_000;
pub const MAILBOX: usize = 1024;

/// Where an agent can be reached (defined with the ACD, its consumer; re-exported here).
pub use crate::acd::Reachable;

#[derive(Debug)]
pub enum RegistrarMsg {
    Register(Box<Inbound>),
    Lookup {
        aor: String,
        reply: oneshot::Sender<Vec<Reachable>>,
    },
    Registered {
        reply: oneshot::Sender<Vec<(String, usize)>>,
    },
}

#[derive(Clone, Debug)]
pub struct RegistrarHandle {
    tx: mpsc::Sender<RegistrarMsg>,
}

impl RegistrarHandle {
    /// Hand a REGISTER over; when the registrar is saturated it comes back (answer 503).
    pub fn offer(&self, inbound: Inbound) -> Result<(), Box<Inbound>> {
        match self.tx.try_send(RegistrarMsg::Register(Box::new(inbound))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(RegistrarMsg::Register(i)))
            | Err(mpsc::error::TrySendError::Closed(RegistrarMsg::Register(i))) => Err(i),
            Err(_) => Ok(()),
        }
    }

    pub async fn lookup(&self, aor: &str) -> Vec<Reachable> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(RegistrarMsg::Lookup {
                aor: aor.to_string(),
                reply,
            })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Every registered agent and its number of contacts.
    pub async fn registered(&self) -> Vec<(String, usize)> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(RegistrarMsg::Registered { reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct SourceState {
    failures: u32,
    fail_window: Option<Instant>,
    requests: u32,
    req_window: Option<Instant>,
    banned_until: Option<Instant>,
}

pub struct Registrar {
    db: Db,
    realm: String,
    local: LocalIdentity,
    nonces: NonceKey,
    /// Challenges offered, in order.
    algorithms: Vec<auth::Algorithm>,
    replay: auth::ReplayGuard,
    bindings: Bindings,
    sources: HashMap<IpAddr, SourceState>,
    /// Told whenever an agent's reachability changes.
    acd: Option<crate::acd::AcdHandle>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ts_after(secs: u64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs as i64))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub fn channel() -> (RegistrarHandle, mpsc::Receiver<RegistrarMsg>) {
    let (tx, rx) = mpsc::channel(MAILBOX);
    (RegistrarHandle { tx }, rx)
}

/// The flow of a binding restored at start. A UDP registration is reached again at the
/// address its REGISTER came from (`source = "udp:IP:PORT"`), not at its Contact: behind NAT
/// the Contact holds a private address, while the NAT's mapping to the source usually
/// outlives a restart of a few seconds (phones refresh it with keep-alives). Connections
/// (TCP, TLS, WebSocket) are gone with the process: those phones are reached at their
/// Contact until they register again.
fn restored_flow(
    source: &str,
    udp: Option<&std::sync::Arc<tokio::net::UdpSocket>>,
) -> Option<ReplyPath> {
    let peer = source.strip_prefix("udp:")?.parse().ok()?;
    Some(ReplyPath::Udp {
        socket: udp?.clone(),
        peer,
    })
}

impl Registrar {
    /// Build the registrar and restore unexpired bindings from the database.
    pub async fn new(
        db: Db,
        realm: String,
        algorithms: Vec<auth::Algorithm>,
        local: LocalIdentity,
        udp: Option<std::sync::Arc<tokio::net::UdpSocket>>,
    ) -> Registrar {
        let mut bindings = Bindings::default();
        let now = Instant::now();
        let wall = chrono::Utc::now();
        match agents::load_bindings(&db).await {
            Ok(rows) => {
                for r in rows {
                    let expires_at =
                        chrono::DateTime::parse_from_rfc3339(&r.expires_at.replace(' ', "T"))
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .ok()
                            .or_else(|| parse_pg_ts(&r.expires_at));
                    let Some(expires_at) = expires_at else {
                        continue;
                    };
                    let Ok(left) = (expires_at - wall).to_std() else {
                        continue;
                    };
                    let flow = restored_flow(&r.source, udp.as_ref());
                    bindings.insert_restored(
                        &r.aor,
                        Binding {
                            contact: r.contact,
                            expires: now + left,
                            flow,
                            call_id: r.call_id,
                            cseq: r.cseq as u32,
                            user_agent: r.user_agent,
                        },
                    );
                }
            }
            Err(e) => warn!(error = %e, "cannot restore registrations"),
        }
        Registrar {
            db,
            realm,
            local,
            nonces: NonceKey::new(300),
            algorithms,
            replay: auth::ReplayGuard::new(4096),
            bindings,
            sources: HashMap::new(),
            acd: None,
        }
    }

    /// Report reachability changes to the ACD (agents become available when they register).
    pub fn with_acd(mut self, acd: crate::acd::AcdHandle) -> Registrar {
        self.acd = Some(acd);
        self
    }

    /// A change of reachability changes the ACD's state (who can be offered calls), so it
    /// must not be lost to a full ACD mailbox: the registrar waits for room. It never blocks
    /// the router (which hands REGISTERs over with `try_send` and answers 503 while the
    /// registrar is busy), and the ACD never waits on the registrar, so this cannot deadlock.
    async fn notify_acd(&self, aor: &str, def: Option<crate::acd::AgentDef>) {
        let Some(acd) = &self.acd else { return };
        let contacts: Vec<Reachable> = self
            .bindings
            .lookup(aor, Instant::now())
            .into_iter()
            .map(|b| Reachable {
                contact: b.contact.clone(),
                flow: b.flow.clone(),
            })
            .collect();
        acd.send_wait(crate::acd::AcdMsg::Reachability {
            name: aor.to_string(),
            def,
            contacts,
        })
        .await;
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<RegistrarMsg>, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(Duration::from_secs(15));
        let restored: Vec<String> = self.bindings.aors().map(str::to_string).collect();
        for aor in restored {
            self.notify_acd(&aor, None).await;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => self.sweep().await,
                msg = rx.recv() => match msg {
                    None => break,
                    Some(RegistrarMsg::Register(inbound)) => self.handle_register(*inbound).await,
                    Some(RegistrarMsg::Lookup { aor, reply }) => {
                        let now = Instant::now();
                        let list = self.bindings.lookup(&aor, now).into_iter()
                            .map(|b| Reachable { contact: b.contact.clone(), flow: b.flow.clone() })
                            .collect();
                        let _ = reply.send(list);
                    }
                    Some(RegistrarMsg::Registered { reply }) => {
                        let now = Instant::now();
                        let mut v: Vec<(String, usize)> = self.bindings.aors().map(str::to_string).collect::<Vec<_>>()
                            .into_iter().map(|a| { let n = self.bindings.lookup(&a, now).len(); (a, n) }).filter(|(_, n)| *n > 0).collect();
                        v.sort();
                        let _ = reply.send(v);
                    }
                },
            }
        }
    }

    async fn sweep(&mut self) {
        let now = Instant::now();
        let mut changed: Vec<String> = Vec::new();
        for (aor, contact) in self.bindings.expire(now) {
            debug!(%aor, "registration expired");
            let _ = agents::delete_binding(&self.db, &aor, Some(&contact)).await;
            if !changed.contains(&aor) {
                changed.push(aor);
            }
        }
        for aor in changed {
            self.notify_acd(&aor, None).await;
        }
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| t > now)
                || s.fail_window
                    .is_some_and(|t| now.duration_since(t) < FAIL_WINDOW)
                || s.req_window
                    .is_some_and(|t| now.duration_since(t) < FLOOD_WINDOW)
        });
    }

    fn reply(
        &self,
        req: &Message,
        flow: &ReplyPath,
        code: u16,
        reason: &str,
        extra: &[(HeaderName, String)],
    ) {
        let tag = new_tag();
        let mut r = response(req, code, reason, Some(&tag), &self.local);
        for (n, v) in extra {
            r.push_header(n.clone(), v.clone());
        }
        flow.send(r.to_bytes());
    }

    /// Count a request from `ip`; false when it is banned (drop silently).
    fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_TRACKED_SOURCES && !self.sources.contains_key(&ip) {
            self.sources
                .retain(|_, s| s.banned_until.is_some_and(|t| t > now));
        }
        let s = self.sources.entry(ip).or_default();
        if s.banned_until.is_some_and(|t| t > now) {
            return false;
        }
        if s.req_window
            .is_none_or(|t| now.duration_since(t) >= FLOOD_WINDOW)
        {
            s.req_window = Some(now);
            s.requests = 0;
        }
        s.requests += 1;
        if s.requests > MAX_REQUESTS {
            s.banned_until = Some(now + BAN_TIME);
            warn!(target: "security", source = %ip, "REGISTER flood: source banned for {} s", BAN_TIME.as_secs());
            return false;
        }
        true
    }

    fn failed(&mut self, ip: IpAddr, now: Instant, user: &str, why: &str) {
        let s = self.sources.entry(ip).or_default();
        if s.fail_window
            .is_none_or(|t| now.duration_since(t) >= FAIL_WINDOW)
        {
            s.fail_window = Some(now);
            s.failures = 0;
        }
        s.failures += 1;
        warn!(target: "security", source = %ip, user, why, failures = s.failures, "REGISTER authentication failed");
        if s.failures >= MAX_FAILURES {
            s.banned_until = Some(now + BAN_TIME);
            warn!(target: "security", source = %ip, "too many authentication failures: source banned for {} s", BAN_TIME.as_secs());
        }
    }

    fn challenge(&self, req: &Message, flow: &ReplyPath, stale: bool) {
        let nonce = self.nonces.issue_nonce(unix_now());
        // MD5 first: SIPp and many desk phones answer the first challenge they see even when
        // it is SHA-256, which they cannot compute; SHA-256-capable clients still find theirs
        // (RFC 8760 §2.4 allows several challenges; the order is our interop choice).
        let md5_only = md5_only_client(req);
        let extra: Vec<(HeaderName, String)> = self
            .algorithms
            .iter()
            .filter(|a| !md5_only || **a == auth::Algorithm::Md5 || self.algorithms.len() == 1)
            .map(|alg| {
                (
                    HeaderName::WwwAuthenticate,
                    auth::challenge_header(&self.realm, &nonce, *alg, stale, None),
                )
            })
            .collect();
        self.reply(req, flow, 401, "Unauthorized", &extra);
    }

    async fn handle_register(&mut self, inbound: Inbound) {
        let now = Instant::now();
        let req = inbound.msg;
        let flow = inbound.reply;
        let ip = flow.peer().ip();
        if !self.admit(ip, now) {
            return;
        }
        let Ok(to) = req.to_header() else { return };
        let Some(user) = to.uri.user.clone() else {
            self.reply(&req, &flow, 404, "Not Found", &[]);
            return;
        };
        // Whole field values: a Digest value contains commas, so it is never list-split.
        let values = req
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::Authorization)
            .map(|h| h.value.as_str());
        let creds = auth::credentials_for_realm(values, &self.realm);
        let Some(creds) = creds else {
            self.challenge(&req, &flow, false);
            return;
        };
        let agent = match agents::find_by_user(&self.db, &creds.username).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "agent lookup failed");
                self.reply(
                    &req,
                    &flow,
                    500,
                    "Server Internal Error",
                    &[(HeaderName::Other("Retry-After".into()), "5".into())],
                );
                return;
            }
        };
        // Unknown users and wrong passwords get the same answer: which users exist is not
        // revealed to a scanner.
        let Some(agent) = agent.filter(|a| a.enabled) else {
            self.failed(ip, now, &creds.username, "unknown user");
            self.reply(&req, &flow, 403, "Forbidden", &[]);
            return;
        };
        let method = req
            .method()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let verdict = auth::verify(
            &creds,
            &method,
            |alg| Some(agent.ha1(alg).to_string()),
            &self.realm,
            &self.nonces,
            unix_now(),
        )
        .and_then(|()| self.replay.check_and_record(&creds));
        match verdict {
            Ok(()) => {}
            Err(e) if e.is_stale() => {
                self.challenge(&req, &flow, true);
                return;
            }
            // Not a wrong password: a nonce from before a restart, another realm, a qop we
            // do not do. Challenge afresh rather than refuse.
            Err(
                auth::AuthError::InvalidNonce
                | auth::AuthError::RealmMismatch
                | auth::AuthError::QopRequired,
            )
            | Err(auth::AuthError::UnsupportedQop(_)) => {
                self.challenge(&req, &flow, false);
                return;
            }
            Err(e) => {
                self.failed(ip, now, &creds.username, &e.to_string());
                self.reply(&req, &flow, 403, "Forbidden", &[]);
                return;
            }
        }
        // The authenticated user may only register its own address of record.
        if user != agent.name && Some(&user) != agent.extension.as_ref() {
            self.failed(ip, now, &creds.username, "AOR mismatch");
            self.reply(&req, &flow, 403, "Forbidden", &[]);
            return;
        }
        let aor = agent.name.clone();
        match self.bindings.apply(now, &aor, &req, Some(flow.clone())) {
            RegisterOutcome::Ok {
                contacts,
                added,
                removed,
            } => {
                for c in &removed {
                    let _ = agents::delete_binding(&self.db, &aor, Some(c)).await;
                }
                let list = self.bindings.lookup(&aor, now);
                for b in list.iter().filter(|b| added.contains(&b.contact)) {
                    let row = BindingRow {
                        aor: aor.clone(),
                        contact: b.contact.clone(),
                        expires_at: ts_after(b.expires.saturating_duration_since(now).as_secs()),
                        source: format!(
                            "{}:{}",
                            flow.kind().via_name().to_ascii_lowercase(),
                            flow.peer()
                        ),
                        user_agent: b.user_agent.clone(),
                        call_id: b.call_id.clone(),
                        cseq: b.cseq as i64,
                    };
                    if let Err(e) = agents::save_binding(&self.db, &row).await {
                        warn!(error = %e, "cannot persist registration");
                    }
                }
                let mut extra: Vec<(HeaderName, String)> = contacts
                    .iter()
                    .map(|(c, secs)| (HeaderName::Contact, format!("<{c}>;expires={secs}")))
                    .collect();
                extra.push((
                    HeaderName::Other("Date".into()),
                    chrono::Utc::now()
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string(),
                ));
                info!(agent = %aor, contacts = contacts.len(), "registered");
                self.reply(&req, &flow, 200, "OK", &extra);
                // Every successful REGISTER (refreshes too) carries the account as stored, so
                // queue and skill changes reach the ACD without a restart.
                self.notify_acd(
                    &aor,
                    Some(crate::acd::AgentDef {
                        name: agent.name.clone(),
                        queues: agent.queues.clone(),
                        skills: agent.skills.clone(),
                    }),
                )
                .await;
            }
            RegisterOutcome::IntervalTooBrief => self.reply(
                &req,
                &flow,
                423,
                "Interval Too Brief",
                &[(
                    HeaderName::Other("Min-Expires".into()),
                    MIN_EXPIRES.to_string(),
                )],
            ),
            RegisterOutcome::BadRequest(why) => self.reply(&req, &flow, 400, why, &[]),
            RegisterOutcome::OutOfOrder => self.reply(&req, &flow, 500, "Out Of Order", &[]),
        }
    }
}

/// Clients known to fail a 401 that carries any non-MD5 challenge, even next to an MD5 one:
/// libre before 2.x (baresip 0.x/1.x) stops at the first unknown algorithm and gives up the
/// whole registration with ENOSYS; JsSIP 3.x (browser agents over WebSocket) keeps only the
/// *last* WWW-Authenticate header and aborts unless it is MD5. They get the MD5 challenge
/// only (when MD5 is offered).
fn md5_only_client(req: &Message) -> bool {
    let Some(ua) = req.header(&HeaderName::UserAgent) else {
        return false;
    };
    let ua = ua.trim().to_ascii_lowercase();
    ["baresip v0.", "baresip v1.", "jssip 3."]
        .iter()
        .any(|p| ua.starts_with(p))
}

/// PostgreSQL's text form of a timestamptz: `2026-11-23 15:26:08.123+00`.
fn parse_pg_ts(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    let fixed = if s.ends_with("+00") {
        format!("{s}:00")
    } else {
        s.to_string()
    };
    chrono::DateTime::parse_from_str(&fixed, "%Y-%m-%d %H:%M:%S%.f%:z")
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// For tests and the API: shared handle type.
pub type SharedRegistrar = Arc<RegistrarHandle>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_libre_clients_get_md5_only() {
        let req = |ua: &str| {
            let raw = format!(
                "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
                 User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
            );
            Message::parse(raw.as_bytes(), crate::sip::message::Framing::Datagram).expect("parse")
        };
        assert!(md5_only_client(&req("baresip v1.0.0 (x86_64/linux)")));
        assert!(md5_only_client(&req("baresip v0.6.1 (arm/linux)")));
        assert!(!md5_only_client(&req("baresip v3.10.1 (x86_64/linux)")));
        assert!(md5_only_client(&req("JsSIP 3.13.8")));
        assert!(!md5_only_client(&req("Linphone/5.2 (belle-sip/5.2)")));
    }

    #[test]
    fn parses_postgres_timestamps() {
        assert!(parse_pg_ts("2026-11-23 15:26:08.123+00").is_some());
        assert!(parse_pg_ts("2026-11-23 15:26:08+00").is_some());
        assert!(parse_pg_ts("nope").is_none());
    }
}
