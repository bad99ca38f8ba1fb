//! The inbound call actor: one tokio task per call that owns the UAS dialog, the RTP socket and media session, and the dialplan interpreter.
//!
//! One `select!` loop waits on the mailbox (SIP from the router, ticket lookups), the RTCP
//! socket, the RTP socket only while relaying a bridge, and a single reusable `Sleep` reset
//! to the earliest deadline of all the cores (answer timer, 2xx/BYE retransmissions per
//! RFC 3261 §13.3.1.4 and §17.1.2, the media send grid, the interpreter's input timeout).
//! After every wake-up the actor first drains the RTP socket into the media session (when it
//! is not relaying: received audio is read on the 20 ms send tick, `media::socket`), then
//! `drive` feeds the current time to the cores and carries out what they ask. The actor
//! never awaits the database: records are submitted to the store writer, lookups run in a
//! spawned task.
//!
//! Whom the call serves — an inbound caller, a campaign call, an agent leg, a queue
//! callback — is its [`Role`] (`call::role`), fixed at start and holding what only that
//! role keeps (the router's INVITE key, machine handling, the link to the caller, the
//! parked INVITE and the waiting agent).
//!
//! The server transactions of the INVITEs it receives — the initial one and every
//! re-INVITE — are the router's (`router.rs`, `sip::transaction::InviteServers`): the actor
//! sends each response to an INVITE and reports it there ([`RouterControl::InviteResponse`]);
//! INVITE retransmissions and the ACK of a non-2xx final never reach it, so it answers each
//! INVITE once. It stays the TU of RFC 3261 §13.3.1.4 and RFC 6026: it retransmits its 2xx
//! (to the INVITE or a re-INVITE) until the ACK (`pending_2xx`, matched by the dialog's
//! CSeq) and ends the call without one. The server transactions of in-dialog non-INVITE
//! requests (BYE, INFO, UPDATE, REFER, OPTIONS…) are the router's too: the actor sees each
//! such request once, answers it, and reports the response ([`RouterControl::Response`]);
//! the router answers retransmissions, of the BYE that ended the call for Timer J after
//! this task is gone.
//!
//! The requests the call sends (the outbound INVITE and its CANCEL, BYE, our session
//! refreshes, the NOTIFY of a transfer) each run in a client transaction of
//! `sip::transaction` (`InviteClient`, `NonInviteClient`) held in the call's own
//! [`TransactionTable`] (`client_txns`): retransmissions (Timers A and E), the give-up
//! (Timers B and F), the ACK of a non-2xx final and absorbing repeated answers are the
//! cores'. The actor feeds them responses and the time, sends what they emit on the flow
//! each was started on, and acts on what they report (`on_client_event`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::dialog::{self, info_digit, response, Dialog, LocalIdentity, T1, T2, TIMEOUT_64T1};
use super::disposition::{Disposition, HangupCause};
use super::role::Role;
use super::router::RouterControl;
use super::slots::CallSlot;
use super::CallContext;
use crate::config::Route;
use crate::ivr::dialplan::LookupBy;
use crate::ivr::expr::Vars;
use crate::ivr::interpreter::{Interpreter, Output, PromptRef};
use crate::ivr::language::LanguageSource;
use crate::media::codec::Codec;
use crate::media::player::PlayItem;
use crate::media::session::{MediaEvent, MediaParams, MediaSession, MAX_PACKET};
use crate::media::socket::{MediaSocket, Readiness};
use crate::sip::dialog::{Rejection, Verdict};
use crate::sip::message::{HeaderName, Message, Method, StartLine};
use crate::sip::sdp::{self, Direction, Negotiated, SessionDescription};
use crate::sip::transaction::{self as txn, TimerConfig, TransactionKey, TransactionTable};
use crate::sip::transport::{Inbound, ReplyPath};
use crate::store::ops::StoreOp;
use crate::store::{now_ts, tickets};

mod browser_leg;
mod in_dialog;
mod peer_leg;
mod queue;
mod uac;

pub(crate) use peer_leg::PeerLeg;
pub use queue::{feature_route, AnsweredLeg, CallbackFor, LegControl, LegEvent, LegLink};
pub use uac::{run_outbound, CallResult, MachineHandling, OutboundRequest};
pub(crate) use uac::{PendingDial, Uac};

pub const MAILBOX: usize = 64;

/// What reaches a call actor.
#[derive(Debug)]
pub enum CallInput {
    Sip(Box<Inbound>),
    Lookup(Option<HashMap<String, String>>),
    /// The database gave no answer within the lookup budget (or failed).
    LookupUnavailable,
    /// From the ACD: queue position, refusal, an agent to ring.
    Acd(crate::acd::AcdEvent),
    /// From one of this caller's agent legs.
    Leg(LegEvent),
    /// To an agent leg, from its caller.
    LegControl(LegControl),
    /// A feature code (*1, *2, *3) was carried out (or refused): the prompt to play.
    FeatureDone(&'static str),
    /// The caller's ticket (by number) before joining a queue.
    QueueIdentified(Option<HashMap<String, String>>),
    /// The caller's ticket's language (None: no ticket, or no answer within the lookup
    /// budget), looked up before the dialplan's first word.
    LanguageIdentified(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing {
        answer_at: Instant,
    },
    /// Outbound: INVITE sent, waiting for the final answer.
    Calling,
    /// A queue callback waiting for an agent before dialing the customer.
    Parked,
    Answered,
    /// We sent BYE and wait for its answer.
    Ending,
    Done,
}

/// Send `msg` to the ACD, or keep it in `outbox` (behind anything already kept, so the
/// order holds) when the mailbox is full. A function of the two fields, so a caller holding
/// another field of the call (its queue state) can use it.
fn acd_send_or_keep(
    ctx: &CallContext,
    outbox: &mut std::collections::VecDeque<crate::acd::AcdMsg>,
    msg: crate::acd::AcdMsg,
) {
    if outbox.is_empty() {
        if let Some(m) = ctx.acd.try_send(msg) {
            warn!("ACD mailbox full: event kept, sent when there is room");
            outbox.push_back(m);
        }
    } else {
        outbox.push_back(msg);
    }
}

/// How soon a call retries ACD events that found the ACD's mailbox full.
const ACD_RETRY: Duration = Duration::from_millis(10);

/// Under overload, how long an answered call waits for its ACK (and then for the answer to
/// its BYE) before it is given up: 8·T1, i.e. the 200 was sent four times.
const OVERLOAD_ACK_WAIT: Duration = Duration::from_secs(4);

/// Our BYE's client transaction (a `NonInviteClient`: Timers E and F). Under overload it
/// is abandoned sooner (`abandon_at`): a peer that did not ACK our 200 will not answer it.
#[derive(Debug)]
struct ByeSent {
    key: TransactionKey,
    abandon_at: Option<Instant>,
}

/// The 2xx we send to an INVITE, resent until the ACK (RFC 3261 §13.3.1.4: the TU's, not
/// the transaction's, under RFC 6026).
#[derive(Debug)]
struct Retransmit {
    bytes: Vec<u8>,
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
}

impl Retransmit {
    fn new(bytes: Vec<u8>, now: Instant, unreliable: bool) -> Retransmit {
        Retransmit {
            bytes,
            next: unreliable.then(|| now + T1),
            interval: T1,
            give_up: now + TIMEOUT_64T1,
        }
    }

    fn deadline(&self) -> Instant {
        self.next.map_or(self.give_up, |n| n.min(self.give_up))
    }
}

pub struct Call {
    ctx: Arc<CallContext>,
    id: String,
    invite: Message,
    invite_branch: String,
    /// Inbound, campaign, agent leg or callback, with what only that role keeps
    /// (`call::role`).
    role: Role,
    flow: ReplyPath,
    local: LocalIdentity,
    local_tag: String,
    dialog: Dialog,
    route: Route,
    offer: Option<Negotiated>,
    media_ip: std::net::IpAddr,
    rtp_port: u16,
    media: Option<MediaSession>,
    interp: Option<Interpreter>,
    phase: Phase,
    self_tx: mpsc::Sender<CallInput>,
    event_seq: i64,
    ended_recorded: bool,
    sdp_session: u64,
    sdp_version: u64,
    pending_2xx: Option<Retransmit>,
    /// The answered offer whose media starts when the caller's ACK arrives (see `answer`).
    media_on_ack: Option<Negotiated>,
    /// ACD events that found the ACD's mailbox full: kept in order and sent on the next
    /// wake-ups (a queue event lost would leave an agent or a caller stuck), the rest after
    /// the call ends.
    acd_outbox: std::collections::VecDeque<crate::acd::AcdMsg>,
    /// Our BYE, until answered or given up.
    bye: Option<ByeSent>,
    /// The client transactions of the requests this call sent (None while there are none:
    /// an inbound call that is never ended by us never allocates one).
    client_txns: Option<Box<TransactionTable<ReplyPath>>>,
    ticket_id: Option<i64>,
    caller: String,
    shutdown_seen: bool,
    /// The dialplan outcome recorded on this call, if any.
    outcome: Option<String>,
    /// Variables given by whoever started the call (the dialer's ticket.* for outbound).
    preset_vars: Vars,
    /// Keys pressed while the caller's language is being looked up (the dialplan has not
    /// started yet); Some while waiting. They reach the dialplan as type-ahead.
    awaiting_language: Option<Vec<char>>,
    /// This call's place in `active_calls`: given back at Done (a call lingering only to
    /// absorb retransmissions no longer counts against max_calls), else when the task ends.
    slot: Option<CallSlot>,
    /// Disposition recorded at hangup instead of `answered` (an answering machine).
    disposition_override: Option<Disposition>,
    /// This call's RTP socket, shared with the bridged leg that sends from it. Read on the
    /// send tick while the call runs its own media session, on readiness while it relays
    /// (`media::socket`).
    rtp_sock: Option<Arc<MediaSocket>>,
    /// The RTCP socket (RTP port + 1): reports of the media session go out and come in here.
    rtcp_sock: Option<Arc<UdpSocket>>,
    /// Caller side: waiting in (or connected through) a queue.
    queue: Option<queue::QueueSession>,
    /// Bridged: received RTP is rewritten and sent from the other leg's socket.
    relay: Option<crate::media::bridge::Relay>,
    relay_out: Option<Arc<MediaSocket>>,
    shutdown: CancellationToken,
    /// Bridged but on hold: the relay is suspended (the caller hears music on hold).
    held: bool,
    /// Where the caller's RTP goes while bridged (music on hold goes there too).
    relay_caller_dest: Option<SocketAddr>,
    /// This call's recording, if its queue records (for the stats at the end).
    recording: Option<crate::media::recorder::Recorder>,
    /// Waiting for the caller lookup before joining the queue (the skills it needs).
    pending_join: Option<Vec<(String, i64)>>,
    /// A dialplan `record` step in progress (mono, the caller).
    segment: Option<Segment>,
    /// The path last written to `call_records.recording_path` by this call.
    recording_path: Option<String>,
    /// `record` files dropped for want of speech: a `survey` step naming one has no message.
    discarded_recordings: Vec<String>,
    /// Bridges recorded so far (file names of later ones get a suffix).
    bridges_recorded: u32,
    /// Session timer, our refreshes, re-INVITE/UPDATE bookkeeping (in_dialog.rs).
    in_dialog: in_dialog::InDialog,
}

/// A dialplan `record` step's recording in progress.
struct Segment {
    recorder: crate::media::recorder::Recorder,
    step: String,
    var: Option<String>,
    /// Least voice for a message (0: keep every recording).
    min_speech_ms: u32,
    /// `call_records.recording_path` before this one, put back if this one is dropped.
    previous_path: Option<String>,
}

/// What a new call is made of: the parts an inbound and an outbound call set differently.
/// Everything else starts empty or at its initial value ([`Call::new`]).
struct CallSetup {
    ctx: Arc<CallContext>,
    id: String,
    invite: Message,
    invite_branch: String,
    role: Role,
    flow: ReplyPath,
    local: LocalIdentity,
    local_tag: String,
    dialog: Dialog,
    route: Route,
    phase: Phase,
    self_tx: mpsc::Sender<CallInput>,
    slot: CallSlot,
    shutdown: CancellationToken,
    /// The customer's number.
    caller: String,
}

impl Call {
    /// The one place a `Call` is built (inbound in `start`, outbound in
    /// `uac::start_outbound`): no media, no dialplan, no queue, no timers yet.
    fn new(s: CallSetup) -> Call {
        Call {
            media_ip: s.ctx.config.media_address,
            ctx: s.ctx,
            id: s.id,
            invite: s.invite,
            invite_branch: s.invite_branch,
            role: s.role,
            flow: s.flow,
            local: s.local,
            local_tag: s.local_tag,
            dialog: s.dialog,
            route: s.route,
            offer: None,
            rtp_port: 0,
            media: None,
            interp: None,
            phase: s.phase,
            self_tx: s.self_tx,
            event_seq: 0,
            ended_recorded: false,
            sdp_session: rand::random::<u32>() as u64,
            sdp_version: 1,
            pending_2xx: None,
            media_on_ack: None,
            acd_outbox: Default::default(),
            bye: None,
            client_txns: None,
            ticket_id: None,
            caller: s.caller,
            shutdown_seen: false,
            outcome: None,
            preset_vars: Vars::new(),
            awaiting_language: None,
            slot: Some(s.slot),
            disposition_override: None,
            rtp_sock: None,
            rtcp_sock: None,
            queue: None,
            relay: None,
            relay_out: None,
            shutdown: s.shutdown,
            held: false,
            relay_caller_dest: None,
            recording: None,
            pending_join: None,
            segment: None,
            recording_path: None,
            discarded_recordings: Vec::new(),
            bridges_recorded: 0,
            in_dialog: Default::default(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run_inbound(
    ctx: Arc<CallContext>,
    slot: CallSlot,
    inbound: Inbound,
    invite_key: Option<TransactionKey>,
    route: Route,
    local: LocalIdentity,
    self_tx: mpsc::Sender<CallInput>,
    rx: mpsc::Receiver<CallInput>,
    shutdown: CancellationToken,
) {
    let call_id = inbound.msg.call_id().unwrap_or("").to_string();
    let span = info_span!("call", call_id = %call_id);
    async move {
        // First poll: the router's overload control measures how long calls wait for this.
        ctx.calls_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ctx2 = ctx.clone();
        let sip_call_id = call_id.clone();
        let mut rx = rx;
        // A call refused at start drops its slot with it.
        let invite = invite_key.clone();
        match Call::start(
            ctx,
            slot,
            inbound,
            invite_key,
            route,
            local,
            self_tx,
            shutdown.clone(),
        )
        .await
        {
            Some((call, rtp)) => call.run(&mut rx, rtp, shutdown).await,
            None => debug!("call refused at start"),
        }
        // Announced before the mailbox closes (`rx` drops after this): the router takes a
        // request that finds the mailbox closed as one for a call that has ended.
        let _ = ctx2
            .router
            .send(RouterControl::CallEnded {
                call_id: sip_call_id,
                invite,
            })
            .await;
        drop(rx);
    }
    .instrument(span)
    .await
}

impl Call {
    /// Validate the INVITE, record the call, answer 100/180 (or refuse with 488/503).
    #[allow(clippy::too_many_arguments)]
    async fn start(
        ctx: Arc<CallContext>,
        slot: CallSlot,
        inbound: Inbound,
        invite_key: Option<TransactionKey>,
        route: Route,
        local: LocalIdentity,
        self_tx: mpsc::Sender<CallInput>,
        shutdown: CancellationToken,
    ) -> Option<(Call, Option<Arc<MediaSocket>>)> {
        let now = Instant::now();
        let invite = inbound.msg;
        let flow = inbound.reply;
        let call_id = invite.call_id().ok()?.to_string();
        let from = invite.from_header().ok()?;
        let invite_branch = invite.top_via().ok()?.branch().unwrap_or("").to_string();
        let local_tag = dialog::new_tag();
        let dialog = match Dialog::uas(&invite, &local_tag) {
            Ok(d) => d,
            Err(e) => {
                debug!(error = %e, "INVITE forms no dialog");
                return None;
            }
        };
        let caller_raw = from.uri.user.clone().unwrap_or_default();
        let caller = tickets::normalize_number(&caller_raw, &ctx.config.default_country_code)
            .unwrap_or(caller_raw.clone());
        let id = uuid::Uuid::new_v4().to_string();
        let media_ip = ctx.config.media_address;
        let mut call = Call::new(CallSetup {
            id: id.clone(),
            invite_branch,
            role: Role::Inbound { invite_key },
            flow,
            local_tag: local_tag.clone(),
            dialog,
            route,
            phase: Phase::Ringing { answer_at: now },
            self_tx,
            caller,
            slot,
            shutdown,
            local,
            invite,
            ctx,
        });
        // Another node ringing our browser agent: checked, and no record of its own.
        let peer_leg = call.peer_leg_start().await;
        if peer_leg == Some(false) {
            return Some((call, None));
        }
        if peer_leg.is_none() {
            call.ctx.store.submit(StoreOp::CallStarted {
                id,
                sip_call_id: call_id,
                direction: "inbound".into(),
                from_uri: call
                    .invite
                    .from_header()
                    .map(|f| f.uri.to_string())
                    .unwrap_or_default(),
                to_uri: call
                    .invite
                    .to_header()
                    .map(|t| t.uri.to_string())
                    .unwrap_or_default(),
                caller: Some(call.caller.clone()),
                dialplan: Some(call.route.dialplan.clone()),
                campaign_id: None,
                started_at: now_ts(),
                node: Some(call.ctx.config.node_id.clone()),
            });
        }
        call.send_invite_response(100, "Trying", None);
        if !call.session_timer_at_invite() {
            return Some((call, None));
        }

        // RFC 3264 offer in the INVITE; without a body we offer in the 200 (late offer).
        if !call.invite.body.is_empty() {
            let negotiated = SessionDescription::parse(&call.invite.body)
                .and_then(|sd| sdp::negotiate(&sd, &call.ctx.config.codecs));
            match negotiated {
                Ok(n) => call.offer = Some(n),
                Err(e) => {
                    info!(error = %e, "no acceptable media in offer");
                    call.refuse(
                        488,
                        "Not Acceptable Here",
                        HangupCause::IncompatibleMedia,
                        Disposition::Failed,
                    );
                    return Some((call, None));
                }
            }
        }
        let rtp = match call.ctx.ports.bind_pair(media_ip).await {
            Ok((rtp, rtcp)) => {
                call.rtcp_sock = Some(Arc::new(rtcp));
                Arc::new(rtp)
            }
            Err(e) => {
                warn!(error = %e, "no RTP port");
                call.refuse(
                    503,
                    "Service Unavailable",
                    HangupCause::NoRtpPort,
                    Disposition::Failed,
                );
                return Some((call, None));
            }
        };
        call.rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        call.rtp_sock = Some(rtp.clone());
        call.send_invite_response(180, "Ringing", None);
        call.phase = Phase::Ringing {
            answer_at: now + Duration::from_millis(call.route.ring_ms),
        };
        if peer_leg.is_some() {
            call.peer_leg_ring(now);
        }
        Some((call, Some(rtp)))
    }

    /// The call's life. (Its answer to the peer's BYE outlives it in the router's
    /// transaction, `RouterControl::Response`.)
    async fn run(
        mut self,
        rx: &mut mpsc::Receiver<CallInput>,
        mut rtp: Option<Arc<MediaSocket>>,
        shutdown: CancellationToken,
    ) {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut rtp_buf = [0u8; 1500];
        let mut send_buf = [0u8; MAX_PACKET];
        let mut rtcp = self.rtcp_sock.clone();
        let mut rtcp_buf = [0u8; 1500];
        // Registered with the reactor only while relaying a bridge (media::socket).
        let mut relay_ready: Option<Readiness> = None;
        // One cancellation future for the whole call, not a new one per wake-up: creating
        // and dropping it registers and unregisters a waiter (two lock round trips) on
        // every RTP packet and every 20 ms send tick.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let now = Instant::now();
            if relay_ready.is_none() {
                // Playing our own media (or nothing yet): what arrived since the last tick.
                self.receive_on_tick(now, rtp.as_deref());
            }
            self.drive(now, rtp.as_deref(), &mut send_buf);
            if self.media.is_none() && matches!(self.phase, Phase::Done | Phase::Ending) {
                // Release the port as soon as media is over.
                rtp = None;
                self.rtp_sock = None;
                rtcp = None;
                self.rtcp_sock = None;
                self.relay = None;
                self.relay_out = None;
            }
            let relaying = self.relay.is_some() && !self.held;
            match (&relay_ready, relaying, rtp.as_ref()) {
                (None, true, Some(sock)) => match Readiness::new(sock) {
                    // What waited in the socket predates the bridge (a ringing phone's early
                    // media, the caller's last words to the IVR): not for the other leg.
                    Ok(r) => {
                        sock.drain(now, 1024, |_, _, _| {});
                        relay_ready = Some(r);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot watch the RTP socket; ending the bridge");
                        self.hangup(now, HangupCause::NoRtpSocket);
                    }
                },
                (Some(_), false, _) | (Some(_), _, None) => relay_ready = None,
                _ => {}
            }
            if self.phase == Phase::Done {
                // A call lingering only to absorb retransmissions no longer counts against
                // max_calls.
                self.slot = None;
            }
            if self.finished() {
                break;
            }
            let deadline = tokio::time::Instant::from_std(self.next_deadline(now));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = &mut cancelled, if !self.shutdown_seen => {
                    self.shutdown_seen = true;
                    self.on_shutdown(Instant::now());
                }
                input = rx.recv() => match input {
                    Some(CallInput::Sip(inbound)) => self.on_sip(Instant::now(), *inbound),
                    Some(CallInput::Lookup(result)) => self.on_lookup(Instant::now(), result),
                    Some(CallInput::LookupUnavailable) => self.on_lookup_unavailable(Instant::now()),
                    Some(CallInput::Acd(e)) => self.on_acd(Instant::now(), e),
                    Some(CallInput::Leg(e)) => self.on_leg_event(Instant::now(), e),
                    Some(CallInput::LegControl(c)) => self.on_leg_control(Instant::now(), c),
                    Some(CallInput::FeatureDone(prompt)) => self.feature_done(prompt),
                    Some(CallInput::QueueIdentified(t)) => self.queue_identified(t),
                    Some(CallInput::LanguageIdentified(l)) => {
                        self.language_identified(Instant::now(), l)
                    }
                    None => break,
                },
                r = relay_readable(relay_ready.as_ref()) => {
                    if let Ok(guard) = r {
                        let now = Instant::now();
                        guard.drain(&mut rtp_buf, RX_BURST, |buf, n, _from| {
                            // Bridged: rewrite in place, send from the other leg's socket.
                            if let Some(relay) = self.relay.as_mut() {
                                if let (Some(len), Some(out)) =
                                    (relay.rewrite(now, buf, n), self.relay_out.as_deref())
                                {
                                    let _ = out.try_send_to(&buf[..len], relay.dest());
                                }
                            }
                        });
                    }
                }
                r = recv_rtp(rtcp.as_deref(), &mut rtcp_buf) => {
                    // Reports for our media session; a bridged leg reads and drops them
                    // (the relay does not terminate RTCP: docs/architecture.md "RTCP").
                    if let (Ok((n, from)), Some(media)) = (r, self.media.as_mut()) {
                        media.handle_rtcp(Instant::now(), &rtcp_buf[..n], from);
                    }
                }
                _ = &mut sleep => {}
            }
        }
        if !self.ended_recorded {
            self.record_end(Disposition::Interrupted, HangupCause::ActorStopped, None);
        }
        if !self.acd_outbox.is_empty() {
            // Still no room when the call ended: a tracked task delivers them in order.
            let acd = self.ctx.acd.clone();
            let outbox = std::mem::take(&mut self.acd_outbox);
            self.ctx.tracker.spawn(async move {
                for m in outbox {
                    acd.send_wait(m).await;
                }
            });
        }
        // `self.slot`, if still held, goes back as the call drops.
    }

    /// Everything that reached the RTP socket since the last wake-up goes to the media
    /// session (or is dropped when there is none: ringing, lingering, an agent leg's phone
    /// talking while its caller is on hold).
    fn receive_on_tick(&mut self, now: Instant, rtp: Option<&MediaSocket>) {
        let Some(sock) = rtp else { return };
        let media = &mut self.media;
        // Without a session nothing is kept: empty the socket, so that what a phone sent
        // before the call was answered (or bridged) is not played out later.
        let limit = if media.is_some() { RX_BURST } else { 1024 };
        sock.drain(now, limit, |packet, from, arrived| {
            if let Some(m) = media.as_mut() {
                m.handle_datagram(arrived, packet, from);
            }
        });
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Done
            && self.role.uac().is_none_or(|u| u.settled())
            && self.bye.is_none()
            && self.pending_2xx.is_none()
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = now + Duration::from_secs(3600);
        if let Phase::Ringing { answer_at } = self.phase {
            d = d.min(answer_at);
        }
        if let Some(r) = &self.pending_2xx {
            d = d.min(r.deadline());
        }
        if let Some(t) = self.bye.as_ref().and_then(|b| b.abandon_at) {
            d = d.min(t);
        }
        if let Some(t) = self.client_txns.as_ref().and_then(|t| t.poll_timeout()) {
            d = d.min(t);
        }
        if let Some(m) = &self.media {
            d = d.min(m.poll_timeout());
        }
        if let Some(t) = self.interp.as_ref().and_then(Interpreter::poll_timeout) {
            d = d.min(t);
        }
        if let Some(t) = self.role.uac().and_then(|u| u.deadline()) {
            d = d.min(t);
        }
        if let Some(r) = self.relay.as_ref().filter(|_| !self.held) {
            d = d.min(r.last_rx() + self.ctx.media_timeout());
        }
        if let Some(t) = self.queue_deadline() {
            d = d.min(t);
        }
        if let Some(t) = self.session_deadline() {
            d = d.min(t);
        }
        if !self.acd_outbox.is_empty() {
            d = d.min(now + ACD_RETRY);
        }
        d
    }

    /// An event for the ACD that must not be lost: sent now, or kept until there is room.
    pub(super) fn acd_send(&mut self, msg: crate::acd::AcdMsg) {
        acd_send_or_keep(&self.ctx, &mut self.acd_outbox, msg);
    }

    fn flush_acd_outbox(&mut self) {
        while let Some(m) = self.acd_outbox.pop_front() {
            if let Some(m) = self.ctx.acd.try_send(m) {
                self.acd_outbox.push_front(m);
                return;
            }
        }
    }

    // ---- time-driven work ------------------------------------------------------------

    fn drive(&mut self, now: Instant, rtp: Option<&MediaSocket>, send_buf: &mut [u8; MAX_PACKET]) {
        self.flush_acd_outbox();
        if let Phase::Ringing { answer_at } = self.phase {
            if now >= answer_at {
                self.answer(now);
            }
        }
        self.drive_client_txns(now);
        self.drive_retransmits(now);
        self.drive_in_dialog(now);
        self.drive_uac(now);
        self.drive_queue(now);
        if !self.held
            && self
                .relay
                .as_ref()
                .is_some_and(|r| now >= r.last_rx() + self.ctx.media_timeout())
        {
            info!(
                "no RTP on the bridge for {} s; hanging up",
                self.ctx.config.media_timeout_s
            );
            self.relay = None;
            self.hangup(now, HangupCause::MediaTimeout);
        }
        // Digits and timeouts first, so that a key seen on this tick starts the next prompt
        // in this tick's packet; then the packet; then what sending it produced (the end of
        // a playlist), so the following prompt starts on the next slot with no gap.
        self.handle_media_events(now);
        if let Some(i) = self.interp.as_mut() {
            if i.poll_timeout().is_some_and(|t| now >= t) {
                i.handle_timeout(now);
            }
        }
        self.drain_interpreter(now);
        if let Some(media) = self.media.as_mut() {
            while let Some((len, dest)) = media.poll_transmit(now, send_buf) {
                if let Some(sock) = rtp {
                    let _ = sock.try_send_to(&send_buf[..len], dest);
                }
            }
            let mut rtcp_out = [0u8; crate::media::rtcp::MAX_COMPOUND];
            if let Some((len, dest)) = media.poll_rtcp(now, &mut rtcp_out) {
                if let Some(sock) = self.rtcp_sock.as_deref() {
                    let _ = sock.try_send_to(&rtcp_out[..len], dest);
                }
            }
        }
        if self.handle_media_events(now) {
            self.drain_interpreter(now);
        }
        // What this wake-up started (a BYE, a CANCEL, an INVITE) goes out now.
        self.flush_client_txns(now);
    }

    /// Carry out what the media session reported; whether it reported anything.
    fn handle_media_events(&mut self, now: Instant) -> bool {
        let mut events = [None; 8];
        let mut n = 0;
        if let Some(media) = self.media.as_mut() {
            while n < events.len() {
                match media.poll_event(now) {
                    Some(e) => {
                        events[n] = Some(e);
                        n += 1;
                    }
                    None => break,
                }
            }
        }
        for e in events.into_iter().take(n).flatten() {
            match e {
                MediaEvent::Digit(d) => self.on_digit(now, d),
                MediaEvent::PlaybackFinished(id) if id == uac::VOICEMAIL_PLAY_ID => {
                    self.hangup(now, HangupCause::VoicemailLeft);
                }
                MediaEvent::PlaybackFinished(id) if id == uac::VOICEMAIL_WAIT_ID => {
                    // The clock's bound on the wait for the beep (no audio from the machine).
                    if let Some(m) = self.media.as_mut() {
                        m.stop_voicemail_cue();
                    }
                    self.record_event("voicemail_cue", "timeout:clock".into());
                    self.leave_voicemail();
                }
                MediaEvent::PlaybackFinished(id) if self.queue_playback_finished(now, id) => {}
                MediaEvent::PlaybackFinished(id) => {
                    if let Some(i) = self.interp.as_mut() {
                        i.handle_playback_finished(now, id);
                    }
                }
                MediaEvent::MediaTimeout => {
                    info!(
                        "no RTP for {} s; hanging up",
                        self.ctx.config.media_timeout_s
                    );
                    self.hangup(now, HangupCause::MediaTimeout);
                }
                MediaEvent::Amd(r) => self.on_amd(now, r),
                MediaEvent::VoicemailCue(c) => {
                    let detail = match c.beep_hz {
                        Some(hz) => format!("{}:{}:{hz}", c.reason.as_str(), c.after_ms),
                        None => format!("{}:{}", c.reason.as_str(), c.after_ms),
                    };
                    self.record_event("voicemail_cue", detail);
                    self.leave_voicemail();
                }
            }
        }
        n > 0
    }

    fn drive_retransmits(&mut self, now: Instant) {
        let flow = self.flow.clone();
        let step = |r: &mut Retransmit| {
            if let Some(next) = r.next {
                if now >= next {
                    flow.send(r.bytes.clone());
                    r.interval = (r.interval * 2).min(T2);
                    r.next = Some(now + r.interval);
                }
            }
        };
        let overloaded = self.ctx.overload.recent(now);
        if let Some(r) = self.pending_2xx.as_mut() {
            // Under overload a 200 not ACKed after 8·T1 (sent four times) is a caller that
            // gave up while we were behind: end it now instead of after 64·T1.
            let early = overloaded && now >= r.give_up - TIMEOUT_64T1 + OVERLOAD_ACK_WAIT;
            if now >= r.give_up || early {
                // RFC 3261 §13.3.1.4: no ACK for the 2xx; confirm then end the dialog.
                self.drop_pending_2xx();
                warn!(early, "no ACK for 200 OK; ending the call");
                self.hangup(now, HangupCause::AckTimeout);
                if early {
                    // Its BYE is as unlikely to be answered: do not retransmit it for 32 s.
                    if let Some(b) = self.bye.as_mut() {
                        b.abandon_at = Some(now + OVERLOAD_ACK_WAIT);
                    }
                }
            } else {
                step(r);
            }
        }
        if let Some(b) = self.bye.take_if(|b| b.abandon_at.is_some_and(|t| now >= t)) {
            if let Some(t) = self.client_txns.as_mut() {
                t.forget(&b.key);
            }
            self.phase = Phase::Done;
        }
    }

    // ---- client transactions -----------------------------------------------------------

    /// Send `request` in a new client transaction on the call's current flow (its
    /// retransmissions and timeout are the transaction's). The first message goes out with
    /// the next flush (at the latest at the end of this wake-up's `drive`).
    fn start_client(&mut self, now: Instant, request: Message) -> Option<TransactionKey> {
        let reliable = !self.flow.kind().unreliable();
        let flow = self.flow.clone();
        let table = self
            .client_txns
            .get_or_insert_with(|| Box::new(TransactionTable::new(client_timers())));
        match table.start_client(request, now, flow, reliable) {
            Ok(key) => Some(key),
            Err(e) => {
                warn!(error = %e, "request not sent: no client transaction");
                None
            }
        }
    }

    /// The client transactions' timers (retransmissions, Timers B, D, F, K, M).
    fn drive_client_txns(&mut self, now: Instant) {
        if let Some(t) = self.client_txns.as_mut() {
            t.handle_timeout(now);
        }
        self.flush_client_txns(now);
    }

    /// A response from the network: to its client transaction, which absorbs what the
    /// call need not see (retransmitted finals, late provisionals, stray answers).
    fn on_response(&mut self, now: Instant, msg: Message) {
        if let Some(t) = self.client_txns.as_mut() {
            t.handle_response(msg, now);
        }
        self.flush_client_txns(now);
    }

    /// Send what the client transactions emitted, on the flow each runs on, and act on what
    /// they reported; the table goes once no transaction is left (its requests with it).
    fn flush_client_txns(&mut self, now: Instant) {
        loop {
            let Some(t) = self.client_txns.as_mut() else {
                return;
            };
            let mut idle = true;
            while let Some(out) = t.poll_transmit() {
                idle = false;
                out.ctx.send(out.message.to_bytes());
            }
            if let Some((key, ev)) = t.poll_event() {
                idle = false;
                self.on_client_event(now, &key, ev);
            }
            if idle {
                if self.client_txns.as_ref().is_some_and(|t| t.is_empty()) {
                    self.client_txns = None;
                }
                return;
            }
        }
    }

    /// What a client transaction reported: a response for the TU, or that it gave up.
    fn on_client_event(&mut self, now: Instant, key: &TransactionKey, ev: txn::Event) {
        match ev {
            txn::Event::Response(msg) => self.on_client_response(now, key, &msg),
            txn::Event::Timeout(_) | txn::Event::TransportError => self.on_client_timeout(now, key),
            txn::Event::Ack(_) | txn::Event::Terminated => {}
        }
    }

    fn on_client_response(&mut self, now: Instant, key: &TransactionKey, msg: &Message) {
        let (Some(code), Ok(cseq)) = (msg.status(), msg.cseq()) else {
            return;
        };
        let uac = self.role.uac().is_some_and(|u| u.is_invite(key))
            || (cseq.method == Method::Cancel && self.role.uac().is_some());
        if uac {
            self.on_uac_response(now, code, msg, &cseq);
            return;
        }
        if self.bye.as_ref().is_some_and(|b| b.key == *key) {
            if code >= 200 {
                self.bye = None;
                self.phase = Phase::Done;
            }
            return;
        }
        // A peer browser leg's REFER (the page's transfer, `peer_leg.rs`).
        if self.peer_leg_refer_answer(key, Some(code)) {
            return;
        }
        // Our refresh (re-INVITE, UPDATE), including a 2xx repeated in Accepted; a NOTIFY's
        // answer is nobody's business.
        self.on_in_dialog_response(now, msg);
    }

    fn on_client_timeout(&mut self, now: Instant, key: &TransactionKey) {
        if self.role.uac().is_some_and(|u| u.is_invite(key)) {
            self.on_uac_timeout(now);
        } else if self.bye.as_ref().is_some_and(|b| b.key == *key) {
            // No answer to our BYE (Timer F): the dialog is over all the same.
            self.bye = None;
            self.phase = Phase::Done;
        } else if !self.peer_leg_refer_answer(key, None) {
            self.on_refresh_timeout(key);
        }
    }

    // ---- signalling --------------------------------------------------------------------

    /// Send a response to the initial INVITE and report it to the router's transaction,
    /// which repeats it for retransmissions (and a non-2xx final on Timer G until its ACK).
    /// Returns what was sent (the 2xx is the TU's to retransmit).
    fn send_invite_response(&mut self, code: u16, reason: &str, body: Option<String>) -> Vec<u8> {
        let tag = if code > 100 {
            Some(self.local_tag.as_str())
        } else {
            None
        };
        let mut r = response(&self.invite, code, reason, tag, &self.local);
        for (n, v) in self.invite_final_headers(code) {
            r.push_header(n, v);
        }
        if let Some(b) = body {
            r.push_header(HeaderName::ContentType, "application/sdp");
            r.body = Bytes::from(b);
        }
        let bytes = r.to_bytes();
        self.flow.send(bytes.clone());
        if let Some(key) = self.role.invite_key() {
            let note = RouterControl::InviteResponse {
                key: key.clone(),
                response: Box::new(r),
            };
            if self.ctx.router.try_send(note).is_err() {
                // The router is far behind: a retransmitted INVITE goes unanswered (or
                // gets an older answer) until the next response; the peer retransmits.
                debug!(code, "router control full: INVITE response not reported");
            }
        }
        bytes
    }

    /// Final non-2xx to the INVITE. Its retransmission on Timer G until the ACK (RFC 3261
    /// §17.2.1) is the router's transaction's: the call is done.
    fn refuse(&mut self, code: u16, reason: &str, cause: HangupCause, disposition: Disposition) {
        self.send_invite_response(code, reason, None);
        self.phase = Phase::Done;
        self.media = None;
        self.record_end(disposition, cause, Some(code));
    }

    fn local_sdp(&mut self, neg: Option<&Negotiated>) -> String {
        let (codecs, te, dir) = match neg {
            // An answer: the chosen codec with the offer's PT, its telephone-event (whose
            // clock is the codec's: 48000 for Opus).
            Some(n) => (
                vec![(n.codec, n.payload_type)],
                n.telephone_event
                    .map(|pt| vec![(pt, n.codec.clock_rate())])
                    .unwrap_or_default(),
                n.direction,
            ),
            // An offer (late offer in the 200, outbound INVITE): our list in preference
            // order, dynamic PT for Opus, one telephone-event per clock rate in the list.
            None => {
                let mut codecs: Vec<(Codec, u8)> = self
                    .ctx
                    .config
                    .codecs
                    .iter()
                    .map(|c| (*c, c.offer_pt()))
                    .collect();
                // An agent leg puts the caller's codec first (when allowed at all): a phone
                // that answers with it makes the bridge a pass-through, not a transcoder.
                if let Some(c) = self.role.agent_leg().and_then(|l| l.prefer) {
                    if let Some(i) = codecs.iter().position(|(x, _)| *x == c) {
                        let first = codecs.remove(i);
                        codecs.insert(0, first);
                    }
                }
                let te = sdp::offer_telephone_events(&codecs);
                (codecs, te, Direction::SendRecv)
            }
        };
        sdp::render(
            self.media_ip,
            self.rtp_port,
            self.sdp_session,
            self.sdp_version,
            &codecs,
            &te,
            dir,
        )
    }

    fn answer(&mut self, now: Instant) {
        let offer = self.offer;
        let body = self.local_sdp(offer.as_ref());
        let bytes = self.send_invite_response(200, "OK", Some(body));
        let cseq = self.dialog.remote_cseq().unwrap_or(0);
        self.pending_2xx = Some(Retransmit::new(bytes, now, self.flow.kind().unreliable()));
        // No offer of theirs: our 2xx carried the offer, its answer comes in the ACK.
        self.dialog.sent_2xx(cseq, offer.is_none());
        self.phase = Phase::Answered;
        self.session_timer_answered(now);
        if self.role.keeps_records() {
            self.ctx.store.submit(StoreOp::CallAnswered {
                id: self.id.clone(),
                at: now_ts(),
            });
        }
        info!(route = %self.route.to, dialplan = %self.route.dialplan, "answered");
        // Under overload, media (and the dialplan) start when the ACK confirms the call,
        // not with the 200: a call whose caller gave up before our late 200 arrived is
        // never ACKed, and it must not play prompts to nobody for 32 s (Timer H) while the
        // server is already behind (docs/benchmarks.md, "Overload"). Otherwise they start
        // at once: on a lossy path the ACK may be lost and come 500 ms later with the
        // retransmitted 200, and a caller who already pressed a key must be heard.
        match offer {
            Some(n) if self.ctx.overload.recent(now) => self.media_on_ack = Some(n),
            Some(n) => self.start_media(now, &n),
            None => {}
        }
    }

    /// A fresh media session's parameters (new SSRC, sequence and timestamp origin).
    fn media_params(&self, n: &Negotiated, remote: SocketAddr) -> MediaParams {
        MediaParams {
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            remote,
            ssrc: rand::random(),
            initial_seq: rand::random(),
            initial_ts: rand::random(),
            media_timeout: self.ctx.media_timeout(),
        }
    }

    fn start_media(&mut self, now: Instant, n: &Negotiated) {
        if self.role.is_agent_leg() {
            // An agent leg has no media of its own until bridged: hand the answer over.
            self.leg_answered(now, n);
            return;
        }
        if self.role.callback().is_some_and(|c| c.awaiting_customer()) {
            self.callback_answered(now, n);
            return;
        }
        if self.peer_leg_media(now, n) {
            return;
        }
        if let Some(code) = self.route.dialplan.strip_prefix(queue::FEATURE_PREFIX) {
            let code = code.to_string();
            self.media = Some(MediaSession::new(now, self.media_params(n, n.remote)));
            self.feature_code(&code);
            return;
        }
        self.media = Some(MediaSession::new(now, self.media_params(n, n.remote)));
        self.start_interpreter(now);
    }

    /// The language before the first word (src/ivr/language.rs): a preset one (the dialer's
    /// ticket) is kept; else the caller's ticket is looked up by number within the lookup
    /// budget, and the dialplan starts when it answers (or does not).
    fn start_interpreter(&mut self, now: Instant) {
        if self.preset_vars.contains_key("language")
            || self.preset_vars.contains_key("language_source")
        {
            self.preset_vars
                .entry("language_source".into())
                .or_insert_with(|| LanguageSource::Ticket.as_str().into());
            self.run_interpreter(now);
            return;
        }
        self.awaiting_language = Some(Vec::new());
        let db = self.ctx.db.clone();
        let tx = self.self_tx.clone();
        let number = self.caller.clone();
        let budget = self.ctx.lookup_budget();
        // On the calls' tracker (as every task a call starts): shutdown waits for it, and
        // it is bounded by the lookup budget.
        self.ctx.tracker.spawn(async move {
            let found = crate::store::tickets::within(budget, async {
                crate::store::tickets::by_phone(&db, &number).await
            })
            .await;
            let lang = found
                .unwrap_or_else(|e| {
                    warn!(error = %e, "language lookup failed; choosing by number");
                    None
                })
                .and_then(|t| t.get("language").cloned());
            let _ = tx.send(CallInput::LanguageIdentified(lang)).await;
        });
    }

    fn language_identified(&mut self, now: Instant, ticket_language: Option<String>) {
        let Some(typed) = self.awaiting_language.take() else {
            return;
        };
        if self.phase != Phase::Answered || self.media.is_none() {
            return;
        }
        let (lang, source) = crate::ivr::language::choose(
            ticket_language.as_deref(),
            &self.caller,
            &self.ctx.config.language_prefixes,
        );
        self.record_event(
            "language",
            format!("{}:{}", lang.as_deref().unwrap_or("-"), source.as_str()),
        );
        if let Some(l) = lang {
            self.preset_vars.insert("language".into(), l);
        }
        self.preset_vars
            .insert("language_source".into(), source.as_str().into());
        self.run_interpreter(now);
        for d in typed {
            if let Some(i) = self.interp.as_mut() {
                i.handle_digit(now, d);
            }
        }
        self.drain_interpreter(now);
    }

    fn run_interpreter(&mut self, now: Instant) {
        let Some(plan) = self.ctx.dialplans().get(&self.route.dialplan) else {
            warn!(dialplan = %self.route.dialplan, "dialplan vanished; hanging up");
            self.hangup(now, HangupCause::NoDialplan);
            return;
        };
        let mut vars = std::mem::take(&mut self.preset_vars);
        vars.insert("caller".into(), self.caller.clone());
        vars.insert("called".into(), self.route.to.clone());
        vars.insert("call_id".into(), self.id.clone());
        vars.insert("dialplan".into(), plan.name.clone());
        let holidays = self.ctx.dialplans().holidays.clone();
        let mut interp = Interpreter::new(plan, vars);
        if let Some(h) = &self.ctx.config.service_hours {
            interp.set_clock(Arc::new(h.with_holidays(holidays)), chrono::Utc::now(), now);
        }
        interp.start(now);
        self.interp = Some(interp);
        self.drain_interpreter(now);
    }

    fn on_sip(&mut self, now: Instant, inbound: Inbound) {
        let msg = inbound.msg;
        let method = match &msg.start {
            StartLine::Response { .. } => {
                self.on_response(now, msg);
                return;
            }
            StartLine::Request { method, .. } => method.clone(),
        };
        let to_tag = msg
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        match method {
            Method::Invite if to_tag.is_none() => {
                if branch == self.invite_branch {
                    // A retransmission the router's transaction did not take (it ended, or
                    // this call has none): nothing to repeat, the transaction answered.
                    debug!("late INVITE retransmission absorbed");
                } else {
                    self.reply(&msg, 482, "Loop Detected");
                }
            }
            Method::Invite => {
                if to_tag.as_deref() != Some(&self.local_tag) {
                    self.reply(&msg, 481, "Call/Transaction Does Not Exist");
                } else {
                    // (Its retransmissions are the router's transaction's.)
                    self.on_reinvite_request(now, &msg);
                }
            }
            Method::Ack => self.on_ack(now, &msg),
            Method::Cancel => self.on_cancel(&msg, &branch),
            Method::Bye => {
                if let Verdict::Reject(r) = self.dialog.handle_request(&msg) {
                    self.reject(&msg, r);
                    return;
                }
                // Its retransmissions get this 200 from the router's transaction for
                // Timer J (RFC 3261 §17.2.2), after this call has ended.
                self.reply(&msg, 200, "OK");
                if self.phase != Phase::Done {
                    info!("caller hung up");
                    self.end_dialog(now, Disposition::Answered, HangupCause::CallerHangup);
                }
            }
            Method::Info => {
                if let Verdict::Reject(r) = self.dialog.handle_request(&msg) {
                    self.reject(&msg, r);
                    return;
                }
                self.reply(&msg, 200, "OK");
                if let Some(d) = msg.content_type().and_then(|ct| info_digit(ct, &msg.body)) {
                    self.on_digit(now, d);
                    self.drain_interpreter(now);
                }
            }
            Method::Refer => match self.dialog.handle_request(&msg) {
                Verdict::Reject(r) => self.reject(&msg, r),
                _ => self.on_refer(now, &msg),
            },
            Method::Update => {
                if to_tag.as_deref() != Some(&self.local_tag) {
                    self.reply(&msg, 481, "Call/Transaction Does Not Exist");
                    return;
                }
                self.on_update(now, &msg);
            }
            Method::Options => self.reply(&msg, 200, "OK"),
            // The caller's node reports on our REFER (a browser agent's transfer).
            Method::Notify if self.role.is_peer_browser() => self.peer_leg_notify(&msg),
            _ => self.reply(&msg, 501, "Not Implemented"),
        }
    }

    /// Answer a request the dialog refused (481, 500 out of order, 491, 500 + Retry-After).
    fn reject(&self, msg: &Message, r: Rejection) {
        let mut resp = response(
            msg,
            r.status(),
            r.reason(),
            Some(&self.local_tag),
            &self.local,
        );
        for (n, v) in r.headers() {
            resp.push_header(n, v);
        }
        self.send_reply(msg, resp);
    }

    /// The 2xx we retransmit is over (ACKed, given up, or the dialog ends): the dialog
    /// stops waiting for its ACK too.
    fn drop_pending_2xx(&mut self) {
        self.pending_2xx = None;
        self.dialog.ack_wait_over();
    }

    fn reply(&self, msg: &Message, code: u16, reason: &str) {
        let r = response(msg, code, reason, Some(&self.local_tag), &self.local);
        self.send_reply(msg, r);
    }

    /// Send a response to a request received in the dialog. For an INVITE (a re-INVITE,
    /// or a looped one) and for a non-INVITE request other than CANCEL the router holds
    /// the server transaction (router.rs): it gets a copy, to repeat for the request's
    /// retransmissions, which never come here.
    fn send_reply(&self, request: &Message, r: Message) {
        let bytes = r.to_bytes();
        self.report_response(request, r, &bytes);
        self.flow.send(bytes);
    }

    /// Hand the router's server transaction of `request` a copy of our response to it
    /// (`bytes`: the response as sent). Reported before it goes on the wire, so the
    /// transaction is in its new state when the peer's ACK or retransmission comes.
    fn report_response(&self, request: &Message, r: Message, bytes: &[u8]) {
        let (Ok(key), Some(code)) = (TransactionKey::server(request), r.status()) else {
            return;
        };
        let note = match request.method() {
            None | Some(Method::Ack | Method::Cancel) => return,
            Some(Method::Invite) => RouterControl::InviteResponse {
                key,
                response: Box::new(r),
            },
            Some(_) => RouterControl::Response {
                key,
                code,
                bytes: bytes.to_vec().into_boxed_slice(),
            },
        };
        if self.ctx.router.try_send(note).is_err() {
            // The router is far behind: this request's retransmissions are absorbed
            // unanswered until its transaction ends (64·T1; a 2xx is retransmitted by the
            // call all the same); the peer's own transaction times out alike if this
            // response is lost too.
            debug!(code, "router control full: in-dialog response not reported");
        }
    }

    /// An ACK for a 2xx (the ACK of a non-2xx final is absorbed by the router's
    /// transaction).
    fn on_ack(&mut self, now: Instant, msg: &Message) {
        if self.dialog.handle_request(msg) == Verdict::Ack {
            self.pending_2xx = None;
            if let Some(n) = self.media_on_ack.take() {
                if self.phase == Phase::Answered {
                    self.start_media(now, &n);
                }
                return;
            }
            // Late offer: the answer to our offer comes in the ACK.
            if self.offer.is_none() && self.media.is_none() && self.phase == Phase::Answered {
                let neg = SessionDescription::parse(&msg.body)
                    .and_then(|sd| sdp::negotiate_answer(&sd, &self.ctx.config.codecs));
                match neg {
                    Ok(n) => {
                        self.offer = Some(n);
                        self.start_media(now, &n);
                    }
                    Err(e) => {
                        info!(error = %e, "unusable SDP answer in ACK");
                        self.hangup(now, HangupCause::IncompatibleMedia);
                    }
                }
            }
        }
    }

    fn on_cancel(&mut self, msg: &Message, branch: &str) {
        if branch != self.invite_branch {
            self.reply(msg, 481, "Call/Transaction Does Not Exist");
            return;
        }
        self.reply(msg, 200, "OK");
        if matches!(self.phase, Phase::Ringing { .. }) {
            info!("caller cancelled before answer");
            self.refuse(
                487,
                "Request Terminated",
                HangupCause::CallerCancel,
                Disposition::Cancelled,
            );
        }
    }

    /// A re-INVITE we accept (overlap, CSeq and session interval already checked): answer
    /// its offer (or offer again when it has none) in a 200 resent until ACKed.
    fn on_reinvite(
        &mut self,
        now: Instant,
        msg: &Message,
        cseq: u32,
        extra: Vec<(HeaderName, String)>,
    ) {
        let Some(n) = self.apply_offer(now, msg) else {
            return;
        };
        self.sdp_version += 1;
        let body = self.local_sdp(Some(&n));
        let mut r = response(msg, 200, "OK", Some(&self.local_tag), &self.local);
        r.push_header(HeaderName::Contact, self.local.contact.clone());
        for (name, v) in extra {
            r.push_header(name, v);
        }
        r.push_header(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(body);
        let bytes = r.to_bytes();
        // The router's transaction goes to Accepted: it absorbs the re-INVITE's
        // retransmissions while we retransmit the 200 until its ACK (RFC 3261 §13.3.1.4).
        self.report_response(msg, r, &bytes);
        self.flow.send(bytes.clone());
        self.pending_2xx = Some(Retransmit::new(bytes, now, self.flow.kind().unreliable()));
        self.dialog.sent_2xx(cseq, false);
        self.record_event("reinvite", n.direction.as_attr().to_string());
        if self.relay.is_some() || self.held {
            self.bridged_reinvite(now, &n);
        }
    }

    fn on_shutdown(&mut self, now: Instant) {
        match self.phase {
            Phase::Ringing { .. } => self.refuse(
                503,
                "Service Unavailable",
                HangupCause::Shutdown,
                Disposition::Failed,
            ),
            Phase::Answered | Phase::Calling => {
                // Our own stop cut a campaign call before the customer chose: report it as
                // interrupted so the dialer retries, not as an answered call without choice.
                if self.role.uac().is_some() && self.outcome.is_none() {
                    self.disposition_override = Some(Disposition::Interrupted);
                }
                self.hangup(now, HangupCause::Shutdown)
            }
            Phase::Parked => self.hangup(now, HangupCause::Shutdown),
            Phase::Ending | Phase::Done => {}
        }
    }

    /// We end an answered call: BYE (RFC 3261 §15.1.1), retransmitted until answered.
    fn hangup(&mut self, now: Instant, cause: HangupCause) {
        match self.phase {
            Phase::Answered => {
                let bye = self.dialog.request(Method::Bye, &self.local);
                self.bye = self.start_client(now, bye).map(|key| ByeSent {
                    key,
                    abandon_at: None,
                });
                self.drop_pending_2xx();
                self.end_media(now);
                self.interp = None;
                // Not even sent (a duplicate branch cannot happen): nothing to wait for.
                self.phase = if self.bye.is_some() {
                    Phase::Ending
                } else {
                    Phase::Done
                };
                let disposition = self.disposition_override.unwrap_or(Disposition::Answered);
                self.record_end(disposition, cause, Some(200));
            }
            Phase::Ringing { .. } => {
                self.refuse(480, "Temporarily Unavailable", cause, Disposition::Failed)
            }
            Phase::Calling => self.cancel_outbound(now, cause),
            Phase::Parked => {
                // A callback never dialed: nothing on the wire to end.
                self.phase = Phase::Done;
                self.record_end(Disposition::Cancelled, cause, None);
            }
            Phase::Ending | Phase::Done => {}
        }
    }

    /// The peer ended the dialog (BYE).
    fn end_dialog(&mut self, now: Instant, disposition: Disposition, cause: HangupCause) {
        self.end_media(now);
        self.interp = None;
        self.drop_pending_2xx();
        self.phase = Phase::Done;
        self.record_end(disposition, cause, Some(200));
    }

    /// The call is over: the media session's last RTCP report with a BYE (RFC 3550 §6.6),
    /// and its figures into the call's events (`rtp_stats`, and `rtcp_remote` when the peer
    /// sent reports; docs/schema.md).
    fn end_media(&mut self, now: Instant) {
        let Some(mut media) = self.media.take() else {
            return;
        };
        let mut buf = [0u8; crate::media::rtcp::MAX_COMPOUND];
        if let (Some((len, dest)), Some(sock)) =
            (media.rtcp_bye(now, &mut buf), self.rtcp_sock.as_deref())
        {
            let _ = sock.try_send_to(&buf[..len], dest);
        }
        self.record_event("rtp_stats", media.summary());
        if let Some(remote) = media.remote_summary() {
            self.record_event("rtcp_remote", remote);
        }
    }

    // ---- IVR glue ----------------------------------------------------------------------

    fn on_digit(&mut self, now: Instant, d: char) {
        self.record_event("dtmf", d.to_string());
        if self.queue_digit(now, d) {
            return;
        }
        if let Some(typed) = self.awaiting_language.as_mut() {
            typed.push(d);
            return;
        }
        if let Some(i) = self.interp.as_mut() {
            i.handle_digit(now, d);
        }
    }

    fn on_lookup(&mut self, now: Instant, result: Option<HashMap<String, String>>) {
        if let Some(id) = result
            .as_ref()
            .and_then(|t| t.get("id"))
            .and_then(|s| s.parse::<i64>().ok())
        {
            self.ticket_id = Some(id);
            self.ctx.store.submit(StoreOp::CallTicket {
                id: self.id.clone(),
                ticket_id: id,
            });
        }
        if let Some(i) = self.interp.as_mut() {
            i.handle_lookup_result(now, result);
        }
        self.drain_interpreter(now);
    }

    fn on_lookup_unavailable(&mut self, now: Instant) {
        if let Some(i) = self.interp.as_mut() {
            i.handle_lookup_unavailable(now);
        }
        self.drain_interpreter(now);
    }

    /// Answering-machine verdict on an outbound call: hang up (retry later), or leave the
    /// short voicemail message once the greeting has had time to end, then hang up.
    fn on_amd(&mut self, now: Instant, r: crate::media::amd::AmdResult) {
        self.record_event(
            "amd",
            format!("{}:{}:{}", r.verdict.as_str(), r.reason, r.after_ms),
        );
        if r.verdict != crate::media::amd::Verdict::Machine {
            return;
        }
        self.disposition_override = Some(Disposition::Machine);
        match self.role.machine() {
            Some(uac::MachineHandling::Voicemail) => {
                // The language before the interpreter goes (it holds the call's variables).
                let language = self.preset_language();
                self.role.set_voicemail_language(language);
                self.interp = None;
                self.outcome = Some("voicemail".into());
                let Some(media) = self.media.as_mut() else {
                    return;
                };
                // Silence while the greeting plays on, until its beep (the cue) or, on the
                // clock, the end of this silence.
                let cue = crate::media::voicemail_cue::CueConfig::default();
                media.play(
                    uac::VOICEMAIL_WAIT_ID,
                    vec![PlayItem::Silence(cue.max_wait_ms as usize * 8)],
                    false,
                );
                media.start_voicemail_cue(&cue);
            }
            _ => self.hangup(now, HangupCause::AnsweringMachine),
        }
    }

    /// The machine records now: play the voicemail message once, then hang up.
    fn leave_voicemail(&mut self) {
        let waiting = self.media.as_ref().and_then(MediaSession::current_playlist)
            == Some(uac::VOICEMAIL_WAIT_ID);
        if !waiting {
            return;
        }
        let lang = self.role.voicemail_language().unwrap_or("en").to_string();
        let prompt = self
            .ctx
            .prompts
            .get(&lang, "voicemail-message")
            .or_else(|| self.ctx.prompts.get("en", "voicemail-message"))
            .cloned();
        let Some(media) = self.media.as_mut() else {
            return;
        };
        // No recorded message in any language: a blip of silence, then the hang-up.
        let items = vec![prompt.map_or(PlayItem::Silence(160), PlayItem::Prompt)];
        media.play(uac::VOICEMAIL_PLAY_ID, items, false);
        self.record_event("prompt", "voicemail-message".into());
    }

    /// A prompt in the call's language, else in English (what callers hear when a
    /// translation is missing), for prompts played outside the dialplan.
    fn prompt_in_language(&self, name: &str) -> Option<Arc<crate::media::prompts::Prompt>> {
        let lang = self.preset_language();
        self.ctx
            .prompts
            .get(&lang, name)
            .or_else(|| self.ctx.prompts.get("en", name))
            .cloned()
    }

    fn preset_language(&self) -> String {
        self.interp
            .as_ref()
            .and_then(|i| i.vars().get("language").cloned())
            .unwrap_or_else(|| "en".to_string())
    }

    fn drain_interpreter(&mut self, now: Instant) {
        loop {
            let Some(out) = self.interp.as_mut().and_then(Interpreter::poll_output) else {
                return;
            };
            match out {
                Output::Play { id, items } => self.play(id, items),
                Output::StopPlayback => {
                    if let Some(m) = self.media.as_mut() {
                        m.stop_playback();
                    }
                }
                Output::Lookup { by, value } => self.spawn_lookup(by, value),
                Output::Outcome { choice } => {
                    self.outcome = Some(choice.clone());
                    self.record_event("outcome", choice.clone());
                    self.ctx.store.submit(StoreOp::Outcome {
                        call_id: self.id.clone(),
                        ticket_id: self.ticket_id,
                        choice,
                        at: now_ts(),
                    });
                }
                Output::Event { kind, detail } => {
                    if kind != "step" {
                        self.record_event(kind, detail);
                    }
                }
                Output::Enqueue { queue } => {
                    self.enqueue(now, queue);
                    return;
                }
                Output::StartRecording {
                    step,
                    var,
                    min_speech_ms,
                } => self.start_segment_recording(now, step, var, min_speech_ms),
                Output::StopRecording => self.stop_segment_recording(),
                Output::Survey { score, message } => {
                    let (queue, agent) = self.survey_context();
                    self.record_event("survey", score.to_string());
                    // The step's `message` was expanded before the recording it names was
                    // dropped (the record step's `next` runs at once): it is no message.
                    let message = match message {
                        Some(m) if self.discarded_recordings.contains(&m) => {
                            self.record_event("survey_no_message", "no_speech".into());
                            None
                        }
                        m => m,
                    };
                    self.ctx.store.submit(StoreOp::Survey {
                        call_id: self.id.clone(),
                        ticket_id: self.ticket_id,
                        agent,
                        queue,
                        score,
                        recording: message,
                        at: now_ts(),
                    });
                }
                Output::Hangup { cause } => {
                    self.hangup(now, HangupCause::from_dialplan(&cause));
                    return;
                }
            }
        }
    }

    fn start_segment_recording(
        &mut self,
        now: Instant,
        step: String,
        var: Option<String>,
        min_speech_ms: u32,
    ) {
        let path = self
            .ctx
            .config
            .recordings_dir
            .join(format!("{}-{step}.wav", self.id));
        match crate::media::recorder::Recorder::start_with(&path, now, 1) {
            Ok(r) => {
                let shown = path.display().to_string();
                if let (Some(v), Some(i)) = (var.as_ref(), self.interp.as_mut()) {
                    i.set_var(v, &shown);
                }
                self.record_event("recording", shown.clone());
                self.ctx.store.submit(StoreOp::CallRecording {
                    id: self.id.clone(),
                    path: shown.clone(),
                });
                let previous_path = self.recording_path.replace(shown);
                if let Some(m) = self.media.as_mut() {
                    // The caller's audio, decoded by the session (any codec), to the file.
                    m.set_recorder(Some(r.clone()));
                }
                self.segment = Some(Segment {
                    recorder: r,
                    step,
                    var,
                    min_speech_ms,
                    previous_path,
                });
            }
            Err(e) => warn!(error = %e, "cannot record; the dialplan goes on"),
        }
    }

    /// End a `record` step's recording (its terminator, `max_ms`, or the hang-up). With a
    /// `min_speech_ms`, a recording with less voice than that is no message: the file is
    /// deleted, `var` emptied, `call_records.recording_path` put back, and the event
    /// `record_discarded` (`STEP:no_speech voice_ms=N words=M`) says why.
    fn stop_segment_recording(&mut self) {
        let speech = self.media.as_ref().and_then(|m| m.recorded_speech());
        if let Some(m) = self.media.as_mut() {
            m.set_recorder(None);
        }
        let Some(seg) = self.segment.take() else {
            return;
        };
        self.record_event("recording_stats", seg.recorder.summary());
        let speech = speech.unwrap_or_default();
        if speech.is_message(seg.min_speech_ms) {
            return;
        }
        let path = seg.recorder.path().to_path_buf();
        let shown = path.display().to_string();
        // The writer thread may still hold the file open (it ends with the last sender);
        // unlinking it is fine on Unix: what is left is written to a nameless file.
        drop(seg.recorder);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e, path = %shown, "cannot delete a recording without speech");
            }
        }
        if let (Some(v), Some(i)) = (seg.var.as_ref(), self.interp.as_mut()) {
            i.set_var(v, "");
        }
        self.record_event(
            "record_discarded",
            format!("{}:no_speech {speech}", seg.step),
        );
        self.ctx.store.submit(StoreOp::CallRecordingDropped {
            id: self.id.clone(),
            path: shown.clone(),
            previous: seg.previous_path.clone(),
        });
        self.recording_path = seg.previous_path;
        self.discarded_recordings.push(shown);
    }

    fn play(&mut self, id: u32, items: Vec<PromptRef>) {
        let Some(media) = self.media.as_mut() else {
            return;
        };
        let lib = &self.ctx.prompts;
        let mut list = Vec::with_capacity(items.len());
        let mut names = String::new();
        for item in items {
            match item {
                PromptRef::Prompt {
                    lang,
                    name,
                    fallback,
                } => {
                    // A prompt missing in the call's language plays in English; the event
                    // says so (`en/NAME`), or a Mandarin trail would hide English prompts.
                    match lib.resolve(&lang, &name, fallback.as_deref()) {
                        Some((p, english_instead)) => {
                            if !names.is_empty() {
                                names.push(',');
                            }
                            if english_instead {
                                names.push_str("en/");
                            }
                            names.push_str(&p.name);
                            list.push(PlayItem::Prompt(p.clone()));
                        }
                        None => debug!(%lang, %name, "prompt missing; skipped"),
                    }
                }
                PromptRef::Silence(ms) => list.push(PlayItem::Silence(ms as usize * 8)),
            }
        }
        if list.is_empty() {
            // Still report the end of this (empty) playlist so the dialplan moves on.
            list.push(PlayItem::Silence(0));
        }
        media.play(id, list, false);
        self.record_event("prompt", names);
    }

    fn spawn_lookup(&self, by: LookupBy, value: String) {
        let db = self.ctx.db.clone();
        let tx = self.self_tx.clone();
        let cc = self.ctx.config.default_country_code.clone();
        let budget = self.ctx.lookup_budget();
        self.ctx.tracker.spawn(async move {
            // Bounded: during a database outage the pool would keep a read waiting for its
            // 5 s acquire timeout (longer still on a hung connection) while the caller
            // hears silence. Past the budget the dialplan's `unavailable` path runs.
            let result = tickets::within(budget, async {
                match by {
                    LookupBy::Caller => match tickets::normalize_number(&value, &cc) {
                        Some(phone) => tickets::by_phone(&db, &phone).await,
                        None => Ok(None),
                    },
                    LookupBy::OrderId => tickets::by_order_id(&db, value.trim()).await,
                }
            })
            .await;
            let input = match result {
                Ok(ticket) => CallInput::Lookup(ticket),
                Err(e) => {
                    warn!(error = %e, "ticket lookup unavailable; the dialplan's unavailable path runs");
                    CallInput::LookupUnavailable
                }
            };
            let _ = tx.send(input).await;
        });
    }

    // ---- records -----------------------------------------------------------------------

    fn record_event(&mut self, kind: &str, detail: String) {
        if !self.role.keeps_records() {
            // An agent leg is part of its caller's call: the caller's record tells the story.
            return;
        }
        self.event_seq += 1;
        self.ctx.store.submit(StoreOp::CallEvent {
            call_id: self.id.clone(),
            seq: self.event_seq,
            at: now_ts(),
            kind: kind.to_string(),
            detail,
        });
    }

    fn record_end(
        &mut self,
        disposition: Disposition,
        cause: HangupCause,
        sip_status: Option<u16>,
    ) {
        if self.ended_recorded {
            return;
        }
        self.ended_recorded = true;
        if self.role.is_peer_browser() {
            self.peer_leg_end();
            return;
        }
        if self.role.is_agent_leg() {
            self.report_leg_end(disposition);
            return;
        }
        self.report_result(disposition, sip_status);
        self.stop_segment_recording();
        self.leave_queue();
        let (queue, agent, wait_ms) = self
            .queue
            .as_ref()
            .map(|q| q.record_fields())
            .unwrap_or_default();
        self.ctx.store.submit(StoreOp::CallEnded {
            id: self.id.clone(),
            ended_at: now_ts(),
            disposition: disposition.as_str().to_string(),
            hangup_cause: cause.to_string(),
            sip_status: sip_status.map(i64::from),
            queue,
            agent,
            wait_ms,
        });
    }
}

/// Datagrams read from the RTP socket per wake-up at most: 25 frames of 20 ms — what a
/// peer that bursts after a stall can send — while a flood cannot hold the call's task.
const RX_BURST: usize = 25;

/// The RFC 3261 timer values of the call's client transactions (those of `sip::build`).
fn client_timers() -> TimerConfig {
    TimerConfig {
        t1: T1,
        t2: T2,
        // Only server transactions send 100 Trying on their own.
        auto_trying: None,
        ..TimerConfig::default()
    }
}

async fn relay_readable(
    r: Option<&Readiness>,
) -> std::io::Result<crate::media::socket::ReadyGuard<'_>> {
    match r {
        Some(r) => r.readable().await,
        None => std::future::pending().await,
    }
}

async fn recv_rtp(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// What every call carries for the 2xx it retransmits and its in-dialog bookkeeping.
    /// Session 15 moved re-INVITE retransmissions to the router's transactions: `InDialog`
    /// lost the re-INVITE's branch (`Option<String>`, 24 bytes plus its heap block once a
    /// call had had a re-INVITE) and `Retransmit` its CSeq.
    #[test]
    fn per_call_retransmission_state_stays_small() {
        let call = std::mem::size_of::<Call>();
        let in_dialog = std::mem::size_of::<in_dialog::InDialog>();
        let retransmit = std::mem::size_of::<Option<Retransmit>>();
        eprintln!("Call {call} B, InDialog {in_dialog} B, Option<Retransmit> {retransmit} B");
        assert!(retransmit <= 72, "{retransmit}");
        assert!(in_dialog <= 320, "{in_dialog}");
    }
}
