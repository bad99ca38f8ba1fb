//! Queue calls in the call actor: the caller's side (join the ACD, music on hold, ring the
//! agents the ACD offers, bridge the first that answers) and the agent leg's side (an
//! outbound INVITE to the agent's phone that reports to the caller and relays media).
//!
//! The caller's actor decides which agent leg wins: it receives every leg's answer on one
//! mailbox, in order, so a second 200 (ring-all, or a 200 crossing our CANCEL) is simply told
//! to hang up — a call is never connected to two agents. The ACD decides which call an agent
//! gets, so an agent is never offered two calls. Every end path (caller hangs up, agent hangs
//! up, either side fails) goes through `record_end`, which tells the ACD exactly once.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Call, CallInput, Phase};
use crate::acd::{AcdEvent, AcdMsg, OfferEnd};
use crate::config::Trunk;
use crate::media::bridge::{Direction, LegMedia, Relay, RelayCounters};
use crate::media::player::PlayItem;
use crate::registrar::Reachable;
use crate::sip::transport::ReplyPath;
use crate::sip::uri::Uri;

/// Playlist id of music on hold (never used by the interpreter).
pub(super) const MOH_PLAY_ID: u32 = u32::MAX - 1;

/// An agent leg whose phone answered.
#[derive(Debug)]
pub struct AnsweredLeg {
    leg: u64,
    agent: String,
    media: LegMedia,
    remote: SocketAddr,
    socket: Arc<UdpSocket>,
    /// The leg's own mailbox, so even an unexpected answer can be hung up.
    tx: mpsc::Sender<CallInput>,
}

/// From an agent leg to its caller's actor.
#[derive(Debug)]
pub enum LegEvent {
    Answered(Box<AnsweredLeg>),
    /// The leg ended before being bridged (no answer, busy, failed, cancelled).
    Failed {
        leg: u64,
        agent: String,
        how: OfferEnd,
    },
    /// The leg ended after answering (the agent hung up, or we did).
    Ended {
        leg: u64,
        agent: String,
    },
}

/// From the caller's actor to an agent leg.
#[derive(Debug)]
pub enum LegControl {
    /// You won: relay what the agent sends to the caller from the caller's socket.
    Bridge {
        socket: Arc<UdpSocket>,
        dest: SocketAddr,
        agent: LegMedia,
        caller: LegMedia,
        counters: Arc<RelayCounters>,
    },
    /// Stop: CANCEL if ringing, BYE if answered.
    Stop,
}

/// What an agent leg knows about the call it serves.
#[derive(Debug)]
pub struct LegLink {
    pub(super) leg: u64,
    pub(super) agent: String,
    pub(super) caller_tx: mpsc::Sender<CallInput>,
    pub(super) reported: bool,
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
    joined: Instant,
    legs: Vec<LegHandle>,
    next_leg: u64,
    connected: Option<(u64, String)>,
    wait_ms: Option<i64>,
    counters: Option<Arc<RelayCounters>>,
    /// The ACD was told this call is over (left, or ended after connecting).
    told_acd: bool,
}

impl QueueSession {
    pub(super) fn record_fields(&self) -> (Option<String>, Option<String>, Option<i64>) {
        (
            Some(self.queue.clone()),
            self.connected.as_ref().map(|(_, a)| a.clone()),
            self.wait_ms,
        )
    }
}

fn leg_media(n: &crate::sip::sdp::Negotiated) -> LegMedia {
    LegMedia {
        codec: n.codec,
        payload_type: n.payload_type,
        telephone_event: n.telephone_event,
    }
}

/// Where to send an agent's INVITE: the address its REGISTER came from over UDP (right
/// behind NAT), else the Contact's host and port.
fn destination(r: &Reachable) -> Option<(Uri, SocketAddr)> {
    let uri = Uri::parse(r.contact.trim_matches(|c| c == '<' || c == '>')).ok()?;
    if let Some(ReplyPath::Udp { peer, .. }) = &r.flow {
        return Some((uri, *peer));
    }
    let port = uri.port.unwrap_or(5060);
    let addr = (
        uri.host.as_str().trim_matches(|c| c == '[' || c == ']'),
        port,
    )
        .to_socket_addrs()
        .ok()?
        .next()?;
    Some((uri, addr))
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
        self.queue = Some(QueueSession {
            queue: queue.clone(),
            joined: now,
            legs: Vec::new(),
            next_leg: 1,
            connected: None,
            wait_ms: None,
            counters: None,
            told_acd: false,
        });
        self.record_event("enqueue", queue.clone());
        if let Some(moh) = self
            .ctx
            .prompts
            .get(crate::server::MOH_LANG, &settings.music_on_hold)
            .cloned()
        {
            if let Some(m) = self.media.as_mut() {
                m.play(MOH_PLAY_ID, vec![PlayItem::Prompt(moh)], true);
            }
        }
        self.ctx.acd.send(AcdMsg::Join {
            call: self.id.clone(),
            queue,
            segment,
            needs,
            caller: self.caller.clone(),
            ticket_id: self.ticket_id,
            tx: self.self_tx.clone(),
        });
    }

    /// Back to the dialplan: the step's `on_unavailable` (variable `queue_status` says why).
    fn queue_unavailable(&mut self, now: Instant, reason: &str) {
        if let Some(m) = self.media.as_mut() {
            m.stop_playback();
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
            AcdEvent::Unavailable { reason } => {
                let Some(q) = self.queue.as_mut() else { return };
                if q.connected.is_some() {
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
                ring_timeout,
            } => self.offer_agent(agent, contacts, ring_timeout),
        }
    }

    fn offer_agent(&mut self, agent: String, contacts: Vec<Reachable>, ring_timeout: Duration) {
        let usable = self.phase == Phase::Answered
            && self
                .queue
                .as_ref()
                .is_some_and(|q| q.connected.is_none() && !q.told_acd);
        let target = contacts.iter().find_map(destination);
        let (true, Some((uri, dest))) = (usable, target) else {
            self.ctx.acd.send(AcdMsg::OfferEnded {
                call: self.id.clone(),
                agent,
                how: if usable {
                    OfferEnd::Failed
                } else {
                    OfferEnd::Cancelled
                },
            });
            return;
        };
        let Some(q) = self.queue.as_mut() else { return };
        let leg = q.next_leg;
        q.next_leg += 1;
        let (tx, rx) = mpsc::channel(super::MAILBOX);
        q.legs.push(LegHandle {
            id: leg,
            tx: tx.clone(),
            done: false,
        });
        self.record_event("agent_offer", agent.clone());
        let req = super::OutboundRequest {
            to_number: uri.user.clone().unwrap_or_else(|| agent.clone()),
            trunk: Trunk {
                name: format!("agent:{agent}"),
                address: dest,
                transport: "udp".into(),
                inbound_cidrs: Vec::new(),
                max_channels: 1,
                max_cps: 1.0,
                username: None,
                password: None,
                register: false,
                caller_id: None,
            },
            caller_id: self.caller.clone(),
            dialplan: String::new(),
            ring_timeout,
            vars: Default::default(),
            ticket_id: self.ticket_id,
            campaign_id: None,
            result: None,
            machine: None,
            request_uri: Some(uri),
            leg: Some(LegLink {
                leg,
                agent,
                caller_tx: self.self_tx.clone(),
                reported: false,
            }),
        };
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(super::uac::run_outbound_on(ctx, req, tx, rx, shutdown));
    }

    pub(super) fn on_leg_event(&mut self, now: Instant, event: LegEvent) {
        match event {
            LegEvent::Answered(a) => self.on_leg_answered(now, *a),
            LegEvent::Failed { leg, agent, how } => {
                let Some(q) = self.queue.as_mut() else { return };
                if let Some(l) = q.legs.iter_mut().find(|l| l.id == leg) {
                    l.done = true;
                }
                if !q.told_acd {
                    self.ctx.acd.send(AcdMsg::OfferEnded {
                        call: self.id.clone(),
                        agent: agent.clone(),
                        how,
                    });
                }
                if how != OfferEnd::Cancelled {
                    self.record_event("agent_missed", format!("{agent}:{}", how.as_str()));
                }
            }
            LegEvent::Ended { leg, agent } => {
                let Some(q) = self.queue.as_mut() else { return };
                if let Some(l) = q.legs.iter_mut().find(|l| l.id == leg) {
                    l.done = true;
                }
                if q.connected.as_ref().is_some_and(|(id, _)| *id == leg) && !q.told_acd {
                    q.told_acd = true;
                    self.ctx.acd.send(AcdMsg::CallEnded {
                        call: self.id.clone(),
                        by: "agent".into(),
                    });
                    info!(%agent, "agent hung up");
                    self.hangup(now, "agent_hangup");
                }
            }
        }
    }

    fn on_leg_answered(&mut self, now: Instant, answered: AnsweredLeg) {
        let AnsweredLeg {
            leg,
            agent,
            media: agent_media,
            remote,
            socket: agent_socket,
            tx: leg_tx,
        } = answered;
        let caller_media = self.offer.as_ref().map(leg_media);
        let caller_dest = self.media.as_ref().map(|m| m.destination());
        let own_socket = self.rtp_sock.clone();
        let Some(q) = self.queue.as_mut() else {
            debug!(%agent, leg, "answer after the caller left the queue: hanging it up");
            let _ = leg_tx.try_send(CallInput::LegControl(LegControl::Stop));
            return;
        };
        let can_bridge = q.connected.is_none() && !q.told_acd && self.phase == Phase::Answered;
        let (true, Some(caller_media), Some(caller_dest), Some(own_socket)) =
            (can_bridge, caller_media, caller_dest, own_socket)
        else {
            // Second 200 (ring-all race, or crossing our CANCEL): that leg hangs up.
            debug!(%agent, "late answer from an agent leg: hanging it up");
            let _ = leg_tx.try_send(CallInput::LegControl(LegControl::Stop));
            if let Some(q) = self.queue.as_ref() {
                if !q.told_acd {
                    self.ctx.acd.send(AcdMsg::OfferEnded {
                        call: self.id.clone(),
                        agent,
                        how: OfferEnd::Cancelled,
                    });
                }
            }
            return;
        };
        let wait_ms = now.duration_since(q.joined).as_millis() as i64;
        q.connected = Some((leg, agent.clone()));
        q.wait_ms = Some(wait_ms);
        let counters = Arc::new(RelayCounters::default());
        q.counters = Some(counters.clone());
        for l in q.legs.iter().filter(|l| l.id != leg && !l.done) {
            let _ = l.tx.try_send(CallInput::LegControl(LegControl::Stop));
        }
        self.ctx.acd.send(AcdMsg::Connected {
            call: self.id.clone(),
            agent: agent.clone(),
        });
        let bridged = leg_tx.try_send(CallInput::LegControl(LegControl::Bridge {
            socket: own_socket,
            dest: caller_dest,
            agent: agent_media,
            caller: caller_media,
            counters: counters.clone(),
        }));
        if bridged.is_err() {
            warn!(%agent, "agent leg vanished at bridge time");
        }
        self.relay = Some(Relay::new(
            now,
            caller_media,
            agent_media,
            remote,
            Direction::CallerToAgent,
            counters,
        ));
        self.relay_out = Some(agent_socket);
        // The call now belongs to the agent: no more prompts, music or dialplan.
        self.media = None;
        self.interp = None;
        info!(%agent, wait_ms, "connected to agent");
        self.record_event("agent_connect", agent);
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
                AcdMsg::CallEnded {
                    call: self.id.clone(),
                    by: "caller".into(),
                }
            } else {
                AcdMsg::Leave {
                    call: self.id.clone(),
                    reason: "caller_hangup".into(),
                }
            };
            self.ctx.acd.send(msg);
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
    }

    // ---- agent-leg side ----------------------------------------------------------------

    /// The agent's phone answered (negotiated media ready): tell the caller.
    pub(super) fn leg_answered(&mut self, now: Instant, n: &crate::sip::sdp::Negotiated) {
        let Some(link) = self.leg.as_ref() else {
            return;
        };
        let Some(socket) = self.rtp_sock.clone() else {
            self.hangup(now, "no_rtp_socket");
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
            self.hangup(now, "caller_gone");
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
            } => {
                if self.phase != Phase::Answered {
                    return;
                }
                self.relay = Some(Relay::new(
                    now,
                    agent,
                    caller,
                    dest,
                    Direction::AgentToCaller,
                    counters,
                ));
                self.relay_out = Some(socket);
            }
            LegControl::Stop => match self.phase {
                Phase::Calling => self.cancel_outbound(now, "cancelled"),
                Phase::Answered => self.hangup(now, "caller_gone"),
                _ => {}
            },
        }
    }

    /// The leg is over: report it to the caller once.
    pub(super) fn report_leg_end(&mut self, disposition: &str) {
        let answered = self.uac.as_ref().is_some_and(|u| u.answered());
        let Some(link) = self.leg.as_mut() else {
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
            }
        } else {
            LegEvent::Failed {
                leg: link.leg,
                agent: link.agent.clone(),
                how: match disposition {
                    "busy" => OfferEnd::Busy,
                    "no_answer" => OfferEnd::NoAnswer,
                    "cancelled" => OfferEnd::Cancelled,
                    _ => OfferEnd::Failed,
                },
            }
        };
        let _ = link.caller_tx.try_send(CallInput::Leg(event));
    }
}
