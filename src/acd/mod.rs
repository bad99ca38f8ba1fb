//! The ACD service: inbound queues served by agents on SIP phones.
//!
//! [`core`] is the sans-IO state machine (agents, waiting callers, strategies, timers); this
//! module is its tokio shell. One task owns the core; call actors, the registrar and the API
//! talk to it by bounded messages. It turns the core's actions into messages to call actors
//! (offers with the agent's registered contacts), `queue_log` rows for the store writer and
//! agent events for screen-pop subscribers. Every few seconds it reconciles agents that are
//! "offered" or "on call" against the live call actors, so a lost hangup never leaves an agent
//! stuck.

pub mod core;
pub mod link;
pub mod peer;
mod shared;
pub mod wire;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::sip::transport::ReplyPath;
use crate::store::ops::StoreOp;
use crate::store::writer::StoreHandle;
use crate::store::{now_ts, Db};
pub use core::{
    Acd, AgentDef, AgentState, AgentView, OfferEnd, QueueConfig, QueueView, Strategy,
    TransferError, TransferOutcome,
};

pub const MAILBOX: usize = 4096;
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// How soon the ACD retries telling a caller whose mailbox was full that it left the queue.
const TELL_RETRY: Duration = Duration::from_millis(20);
/// Longest a caller transferred to an agent waits for that agent to become available
/// before going back to its queue (once rung, the queue's ring timeout bounds the ring).
pub const TRANSFER_WAIT: Duration = Duration::from_secs(30);

/// Where an agent can be reached: a registered contact, for agents registered over a
/// connection (TCP, TLS, WebSocket) the flow to send on, and the proxies to go through.
/// Defined here, with the ACD that consumes it, so the ACD does not import the registrar
/// (which reports it); the registrar re-exports it.
#[derive(Debug, Clone)]
pub struct Reachable {
    pub contact: String,
    pub flow: Option<ReplyPath>,
    /// The binding's Path (RFC 3327), in order: sent as the `Route` headers of the agent's
    /// INVITE, which then goes to the first one's address (the edge the phone registered
    /// through). Empty: straight to the contact (or its flow).
    pub path: Vec<String>,
}

/// A waiting caller's mailbox as the ACD sees it: somewhere to tell [`AcdEvent`]s. The call
/// actor's mailbox (`call::actor::CallInput`) implements it in `call`, which sits above
/// `acd` (docs/architecture.md): the ACD names no call type.
pub trait CallerMailbox: Send + Sync + std::fmt::Debug {
    /// Deliver without waiting (the ACD serves every call and never waits on one); the
    /// event comes back when the mailbox is full or closed.
    fn try_tell(&self, event: AcdEvent) -> Result<(), AcdEvent>;
    /// The call is gone.
    fn is_closed(&self) -> bool;
}

/// A handle to a caller's mailbox ([`CallerMailbox`]), cheap to clone.
#[derive(Debug, Clone)]
pub struct CallerTx(std::sync::Arc<dyn CallerMailbox>);

impl CallerTx {
    pub fn new(mailbox: impl CallerMailbox + 'static) -> CallerTx {
        CallerTx(std::sync::Arc::new(mailbox))
    }

    fn try_tell(&self, event: AcdEvent) -> Result<(), AcdEvent> {
        self.0.try_tell(event)
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// What the ACD tells a call actor.
#[derive(Debug, Clone)]
pub enum AcdEvent {
    /// In line at this position.
    Queued { position: usize },
    /// Could not join (`unknown_queue`, `no_agents`, `full`), or left without an agent
    /// (`timeout`, `no_agents`): the dialplan continues at the step's `on_unavailable`.
    Unavailable { reason: String },
    /// Where the caller stands: position (1 = next) and estimated wait in seconds.
    Position { position: usize, ewt_s: u64 },
    /// Ring this agent at these contacts, or in its browser page when `browser` (the agent
    /// turned its browser phone on: that is where it takes calls).
    Offer {
        agent: String,
        contacts: Vec<Reachable>,
        browser: bool,
        ring_timeout: Duration,
    },
}

/// What reaches the ACD.
#[derive(Debug)]
pub enum AcdMsg {
    Join {
        call: String,
        queue: String,
        segment: Option<String>,
        needs: Vec<(String, i64)>,
        caller: String,
        ticket_id: Option<i64>,
        tx: CallerTx,
    },
    /// The caller left before being connected (hung up, abandoned). Idempotent.
    Leave { call: String, reason: String },
    OfferEnded {
        call: String,
        agent: String,
        how: OfferEnd,
    },
    /// The agent's phone answered and the call bridged it.
    Connected { call: String, agent: String },
    /// A connected call ended; `by` = caller | agent.
    CallEnded { call: String, by: String },
    /// The connected agent blind-transferred the caller to the agent `to` (already checked
    /// to be a known agent other than itself): the caller's side stopped the agent's leg and
    /// plays music; the ACD offers the caller to `to` only, or back to its queue.
    TransferToAgent { call: String, to: String },
    /// The caller asks where it stands (answered with `AcdEvent::Position`).
    Position { call: String },
    /// The caller hung up for a callback: its place in line now belongs to the callback
    /// call reachable at `tx`.
    Callback { call: String, tx: CallerTx },
    /// Registrar: an agent's contacts changed (empty: unreachable). `def` comes with a
    /// fresh registration (queues and skills as stored); None keeps what the ACD knows.
    Reachability {
        name: String,
        def: Option<AgentDef>,
        contacts: Vec<Reachable>,
    },
    /// The agent's browser phone (`/agent` page) turned on or off: reachable while on, even
    /// with no SIP phone registered. `def` as with `Reachability` (the account as stored,
    /// so an agent added since start-up is known without a REGISTER).
    BrowserPhone {
        name: String,
        def: Option<AgentDef>,
        on: bool,
    },
    Command {
        agent: String,
        command: AgentCommand,
        reply: oneshot::Sender<Option<AgentState>>,
    },
    /// A feature code from a phone at `source`: carried out only when `source` is where
    /// the agent's phone registered from. Reply: the agent's new state, None if refused.
    Feature {
        agent: String,
        source: std::net::SocketAddr,
        command: FeatureCommand,
        reply: oneshot::Sender<Option<FeatureOutcome>>,
    },
    Agents {
        reply: oneshot::Sender<Vec<AgentView>>,
    },
    Queues {
        reply: oneshot::Sender<Vec<QueueView>>,
    },
}

/// What a feature code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FeatureOutcome {
    LoggedIn,
    LoggedOut,
    Paused,
    Unpaused,
}

impl FeatureOutcome {
    /// The confirmation prompt.
    pub fn prompt(self) -> &'static str {
        match self {
            FeatureOutcome::LoggedIn => "agent-logged-in",
            FeatureOutcome::LoggedOut => "agent-logged-out",
            FeatureOutcome::Paused => "agent-paused",
            FeatureOutcome::Unpaused => "agent-unpaused",
        }
    }
}

/// What a feature code asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FeatureCommand {
    Login,
    Logout,
    TogglePause,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentCommand {
    Login,
    Logout,
    Pause(String),
    Unpause,
    /// After-call work is done (the workspace's disposition): wrap-up ends now.
    EndWrapUp,
}

/// Screen pop and dashboard feed: what agent subscribers receive.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentFeed {
    State {
        agent: String,
        state: AgentState,
    },
    Offer {
        agent: String,
        call: String,
        queue: String,
        caller: String,
        ticket_id: Option<i64>,
    },
}

#[derive(Clone, Debug)]
pub struct AcdHandle {
    tx: mpsc::Sender<AcdMsg>,
    feed: broadcast::Sender<AgentFeed>,
    queues: std::sync::Arc<Vec<String>>,
    /// Every agent the ACD knows (loaded at start, or seen registering since): a transfer
    /// target is checked here without waiting on the ACD (a SIP REFER is answered at once).
    agents: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
}

impl AcdHandle {
    /// Never waits: a full ACD mailbox is logged and the message dropped. Only for messages
    /// whose loss changes no state. State-changing events never come through here: call
    /// actors use [`AcdHandle::try_send`] and keep what did not fit (their ACD outbox, resent
    /// on a timer, so the call task never blocks); the registrar and the API, which may wait,
    /// use [`AcdHandle::send_wait`].
    pub fn send(&self, msg: AcdMsg) {
        if let Err(e) = self.tx.try_send(msg) {
            warn!(error = %e, "ACD mailbox full or closed: event dropped");
        }
    }

    /// Never waits: hands the message back (`Some`) when the mailbox is full (the caller
    /// keeps it and tries again); a closed ACD (shutdown) takes it and drops it (`None`).
    pub fn try_send(&self, msg: AcdMsg) -> Option<AcdMsg> {
        match self.tx.try_send(msg) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
            Err(mpsc::error::TrySendError::Full(m)) => Some(m),
        }
    }

    /// Waits for room: for what a call leaves in its outbox when it ends.
    pub async fn send_wait(&self, msg: AcdMsg) {
        let _ = self.tx.send(msg).await;
    }

    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.iter().any(|q| q == name)
    }

    /// Whether `name` is an agent account the ACD knows (a transfer target).
    pub fn has_agent(&self, name: &str) -> bool {
        self.agents.read().is_ok_and(|a| a.contains(name))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentFeed> {
        self.feed.subscribe()
    }

    pub async fn command(&self, agent: &str, command: AgentCommand) -> Option<AgentState> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AcdMsg::Command {
                agent: agent.to_string(),
                command,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    pub async fn feature(
        &self,
        agent: &str,
        source: std::net::SocketAddr,
        command: FeatureCommand,
    ) -> Option<FeatureOutcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AcdMsg::Feature {
                agent: agent.to_string(),
                source,
                command,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    pub async fn agents(&self) -> Vec<AgentView> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(AcdMsg::Agents { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub async fn queues(&self) -> Vec<QueueView> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(AcdMsg::Queues { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

pub fn channel(queues: &[QueueConfig]) -> (AcdHandle, mpsc::Receiver<AcdMsg>) {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let (feed, _) = broadcast::channel(1024);
    (
        AcdHandle {
            tx,
            feed,
            queues: std::sync::Arc::new(queues.iter().map(|q| q.name.clone()).collect()),
            agents: Default::default(),
        },
        rx,
    )
}

/// host:port of a Contact URI, when it is an address literal.
fn contact_addr(contact: &str) -> Option<std::net::SocketAddr> {
    let uri = crate::sip::uri::Uri::parse(contact.trim_matches(|c| c == '<' || c == '>')).ok()?;
    let ip: std::net::IpAddr = uri
        .host
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()?;
    Some(std::net::SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// A core with every enabled agent account and their saved choices (login, pause) from the
/// database; with the account names and the saved choices for `persist`.
async fn load_core(
    queues: &[QueueConfig],
    auto_login: bool,
    db: &Db,
) -> (Acd, Vec<String>, HashMap<String, (bool, Option<String>)>) {
    let mut core = Acd::new(queues.to_vec(), auto_login, rand::random());
    let now = Instant::now();
    let mut names = Vec::new();
    match crate::store::agents::list(db).await {
        Ok(rows) => {
            for r in rows.into_iter().filter(|r| r.enabled) {
                names.push(r.name.clone());
                core.agent_update(
                    now,
                    AgentDef {
                        name: r.name,
                        queues: r.queues,
                        skills: r.skills,
                    },
                    false,
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot load agents; they appear when they register"),
    }
    let mut persisted = HashMap::new();
    match crate::store::agents::load_states(db).await {
        Ok(states) => {
            for (name, logged_out, paused) in states {
                core.restore_flags(&name, logged_out, paused.clone());
                persisted.insert(name, (logged_out, paused));
            }
        }
        Err(e) => warn!(error = %e, "cannot load agents' saved states; they start fresh"),
    }
    while core.poll_action().is_some() {}
    (core, names, persisted)
}

struct Member {
    tx: CallerTx,
    caller: String,
    ticket_id: Option<i64>,
    /// The node that holds the call; None: this node.
    node: Option<String>,
    /// This node's callers: what a new leader needs to take them over (docs/adr/0011).
    join: Option<shared::Shadow>,
}

impl Member {
    /// A caller of this node.
    fn own(tx: CallerTx, caller: String, ticket_id: Option<i64>, join: shared::Shadow) -> Member {
        Member {
            tx,
            caller,
            ticket_id,
            node: None,
            join: Some(join),
        }
    }
}

pub struct AcdService {
    core: Acd,
    calls: HashMap<String, Member>,
    /// Each agent's registered contacts per node (this node's under `node`): an agent's
    /// phone registers with one node, and a stale copy on another must not hide it.
    reach: HashMap<String, HashMap<String, Vec<Reachable>>>,
    /// Agents whose browser phone is on, and the node serving their page.
    browsers: HashMap<String, String>,
    /// This node's SIP address (`nodes.sip_addr`): other nodes ring its browser agents there.
    sip_addr: String,
    /// Other nodes' SIP addresses, from their browser-phone announcements (leader).
    node_sip: HashMap<String, String>,
    /// What builds a core again when this node becomes the cluster's ACD leader.
    queue_cfgs: Vec<QueueConfig>,
    auto_login: bool,
    db: Db,
    node: String,
    /// Alone (today's single node), or leading / following the cluster (ADR 0011).
    mode: shared::Mode,
    /// The link's sending side, when queues are shared.
    out: Option<mpsc::Sender<link::Outgoing>>,
    /// Agent accounts learnt from registrations (re-announced to a new leader).
    defs: HashMap<String, AgentDef>,
    /// Requests sent to the leader, waiting for its answer.
    pending: HashMap<u64, (Instant, shared::Pending)>,
    next_req: u64,
    /// Callers re-announced to a new leader, taken over in join order when the window ends.
    rejoins: Vec<shared::Shadowed>,
    resync_until: Option<Instant>,
    /// The link's events, taken by `run`.
    link_events: Option<mpsc::Receiver<link::LinkEvent>>,
    store: StoreHandle,
    feed: broadcast::Sender<AgentFeed>,
    /// The handle's set of known agents, kept up to date here.
    known: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
    /// Last persisted (logged out on purpose, pause reason) per agent.
    persisted: HashMap<String, (bool, Option<String>)>,
    /// Final events (`Unavailable`: the caller is out of the queue) that found the caller's
    /// mailbox full. They change the call's state (it leaves the queue and its dialplan
    /// continues), so they are kept and retried every [`TELL_RETRY`] until delivered or the
    /// call is gone, never dropped; the ACD itself never waits on a call.
    undelivered: Vec<(CallerTx, AcdEvent)>,
}

impl AcdService {
    /// Write an agent's persistent choices when they changed (login/logout/pause survive a
    /// restart; see migrations `agent_state`).
    fn persist(&mut self, agent: &str) {
        let Some(flags) = self.core.persistent_flags(agent) else {
            return;
        };
        if self.persisted.get(agent) == Some(&flags) {
            return;
        }
        self.store.submit(StoreOp::AgentState {
            agent: agent.to_string(),
            logged_out: flags.0,
            paused_reason: flags.1.clone(),
            at: now_ts(),
        });
        self.persisted.insert(agent.to_string(), flags);
    }

    /// Load every agent account (unreachable until its phone registers).
    pub async fn new(
        handle: &AcdHandle,
        queues: Vec<QueueConfig>,
        auto_login: bool,
        db: &Db,
        store: StoreHandle,
    ) -> AcdService {
        let (core, names, persisted) = load_core(&queues, auto_login, db).await;
        if let Ok(mut known) = handle.agents.write() {
            known.extend(names);
        }
        AcdService {
            known: handle.agents.clone(),
            core,
            calls: HashMap::new(),
            reach: HashMap::new(),
            browsers: HashMap::new(),
            sip_addr: String::new(),
            node_sip: HashMap::new(),
            queue_cfgs: queues,
            auto_login,
            db: db.clone(),
            node: String::new(),
            mode: shared::Mode::Alone,
            out: None,
            defs: HashMap::new(),
            pending: HashMap::new(),
            next_req: 0,
            rejoins: Vec::new(),
            resync_until: None,
            link_events: None,
            store,
            feed: handle.feed.clone(),
            persisted,
            undelivered: Vec::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<AcdMsg>, shutdown: CancellationToken) {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        let mut retry = tokio::time::interval(TELL_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = self.link_events.take();
        loop {
            let deadline = self
                .core
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(far);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(Instant::now(), m),
                    None => break,
                },
                _ = &mut sleep => self.core.handle_timeout(Instant::now()),
                _ = reconcile.tick() => self.reconcile(Instant::now()),
                _ = retry.tick(), if !self.undelivered.is_empty() => self.retry_undelivered(),
                ev = shared::next_event(&mut events), if events.is_some() => match ev {
                    Some(ev) => self.on_link(Instant::now(), ev).await,
                    None => events = None,
                },
                _ = shared::until(self.resync_until), if self.resync_until.is_some() => {
                    self.take_over_rejoins(Instant::now());
                }
            }
            self.drain();
        }
    }

    fn handle(&mut self, now: Instant, msg: AcdMsg) {
        if self.mode == shared::Mode::Follower {
            // Another node leads: it decides, this node keeps what it needs to tell a
            // new leader (docs/adr/0011).
            return self.forward(now, msg);
        }
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
                let join = shared::Shadow::new(now, &queue, segment.as_deref(), &needs);
                self.calls
                    .insert(call.clone(), Member::own(tx, caller, ticket_id, join));
                self.core
                    .join(now, &call, &queue, segment.as_deref(), needs);
            }
            AcdMsg::Leave { call, reason } => {
                self.core.leave(now, &call, &reason);
                self.calls.remove(&call);
            }
            AcdMsg::OfferEnded { call, agent, how } => {
                self.core.offer_ended(now, &call, &agent, how)
            }
            AcdMsg::Connected { call, agent } => {
                self.shadow_connected(&call, Some(&agent));
                if !self.core.answered(now, &call, &agent) {
                    // The core no longer expects this agent on this call (reconciled away):
                    // the call actor keeps the bridge, the core will not double-book the agent.
                    warn!(%call, %agent, "connect not expected by the ACD");
                }
            }
            AcdMsg::Position { call } => {
                if let Some((position, ewt_s)) = self.core.standing(now, &call) {
                    self.tell(&call, AcdEvent::Position { position, ewt_s });
                }
            }
            AcdMsg::Callback { call, tx } => {
                if let Some(m) = self.calls.get_mut(&call) {
                    m.tx = tx;
                    if let Some(j) = &mut m.join {
                        j.callback = true;
                    }
                    self.core.callback(now, &call);
                }
            }
            AcdMsg::CallEnded { call, by } => {
                self.core.call_ended(now, &call, &by);
                self.calls.remove(&call);
            }
            AcdMsg::TransferToAgent { call, to } => {
                self.shadow_connected(&call, None);
                match self.core.transfer_to_agent(now, &call, &to, TRANSFER_WAIT) {
                    Ok(how) => info!(%call, agent = %to, ?how, "caller transferred to an agent"),
                    Err(e) => {
                        // The caller's side already let its agent go: rather than leave it
                        // with music and no queue, it leaves the line as a refused caller.
                        warn!(%call, agent = %to, error = %e, "transfer to an agent refused");
                        self.core.call_ended(now, &call, "transfer");
                        self.tell_final(
                            &call,
                            AcdEvent::Unavailable {
                                reason: "transfer_failed".into(),
                            },
                        );
                    }
                }
            }
            AcdMsg::Reachability {
                name,
                def,
                contacts,
            } => {
                let node = self.node.clone();
                self.reachability(now, &node, name, def, contacts);
            }
            AcdMsg::BrowserPhone { name, def, on } => {
                let node = self.node.clone();
                self.browser_phone(now, &node, name, def, on);
            }
            AcdMsg::Command {
                agent,
                command,
                reply,
            } => {
                let known = match &command {
                    AgentCommand::Login => self.core.login(now, &agent),
                    AgentCommand::Logout => self.core.logout(now, &agent),
                    AgentCommand::Pause(r) => self.core.pause(now, &agent, r),
                    AgentCommand::Unpause => self.core.unpause(now, &agent),
                    AgentCommand::EndWrapUp => self.core.end_wrapup(now, &agent),
                };
                let _ = reply.send(known.then(|| self.core.agent_state(&agent)).flatten());
                self.persist(&agent);
            }
            AcdMsg::Feature {
                agent,
                source,
                command,
                reply,
            } => {
                // The REGISTER's source when known; after a restart the restored binding has
                // only its Contact, whose host:port must then match.
                let registered_here = self.contacts_of(&agent).iter().any(|c| match &c.flow {
                    Some(f) => f.peer() == source,
                    None => contact_addr(&c.contact) == Some(source),
                });
                if !registered_here {
                    warn!(target: "security", %agent, %source, "feature code from an address the agent did not register from");
                    let _ = reply.send(None);
                    return;
                }
                let done = match command {
                    FeatureCommand::Login => self
                        .core
                        .login(now, &agent)
                        .then_some(FeatureOutcome::LoggedIn),
                    FeatureCommand::Logout => self
                        .core
                        .logout(now, &agent)
                        .then_some(FeatureOutcome::LoggedOut),
                    FeatureCommand::TogglePause if self.core.is_paused(&agent) => self
                        .core
                        .unpause(now, &agent)
                        .then_some(FeatureOutcome::Unpaused),
                    FeatureCommand::TogglePause => self
                        .core
                        .pause(now, &agent, "phone")
                        .then_some(FeatureOutcome::Paused),
                };
                let _ = reply.send(done);
                self.persist(&agent);
            }
            AcdMsg::Agents { reply } => {
                let _ = reply.send(self.core.agents_view(now));
            }
            AcdMsg::Queues { reply } => {
                let _ = reply.send(self.core.queues_view(now));
            }
        }
    }

    /// An agent account is known from now on (a transfer target).
    fn learn(&self, name: &str) {
        let new = self.known.read().is_ok_and(|k| !k.contains(name));
        if new {
            if let Ok(mut k) = self.known.write() {
                k.insert(name.to_string());
            }
        }
    }

    /// Agents busy with calls whose actor is gone: end those calls in the core.
    fn reconcile(&mut self, now: Instant) {
        if self.reconcile_shared(now) {
            return;
        }
        for (agent, call) in self.core.busy_calls() {
            let gone = self.calls.get(&call).is_none_or(|m| m.tx.is_closed());
            if gone {
                warn!(%agent, %call, "reconcile: the agent's call is gone; freeing the agent");
                self.core.call_ended(now, &call, "lost");
                self.core.leave(now, &call, "lost");
                self.calls.remove(&call);
            }
        }
        let lost: Vec<String> = self
            .core
            .waiting_calls()
            .filter(|c| self.calls.get(*c).is_none_or(|m| m.tx.is_closed()))
            .map(str::to_string)
            .collect();
        for call in lost {
            debug!(%call, "reconcile: waiting caller is gone");
            self.core.leave(now, &call, "lost");
            self.calls.remove(&call);
        }
    }

    fn tell(&self, call: &str, event: AcdEvent) -> bool {
        match self.calls.get(call) {
            Some(m) => m.tx.try_tell(event).is_ok(),
            None => false,
        }
    }

    /// Tell a caller it is out of the queue (refused, timed out, no agents): the call's
    /// state changes on it, so a full mailbox keeps the event for a retry instead of
    /// dropping it (the call would otherwise wait in line that no longer holds it).
    fn tell_final(&mut self, call: &str, event: AcdEvent) {
        let Some(m) = self.calls.remove(call) else {
            return;
        };
        if let Err(event) = m.tx.try_tell(event) {
            if !m.tx.is_closed() {
                warn!(%call, "caller's mailbox full: queue exit kept and retried");
                self.undelivered.push((m.tx, event));
            }
        }
    }

    fn retry_undelivered(&mut self) {
        let pending = std::mem::take(&mut self.undelivered);
        for (tx, event) in pending {
            if let Err(event) = tx.try_tell(event) {
                if !tx.is_closed() {
                    self.undelivered.push((tx, event));
                }
            }
        }
    }

    fn drain(&mut self) {
        let now = Instant::now();
        while let Some(action) = self.core.poll_action() {
            match action {
                core::Action::Queued { call, position } => {
                    self.tell(&call, AcdEvent::Queued { position });
                }
                core::Action::Refused { call, reason } => {
                    self.tell_final(
                        &call,
                        AcdEvent::Unavailable {
                            reason: reason.as_str().to_string(),
                        },
                    );
                }
                core::Action::Leave { call, reason } => {
                    self.tell_final(
                        &call,
                        AcdEvent::Unavailable {
                            reason: reason.to_string(),
                        },
                    );
                }
                core::Action::Offer {
                    call,
                    queue,
                    agents,
                    ring_timeout,
                } => {
                    for agent in agents {
                        let mut contacts = self.contacts_of(&agent);
                        // A browser phone is rung by the node serving its page. When that is
                        // the node holding the caller, it rings the page itself; else the
                        // holder rings a SIP contact at the page's node, which rings the page
                        // (`peer`): first, as the page is where the agent takes calls.
                        let holder = self
                            .calls
                            .get(&call)
                            .and_then(|m| m.node.as_deref())
                            .unwrap_or(&self.node);
                        let page_node = self.browsers.get(&agent);
                        let browser = page_node.is_some_and(|n| n == holder);
                        if let Some(sip) = page_node
                            .filter(|n| *n != holder)
                            .and_then(|n| self.sip_of(n))
                        {
                            contacts.insert(
                                0,
                                Reachable {
                                    contact: peer::contact(&agent, sip),
                                    flow: None,
                                    path: Vec::new(),
                                },
                            );
                        }
                        let delivered = (browser || !contacts.is_empty())
                            && self.tell(
                                &call,
                                AcdEvent::Offer {
                                    agent: agent.clone(),
                                    contacts,
                                    browser,
                                    ring_timeout,
                                },
                            );
                        if delivered {
                            if let Some(m) = self.calls.get(&call) {
                                let feed = AgentFeed::Offer {
                                    agent: agent.clone(),
                                    call: call.clone(),
                                    queue: queue.clone(),
                                    caller: m.caller.clone(),
                                    ticket_id: m.ticket_id,
                                };
                                self.publish(feed);
                            }
                        } else if self.calls.get(&call).is_none_or(|m| m.tx.is_closed()) {
                            info!(%call, "offer for a call that is gone: it leaves the queue");
                            self.core.leave(now, &call, "lost");
                            self.calls.remove(&call);
                        } else {
                            info!(%agent, %call, "offer could not be delivered");
                            self.core.offer_ended(now, &call, &agent, OfferEnd::Failed);
                        }
                    }
                }
                core::Action::Log(e) => self.store.submit(StoreOp::QueueLog {
                    id: uuid::Uuid::new_v4().to_string(),
                    at: now_ts(),
                    queue: e.queue,
                    call_id: e.call,
                    agent: e.agent,
                    event: e.event.to_string(),
                    position: e.position,
                    wait_ms: e.wait_ms,
                    talk_ms: e.talk_ms,
                    reason: e.reason,
                }),
                core::Action::AgentChanged { agent, state } => {
                    debug!(%agent, state = state.as_str(), "agent state");
                    // Auto-pause after missed offers changes a persistent choice too.
                    self.persist(&agent);
                    self.publish(AgentFeed::State { agent, state });
                }
            }
        }
    }
}
