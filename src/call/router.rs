//! The SIP router task: reads the UDP socket and the channel of the stream transports (TCP,
//! TLS, WebSocket, our trunk connections), answers what needs no dialog (OPTIONS, errors,
//! unknown methods), and routes everything else by Call-ID to the call actor that owns it,
//! creating one for each new INVITE.
//!
//! It owns the Call-ID map outright (no lock); actors tell it when they end. Delivery to an
//! actor is `try_send`: a call whose mailbox is full loses a retransmission, never blocks
//! the router, and new INVITEs beyond capacity get `503` with `Retry-After` (back-pressure).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::actor::{self, CallInput};
use super::dialog::{response, ALLOW};
use super::CallContext;
use crate::sip::guard::{SourceGuard, Verdict};
use crate::sip::message::{HeaderName, Method, StartLine};
use crate::sip::transport::{handle_datagram, Inbound, ReplyPath};
use crate::sip::uri::Scheme;

/// Messages from actors to the router.
#[derive(Debug)]
pub enum RouterControl {
    CallEnded {
        call_id: String,
    },
    /// An outbound call announces its Call-ID before sending the INVITE.
    Register {
        call_id: String,
        tx: mpsc::Sender<CallInput>,
    },
}

/// SIP extensions we implement (RFC 3261 §8.2.2.3: anything else in Require gets 420).
const SUPPORTED: &[&str] = &["timer"];

pub struct Router {
    ctx: Arc<CallContext>,
    calls: HashMap<String, mpsc::Sender<CallInput>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    guard: SourceGuard,
    guard_swept: std::time::Instant,
}

impl Router {
    pub fn new(ctx: Arc<CallContext>, tracker: TaskTracker, shutdown: CancellationToken) -> Router {
        Router {
            guard: SourceGuard::new(ctx.config.guard.clone()),
            guard_swept: std::time::Instant::now(),
            ctx,
            calls: HashMap::new(),
            tracker,
            shutdown,
        }
    }

    pub async fn run(
        mut self,
        udp: Arc<UdpSocket>,
        mut from_tcp: mpsc::Receiver<Inbound>,
        mut control: mpsc::Receiver<RouterControl>,
    ) {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                biased;
                Some(c) = control.recv() => self.handle_control(c),
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        let reply = ReplyPath::Udp { socket: udp.clone(), peer };
                        if let Some(inbound) = handle_datagram(&buf[..n], &reply) {
                            self.handle_inbound(inbound);
                        }
                    }
                    // ICMP port unreachable from a vanished peer shows up here on Linux.
                    Err(e) => debug!(error = %e, "udp recv error"),
                },
                Some(inbound) = from_tcp.recv() => self.handle_inbound(inbound),
                _ = self.shutdown.cancelled() => {
                    // Keep routing in-dialog traffic (BYE answers) while calls wind down.
                    if self.calls.is_empty() {
                        break;
                    }
                    self.drain_after_shutdown(&udp, &mut from_tcp, &mut control, &mut buf).await;
                    break;
                }
            }
        }
    }

    async fn drain_after_shutdown(
        &mut self,
        udp: &Arc<UdpSocket>,
        from_tcp: &mut mpsc::Receiver<Inbound>,
        control: &mut mpsc::Receiver<RouterControl>,
        buf: &mut [u8],
    ) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.calls.is_empty() {
            tokio::select! {
                Some(c) = control.recv() => self.handle_control(c),
                r = udp.recv_from(buf) => if let Ok((n, peer)) = r {
                    let reply = ReplyPath::Udp { socket: udp.clone(), peer };
                    if let Some(inbound) = handle_datagram(&buf[..n], &reply) {
                        self.handle_inbound(inbound);
                    }
                },
                Some(inbound) = from_tcp.recv() => self.handle_inbound(inbound),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    fn handle_control(&mut self, c: RouterControl) {
        match c {
            RouterControl::CallEnded { call_id } => {
                self.calls.remove(&call_id);
            }
            RouterControl::Register { call_id, tx } => {
                self.calls.insert(call_id, tx);
            }
        }
    }

    fn reply(&self, inbound: &Inbound, code: u16, reason: &str, extra: &[(HeaderName, String)]) {
        let local = self.ctx.local_identity(&inbound.reply);
        let tag = super::dialog::new_tag();
        let mut r = response(&inbound.msg, code, reason, Some(&tag), &local);
        for (n, v) in extra {
            r.push_header(n.clone(), v.clone());
        }
        inbound.reply.send(r.to_bytes());
    }

    pub fn handle_inbound(&mut self, inbound: Inbound) {
        let msg = &inbound.msg;
        let StartLine::Request { method, uri } = &msg.start else {
            // A response: it belongs to a transaction of some call (our BYE), else it is stray.
            if msg.validate_response().is_err() {
                return;
            }
            if let Ok(call_id) = msg.call_id() {
                if let Some(tx) = self.calls.get(call_id) {
                    let _ = tx.try_send(CallInput::Sip(Box::new(inbound)));
                }
            }
            return;
        };
        if let Err(e) = msg.validate_request() {
            warn!(peer = %inbound.reply.peer(), error = %e, %method, "rejecting malformed request");
            if *method != Method::Ack {
                self.reply(&inbound, e.status(), &e.to_string(), &[]);
            }
            return;
        }
        if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            if *method != Method::Ack {
                self.reply(&inbound, 416, "Unsupported URI Scheme", &[]);
            }
            return;
        }
        if !matches!(method, Method::Ack | Method::Cancel) {
            let unsupported: Vec<&str> = msg
                .header_values(&HeaderName::Require)
                .filter(|opt| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(opt)))
                .collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(", ");
                self.reply(
                    &inbound,
                    420,
                    "Bad Extension",
                    &[(HeaderName::Other("Unsupported".into()), list)],
                );
                return;
            }
        }
        let Ok(call_id) = msg.call_id().map(str::to_string) else {
            return;
        };
        if let Some(tx) = self.calls.get(&call_id) {
            match tx.try_send(CallInput::Sip(Box::new(inbound))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(%call_id, "call mailbox full; dropping (peer retransmits)")
                }
                Err(mpsc::error::TrySendError::Closed(CallInput::Sip(inbound))) => {
                    self.calls.remove(&call_id);
                    self.handle_without_dialog(*inbound);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.calls.remove(&call_id);
                }
            }
            return;
        }
        self.handle_without_dialog(inbound);
    }

    fn handle_without_dialog(&mut self, inbound: Inbound) {
        let msg = &inbound.msg;
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method != Method::Ack && !self.admit(&inbound, &method) {
            return;
        }
        let has_to_tag = msg.to_header().map(|t| t.tag().is_some()).unwrap_or(false);
        match method {
            Method::Ack => {}
            Method::Options => self.reply(
                &inbound,
                200,
                "OK",
                &[(HeaderName::Other("Accept".into()), "application/sdp".into())],
            ),
            Method::Invite if !has_to_tag => self.new_call(inbound),
            Method::Invite
            | Method::Bye
            | Method::Cancel
            | Method::Info
            | Method::Update
            | Method::Prack
            | Method::Refer
            | Method::Notify => {
                self.reply(&inbound, 481, "Call/Transaction Does Not Exist", &[]);
            }
            Method::Register => {
                if let Err(inbound) = self.ctx.registrar.offer(inbound) {
                    warn!("registrar saturated; REGISTER refused with 503 (Retry-After: 5)");
                    self.reply(
                        &inbound,
                        503,
                        "Service Unavailable",
                        &[(HeaderName::Other("Retry-After".into()), "5".into())],
                    );
                }
            }
            Method::Subscribe | Method::Publish | Method::Message => {
                self.reply(&inbound, 405, "Method Not Allowed", &[]);
            }
            Method::Other(_) => self.reply(
                &inbound,
                501,
                "Not Implemented",
                &[(HeaderName::Allow, ALLOW.into())],
            ),
        }
    }

    /// The per-source guard for requests outside any dialog: false means drop unanswered.
    fn admit(&mut self, inbound: &Inbound, method: &Method) -> bool {
        let now = std::time::Instant::now();
        if now.duration_since(self.guard_swept) >= std::time::Duration::from_secs(1) {
            self.guard.expire(now);
            self.guard_swept = now;
        }
        let peer = inbound.reply.peer();
        let ua = inbound.msg.header(&HeaderName::UserAgent).unwrap_or("");
        let verdict = self.guard.check(peer.ip(), ua, now);
        match verdict {
            Verdict::Admit => return true,
            Verdict::Banned => debug!(source = %peer, %method, "banned source: dropped"),
            Verdict::Scanner { banned } => warn!(
                target: "security",
                source = %peer,
                %method,
                user_agent = ua,
                banned,
                "scanner user agent: dropped unanswered"
            ),
            Verdict::Flood => warn!(
                target: "security",
                source = %peer,
                %method,
                limit = self.ctx.config.guard.request_limit,
                window_s = self.ctx.config.guard.window.as_secs(),
                "request flood: source banned for {} s",
                self.ctx.config.guard.ban.as_secs()
            ),
        }
        self.ctx
            .security_drops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }

    fn new_call(&mut self, inbound: Inbound) {
        if self.shutdown.is_cancelled() {
            self.reply(
                &inbound,
                503,
                "Service Unavailable",
                &[(HeaderName::Other("Retry-After".into()), "30".into())],
            );
            return;
        }
        let user = inbound
            .msg
            .request_uri()
            .and_then(|u| u.user.clone())
            .unwrap_or_default();
        let feature = actor::feature_route(&user);
        let cfg = &self.ctx.config;
        let peer = inbound.reply.peer();
        // Toll-fraud safety: with trunk ACLs configured, only those networks may place calls
        // (agents' feature codes are checked against their registration by the ACD).
        if feature.is_none()
            && cfg.inbound_acl_active()
            && cfg.trunk_for_source(peer.ip()).is_none()
        {
            warn!(target: "security", source = %peer, %user, "INVITE from a source that is no configured trunk: refused");
            self.reply(&inbound, 403, "Forbidden", &[]);
            return;
        }
        let route = cfg.route_for(&user).cloned().or(feature);
        let Some(route) = route else {
            info!(peer = %inbound.reply.peer(), "INVITE for unknown destination");
            self.reply(&inbound, 404, "Not Found", &[]);
            return;
        };
        if let Some(ct) = inbound.msg.content_type() {
            let ct = ct.split(';').next().unwrap_or("").trim();
            if !inbound.msg.body.is_empty() && !ct.eq_ignore_ascii_case("application/sdp") {
                self.reply(
                    &inbound,
                    415,
                    "Unsupported Media Type",
                    &[(HeaderName::Other("Accept".into()), "application/sdp".into())],
                );
                return;
            }
        }
        let active = self.ctx.active_calls.load(Ordering::Relaxed);
        if active >= self.ctx.config.max_calls {
            warn!(active, "at max_calls; refusing new INVITE");
            self.reply(
                &inbound,
                503,
                "Service Unavailable",
                &[(HeaderName::Other("Retry-After".into()), "5".into())],
            );
            return;
        }
        let Ok(call_id) = inbound.msg.call_id().map(str::to_string) else {
            return;
        };
        let local = self.ctx.local_identity(&inbound.reply);
        let (tx, rx) = mpsc::channel(actor::MAILBOX);
        self.ctx.active_calls.fetch_add(1, Ordering::Relaxed);
        self.calls.insert(call_id, tx.clone());
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.child_token();
        self.tracker.spawn(actor::run_inbound(
            ctx, inbound, route, local, tx, rx, shutdown,
        ));
    }
}
