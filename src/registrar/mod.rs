//! The registrar service (RFC 3261 §10.3) for agents' phones: digest authentication
//! against HA1 credentials (MD5 and SHA-256, RFC 8760; stale nonces answered with
//! `stale=true`), bindings with expiry kept across restarts, and protection against
//! password guessing and floods (per-source failure counting and temporary bans, logged as
//! security events). One actor owns the binding table; the router hands it REGISTERs and
//! the ACD asks it where an agent can be reached. Behind the Kamailio edge a REGISTER
//! carries the edge's `Path` (RFC 3327, ADR 0008): it is kept with the binding (column
//! `registrations.path`), echoed in the 200 to a phone that supports it, and handed to the
//! ACD as the route set of calls to that phone ([`crate::sip::path`]).
//!
//! The actor never awaits the database while it answers a REGISTER, so a slow or
//! unreachable database (a PostgreSQL outage) stalls neither registrations nor the ACD's
//! look-ups of where agents are:
//! - **Credentials** come from an in-memory cache ([`credentials`]), loaded at start and
//!   reloaded every few seconds by a task the registrar owns (so accounts created by
//!   `switchboard agent add`, the API or another node are seen). A REGISTER the cache would
//!   refuse (unknown user, disabled account, wrong password) waits for one single-user
//!   look-up, rate-limited per user and overall, so a brand-new agent or a changed password
//!   works at once while a scanner's guesses do not turn into a query flood. That look-up runs
//!   on a task of the registrar's own tracker and comes back through an internal mailbox;
//!   when it fails, the phone gets `500` with `Retry-After`, as before.
//! - **Bindings** are written through the record writer's queue (`store::writer`,
//!   [`StoreOp::BindingSaved`] / [`StoreOp::BindingRemoved`]) rather than a writer of our
//!   own: it already is the one bounded queue to the database with what a binding needs —
//!   each op journaled to disk before it is queued (a binding answered `200` survives a
//!   `kill -9` before it is committed), spooled and retried in order through an outage,
//!   drained at shutdown after the registrar has stopped — and its batching makes the
//!   per-AOR coalescing a private writer would do unnecessary at REGISTER rates (one write
//!   per phone per refresh interval, next to several per call). Ops are applied in
//!   submission order and are last-write-wins upserts and deletes, so replays are safe.

pub mod bindings;
pub mod credentials;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::sip::auth::{self, NonceKey};
use crate::sip::build::{new_tag, response, LocalIdentity};
use crate::sip::message::{HeaderName, Message};
use crate::sip::path;
use crate::sip::transport::{Inbound, ReplyPath};
use crate::store::agents::{self, AgentRow};
use crate::store::ops::StoreOp;
use crate::store::writer::StoreHandle;
use crate::store::Db;
use bindings::{Binding, Bindings, RegisterOutcome, MIN_EXPIRES};
use credentials::{Credentials, LookupResult, REFRESH_EVERY};

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
/// A single-user account look-up longer than this counts as failed (`500`, Retry-After).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// A reload of every account longer than this is abandoned (the cache stays as it is).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// REGISTERs waiting for a look-up of their user: in all, and per user (retransmissions).
const MAX_PARKED: usize = 256;
const MAX_PARKED_PER_USER: usize = 8;
/// The answer when the account cannot be read now (as when the database fails).
const RETRY_AFTER_SECS: &str = "5";

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

/// What the registrar's own tasks report back to it.
#[derive(Debug)]
enum Internal {
    /// Every account, read by a query that started at `read_at`.
    Snapshot {
        rows: Vec<AgentRow>,
        read_at: Instant,
    },
    /// A single-user look-up has finished.
    Looked { user: String, result: LookupResult },
}

/// A REGISTER waiting for a look-up of its user.
struct Parked {
    msg: Message,
    flow: ReplyPath,
}

/// How the credentials of a REGISTER check out against what the cache holds.
enum Check {
    Verified(Arc<AgentRow>),
    /// A stale nonce: challenge again with `stale=true`.
    Stale,
    /// Not a wrong password (old nonce, other realm, qop): challenge afresh.
    Rechallenge,
    /// No such (enabled) account, or a wrong password: the reason for the security log.
    Refused(String),
}

pub struct Registrar {
    db: Db,
    /// The record writer's queue: bindings are written through it.
    store: StoreHandle,
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
    credentials: Credentials,
    parked: HashMap<String, Vec<Parked>>,
    parked_total: usize,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: Option<mpsc::Receiver<Internal>>,
    /// The account reloader and look-ups: `run` waits for them before it returns.
    tasks: TaskTracker,
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

/// What the ACD needs of a binding to ring its phone.
fn reachable(b: &Binding) -> Reachable {
    Reachable {
        contact: b.contact.clone(),
        flow: b.flow.clone(),
        path: b.path.clone(),
    }
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
    /// Build the registrar, restore unexpired bindings and load every agent account from the
    /// database.
    pub async fn new(
        db: Db,
        store: StoreHandle,
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
                            path: path::from_column(r.path.as_deref()),
                        },
                    );
                }
            }
            Err(e) => warn!(error = %e, "cannot restore registrations"),
        }
        let mut credentials = Credentials::default();
        let read_at = Instant::now();
        match agents::list(&db).await {
            Ok(rows) => credentials.replace(rows, read_at),
            // Not fatal: REGISTERs then look their users up one by one.
            Err(e) => warn!(error = %e, "cannot load agent accounts"),
        }
        let (internal_tx, internal_rx) = mpsc::channel(2 * credentials::MAX_IN_FLIGHT + 2);
        Registrar {
            db,
            store,
            realm,
            local,
            nonces: NonceKey::new(300),
            algorithms,
            replay: auth::ReplayGuard::new(4096),
            bindings,
            sources: HashMap::new(),
            acd: None,
            credentials,
            parked: HashMap::new(),
            parked_total: 0,
            internal_tx,
            internal_rx: Some(internal_rx),
            tasks: TaskTracker::new(),
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
            .map(reachable)
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
        let stop = CancellationToken::new();
        self.tasks.spawn(refresh_accounts(
            self.db.clone(),
            self.internal_tx.clone(),
            stop.clone(),
        ));
        let Some(mut internal) = self.internal_rx.take() else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => self.sweep().await,
                Some(msg) = internal.recv() => self.handle_internal(msg).await,
                msg = rx.recv() => match msg {
                    None => break,
                    Some(RegistrarMsg::Register(inbound)) => self.handle_register(*inbound).await,
                    Some(RegistrarMsg::Lookup { aor, reply }) => {
                        let now = Instant::now();
                        let list = self.bindings.lookup(&aor, now).into_iter()
                            .map(reachable)
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
        // Our tasks' reports are refused from here on, so none of them waits for room.
        stop.cancel();
        internal.close();
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn handle_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Snapshot { rows, read_at } => {
                debug!(accounts = rows.len(), "agent accounts reloaded");
                self.credentials.replace(rows, read_at);
            }
            Internal::Looked { user, result } => {
                self.credentials.finish_lookup(&user, result);
                let waiting = self.parked.remove(&user).unwrap_or_default();
                self.parked_total = self.parked_total.saturating_sub(waiting.len());
                for p in waiting {
                    self.process_register(p.msg, p.flow, true).await;
                }
            }
        }
    }

    /// Whether another REGISTER of `user` may wait for a look-up (bounded memory).
    fn can_park(&self, user: &str) -> bool {
        self.parked_total < MAX_PARKED
            && self
                .parked
                .get(user)
                .is_none_or(|l| l.len() < MAX_PARKED_PER_USER)
    }

    /// Hold a REGISTER until the look-up of its user is back (after `can_park`).
    fn park(&mut self, user: &str, msg: Message, flow: ReplyPath) {
        self.parked
            .entry(user.to_string())
            .or_default()
            .push(Parked { msg, flow });
        self.parked_total += 1;
    }

    /// Read one account on a task of ours; the answer comes back as [`Internal::Looked`].
    fn spawn_lookup(&self, user: String) {
        let (db, tx) = (self.db.clone(), self.internal_tx.clone());
        self.tasks.spawn(async move {
            let result = match tokio::time::timeout(
                LOOKUP_TIMEOUT,
                agents::find_by_user(&db, &user),
            )
            .await
            {
                Ok(Ok(Some(row))) => LookupResult::Found(Arc::new(row)),
                Ok(Ok(None)) => LookupResult::Missing,
                Ok(Err(e)) => {
                    warn!(error = %e, "agent lookup failed");
                    LookupResult::Failed
                }
                Err(_) => {
                    warn!("agent lookup took more than {} s", LOOKUP_TIMEOUT.as_secs());
                    LookupResult::Failed
                }
            };
            let _ = tx.send(Internal::Looked { user, result }).await;
        });
    }

    async fn sweep(&mut self) {
        let now = Instant::now();
        let mut changed: Vec<String> = Vec::new();
        for (aor, contact) in self.bindings.expire(now) {
            debug!(%aor, "registration expired");
            self.store.submit(StoreOp::BindingRemoved {
                aor: aor.clone(),
                contact: Some(contact),
            });
            if !changed.contains(&aor) {
                changed.push(aor);
            }
        }
        for aor in changed {
            self.notify_acd(&aor, None).await;
        }
        self.credentials.sweep(now);
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

    /// The account cannot be read now (the database fails): the phone tries again soon.
    fn retry_later(&self, req: &Message, flow: &ReplyPath) {
        self.reply(
            req,
            flow,
            500,
            "Server Internal Error",
            &[(
                HeaderName::Other("Retry-After".into()),
                RETRY_AFTER_SECS.into(),
            )],
        );
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
        let ip = inbound.reply.peer().ip();
        if !self.admit(ip, Instant::now()) {
            return;
        }
        self.process_register(inbound.msg, inbound.reply, false)
            .await;
    }

    /// Check the credentials against the cached account.
    fn check(&mut self, creds: &auth::Credentials, method: &str) -> Check {
        // Unknown users and wrong passwords get the same answer: which users exist is not
        // revealed to a scanner.
        let Some(agent) = self.credentials.find(&creds.username).filter(|a| a.enabled) else {
            return Check::Refused("unknown user".into());
        };
        let verdict = auth::verify(
            creds,
            method,
            |alg| Some(agent.ha1(alg).to_string()),
            &self.realm,
            &self.nonces,
            unix_now(),
        )
        .and_then(|()| self.replay.check_and_record(creds));
        match verdict {
            Ok(()) => Check::Verified(agent),
            Err(e) if e.is_stale() => Check::Stale,
            Err(
                auth::AuthError::InvalidNonce
                | auth::AuthError::RealmMismatch
                | auth::AuthError::QopRequired,
            )
            | Err(auth::AuthError::UnsupportedQop(_)) => Check::Rechallenge,
            Err(e) => Check::Refused(e.to_string()),
        }
    }

    /// Answer an admitted REGISTER. `fresh`: its user's account was just read from the
    /// database (the REGISTER waited for that), so the cache is the truth for it.
    async fn process_register(&mut self, req: Message, flow: ReplyPath, fresh: bool) {
        let now = Instant::now();
        let ip = flow.peer().ip();
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
        let username = creds.username.clone();
        if self.credentials.in_flight(&username) {
            // Its account is being read: answer with the result, in order.
            if self.can_park(&username) {
                self.park(&username, req, flow);
            } else {
                self.retry_later(&req, &flow);
            }
            return;
        }
        let method = req
            .method()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let agent = match self.check(&creds, &method) {
            Check::Verified(agent) => agent,
            Check::Stale => {
                self.challenge(&req, &flow, true);
                return;
            }
            Check::Rechallenge => {
                self.challenge(&req, &flow, false);
                return;
            }
            Check::Refused(why) => {
                // The cache may be behind the database (an agent added a moment ago, a
                // password just changed): read this user's account once before refusing.
                if !fresh
                    && self.can_park(&username)
                    && self.credentials.begin_lookup(&username, now)
                {
                    self.park(&username, req, flow);
                    self.spawn_lookup(username);
                    return;
                }
                if matches!(
                    self.credentials.recent(&username, now),
                    Some(LookupResult::Failed)
                ) {
                    // The account could not be read: not the phone's fault.
                    self.retry_later(&req, &flow);
                    return;
                }
                self.failed(ip, now, &username, &why);
                self.reply(&req, &flow, 403, "Forbidden", &[]);
                return;
            }
        };
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
                // Queued (and journaled) before the 200 goes out; never awaited here.
                for c in removed {
                    self.store.submit(StoreOp::BindingRemoved {
                        aor: aor.clone(),
                        contact: Some(c),
                    });
                }
                let list = self.bindings.lookup(&aor, now);
                for b in list.iter().filter(|b| added.contains(&b.contact)) {
                    self.store.submit(StoreOp::BindingSaved {
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
                        path: path::to_column(&b.path),
                    });
                }
                let mut extra: Vec<(HeaderName, String)> = contacts
                    .iter()
                    .map(|(c, secs)| (HeaderName::Contact, format!("<{c}>;expires={secs}")))
                    .collect();
                // RFC 3327 §5.3: the Path goes back in the 200 — to a phone that said it
                // understands it (Supported: path; RFC 3261 §8.2.2.3). It is kept and used
                // either way: the proxy that added it is who needs it.
                let route = path::path_of(&req);
                if !route.is_empty() && path::supports_path(&req) {
                    extra.push((path::header_name(), route.join(", ")));
                }
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

/// Reload every account every [`REFRESH_EVERY`] (the first load is `Registrar::new`'s).
/// A failure keeps the cache as it is: known phones keep registering through an outage.
async fn refresh_accounts(db: Db, tx: mpsc::Sender<Internal>, stop: CancellationToken) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let read_at = Instant::now();
        let loaded = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(REFRESH_TIMEOUT, agents::list(&db)) => r,
        };
        let error = match loaded {
            Ok(Ok(rows)) => {
                if failing {
                    info!("agent accounts readable again");
                    failing = false;
                }
                if tx.send(Internal::Snapshot { rows, read_at }).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", REFRESH_TIMEOUT.as_secs()),
        };
        if !failing {
            warn!(%error, "cannot reload agent accounts; REGISTERs answered from the cache");
            failing = true;
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
    use std::net::SocketAddr;

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

    /// A registrar on an in-memory database, its REGISTERs arriving over a fake TCP flow
    /// whose answers the test reads, and the record writer's queue left unread so the test
    /// sees the binding ops it receives.
    struct Harness {
        db: Db,
        handle: RegistrarHandle,
        store_rx: mpsc::Receiver<crate::store::writer::Queued>,
        flow: ReplyPath,
        answers: mpsc::Receiver<bytes::Bytes>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    const REALM: &str = "switchboard";

    async fn add_agent(db: &Db, name: &str, password: &str) {
        agents::upsert(
            db,
            &agents::AgentSpec {
                name: name.into(),
                password: password.into(),
                extension: None,
                queues: vec!["support".into()],
                skills: vec![],
                realm: REALM.into(),
            },
        )
        .await
        .expect("agent stored");
    }

    /// A registrar as the server builds it (MD5 challenges, no UDP socket), on `db`.
    async fn test_registrar(db: &Db, store: StoreHandle) -> Registrar {
        let local = LocalIdentity {
            contact: "<sip:switchboard@127.0.0.1:5060>".into(),
            via_host: "127.0.0.1:5060".into(),
            transport: crate::sip::transport::TransportKind::Udp,
            user_agent: "switchboard-test".into(),
        };
        Registrar::new(
            db.clone(),
            store,
            REALM.into(),
            vec![auth::Algorithm::Md5],
            local,
            None,
        )
        .await
    }

    async fn harness(agents_before: &[(&str, &str)]) -> Harness {
        let db = Db::connect("sqlite::memory:").await.expect("db");
        for (name, password) in agents_before {
            add_agent(&db, name, password).await;
        }
        let (store, store_rx) = crate::store::writer::channel();
        let registrar = test_registrar(&db, store).await;
        let (handle, rx) = channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(registrar.run(rx, shutdown.clone()));
        let (tx, answers) = mpsc::channel(16);
        let flow = ReplyPath::Stream {
            tx,
            peer: "127.0.0.1:5090".parse().expect("addr"),
            local: "127.0.0.1:5060".parse().expect("addr"),
            kind: crate::sip::transport::TransportKind::Tcp,
        };
        Harness {
            db,
            handle,
            store_rx,
            flow,
            answers,
            shutdown,
            task,
        }
    }

    impl Harness {
        /// Send one REGISTER and return the answer (panics after `within`).
        async fn send(&mut self, msg: String, within: Duration) -> Message {
            let msg = Message::parse(msg.as_bytes(), crate::sip::message::Framing::Datagram)
                .expect("register parses");
            self.handle
                .offer(Inbound {
                    msg,
                    reply: self.flow.clone(),
                    size: 0,
                })
                .expect("registrar takes it");
            let bytes = tokio::time::timeout(within, self.answers.recv())
                .await
                .expect("answered in time")
                .expect("flow open");
            Message::parse(&bytes, crate::sip::message::Framing::Datagram).expect("answer parses")
        }

        /// The digest dance for `user`: 401, then the answer to it. Returns the final answer.
        async fn register(&mut self, user: &str, password: &str, cseq: u32) -> Message {
            self.register_with(user, password, cseq, "").await
        }

        /// As `register`, both REGISTERs carrying the `extra` header lines (CRLF-ended).
        async fn register_with(
            &mut self,
            user: &str,
            password: &str,
            cseq: u32,
            extra: &str,
        ) -> Message {
            let within = Duration::from_secs(5);
            let challenge = self
                .send(register_msg_with(user, cseq, None, extra), within)
                .await;
            assert_eq!(challenge.status(), Some(401));
            let www = challenge
                .header(&HeaderName::WwwAuthenticate)
                .expect("challenge")
                .to_string();
            let ch = auth::parse_challenge(&www).expect("parses");
            let creds = auth::answer_challenge(
                &ch,
                "REGISTER",
                "sip:127.0.0.1",
                user,
                password,
                "c0ffee",
                1,
            );
            self.send(
                register_msg_with(user, cseq + 1, Some(&creds), extra),
                within,
            )
            .await
        }

        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("registrar stops at once")
                .expect("no panic");
        }
    }

    fn register_msg(user: &str, cseq: u32, auth: Option<&str>) -> String {
        register_msg_with(user, cseq, auth, "")
    }

    fn register_msg_with(user: &str, cseq: u32, auth: Option<&str>, extra: &str) -> String {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5090;branch=z9hG4bK{user}{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=a\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:5090;transport=tcp>\r\n\
             Expires: 600\r\n{extra}{auth}Content-Length: 0\r\n\r\n"
        )
    }

    /// The database gone (its pool closed): a known agent still registers at once from the
    /// cache and its binding is queued to the record writer; an unknown user's look-up fails
    /// and is answered 500 with Retry-After, as a database error always was.
    #[tokio::test]
    async fn registers_from_the_cache_while_the_database_is_gone() {
        let mut h = harness(&[("agent1", "secret1")]).await;
        h.db.pool.close().await;
        let t = Instant::now();
        let ok = h.register("agent1", "secret1", 1).await;
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let op = h.store_rx.try_recv().expect("binding op queued").into_op();
        match op {
            StoreOp::BindingSaved {
                aor,
                contact,
                source,
                cseq,
                ..
            } => {
                assert_eq!(aor, "agent1");
                assert_eq!(contact, "sip:agent1@127.0.0.1:5090;transport=tcp");
                assert_eq!(source, "tcp:127.0.0.1:5090");
                assert_eq!(cseq, 2);
            }
            other => panic!("{other:?}"),
        }
        let refused = h.register("nobody", "x", 1).await;
        assert_eq!(refused.status(), Some(500), "{refused:?}");
        assert_eq!(
            refused.header(&HeaderName::Other("Retry-After".into())),
            Some("5")
        );
        // Unregistering is queued the same way.
        let mut unreg = register_msg("agent1", 3, None).replace("Expires: 600", "Expires: 0");
        let challenge = h.send(unreg.clone(), Duration::from_secs(5)).await;
        let www = challenge
            .header(&HeaderName::WwwAuthenticate)
            .expect("challenge")
            .to_string();
        let ch = auth::parse_challenge(&www).expect("parses");
        let creds = auth::answer_challenge(
            &ch,
            "REGISTER",
            "sip:127.0.0.1",
            "agent1",
            "secret1",
            "c0ffee",
            1,
        );
        unreg = register_msg("agent1", 4, Some(&creds)).replace("Expires: 600", "Expires: 0");
        let gone = h.send(unreg, Duration::from_secs(5)).await;
        assert_eq!(gone.status(), Some(200));
        assert!(matches!(
            h.store_rx.try_recv().expect("removal queued").into_op(),
            StoreOp::BindingRemoved { aor, contact: Some(_) } if aor == "agent1"
        ));
        h.stop().await;
    }

    /// An agent created after the registrar started registers at once (one look-up on the
    /// miss), and so does a phone with a password changed a moment ago; a wrong password is
    /// still refused.
    #[tokio::test]
    async fn new_agents_and_changed_passwords_work_at_once() {
        let mut h = harness(&[("old", "pw-old")]).await;
        add_agent(&h.db, "newbie", "pw-new").await;
        let ok = h.register("newbie", "pw-new", 1).await;
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        add_agent(&h.db, "old", "changed").await;
        let ok = h.register("old", "changed", 1).await;
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        let refused = h.register("old", "pw-old", 10).await;
        assert_eq!(refused.status(), Some(403), "{refused:?}");
        let refused = h.register("ghost", "pw", 1).await;
        assert_eq!(refused.status(), Some(403), "{refused:?}");
        h.stop().await;
    }

    /// REGISTER handling time, measured rather than checked (debug or release):
    /// `cargo test --lib registrar::tests::measure_register_handling -- --ignored --nocapture`.
    /// One agent on a file-backed SQLite database; each registration is a challenge and an
    /// answered REGISTER from its own address (so the flood ban stays out of the way); the
    /// time is that of the answered REGISTER, from hand-over to its 200. The record writer
    /// runs beside it, as in the server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn measure_register_handling() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("m.db").display()))
            .await
            .expect("db");
        add_agent(&db, "bench", "pw").await;
        let (store, store_rx) = crate::store::writer::channel();
        let close = CancellationToken::new();
        let writer = tokio::spawn(crate::store::writer::run(
            db.clone(),
            store_rx,
            dir.path().join("spool.jsonl"),
            store.stats.clone(),
            close.clone(),
        ));
        let local = LocalIdentity {
            contact: "<sip:switchboard@127.0.0.1:5060>".into(),
            via_host: "127.0.0.1:5060".into(),
            transport: crate::sip::transport::TransportKind::Udp,
            user_agent: "switchboard-test".into(),
        };
        let registrar = Registrar::new(
            db.clone(),
            store.clone(),
            REALM.into(),
            vec![auth::Algorithm::Md5],
            local,
            None,
        )
        .await;
        drop(store);
        let (handle, rx) = channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(registrar.run(rx, shutdown.clone()));
        let (tx, mut answers) = mpsc::channel(16);
        let n: u32 = std::env::var("MEASURE_REGISTERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let mut took = Vec::with_capacity(n as usize);
        let started = Instant::now();
        for i in 0..n {
            let flow = ReplyPath::Stream {
                tx: tx.clone(),
                peer: SocketAddr::from(([10, (i / 250) as u8, (i % 250) as u8, 1], 5090)),
                local: "127.0.0.1:5060".parse().expect("addr"),
                kind: crate::sip::transport::TransportKind::Tcp,
            };
            let exchange = |text: String| {
                let msg = Message::parse(text.as_bytes(), crate::sip::message::Framing::Datagram)
                    .expect("parses");
                let t = Instant::now();
                handle
                    .offer(Inbound {
                        msg,
                        reply: flow.clone(),
                        size: 0,
                    })
                    .expect("taken");
                t
            };
            exchange(register_msg("bench", 2 * i + 1, None));
            let challenge = answers.recv().await.expect("401");
            let challenge =
                Message::parse(&challenge, crate::sip::message::Framing::Datagram).expect("parses");
            let www = challenge
                .header(&HeaderName::WwwAuthenticate)
                .expect("challenge")
                .to_string();
            let ch = auth::parse_challenge(&www).expect("parses");
            let creds = auth::answer_challenge(
                &ch,
                "REGISTER",
                "sip:127.0.0.1",
                "bench",
                "pw",
                "c0ffee",
                1,
            );
            let t = exchange(register_msg("bench", 2 * i + 2, Some(&creds)));
            let ok = answers.recv().await.expect("200");
            took.push(t.elapsed());
            assert!(
                ok.starts_with(b"SIP/2.0 200"),
                "{}",
                String::from_utf8_lossy(&ok)
            );
        }
        let total = started.elapsed();
        took.sort();
        let pct = |p: f64| took[((took.len() as f64 - 1.0) * p) as usize];
        eprintln!(
            "measure_register_handling: {n} registrations in {total:.2?} ({:.0}/s incl. challenges); \
             answered REGISTER median {:?}, p99 {:?}, max {:?}",
            f64::from(n) / total.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        shutdown.cancel();
        let _ = task.await;
        close.cancel();
        let _ = writer.await;
    }

    /// A REGISTER relayed by the edge (RFC 3327): its Path (two headers, a comma list) is
    /// kept in order, written with the binding, handed to the ACD's look-up, and echoed in the
    /// 200 only to a phone that sent `Supported: path`. A registrar on another node reading
    /// the table gets the same path back.
    #[tokio::test]
    async fn path_is_stored_echoed_when_supported_and_read_back_by_another_node() {
        let mut h = harness(&[("agent1", "secret1"), ("agent2", "secret2")]).await;
        let path =
            "Path: <sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>, <sip:10.0.0.9:5070;lr>\r\n\
                    Path: <sip:10.0.0.8;lr>\r\n";
        let want = [
            "<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>",
            "<sip:10.0.0.9:5070;lr>",
            "<sip:10.0.0.8;lr>",
        ];
        let echoed = h
            .register_with(
                "agent1",
                "secret1",
                1,
                &format!("{path}Supported: path\r\n"),
            )
            .await;
        assert_eq!(echoed.status(), Some(200), "{echoed:?}");
        let name = path::header_name();
        let back: Vec<&str> = echoed.header_values(&name).collect();
        assert_eq!(back, want, "{echoed:?}");
        // Without Supported: path the phone gets no Path back, the binding keeps it anyway.
        let quiet = h.register_with("agent2", "secret2", 1, path).await;
        assert_eq!(quiet.status(), Some(200), "{quiet:?}");
        assert_eq!(quiet.header(&path::header_name()), None, "{quiet:?}");
        let mut saved = Vec::new();
        while let Ok(q) = h.store_rx.try_recv() {
            let op = q.into_op();
            if let StoreOp::BindingSaved { aor, path, .. } = &op {
                assert_eq!(path.as_deref(), Some(want.join(", ").as_str()), "{aor}");
            }
            saved.push(op);
        }
        assert_eq!(saved.len(), 2, "{saved:?}");
        for agent in ["agent1", "agent2"] {
            let found = h.handle.lookup(agent).await;
            assert_eq!(found.len(), 1, "{agent}");
            assert_eq!(found[0].path, want, "{agent}");
        }
        // Another node: the rows written, a registrar started on the same database.
        let mut tx = h.db.pool.begin().await.expect("tx");
        for op in &saved {
            crate::store::ops::apply(&mut tx, h.db.dialect, op)
                .await
                .expect("binding written");
        }
        tx.commit().await.expect("commit");
        let (store, _rx) = crate::store::writer::channel();
        let other = test_registrar(&h.db, store).await;
        let (handle, rx) = channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(other.run(rx, stop.clone()));
        let found = handle.lookup("agent2").await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].contact, "sip:agent2@127.0.0.1:5090;transport=tcp");
        assert_eq!(found[0].path, want);
        stop.cancel();
        let _ = task.await;
        h.stop().await;
    }

    /// A REGISTER straight from the phone: no path anywhere, no Path in the 200.
    #[tokio::test]
    async fn a_direct_registration_has_no_path() {
        let mut h = harness(&[("agent1", "secret1")]).await;
        let ok = h
            .register_with("agent1", "secret1", 1, "Supported: path\r\n")
            .await;
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        assert_eq!(ok.header(&path::header_name()), None);
        match h.store_rx.try_recv().expect("saved").into_op() {
            StoreOp::BindingSaved { path, .. } => assert_eq!(path, None),
            other => panic!("{other:?}"),
        }
        assert!(h.handle.lookup("agent1").await[0].path.is_empty());
        h.stop().await;
    }

    #[test]
    fn parses_postgres_timestamps() {
        assert!(parse_pg_ts("2026-11-23 15:26:08.123+00").is_some());
        assert!(parse_pg_ts("2026-11-23 15:26:08+00").is_some());
        assert!(parse_pg_ts("nope").is_none());
    }
}
