//! Queue calls in the call actor: the caller's side (join the ACD, music on hold, ring the
//! agents the ACD offers, bridge the first that answers) and the agent leg's side (an
//! outbound INVITE to the agent's phone that reports to the caller and relays media).
//!
//! The caller's actor decides which agent leg wins: it receives every leg's answer on one
//! mailbox, in order, so a second 200 (ring-all, or a 200 crossing our CANCEL) is simply told
//! to hang up — a call is never connected to two agents. The ACD decides which call an agent
//! gets, so an agent is never offered two calls. Every end path (caller hangs up, agent hangs
//! up, either side fails) goes through `record_end`, which tells the ACD exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Call, CallInput, Phase};
use crate::acd::{AcdEvent, AcdMsg, OfferEnd};
use crate::call::disposition::{Disposition, HangupCause};
use crate::config::Trunk;
use crate::ivr::interpreter::Interpreter;
use crate::media::bridge::{Direction, LegMedia, Relay, RelayCounters};
use crate::media::player::PlayItem;
use crate::registrar::Reachable;
use crate::sip::transport::ReplyPath;
use crate::sip::uri::Uri;
use crate::webrtc::phones::TransferTarget;

/// Routes `*1`, `*2`, `*3` to this pseudo-dialplan (see [`feature_route`]).
pub(super) const FEATURE_PREFIX: &str = "_feature:";
const FEATURE_ID: u32 = u32::MAX - 5;

/// Agent feature codes dialled from a registered phone: `*1` log in, `*2` log out, `*3`
/// pause / unpause. Only configured routes take precedence.
pub fn feature_route(user: &str) -> Option<crate::config::Route> {
    let code = match user {
        "*1" => "login",
        "*2" => "logout",
        "*3" => "pause",
        _ => return None,
    };
    Some(crate::config::Route {
        to: user.to_string(),
        dialplan: format!("{FEATURE_PREFIX}{code}"),
        ring_ms: 0,
        line: 0,
    })
}

/// Playlist ids of music on hold and the callback prompts (never used by the interpreter).
pub(super) const MOH_PLAY_ID: u32 = u32::MAX - 1;
const CALLBACK_OFFER_ID: u32 = u32::MAX - 2;
const CALLBACK_CONFIRM_ID: u32 = u32::MAX - 3;
const ANNOUNCE_ID: u32 = u32::MAX - 4;

/// A callback call's place in line: the queue and the ACD key of the original caller.
#[derive(Debug, Clone)]
pub struct CallbackFor {
    pub(super) queue: String,
    pub(super) acd_key: String,
    pub(super) original_call: String,
}

/// An agent leg whose phone answered.
#[derive(Debug)]
pub struct AnsweredLeg {
    pub(super) leg: u64,
    pub(super) agent: String,
    pub(super) media: LegMedia,
    pub(super) remote: SocketAddr,
    pub(super) socket: Arc<crate::media::socket::MediaSocket>,
    /// The leg's own mailbox, so even an unexpected answer can be hung up.
    pub(super) tx: mpsc::Sender<CallInput>,
}

/// From an agent leg to its caller's actor.
#[derive(Debug)]
pub enum LegEvent {
    Answered(Box<AnsweredLeg>),
    /// The agent asked for a blind transfer (a phone's REFER, the page's Transfer) to a
    /// queue or another agent.
    Transfer {
        leg: u64,
        target: TransferTarget,
    },
    /// The agent's phone put the call on hold (`on`) or took it off, and where it now
    /// receives RTP.
    Hold {
        leg: u64,
        on: bool,
        remote: SocketAddr,
    },
    /// The leg ended before being bridged (no answer, busy, failed, cancelled).
    Failed {
        leg: u64,
        agent: String,
        how: OfferEnd,
    },
    /// The leg ended after answering (the agent hung up, or we did). `lost`: the agent's
    /// side vanished without hanging up (a browser whose page and media went away, or whose
    /// ICE consent expired): the record says `agent_lost` instead of `agent_hangup`.
    Ended {
        leg: u64,
        agent: String,
        lost: bool,
    },
}

/// From the caller's actor to an agent leg.
#[derive(Debug)]
pub enum LegControl {
    /// You won: relay what the agent sends to the caller from the caller's socket.
    Bridge {
        socket: Arc<crate::media::socket::MediaSocket>,
        dest: SocketAddr,
        agent: LegMedia,
        caller: LegMedia,
        counters: Arc<RelayCounters>,
        recorder: Option<crate::media::recorder::Recorder>,
    },
    /// Stop: CANCEL if ringing, BYE if answered.
    Stop,
    /// The caller's side moved its media (re-INVITE): relay to this address from now on.
    CallerMoved { dest: SocketAddr },
    /// The transfer this leg asked for did not happen (the caller's node refused or never
    /// answered A's REFER, `peer_leg.rs`): the call goes on with this leg.
    TransferRefused,
}

/// What an agent leg knows about the call it serves (its `call::role::Role::AgentLeg`).
#[derive(Debug)]
pub struct LegLink {
    pub(crate) leg: u64,
    pub(crate) agent: String,
    pub(crate) caller_tx: mpsc::Sender<CallInput>,
    pub(crate) reported: bool,
    /// The caller's negotiated codec: offered first to the agent's phone, so that the
    /// bridge usually passes payloads through instead of transcoding.
    pub(crate) prefer: Option<crate::media::codec::Codec>,
    /// The caller's call as the ACD knows it: sent to a node that rings a browser agent
    /// for us (`acd::peer::CALL_HEADER`), whose page shows and disposes of this call.
    pub(crate) call: String,
}

#[derive(Debug)]
struct LegHandle {
    id: u64,
    tx: mpsc::Sender<CallInput>,
    done: bool,
}

/// The caller's membership of a queue.
#[derive(Debug)]
pub(super) struct QueueSession {
    queue: String,
    /// The ACD's key for this place in line: the caller's call id (kept by a callback).
    acd_key: String,
    joined: Instant,
    /// When the caller is offered a callback (press 1), if the queue offers them.
    callback_at: Option<Instant>,
    callback_offered: bool,
    /// Next position / estimated-wait announcement, and how often.
    announce_at: Option<Instant>,
    announce_every: Option<Duration>,

    legs: Vec<LegHandle>,
    next_leg: u64,
    connected: Option<(u64, String)>,
    wait_ms: Option<i64>,
    counters: Option<Arc<RelayCounters>>,
    /// The ACD was told this call is over (left, or ended after connecting).
    told_acd: bool,
    /// The dialplan, kept while the caller talks to the agent when its `enqueue` step has
    /// `after_agent` (e.g. a survey): resumed there if the agent hangs up first.
    after_agent: Option<Box<Interpreter>>,
}

impl QueueSession {
    /// The place in line a callback call takes over (its caller has hung up).
    pub(super) fn for_callback(cb: &CallbackFor, now: Instant) -> QueueSession {
        QueueSession {
            queue: cb.queue.clone(),
            acd_key: cb.acd_key.clone(),
            joined: now,
            callback_at: None,
            callback_offered: true,
            announce_at: None,
            announce_every: None,
            legs: Vec::new(),
            next_leg: 1,
            connected: None,
            wait_ms: None,
            counters: None,
            told_acd: false,
            after_agent: None,
        }
    }

    pub(super) fn record_fields(&self) -> (Option<String>, Option<String>, Option<i64>) {
        (
            Some(self.queue.clone()),
            self.connected.as_ref().map(|(_, a)| a.clone()),
            self.wait_ms,
        )
    }
}

pub(super) fn leg_media(n: &crate::sip::sdp::Negotiated) -> LegMedia {
    LegMedia {
        codec: n.codec,
        payload_type: n.payload_type,
        telephone_event: n.telephone_event,
    }
}

/// Where an agent's INVITE goes: its Request-URI (the registered contact), the address it
/// is sent to, the connection to send it on (if any) and its pre-loaded route set.
#[derive(Debug)]
struct AgentTarget {
    uri: Uri,
    dest: SocketAddr,
    flow: Option<ReplyPath>,
    /// The binding's Path: the INVITE's Route headers (RFC 3327 §5.3, RFC 3261 §8.1.2).
    route: Vec<String>,
}

/// Where to send an agent's INVITE.
///
/// A binding with a Path (the phone registered through the edge, ADR 0008) is reached
/// through it: Route = the path, sent to the first Route's address (loose routing) — on the
/// connection the REGISTER came in on when that is still open and leads there, else over
/// UDP; the edge relays it to the phone on the flow it registered on. Any node can do this
/// with a binding read from the database, as the path names the edge, not the node.
///
/// Without a path: the connection its REGISTER came on while it is up (TCP, TLS, WebSocket:
/// RFC 5626 flow reuse, the only way to a `.invalid` WebSocket contact), the address it came
/// from over UDP (right behind NAT), else the Contact's host and port over UDP.
fn destination(r: &Reachable) -> Option<AgentTarget> {
    let uri = Uri::parse(r.contact.trim_matches(|c| c == '<' || c == '>')).ok()?;
    let hop = match crate::sip::path::first_hop(&r.path) {
        Ok(hop) => hop,
        Err(e) => {
            debug!(contact = %r.contact, error = %e, "agent's path unusable: contact skipped");
            return None;
        }
    };
    if let Some(hop) = hop {
        let open = r
            .flow
            .as_ref()
            .filter(|f| matches!(f, ReplyPath::Stream { .. }) && f.is_open());
        let flow = match open {
            Some(f) if f.peer() == hop.addr && f.kind() == hop.transport => Some(f.clone()),
            // Connecting to the edge from here is not done (no outbound TCP/TLS to a
            // phone's proxy): the edge is reached over UDP, as it relays REGISTERs.
            _ if hop.transport != crate::sip::transport::TransportKind::Udp => {
                debug!(contact = %r.contact, "agent's path needs a connection that is not open: skipped");
                return None;
            }
            _ => None,
        };
        return Some(AgentTarget {
            uri,
            dest: hop.addr,
            flow,
            route: r.path.clone(),
        });
    }
    let direct = |dest, flow| AgentTarget {
        uri: uri.clone(),
        dest,
        flow,
        route: Vec::new(),
    };
    match &r.flow {
        Some(ReplyPath::Udp { peer, .. }) => return Some(direct(*peer, None)),
        Some(f @ ReplyPath::Stream { peer, .. }) if f.is_open() => {
            return Some(direct(*peer, Some(f.clone())))
        }
        Some(f) if f.kind().connection_only() => return None,
        _ => {}
    }
    // Only an address: a name would need a DNS lookup, which blocks (std's resolver) on the
    // call's task. Phones put their address in Contact; a binding without a flow is one
    // restored from the database after a restart, and its phone re-registers within its
    // expiry anyway.
    let port = uri.port.unwrap_or(5060);
    let host = uri.host.as_str().trim_matches(|c| c == '[' || c == ']');
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        debug!(contact = %r.contact, "agent contact is a host name and no connection is open: skipped");
        return None;
    };
    Some(direct(SocketAddr::new(ip, port), None))
}

impl Call {
    // ---- caller side -------------------------------------------------------------------

    /// The dialplan's `enqueue` step.
    pub(super) fn enqueue(&mut self, now: Instant, queue: String) {
        let settings = self.ctx.config.queue(&queue).cloned();
        let (Some(settings), true, true) = (
            settings,
            self.ctx.acd.has_queue(&queue),
            self.media.is_some() && self.phase == Phase::Answered,
        ) else {
            self.record_event("enqueue", format!("{queue}=unavailable"));
            self.queue_unavailable(now, "unknown_queue");
            return;
        };
        let vars = self
            .interp
            .as_ref()
            .map(|i| i.vars().clone())
            .unwrap_or_default();
        let segment = vars
            .get("ticket.segment")
            .cloned()
            .filter(|s| !s.is_empty());
        let mut needs = Vec::new();
        if settings.language_skill {
            let lang = vars.get("language").cloned().unwrap_or_else(|| "en".into());
            needs.push((format!("lang:{lang}"), 1));
        }
        let announce_every = settings.announce_every_s.map(Duration::from_secs);
        let callback_at = settings
            .callback_after_s
            .filter(|_| self.callback_trunk().is_some())
            .map(|s| now + Duration::from_secs(s));
        self.queue = Some(QueueSession {
            queue: queue.clone(),
            acd_key: self.id.clone(),
            joined: now,
            callback_at,
            callback_offered: false,
            announce_at: announce_every.map(|d| now + d),
            announce_every,
            legs: Vec::new(),
            next_leg: 1,
            connected: None,
            wait_ms: None,
            counters: None,
            told_acd: false,
            after_agent: None,
        });
        self.record_event("enqueue", queue.clone());
        self.play_moh();
        if segment.is_none() {
            // Not identified yet (e.g. "0" straight from the main menu, or a transferred
            // caller whose dialplan is over): look the ticket up first (by the linked ticket,
            // else by number), so a VIP gets its priority and the screen pop its ticket.
            self.pending_join = Some(needs);
            let db = self.ctx.db.clone();
            let tx = self.self_tx.clone();
            let number = self.caller.clone();
            let linked = self.ticket_id;
            let budget = self.ctx.lookup_budget();
            self.ctx.tracker.spawn(async move {
                // Bounded like the dialplan's lookups: an outage must not keep the caller
                // out of the line.
                let found = crate::store::tickets::within(budget, async {
                    match linked {
                        Some(id) => crate::store::tickets::by_id(&db, id).await,
                        None => crate::store::tickets::by_phone(&db, &number).await,
                    }
                })
                .await;
                let ticket = found.unwrap_or_else(|e| {
                    warn!(error = %e, "caller lookup for the queue failed; joining unidentified");
                    None
                });
                let _ = tx.send(CallInput::QueueIdentified(ticket)).await;
            });
            return;
        }
        self.send_join(segment, needs);
    }

    fn send_join(&mut self, segment: Option<String>, needs: Vec<(String, i64)>) {
        let Some(q) = self.queue.as_ref() else { return };
        self.acd_send(AcdMsg::Join {
            call: self.id.clone(), // a new place in line: keyed by this call
            queue: q.queue.clone(),
            segment,
            needs,
            caller: self.caller.clone(),
            ticket_id: self.ticket_id,
            tx: self.self_tx.clone().into(),
        });
    }

    /// The caller's number was looked up for the queue: join with what it told us.
    pub(super) fn queue_identified(
        &mut self,
        ticket: Option<std::collections::HashMap<String, String>>,
    ) {
        let Some(needs) = self.pending_join.take() else {
            return;
        };
        if self.queue.as_ref().is_none_or(|q| q.told_acd) || self.phase != Phase::Answered {
            return;
        }
        let mut segment = None;
        if let Some(t) = &ticket {
            if let Some(id) = t.get("id").and_then(|s| s.parse::<i64>().ok()) {
                self.ticket_id = Some(id);
                self.ctx
                    .store
                    .submit(crate::store::ops::StoreOp::CallTicket {
                        id: self.id.clone(),
                        ticket_id: id,
                    });
            }
            segment = t.get("segment").cloned().filter(|s| !s.is_empty());
        }
        self.send_join(segment, needs);
    }

    /// Back to the dialplan: the step's `on_unavailable` (variable `queue_status` says why).
    fn queue_unavailable(&mut self, now: Instant, reason: &str) {
        if let Some(m) = self.media.as_mut() {
            m.stop_playback();
        }
        if self.interp.is_none() {
            // No dialplan to go back to (a transferred caller): end the call.
            self.hangup(now, HangupCause::Queue(reason.to_string()));
            return;
        }
        if let Some(i) = self.interp.as_mut() {
            i.set_var("queue_status", reason);
            i.handle_enqueue_unavailable(now);
        }
        self.drain_interpreter(now);
    }

    pub(super) fn on_acd(&mut self, now: Instant, event: AcdEvent) {
        match event {
            AcdEvent::Queued { position } => {
                self.record_event("queue_position", position.to_string());
            }
            AcdEvent::Position { position, ewt_s } => self.announce(now, position, ewt_s),
            AcdEvent::Unavailable { reason } => {
                let Some(q) = self.queue.as_mut() else { return };
                if q.connected.is_some() {
                    return;
                }
                if self.phase == Phase::Parked {
                    // A callback that lost its place (should not happen: callbacks have no
                    // maximum wait) must not stay parked forever.
                    q.told_acd = true;
                    self.hangup(now, HangupCause::Callback(reason.to_string()));
                    return;
                }
                q.told_acd = true;
                for l in q.legs.iter().filter(|l| !l.done) {
                    let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
                }
                self.queue = None;
                self.record_event("queue_leave", reason.clone());
                self.queue_unavailable(now, &reason);
            }
            AcdEvent::Offer {
                agent,
                contacts,
                browser,
                ring_timeout,
            } => self.offer_agent(agent, contacts, browser, ring_timeout),
        }
    }

    /// Ring an agent the ACD chose: in its browser page when its browser phone is on (where
    /// it chose to take calls), else at its first reachable SIP contact.
    fn offer_agent(
        &mut self,
        agent: String,
        contacts: Vec<Reachable>,
        browser: bool,
        ring_timeout: Duration,
    ) {
        let usable = matches!(self.phase, Phase::Answered | Phase::Parked)
            && self
                .queue
                .as_ref()
                .is_some_and(|q| q.connected.is_none() && !q.told_acd);
        if usable && browser {
            self.offer_browser(agent, ring_timeout);
            return;
        }
        let target = contacts.iter().find_map(destination);
        let (true, Some(target)) = (usable, target) else {
            debug!(%agent, usable, "offer refused by the call");
            self.acd_send(AcdMsg::OfferEnded {
                call: self.acd_key(),
                agent,
                how: if usable {
                    OfferEnd::Failed
                } else {
                    OfferEnd::Cancelled
                },
            });
            return;
        };
        let AgentTarget {
            uri,
            dest,
            flow,
            route,
        } = target;
        let to_number = uri.user.clone().unwrap_or_else(|| agent.clone());
        let trunk = Trunk::peer(format!("agent:{agent}"), dest);
        let Some((link, tx, rx)) = self.new_leg(agent) else {
            return;
        };
        let req = super::OutboundRequest {
            ticket_id: self.ticket_id,
            request_uri: Some(uri),
            flow,
            route,
            leg: Some(link),
            ..super::OutboundRequest::new(to_number, trunk, self.caller.clone(), ring_timeout)
        };
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.clone();
        self.ctx
            .tracker
            .spawn(super::uac::run_outbound_on(ctx, req, tx, rx, shutdown));
    }

    /// A new agent leg of this caller's queue session: registered among its legs (and in
    /// the `agent_offer` event), with the link it reports through and its mailbox.
    fn new_leg(
        &mut self,
        agent: String,
    ) -> Option<(LegLink, mpsc::Sender<CallInput>, mpsc::Receiver<CallInput>)> {
        let call = self.acd_key();
        let q = self.queue.as_mut()?;
        let leg = q.next_leg;
        q.next_leg += 1;
        let (tx, rx) = mpsc::channel(super::MAILBOX);
        q.legs.push(LegHandle {
            id: leg,
            tx: tx.clone(),
            done: false,
        });
        self.record_event("agent_offer", agent.clone());
        let link = LegLink {
            leg,
            agent,
            caller_tx: self.self_tx.clone(),
            reported: false,
            prefer: self.offer.map(|n| n.codec),
            call,
        };
        Some((link, tx, rx))
    }

    /// Ring the agent's `/agent` page (`browser_leg.rs`): an agent leg like a SIP one.
    fn offer_browser(&mut self, agent: String, ring_timeout: Duration) {
        let call = self.acd_key();
        let Some((link, tx, rx)) = self.new_leg(agent) else {
            return;
        };
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.clone();
        self.ctx.tracker.spawn(super::browser_leg::run(
            ctx,
            link,
            call,
            ring_timeout,
            tx,
            rx,
            shutdown,
        ));
    }

    pub(super) fn on_leg_event(&mut self, now: Instant, event: LegEvent) {
        if self.role.is_peer_browser() {
            self.peer_leg_event(now, event);
            return;
        }
        match event {
            LegEvent::Answered(a) => self.on_leg_answered(now, *a),
            LegEvent::Hold { leg, on, remote } => self.agent_hold(now, leg, on, remote),
            LegEvent::Transfer {
                leg,
                target: TransferTarget::Queue(queue),
            } => self.transfer_to_queue(now, leg, queue),
            LegEvent::Transfer {
                leg,
                target: TransferTarget::Agent(agent),
            } => self.transfer_to_agent(now, leg, agent),
            LegEvent::Failed { leg, agent, how } => {
                let Some(q) = self.queue.as_mut() else { return };
                if let Some(l) = q.legs.iter_mut().find(|l| l.id == leg) {
                    l.done = true;
                }
                if !q.told_acd {
                    let key = q.acd_key.clone();
                    self.acd_send(AcdMsg::OfferEnded {
                        call: key,
                        agent: agent.clone(),
                        how,
                    });
                }
                if how != OfferEnd::Cancelled {
                    self.record_event("agent_missed", format!("{agent}:{}", how.as_str()));
                }
            }
            LegEvent::Ended { leg, agent, lost } => {
                let Some(q) = self.queue.as_mut() else { return };
                if let Some(l) = q.legs.iter_mut().find(|l| l.id == leg) {
                    l.done = true;
                }
                if q.connected.as_ref().is_some_and(|(id, _)| *id == leg) && !q.told_acd {
                    q.told_acd = true;
                    let key = q.acd_key.clone();
                    self.acd_send(AcdMsg::CallEnded {
                        call: key,
                        by: "agent".into(),
                    });
                    if lost {
                        info!(%agent, "agent's side lost");
                        self.hangup(now, HangupCause::AgentLost);
                    } else {
                        info!(%agent, "agent hung up");
                        self.after_agent_or_hangup(now);
                    }
                }
            }
        }
    }

    fn on_leg_answered(&mut self, now: Instant, answered: AnsweredLeg) {
        let leg = answered.leg;
        let agent = answered.agent.clone();
        let Some(q) = self.queue.as_mut() else {
            debug!(%agent, leg, "answer after the caller left the queue: hanging it up");
            let _ = answered
                .tx
                .try_send(CallInput::LegControl(LegControl::Stop));
            return;
        };
        let live = match self.phase {
            Phase::Answered => self.media.is_some() && self.rtp_sock.is_some(),
            // A parked callback has no customer yet: the agent is connected first.
            Phase::Parked => self.role.callback().is_some_and(|c| c.is_parked()),
            _ => false,
        };
        if q.connected.is_some() || q.told_acd || !live {
            // Second 200 (ring-all race, or crossing our CANCEL): that leg hangs up.
            debug!(%agent, "late answer from an agent leg: hanging it up");
            let _ = answered
                .tx
                .try_send(CallInput::LegControl(LegControl::Stop));
            if !q.told_acd {
                let key = q.acd_key.clone();
                self.acd_send(AcdMsg::OfferEnded {
                    call: key,
                    agent,
                    how: OfferEnd::Cancelled,
                });
            }
            return;
        }
        let wait_ms = now.duration_since(q.joined).as_millis() as i64;
        q.connected = Some((leg, agent.clone()));
        q.wait_ms = Some(wait_ms);
        for l in q.legs.iter().filter(|l| l.id != leg && !l.done) {
            let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
        }
        let key = q.acd_key.clone();
        self.acd_send(AcdMsg::Connected {
            call: key,
            agent: agent.clone(),
        });
        self.record_event("agent_connect", agent.clone());
        info!(%agent, wait_ms, "connected to agent");
        if self.phase == Phase::Parked {
            // Callback: now ring the customer; the bridge is made when they answer.
            let dial = self
                .role
                .callback_mut()
                .and_then(|c| c.agent_answered(Box::new(answered)));
            if let Some(d) = dial {
                self.dial(now, *d);
            }
            return;
        }
        let (Some(caller_media), Some(caller_dest)) = (
            self.offer.as_ref().map(leg_media),
            self.media.as_ref().map(|m| m.destination()),
        ) else {
            return;
        };
        self.bridge(now, answered, caller_media, caller_dest);
        if self.outcome.is_none() {
            // The customer's choice was to talk to a person (campaign "0", hotline "0").
            self.outcome = Some("agent".into());
            self.record_event("outcome", "agent".into());
            self.ctx.store.submit(crate::store::ops::StoreOp::Outcome {
                call_id: self.id.clone(),
                ticket_id: self.ticket_id,
                choice: "agent".into(),
                at: crate::store::now_ts(),
            });
        }
    }

    /// Relay media between this call and the agent's leg, both ways.
    pub(super) fn bridge(
        &mut self,
        now: Instant,
        agent: AnsweredLeg,
        caller_media: LegMedia,
        caller_dest: SocketAddr,
    ) {
        let Some(own_socket) = self.rtp_sock.clone() else {
            return;
        };
        let counters = Arc::new(RelayCounters::default());
        if let Some(q) = self.queue.as_mut() {
            q.counters = Some(counters.clone());
        }
        let recorder = self.start_recording(now);
        let bridged = agent.tx.try_send(CallInput::LegControl(LegControl::Bridge {
            socket: own_socket,
            dest: caller_dest,
            agent: agent.media,
            caller: caller_media,
            counters: counters.clone(),
            recorder: recorder.clone(),
        }));
        if bridged.is_err() {
            warn!(agent = %agent.agent, "agent leg vanished at bridge time");
        }
        let mut relay = Relay::new(
            now,
            caller_media,
            agent.media,
            agent.remote,
            Direction::CallerToAgent,
            counters,
        );
        if let Some(r) = recorder {
            relay.record(r);
        }
        self.relay = Some(relay);
        self.relay_out = Some(agent.socket);
        self.relay_caller_dest = Some(caller_dest);
        // The call now belongs to the agent: no more prompts, music or dialplan — unless the
        // dialplan goes on after the agent (`after_agent`), which waits here until then.
        self.media = None;
        let resume = self.interp.take().filter(|i| i.continues_after_agent());
        // A transferred caller's dialplan was kept at its first bridge: keep it.
        if let (Some(q), Some(r)) = (self.queue.as_mut(), resume) {
            q.after_agent = Some(Box::new(r));
        }
    }

    /// The agent hung up first: back to the dialplan's `after_agent` step (a survey, say) on
    /// the caller's own media, or end the call as before when there is none.
    fn after_agent_or_hangup(&mut self, now: Instant) {
        let resume = self.queue.as_mut().and_then(|q| q.after_agent.take());
        let (Some(mut interp), Some(n), Phase::Answered) = (resume, self.offer, self.phase) else {
            self.hangup(now, HangupCause::AgentHangup);
            return;
        };
        self.relay = None;
        self.relay_out = None;
        self.held = false;
        match self.media.as_mut() {
            // On hold: the music stops, the same session goes on.
            Some(m) => m.stop_playback(),
            None => {
                let dest = self.relay_caller_dest.unwrap_or(n.remote);
                let params = self.media_params(&n, dest);
                self.media = Some(crate::media::session::MediaSession::new(now, params));
            }
        }
        self.record_event("after_agent", String::new());
        interp.handle_agent_hangup(now);
        self.interp = Some(*interp);
        self.drain_interpreter(now);
    }

    /// The queue and the agent of this call, for its survey row.
    pub(super) fn survey_context(&self) -> (Option<String>, Option<String>) {
        self.queue.as_ref().map_or((None, None), |q| {
            (
                Some(q.queue.clone()),
                q.connected.as_ref().map(|(_, agent)| agent.clone()),
            )
        })
    }

    /// Start recording this bridge when the queue records (stereo: caller left, agent
    /// right). A recording that cannot start is logged; the call goes on unrecorded.
    fn start_recording(&mut self, now: Instant) -> Option<crate::media::recorder::Recorder> {
        let queue = self.queue.as_ref()?.queue.clone();
        if !self.ctx.config.queue(&queue).is_some_and(|s| s.record) {
            return None;
        }
        // A transferred caller is bridged again: each bridge gets its own file.
        self.bridges_recorded += 1;
        let name = match self.bridges_recorded {
            1 => format!("{}.wav", self.id),
            n => format!("{}-{n}.wav", self.id),
        };
        let path = self.ctx.config.recordings_dir.join(name);
        match crate::media::recorder::Recorder::start(&path, now) {
            Ok(r) => {
                let shown = path.display().to_string();
                self.record_event("recording", shown.clone());
                self.ctx
                    .store
                    .submit(crate::store::ops::StoreOp::CallRecording {
                        id: self.id.clone(),
                        path: shown.clone(),
                    });
                self.recording_path = Some(shown);
                self.recording = Some(r.clone());
                Some(r)
            }
            Err(e) => {
                warn!(error = %e, "cannot record this call");
                None
            }
        }
    }

    /// Callback: the customer answered (the agent is already on the line).
    pub(super) fn callback_answered(&mut self, now: Instant, n: &crate::sip::sdp::Negotiated) {
        let Some(agent) = self.role.callback_mut().and_then(|c| c.customer_answered()) else {
            return;
        };
        info!(agent = %agent.agent, "callback: customer answered; bridging");
        self.record_event("callback_answered", agent.agent.clone());
        self.bridge(now, *agent, leg_media(n), n.remote);
    }

    /// The trunk used to call customers back (`callback_trunk`, else the first trunk).
    fn callback_trunk(&self) -> Option<Trunk> {
        let cfg = &self.ctx.config;
        let name = self
            .queue
            .as_ref()
            .and_then(|q| cfg.queue(&q.queue))
            .and_then(|s| s.callback_trunk.clone());
        match name {
            Some(n) => cfg.trunk(&n).cloned(),
            None => cfg.trunks.first().cloned(),
        }
    }

    fn acd_key(&self) -> String {
        self.queue
            .as_ref()
            .map_or_else(|| self.id.clone(), |q| q.acd_key.clone())
    }

    /// The earliest queue timer (callback offer), for the actor's sleep.
    pub(super) fn queue_deadline(&self) -> Option<Instant> {
        let q = self.queue.as_ref()?;
        if q.connected.is_some() || q.told_acd || self.phase != Phase::Answered {
            return None;
        }
        let callback = q.callback_at.filter(|_| !q.callback_offered);
        match (callback, q.announce_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time-driven queue work: offer the callback once the caller has waited long enough.
    pub(super) fn drive_queue(&mut self, now: Instant) {
        if self.queue_deadline().is_none_or(|t| now < t) {
            return;
        }
        let announce_due = self
            .queue
            .as_ref()
            .and_then(|q| q.announce_at)
            .is_some_and(|t| now >= t);
        if announce_due {
            if let Some(q) = self.queue.as_mut() {
                // The next one is scheduled when this one has been said (or skipped).
                q.announce_at = None;
                let key = q.acd_key.clone();
                self.acd_send(AcdMsg::Position { call: key });
            }
        }
        let callback_due = self
            .queue
            .as_ref()
            .is_some_and(|q| !q.callback_offered && q.callback_at.is_some_and(|t| now >= t));
        if !callback_due {
            return;
        }
        let prompt = self.prompt_in_language("callback-offer");
        if let Some(q) = self.queue.as_mut() {
            q.callback_offered = true;
        }
        if let (Some(p), Some(m)) = (prompt, self.media.as_mut()) {
            m.play(CALLBACK_OFFER_ID, vec![PlayItem::Prompt(p)], false);
        }
        self.record_event("callback_offer", String::new());
    }

    /// A digit while waiting in a queue: `1` after the callback offer asks for a callback.
    /// Returns true when the digit was taken.
    pub(super) fn queue_digit(&mut self, now: Instant, d: char) -> bool {
        let Some(q) = self.queue.as_ref() else {
            return false;
        };
        if self.role.is_agent_leg() || q.connected.is_some() || q.told_acd {
            return false;
        }
        let ringing = q.legs.iter().any(|l| !l.done);
        if d == '1' && q.callback_offered && !ringing && self.phase == Phase::Answered {
            self.convert_to_callback(now);
        }
        true
    }

    /// Keep the caller's place in line for a callback call, confirm, and hang up.
    fn convert_to_callback(&mut self, now: Instant) {
        let Some(trunk) = self.callback_trunk() else {
            return;
        };
        let Some(q) = self.queue.as_mut() else { return };
        let queue = q.queue.clone();
        let key = q.acd_key.clone();
        // The place in line now belongs to the callback call: this call leaves quietly.
        q.told_acd = true;
        let (tx, rx) = mpsc::channel(super::MAILBOX);
        let ring_timeout = self
            .ctx
            .config
            .queue(&queue)
            .map_or(Duration::from_secs(30), |s| {
                s.acd.ring_timeout.max(Duration::from_secs(20))
            });
        let caller_id = trunk
            .caller_id
            .clone()
            .unwrap_or_else(|| self.route.to.clone());
        let req = super::OutboundRequest {
            ticket_id: self.ticket_id,
            park: true,
            callback_for: Some(CallbackFor {
                queue: queue.clone(),
                acd_key: key.clone(),
                original_call: self.id.clone(),
            }),
            ..super::OutboundRequest::new(self.caller.clone(), trunk, caller_id, ring_timeout)
        };
        self.acd_send(AcdMsg::Callback {
            call: key,
            tx: tx.clone().into(),
        });
        self.ctx.tracker.spawn(super::uac::run_outbound_on(
            self.ctx.clone(),
            req,
            tx,
            rx,
            self.shutdown.clone(),
        ));
        self.outcome = Some("callback".into());
        self.record_event("outcome", "callback".into());
        self.ctx.store.submit(crate::store::ops::StoreOp::Outcome {
            call_id: self.id.clone(),
            ticket_id: self.ticket_id,
            choice: "callback".into(),
            at: crate::store::now_ts(),
        });
        info!(%queue, "caller chose a callback; keeping the place in line");
        self.interp = None;
        let prompt = self.prompt_in_language("callback-confirmed");
        match (prompt, self.media.as_mut()) {
            (Some(p), Some(m)) => m.play(CALLBACK_CONFIRM_ID, vec![PlayItem::Prompt(p)], false),
            _ => self.hangup(now, HangupCause::CallbackRequested),
        }
    }

    /// "You are caller number N. Your estimated waiting time is M minutes." over the music,
    /// unless something else is being said or an agent is ringing.
    fn announce(&mut self, now: Instant, position: usize, ewt_s: u64) {
        let Some(q) = self.queue.as_mut() else { return };
        let ringing = q.legs.iter().any(|l| !l.done);
        if q.connected.is_some() || q.told_acd {
            return;
        }
        let busy = self
            .media
            .as_ref()
            .is_none_or(|m| m.is_playing() && m.current_playlist() != Some(MOH_PLAY_ID));
        if busy || ringing {
            // Something else is being said (or an agent rings): try again in a moment.
            q.announce_at = Some(now + Duration::from_secs(1));
            return;
        }
        let lang = self.preset_language();
        let minutes = ewt_s.div_ceil(60).max(1);
        let mut names: Vec<String> = vec!["your-position".into()];
        // "您在队列中排第二位": a rank (二), where the minutes below are a count (两分钟).
        names.extend(crate::ivr::say::say_rank(position as u64, &lang));
        names.push("in-queue".into());
        names.push("estimated-wait".into());
        names.extend(crate::ivr::say::say(
            crate::ivr::say::SayKind::Number,
            &minutes.to_string(),
            &lang,
        ));
        names.push(if minutes == 1 { "minute" } else { "minutes" }.into());
        let lib = &self.ctx.prompts;
        let items: Vec<PlayItem> = names
            .iter()
            .filter_map(|n| lib.get(&lang, n).or_else(|| lib.get("en", n)))
            .map(|p| PlayItem::Prompt(p.clone()))
            .collect();
        if items.is_empty() {
            return;
        }
        if let Some(m) = self.media.as_mut() {
            m.play(ANNOUNCE_ID, items, false);
        }
        self.record_event(
            "queue_announce",
            format!("position={position} ewt_s={ewt_s}"),
        );
    }

    /// Playlists this module started: true when `id` was one of them.
    pub(super) fn queue_playback_finished(&mut self, now: Instant, id: u32) -> bool {
        match id {
            CALLBACK_OFFER_ID => {
                // The offer may have cut an announcement short: keep announcing.
                if let Some(q) = self.queue.as_mut() {
                    if q.announce_at.is_none() {
                        q.announce_at = q.announce_every.map(|d| now + d);
                    }
                }
                self.resume_moh();
                true
            }
            ANNOUNCE_ID => {
                if let Some(q) = self.queue.as_mut() {
                    q.announce_at = q.announce_every.map(|d| now + d);
                }
                self.resume_moh();
                true
            }
            CALLBACK_CONFIRM_ID => {
                self.hangup(now, HangupCause::CallbackRequested);
                true
            }
            FEATURE_ID => {
                self.hangup(now, HangupCause::FeatureCode);
                true
            }
            MOH_PLAY_ID => true,
            _ => false,
        }
    }

    fn resume_moh(&mut self) {
        let waiting = self
            .queue
            .as_ref()
            .is_some_and(|q| q.connected.is_none() && !q.told_acd);
        if waiting {
            self.play_moh();
        }
    }

    /// Loop the queue's music on hold on this call's media session.
    fn play_moh(&mut self) {
        let Some(q) = self.queue.as_ref() else { return };
        let moh = self
            .ctx
            .config
            .queue(&q.queue)
            .map(|s| s.music_on_hold.clone())
            .and_then(|name| {
                self.ctx
                    .prompts
                    .get(crate::media::prompts::MOH_LANG, &name)
                    .cloned()
            });
        if let (Some(moh), Some(m)) = (moh, self.media.as_mut()) {
            m.play(MOH_PLAY_ID, vec![PlayItem::Prompt(moh)], true);
        }
    }

    /// Called once from `record_end`: tell the ACD and the legs this call is over.
    pub(super) fn leave_queue(&mut self) {
        let Some(q) = self.queue.as_mut() else { return };
        for l in q.legs.iter().filter(|l| !l.done) {
            let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
        }
        if !q.told_acd {
            q.told_acd = true;
            let msg = if q.connected.is_some() {
                let by = if self.role.callback().is_some_and(|c| c.awaiting_customer()) {
                    "callback_unanswered"
                } else {
                    "caller"
                };
                AcdMsg::CallEnded {
                    call: q.acd_key.clone(),
                    by: by.into(),
                }
            } else {
                AcdMsg::Leave {
                    call: q.acd_key.clone(),
                    reason: "caller_hangup".into(),
                }
            };
            super::acd_send_or_keep(&self.ctx, &mut self.acd_outbox, msg);
        }
        let counts = q.counters.as_ref().map(|c| {
            format!(
                "caller_to_agent={} agent_to_caller={}",
                c.caller_to_agent.load(std::sync::atomic::Ordering::Relaxed),
                c.agent_to_caller.load(std::sync::atomic::Ordering::Relaxed)
            )
        });
        if let Some(c) = counts {
            self.record_event("bridge_packets", c);
        }
        if let Some(r) = self.recording.take() {
            self.record_event("recording_stats", r.summary());
        }
    }

    // ---- agent-leg side ----------------------------------------------------------------

    /// The agent's phone answered (negotiated media ready): tell the caller.
    pub(super) fn leg_answered(&mut self, now: Instant, n: &crate::sip::sdp::Negotiated) {
        let Some(link) = self.role.agent_leg() else {
            return;
        };
        let Some(socket) = self.rtp_sock.clone() else {
            self.hangup(now, HangupCause::NoRtpSocket);
            return;
        };
        let sent = link
            .caller_tx
            .try_send(CallInput::Leg(LegEvent::Answered(Box::new(AnsweredLeg {
                leg: link.leg,
                agent: link.agent.clone(),
                media: leg_media(n),
                remote: n.remote,
                socket,
                tx: self.self_tx.clone(),
            }))));
        if sent.is_err() {
            info!("caller gone before the agent answered; hanging up");
            self.hangup(now, HangupCause::CallerGone);
        }
    }

    pub(super) fn on_leg_control(&mut self, now: Instant, c: LegControl) {
        match c {
            LegControl::Bridge {
                socket,
                dest,
                agent,
                caller,
                counters,
                recorder,
            } => {
                if self.phase != Phase::Answered {
                    return;
                }
                let mut relay =
                    Relay::new(now, agent, caller, dest, Direction::AgentToCaller, counters);
                if let Some(r) = recorder {
                    relay.record(r);
                }
                self.relay = Some(relay);
                self.relay_out = Some(socket);
            }
            LegControl::CallerMoved { dest } => {
                if let Some(r) = self.relay.as_mut() {
                    r.set_dest(dest);
                }
            }
            // Only a browser leg asks another node for a transfer.
            LegControl::TransferRefused => {}
            LegControl::Stop => match self.phase {
                Phase::Calling => self.cancel_outbound(now, HangupCause::Cancelled),
                Phase::Answered => self.hangup(now, HangupCause::CallerGone),
                _ => {}
            },
        }
    }

    /// A re-INVITE on a bridged leg: hold/unhold and new addresses reach the other side.
    pub(super) fn bridged_reinvite(&mut self, _now: Instant, n: &crate::sip::sdp::Negotiated) {
        let on_hold = n.is_on_hold() || n.remote.ip().is_unspecified();
        if let Some(link) = self.role.agent_leg() {
            // The agent's phone: hold means the caller hears music until it resumes.
            if self.held && !on_hold {
                if let Some(r) = self.relay.as_mut() {
                    r.touch(_now);
                }
            }
            self.held = on_hold;
            let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Hold {
                leg: link.leg,
                on: on_hold,
                remote: n.remote,
            }));
            return;
        }
        // The caller's phone moved (or held): the agent leg relays to the new address.
        if let Some(q) = self.queue.as_ref() {
            if let Some((leg, _)) = &q.connected {
                if let Some(l) = q.legs.iter().find(|l| l.id == *leg) {
                    let _ =
                        l.tx.try_send(CallInput::LegControl(LegControl::CallerMoved {
                            dest: n.remote,
                        }));
                }
            }
        }
    }

    /// A feature code call was answered: ask the ACD (which checks that this call comes
    /// from the address the agent's phone registered from), then say the result.
    pub(super) fn feature_code(&mut self, code: &str) {
        let agent = self
            .invite
            .from_header()
            .ok()
            .and_then(|f| f.uri.user.clone())
            .unwrap_or_default();
        let command = match code {
            "login" => crate::acd::FeatureCommand::Login,
            "logout" => crate::acd::FeatureCommand::Logout,
            _ => crate::acd::FeatureCommand::TogglePause,
        };
        let source = self.flow.peer();
        let acd = self.ctx.acd.clone();
        let tx = self.self_tx.clone();
        self.record_event("feature_code", format!("{agent}:{code}"));
        self.ctx.tracker.spawn(async move {
            let prompt = acd
                .feature(&agent, source, command)
                .await
                .map_or("agent-not-allowed", crate::acd::FeatureOutcome::prompt);
            let _ = tx.send(CallInput::FeatureDone(prompt)).await;
        });
    }

    pub(super) fn feature_done(&mut self, prompt: &'static str) {
        self.record_event("feature_result", prompt.to_string());
        let items = match self.prompt_in_language(prompt) {
            Some(p) => vec![PlayItem::Prompt(p)],
            None => vec![PlayItem::Silence(0)],
        };
        if let Some(m) = self.media.as_mut() {
            m.play(FEATURE_ID, items, false);
        }
    }

    /// REFER (RFC 3515) in a dialog. Only an agent's phone may transfer, and only to a
    /// configured queue or another agent (`sip:NAME@…`, a queue's name first): a customer
    /// (or anyone on a trunk) transferring calls through us would be toll fraud. Accepted:
    /// 202, a NOTIFY with `SIP/2.0 200 OK` (the transfer is ours to complete), and the
    /// caller is queued again (for the named agent first); the agent's leg is then ended.
    /// Refused: 404 for an unknown target, 403 for the agent itself.
    pub(super) fn on_refer(&mut self, now: Instant, msg: &crate::sip::message::Message) {
        use crate::sip::message::HeaderName;
        let Some(link) = self.role.agent_leg() else {
            self.reply(msg, 403, "Forbidden");
            return;
        };
        if self.phase != Phase::Answered || self.relay.is_none() && !self.held {
            self.reply(msg, 603, "Decline");
            return;
        }
        let target = msg
            .header(&HeaderName::Other("Refer-To".into()))
            .or_else(|| msg.header(&HeaderName::Other("r".into())))
            .and_then(|v| {
                let v = v.trim();
                let inner = v
                    .find('<')
                    .and_then(|a| v[a + 1..].find('>').map(|b| &v[a + 1..a + 1 + b]))
                    .unwrap_or(v);
                Uri::parse(inner).ok()
            })
            .and_then(|u| u.user);
        let target = match target {
            Some(t) if self.ctx.acd.has_queue(&t) => TransferTarget::Queue(t),
            Some(t) if t == link.agent => {
                self.reply(msg, 403, "Forbidden");
                return;
            }
            Some(t) if self.ctx.acd.has_agent(&t) => TransferTarget::Agent(t),
            _ => {
                self.reply(msg, 404, "Not Found");
                return;
            }
        };
        self.reply(msg, 202, "Accepted");
        let mut notify = self
            .dialog
            .request(crate::sip::message::Method::Notify, &self.local);
        notify.push_header(HeaderName::Other("Event".into()), "refer");
        notify.push_header(
            HeaderName::Other("Subscription-State".into()),
            "terminated;reason=noresource",
        );
        notify.push_header(HeaderName::ContentType, "message/sipfrag;version=2.0");
        notify.body = bytes::Bytes::from_static(b"SIP/2.0 200 OK\r\n");
        info!(%target, "agent transfers the caller");
        let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Transfer {
            leg: link.leg,
            target,
        }));
        // In a client transaction of its own (Timers E/F): nothing waits for its answer.
        let _ = self.start_client(now, notify);
    }

    /// Blind transfer by the agent: the agent's part ends (wrap-up), the caller hears music
    /// again and waits in `queue` with a new place in line.
    fn transfer_to_queue(&mut self, now: Instant, leg: u64, queue: String) {
        let Some(q) = self.queue.as_mut() else { return };
        if q.connected.as_ref().is_none_or(|(id, _)| *id != leg) || self.phase != Phase::Answered {
            return;
        }
        if !q.told_acd {
            q.told_acd = true;
            let key = q.acd_key.clone();
            super::acd_send_or_keep(
                &self.ctx,
                &mut self.acd_outbox,
                AcdMsg::CallEnded {
                    call: key,
                    by: "transfer".into(),
                },
            );
        }
        for l in q.legs.iter().filter(|l| !l.done) {
            let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
        }
        let from = q.queue.clone();
        self.relay = None;
        self.relay_out = None;
        self.held = false;
        if self.media.is_none() {
            let Some(n) = self.offer else { return };
            let dest = self.relay_caller_dest.unwrap_or(n.remote);
            let params = self.media_params(&n, dest);
            self.media = Some(crate::media::session::MediaSession::new(now, params));
        }
        self.record_event("transfer", format!("{from}->{queue}"));
        self.queue = None;
        self.enqueue(now, queue);
    }

    /// Blind transfer by the agent to another agent: the agent's leg ends (wrap-up), the
    /// caller hears music on hold and keeps its queue membership; the ACD offers it to
    /// `agent` only, or back to the queue's line (`Acd::transfer_to_agent`). The record
    /// keeps one row and ends with the agent who took the call last.
    fn transfer_to_agent(&mut self, now: Instant, leg: u64, agent: String) {
        let Some(q) = self.queue.as_mut() else { return };
        if q.connected.as_ref().is_none_or(|(id, _)| *id != leg)
            || self.phase != Phase::Answered
            || q.told_acd
        {
            return;
        }
        for l in q.legs.iter().filter(|l| !l.done) {
            let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
        }
        // Not connected any more: the agent leg's end (its BYE) is not the call's end.
        q.connected = None;
        q.joined = now;
        let from = q.queue.clone();
        let key = q.acd_key.clone();
        self.relay = None;
        self.relay_out = None;
        self.held = false;
        if self.media.is_none() {
            let Some(n) = self.offer else { return };
            let dest = self.relay_caller_dest.unwrap_or(n.remote);
            let params = self.media_params(&n, dest);
            self.media = Some(crate::media::session::MediaSession::new(now, params));
        }
        self.record_event("transfer", format!("{from}->agent:{agent}"));
        self.play_moh();
        self.acd_send(AcdMsg::TransferToAgent {
            call: key,
            to: agent,
        });
    }

    /// The agent put the caller on hold (music) or took it back (relay again).
    fn agent_hold(&mut self, now: Instant, leg: u64, on: bool, remote: SocketAddr) {
        let connected = self
            .queue
            .as_ref()
            .and_then(|q| q.connected.as_ref())
            .is_some_and(|(id, _)| *id == leg);
        if !connected || self.phase != Phase::Answered {
            return;
        }
        if let Some(r) = self.relay.as_mut() {
            r.set_dest(remote);
        }
        if on && !self.held {
            let Some(n) = self.offer else { return };
            let dest = self.relay_caller_dest.unwrap_or(n.remote);
            let params = self.media_params(&n, dest);
            self.media = Some(crate::media::session::MediaSession::new(now, params));
            self.held = true;
            self.play_moh();
            self.record_event("hold", "agent".into());
        } else if !on && self.held {
            self.held = false;
            self.media = None;
            if let Some(r) = self.relay.as_mut() {
                // Count from now: the relay was idle while the caller listened to music.
                r.touch(now);
            }
            self.record_event("unhold", "agent".into());
        }
    }

    /// The leg is over: report it to the caller once.
    pub(super) fn report_leg_end(&mut self, disposition: Disposition) {
        let answered = self.role.uac().is_some_and(|u| u.answered());
        let Some(link) = self.role.agent_leg_mut() else {
            return;
        };
        if link.reported {
            return;
        }
        link.reported = true;
        let event = if answered {
            LegEvent::Ended {
                leg: link.leg,
                agent: link.agent.clone(),
                lost: false,
            }
        } else {
            LegEvent::Failed {
                leg: link.leg,
                agent: link.agent.clone(),
                how: match disposition {
                    Disposition::Busy => OfferEnd::Busy,
                    Disposition::NoAnswer => OfferEnd::NoAnswer,
                    Disposition::Cancelled => OfferEnd::Cancelled,
                    Disposition::Answered
                    | Disposition::Failed
                    | Disposition::Machine
                    | Disposition::Interrupted => OfferEnd::Failed,
                },
            }
        };
        let _ = link.caller_tx.try_send(CallInput::Leg(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::TransportKind;

    const EDGE_PATH: &str = "<sip:127.0.0.10:5070;lr;received=sip:192.0.2.7:40000>";

    fn reachable(contact: &str, flow: Option<ReplyPath>, path: &[&str]) -> Reachable {
        Reachable {
            contact: contact.into(),
            flow,
            path: path.iter().map(|p| p.to_string()).collect(),
        }
    }

    async fn udp_flow(peer: &str) -> ReplyPath {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        ReplyPath::Udp {
            socket: Arc::new(socket),
            peer: peer.parse().expect("addr"),
        }
    }

    fn stream_flow(peer: &str, kind: TransportKind) -> (ReplyPath, mpsc::Receiver<bytes::Bytes>) {
        let (tx, rx) = mpsc::channel(4);
        let flow = ReplyPath::Stream {
            tx,
            peer: peer.parse().expect("addr"),
            local: "127.0.0.11:5060".parse().expect("addr"),
            kind,
        };
        (flow, rx)
    }

    /// Registered through the edge (over UDP, so the binding's flow is the edge's address):
    /// the INVITE's Request-URI is the contact (a private address behind NAT here), its
    /// Route the path, and it goes to the path's first hop.
    #[tokio::test]
    async fn a_path_is_the_route_set_and_its_first_hop_the_destination() {
        let r = reachable(
            "sip:alice@192.168.1.5:5090",
            Some(udp_flow("127.0.0.10:5070").await),
            &[EDGE_PATH, "<sip:10.0.0.9;lr>"],
        );
        let t = destination(&r).expect("reachable");
        assert_eq!(t.uri.as_str(), "sip:alice@192.168.1.5:5090");
        assert_eq!(t.dest, "127.0.0.10:5070".parse().expect("addr"));
        assert!(t.flow.is_none(), "UDP: the node's own socket");
        assert_eq!(t.route, [EDGE_PATH, "<sip:10.0.0.9;lr>"]);
    }

    /// A binding read from the database (another node, or after a restart) has no flow:
    /// the path alone leads to the phone.
    #[test]
    fn a_binding_without_a_flow_is_reached_through_its_path() {
        let r = reachable("sip:alice@192.168.1.5:5090", None, &[EDGE_PATH]);
        let t = destination(&r).expect("reachable");
        assert_eq!(t.dest, "127.0.0.10:5070".parse().expect("addr"));
        assert_eq!(t.route, [EDGE_PATH]);
        // Even a contact that is a host name: only the edge needs to resolve it.
        let r = reachable("sip:alice@phone.invalid;transport=ws", None, &[EDGE_PATH]);
        assert_eq!(
            destination(&r).map(|t| t.dest),
            Some("127.0.0.10:5070".parse().expect("addr"))
        );
    }

    /// A path over TCP is followed on the edge's open connection the REGISTER came on; with
    /// no such connection the contact is skipped (the node opens none to a phone's proxy).
    #[test]
    fn a_tcp_path_uses_the_open_connection_to_the_edge() {
        let path = "<sip:127.0.0.10:5070;transport=tcp;lr>";
        let (flow, _rx) = stream_flow("127.0.0.10:5070", TransportKind::Tcp);
        let r = reachable("sip:alice@192.168.1.5:5090", Some(flow), &[path]);
        let t = destination(&r).expect("reachable");
        assert!(matches!(t.flow, Some(ReplyPath::Stream { .. })));
        assert_eq!(t.dest, "127.0.0.10:5070".parse().expect("addr"));
        let (elsewhere, _rx2) = stream_flow("127.0.0.99:5070", TransportKind::Tcp);
        assert!(destination(&reachable("sip:a@10.0.0.5", Some(elsewhere), &[path])).is_none());
        assert!(destination(&reachable("sip:a@10.0.0.5", None, &[path])).is_none());
    }

    #[test]
    fn an_unusable_path_skips_the_contact() {
        for path in [
            "<sip:127.0.0.10:5070>",
            "<sip:edge.example;lr>",
            "garbage <",
        ] {
            let r = reachable("sip:alice@10.0.0.5:5090", None, &[path]);
            assert!(destination(&r).is_none(), "{path}");
        }
    }

    /// No path: exactly as before — the UDP source, the open connection, else the contact.
    #[tokio::test]
    async fn without_a_path_nothing_changes() {
        let r = reachable(
            "sip:alice@192.168.1.5:5090",
            Some(udp_flow("203.0.113.7:40000").await),
            &[],
        );
        let t = destination(&r).expect("reachable");
        assert_eq!(t.dest, "203.0.113.7:40000".parse().expect("addr"));
        assert!(t.route.is_empty() && t.flow.is_none());
        let (flow, _rx) = stream_flow("203.0.113.7:40001", TransportKind::Tls);
        let t = destination(&reachable("sip:alice@x.invalid", Some(flow), &[])).expect("flow");
        assert!(matches!(t.flow, Some(ReplyPath::Stream { .. })) && t.route.is_empty());
        let t = destination(&reachable("<sip:alice@10.0.0.5>", None, &[])).expect("contact");
        assert_eq!(t.dest, "10.0.0.5:5060".parse().expect("addr"));
        assert!(destination(&reachable("sip:alice@phone.example", None, &[])).is_none());
    }
}
