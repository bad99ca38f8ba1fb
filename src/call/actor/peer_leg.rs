//! Node A's side of the inter-node leg to a browser agent (docs/adr/0011, "As built"):
//! another node (B) holds a caller and rings our browser agent with a marked INVITE
//! (`acd::peer`). This call is that INVITE's UAS, with [`Role::PeerBrowser`].
//!
//! It rings the agent's page with the browser-leg machinery (`browser_leg.rs`), acting as
//! that leg's caller: the page answers → we answer B with 200 and bridge B's RTP with the
//! browser leg exactly as a caller is bridged today (PCMU passes through); the page rejects
//! or rings out → 486 / 480; B's CANCEL or BYE stops the leg; the page hangs up → BYE.
//! The call writes no records: B's call record, events and disposition tell the story.
//!
//! The page's controls act on B's call, so we ask B for them as a SIP agent phone would:
//! hold → a re-INVITE offering `sendonly`, resume → `sendrecv` (`in_dialog.rs`: the same
//! client transaction, 491 back-off and ACK as our session refreshes), and B plays its music
//! on hold to the caller; transfer → a REFER naming the queue or agent at B
//! (`acd::peer::refer_to`), B answers 202 and NOTIFY (answered 200 here), re-queues its
//! caller and ends the leg with BYE, and the browser leg ends as "transferred". A refused
//! or unanswered REFER is logged and the browser leg told (`LegControl::TransferRefused`):
//! the call goes on. The pad's DTMF needs nothing here: the browser leg's RFC 4733 events
//! go through our relay and B's like the audio.
//!
//! The decisions (marker, peer check, admission, status codes) are `acd::peer`'s; here
//! only the wiring.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::queue::{AnsweredLeg, LegControl, LegEvent, LegLink};
use super::{Call, CallInput, Phase};
use crate::acd::peer;
use crate::call::disposition::{Disposition, HangupCause};
use crate::call::role::Role;
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::sdp::Negotiated;
use crate::sip::transaction::TransactionKey;
use crate::webrtc::phones::TransferTarget;

/// How long A lets the page ring at most: B ends the ring (CANCEL) at its queue's ring
/// timeout; this only keeps a leg whose CANCEL was lost from ringing forever.
const RING_LIMIT: Duration = Duration::from_secs(300);

/// What a peer browser leg keeps (its [`Role::PeerBrowser`]).
#[derive(Debug)]
pub(crate) struct PeerLeg {
    /// The router's server transaction of B's INVITE (as an inbound call's).
    pub(crate) invite_key: Option<TransactionKey>,
    agent: String,
    /// B's call, as its ACD knows it: the page's call id.
    call: String,
    /// The browser leg's mailbox, once it rings.
    leg_tx: Option<mpsc::Sender<CallInput>>,
    /// The page answered; bridged when our media starts.
    answered: Option<Box<AnsweredLeg>>,
    /// Our REFER to B (the page's blind transfer) waiting for its final answer.
    refer: Option<TransactionKey>,
}

impl Call {
    /// At start: a marked INVITE becomes a peer leg. None: an ordinary inbound call, which
    /// goes on as before; `Some(true)`: accepted (answer 180, then [`Self::peer_leg_ring`]);
    /// `Some(false)`: refused (`acd::peer::admit`), the call is done.
    pub(super) async fn peer_leg_start(&mut self) -> Option<bool> {
        let agent = self
            .invite
            .request_uri()
            .and_then(peer::marked_agent)?
            .to_string();
        let call = self
            .invite
            .header_named(peer::CALL_HEADER)
            .map(|c| c.trim().to_string());
        let source = self.flow.peer();
        let peer_ok = match crate::store::nodes::list(&self.ctx.db).await {
            Ok(nodes) => Some(peer::is_peer(source, &nodes, &self.ctx.config.node_id)),
            Err(e) => {
                warn!(error = %e, "cannot read the cluster's nodes for a browser leg");
                None
            }
        };
        let phone_on = self.ctx.phones.is_on(&agent);
        let invite_key = match &self.role {
            Role::Inbound { invite_key } => invite_key.clone(),
            _ => None,
        };
        self.role = Role::PeerBrowser(Box::new(PeerLeg {
            invite_key,
            agent: agent.clone(),
            call: call.clone().unwrap_or_default(),
            leg_tx: None,
            answered: None,
            refer: None,
        }));
        if let Err(r) = peer::admit(peer_ok, call.as_deref(), phone_on) {
            info!(%agent, %source, code = r.code, reason = r.reason, "browser leg from another node refused");
            self.refuse(
                r.code,
                r.reason,
                HangupCause::Sip(r.code),
                Disposition::Failed,
            );
            return Some(false);
        }
        info!(%agent, %source, call = call.as_deref().unwrap_or(""), "browser leg for another node's caller");
        Some(true)
    }

    /// Ring the page (the INVITE was accepted and answered 180): we answer when it does.
    pub(super) fn peer_leg_ring(&mut self, now: Instant) {
        let prefer = self.offer.map(|n| n.codec);
        let self_tx = self.self_tx.clone();
        let Role::PeerBrowser(p) = &mut self.role else {
            return;
        };
        let (tx, rx) = mpsc::channel(super::MAILBOX);
        p.leg_tx = Some(tx.clone());
        let link = LegLink {
            leg: 0,
            agent: p.agent.clone(),
            caller_tx: self_tx,
            reported: false,
            prefer,
            call: p.call.clone(),
        };
        let call = p.call.clone();
        // Not answered on a timer: the page answers (`peer_leg_event`).
        self.phase = Phase::Ringing {
            answer_at: now + RING_LIMIT + Duration::from_secs(60),
        };
        self.ctx.tracker.spawn(super::browser_leg::run(
            self.ctx.clone(),
            link,
            call,
            RING_LIMIT,
            tx,
            rx,
            self.shutdown.clone(),
        ));
    }

    /// What the browser leg reports.
    pub(super) fn peer_leg_event(&mut self, now: Instant, event: LegEvent) {
        match event {
            LegEvent::Answered(a) => {
                let ringing = matches!(self.phase, Phase::Ringing { .. });
                let Role::PeerBrowser(p) = &mut self.role else {
                    return;
                };
                if !ringing {
                    let _ = a.tx.try_send(CallInput::LegControl(LegControl::Stop));
                    return;
                }
                info!(agent = %p.agent, "page answered: answering the caller's node");
                p.answered = Some(a);
                // Media starts in `answer` (or on the ACK): then the bridge (`peer_leg_media`).
                self.answer(now);
            }
            LegEvent::Failed { how, .. } => {
                if matches!(self.phase, Phase::Ringing { .. }) {
                    let (code, reason) = peer::failure_status(how);
                    let cause = match how {
                        crate::acd::OfferEnd::Busy => HangupCause::Sip(code),
                        crate::acd::OfferEnd::NoAnswer => HangupCause::RingTimeout,
                        _ => HangupCause::AgentLost,
                    };
                    self.refuse(code, reason, cause, Disposition::Failed);
                }
            }
            LegEvent::Ended { lost, .. } => {
                let cause = if lost {
                    HangupCause::AgentLost
                } else {
                    HangupCause::AgentHangup
                };
                self.hangup(now, cause);
            }
            LegEvent::Hold { on, .. } => self.peer_leg_hold(now, on),
            LegEvent::Transfer { target, .. } => self.peer_leg_refer(now, &target),
        }
    }

    /// The page holds B's caller (or resumes): B is asked with a re-INVITE (`hold_peer`),
    /// and plays its music on hold to the caller and relays nothing to us meanwhile. Our
    /// bridge pauses with it (as a caller's does for its agent's hold): no relay, and no
    /// media timeout for the silence; the relay counts from now again on resume.
    fn peer_leg_hold(&mut self, now: Instant, on: bool) {
        if self.phase != Phase::Answered || self.relay.is_none() || on == self.held {
            return;
        }
        self.held = on;
        if !on {
            if let Some(r) = self.relay.as_mut() {
                r.touch(now);
            }
        }
        info!(on, "browser agent hold: asking the caller's node");
        self.hold_peer(on);
    }

    /// The page's blind transfer: a REFER to B naming the target at B (`peer::refer_to`),
    /// in a client transaction of its own; its answer comes to [`Self::peer_leg_refer_answer`].
    fn peer_leg_refer(&mut self, now: Instant, target: &TransferTarget) {
        let pending = matches!(&self.role, Role::PeerBrowser(p) if p.refer.is_some());
        if pending {
            info!(%target, "a transfer is already asked of the caller's node");
            return;
        }
        if self.phase != Phase::Answered {
            self.peer_leg_transfer_refused();
            return;
        }
        let name = match target {
            TransferTarget::Queue(n) | TransferTarget::Agent(n) => n,
        };
        let refer_to = peer::refer_to(name, self.dialog.remote_target());
        let mut req = self.dialog.request(Method::Refer, &self.local);
        req.push_header(HeaderName::Contact, self.local.contact.clone());
        req.push_header(HeaderName::Other("Refer-To".into()), refer_to.clone());
        let key = self.start_client(now, req);
        let Role::PeerBrowser(p) = &mut self.role else {
            return;
        };
        match key {
            Some(key) => {
                info!(%target, %refer_to, "browser agent transfer: REFER to the caller's node");
                p.refer = Some(key);
            }
            None => self.peer_leg_transfer_refused(),
        }
    }

    /// A response to a client transaction (`Some(code)`) or its timeout (None): true when it
    /// was our REFER's. 2xx: B takes the transfer and ends the leg with BYE. A failure or no
    /// answer: the call goes on, and the browser leg is told.
    pub(super) fn peer_leg_refer_answer(
        &mut self,
        key: &TransactionKey,
        code: Option<u16>,
    ) -> bool {
        let Role::PeerBrowser(p) = &mut self.role else {
            return false;
        };
        if p.refer.as_ref() != Some(key) {
            return false;
        }
        if code.is_some_and(|c| c < 200) {
            return true;
        }
        p.refer = None;
        if code.is_some_and(|c| c < 300) {
            info!(?code, "the caller's node took the transfer");
        } else {
            warn!(
                ?code,
                "the caller's node refused the transfer (or never answered); the call goes on"
            );
            self.peer_leg_transfer_refused();
        }
        true
    }

    /// B's NOTIFY of the transfer (RFC 3515 §2.4.4): answered 200. A failure in its sipfrag
    /// means the transfer did not happen after all.
    pub(super) fn peer_leg_notify(&self, msg: &Message) {
        let to_tag = msg
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if to_tag.as_deref() != Some(self.local_tag.as_str()) {
            self.reply(msg, 481, "Call/Transaction Does Not Exist");
            return;
        }
        self.reply(msg, 200, "OK");
        let code = peer::sipfrag_status(&msg.body);
        info!(?code, "the caller's node reports on the transfer");
        if code.is_some_and(|c| c >= 300) {
            self.peer_leg_transfer_refused();
        }
    }

    fn peer_leg_transfer_refused(&self) {
        if let Role::PeerBrowser(p) = &self.role {
            if let Some(tx) = &p.leg_tx {
                let _ = tx.try_send(CallInput::LegControl(LegControl::TransferRefused));
            }
        }
    }

    /// Our media would start (answered, ACKed when under overload): bridge B's RTP with the
    /// browser leg instead. True when this call is a peer leg (nothing else to start).
    pub(super) fn peer_leg_media(&mut self, now: Instant, n: &Negotiated) -> bool {
        let Role::PeerBrowser(p) = &mut self.role else {
            return false;
        };
        let Some(answered) = p.answered.take() else {
            return true;
        };
        self.bridge(now, *answered, super::queue::leg_media(n), n.remote);
        true
    }

    /// The call ends (any way): the page stops ringing or its call ends.
    pub(super) fn peer_leg_end(&mut self) {
        if let Role::PeerBrowser(p) = &mut self.role {
            if let Some(tx) = p.leg_tx.take() {
                let _ = tx.try_send(CallInput::LegControl(LegControl::Stop));
            }
            if let Some(a) = p.answered.take() {
                let _ = a.tx.try_send(CallInput::LegControl(LegControl::Stop));
            }
        }
    }
}
