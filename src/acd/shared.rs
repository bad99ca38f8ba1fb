//! Queues shared by the nodes of a cluster (docs/adr/0011): the parts of the ACD shell that
//! lead or follow.
//!
//! Every node keeps its shell: its callers' mailboxes, its agents' contacts and browser
//! phones. One node, the holder of the leader lock ([`super::link`]), drives the core for
//! the whole cluster: other nodes' callers are [`RemoteCaller`] mailboxes whose events go
//! back over `NOTIFY`. A follower forwards every message up ([`AcdService::forward`]) and
//! keeps a [`Shadow`] of each of its callers, so that a new leader can take them over with
//! their place in line ([`AcdService::resync_up`]). A node that loses the database serves
//! its own callers with its own core until the link is back (the single-node behaviour).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::core::{AgentDef, AgentState, AgentView, QueueView, Rejoin};
use super::link::{LinkEvent, LinkIo, Outgoing};
use super::wire::{Broadcast, Contact, Down, Up};
use super::{
    load_core, AcdEvent, AcdMsg, AcdService, AgentFeed, CallerMailbox, CallerTx, FeatureOutcome,
    Member, Reachable,
};

/// How long a new leader collects re-announced callers before taking them over in join
/// order (their nodes answer its announcement within a few ms on a LAN).
const RESYNC_WINDOW: Duration = Duration::from_millis(400);
/// How long a request to the leader (agent command, views) waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How this node's ACD takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// One node, or queues per node: this core serves this node's callers (today's way).
    Alone,
    /// This node's core serves the cluster; `epoch` 0: the database is gone and it serves
    /// only its own callers until the link is back.
    Leader { epoch: i64 },
    /// Another node leads: messages go up.
    Follower,
}

/// What a node remembers of its own caller for a new leader.
#[derive(Debug, Clone)]
pub(super) struct Shadow {
    queue: String,
    segment: Option<String>,
    needs: Vec<(String, i64)>,
    joined: Instant,
    pub(super) callback: bool,
    /// The agent the caller is connected to.
    agent: Option<String>,
}

impl Shadow {
    pub(super) fn new(
        now: Instant,
        queue: &str,
        segment: Option<&str>,
        needs: &[(String, i64)],
    ) -> Shadow {
        Shadow {
            queue: queue.to_string(),
            segment: segment.map(str::to_string),
            needs: needs.to_vec(),
            joined: now,
            callback: false,
            agent: None,
        }
    }
}

/// A caller to take over, held until the re-announcement window ends.
#[derive(Debug)]
pub(super) struct Shadowed {
    call: String,
    shadow: Shadow,
}

/// A request to the leader whose answer goes to a local waiter.
#[derive(Debug)]
pub(super) enum Pending {
    State(oneshot::Sender<Option<AgentState>>),
    Feature(oneshot::Sender<Option<FeatureOutcome>>),
    Agents(oneshot::Sender<Vec<AgentView>>),
    Queues(oneshot::Sender<Vec<QueueView>>),
}

/// A caller held by another node, as the leader's core sees it.
#[derive(Debug)]
struct RemoteCaller {
    node: String,
    call: String,
    out: mpsc::Sender<Outgoing>,
}

impl CallerMailbox for RemoteCaller {
    fn try_tell(&self, event: AcdEvent) -> Result<(), AcdEvent> {
        let call = self.call.clone();
        let msg = match event.clone() {
            AcdEvent::Queued { position } => Down::Queued { call, position },
            AcdEvent::Unavailable { reason } => Down::Unavailable { call, reason },
            AcdEvent::Position { position, ewt_s } => Down::Position {
                call,
                position,
                ewt_s,
            },
            AcdEvent::Offer {
                agent,
                contacts,
                browser,
                ring_timeout,
            } => Down::Offer {
                call,
                agent,
                contacts: contacts.iter().map(Contact::from).collect(),
                browser,
                ring_timeout_ms: ring_timeout.as_millis() as u64,
            },
        };
        self.out
            .try_send(Outgoing::Down {
                node: self.node.clone(),
                msg,
            })
            .map_err(|_| event)
    }

    fn is_closed(&self) -> bool {
        self.out.is_closed()
    }
}

/// The next link event; pending forever without a link (the select arm is disabled then).
pub(super) async fn next_event(
    events: &mut Option<mpsc::Receiver<LinkEvent>>,
) -> Option<LinkEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleep until `at` (forever without one).
pub(super) async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl AcdService {
    /// Queues shared with the other nodes of the cluster through `io`: this node follows
    /// until its link reports that it leads.
    pub fn shared(mut self, io: LinkIo) -> AcdService {
        self.node = io.node;
        self.set_mode(Mode::Follower);
        self.out = Some(io.out);
        self.link_events = Some(io.events);
        self
    }

    /// This node's SIP address (`nodes.sip_addr`): announced with its browser phones, where
    /// other nodes ring them (`acd::peer`).
    pub fn with_sip_addr(mut self, sip_addr: &str) -> AcdService {
        self.sip_addr = sip_addr.to_string();
        self
    }

    /// Where `node` takes the inter-node leg to its browser agents (None: unknown).
    pub(super) fn sip_of(&self, node: &str) -> Option<&str> {
        if node == self.node {
            return (!self.sip_addr.is_empty()).then_some(self.sip_addr.as_str());
        }
        self.node_sip.get(node).map(String::as_str)
    }

    fn own_sip(&self) -> Option<String> {
        (!self.sip_addr.is_empty()).then(|| self.sip_addr.clone())
    }

    /// This node's name in the cluster (empty when alone).
    pub fn with_node(mut self, node: &str) -> AcdService {
        self.node = node.to_string();
        self.set_mode(Mode::Alone);
        self
    }

    /// Change the mode and show it (`switchboard_acd_leader`).
    pub(super) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        let serving = if mode == Mode::Follower { 0.0 } else { 1.0 };
        crate::metrics::global().set_gauge("switchboard_acd_leader", &[], serving);
    }

    fn send_out(&self, msg: Outgoing) {
        if let Some(out) = &self.out {
            if out.try_send(msg).is_err() {
                warn!("ACD link outbox full or closed: message dropped (a resync restores state)");
            }
        }
    }

    fn up(&self, msg: Up) {
        self.send_out(Outgoing::Up(msg));
    }

    /// The screen-pop feed: to this node's subscribers and, when leading, to every node's.
    pub(super) fn publish(&self, feed: AgentFeed) {
        if matches!(self.mode, Mode::Leader { epoch } if epoch > 0) {
            self.send_out(Outgoing::All(Broadcast::Feed { feed: feed.clone() }));
        }
        let _ = self.feed.send(feed);
    }

    /// Every contact of the agent on every node (one copy each).
    pub(super) fn contacts_of(&self, agent: &str) -> Vec<Reachable> {
        let mut all: Vec<Reachable> = Vec::new();
        let Some(per_node) = self.reach.get(agent) else {
            return all;
        };
        // This node's first: those keep their connection (flow).
        let mut nodes: Vec<&String> = per_node.keys().collect();
        nodes.sort_by_key(|n| (**n != self.node, (*n).clone()));
        for n in nodes {
            for c in &per_node[n] {
                if !all.iter().any(|a| a.contact == c.contact) {
                    all.push(c.clone());
                }
            }
        }
        all
    }

    fn reachable_anywhere(&self, agent: &str) -> bool {
        self.browsers.contains_key(agent)
            || self
                .reach
                .get(agent)
                .is_some_and(|m| m.values().any(|c| !c.is_empty()))
    }

    pub(super) fn shadow_connected(&mut self, call: &str, agent: Option<&str>) {
        if let Some(j) = self.calls.get_mut(call).and_then(|m| m.join.as_mut()) {
            j.agent = agent.map(str::to_string);
        }
    }

    /// The agent's contacts at `node` changed.
    pub(super) fn reachability(
        &mut self,
        now: Instant,
        node: &str,
        name: String,
        def: Option<AgentDef>,
        contacts: Vec<Reachable>,
    ) {
        let per_node = self.reach.entry(name.clone()).or_default();
        if contacts.is_empty() {
            per_node.remove(node);
        } else {
            per_node.insert(node.to_string(), contacts);
        }
        self.agent_changed(now, name, def);
    }

    /// The agent's browser phone at `node` turned on or off.
    pub(super) fn browser_phone(
        &mut self,
        now: Instant,
        node: &str,
        name: String,
        def: Option<AgentDef>,
        on: bool,
    ) {
        if on {
            self.browsers.insert(name.clone(), node.to_string());
        } else if self.browsers.get(&name).is_some_and(|n| n == node) {
            self.browsers.remove(&name);
        }
        self.agent_changed(now, name, def);
    }

    fn agent_changed(&mut self, now: Instant, name: String, def: Option<AgentDef>) {
        let reachable = self.reachable_anywhere(&name);
        match def {
            Some(d) => {
                self.remember(&d);
                self.core.agent_update(now, d, reachable)
            }
            None => {
                if !self.core.set_reachable(now, &name, reachable) {
                    debug!(agent = %name, "an agent the ACD does not know");
                }
            }
        }
    }

    /// An agent account learnt from a registration: a transfer target, and re-announced to a
    /// new leader with its queues and skills.
    fn remember(&mut self, d: &AgentDef) {
        self.learn(&d.name);
        self.defs.insert(d.name.clone(), d.clone());
    }

    /// Following: keep what a new leader needs, send the message up.
    pub(super) fn forward(&mut self, now: Instant, msg: AcdMsg) {
        match msg {
            AcdMsg::Join {
                call,
                queue,
                segment,
                needs,
                caller,
                ticket_id,
                tx,
            } => {
                let join = Shadow::new(now, &queue, segment.as_deref(), &needs);
                self.calls.insert(
                    call.clone(),
                    Member::own(tx, caller.clone(), ticket_id, join),
                );
                self.up(Up::Join {
                    call,
                    queue,
                    segment,
                    needs,
                    caller,
                    ticket_id,
                    waited_ms: 0,
                    callback: false,
                    agent: None,
                });
            }
            AcdMsg::Leave { call, reason } => {
                self.calls.remove(&call);
                self.up(Up::Leave { call, reason });
            }
            AcdMsg::OfferEnded { call, agent, how } => self.up(Up::OfferEnded { call, agent, how }),
            AcdMsg::Connected { call, agent } => {
                self.shadow_connected(&call, Some(&agent));
                self.up(Up::Connected { call, agent });
            }
            AcdMsg::CallEnded { call, by } => {
                self.calls.remove(&call);
                self.up(Up::CallEnded { call, by });
            }
            AcdMsg::TransferToAgent { call, to } => {
                self.shadow_connected(&call, None);
                self.up(Up::TransferToAgent { call, to });
            }
            AcdMsg::Position { call } => self.up(Up::Position { call }),
            AcdMsg::Callback { call, tx } => {
                if let Some(m) = self.calls.get_mut(&call) {
                    m.tx = tx;
                    if let Some(j) = &mut m.join {
                        j.callback = true;
                    }
                }
                self.up(Up::Callback { call });
            }
            AcdMsg::Reachability {
                name,
                def,
                contacts,
            } => {
                let wire = contacts.iter().map(Contact::from).collect();
                let node = self.node.clone();
                let per_node = self.reach.entry(name.clone()).or_default();
                if contacts.is_empty() {
                    per_node.remove(&node);
                } else {
                    per_node.insert(node, contacts);
                }
                if let Some(d) = &def {
                    self.remember(d);
                }
                self.up(Up::Reachability {
                    name,
                    def,
                    contacts: wire,
                });
            }
            AcdMsg::BrowserPhone { name, def, on } => {
                if on {
                    self.browsers.insert(name.clone(), self.node.clone());
                } else {
                    self.browsers.remove(&name);
                }
                if let Some(d) = &def {
                    self.remember(d);
                }
                let sip = self.own_sip();
                self.up(Up::BrowserPhone { name, def, on, sip });
            }
            AcdMsg::Command {
                agent,
                command,
                reply,
            } => {
                let req = self.request(now, Pending::State(reply));
                self.up(Up::Command {
                    req,
                    agent,
                    command,
                });
            }
            AcdMsg::Feature {
                agent,
                source,
                command,
                reply,
            } => {
                let req = self.request(now, Pending::Feature(reply));
                self.up(Up::Feature {
                    req,
                    agent,
                    source,
                    command,
                });
            }
            AcdMsg::Agents { reply } => {
                let req = self.request(now, Pending::Agents(reply));
                self.up(Up::Agents { req });
            }
            AcdMsg::Queues { reply } => {
                let req = self.request(now, Pending::Queues(reply));
                self.up(Up::Queues { req });
            }
        }
    }

    fn request(&mut self, now: Instant, p: Pending) -> u64 {
        self.next_req += 1;
        self.pending.insert(self.next_req, (now, p));
        self.next_req
    }

    /// What the link reports.
    pub(super) async fn on_link(&mut self, now: Instant, ev: LinkEvent) {
        match ev {
            LinkEvent::Leading { epoch } => self.become_leader(now, epoch).await,
            LinkEvent::Following => {
                self.step_down();
                self.resync_up(now);
            }
            LinkEvent::Disconnected => {
                // Nobody can be reached: serve this node's callers with its own core
                // (ADR 0011, "PostgreSQL down") until the link is back.
                if self.mode != (Mode::Leader { epoch: 0 }) {
                    warn!("cluster link lost: this node serves its own callers meanwhile");
                    self.become_leader(now, 0).await;
                }
            }
            LinkEvent::Up { from, msg } => {
                if matches!(self.mode, Mode::Leader { epoch } if epoch > 0) {
                    self.handle_up(now, from, msg);
                }
            }
            LinkEvent::Down(msg) => self.handle_down(msg),
            LinkEvent::All { from, msg } => match msg {
                Broadcast::Leader { node, epoch } => {
                    info!(leader = %node, epoch, %from, "the cluster's queues have a new leader");
                    self.step_down();
                    self.resync_up(now);
                }
                Broadcast::Feed { feed } => {
                    if self.mode == Mode::Follower {
                        let _ = self.feed.send(feed);
                    }
                }
            },
            LinkEvent::NodeDead(node) => self.node_dead(now, &node),
        }
    }

    /// Drive a fresh core for the cluster (`epoch` > 0) or for this node alone (0).
    async fn become_leader(&mut self, now: Instant, epoch: i64) {
        info!(node = %self.node, epoch, "ACD: this node's core serves the queues");
        let (core, _names, persisted) =
            load_core(&self.queue_cfgs, self.auto_login, &self.db).await;
        self.core = core;
        self.persisted = persisted;
        self.set_mode(Mode::Leader { epoch });
        self.forget_other_nodes();
        // Callers waiting for answers from the old leader get them from this core now.
        self.fail_pending();
        // This node's agents, then its callers (in join order, with the others' below).
        let me = self.node.clone();
        let agents: Vec<String> = self.reach.keys().cloned().collect();
        for name in agents {
            let def = self.defs.get(&name).cloned();
            self.agent_changed(now, name, def);
        }
        let browsers: Vec<String> = self
            .browsers
            .iter()
            .filter(|(_, n)| **n == me)
            .map(|(a, _)| a.clone())
            .collect();
        for name in browsers {
            let def = self.defs.get(&name).cloned();
            self.agent_changed(now, name, def);
        }
        let mine: Vec<Shadowed> = self
            .calls
            .iter()
            .filter_map(|(call, m)| {
                m.join.clone().map(|shadow| Shadowed {
                    call: call.clone(),
                    shadow,
                })
            })
            .collect();
        self.rejoins.extend(mine);
        self.resync_until = Some(now + RESYNC_WINDOW);
        if epoch > 0 {
            self.send_out(Outgoing::All(Broadcast::Leader { node: me, epoch }));
        }
    }

    /// Another node leads (or will): forget what the core held for the cluster.
    fn step_down(&mut self) {
        if self.mode == Mode::Follower {
            return;
        }
        info!(node = %self.node, "ACD: this node follows the cluster's leader");
        self.set_mode(Mode::Follower);
        self.forget_other_nodes();
        self.rejoins.clear();
        self.resync_until = None;
    }

    fn forget_other_nodes(&mut self) {
        self.calls.retain(|_, m| m.node.is_none());
        let me = self.node.clone();
        for per_node in self.reach.values_mut() {
            per_node.retain(|n, _| *n == me);
        }
        self.reach.retain(|_, m| !m.is_empty());
        self.browsers.retain(|_, n| *n == me);
    }

    fn fail_pending(&mut self) {
        // Dropping the senders answers the waiters with "no answer".
        self.pending.clear();
    }

    /// Tell the leader everything this node holds: its agents' contacts and browser phones,
    /// its callers with the time they have waited and the agent they talk to.
    fn resync_up(&mut self, now: Instant) {
        let me = self.node.clone();
        let mut ups = Vec::new();
        for (name, per_node) in &self.reach {
            if let Some(cs) = per_node.get(&me) {
                ups.push(Up::Reachability {
                    name: name.clone(),
                    def: self.defs.get(name).cloned(),
                    contacts: cs.iter().map(Contact::from).collect(),
                });
            }
        }
        for (name, node) in &self.browsers {
            if *node == me {
                ups.push(Up::BrowserPhone {
                    name: name.clone(),
                    def: self.defs.get(name).cloned(),
                    on: true,
                    sip: self.own_sip(),
                });
            }
        }
        let mut callers: Vec<(&String, &Member, &Shadow)> = self
            .calls
            .iter()
            .filter_map(|(c, m)| m.join.as_ref().map(|j| (c, m, j)))
            .collect();
        callers.sort_by_key(|(_, _, j)| j.joined);
        for (call, m, j) in callers {
            ups.push(Up::Join {
                call: call.clone(),
                queue: j.queue.clone(),
                segment: j.segment.clone(),
                needs: j.needs.clone(),
                caller: m.caller.clone(),
                ticket_id: m.ticket_id,
                // At least 1 ms: a re-announcement, never taken for a new caller.
                waited_ms: (now.duration_since(j.joined).as_millis() as u64).max(1),
                callback: j.callback,
                agent: j.agent.clone(),
            });
        }
        debug!(
            messages = ups.len(),
            "ACD: re-announcing this node to the leader"
        );
        for u in ups {
            self.up(u);
        }
    }

    /// Leading: a message from another node.
    fn handle_up(&mut self, now: Instant, from: String, msg: Up) {
        match msg {
            Up::Join {
                call,
                queue,
                segment,
                needs,
                caller,
                ticket_id,
                waited_ms,
                callback,
                agent,
            } => {
                let Some(out) = self.out.clone() else { return };
                let tx = CallerTx::new(RemoteCaller {
                    node: from.clone(),
                    call: call.clone(),
                    out,
                });
                self.calls.insert(
                    call.clone(),
                    Member {
                        tx,
                        caller,
                        ticket_id,
                        node: Some(from),
                        join: None,
                    },
                );
                if waited_ms == 0 {
                    self.core
                        .join(now, &call, &queue, segment.as_deref(), needs);
                } else {
                    let mut shadow = Shadow::new(now, &queue, segment.as_deref(), &needs);
                    shadow.joined = now
                        .checked_sub(Duration::from_millis(waited_ms))
                        .unwrap_or(now);
                    shadow.callback = callback;
                    shadow.agent = agent;
                    self.rejoin_or_hold(now, Shadowed { call, shadow });
                }
            }
            Up::Leave { call, reason } => self.handle(now, AcdMsg::Leave { call, reason }),
            Up::OfferEnded { call, agent, how } => {
                self.handle(now, AcdMsg::OfferEnded { call, agent, how })
            }
            Up::Connected { call, agent } => self.handle(now, AcdMsg::Connected { call, agent }),
            Up::CallEnded { call, by } => self.handle(now, AcdMsg::CallEnded { call, by }),
            Up::TransferToAgent { call, to } => {
                self.handle(now, AcdMsg::TransferToAgent { call, to })
            }
            Up::Position { call } => self.handle(now, AcdMsg::Position { call }),
            Up::Callback { call } => {
                if self.calls.contains_key(&call) {
                    self.core.callback(now, &call);
                }
            }
            Up::Reachability {
                name,
                def,
                contacts,
            } => {
                let contacts = contacts.into_iter().map(Reachable::from).collect();
                self.reachability(now, &from, name, def, contacts);
            }
            Up::BrowserPhone { name, def, on, sip } => {
                if let Some(sip) = sip {
                    self.node_sip.insert(from.clone(), sip);
                }
                self.browser_phone(now, &from, name, def, on)
            }
            Up::Command {
                req,
                agent,
                command,
            } => {
                let state = self.ask_here(now, |reply| AcdMsg::Command {
                    agent,
                    command,
                    reply,
                });
                self.down(from, Down::State { req, state });
            }
            Up::Feature {
                req,
                agent,
                source,
                command,
            } => {
                let outcome = self.ask_here(now, |reply| AcdMsg::Feature {
                    agent,
                    source,
                    command,
                    reply,
                });
                self.down(from, Down::Feature { req, outcome });
            }
            Up::Agents { req } => {
                let agents = self.core.agents_view(now);
                self.down(from, Down::Agents { req, agents });
            }
            Up::Queues { req } => {
                let queues = self.core.queues_view(now);
                self.down(from, Down::Queues { req, queues });
            }
        }
    }

    /// A request of another node carried out by this core (`handle` answers at once).
    fn ask_here<T>(
        &mut self,
        now: Instant,
        msg: impl FnOnce(oneshot::Sender<Option<T>>) -> AcdMsg,
    ) -> Option<T> {
        let (reply, mut rx) = oneshot::channel();
        self.handle(now, msg(reply));
        rx.try_recv().ok().flatten()
    }

    fn down(&self, node: String, msg: Down) {
        self.send_out(Outgoing::Down { node, msg });
    }

    /// During the window after a take-over, hold re-announced callers; after it, take
    /// them over at once.
    fn rejoin_or_hold(&mut self, now: Instant, s: Shadowed) {
        self.rejoins.push(s);
        if self.resync_until.is_none() {
            self.take_over_rejoins(now);
        }
    }

    /// Take over the held callers in the order they joined.
    pub(super) fn take_over_rejoins(&mut self, now: Instant) {
        self.resync_until = None;
        let mut held = std::mem::take(&mut self.rejoins);
        held.sort_by_key(|s| s.shadow.joined);
        for Shadowed { call, shadow } in held {
            if !self.calls.contains_key(&call) {
                continue;
            }
            self.core.rejoin(
                now,
                Rejoin {
                    call: &call,
                    queue: &shadow.queue,
                    segment: shadow.segment.as_deref(),
                    needs: &shadow.needs,
                    waited: now.saturating_duration_since(shadow.joined),
                    callback: shadow.callback,
                    agent: shadow.agent.as_deref(),
                },
            );
        }
    }

    /// Following: the leader's answer for one of this node's callers or requests.
    fn handle_down(&mut self, msg: Down) {
        match msg {
            Down::Queued { call, position } => {
                self.tell(&call, AcdEvent::Queued { position });
            }
            Down::Position {
                call,
                position,
                ewt_s,
            } => {
                self.tell(&call, AcdEvent::Position { position, ewt_s });
            }
            Down::Unavailable { call, reason } => {
                self.tell_final(&call, AcdEvent::Unavailable { reason })
            }
            Down::Offer {
                call,
                agent,
                contacts,
                browser,
                ring_timeout_ms,
            } => {
                // This node's own registrations keep their connection (flow).
                let own: Vec<Reachable> = self
                    .reach
                    .get(&agent)
                    .and_then(|m| m.get(&self.node))
                    .cloned()
                    .unwrap_or_default();
                let contacts: Vec<Reachable> = contacts
                    .into_iter()
                    .map(|c| {
                        own.iter()
                            .find(|o| o.contact == c.contact)
                            .cloned()
                            .unwrap_or_else(|| c.into())
                    })
                    .collect();
                let delivered = self.tell(
                    &call,
                    AcdEvent::Offer {
                        agent: agent.clone(),
                        contacts,
                        browser,
                        ring_timeout: Duration::from_millis(ring_timeout_ms),
                    },
                );
                if !delivered {
                    let how = super::OfferEnd::Failed;
                    self.up(Up::OfferEnded { call, agent, how });
                }
            }
            Down::State { req, state } => {
                if let Some((_, Pending::State(tx))) = self.pending.remove(&req) {
                    let _ = tx.send(state);
                }
            }
            Down::Feature { req, outcome } => {
                if let Some((_, Pending::Feature(tx))) = self.pending.remove(&req) {
                    let _ = tx.send(outcome);
                }
            }
            Down::Agents { req, agents } => {
                if let Some((_, Pending::Agents(tx))) = self.pending.remove(&req) {
                    let _ = tx.send(agents);
                }
            }
            Down::Queues { req, queues } => {
                if let Some((_, Pending::Queues(tx))) = self.pending.remove(&req) {
                    let _ = tx.send(queues);
                }
            }
        }
    }

    /// Leading: a node was declared dead; its callers are gone, its phones' bindings there
    /// no longer count (they re-register elsewhere), its browser pages are gone.
    fn node_dead(&mut self, now: Instant, node: &str) {
        if !matches!(self.mode, Mode::Leader { epoch } if epoch > 0) {
            return;
        }
        let gone: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, m)| m.node.as_deref() == Some(node))
            .map(|(c, _)| c.clone())
            .collect();
        info!(%node, callers = gone.len(), "ACD: a dead node's callers leave the queues");
        for call in gone {
            self.core.call_ended(now, &call, "lost");
            self.calls.remove(&call);
        }
        let agents: Vec<String> = self
            .reach
            .iter()
            .filter(|(_, m)| m.contains_key(node))
            .map(|(a, _)| a.clone())
            .collect();
        for name in agents {
            self.reachability(now, node, name, None, Vec::new());
        }
        let pages: Vec<String> = self
            .browsers
            .iter()
            .filter(|(_, n)| n.as_str() == node)
            .map(|(a, _)| a.clone())
            .collect();
        for name in pages {
            self.browser_phone(now, node, name, None, false);
        }
    }

    /// The shared-mode part of the periodic check; true when the rest does not apply
    /// (following: the core holds nothing).
    pub(super) fn reconcile_shared(&mut self, now: Instant) -> bool {
        self.pending
            .retain(|_, (at, _)| now.duration_since(*at) < REQUEST_TIMEOUT);
        if self.mode != Mode::Follower {
            return false;
        }
        let gone: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, m)| m.tx.is_closed())
            .map(|(c, _)| c.clone())
            .collect();
        for call in gone {
            self.calls.remove(&call);
            self.up(Up::Leave {
                call,
                reason: "lost".into(),
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    //! Two shells wired by channels exactly as the link would (Up to the leader, Down to one
    //! node, All to the others): the protocol without PostgreSQL.
    use super::*;
    use crate::acd::{channel, AcdHandle, QueueConfig};
    use crate::store::Db;
    use tokio_util::sync::CancellationToken;

    #[derive(Debug)]
    struct Phone(mpsc::Sender<AcdEvent>);

    impl CallerMailbox for Phone {
        fn try_tell(&self, event: AcdEvent) -> Result<(), AcdEvent> {
            self.0.try_send(event).map_err(|e| e.into_inner())
        }
        fn is_closed(&self) -> bool {
            self.0.is_closed()
        }
    }

    struct Node {
        handle: AcdHandle,
        events: mpsc::Sender<LinkEvent>,
        stop: CancellationToken,
    }

    type Wires = std::sync::Arc<std::sync::Mutex<Vec<(String, mpsc::Sender<LinkEvent>)>>>;

    async fn node(
        name: &str,
        db: &Db,
        wires: &Wires,
        leader: &std::sync::Arc<std::sync::Mutex<String>>,
    ) -> Node {
        let queues = vec![QueueConfig::new("support")];
        let (handle, rx) = channel(&queues);
        let (store, _store_rx) = crate::store::writer::channel();
        std::mem::forget(_store_rx);
        let svc = AcdService::new(&handle, queues, true, db, store).await;
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
        let svc = svc
            .shared(LinkIo {
                node: name.to_string(),
                events: ev_rx,
                out: out_tx,
            })
            .with_sip_addr(&format!("{name}.example:5060"));
        wires
            .lock()
            .expect("test value")
            .push((name.to_string(), ev_tx.clone()));
        // The "database": route what this node sends.
        let (wires2, leader2, me) = (wires.clone(), leader.clone(), name.to_string());
        tokio::spawn(async move {
            while let Some(o) = out_rx.recv().await {
                let targets: Vec<(String, LinkEvent)> = {
                    let w = wires2.lock().expect("test value");
                    let lead = leader2.lock().expect("test value").clone();
                    match o {
                        Outgoing::Up(msg) => vec![(
                            lead,
                            LinkEvent::Up {
                                from: me.clone(),
                                msg,
                            },
                        )],
                        Outgoing::Down { node, msg } => vec![(node, LinkEvent::Down(msg))],
                        Outgoing::All(msg) => w
                            .iter()
                            .filter(|(n, _)| *n != me)
                            .map(|(n, _)| {
                                (
                                    n.clone(),
                                    LinkEvent::All {
                                        from: me.clone(),
                                        msg: msg.clone(),
                                    },
                                )
                            })
                            .collect(),
                    }
                };
                for (to, ev) in targets {
                    let tx = wires2
                        .lock()
                        .expect("test value")
                        .iter()
                        .find(|(n, _)| *n == to)
                        .map(|(_, t)| t.clone());
                    if let Some(tx) = tx {
                        let _ = tx.send(ev).await;
                    }
                }
            }
        });
        let stop = CancellationToken::new();
        tokio::spawn(svc.run(rx, stop.clone()));
        Node {
            handle,
            events: ev_tx,
            stop,
        }
    }

    fn alice(contact: &str) -> AcdMsg {
        AcdMsg::Reachability {
            name: "alice".into(),
            def: Some(AgentDef {
                name: "alice".into(),
                queues: vec!["support".into()],
                skills: vec![],
            }),
            contacts: vec![Reachable {
                contact: contact.into(),
                flow: None,
                path: vec![],
            }],
        }
    }

    async fn next_offer(rx: &mut mpsc::Receiver<AcdEvent>) -> (String, Vec<String>) {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an offer within 5 s")
                .expect("mailbox open");
            if let AcdEvent::Offer {
                agent, contacts, ..
            } = ev
            {
                return (agent, contacts.into_iter().map(|c| c.contact).collect());
            }
        }
    }

    /// Nodes `a` (leading, epoch 1) and `b` (following) wired to each other; the shared
    /// leader name (the link's view, changed by a test to make `b` lead).
    async fn a_leads_b_follows(
        db: &Db,
    ) -> (Wires, std::sync::Arc<std::sync::Mutex<String>>, Node, Node) {
        let wires: Wires = Default::default();
        let leader = std::sync::Arc::new(std::sync::Mutex::new("a".to_string()));
        let a = node("a", db, &wires, &leader).await;
        let b = node("b", db, &wires, &leader).await;
        a.events
            .send(LinkEvent::Leading { epoch: 1 })
            .await
            .expect("test value");
        b.events
            .send(LinkEvent::Following)
            .await
            .expect("test value");
        (wires, leader, a, b)
    }

    #[tokio::test]
    async fn a_follower_s_caller_is_offered_the_leader_s_agent_and_survives_a_take_over() {
        let db = Db::connect("sqlite::memory:").await.expect("db");
        let (_wires, leader, a, b) = a_leads_b_follows(&db).await;
        a.handle
            .send_wait(alice("<sip:alice@127.0.0.1:5070>"))
            .await;

        // B's API sees the leader's view.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let views = b.handle.agents().await;
            if views
                .iter()
                .any(|v| v.name == "alice" && v.state == AgentState::Available)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "alice never available through B: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A caller of B: the leader offers alice with A's contact.
        let (tx, mut rx) = mpsc::channel(16);
        b.handle
            .send_wait(AcdMsg::Join {
                call: "c1".into(),
                queue: "support".into(),
                segment: None,
                needs: vec![],
                caller: "+8613800000001".into(),
                ticket_id: None,
                tx: CallerTx::new(Phone(tx)),
            })
            .await;
        let (agent, contacts) = next_offer(&mut rx).await;
        assert_eq!(agent, "alice");
        assert_eq!(contacts, vec!["<sip:alice@127.0.0.1:5070>".to_string()]);
        // The phone does not answer: the offer ends; B's caller keeps waiting.
        b.handle
            .send_wait(AcdMsg::OfferEnded {
                call: "c1".into(),
                agent: "alice".into(),
                how: crate::acd::OfferEnd::NoAnswer,
            })
            .await;

        // A dies; B leads. A's binding is gone with A: alice registers with B and is
        // offered to B's caller, who kept its place.
        a.stop.cancel();
        *leader.lock().expect("test value") = "b".into();
        b.events
            .send(LinkEvent::Leading { epoch: 2 })
            .await
            .expect("test value");
        b.handle
            .send_wait(alice("<sip:alice@127.0.0.1:5071>"))
            .await;
        let (agent, contacts) = next_offer(&mut rx).await;
        assert_eq!(agent, "alice");
        assert_eq!(contacts, vec!["<sip:alice@127.0.0.1:5071>".to_string()]);
        let queues = b.handle.queues().await;
        assert_eq!(queues[0].waiting, 1, "{queues:?}");
        b.stop.cancel();
    }

    async fn next_offer_full(rx: &mut mpsc::Receiver<AcdEvent>) -> (Vec<String>, bool) {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an offer within 5 s")
                .expect("mailbox open");
            if let AcdEvent::Offer {
                contacts, browser, ..
            } = ev
            {
                return (contacts.into_iter().map(|c| c.contact).collect(), browser);
            }
        }
    }

    /// A browser agent whose page a follower (B) serves: B's own caller rings the page
    /// (`browser`); the leader's caller gets a contact at B's SIP address marked for the
    /// inter-node leg, learnt from B's announcement (`acd::peer`).
    #[tokio::test]
    async fn a_browser_agent_of_another_node_is_offered_as_a_marked_contact_at_that_node() {
        let db = Db::connect("sqlite::memory:").await.expect("db");
        let (_wires, _leader, a, b) = a_leads_b_follows(&db).await;
        b.handle
            .send_wait(AcdMsg::BrowserPhone {
                name: "alice".into(),
                def: Some(AgentDef {
                    name: "alice".into(),
                    queues: vec!["support".into()],
                    skills: vec![],
                }),
                on: true,
            })
            .await;
        let join = |call: &str, tx| AcdMsg::Join {
            call: call.into(),
            queue: "support".into(),
            segment: None,
            needs: vec![],
            caller: "+8613800000001".into(),
            ticket_id: None,
            tx: CallerTx::new(Phone(tx)),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The announcement reaches the leader asynchronously: wait until alice is there.
        loop {
            let views = a.handle.agents().await;
            if views
                .iter()
                .any(|v| v.name == "alice" && v.state == AgentState::Available)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "alice never available: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.handle.send_wait(join("on-a", tx)).await;
        let (contacts, browser) = next_offer_full(&mut rx).await;
        assert!(!browser, "A cannot ring B's page");
        assert_eq!(contacts, vec!["<sip:alice@b.example:5060;sb-browser>"]);
        // That caller hangs up while it rings: alice is free for B's caller.
        a.handle
            .send_wait(AcdMsg::OfferEnded {
                call: "on-a".into(),
                agent: "alice".into(),
                how: crate::acd::OfferEnd::Cancelled,
            })
            .await;
        a.handle
            .send_wait(AcdMsg::Leave {
                call: "on-a".into(),
                reason: "abandon".into(),
            })
            .await;
        let (tx, mut rx) = mpsc::channel(16);
        b.handle.send_wait(join("on-b", tx)).await;
        let (contacts, browser) = next_offer_full(&mut rx).await;
        assert!(browser, "B rings its own page");
        assert!(contacts.is_empty(), "{contacts:?}");
        a.stop.cancel();
        b.stop.cancel();
    }
}
