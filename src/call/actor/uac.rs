//! Outbound calls: the UAC side of the call actor (RFC 3261 §13.2 INVITE client, §9.1
//! CANCEL, §22.2 answering a digest challenge).
//!
//! The dialer hands an [`OutboundRequest`] to [`run_outbound`]; the actor registers its
//! Call-ID with the router (so answers reach it), sends the INVITE through the trunk, and
//! from the 2xx on runs the very same media + dialplan code as an inbound call. The final
//! result (disposition, SIP status, outcome) goes back on a oneshot channel.
//!
//! The INVITE's client transaction is `sip::transaction::InviteClient`, held in the call's
//! client transaction table (`Call::client_txns`, mod.rs): Timers A/B, the CANCEL (sent as
//! soon as a provisional allows it, §9.1) and its own transaction, the ACK of a non-2xx
//! final and the absorbing of retransmitted answers are the core's. This file keeps the TU
//! decisions: what a provisional, a 2xx, a failure or Timer B means for the call (ring
//! timeout, digest answer, failover, disposition).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{Call, CallInput, Phase};
use crate::call::dialog::{self, Dialog, LocalIdentity};
use crate::call::disposition::{Disposition, HangupCause};
use crate::call::role::{Callback, Role};
use crate::call::router::RouterControl;
use crate::call::slots::CallSlot;
use crate::call::CallContext;
use crate::config::{Route, Trunk, TrunkTransport};
use crate::ivr::expr::Vars;
use crate::sip::auth::DigestClient;
use crate::sip::message::{CSeq, HeaderName, Message, Method, StartLine};
use crate::sip::sdp::{self, SessionDescription};
use crate::sip::transaction::TransactionKey;
use crate::sip::transport::ReplyPath;
use crate::sip::uri::Uri;
use crate::store::now_ts;
use crate::store::ops::StoreOp;

/// What to do when answering-machine detection says a machine answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineHandling {
    /// Hang up; the dialer retries per its `machine` rule.
    Hangup,
    /// Leave the short voicemail message after the greeting, then hang up.
    Voicemail,
}

/// Playlist id of the voicemail message (never used by the interpreter, which counts from 1).
pub(super) const VOICEMAIL_PLAY_ID: u32 = u32::MAX;
/// Playlist id of the silence played while waiting for the machine's beep; its end is the
/// clock's bound on that wait.
pub(super) const VOICEMAIL_WAIT_ID: u32 = u32::MAX - 1;

/// What the dialer asks for.
#[derive(Debug)]
pub struct OutboundRequest {
    /// E.164 number of the customer.
    pub to_number: String,
    pub trunk: Trunk,
    pub caller_id: String,
    pub dialplan: String,
    pub ring_timeout: Duration,
    /// Variables the dialplan sees (ticket.*, campaign.*).
    pub vars: Vars,
    pub ticket_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub result: Option<oneshot::Sender<CallResult>>,
    /// Answering-machine detection and handling; None disables detection.
    pub machine: Option<MachineHandling>,
    /// Request-URI to use instead of `to_number@trunk` (an agent's registered contact).
    pub request_uri: Option<Uri>,
    /// Send on this flow instead of the trunk's transport: the connection an agent
    /// registered over (TCP, TLS, WebSocket), the only way to reach a `.invalid` contact.
    pub flow: Option<ReplyPath>,
    /// A pre-loaded route set (RFC 3261 §8.1.2): the INVITE's `Route` headers, in order —
    /// the Path an agent's phone registered through (RFC 3327), whose first hop is where
    /// `trunk.address` points. The CANCEL and the ACK of a failure copy them
    /// (`sip::transaction`); in the dialog the 2xx's Record-Route decides (§12.1.2).
    pub route: Vec<String>,
    /// Set for an agent leg of a queue call: no records of its own, reports to the caller.
    pub leg: Option<super::queue::LegLink>,
    /// Prepare the call but do not dial (a queue callback dials once an agent answered).
    pub park: bool,
    /// A queue callback: the place in line this call takes over.
    pub callback_for: Option<super::queue::CallbackFor>,
    /// The channel this call holds on `trunk`'s gate (campaign calls); a failover takes
    /// one on the next trunk the same way. None: not gated (callbacks, agent legs).
    pub slot: Option<crate::dialer::gate::TrunkSlot>,
}

impl OutboundRequest {
    /// A call to `to_number` over `trunk`, ringing for `ring_timeout`: no dialplan, no
    /// variables, no records' links, nobody waiting for the result, dialed at once. Callers
    /// set what their kind of call needs with struct update syntax
    /// (`OutboundRequest { leg: Some(..), ..OutboundRequest::new(..) }`).
    pub fn new(
        to_number: String,
        trunk: Trunk,
        caller_id: String,
        ring_timeout: Duration,
    ) -> OutboundRequest {
        OutboundRequest {
            to_number,
            trunk,
            caller_id,
            dialplan: String::new(),
            ring_timeout,
            vars: Vars::new(),
            ticket_id: None,
            campaign_id: None,
            result: None,
            machine: None,
            request_uri: None,
            flow: None,
            route: Vec::new(),
            leg: None,
            park: false,
            callback_for: None,
            slot: None,
        }
    }
}

/// An INVITE not sent yet (a parked callback's, `call::role::Callback`).
#[derive(Debug)]
pub(crate) struct PendingDial {
    request_uri: Uri,
    route: Vec<String>,
    to: String,
    trunk: Trunk,
    ring_timeout: Duration,
    result: Option<oneshot::Sender<CallResult>>,
    caller_id: String,
    slot: Option<crate::dialer::gate::TrunkSlot>,
    failover_flows: Vec<(String, ReplyPath)>,
}

#[cfg(test)]
impl PendingDial {
    /// A dial to `sip:c@` the trunk's address with nothing attached (role tests).
    pub(crate) fn for_test(trunk: Trunk) -> PendingDial {
        let request_uri = Uri::sip(Some("c"), &trunk.address.ip().to_string(), None);
        PendingDial {
            to: format!("<{request_uri}>"),
            request_uri,
            route: Vec::new(),
            trunk,
            ring_timeout: Duration::from_secs(30),
            result: None,
            caller_id: String::new(),
            slot: None,
            failover_flows: Vec::new(),
        }
    }
}

/// How an outbound call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub call_uuid: String,
    pub disposition: Disposition,
    pub sip_status: Option<u16>,
    pub outcome: Option<String>,
    pub answered: bool,
}

#[derive(Debug)]
pub(crate) struct Uac {
    /// The INVITE client transaction in progress (the latest after a digest answer or a
    /// failover): its answers are this call's, an older one's are absorbed by its core.
    invite_key: Option<TransactionKey>,
    cseq: u32,
    ring_deadline: Instant,
    provisional: bool,
    /// Why we withdrew the INVITE: the CANCEL was asked for (the transaction sends it as
    /// soon as a provisional allows, RFC 3261 §9.1).
    cancel_cause: Option<HangupCause>,
    /// The answer to the trunk's 401/407 (shared with `sip::registration`).
    digest: DigestClient,
    trunk: Trunk,
    ack_2xx: Option<Vec<u8>>,
    final_received: bool,
    result: Option<oneshot::Sender<CallResult>>,
    answered: bool,
    ringing_seen: bool,
    ring_timeout: Duration,
    /// The call's caller ID (P-Asserted-Identity when the trunk has `pai`).
    caller_id: String,
    /// Held until the result is reported: the channel on `trunk`'s gate.
    slot: Option<crate::dialer::gate::TrunkSlot>,
    /// Connections to stream (tcp/tls) failover trunks, opened before dialing: the actor
    /// cannot wait for a connect when the first trunk fails.
    failover_flows: Vec<(String, ReplyPath)>,
}

impl Uac {
    /// The client side of `d`'s INVITE, just sent in transaction `invite_key` (CSeq 1).
    pub(crate) fn sent(invite_key: Option<TransactionKey>, now: Instant, d: PendingDial) -> Uac {
        Uac {
            invite_key,
            cseq: 1,
            ring_deadline: now + d.ring_timeout,
            provisional: false,
            cancel_cause: None,
            digest: DigestClient::default(),
            trunk: d.trunk,
            ack_2xx: None,
            final_received: false,
            result: d.result,
            answered: false,
            ringing_seen: false,
            ring_timeout: d.ring_timeout,
            caller_id: d.caller_id,
            slot: d.slot,
            failover_flows: d.failover_flows,
        }
    }

    /// The ring timeout, while it can still fire (the transaction's timers are the
    /// table's). A past deadline that nothing clears would wake the actor in a busy loop.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.final_received && self.cancel_cause.is_none()).then_some(self.ring_deadline)
    }

    pub(crate) fn answered(&self) -> bool {
        self.answered
    }

    /// The INVITE has its outcome (a final answer, or given up).
    pub(crate) fn settled(&self) -> bool {
        self.final_received
    }

    /// Whether `key` is the INVITE transaction in progress.
    pub(super) fn is_invite(&self, key: &TransactionKey) -> bool {
        self.invite_key.as_ref() == Some(key)
    }
}

pub async fn run_outbound(
    ctx: Arc<CallContext>,
    req: OutboundRequest,
    shutdown: CancellationToken,
) {
    let (tx, rx) = mpsc::channel(super::MAILBOX);
    run_outbound_on(ctx, req, tx, rx, shutdown).await
}

/// As [`run_outbound`], on a mailbox the caller created (it can reach the call at once).
pub(super) async fn run_outbound_on(
    ctx: Arc<CallContext>,
    req: OutboundRequest,
    tx: mpsc::Sender<CallInput>,
    mut rx: mpsc::Receiver<CallInput>,
    shutdown: CancellationToken,
) {
    let call_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), ctx.sip_local.ip());
    let span = info_span!("call", call_id = %call_id, direction = "outbound");
    async move {
        // Given back exactly once: by the call when it is over, else when this task ends.
        let slot = ctx.active_calls.acquire();
        if ctx
            .router
            .send(RouterControl::Register {
                call_id: call_id.clone(),
                tx: tx.clone(),
            })
            .await
            .is_ok()
        {
            if let Some((call, rtp)) = Call::start_outbound(
                ctx.clone(),
                slot,
                req,
                call_id.clone(),
                tx,
                shutdown.clone(),
            )
            .await
            {
                call.run(&mut rx, rtp, shutdown).await;
            }
        }
        // Before the mailbox closes (see run_inbound).
        let _ = ctx
            .router
            .send(RouterControl::CallEnded {
                invite: None,
                call_id,
            })
            .await;
        drop(rx);
    }
    .instrument(span)
    .await
}

/// Where an outbound INVITE goes: the agent's own connection when it is still up, else the
/// trunk over its transport (`udp` through the SIP socket, `tcp`/`tls` on a connection we
/// open or reuse).
async fn outbound_flow(ctx: &CallContext, req: &OutboundRequest) -> std::io::Result<ReplyPath> {
    if let Some(f) = req.flow.as_ref().filter(|f| f.is_open()) {
        return Ok(f.clone());
    }
    match req.trunk.transport {
        TrunkTransport::Tcp | TrunkTransport::Tls => ctx.trunk_flows.flow(&req.trunk).await,
        TrunkTransport::Udp => Ok(ReplyPath::Udp {
            socket: ctx.udp.clone(),
            peer: req.trunk.address,
        }),
    }
}

/// An outbound call that could not even be dialed: tell whoever waits for it, and close
/// its record (a queue leg has none of its own: its caller is told instead).
fn fail_before_dial(ctx: &CallContext, req: OutboundRequest, id: String, cause: HangupCause) {
    if let Some(mut link) = req.leg {
        link.reported = true;
        let _ = link
            .caller_tx
            .try_send(CallInput::Leg(super::LegEvent::Failed {
                leg: link.leg,
                agent: link.agent.clone(),
                how: crate::acd::OfferEnd::Failed,
            }));
        return;
    }
    ctx.store.submit(StoreOp::CallEnded {
        id: id.clone(),
        ended_at: now_ts(),
        disposition: Disposition::Failed.as_str().into(),
        hangup_cause: cause.to_string(),
        sip_status: None,
        queue: None,
        agent: None,
        wait_ms: None,
    });
    if let Some(tx) = req.result {
        let _ = tx.send(CallResult {
            call_uuid: id,
            disposition: Disposition::Failed,
            sip_status: None,
            outcome: None,
            answered: false,
        });
    }
}

impl Call {
    async fn start_outbound(
        ctx: Arc<CallContext>,
        slot: CallSlot,
        req: OutboundRequest,
        call_id: String,
        self_tx: mpsc::Sender<CallInput>,
        shutdown: CancellationToken,
    ) -> Option<(Call, Option<Arc<crate::media::socket::MediaSocket>>)> {
        let now = Instant::now();
        let local_addr = ctx.sip_local;
        let id = uuid::Uuid::new_v4().to_string();
        let local_tag = dialog::new_tag();
        let request_uri = req.request_uri.clone().unwrap_or_else(|| {
            Uri::sip(
                Some(&req.to_number),
                &req.trunk.address.ip().to_string(),
                Some(req.trunk.address.port()),
            )
        });
        let is_leg = req.leg.is_some();
        // The trunk's `from_user` (an account some carriers insist on) else the caller ID.
        let from_user = req
            .trunk
            .from_user
            .clone()
            .unwrap_or_else(|| req.caller_id.clone());
        let from = format!("<sip:{from_user}@{}>;tag={local_tag}", local_addr.ip());
        let to = format!("<{request_uri}>");
        if !is_leg {
            ctx.store.submit(StoreOp::CallStarted {
                id: id.clone(),
                sip_call_id: call_id.clone(),
                direction: "outbound".into(),
                from_uri: format!("sip:{from_user}@{}", local_addr.ip()),
                to_uri: request_uri.to_string(),
                caller: Some(req.to_number.clone()),
                dialplan: Some(req.dialplan.clone()),
                campaign_id: req.campaign_id,
                started_at: now_ts(),
                node: Some(ctx.config.node_id.clone()),
            });
            if let Some(t) = req.ticket_id {
                ctx.store.submit(StoreOp::CallTicket {
                    id: id.clone(),
                    ticket_id: t,
                });
            }
        }
        let flow = match outbound_flow(&ctx, &req).await {
            Ok(f) => f,
            Err(e) => {
                warn!(trunk = %req.trunk.name, transport = %req.trunk.transport, error = %e, "cannot reach the trunk");
                fail_before_dial(&ctx, req, id, HangupCause::TransportError);
                return None;
            }
        };
        let local = ctx.local_identity(&flow);
        let failover_flows = if is_leg {
            Vec::new()
        } else {
            stream_failover_flows(&ctx, &req.trunk).await
        };
        let media_ip = ctx.config.media_address;
        let (rtp, rtcp_sock) = match ctx.ports.bind_pair(media_ip).await {
            Ok((rtp, rtcp)) => (Arc::new(rtp), Some(Arc::new(rtcp))),
            Err(e) => {
                warn!(error = %e, "no RTP port for outbound call");
                fail_before_dial(&ctx, req, id, HangupCause::NoRtpPort);
                return None;
            }
        };
        let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        // The dialog-to-be: the 2xx makes it one (`on_uac_2xx`).
        let dialog = Dialog::uac_pending(&call_id, &from, &local_tag, request_uri.clone());
        let route = Route {
            to: req.to_number.clone(),
            dialplan: req.dialplan.clone(),
            ring_ms: 0,
            line: 0,
        };
        let dial = Box::new(PendingDial {
            request_uri: request_uri.clone(),
            route: req.route,
            to,
            trunk: req.trunk,
            ring_timeout: req.ring_timeout,
            result: req.result,
            caller_id: req.caller_id,
            slot: req.slot,
            failover_flows,
        });
        // The role holds what only it needs: an agent leg its caller, a queue callback its
        // INVITE until an agent answered (`park`: the agent is connected first, then the
        // customer is rung), a campaign call its machine handling. (A request for a leg
        // that parks does not exist: a leg is always dialed at once.)
        let (role, dial_now) = match (req.leg, req.park) {
            (Some(link), _) => (Role::AgentLeg(link, None), Some(dial)),
            (None, true) => (Role::Callback(Callback::Parked(dial), None), None),
            (None, false) => (
                Role::Campaign {
                    machine: req.machine,
                    voicemail_language: None,
                    uac: None,
                },
                Some(dial),
            ),
        };
        let mut call = Call::new(super::CallSetup {
            ctx,
            id,
            invite: Message {
                start: StartLine::Request {
                    method: Method::Invite,
                    uri: request_uri.clone(),
                },
                headers: vec![],
                body: Bytes::new(),
            },
            invite_branch: String::new(),
            role,
            flow,
            local,
            local_tag,
            dialog,
            route,
            phase: if dial_now.is_some() {
                Phase::Calling
            } else {
                Phase::Parked
            },
            self_tx,
            slot,
            shutdown,
            caller: req.to_number.clone(),
        });
        call.rtp_port = rtp_port;
        call.ticket_id = req.ticket_id;
        call.preset_vars = req.vars;
        call.rtp_sock = Some(rtp.clone());
        call.rtcp_sock = rtcp_sock;
        if let Some(cb) = &req.callback_for {
            call.queue = Some(super::queue::QueueSession::for_callback(cb, now));
            call.record_event("callback_for", cb.original_call.clone());
        }
        if let Some(dial) = dial_now {
            call.dial(now, *dial);
        }
        Some((call, Some(rtp)))
    }

    /// Send the INVITE (RFC 3261 §13.2.1) in a new client transaction.
    pub(super) fn dial(&mut self, now: Instant, d: PendingDial) {
        let body = self.local_sdp(None);
        let (mut invite, branch) = build_invite(
            &self.local,
            &self.dialog,
            &d.request_uri,
            &d.route,
            &d.to,
            1,
            body,
        );
        add_pai(&mut invite, &d.trunk, &d.caller_id);
        // A browser agent on another node (`acd::peer`): that node's page shows our call.
        if let Some(link) = self
            .role
            .agent_leg()
            .filter(|_| crate::acd::peer::marked_agent(&d.request_uri).is_some())
        {
            invite.push_header(
                crate::sip::message::HeaderName::Other(crate::acd::peer::CALL_HEADER.into()),
                link.call.clone(),
            );
        }
        let invite_key = self.start_client(now, invite.clone());
        info!(trunk = %d.trunk.name, "dialing");
        if self.role.keeps_records() {
            self.ctx.store.submit(StoreOp::CallTrunk {
                id: self.id.clone(),
                trunk: d.trunk.name.clone(),
            });
        }
        self.phase = Phase::Calling;
        self.invite_branch = branch;
        self.invite = invite;
        if self
            .role
            .dialed(Box::new(Uac::sent(invite_key, now, d)))
            .is_err()
        {
            // Only the outbound roles dial (`start_outbound` makes them): unreachable, and
            // were it reached the INVITE's answers would still end the call.
            warn!("an INVITE was sent for a call whose role does not dial");
        }
    }

    /// The first trunk answered 503 or 408, or nothing at all (Timer B): send the INVITE
    /// again through its `failover` trunk (the first of the chain whose gate has room),
    /// as a new transaction of the same call (RFC 3261 §8.1.3.4: an alternate server for a
    /// 503): same Call-ID, From tag and SDP offer, CSeq + 1, new branch, the new trunk's
    /// Request-URI. False when there is none to go to; the caller then ends the call.
    fn try_failover(&mut self, now: Instant, code: u16) -> bool {
        let Some(u) = self.role.uac() else {
            return false;
        };
        // A CANCEL we sent, or one pending for any reason but the ring timeout, ends the
        // call; a ring timeout on a trunk that never even said 100 Trying (Timer B runs
        // longer than most ring timeouts) is no reason not to try the next trunk.
        let withdrawn = u
            .cancel_cause
            .as_ref()
            .is_some_and(|c| *c != HangupCause::RingTimeout || u.provisional);
        if !self.role.may_fail_over() || withdrawn || u.answered {
            return false;
        }
        let ctx = self.ctx.clone();
        let gated = u.slot.is_some();
        let mut seen = vec![u.trunk.name.clone()];
        let mut next = u.trunk.failover.clone();
        while let Some(name) = next {
            if seen.contains(&name) {
                break;
            }
            seen.push(name.clone());
            let Some(t) = ctx.config.trunk(&name).cloned() else {
                break;
            };
            next = t.failover.clone();
            let flow = match t.transport {
                TrunkTransport::Tcp | TrunkTransport::Tls => {
                    match u.failover_flows.iter().find(|(n, _)| *n == t.name) {
                        Some((_, f)) if f.is_open() => f.clone(),
                        _ => continue,
                    }
                }
                _ => ReplyPath::Udp {
                    socket: ctx.udp.clone(),
                    peer: t.address,
                },
            };
            // The next trunk's own max_channels/max_cps: a full one is skipped.
            let slot = if gated {
                match ctx.trunk_gates.try_take(&t.name, now) {
                    Some(s) => Some(s),
                    None => continue,
                }
            } else {
                None
            };
            self.redial_on(now, t, flow, slot, code);
            return true;
        }
        false
    }

    fn redial_on(
        &mut self,
        now: Instant,
        trunk: Trunk,
        flow: ReplyPath,
        slot: Option<crate::dialer::gate::TrunkSlot>,
        code: u16,
    ) {
        let Some(old) = self.role.uac().map(|u| u.trunk.name.clone()) else {
            return;
        };
        info!(from = %old, to = %trunk.name, code, "failing over to the next trunk");
        self.record_event("failover", format!("{old}>{} {code}", trunk.name));
        self.flow = flow;
        self.local = self.ctx.local_identity(&self.flow);
        let request_uri = Uri::sip(
            Some(&self.caller),
            &trunk.address.ip().to_string(),
            Some(trunk.address.port()),
        );
        let to = format!("<{request_uri}>");
        let Some((cseq, caller_id)) = self.role.uac().map(|u| (u.cseq + 1, u.caller_id.clone()))
        else {
            return;
        };
        // The same offer: the INVITE last sent is the call's (`self.invite`).
        let body = String::from_utf8_lossy(&self.invite.body).into_owned();
        // A trunk has no pre-loaded route (agent legs, which may, never fail over).
        let (mut invite, branch) = build_invite(
            &self.local,
            &self.dialog,
            &request_uri,
            &[],
            &to,
            cseq,
            body,
        );
        add_pai(&mut invite, &trunk, &caller_id);
        // A new transaction on the new trunk's flow; the old one ends on its own timers.
        let invite_key = self.start_client(now, invite.clone());
        self.ctx.store.submit(StoreOp::CallTrunk {
            id: self.id.clone(),
            trunk: trunk.name.clone(),
        });
        self.invite_branch = branch;
        self.invite = invite;
        if let Some(u) = self.role.uac_mut() {
            u.invite_key = invite_key;
            u.cseq = cseq;
            u.ring_deadline = now + u.ring_timeout;
            u.provisional = false;
            u.digest = DigestClient::default();
            u.trunk = trunk;
            // The first trunk's channel goes back as the next one's is taken.
            u.slot = slot;
            u.final_received = false;
            u.ringing_seen = false;
            u.cancel_cause = None;
        }
    }

    /// The ring timeout (the TU's): no final answer in time withdraws the INVITE.
    pub(super) fn drive_uac(&mut self, now: Instant) {
        let ring_expired = self.role.uac().is_some_and(|u| {
            !u.final_received && u.cancel_cause.is_none() && now >= u.ring_deadline
        });
        if ring_expired && self.phase == Phase::Calling {
            self.cancel_outbound(now, HangupCause::RingTimeout);
        }
    }

    /// The INVITE transaction gave up (Timer B): no answer at all from the trunk, or no
    /// final answer within 64·T1 of our CANCEL (RFC 3261 §9.1).
    pub(super) fn on_uac_timeout(&mut self, now: Instant) {
        let Some(u) = self.role.uac() else { return };
        if u.final_received {
            return;
        }
        // The CANCEL went out once a provisional arrived (`cancel_outbound`).
        if u.cancel_cause.is_some() && u.provisional {
            self.finish_outbound(487, Disposition::NoAnswer, HangupCause::CancelTimeout);
            return;
        }
        info!("no answer from the trunk (Timer B)");
        if !self.try_failover(now, 408) {
            self.finish_outbound(408, Disposition::Failed, HangupCause::TrunkTimeout);
        }
    }

    /// Give up on an outbound call that has not been answered. The transaction sends the
    /// CANCEL at once after a provisional, else as soon as one arrives (RFC 3261 §9.1).
    pub(super) fn cancel_outbound(&mut self, now: Instant, cause: HangupCause) {
        let Some(u) = self.role.uac_mut() else { return };
        if u.final_received || u.cancel_cause.is_some() {
            return;
        }
        u.cancel_cause = Some(cause);
        if let (Some(key), Some(t)) = (u.invite_key.clone(), self.client_txns.as_mut()) {
            if let Err(e) = t.cancel(&key, now) {
                debug!(error = %e, "no CANCEL: the INVITE transaction is over");
            }
        }
    }

    fn finish_outbound(&mut self, code: u16, disposition: Disposition, cause: HangupCause) {
        if let Some(u) = self.role.uac_mut() {
            u.final_received = true;
        }
        self.phase = Phase::Done;
        self.media = None;
        self.record_end(disposition, cause, Some(code));
    }

    /// A response of the INVITE transaction in progress, or of its CANCEL.
    pub(super) fn on_uac_response(&mut self, now: Instant, code: u16, msg: &Message, cseq: &CSeq) {
        let Some(u) = self.role.uac_mut() else { return };
        if cseq.method == Method::Cancel {
            // The INVITE's own final answer (487, or a 2xx that crossed it) decides; its
            // 64·T1 give-up is the INVITE transaction's Timer B.
            return;
        }
        if code < 200 {
            u.provisional = true;
            if (code == 180 || code == 183) && !u.ringing_seen {
                u.ringing_seen = true;
                self.record_event("progress", code.to_string());
            }
            return;
        }
        if (200..300).contains(&code) {
            self.on_uac_2xx(now, msg);
            return;
        }
        // A final failure (the transaction ACKed it, §17.1.1.3).
        if u.final_received {
            return;
        }
        // A 401/407 from the trunk: answered with its credentials (RFC 3261 §22.2), once
        // (again only for a stale nonce).
        if let (Some(user), Some(pass)) = (u.trunk.username.clone(), u.trunk.password.clone()) {
            if u.digest.on_response(msg) == Some(Ok(())) && self.retry_with_auth(now, &user, &pass)
            {
                return;
            }
        }
        // Only "this trunk cannot take it now" fails over; 486, 404, 487, ... are the
        // customer's or the number's answer and would be the same on any trunk.
        if matches!(code, 503 | 408) && self.try_failover(now, code) {
            return;
        }
        let cause = match self.role.uac().and_then(|u| u.cancel_cause.clone()) {
            Some(c) if code == 487 => c,
            _ => HangupCause::Sip(code),
        };
        let disposition = if code == 487 && cause != HangupCause::RingTimeout {
            Disposition::Cancelled
        } else {
            Disposition::for_sip_failure(code)
        };
        info!(
            code,
            disposition = disposition.as_str(),
            "outbound call not answered"
        );
        self.finish_outbound(code, disposition, cause);
    }

    /// Send the INVITE again, in a new transaction, with the answer to the challenge the
    /// digest client kept. False when it cannot be answered (the call then fails with the
    /// challenge's status).
    fn retry_with_auth(&mut self, now: Instant, user: &str, pass: &str) -> bool {
        let uri = match &self.invite.start {
            StartLine::Request { uri, .. } => uri.clone(),
            StartLine::Response { .. } => return false,
        };
        let Some(u) = self.role.uac_mut() else {
            return false;
        };
        let Some((name, value)) = u.digest.authorize("INVITE", uri.as_str(), user, pass) else {
            return false;
        };
        let cseq = u.cseq + 1;
        let mut invite = self.invite.clone();
        let branch = dialog::new_branch();
        invite.set_header(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.local.transport.via_name(),
                self.local.via_host
            ),
        );
        invite.set_header(HeaderName::CSeq, format!("{cseq} INVITE"));
        invite.headers.retain(|h| !h.name.matches(&name));
        invite.push_header(name, value);
        let invite_key = self.start_client(now, invite.clone());
        if let Some(u) = self.role.uac_mut() {
            u.invite_key = invite_key;
            u.cseq = cseq;
            u.provisional = false;
        }
        self.invite_branch = branch;
        self.invite = invite;
        debug!("answered the trunk's digest challenge");
        true
    }

    fn on_uac_2xx(&mut self, now: Instant, msg: &Message) {
        let Some(u) = self.role.uac_mut() else { return };
        if let Some(ack) = &u.ack_2xx {
            // Retransmitted 2xx: our ACK was lost (§13.2.2.4).
            self.flow.send(ack.clone());
            return;
        }
        u.final_received = true;
        u.answered = true;
        let cseq = u.cseq;
        let cancelled = u.cancel_cause.clone();
        // The INVITE this 2xx answers is the last one sent (`self.invite`: failover and
        // digest answers replace it): together they form the dialog (RFC 3261 §12.1.2).
        match Dialog::uac(&self.invite, msg) {
            Ok(d) => self.dialog = d,
            Err(e) => warn!(error = %e, "the 2xx forms no proper dialog; keeping our INVITE's"),
        }
        let ack = self.dialog.ack(cseq, &self.local);
        let ack_bytes = ack.to_bytes();
        self.flow.send(ack_bytes.clone());
        if let Some(u) = self.role.uac_mut() {
            u.ack_2xx = Some(ack_bytes);
        }
        self.phase = Phase::Answered;
        self.ctx.store.submit(StoreOp::CallAnswered {
            id: self.id.clone(),
            at: now_ts(),
        });
        if let Some(cause) = cancelled {
            // 200 crossed our CANCEL: the call exists, so end it properly (§9.1).
            self.hangup(now, cause);
            return;
        }
        // The answer to our offer: the answerer's first common codec is what it sends.
        let neg = SessionDescription::parse(&msg.body)
            .and_then(|sd| sdp::negotiate_answer(&sd, &self.ctx.config.codecs));
        match neg {
            Ok(n) => {
                info!(codec = ?n.codec, "answered");
                self.offer = Some(n);
                self.start_media(now, &n);
                if self.role.machine().is_some() {
                    if let Some(m) = self.media.as_mut() {
                        m.start_amd(&crate::media::amd::AmdConfig::default());
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "unusable SDP answer");
                self.hangup(now, HangupCause::IncompatibleMedia);
            }
        }
    }

    /// Tell the dialer how the call ended (once).
    pub(super) fn report_result(&mut self, disposition: Disposition, sip_status: Option<u16>) {
        let outcome = self.outcome.clone();
        let id = self.id.clone();
        if let Some(u) = self.role.uac_mut() {
            // The call is over for the trunk: its channel is free for the next dial.
            u.slot = None;
            if let Some(tx) = u.result.take() {
                let _ = tx.send(CallResult {
                    call_uuid: id,
                    disposition,
                    sip_status,
                    outcome,
                    answered: u.answered,
                });
            }
        }
    }
}

/// `P-Asserted-Identity` (RFC 3325) with the caller ID, for a trunk with `pai = true`:
/// the carrier trusts us to assert who calls, whatever From says.
fn add_pai(invite: &mut Message, trunk: &Trunk, caller_id: &str) {
    if trunk.pai && !caller_id.is_empty() {
        invite.push_header(
            HeaderName::Other("P-Asserted-Identity".into()),
            format!("<sip:{caller_id}@{}>", trunk.host),
        );
    }
}

/// Connections to the stream (tcp/tls) trunks of `trunk`'s failover chain, opened now
/// (or reused) so a failover can send at once; a trunk that cannot be reached is left out
/// (the failover skips it).
async fn stream_failover_flows(ctx: &CallContext, trunk: &Trunk) -> Vec<(String, ReplyPath)> {
    let mut out = Vec::new();
    let mut seen = vec![trunk.name.clone()];
    let mut next = trunk.failover.clone();
    while let Some(name) = next {
        if seen.contains(&name) {
            break;
        }
        seen.push(name.clone());
        let Some(t) = ctx.config.trunk(&name) else {
            break;
        };
        next = t.failover.clone();
        if t.transport.is_stream() {
            match ctx.trunk_flows.flow(t).await {
                Ok(f) => out.push((name, f)),
                Err(e) => debug!(trunk = %name, error = %e, "failover trunk unreachable"),
            }
        }
    }
    out
}

/// An INVITE of this call: a new branch, our identity and the dialog's From and Call-ID,
/// `route` (a pre-loaded route set, RFC 3261 §8.1.2) as Route headers in order, `uri` as
/// Request-URI. Returns it and its branch.
fn build_invite(
    local: &LocalIdentity,
    dialog: &Dialog,
    uri: &Uri,
    route: &[String],
    to: &str,
    cseq: u32,
    body: String,
) -> (Message, String) {
    let branch = dialog::new_branch();
    let mut m = Message {
        start: StartLine::Request {
            method: Method::Invite,
            uri: uri.clone(),
        },
        headers: Vec::with_capacity(12 + route.len()),
        body: Bytes::from(body),
    };
    m.push_header(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            local.transport.via_name(),
            local.via_host
        ),
    );
    m.push_header(HeaderName::MaxForwards, "70");
    for r in route {
        m.push_header(HeaderName::Route, r.clone());
    }
    m.push_header(HeaderName::From, dialog.local_party().to_string());
    m.push_header(HeaderName::To, to.to_string());
    m.push_header(HeaderName::CallId, dialog.call_id().to_string());
    m.push_header(HeaderName::CSeq, format!("{cseq} INVITE"));
    m.push_header(HeaderName::Contact, local.contact.clone());
    m.push_header(HeaderName::Allow, dialog::ALLOW);
    m.push_header(HeaderName::UserAgent, local.user_agent.clone());
    m.push_header(HeaderName::ContentType, "application/sdp");
    (m, branch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;
    use crate::sip::transaction::{build_ack, build_cancel};

    fn local() -> LocalIdentity {
        LocalIdentity {
            contact: "<sip:switchboard@127.0.0.11:5060>".into(),
            via_host: "127.0.0.11:5060".into(),
            transport: crate::sip::transport::TransportKind::Udp,
            user_agent: "switchboard-test".into(),
        }
    }

    /// An agent leg with a path (RFC 3327): Request-URI the contact, Route the path in order
    /// — and the CANCEL and the ACK of a failure carry the same Route (RFC 3261 §9.1,
    /// §17.1.1.3), so the edge relays them along the INVITE's way.
    #[test]
    fn the_route_set_goes_into_the_invite_its_cancel_and_its_ack() {
        let contact = Uri::parse("sip:alice@192.168.1.5:5090").expect("uri");
        let dialog = Dialog::uac_pending(
            "c1@127.0.0.11",
            "<sip:+15551230001@127.0.0.11>;tag=t1",
            "t1",
            contact.clone(),
        );
        let route = vec![
            "<sip:127.0.0.10:5070;lr;received=sip:192.0.2.7:40000>".to_string(),
            "<sip:10.0.0.9;lr>".to_string(),
        ];
        let (invite, branch) = build_invite(
            &local(),
            &dialog,
            &contact,
            &route,
            "<sip:alice@192.168.1.5:5090>",
            1,
            String::new(),
        );
        // What goes on the wire parses back the same.
        let invite = Message::parse(&invite.to_bytes(), Framing::Datagram).expect("parses");
        assert_eq!(invite.request_uri(), Some(&contact));
        let routes: Vec<&str> = invite.header_values(&HeaderName::Route).collect();
        assert_eq!(routes, route);
        assert!(invite.top_via().expect("via").branch() == Some(branch.as_str()));
        let cancel = build_cancel(&invite);
        let routes: Vec<&str> = cancel.header_values(&HeaderName::Route).collect();
        assert_eq!(routes, route);
        let busy = Message::parse(
            b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=x\r\n\
              From: <sip:+15551230001@127.0.0.11>;tag=t1\r\nTo: <sip:alice@192.168.1.5:5090>;tag=p\r\n\
              Call-ID: c1@127.0.0.11\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            Framing::Datagram,
        )
        .expect("parses");
        let ack = build_ack(&invite, &busy);
        let routes: Vec<&str> = ack.header_values(&HeaderName::Route).collect();
        assert_eq!(routes, route);
    }

    /// Without a route set an INVITE has no Route header, as always.
    #[test]
    fn no_route_set_no_route_header() {
        let uri = Uri::parse("sip:+15551230001@203.0.113.5:5060").expect("uri");
        let dialog = Dialog::uac_pending("c2", "<sip:x@127.0.0.11>;tag=t", "t", uri.clone());
        let (invite, _) = build_invite(&local(), &dialog, &uri, &[], "<sip:x@y>", 1, String::new());
        assert_eq!(invite.header(&HeaderName::Route), None);
    }
}
