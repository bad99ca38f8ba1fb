//! The SIP router task: reads the UDP socket and the channel of the stream transports (TCP,
//! TLS, WebSocket, our trunk connections), answers what needs no dialog (OPTIONS, errors,
//! unknown methods), and routes everything else by Call-ID to the call actor that owns it,
//! creating one for each new INVITE.
//!
//! It owns the Call-ID map outright (no lock); actors tell it when they end. Delivery to an
//! actor is `try_send`: a call whose mailbox is full loses a retransmission, never blocks
//! the router, and new INVITEs beyond capacity get `503` with `Retry-After` (back-pressure).
//!
//! **Overload control.** Every UDP datagram comes with how long it waited since the kernel
//! received it (`runtime::stamped`). A new INVITE that waited longer than `[server]
//! overload_queue_ms` is refused with `503` + `Retry-After` on the spot: no call task, no
//! RTP port, no record. The excess is shed at the cost of one parse and one small answer,
//! calls already accepted keep the CPU, and INVITEs are accepted again as soon as the queue
//! has drained (the decision is per INVITE, there is no state to reset).
//!
//! **Non-INVITE server transactions** (RFC 3261 §17.2.2). Every in-dialog non-INVITE
//! request the router hands to a call (BYE, INFO, UPDATE, REFER, NOTIFY, OPTIONS, MESSAGE…;
//! CANCEL is the INVITE transaction's, ACK none) starts a server transaction here
//! ([`NonInviteServers`]), so its retransmissions never reach the call: in Trying they are
//! absorbed silently, after the call's provisional or final response they get that
//! response again. The call sends its responses itself and hands the router a copy
//! ([`RouterControl::Response`], one bounded message per response). A final response keeps
//! the transaction for Timer J (64·T1 over UDP; over reliable transports Timer J is zero
//! and it ends there); a request the call could not be given (mailbox full or closed)
//! forgets its transaction, so the retransmission is delivered instead.
//!
//! This is also how a call whose peer hung up over UDP answers that BYE's retransmissions
//! without staying alive for Timer J: its 200 OK lives on here as a Completed transaction
//! and the call task ends at once, holding no task, mailbox, dialog or media state (issue
//! 14 #3: a call lingering for Timer J, 25 KB per finished call at 2000 calls/s, was 1.6 GB).
//! Memory is the constraint: at 2000 calls/s the Completed BYEs alone are 64 000 entries at
//! any time, so an entry is only its key hashed to 64 bits, the response's bytes and a
//! deadline: `size_of` 40 bytes, with its hash-table slot, its queued deadlines and the
//! call's 327-byte 200 OK 485 bytes per Completed BYE, 31 MB for the 64 000 (measured in
//! `sip::transaction::compact`). A full transaction with its parsed messages is about 1 KB
//! (full INVITE transactions in Accepted doubled the peak RSS); the `ByeAnswer` by Call-ID
//! this replaces (Call-ID and branch strings, the bytes, an expiry queue of Call-IDs) came
//! to about 700 by the same count, and answered retransmissions of the BYE only.
//!
//! **INVITE server transactions** (RFC 3261 §17.2.1, RFC 6026). The router keeps the
//! transaction of every INVITE it hands to a call — a call's initial INVITE and every
//! re-INVITE in its dialog — in [`InviteServers`] (`sip::transaction`), so retransmissions
//! never reach the call: the actor sends each response to the INVITE itself and hands the
//! router a copy ([`RouterControl::InviteResponse`], one bounded message per response). A
//! retransmitted INVITE is absorbed silently before the call's answer and answered here with
//! the latest provisional or non-2xx final after it; a non-2xx final (a 486, a 487, a
//! re-INVITE's 491, 500 + Retry-After, 422 or 488) is retransmitted here on Timer G until
//! its ACK, which is absorbed (Timers H, I) — an initial INVITE's call has ended by then.
//! After a 2xx the transaction leaves the table for a 24-byte memory of its key (Timer L of
//! RFC 6026's Accepted state): INVITE retransmissions are absorbed, and the call actor (the
//! TU, RFC 3261 §13.3.1.4, RFC 6026 §8.1) retransmits its 2xx until the ACK, which is routed
//! to it by Call-ID like any ACK for a 2xx (the dialog matches it by CSeq). (Full
//! transactions in Accepted doubled the peak RSS at 2000 calls/s.) A re-INVITE its call never
//! answers is given up 64·T1 after it arrived; an initial one when its call ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::actor::{self, CallInput};
use super::admission::{Decision, InviteMemory, RateGate};
use super::dialog::{response, ALLOW};
use super::CallContext;
use crate::runtime::stamped::StampedReceiver;
use crate::sip::guard::{SourceGuard, Verdict};
use crate::sip::message::Message;
use crate::sip::message::{HeaderName, Method, StartLine};
use crate::sip::transaction::{
    InviteServers, Matched, NonInviteServers, TimerConfig, Tracked, TransactionKey,
};
use crate::sip::transport::{handle_datagram, Inbound, ReplyPath};
use crate::sip::uri::Scheme;

/// Messages from actors to the router.
#[derive(Debug)]
pub enum RouterControl {
    CallEnded {
        call_id: String,
        /// Its initial INVITE's server transaction: forgotten if the call never gave it a
        /// final answer (a call that failed to start).
        invite: Option<TransactionKey>,
    },
    /// A response a call sent to an INVITE the router handed it (its initial INVITE, or a
    /// re-INVITE): the router's transaction repeats it for retransmissions and runs its
    /// timers (a 2xx leaves it for the memory of Accepted).
    InviteResponse {
        key: TransactionKey,
        response: Box<Message>,
    },
    /// A response a call sent (already on the wire) to an in-dialog non-INVITE request:
    /// the router's transaction repeats it for retransmissions of that request (a final
    /// response for Timer J). The bytes as sent, and the status code.
    Response {
        key: TransactionKey,
        code: u16,
        bytes: Box<[u8]>,
    },
    /// An outbound call announces its Call-ID before sending the INVITE.
    Register {
        call_id: String,
        tx: mpsc::Sender<CallInput>,
    },
}

/// SIP extensions we implement (RFC 3261 §8.2.2.3: anything else in Require gets 420).
const SUPPORTED: &[&str] = &["timer"];

/// When overload control last refused a new call: calls check it to shed what an overload
/// leaves behind (a 200 never ACKed because its caller gave up while we were behind).
#[derive(Debug)]
pub struct OverloadMark {
    base: Instant,
    /// Milliseconds since `base` of the last refusal, plus one (0: never).
    last_ms: AtomicU64,
}

impl Default for OverloadMark {
    fn default() -> Self {
        OverloadMark {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

/// How long after the last overload refusal the server still counts as overloaded.
pub const OVERLOAD_MEMORY: Duration = Duration::from_secs(5);

impl OverloadMark {
    pub fn mark(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.base).as_millis();
        self.last_ms.store(
            u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Relaxed,
        );
    }

    /// Whether a call was refused for overload within [`OVERLOAD_MEMORY`] of `now`.
    pub fn recent(&self, now: Instant) -> bool {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => false,
            n => {
                let at = self.base + Duration::from_millis(n - 1);
                now.saturating_duration_since(at) <= OVERLOAD_MEMORY
            }
        }
    }
}

pub struct Router {
    ctx: Arc<CallContext>,
    calls: HashMap<String, mpsc::Sender<CallInput>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled by the server once every call task is over (or its wait gave up): only
    /// then does the router stop routing. A campaign call the dialer started just before
    /// the SIGTERM registers its Call-ID after the stop began; a router that stopped as soon
    /// as its own map was empty left that call without its responses (it rang the customer
    /// and hung until the shutdown's 10 s bound). None: stop once the map is empty.
    stop: Option<CancellationToken>,
    guard: SourceGuard,
    guard_swept: std::time::Instant,
    /// The server transactions of in-dialog non-INVITE requests routed to calls (module
    /// doc), compact: a hashed key, the last response's bytes and a deadline.
    in_dialog: NonInviteServers,
    /// Requests that found their call's mailbox closed: routed again once the call's
    /// `CallEnded` (sent before its mailbox closes) has been taken from the control channel.
    deferred: Vec<Inbound>,
    /// How long the datagram being handled waited before the router read it.
    queued: Duration,
    /// When each inbound call task not yet known to have started was spawned (tasks start in
    /// about the order they were spawned), and how many starts were taken off the front.
    spawned: VecDeque<Instant>,
    starts_seen: u64,
    overload_limit: Option<Duration>,
    /// The admitted rate under overload (`call::admission`); `None` when overload control
    /// is off (`overload_queue_ms = 0`).
    gate: Option<RateGate>,
    /// INVITEs refused for overload, so their retransmissions get the same `503`.
    refused: InviteMemory,
    /// The server transactions of the INVITEs handed to calls, initial and in-dialog
    /// (module doc): full ones until their final response (Proceeding, and
    /// Completed/Confirmed after a non-2xx), then for a 2xx a keyed hash of branch and
    /// sent-by with its expiry (24 bytes) for Timer L instead of the whole transaction,
    /// whose key, context and heap entries cost about 1 KB: at 2000 calls/s 64 000 calls are
    /// in Accepted at any time (measured: 76 → 151 MiB peak RSS with full transactions).
    /// The ACK for a 2xx needs no transaction: it goes to the call by Call-ID like any
    /// in-dialog request.
    invites: InviteServers<ReplyPath>,
    /// When the transaction timers last ran (they run at most every [`TXN_TICK`]).
    invites_ran: Instant,
}

/// The transaction timers' resolution: retransmissions (Timer G, ≥ 500 ms) and expiries
/// need no finer one, and a burst of calls costs the router one wake-up per tick, not one
/// per transaction.
const TXN_TICK: Duration = Duration::from_millis(10);

/// At most this many in-dialog non-INVITE transactions at once (485 bytes each with a
/// 200 OK: 97 MB at the cap, three times the 64 000 Completed BYEs of 2000 calls/s).
/// Beyond it a request goes to its call without one (no memory growth under a flood of
/// in-dialog requests; the call then sees that request's retransmissions).
const IN_DIALOG_CAP: usize = 200_000;

/// Timer H (64·T1): how long a refused INVITE's transaction absorbs retransmissions.
const REFUSED_KEEP: Duration = Duration::from_secs(32);
/// At most this many refusals remembered (24 bytes each, about 8 MB at the cap; 32 s of
/// refusals at 10 000/s).
const REFUSED_CAP: usize = 320_000;
/// At most this many INVITEs remembered in Accepted (24 bytes each, as the refusals).
const ACCEPTED_CAP: usize = 320_000;

impl Router {
    pub fn new(ctx: Arc<CallContext>, tracker: TaskTracker, shutdown: CancellationToken) -> Router {
        Router {
            guard: SourceGuard::new(ctx.config.guard.clone()),
            guard_swept: std::time::Instant::now(),
            in_dialog: NonInviteServers::new(TimerConfig::default(), IN_DIALOG_CAP),
            deferred: Vec::new(),
            queued: Duration::ZERO,
            spawned: VecDeque::new(),
            starts_seen: 0,
            overload_limit: (ctx.config.overload_queue_ms > 0)
                .then(|| Duration::from_millis(ctx.config.overload_queue_ms)),
            gate: (ctx.config.overload_queue_ms > 0).then(|| {
                RateGate::new(
                    Duration::from_millis(ctx.config.overload_queue_ms),
                    Instant::now(),
                )
            }),
            refused: InviteMemory::new(REFUSED_KEEP, REFUSED_CAP),
            // (The calls answer, 100 Trying or a final, as soon as they have the request.)
            invites: InviteServers::new(TimerConfig::default(), ACCEPTED_CAP),
            invites_ran: Instant::now(),
            ctx,
            calls: HashMap::new(),
            tracker,
            shutdown,
            stop: None,
        }
    }

    /// Keep routing after the shutdown until `stop` is cancelled (the server cancels it
    /// when every call task has ended), not only until the calls known now have ended.
    pub fn stop_on(mut self, stop: CancellationToken) -> Router {
        self.stop = Some(stop);
        self
    }

    pub async fn run(
        mut self,
        udp: Arc<UdpSocket>,
        mut from_tcp: mpsc::Receiver<Inbound>,
        mut control: mpsc::Receiver<RouterControl>,
    ) {
        let mut buf = vec![0u8; 65_536];
        let mut stamped = StampedReceiver::new(&udp);
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let txn_sleep = tokio::time::sleep_until(far());
        tokio::pin!(txn_sleep);
        let mut txn_wake: Option<Instant> = None;
        loop {
            let wake = self.transaction_wake();
            if wake != txn_wake {
                txn_wake = wake;
                let at = wake.map_or_else(far, tokio::time::Instant::from_std);
                txn_sleep.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                Some(c) = control.recv() => self.handle_control(c),
                _ = &mut txn_sleep, if txn_wake.is_some() => txn_wake = None,
                r = stamped.recv(&udp, &mut buf) => match r {
                    Ok((n, peer, queued)) => {
                        let reply = ReplyPath::Udp { socket: udp.clone(), peer };
                        if let Some(inbound) = handle_datagram(&buf[..n], &reply) {
                            self.queued = queued;
                            self.handle_inbound(inbound);
                            self.queued = Duration::ZERO;
                        }
                    }
                    // ICMP port unreachable from a vanished peer shows up here on Linux.
                    Err(e) => debug!(error = %e, "udp recv error"),
                },
                Some(inbound) = from_tcp.recv() => self.handle_inbound(inbound),
                _ = self.shutdown.cancelled() => {
                    // Keep routing in-dialog traffic (BYE answers) while calls wind down.
                    if self.calls.is_empty() && self.stop.is_none() {
                        break;
                    }
                    self.drain_after_shutdown(&udp, &mut from_tcp, &mut control, &mut buf).await;
                    break;
                }
            }
            self.after_event(&mut control);
        }
    }

    /// Housekeeping after each event: requests whose call just ended, expired transactions.
    fn after_event(&mut self, control: &mut mpsc::Receiver<RouterControl>) {
        if !self.deferred.is_empty() {
            // Their calls announced their end before closing their mailboxes: take those
            // announcements first (and the responses they sent before them).
            while let Ok(c) = control.try_recv() {
                self.handle_control(c);
            }
            for inbound in std::mem::take(&mut self.deferred) {
                self.handle_without_dialog(inbound, None);
            }
        }
        if !self.refused.is_empty() {
            self.refused.expire(Instant::now());
        }
        if self
            .invites
            .poll_timeout()
            .is_some_and(|t| t <= Instant::now())
        {
            let now = Instant::now();
            self.invites_ran = now;
            self.invites.handle_timeout(now);
            self.flush_transactions();
        }
        if !self.in_dialog.is_empty() {
            self.in_dialog.handle_timeout(Instant::now());
        }
    }

    async fn drain_after_shutdown(
        &mut self,
        udp: &Arc<UdpSocket>,
        from_tcp: &mut mpsc::Receiver<Inbound>,
        control: &mut mpsc::Receiver<RouterControl>,
        buf: &mut [u8],
    ) {
        // With a stop token the server bounds the wait (its own timeouts on the calls);
        // without one, 5 s after the last known call.
        let stop = self.stop.clone();
        let bounded = stop.is_none();
        let stopped = async {
            match &stop {
                Some(s) => s.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if bounded && self.calls.is_empty() {
                break;
            }
            self.after_event(control);
            tokio::select! {
                _ = &mut stopped => break,
                Some(c) = control.recv() => self.handle_control(c),
                r = udp.recv_from(buf) => if let Ok((n, peer)) = r {
                    let reply = ReplyPath::Udp { socket: udp.clone(), peer };
                    if let Some(inbound) = handle_datagram(&buf[..n], &reply) {
                        self.handle_inbound(inbound);
                    }
                },
                Some(inbound) = from_tcp.recv() => self.handle_inbound(inbound),
                _ = tokio::time::sleep_until(deadline), if bounded => break,
            }
        }
    }

    /// When the transaction timers next need the router (no sooner than [`TXN_TICK`] after
    /// they last ran).
    fn transaction_wake(&self) -> Option<Instant> {
        self.invites
            .poll_timeout()
            .map(|t| t.max(self.invites_ran + TXN_TICK))
    }

    /// Send what the transactions want sent (responses repeated for retransmissions,
    /// Timer G).
    fn flush_transactions(&mut self) {
        while let Some(t) = self.invites.poll_transmit() {
            t.ctx.send(t.message.to_bytes());
        }
    }

    fn handle_control(&mut self, c: RouterControl) {
        match c {
            RouterControl::InviteResponse { key, response } => {
                // A 2xx: Accepted (RFC 6026), only the memory that absorbs retransmissions.
                if let Err(e) = self.invites.response_sent(&key, *response, Instant::now()) {
                    // An INVITE routed without one, or a re-INVITE its call answered after
                    // 64·T1.
                    debug!(error = %e, "response to an INVITE without its transaction");
                }
            }
            RouterControl::Response { key, code, bytes } => {
                let k = self.in_dialog.key(&key);
                if let Err(e) = self.in_dialog.response_sent(k, code, bytes, Instant::now()) {
                    // A request routed without a transaction (the set was full), or one
                    // whose transaction ended (a TU that took more than 64·T1).
                    debug!(error = %e, code, "response to an in-dialog request without its transaction");
                }
            }
            RouterControl::CallEnded { call_id, invite } => {
                if let Some(key) = invite {
                    self.invites.remove_unanswered(&key);
                }
                self.calls.remove(&call_id);
            }
            RouterControl::Register { call_id, tx } => {
                self.calls.insert(call_id, tx);
            }
        }
    }

    fn reply(&self, inbound: &Inbound, code: u16, reason: &str, extra: &[(HeaderName, String)]) {
        self.reply_tagged(inbound, code, reason, extra, &super::dialog::new_tag());
    }

    fn reply_tagged(
        &self,
        inbound: &Inbound,
        code: u16,
        reason: &str,
        extra: &[(HeaderName, String)],
        tag: &str,
    ) {
        let local = self.ctx.local_identity(&inbound.reply);
        let mut r = response(&inbound.msg, code, reason, Some(tag), &local);
        for (n, v) in extra {
            r.push_header(n.clone(), v.clone());
        }
        inbound.reply.send(r.to_bytes());
    }

    /// The key of an INVITE's transaction in the refusal memory (Call-ID and branch);
    /// hashed only when the memory is consulted or written, not for every INVITE.
    fn refusal_key(&self, inbound: &Inbound) -> Option<u64> {
        let call_id = inbound.msg.call_id().ok()?;
        let via = inbound.msg.top_via().ok()?;
        via.branch().map(|b| self.refused.key(call_id, b))
    }

    /// Overload's answer: `503` with `Retry-After: 2` and the transaction's tag.
    fn refuse_overload(&self, inbound: &Inbound, tag: &str) {
        self.reply_tagged(
            inbound,
            503,
            "Service Unavailable",
            &[(HeaderName::Other("Retry-After".into()), "2".into())],
            tag,
        );
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
        crate::metrics::global().sip_request(method);
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
        // An ACK, or an INVITE (initial or in a dialog), may belong to a transaction held
        // here.
        let transactional = matches!(method, Method::Ack | Method::Invite);
        // A non-INVITE request other than CANCEL (which is the INVITE transaction's
        // business): a retransmission is its server transaction's, never the call's. No key
        // is built for one that can have no transaction here (an OPTIONS keep-alive).
        let non_invite = !matches!(method, Method::Ack | Method::Invite | Method::Cancel)
            && (!self.in_dialog.is_empty() || self.calls.contains_key(&call_id));
        let mut inbound = inbound;
        let mut invite_key = None;
        let mut in_dialog = None;
        if non_invite {
            let Ok(key) = TransactionKey::server(&inbound.msg) else {
                return;
            };
            let k = self.in_dialog.key(&key);
            match self.in_dialog.matched(k, Instant::now()) {
                Some(Matched::Trying) => return,
                Some(Matched::Repeat(bytes)) => {
                    inbound.reply.send(bytes.to_vec());
                    return;
                }
                None => in_dialog = Some(k),
            }
        }
        if transactional {
            {
                match self.absorb(inbound) {
                    Ok(()) => return,
                    Err((back, key)) => {
                        inbound = back;
                        invite_key = key;
                    }
                }
            }
        }
        self.route(call_id, inbound, invite_key, in_dialog);
    }

    /// An INVITE or an ACK for a transaction the router holds: answered or absorbed here
    /// (a retransmission, the ACK of a non-2xx final, an INVITE in Accepted). Otherwise the
    /// request is given back (a new INVITE, an ACK for a 2xx), with its INVITE transaction
    /// key when it is an INVITE.
    // Given back by value: boxing it would allocate for every new INVITE and ACK.
    #[allow(clippy::result_large_err)]
    fn absorb(&mut self, inbound: Inbound) -> Result<(), (Inbound, Option<TransactionKey>)> {
        let is_invite = inbound.msg.method() == Some(&Method::Invite);
        if !is_invite && !self.invites.has_transactions() {
            // An ACK with no transaction to match (the usual ACK, for a 2xx): no key built.
            return Err((inbound, None));
        }
        let Ok(key) = TransactionKey::server(&inbound.msg) else {
            return Err((inbound, None));
        };
        let Inbound { msg, reply, size } = inbound;
        match self.invites.absorb(&key, msg, Instant::now()) {
            Ok(()) => {
                self.flush_transactions();
                Ok(())
            }
            Err(msg) => Err((Inbound { msg, reply, size }, is_invite.then_some(key))),
        }
    }

    /// A request that is not the router's own: to its call by Call-ID, else out of dialog.
    /// `in_dialog`: the compact key of a non-INVITE request's server transaction, started
    /// here when the request goes to a call; `invite_key`: an INVITE's, whose transaction
    /// starts here when it goes to a call (a re-INVITE) or in `new_call`. Either is
    /// forgotten if the request cannot be delivered, so the peer's retransmission is
    /// delivered instead.
    fn route(
        &mut self,
        call_id: String,
        inbound: Inbound,
        invite_key: Option<TransactionKey>,
        in_dialog: Option<u64>,
    ) {
        if let Some(tx) = self.calls.get(&call_id) {
            let reliable = !inbound.reply.kind().unreliable();
            let now = Instant::now();
            let txn = in_dialog.filter(|k| self.in_dialog.start(*k, now, reliable));
            // An INVITE for a call that exists (a re-INVITE; or a loop, 482): its server
            // transaction is the router's like an initial one's.
            let invite = invite_key.filter(|k| {
                let flow = inbound.reply.clone();
                self.invites
                    .track(k.clone(), now, flow, reliable, Tracked::InDialog)
            });
            let undelivered = |this: &mut Router| {
                if let Some(k) = txn {
                    this.in_dialog.abandon(k);
                }
                if let Some(k) = &invite {
                    this.invites.remove_unanswered(k);
                }
            };
            match tx.try_send(CallInput::Sip(Box::new(inbound))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    undelivered(self);
                    debug!(%call_id, "call mailbox full; dropping (peer retransmits)")
                }
                Err(mpsc::error::TrySendError::Closed(input)) => {
                    undelivered(self);
                    self.calls.remove(&call_id);
                    if let CallInput::Sip(inbound) = input {
                        self.deferred.push(*inbound);
                    }
                }
            }
            return;
        }
        self.handle_without_dialog(inbound, invite_key);
    }

    fn handle_without_dialog(&mut self, inbound: Inbound, invite_key: Option<TransactionKey>) {
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
            // A draining node says so to the edge's keep-alive probe (Kamailio's dispatcher
            // marks it inactive and sends new calls to the other nodes).
            Method::Options if self.ctx.draining.load(Ordering::Relaxed) => self.reply(
                &inbound,
                503,
                "Service Unavailable",
                &[(HeaderName::Other("Retry-After".into()), "30".into())],
            ),
            Method::Options => self.reply(
                &inbound,
                200,
                "OK",
                &[(HeaderName::Other("Accept".into()), "application/sdp".into())],
            ),
            Method::Invite if !has_to_tag => self.new_call(inbound, invite_key),
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

    /// The longest of this INVITE's wait in the socket, the wait of the oldest call task
    /// spawned but not started yet, and how late the call runtime runs
    /// (`runtime::calls::CallLag`): what the admission gate compares with
    /// `overload_queue_ms`. The second and third matter as much as the first: the router
    /// reads fast and hands calls to tasks, and when the call workers fall behind it is the
    /// calls already accepted that wait — their answers, their BYEs and their media ticks.
    fn longest_wait(&mut self) -> Duration {
        let started = self.ctx.calls_started.load(Ordering::Relaxed);
        while self.starts_seen < started && self.spawned.pop_front().is_some() {
            self.starts_seen += 1;
        }
        if self.spawned.is_empty() {
            // Caught up (also re-aligns the count if a task started before being recorded).
            self.starts_seen = started;
            self.spawned.shrink_to(256);
        }
        let oldest = self.spawned.front().map_or(Duration::ZERO, |t| t.elapsed());
        let lag = self.ctx.call_lag.lag(Instant::now());
        self.queued.max(oldest).max(lag)
    }

    /// Overload control for one new INVITE: `None` admits it, `Some(wait)` refuses it (the
    /// wait measured, for the log). A retransmission of a refused INVITE is refused again
    /// by the caller of this, before it gets here.
    fn overloaded(&mut self) -> Option<Duration> {
        self.overload_limit?;
        let waited = self.longest_wait();
        let now = Instant::now();
        let gate = self.gate.as_mut()?;
        match gate.offer(now, waited) {
            Decision::Admit => None,
            Decision::RefuseBacklog | Decision::RefuseRate => Some(waited),
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
        crate::metrics::global().security_drop(match verdict {
            Verdict::Scanner { .. } => crate::metrics::DropReason::Scanner,
            Verdict::Flood => crate::metrics::DropReason::Flood,
            _ => crate::metrics::DropReason::Banned,
        });
        false
    }

    fn new_call(&mut self, inbound: Inbound, invite_key: Option<TransactionKey>) {
        if !self.refused.is_empty() {
            if let Some(key) = self
                .refusal_key(&inbound)
                .filter(|k| self.refused.contains(*k))
            {
                // A retransmission of an INVITE refused for overload: its transaction
                // answers again, the same `503` with the same tag, and nothing else happens.
                self.refuse_overload(&inbound, &InviteMemory::tag(key));
                return;
            }
        }
        if self.shutdown.is_cancelled() || self.ctx.draining.load(Ordering::Relaxed) {
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
        // Another node ringing a browser agent of ours (`acd::peer`): no dialplan; the call
        // checks that it comes from a cluster peer (a check stricter than the trunk ACL).
        let peer_leg = inbound
            .msg
            .request_uri()
            .is_some_and(|u| crate::acd::peer::marked_agent(u).is_some());
        // Toll-fraud safety: with trunk ACLs configured, only those networks may place calls
        // (agents' feature codes are checked against their registration by the ACD).
        if feature.is_none()
            && !peer_leg
            && cfg.inbound_acl_active()
            && cfg.trunk_for_source(peer.ip()).is_none()
        {
            warn!(target: "security", source = %peer, %user, "INVITE from a source that is no configured trunk: refused");
            self.reply(&inbound, 403, "Forbidden", &[]);
            return;
        }
        let route = if peer_leg {
            Some(crate::config::Route {
                to: user.clone(),
                dialplan: String::new(),
                ring_ms: 0,
                line: 0,
            })
        } else {
            cfg.route_for(&user).cloned().or(feature)
        };
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
        if let Some(waited) = self.overloaded() {
            // Overload: refused before any call state exists (see the module doc).
            let now = Instant::now();
            self.ctx.overload_refusals.fetch_add(1, Ordering::Relaxed);
            self.ctx.overload.mark(now);
            debug!(
                waited_ms = waited.as_millis() as u64,
                "overload: INVITE refused with 503"
            );
            let tag = match self.refusal_key(&inbound) {
                Some(key) => {
                    self.refused.remember(key, now);
                    InviteMemory::tag(key)
                }
                None => super::dialog::new_tag(),
            };
            self.refuse_overload(&inbound, &tag);
            return;
        }
        let Some(slot) = self.ctx.active_calls.try_acquire(self.ctx.config.max_calls) else {
            warn!(
                active = self.ctx.active_calls.active(),
                "at max_calls; refusing new INVITE"
            );
            self.reply(
                &inbound,
                503,
                "Service Unavailable",
                &[(HeaderName::Other("Retry-After".into()), "5".into())],
            );
            return;
        };
        let Ok(call_id) = inbound.msg.call_id().map(str::to_string) else {
            return;
        };
        let local = self.ctx.local_identity(&inbound.reply);
        // The INVITE's server transaction: the call reports its responses to it.
        let invite_key = invite_key.or_else(|| TransactionKey::server(&inbound.msg).ok());
        let invite_key = invite_key.filter(|key| {
            let reliable = !inbound.reply.kind().unreliable();
            let flow = inbound.reply.clone();
            self.invites.track(
                key.clone(),
                Instant::now(),
                flow,
                reliable,
                Tracked::Initial,
            )
        });
        let (tx, rx) = mpsc::channel(actor::MAILBOX);
        self.calls.insert(call_id, tx.clone());
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.child_token();
        if self.overload_limit.is_some() {
            self.spawned.push_back(Instant::now());
        }
        let calls_rt = ctx.calls_rt.clone();
        self.tracker.spawn_on(
            actor::run_inbound(
                ctx, slot, inbound, invite_key, route, local, tx, rx, shutdown,
            ),
            &calls_rt,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_recent_for_a_few_seconds_after_a_refusal() {
        let mark = OverloadMark::default();
        let t0 = mark.base;
        assert!(!mark.recent(t0), "never refused: not overloaded");
        mark.mark(t0 + Duration::from_secs(10));
        assert!(mark.recent(t0 + Duration::from_secs(10)));
        assert!(mark.recent(t0 + Duration::from_secs(10) + OVERLOAD_MEMORY));
        assert!(!mark.recent(t0 + Duration::from_secs(11) + OVERLOAD_MEMORY));
        mark.mark(t0);
        assert!(mark.recent(t0), "a refusal at the very start still counts");
    }
}
