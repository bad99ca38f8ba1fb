//! The ACD core: one authoritative state machine for agents and waiting callers, sans-IO.
//!
//! Inputs are events with the current time (a caller joins or leaves, an offer ends, an agent
//! answers, a call ends, an agent registers or logs in, pauses, ...). Outputs are [`Action`]s
//! drained by the service: offers to make, callers to tell, `queue_log` rows to write. The
//! core never sends anything itself and owns no clock, so it is tested in virtual time.
//!
//! Why one state machine: the yardsticks' classic failures (an agent offered two calls, a call
//! bridged to two agents, an agent stuck "on call" after a lost hangup) come from state kept
//! in several places. Here every agent state change goes through [`Acd`], every transition
//! checks the call it concerns (so late or repeated events are harmless), and the service
//! reconciles against live calls.
//!
//! Cost: work per event is bounded by the members of the queues involved and the offers made,
//! never by all queues × all members. Timers (wrap-up end, maximum wait) sit in one heap.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How a queue chooses among available agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Ring every available agent; the first to answer takes the call.
    RingAll,
    /// The agent idle the longest.
    LongestIdle,
    /// Members in turn, starting after the last one offered.
    RoundRobin,
    /// The agent who took the fewest calls, then the longest idle.
    FewestCalls,
    Random,
    /// Highest level on the queue's (and the caller's) required skills, then longest idle.
    Skills,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "ring-all" | "ringall" => Strategy::RingAll,
            "longest-idle" => Strategy::LongestIdle,
            "round-robin" => Strategy::RoundRobin,
            "fewest-calls" => Strategy::FewestCalls,
            "random" => Strategy::Random,
            "skills" | "skills-based" => Strategy::Skills,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RingAll => "ring-all",
            Strategy::LongestIdle => "longest-idle",
            Strategy::RoundRobin => "round-robin",
            Strategy::FewestCalls => "fewest-calls",
            Strategy::Random => "random",
            Strategy::Skills => "skills",
        }
    }
}

/// A queue's rules (from `[[queue]]` in the config).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: Strategy,
    /// Skills every agent must have (at least the given level) to take this queue's calls.
    pub required_skills: Vec<(String, i64)>,
    pub ring_timeout: Duration,
    pub wrapup: Duration,
    /// Offers in a row an agent lets ring out before being paused (`0`: never).
    pub max_misses: u32,
    /// Longest a caller waits before leaving with `timeout` (the dialplan decides what next).
    pub max_wait: Option<Duration>,
    /// Most callers waiting at once; beyond it callers are refused with `full`.
    pub max_len: Option<usize>,
    /// Whether callers may join while no agent is logged in.
    pub join_empty: bool,
    /// Whether waiting callers leave when the last agent logs out.
    pub leave_when_empty: bool,
    /// Caller priority by ticket segment (higher first), e.g. vip = 10.
    pub segment_priority: HashMap<String, i32>,
    /// Answered within this wait counts toward the service level.
    pub service_level: Duration,
    /// Pause before a caller starts a new round of agents who all missed it (Asterisk's
    /// `retry`): no hot loop when every phone fails at once.
    pub retry: Duration,
}

impl QueueConfig {
    pub fn new(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_string(),
            strategy: Strategy::LongestIdle,
            required_skills: Vec::new(),
            ring_timeout: Duration::from_secs(15),
            wrapup: Duration::from_secs(5),
            max_misses: 3,
            max_wait: None,
            max_len: None,
            join_empty: true,
            leave_when_empty: false,
            segment_priority: HashMap::new(),
            service_level: Duration::from_secs(30),
            retry: Duration::from_secs(2),
        }
    }
}

/// An agent account as the ACD needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentDef {
    pub name: String,
    pub queues: Vec<String>,
    pub skills: Vec<(String, i64)>,
}

/// The one state an agent is in, as shown by the API and written to `queue_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    LoggedOut,
    Available,
    Offered,
    OnCall,
    WrapUp,
    Paused,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Available => "available",
            AgentState::Offered => "offered",
            AgentState::OnCall => "on_call",
            AgentState::WrapUp => "wrap_up",
            AgentState::Paused => "paused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    Idle,
    Offered { call: String },
    OnCall { call: String },
    WrapUp { until: Instant },
}

#[derive(Debug, Clone)]
struct Agent {
    def: AgentDef,
    skills: HashMap<String, i64>,
    reachable: bool,
    logged_in: bool,
    /// Logged out on purpose (API, feature code): a phone registering again does not log
    /// the agent back in, only an explicit login does.
    explicit_logout: bool,
    paused: Option<String>,
    activity: Activity,
    /// Start of the current idle period (longest-idle ordering).
    idle_since: Instant,
    since: Instant,
    calls_taken: u64,
    misses: u32,
    /// Bumped on every activity change so stale timers are ignored.
    epoch: u64,
}

impl Agent {
    fn state(&self) -> AgentState {
        match &self.activity {
            Activity::Offered { .. } => AgentState::Offered,
            Activity::OnCall { .. } => AgentState::OnCall,
            Activity::WrapUp { .. } => AgentState::WrapUp,
            Activity::Idle if !self.reachable || !self.logged_in => AgentState::LoggedOut,
            Activity::Idle if self.paused.is_some() => AgentState::Paused,
            Activity::Idle => AgentState::Available,
        }
    }

    fn available(&self) -> bool {
        self.state() == AgentState::Available
    }

    fn logged_in(&self) -> bool {
        self.reachable && self.logged_in
    }

    fn meets(&self, needs: &[(String, i64)]) -> bool {
        needs
            .iter()
            .all(|(s, lvl)| self.skills.get(s).is_some_and(|l| l >= lvl))
    }

    fn score(&self, needs: &[(String, i64)]) -> i64 {
        needs
            .iter()
            .map(|(s, _)| self.skills.get(s).copied().unwrap_or(0))
            .sum()
    }
}

/// Why a caller left or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownQueue,
    /// No agent logged in and the queue does not take callers then (`join_empty = false`).
    NoAgents,
    Full,
    /// Already in a queue.
    Duplicate,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownQueue => "unknown_queue",
            Refusal::NoAgents => "no_agents",
            Refusal::Full => "full",
            Refusal::Duplicate => "duplicate",
        }
    }
}

/// How an offer to an agent ended without a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferEnd {
    /// Rang out (ring timeout) — counts as a miss.
    NoAnswer,
    /// Refused by the phone (486/603) — counts as a miss.
    Busy,
    /// Could not reach the phone (error, timeout of the transaction).
    Failed,
    /// Another agent answered first, or the caller left: not the agent's fault.
    Cancelled,
}

impl OfferEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferEnd::NoAnswer => "no_answer",
            OfferEnd::Busy => "busy",
            OfferEnd::Failed => "failed",
            OfferEnd::Cancelled => "cancelled",
        }
    }
}

/// Why a blind transfer to an agent was refused (the caller stays with its agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the call is not connected to an agent")]
    NotConnected,
    #[error("no such agent")]
    UnknownAgent,
    #[error("an agent cannot transfer a call to itself")]
    ToSelf,
}

/// What a blind transfer to an agent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The caller waits for the agent (rung at once when available).
    Directed,
    /// The agent is not logged in: the caller went straight back to its queue.
    FellBack,
}

/// One `queue_log` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub queue: String,
    pub call: Option<String>,
    pub agent: Option<String>,
    /// enter | offer | ringnoanswer | connect | abandon | timeout | exitempty | full |
    /// complete | pause | unpause | login | logout | fallback (a caller transferred to an
    /// agent goes back to its queue: `agent` the target, `reason` why)
    pub event: &'static str,
    pub position: Option<i64>,
    pub wait_ms: Option<i64>,
    pub talk_ms: Option<i64>,
    pub reason: Option<String>,
}

impl LogEntry {
    fn new(queue: &str, event: &'static str) -> LogEntry {
        LogEntry {
            queue: queue.to_string(),
            call: None,
            agent: None,
            event,
            position: None,
            wait_ms: None,
            talk_ms: None,
            reason: None,
        }
    }
}

/// What the core asks the service to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The caller is in the queue at this position (1 = next).
    Queued {
        call: String,
        position: usize,
    },
    /// The caller could not join.
    Refused {
        call: String,
        reason: Refusal,
    },
    /// Ring these agents for this call.
    Offer {
        call: String,
        queue: String,
        agents: Vec<String>,
        ring_timeout: Duration,
    },
    /// The caller leaves the queue without an agent (max wait, or the last agent left).
    Leave {
        call: String,
        reason: &'static str,
    },
    Log(LogEntry),
    /// An agent's state changed (dashboard, screen pop subscribers).
    AgentChanged {
        agent: String,
        state: AgentState,
    },
}

#[derive(Debug, Clone)]
struct Waiting {
    queue: String,
    priority: i32,
    seq: u64,
    joined: Instant,
    needs: Vec<(String, i64)>,
    /// Agents currently ringing for this call.
    ringing: Vec<String>,
    /// Agents tried (and missed) since the last full round.
    tried: Vec<String>,
    /// Set while the caller pauses before its next round (`retry`).
    retry_at: Option<Instant>,
    /// A callback: the customer hung up and was promised a call, so no maximum wait and
    /// no leaving an empty queue — it waits for an agent however long that takes.
    callback: bool,
    connected: Option<(String, Instant)>,
    /// Blind-transferred to this agent (index): offered to nobody else until the agent
    /// takes it, misses it, leaves, or the transfer's wait runs out; then it is an ordinary
    /// caller of its queue again (its priority and place in line kept).
    directed: Option<usize>,
}

impl Waiting {
    /// A caller in line at `(priority, seq)` since `joined`, not yet rung.
    fn new(
        queue: &str,
        priority: i32,
        seq: u64,
        joined: Instant,
        needs: Vec<(String, i64)>,
    ) -> Waiting {
        Waiting {
            queue: queue.to_string(),
            priority,
            seq,
            joined,
            needs,
            ringing: Vec::new(),
            tried: Vec::new(),
            retry_at: None,
            callback: false,
            connected: None,
            directed: None,
        }
    }
}

/// Per-queue counters since start (the API's service level, ASA, AHT, abandonment).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueStats {
    pub entered: u64,
    pub answered: u64,
    pub answered_within_sl: u64,
    pub abandoned: u64,
    pub timed_out: u64,
    pub completed: u64,
    pub total_wait_answered_ms: u64,
    pub total_talk_ms: u64,
}

impl QueueStats {
    /// Answered within the service-level time over calls that ended their wait (answered or
    /// abandoned), as Asterisk's `servicelevelperf`; `None` before any.
    pub fn service_level(&self) -> Option<f64> {
        let base = self.answered + self.abandoned;
        (base > 0).then(|| self.answered_within_sl as f64 / base as f64)
    }
    pub fn asa_ms(&self) -> Option<u64> {
        (self.answered > 0).then(|| self.total_wait_answered_ms / self.answered)
    }
    pub fn aht_ms(&self) -> Option<u64> {
        (self.completed > 0).then(|| self.total_talk_ms / self.completed)
    }
    pub fn abandon_rate(&self) -> Option<f64> {
        let base = self.answered + self.abandoned;
        (base > 0).then(|| self.abandoned as f64 / base as f64)
    }
}

struct Queue {
    cfg: QueueConfig,
    /// Waiting callers by (priority desc, arrival).
    order: BTreeSet<(Reverse<i32>, u64)>,
    by_seq: HashMap<u64, String>,
    /// Agent indexes that serve this queue.
    members: Vec<usize>,
    rr_next: usize,
    stats: QueueStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    WrapUp {
        agent: usize,
        epoch: u64,
    },
    MaxWait {
        seq: u64,
    },
    Retry {
        seq: u64,
    },
    /// End of the wait for the agent a caller was transferred to.
    Directed {
        seq: u64,
    },
}

/// Snapshot of one agent for the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentView {
    pub name: String,
    pub state: AgentState,
    pub reachable: bool,
    pub paused_reason: Option<String>,
    pub call: Option<String>,
    pub queues: Vec<String>,
    pub skills: Vec<(String, i64)>,
    pub calls_taken: u64,
    pub missed_in_a_row: u32,
    pub state_for_s: u64,
}

/// Snapshot of one queue for the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueView {
    pub name: String,
    pub strategy: String,
    pub waiting: usize,
    pub longest_wait_s: u64,
    pub agents_logged_in: usize,
    pub agents_available: usize,
    pub stats: QueueStats,
    pub service_level: Option<f64>,
    pub asa_ms: Option<u64>,
    pub aht_ms: Option<u64>,
    pub abandon_rate: Option<f64>,
    /// Of `waiting`, the callers who hung up after asking to be called back
    /// (`callback_after_s`) and keep their place: the wallboard's and the agent workspace's
    /// pending callbacks.
    pub callbacks_pending: usize,
}

/// A caller re-announced to a new leader ([`Acd::rejoin`]).
#[derive(Debug, Clone, Copy)]
pub struct Rejoin<'a> {
    pub call: &'a str,
    pub queue: &'a str,
    pub segment: Option<&'a str>,
    pub needs: &'a [(String, i64)],
    /// How long it has waited already.
    pub waited: Duration,
    pub callback: bool,
    /// The agent it is connected to, if any.
    pub agent: Option<&'a str>,
}

pub struct Acd {
    queues: HashMap<String, Queue>,
    agents: Vec<Agent>,
    agent_index: HashMap<String, usize>,
    waiting: HashMap<String, Waiting>,
    /// Callers transferred to an agent (index), in transfer order: they come before the
    /// agent's queues when it becomes available.
    directed: HashMap<usize, Vec<String>>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    next_seq: u64,
    rng: u64,
    auto_login: bool,
    actions: VecDeque<Action>,
}

impl Acd {
    /// `auto_login`: a registered phone counts as a logged-in agent (else the agent logs in
    /// by API or feature code).
    pub fn new(queues: Vec<QueueConfig>, auto_login: bool, seed: u64) -> Acd {
        Acd {
            queues: queues
                .into_iter()
                .map(|cfg| {
                    (
                        cfg.name.clone(),
                        Queue {
                            cfg,
                            order: BTreeSet::new(),
                            by_seq: HashMap::new(),
                            members: Vec::new(),
                            rr_next: 0,
                            stats: QueueStats::default(),
                        },
                    )
                })
                .collect(),
            agents: Vec::new(),
            agent_index: HashMap::new(),
            waiting: HashMap::new(),
            directed: HashMap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            rng: seed | 1,
            auto_login,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    pub fn agent_state(&self, name: &str) -> Option<AgentState> {
        self.agent_index.get(name).map(|&i| self.agents[i].state())
    }

    /// What survives a restart: (explicitly logged out, pause reason).
    pub fn persistent_flags(&self, name: &str) -> Option<(bool, Option<String>)> {
        let a = &self.agents[*self.agent_index.get(name)?];
        Some((a.explicit_logout, a.paused.clone()))
    }

    /// Restore what a previous run persisted (before any registration is seen).
    pub fn restore_flags(&mut self, name: &str, explicit_logout: bool, paused: Option<String>) {
        if let Some(&i) = self.agent_index.get(name) {
            let a = &mut self.agents[i];
            a.explicit_logout = explicit_logout;
            a.logged_in = !explicit_logout && a.logged_in;
            a.paused = paused;
        }
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.agent_index
            .get(name)
            .is_some_and(|&i| self.agents[i].paused.is_some())
    }

    /// The calls agents are busy with (offered or on call), for reconciliation.
    pub fn busy_calls(&self) -> Vec<(String, String)> {
        self.agents
            .iter()
            .filter_map(|a| match &a.activity {
                Activity::Offered { call } | Activity::OnCall { call } => {
                    Some((a.def.name.clone(), call.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn waiting_calls(&self) -> impl Iterator<Item = &str> {
        self.waiting.keys().map(String::as_str)
    }

    // ---- agents ------------------------------------------------------------------------

    /// An agent's account was seen (registration, start-up) with its reachability.
    pub fn agent_update(&mut self, now: Instant, def: AgentDef, reachable: bool) {
        let idx = match self.agent_index.get(&def.name) {
            Some(&i) => i,
            None => {
                let i = self.agents.len();
                self.agents.push(Agent {
                    skills: HashMap::new(),
                    def: AgentDef {
                        name: def.name.clone(),
                        queues: Vec::new(),
                        skills: Vec::new(),
                    },
                    reachable: false,
                    logged_in: false,
                    explicit_logout: false,
                    paused: None,
                    activity: Activity::Idle,
                    idle_since: now,
                    since: now,
                    calls_taken: 0,
                    misses: 0,
                    epoch: 0,
                });
                self.agent_index.insert(def.name.clone(), i);
                i
            }
        };
        let before = self.agents[idx].state();
        let was_in = self.agents[idx].logged_in();
        if self.agents[idx].def.queues != def.queues {
            for q in self.queues.values_mut() {
                q.members.retain(|&m| m != idx);
            }
            for qn in &def.queues {
                if let Some(q) = self.queues.get_mut(qn) {
                    q.members.push(idx);
                }
            }
        }
        let a = &mut self.agents[idx];
        a.skills = def.skills.iter().cloned().collect();
        a.def = def;
        if reachable && !a.reachable && self.auto_login && !a.explicit_logout {
            a.logged_in = true;
        }
        a.reachable = reachable;
        let now_in = a.logged_in();
        if now_in != was_in {
            self.log_agent(idx, if now_in { "login" } else { "logout" }, None);
            if !now_in {
                self.check_empty_queues(now, idx);
            }
        }
        self.after_agent_change(now, idx, before);
    }

    /// Reachability changed for a known agent (its account unchanged). False if unknown.
    pub fn set_reachable(&mut self, now: Instant, agent: &str, reachable: bool) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let def = self.agents[idx].def.clone();
        self.agent_update(now, def, reachable);
        true
    }

    pub fn login(&mut self, now: Instant, agent: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let before = self.agents[idx].state();
        self.agents[idx].explicit_logout = false;
        if !self.agents[idx].logged_in {
            self.agents[idx].logged_in = true;
            if self.agents[idx].reachable {
                self.log_agent(idx, "login", None);
            }
        }
        self.after_agent_change(now, idx, before);
        true
    }

    pub fn logout(&mut self, now: Instant, agent: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let before = self.agents[idx].state();
        self.agents[idx].explicit_logout = true;
        if self.agents[idx].logged_in {
            let was_in = self.agents[idx].logged_in();
            self.agents[idx].logged_in = false;
            if was_in {
                self.log_agent(idx, "logout", None);
                self.check_empty_queues(now, idx);
            }
        }
        self.after_agent_change(now, idx, before);
        true
    }

    pub fn pause(&mut self, now: Instant, agent: &str, reason: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let before = self.agents[idx].state();
        if self.agents[idx].paused.as_deref() != Some(reason) {
            self.agents[idx].paused = Some(reason.to_string());
            self.log_agent(idx, "pause", Some(reason.to_string()));
        }
        self.after_agent_change(now, idx, before);
        true
    }

    pub fn unpause(&mut self, now: Instant, agent: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let before = self.agents[idx].state();
        if self.agents[idx].paused.take().is_some() {
            self.agents[idx].misses = 0;
            self.log_agent(idx, "unpause", None);
        }
        self.after_agent_change(now, idx, before);
        true
    }

    /// The agent finished its after-call work early (the workspace's disposition was
    /// submitted): wrap-up ends now instead of at its timer. Any other state is left alone.
    /// False: no such agent.
    pub fn end_wrapup(&mut self, now: Instant, agent: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        if matches!(self.agents[idx].activity, Activity::WrapUp { .. }) {
            // The epoch moves on, so the pending wrap-up timer fires into nothing.
            self.set_activity(now, idx, Activity::Idle);
        }
        true
    }

    fn log_agent(&mut self, idx: usize, event: &'static str, reason: Option<String>) {
        let a = &self.agents[idx];
        let queues = a.def.queues.clone();
        let name = a.def.name.clone();
        for q in queues.iter().filter(|q| self.queues.contains_key(*q)) {
            let mut e = LogEntry::new(q, event);
            e.agent = Some(name.clone());
            e.reason = reason.clone();
            self.actions.push_back(Action::Log(e));
        }
    }

    /// Report a state change and give a newly available agent work.
    fn after_agent_change(&mut self, now: Instant, idx: usize, before: AgentState) {
        let after = self.agents[idx].state();
        if after != before {
            self.agents[idx].since = now;
            if after == AgentState::Available && before != AgentState::Available {
                self.agents[idx].idle_since = now;
            }
            self.actions.push_back(Action::AgentChanged {
                agent: self.agents[idx].def.name.clone(),
                state: after,
            });
        }
        if after == AgentState::Available {
            self.dispatch_for_agent(now, idx);
        } else if after == AgentState::LoggedOut {
            // Callers transferred to an agent who left go back to their queues now.
            let calls = self.directed.get(&idx).cloned().unwrap_or_default();
            for call in calls {
                if self
                    .waiting
                    .get(&call)
                    .is_some_and(|w| w.ringing.is_empty())
                {
                    self.fall_back(now, &call, "logged_out", true);
                }
            }
        }
    }

    fn set_activity(&mut self, now: Instant, idx: usize, activity: Activity) {
        let before = self.agents[idx].state();
        self.agents[idx].activity = activity;
        self.agents[idx].epoch += 1;
        self.after_agent_change(now, idx, before);
    }

    /// When the last logged-in member of a queue leaves and the queue empties on that, its
    /// waiting callers leave too (`leave_when_empty`).
    fn check_empty_queues(&mut self, _now: Instant, idx: usize) {
        let queues = self.agents[idx].def.queues.clone();
        for qn in queues {
            let Some(q) = self.queues.get(&qn) else {
                continue;
            };
            if !q.cfg.leave_when_empty || q.members.iter().any(|&m| self.agents[m].logged_in()) {
                continue;
            }
            let calls: Vec<String> = q
                .order
                .iter()
                .filter_map(|(_, s)| q.by_seq.get(s).cloned())
                .collect();
            for call in calls {
                if self.waiting.get(&call).is_some_and(|w| {
                    w.ringing.is_empty()
                        && w.connected.is_none()
                        && !w.callback
                        && w.directed.is_none()
                }) {
                    self.remove_waiting(&call, "exitempty", None);
                    self.actions.push_back(Action::Leave {
                        call,
                        reason: "no_agents",
                    });
                }
            }
        }
    }

    // ---- callers -----------------------------------------------------------------------

    /// A caller asks to wait in `queue`. `segment` sets its priority; `needs` adds skills
    /// the call requires (e.g. `lang:zh`).
    pub fn join(
        &mut self,
        now: Instant,
        call: &str,
        queue: &str,
        segment: Option<&str>,
        needs: Vec<(String, i64)>,
    ) {
        let refuse = |s: &mut Acd, reason: Refusal| {
            s.actions.push_back(Action::Refused {
                call: call.to_string(),
                reason,
            });
        };
        if self.waiting.contains_key(call) {
            return refuse(self, Refusal::Duplicate);
        }
        let Some(q) = self.queues.get(queue) else {
            return refuse(self, Refusal::UnknownQueue);
        };
        let logged_in = q.members.iter().any(|&m| self.agents[m].logged_in());
        if !logged_in && !q.cfg.join_empty {
            let mut e = LogEntry::new(queue, "joinempty");
            e.call = Some(call.to_string());
            self.actions.push_back(Action::Log(e));
            return refuse(self, Refusal::NoAgents);
        }
        if q.cfg.max_len.is_some_and(|m| q.order.len() >= m) {
            let mut e = LogEntry::new(queue, "full");
            e.call = Some(call.to_string());
            self.actions.push_back(Action::Log(e));
            return refuse(self, Refusal::Full);
        }
        let priority = segment
            .and_then(|s| q.cfg.segment_priority.get(s).copied())
            .unwrap_or(0);
        let mut all_needs = q.cfg.required_skills.clone();
        all_needs.extend(needs);
        let max_wait = q.cfg.max_wait;
        self.next_seq += 1;
        let seq = self.next_seq;
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.order.insert((Reverse(priority), seq));
        q.by_seq.insert(seq, call.to_string());
        q.stats.entered += 1;
        let position = q.order.range(..(Reverse(priority), seq)).count() + 1;
        self.waiting.insert(
            call.to_string(),
            Waiting::new(queue, priority, seq, now, all_needs),
        );
        if let Some(w) = max_wait {
            self.timers.push(Reverse((now + w, Timer::MaxWait { seq })));
        }
        let mut e = LogEntry::new(queue, "enter");
        e.call = Some(call.to_string());
        e.position = Some(position as i64);
        self.actions.push_back(Action::Log(e));
        self.actions.push_back(Action::Queued {
            call: call.to_string(),
            position,
        });
        self.dispatch_queue(now, queue);
    }

    /// A caller re-announced to a new ACD leader (docs/adr/0011): it joined `waited` ago
    /// (wait figures and the maximum wait count from then), is a callback or not, and may
    /// already be connected to `agent`. Logs nothing and announces no position (the first
    /// leader did both); a caller the core already holds is left as it is. The shell hands
    /// re-announced callers over in order of their join time, so the line keeps its order.
    pub fn rejoin(&mut self, now: Instant, rejoin: Rejoin<'_>) {
        let Rejoin {
            call,
            queue,
            segment,
            needs,
            waited,
            callback,
            agent,
        } = rejoin;
        if self.waiting.contains_key(call) {
            return;
        }
        let Some(q) = self.queues.get(queue) else {
            self.actions.push_back(Action::Refused {
                call: call.to_string(),
                reason: Refusal::UnknownQueue,
            });
            return;
        };
        let priority = segment
            .and_then(|s| q.cfg.segment_priority.get(s).copied())
            .unwrap_or(0);
        let mut all_needs = q.cfg.required_skills.clone();
        all_needs.extend(needs.iter().cloned());
        let max_wait = q.cfg.max_wait;
        let joined = now.checked_sub(waited).unwrap_or(now);
        self.next_seq += 1;
        let seq = self.next_seq;
        let on_call = agent.and_then(|a| self.agent_index.get(a).copied());
        let connected = on_call.map(|idx| (self.agents[idx].def.name.clone(), now));
        if connected.is_none() {
            if let Some(q) = self.queues.get_mut(queue) {
                q.order.insert((Reverse(priority), seq));
                q.by_seq.insert(seq, call.to_string());
            }
            if let Some(w) = max_wait.filter(|_| !callback) {
                self.timers
                    .push(Reverse(((joined + w).max(now), Timer::MaxWait { seq })));
            }
        }
        let mut waiting = Waiting::new(queue, priority, seq, joined, all_needs);
        waiting.callback = callback;
        waiting.connected = connected;
        self.waiting.insert(call.to_string(), waiting);
        match on_call {
            Some(idx) => self.set_activity_quiet(
                now,
                idx,
                Activity::OnCall {
                    call: call.to_string(),
                },
            ),
            None => self.dispatch_queue(now, queue),
        }
    }

    /// The caller is gone (hung up) or left on its own (dialplan, callback). Idempotent.
    pub fn leave(&mut self, now: Instant, call: &str, reason: &str) {
        let Some(w) = self.waiting.get(call) else {
            return;
        };
        if w.connected.is_some() {
            // A connected call ends through `call_ended`; treat this as the caller hanging up.
            self.call_ended(now, call, "caller");
            return;
        }
        let wait_ms = now.duration_since(w.joined).as_millis() as i64;
        let ringing = w.ringing.clone();
        let position = self.position(call);
        if let Some(q) = self.queues.get_mut(&w.queue) {
            q.stats.abandoned += 1;
        }
        self.remove_waiting(call, "abandon", Some((position, wait_ms, reason)));
        for agent in ringing {
            if let Some(&idx) = self.agent_index.get(&agent) {
                if self.agents[idx].activity
                    == (Activity::Offered {
                        call: call.to_string(),
                    })
                {
                    self.set_activity(now, idx, Activity::Idle);
                }
            }
        }
    }

    /// The caller hung up asking to be called back: the place in line is kept (the service
    /// now talks to the callback call). Logged as `callback`.
    pub fn callback(&mut self, now: Instant, call: &str) {
        let Some(w) = self.waiting.get_mut(call) else {
            return;
        };
        w.callback = true;
        let w = &*w;
        let mut e = LogEntry::new(&w.queue, "callback");
        e.call = Some(call.to_string());
        e.wait_ms = Some(now.duration_since(w.joined).as_millis() as i64);
        e.position = self.position(call);
        self.actions.push_back(Action::Log(e));
    }

    /// A waiting caller's position (1 = next) and estimated wait in seconds: callers ahead
    /// (and itself) times the queue's average handle time (3 min before any call completed),
    /// shared by the logged-in agents. Not for callers already ringing or connected.
    pub fn standing(&self, _now: Instant, call: &str) -> Option<(usize, u64)> {
        let w = self.waiting.get(call)?;
        if w.connected.is_some() {
            return None;
        }
        let q = self.queues.get(&w.queue)?;
        let position = q.order.range(..(Reverse(w.priority), w.seq)).count() + 1;
        let aht_s = q.stats.aht_ms().map_or(180, |ms| (ms / 1000).max(1));
        let agents = q
            .members
            .iter()
            .filter(|&&m| self.agents[m].logged_in() && self.agents[m].paused.is_none())
            .count()
            .max(1) as u64;
        Some((position, position as u64 * aht_s / agents))
    }

    fn position(&self, call: &str) -> Option<i64> {
        let w = self.waiting.get(call)?;
        let q = self.queues.get(&w.queue)?;
        Some(q.order.range(..(Reverse(w.priority), w.seq)).count() as i64 + 1)
    }

    fn remove_waiting(
        &mut self,
        call: &str,
        event: &'static str,
        detail: Option<(Option<i64>, i64, &str)>,
    ) -> Option<Waiting> {
        let w = self.waiting.remove(call)?;
        if let Some(d) = w.directed {
            self.undirect_index(call, d);
        }
        if let Some(q) = self.queues.get_mut(&w.queue) {
            q.order.remove(&(Reverse(w.priority), w.seq));
            q.by_seq.remove(&w.seq);
        }
        let mut e = LogEntry::new(&w.queue, event);
        e.call = Some(call.to_string());
        if let Some((position, wait_ms, reason)) = detail {
            e.position = position;
            e.wait_ms = Some(wait_ms);
            e.reason = Some(reason.to_string());
        }
        self.actions.push_back(Action::Log(e));
        Some(w)
    }

    // ---- offers ------------------------------------------------------------------------

    /// An offer ended without connecting (rang out, refused, failed, cancelled). Idempotent.
    pub fn offer_ended(&mut self, now: Instant, call: &str, agent: &str, how: OfferEnd) {
        let Some(&idx) = self.agent_index.get(agent) else {
            return;
        };
        let offered_this = self.agents[idx].activity
            == Activity::Offered {
                call: call.to_string(),
            };
        let mut queue = None;
        let mut fell_back = false;
        if let Some(w) = self.waiting.get_mut(call) {
            let was_ringing = w.ringing.iter().any(|a| a == agent);
            // The agent the caller was transferred to missed it: back to the line (before
            // the agent turns idle, so it is not rung for the same call again at once).
            fell_back = was_ringing && w.directed == Some(idx);
            w.ringing.retain(|a| a != agent);
            // Any end of an offer still ringing counts as tried, a refusal by the call itself
            // (`Cancelled` while it still waits) too: the next round waits `retry`, so an
            // offer that fails at once can never spin.
            if was_ringing {
                w.tried.push(agent.to_string());
                queue = Some(w.queue.clone());
                let mut e = LogEntry::new(&w.queue, "ringnoanswer");
                e.call = Some(call.to_string());
                e.agent = Some(agent.to_string());
                e.reason = Some(how.as_str().to_string());
                self.actions.push_back(Action::Log(e));
            }
        }
        if fell_back {
            self.fall_back(now, call, how.as_str(), false);
        }
        if !offered_this {
            if let Some(q) = queue.filter(|_| fell_back) {
                self.dispatch_queue(now, &q);
            }
            return;
        }
        let missed = matches!(how, OfferEnd::NoAnswer | OfferEnd::Busy);
        let max_misses = queue
            .as_deref()
            .and_then(|q| self.queues.get(q))
            .map_or(0, |q| q.cfg.max_misses);
        if missed {
            self.agents[idx].misses += 1;
            if max_misses > 0 && self.agents[idx].misses >= max_misses {
                // The agent walked away from the phone: stop offering it calls.
                self.agents[idx].paused = Some("auto:no_answer".into());
                self.log_agent(idx, "pause", Some("auto:no_answer".into()));
            }
        }
        self.set_activity(now, idx, Activity::Idle);
        // The idle agent got its chance in `after_agent_change`; this call may want others.
        if let Some(q) = queue {
            self.dispatch_queue(now, &q);
        }
    }

    /// An agent's phone answered an offer. Returns whether the call takes this agent: false
    /// when the call is gone or already connected to another agent (hang that leg up).
    pub fn answered(&mut self, now: Instant, call: &str, agent: &str) -> bool {
        let Some(&idx) = self.agent_index.get(agent) else {
            return false;
        };
        let Some(w) = self.waiting.get_mut(call) else {
            return false;
        };
        if w.connected.is_some() {
            return false;
        }
        let offered_this = self.agents[idx].activity
            == Activity::Offered {
                call: call.to_string(),
            };
        if !offered_this {
            return false;
        }
        w.connected = Some((agent.to_string(), now));
        let directed = w.directed.take();
        let others: Vec<String> = w.ringing.iter().filter(|a| *a != agent).cloned().collect();
        w.ringing.clear();
        let wait = now.duration_since(w.joined);
        let queue = w.queue.clone();
        let (priority, seq) = (w.priority, w.seq);
        if let Some(d) = directed {
            self.undirect_index(call, d);
        }
        if let Some(q) = self.queues.get_mut(&queue) {
            // Connected callers no longer hold a place in line.
            q.order.remove(&(Reverse(priority), seq));
            q.by_seq.remove(&seq);
            q.stats.answered += 1;
            q.stats.total_wait_answered_ms += wait.as_millis() as u64;
            if wait <= q.cfg.service_level {
                q.stats.answered_within_sl += 1;
            }
        }
        self.agents[idx].misses = 0;
        self.agents[idx].calls_taken += 1;
        let mut e = LogEntry::new(&queue, "connect");
        e.call = Some(call.to_string());
        e.agent = Some(agent.to_string());
        e.wait_ms = Some(wait.as_millis() as i64);
        self.actions.push_back(Action::Log(e));
        self.set_activity(
            now,
            idx,
            Activity::OnCall {
                call: call.to_string(),
            },
        );
        for other in others {
            if let Some(&o) = self.agent_index.get(&other) {
                if self.agents[o].activity
                    == (Activity::Offered {
                        call: call.to_string(),
                    })
                {
                    self.set_activity(now, o, Activity::Idle);
                }
            }
        }
        true
    }

    /// A connected call ended (`by`: caller | agent | transfer | error). Idempotent.
    pub fn call_ended(&mut self, now: Instant, call: &str, by: &str) {
        let Some(w) = self.waiting.get(call) else {
            return;
        };
        let Some((agent, connected_at)) = w.connected.clone() else {
            return self.leave(now, call, by);
        };
        let queue = w.queue.clone();
        self.waiting.remove(call);
        self.end_talk(now, call, &queue, &agent, connected_at, by);
    }

    /// The agent's part of a connected call is over: `complete` in the queue's figures and
    /// log, the agent to wrap-up.
    fn end_talk(
        &mut self,
        now: Instant,
        call: &str,
        queue: &str,
        agent: &str,
        connected_at: Instant,
        by: &str,
    ) {
        let wrapup = self.log_complete(now, call, queue, agent, connected_at, by);
        self.after_talk(now, call, agent, wrapup);
    }

    /// `complete` in the queue's figures and log; the queue's wrap-up time.
    fn log_complete(
        &mut self,
        now: Instant,
        call: &str,
        queue: &str,
        agent: &str,
        connected_at: Instant,
        by: &str,
    ) -> Duration {
        let talk = now.duration_since(connected_at);
        let wrapup = match self.queues.get_mut(queue) {
            Some(q) => {
                q.stats.completed += 1;
                q.stats.total_talk_ms += talk.as_millis() as u64;
                q.cfg.wrapup
            }
            None => Duration::ZERO,
        };
        let mut e = LogEntry::new(queue, "complete");
        e.call = Some(call.to_string());
        e.agent = Some(agent.to_string());
        e.talk_ms = Some(talk.as_millis() as i64);
        e.reason = Some(by.to_string());
        self.actions.push_back(Action::Log(e));
        wrapup
    }

    /// The agent's talk on `call` is over: wrap-up, or available at once.
    fn after_talk(&mut self, now: Instant, call: &str, agent: &str, wrapup: Duration) {
        let Some(&idx) = self.agent_index.get(agent) else {
            return;
        };
        if self.agents[idx].activity
            != (Activity::OnCall {
                call: call.to_string(),
            })
        {
            return;
        }
        if wrapup.is_zero() {
            self.set_activity(now, idx, Activity::Idle);
        } else {
            let until = now + wrapup;
            self.set_activity(now, idx, Activity::WrapUp { until });
            let epoch = self.agents[idx].epoch;
            self.timers
                .push(Reverse((until, Timer::WrapUp { agent: idx, epoch })));
        }
    }

    // ---- transfer to an agent ----------------------------------------------------------

    /// Blind transfer of a connected caller to the agent `to` (the Genesys / Flex / Asterisk
    /// "transfer to agent"): the current agent's part ends as with a transfer to a queue
    /// (`complete` with reason `transfer`, wrap-up), and the caller enters its queue again
    /// (`enter`, reason `agent:<to>`, same priority) reserved for `to`: rung as soon as
    /// `to` is available, offered to nobody else meanwhile. It goes back to the line as an
    /// ordinary caller (`fallback`) when `to` misses the offer (ring timeout, busy, failed),
    /// logs out, is not logged in at all, or has not become available within `wait`.
    pub fn transfer_to_agent(
        &mut self,
        now: Instant,
        call: &str,
        to: &str,
        wait: Duration,
    ) -> Result<TransferOutcome, TransferError> {
        let w = self.waiting.get(call).ok_or(TransferError::NotConnected)?;
        let (from, connected_at) = w.connected.clone().ok_or(TransferError::NotConnected)?;
        let target = *self
            .agent_index
            .get(to)
            .ok_or(TransferError::UnknownAgent)?;
        if from == to {
            return Err(TransferError::ToSelf);
        }
        let queue = w.queue.clone();
        let priority = w.priority;
        let max_wait = self.queues.get(&queue).and_then(|q| q.cfg.max_wait);
        self.next_seq += 1;
        let seq = self.next_seq;
        let logged_in = self.agents[target].logged_in();
        let wrapup = self.log_complete(now, call, &queue, &from, connected_at, "transfer");
        if let Some(w) = self.waiting.get_mut(call) {
            w.connected = None;
            w.ringing.clear();
            // The agent who handed the caller on does not get it straight back.
            w.tried = vec![from.clone()];
            w.retry_at = None;
            w.joined = now;
            w.seq = seq;
            w.directed = logged_in.then_some(target);
        }
        // The caller is back in its queue (a new visit for the figures, as a transfer to a
        // queue is) before its agent turns to wrap-up, so a dispatch on that change sees it.
        let mut position = None;
        if let Some(q) = self.queues.get_mut(&queue) {
            q.order.insert((Reverse(priority), seq));
            q.by_seq.insert(seq, call.to_string());
            q.stats.entered += 1;
            position = Some(q.order.range(..(Reverse(priority), seq)).count() as i64 + 1);
        }
        let mut e = LogEntry::new(&queue, "enter");
        e.call = Some(call.to_string());
        e.position = position;
        e.reason = Some(format!("agent:{to}"));
        self.actions.push_back(Action::Log(e));
        if let Some(m) = max_wait {
            self.timers.push(Reverse((now + m, Timer::MaxWait { seq })));
        }
        if !logged_in {
            self.log_fallback(&queue, call, to, "logged_out");
            self.after_talk(now, call, &from, wrapup);
            self.dispatch_queue(now, &queue);
            return Ok(TransferOutcome::FellBack);
        }
        self.directed
            .entry(target)
            .or_default()
            .push(call.to_string());
        self.timers
            .push(Reverse((now + wait, Timer::Directed { seq })));
        self.after_talk(now, call, &from, wrapup);
        if self.agents[target].available() {
            self.dispatch_directed(now, target);
        }
        Ok(TransferOutcome::Directed)
    }

    fn log_fallback(&mut self, queue: &str, call: &str, agent: &str, reason: &str) {
        let mut e = LogEntry::new(queue, "fallback");
        e.call = Some(call.to_string());
        e.agent = Some(agent.to_string());
        e.reason = Some(reason.to_string());
        self.actions.push_back(Action::Log(e));
    }

    /// Forget that `call` waits for a particular agent (index of the directed map only).
    fn undirect_index(&mut self, call: &str, agent: usize) {
        if let Some(calls) = self.directed.get_mut(&agent) {
            calls.retain(|c| c != call);
            if calls.is_empty() {
                self.directed.remove(&agent);
            }
        }
    }

    /// The transfer to an agent did not work out: the caller is an ordinary caller of its
    /// queue again (same priority and place), offered by the queue's strategy. `dispatch`:
    /// offer it now (not while the caller's agent is being changed).
    fn fall_back(&mut self, now: Instant, call: &str, reason: &str, dispatch: bool) {
        let Some(w) = self.waiting.get_mut(call) else {
            return;
        };
        let Some(agent) = w.directed.take() else {
            return;
        };
        let queue = w.queue.clone();
        self.undirect_index(call, agent);
        let name = self.agents[agent].def.name.clone();
        self.log_fallback(&queue, call, &name, reason);
        let empty = self.queues.get(&queue).is_some_and(|q| {
            q.cfg.leave_when_empty && !q.members.iter().any(|&m| self.agents[m].logged_in())
        });
        let idle = self
            .waiting
            .get(call)
            .is_some_and(|w| w.ringing.is_empty() && !w.callback);
        if empty && idle {
            // Back in a queue nobody serves, which sends callers away then.
            self.remove_waiting(call, "exitempty", None);
            self.actions.push_back(Action::Leave {
                call: call.to_string(),
                reason: "no_agents",
            });
            return;
        }
        if dispatch {
            self.dispatch_queue(now, &queue);
        }
    }

    /// Offer the agent (available) the first caller transferred to it, if any.
    fn dispatch_directed(&mut self, now: Instant, idx: usize) {
        if !self.agents[idx].available() {
            return;
        }
        let Some(call) = self.directed.get(&idx).and_then(|c| c.first()).cloned() else {
            return;
        };
        let Some(w) = self.waiting.get(&call) else {
            self.undirect_index(&call, idx);
            return;
        };
        if !w.ringing.is_empty() || w.connected.is_some() {
            return;
        }
        let queue = w.queue.clone();
        self.offer(now, &queue, &call, vec![idx]);
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::WrapUp { agent, epoch } => {
                    if self.agents.get(agent).is_some_and(|a| a.epoch == epoch) {
                        self.set_activity(now, agent, Activity::Idle);
                    }
                }
                Timer::Retry { seq } => {
                    let found = self
                        .queues
                        .iter()
                        .find_map(|(qn, q)| q.by_seq.get(&seq).map(|c| (qn.clone(), c.clone())));
                    let Some((queue, call)) = found else { continue };
                    if let Some(w) = self.waiting.get_mut(&call) {
                        w.retry_at = None;
                        w.tried.clear();
                    }
                    self.dispatch_queue(now, &queue);
                }
                Timer::Directed { seq } => {
                    let call = self
                        .queues
                        .values()
                        .find_map(|q| q.by_seq.get(&seq))
                        .cloned();
                    let Some(call) = call else { continue };
                    // Ringing the agent now: the offer's end decides (ring timeout).
                    if self
                        .waiting
                        .get(&call)
                        .is_some_and(|w| w.directed.is_some() && w.ringing.is_empty())
                    {
                        self.fall_back(now, &call, "timeout", true);
                    }
                }
                Timer::MaxWait { seq } => {
                    let call = self
                        .queues
                        .values()
                        .find_map(|q| q.by_seq.get(&seq))
                        .cloned();
                    let Some(call) = call else { continue };
                    let Some(w) = self.waiting.get(&call) else {
                        continue;
                    };
                    if w.callback {
                        continue;
                    }
                    if w.connected.is_some() || !w.ringing.is_empty() || w.directed.is_some() {
                        // Ringing an agent right now, or waiting for the agent it was
                        // transferred to (bounded): let that finish first.
                        self.timers.push(Reverse((
                            now + Duration::from_secs(1),
                            Timer::MaxWait { seq },
                        )));
                        continue;
                    }
                    let wait_ms = now.duration_since(w.joined).as_millis() as i64;
                    let queue = w.queue.clone();
                    let position = self.position(&call);
                    if let Some(q) = self.queues.get_mut(&queue) {
                        q.stats.timed_out += 1;
                    }
                    self.remove_waiting(&call, "timeout", Some((position, wait_ms, "max_wait")));
                    self.actions.push_back(Action::Leave {
                        call,
                        reason: "timeout",
                    });
                }
            }
        }
    }

    // ---- dispatch ----------------------------------------------------------------------

    /// An agent became available: offer it the best waiting call among its queues.
    fn dispatch_for_agent(&mut self, now: Instant, idx: usize) {
        // Callers transferred to this agent first: they were already served once.
        if self.directed.contains_key(&idx) {
            self.dispatch_directed(now, idx);
        }
        // Queues ordered by their head caller: highest priority, then longest waiting.
        let mut heads: Vec<((Reverse<i32>, u64), String)> = self.agents[idx]
            .def
            .queues
            .iter()
            .filter_map(|qn| {
                let q = self.queues.get(qn)?;
                let first = q.order.iter().next()?;
                Some((*first, qn.clone()))
            })
            .collect();
        heads.sort();
        for (_, qn) in heads {
            if !self.agents[idx].available() {
                break;
            }
            self.dispatch_queue(now, &qn);
        }
    }

    /// Match waiting callers of `queue`, in order, with available agents.
    fn dispatch_queue(&mut self, now: Instant, queue: &str) {
        let Some(q) = self.queues.get(queue) else {
            return;
        };
        if !q.members.iter().any(|&m| self.agents[m].available()) {
            return;
        }
        // Walk the line with a cursor (no copy of it): each step is one B-tree lookup, and
        // the walk stops as soon as no member is available.
        let mut cursor: Option<(Reverse<i32>, u64)> = None;
        loop {
            let next = {
                let Some(q) = self.queues.get(queue) else {
                    return;
                };
                let mut range = match cursor {
                    None => q.order.range(..),
                    Some(c) => q
                        .order
                        .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)),
                };
                range.next().copied()
            };
            let Some(key) = next else { break };
            cursor = Some(key);
            let Some(call) = self
                .queues
                .get(queue)
                .and_then(|q| q.by_seq.get(&key.1).cloned())
            else {
                continue;
            };
            let Some(w) = self.waiting.get(&call) else {
                continue;
            };
            // A caller transferred to an agent waits for that agent only.
            if !w.ringing.is_empty() || w.connected.is_some() || w.directed.is_some() {
                continue;
            }
            let picked = self.pick(now, queue, &call);
            if picked.is_empty() {
                if !self
                    .queues
                    .get(queue)
                    .is_some_and(|q| q.members.iter().any(|&m| self.agents[m].available()))
                {
                    break;
                }
                continue;
            }
            self.offer(now, queue, &call, picked);
        }
    }

    /// Ring `picked` (available agents) for `call`, waiting in `queue`.
    fn offer(&mut self, now: Instant, queue: &str, call: &str, picked: Vec<usize>) {
        let ring_timeout = self
            .queues
            .get(queue)
            .map_or(Duration::from_secs(15), |q| q.cfg.ring_timeout);
        let mut names = Vec::with_capacity(picked.len());
        for idx in picked {
            names.push(self.agents[idx].def.name.clone());
            let mut e = LogEntry::new(queue, "offer");
            e.call = Some(call.to_string());
            e.agent = Some(self.agents[idx].def.name.clone());
            self.actions.push_back(Action::Log(e));
            self.set_activity_quiet(
                now,
                idx,
                Activity::Offered {
                    call: call.to_string(),
                },
            );
        }
        if let Some(w) = self.waiting.get_mut(call) {
            w.ringing = names.clone();
        }
        self.actions.push_back(Action::Offer {
            call: call.to_string(),
            queue: queue.to_string(),
            agents: names,
            ring_timeout,
        });
    }

    /// Like `set_activity` without re-dispatching (used while dispatching).
    fn set_activity_quiet(&mut self, now: Instant, idx: usize, activity: Activity) {
        let before = self.agents[idx].state();
        self.agents[idx].activity = activity;
        self.agents[idx].epoch += 1;
        let after = self.agents[idx].state();
        if after != before {
            self.agents[idx].since = now;
            self.actions.push_back(Action::AgentChanged {
                agent: self.agents[idx].def.name.clone(),
                state: after,
            });
        }
    }

    /// Choose agents for a call by the queue's strategy.
    fn pick(&mut self, now: Instant, queue: &str, call: &str) -> Vec<usize> {
        let Some(q) = self.queues.get(queue) else {
            return Vec::new();
        };
        let Some(w) = self.waiting.get(call) else {
            return Vec::new();
        };
        let eligible = |tried: &[String]| -> Vec<usize> {
            q.members
                .iter()
                .copied()
                .filter(|&m| {
                    let a = &self.agents[m];
                    a.available() && a.meets(&w.needs) && !tried.contains(&a.def.name)
                })
                .collect()
        };
        if w.retry_at.is_some() {
            return Vec::new();
        }
        let cands = eligible(&w.tried);
        if cands.is_empty() {
            if !w.tried.is_empty() && !eligible(&[]).is_empty() {
                // Everyone available already missed this call: a new round after `retry`.
                let (seq, at) = (w.seq, now + q.cfg.retry);
                if let Some(w) = self.waiting.get_mut(call) {
                    w.retry_at = Some(at);
                }
                self.timers.push(Reverse((at, Timer::Retry { seq })));
            }
            return Vec::new();
        }
        let strategy = q.cfg.strategy;
        let needs = w.needs.clone();
        let members = q.members.clone();
        let rr_next = q.rr_next;
        let agents = &self.agents;
        let idle_key = |m: &usize| (agents[*m].idle_since, *m);
        let chosen = match strategy {
            Strategy::RingAll => return cands,
            Strategy::LongestIdle => cands.iter().copied().min_by_key(idle_key),
            Strategy::FewestCalls => cands
                .iter()
                .copied()
                .min_by_key(|m| (agents[*m].calls_taken, idle_key(m))),
            Strategy::Skills => cands
                .iter()
                .copied()
                .min_by_key(|m| (Reverse(agents[*m].score(&needs)), idle_key(m))),
            Strategy::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                Some(cands[(self.rng % cands.len() as u64) as usize])
            }
            Strategy::RoundRobin => {
                // First candidate at or after the rotation point in member order.
                let n = members.len();
                (0..n)
                    .map(|k| members[(rr_next + k) % n])
                    .find(|m| cands.contains(m))
            }
        };
        let Some(chosen) = chosen else {
            return Vec::new();
        };
        if strategy == Strategy::RoundRobin {
            if let Some(q) = self.queues.get_mut(queue) {
                let pos = q.members.iter().position(|&m| m == chosen).unwrap_or(0);
                q.rr_next = pos + 1;
            }
        }
        vec![chosen]
    }

    // ---- views -------------------------------------------------------------------------

    pub fn agents_view(&self, now: Instant) -> Vec<AgentView> {
        let mut v: Vec<AgentView> = self
            .agents
            .iter()
            .map(|a| AgentView {
                name: a.def.name.clone(),
                state: a.state(),
                reachable: a.reachable,
                paused_reason: a.paused.clone(),
                call: match &a.activity {
                    Activity::Offered { call } | Activity::OnCall { call } => Some(call.clone()),
                    _ => None,
                },
                queues: a.def.queues.clone(),
                skills: a.def.skills.clone(),
                calls_taken: a.calls_taken,
                missed_in_a_row: a.misses,
                state_for_s: now.saturating_duration_since(a.since).as_secs(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn queues_view(&self, now: Instant) -> Vec<QueueView> {
        let mut v: Vec<QueueView> = self
            .queues
            .values()
            .map(|q| {
                let longest = q
                    .by_seq
                    .values()
                    .filter_map(|c| self.waiting.get(c))
                    .map(|w| now.saturating_duration_since(w.joined).as_secs())
                    .max()
                    .unwrap_or(0);
                QueueView {
                    name: q.cfg.name.clone(),
                    strategy: q.cfg.strategy.as_str().to_string(),
                    waiting: q.order.len(),
                    longest_wait_s: longest,
                    agents_logged_in: q
                        .members
                        .iter()
                        .filter(|&&m| self.agents[m].logged_in())
                        .count(),
                    agents_available: q
                        .members
                        .iter()
                        .filter(|&&m| self.agents[m].available())
                        .count(),
                    service_level: q.stats.service_level(),
                    asa_ms: q.stats.asa_ms(),
                    aht_ms: q.stats.aht_ms(),
                    abandon_rate: q.stats.abandon_rate(),
                    callbacks_pending: q
                        .by_seq
                        .values()
                        .filter_map(|c| self.waiting.get(c))
                        .filter(|w| w.callback)
                        .count(),
                    stats: q.stats.clone(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, queues: &[&str], skills: &[(&str, i64)]) -> AgentDef {
        AgentDef {
            name: name.into(),
            queues: queues.iter().map(|s| s.to_string()).collect(),
            skills: skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
        }
    }

    fn acd(strategy: Strategy) -> (Acd, Instant) {
        let mut q = QueueConfig::new("support");
        q.strategy = strategy;
        q.wrapup = Duration::from_secs(5);
        q.segment_priority.insert("vip".into(), 10);
        (Acd::new(vec![q], true, 7), Instant::now())
    }

    fn drain(a: &mut Acd) -> Vec<Action> {
        std::iter::from_fn(|| a.poll_action()).collect()
    }

    fn offers(actions: &[Action]) -> Vec<(String, Vec<String>)> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Offer { call, agents, .. } => Some((call.clone(), agents.clone())),
                _ => None,
            })
            .collect()
    }

    fn logs(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Log(e) => Some(e.event),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn caller_waits_until_an_agent_registers() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.join(t0, "c1", "support", None, vec![]);
        let acts = drain(&mut a);
        assert!(acts.contains(&Action::Queued {
            call: "c1".into(),
            position: 1
        }));
        assert!(offers(&acts).is_empty());
        a.agent_update(
            t0 + Duration::from_secs(1),
            def("alice", &["support"], &[]),
            true,
        );
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["alice".into()])]);
        assert_eq!(a.agent_state("alice"), Some(AgentState::Offered));
    }

    #[test]
    fn an_agent_is_never_offered_two_calls() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.join(t0, "c1", "support", None, vec![]);
        a.join(t0, "c2", "support", None, vec![]);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["alice".into()])]);
        // While alice rings for c1, c2 is not offered to anyone.
        a.join(t0, "c3", "support", None, vec![]);
        assert!(offers(&drain(&mut a)).is_empty());
        // Alice misses c1: c1 keeps its place at the head of the line but pauses `retry`
        // before ringing her again, so meanwhile she gets the next caller.
        let t1 = t0 + Duration::from_secs(15);
        a.offer_ended(t1, "c1", "alice", OfferEnd::NoAnswer);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c2".into(), vec!["alice".into()])]);
        assert!(logs(&acts).contains(&"ringnoanswer"));
        // A second agent gets c3 (c1 pauses, c2 rings alice): never a call already ringing.
        a.agent_update(t1, def("bob", &["support"], &[]), true);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c3".into(), vec!["bob".into()])]
        );
        a.leave(t1, "c2", "caller_hangup");
        assert!(
            offers(&drain(&mut a)).is_empty(),
            "c1 pauses before its new round"
        );
        a.handle_timeout(t1 + Duration::from_secs(2));
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c1".into(), vec!["alice".into()])]
        );
    }

    fn rejoin<'a>(call: &'a str, waited_s: u64, agent: Option<&'a str>) -> Rejoin<'a> {
        Rejoin {
            call,
            queue: "support",
            segment: None,
            needs: &[],
            waited: Duration::from_secs(waited_s),
            callback: false,
            agent,
        }
    }

    #[test]
    fn a_new_leader_relearns_connected_and_waiting_callers_in_join_order() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        let t = t0 + Duration::from_secs(100);
        a.agent_update(t, def("alice", &["support"], &[]), true);
        a.agent_update(t, def("bob", &["support"], &[]), true);
        drain(&mut a);
        // c0 is on a call with alice on some node; c1 (waited 30 s) and c2 (10 s) wait.
        a.rejoin(t, rejoin("c0", 60, Some("alice")));
        assert_eq!(a.agent_state("alice"), Some(AgentState::OnCall));
        a.rejoin(t, rejoin("c1", 30, None));
        a.rejoin(t, rejoin("c2", 10, None));
        let acts = drain(&mut a);
        // No second "enter" and no position announcement; bob (free) gets the first in line.
        assert_eq!(logs(&acts), vec!["offer"], "{acts:?}");
        assert!(!acts.iter().any(|x| matches!(x, Action::Queued { .. })));
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["bob".into()])]);
        // The same caller announced twice is kept once.
        a.rejoin(t, rejoin("c2", 10, None));
        assert_eq!(a.waiting_calls().filter(|c| *c == "c2").count(), 1);
        // Alice's call ends as any connected call: wrap-up, then she takes c2.
        a.call_ended(t + Duration::from_secs(5), "c0", "caller");
        assert_eq!(a.agent_state("alice"), Some(AgentState::WrapUp));
        a.handle_timeout(t + Duration::from_secs(10));
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c2".into(), vec!["alice".into()])]
        );
        // Wait figures count from the original join.
        let v = a.queues_view(t + Duration::from_secs(10));
        assert_eq!(v[0].waiting, 2, "c1 rings bob, c2 rings alice");
        assert!(v[0].longest_wait_s >= 40, "{}", v[0].longest_wait_s);
    }

    #[test]
    fn a_rejoin_to_an_unknown_queue_is_refused() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        let mut r = rejoin("c1", 1, None);
        r.queue = "nope";
        a.rejoin(t0, r);
        assert!(drain(&mut a).contains(&Action::Refused {
            call: "c1".into(),
            reason: Refusal::UnknownQueue
        }));
    }

    #[test]
    fn longest_idle_and_wrapup() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.agent_update(
            t0 + Duration::from_secs(1),
            def("bob", &["support"], &[]),
            true,
        );
        a.join(t0 + Duration::from_secs(2), "c1", "support", None, vec![]);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["alice".into()])]);
        let t = t0 + Duration::from_secs(3);
        assert!(a.answered(t, "c1", "alice"));
        a.call_ended(t + Duration::from_secs(60), "c1", "caller");
        assert_eq!(a.agent_state("alice"), Some(AgentState::WrapUp));
        drain(&mut a);
        // During alice's wrap-up the next caller goes to bob.
        a.join(t + Duration::from_secs(61), "c2", "support", None, vec![]);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c2".into(), vec!["bob".into()])]);
        a.join(t + Duration::from_secs(62), "c3", "support", None, vec![]);
        assert!(offers(&drain(&mut a)).is_empty());
        assert_eq!(a.next_deadline(), Some(t + Duration::from_secs(65)));
        a.handle_timeout(t + Duration::from_secs(64));
        assert_eq!(a.agent_state("alice"), Some(AgentState::WrapUp));
        a.handle_timeout(t + Duration::from_secs(65));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c3".into(), vec!["alice".into()])]);
    }

    #[test]
    fn disposition_ends_wrapup_early() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.join(t0, "c1", "support", None, vec![]);
        drain(&mut a);
        assert!(a.answered(t0, "c1", "alice"));
        a.call_ended(t0 + Duration::from_secs(30), "c1", "caller");
        assert_eq!(a.agent_state("alice"), Some(AgentState::WrapUp));
        // Not in wrap-up: nothing changes; unknown agent: false.
        assert!(!a.end_wrapup(t0, "nobody"));
        a.join(t0 + Duration::from_secs(31), "c2", "support", None, vec![]);
        assert!(offers(&drain(&mut a)).is_empty(), "alice wraps up");
        assert!(a.end_wrapup(t0 + Duration::from_secs(32), "alice"));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c2".into(), vec!["alice".into()])]);
        // The old wrap-up timer fires into nothing.
        a.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(a.agent_state("alice"), Some(AgentState::Offered));
        assert!(a.end_wrapup(t0 + Duration::from_secs(61), "alice"));
        assert_eq!(a.agent_state("alice"), Some(AgentState::Offered));
    }

    #[test]
    fn ring_all_connects_one_agent_only() {
        let (mut a, t0) = acd(Strategy::RingAll);
        for n in ["a1", "a2", "a3"] {
            a.agent_update(t0, def(n, &["support"], &[]), true);
        }
        a.join(t0, "c1", "support", None, vec![]);
        let acts = drain(&mut a);
        assert_eq!(
            offers(&acts),
            vec![("c1".into(), vec!["a1".into(), "a2".into(), "a3".into()])]
        );
        assert!(a.answered(t0, "c1", "a2"));
        // The 200/CANCEL race: a3 answers too late and must be refused.
        assert!(!a.answered(t0, "c1", "a3"));
        assert_eq!(a.agent_state("a2"), Some(AgentState::OnCall));
        assert_eq!(a.agent_state("a1"), Some(AgentState::Available));
        assert_eq!(a.agent_state("a3"), Some(AgentState::Available));
        // Late CANCEL results change nothing.
        a.offer_ended(t0, "c1", "a1", OfferEnd::Cancelled);
        a.offer_ended(t0, "c1", "a3", OfferEnd::Cancelled);
        assert_eq!(a.agent_state("a1"), Some(AgentState::Available));
        assert_eq!(a.agents_view(t0)[0].missed_in_a_row, 0);
    }

    #[test]
    fn priority_callers_first() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.join(t0, "c1", "support", None, vec![]);
        a.join(t0, "c2", "support", Some("vip"), vec![]);
        let acts = drain(&mut a);
        assert!(acts.contains(&Action::Queued {
            call: "c2".into(),
            position: 1
        }));
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c2".into(), vec!["alice".into()])]
        );
    }

    #[test]
    fn skills_based_and_required_skills() {
        let (mut a, t0) = acd(Strategy::Skills);
        a.agent_update(t0, def("en1", &["support"], &[("lang:en", 3)]), true);
        a.agent_update(t0, def("en5", &["support"], &[("lang:en", 5)]), true);
        a.agent_update(t0, def("zh", &["support"], &[("lang:zh", 5)]), true);
        a.join(t0, "c1", "support", None, vec![("lang:en".into(), 1)]);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c1".into(), vec!["en5".into()])]
        );
        a.join(t0, "c2", "support", None, vec![("lang:zh".into(), 1)]);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c2".into(), vec!["zh".into()])]
        );
        a.join(t0, "c3", "support", None, vec![("lang:fr".into(), 1)]);
        assert!(offers(&drain(&mut a)).is_empty());
    }

    #[test]
    fn round_robin_and_fewest_calls() {
        let (mut a, t0) = acd(Strategy::RoundRobin);
        for n in ["a1", "a2", "a3"] {
            a.agent_update(t0, def(n, &["support"], &[]), true);
        }
        let mut order = Vec::new();
        for i in 0..4 {
            let c = format!("c{i}");
            a.join(t0, &c, "support", None, vec![]);
            let o = offers(&drain(&mut a));
            order.push(o[0].1[0].clone());
            assert!(a.answered(t0, &c, &o[0].1[0]));
            a.call_ended(t0, &c, "caller");
            a.handle_timeout(t0 + Duration::from_secs(10));
            drain(&mut a);
        }
        assert_eq!(order, vec!["a1", "a2", "a3", "a1"]);

        let (mut a, t0) = acd(Strategy::FewestCalls);
        a.agent_update(t0, def("a1", &["support"], &[]), true);
        a.join(t0, "x", "support", None, vec![]);
        drain(&mut a);
        assert!(a.answered(t0, "x", "a1"));
        a.call_ended(t0, "x", "caller");
        a.handle_timeout(t0 + Duration::from_secs(10));
        a.agent_update(
            t0 + Duration::from_secs(20),
            def("a2", &["support"], &[]),
            true,
        );
        drain(&mut a);
        a.join(t0 + Duration::from_secs(30), "y", "support", None, vec![]);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("y".into(), vec!["a2".into()])]
        );
    }

    #[test]
    fn auto_pause_after_misses() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        for i in 0..3 {
            let c = format!("c{i}");
            a.join(t0, &c, "support", None, vec![]);
            drain(&mut a);
            a.offer_ended(t0, &c, "alice", OfferEnd::NoAnswer);
            a.leave(t0, &c, "caller_hangup");
        }
        assert_eq!(a.agent_state("alice"), Some(AgentState::Paused));
        let acts = drain(&mut a);
        assert!(logs(&acts).contains(&"pause"));
        a.join(t0, "c9", "support", None, vec![]);
        assert!(offers(&drain(&mut a)).is_empty());
        a.unpause(t0, "alice");
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c9".into(), vec!["alice".into()])]
        );
    }

    #[test]
    fn abandon_while_ringing_frees_the_agent() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.join(t0, "c1", "support", None, vec![]);
        drain(&mut a);
        a.leave(t0 + Duration::from_secs(4), "c1", "caller_hangup");
        assert_eq!(a.agent_state("alice"), Some(AgentState::Available));
        let acts = drain(&mut a);
        let abandon = acts.iter().find_map(|x| match x {
            Action::Log(e) if e.event == "abandon" => Some(e.clone()),
            _ => None,
        });
        let abandon = abandon.expect("abandon logged");
        assert_eq!(abandon.wait_ms, Some(4000));
        assert_eq!(abandon.position, Some(1));
        // Idempotent: a second hangup report does nothing.
        a.leave(t0 + Duration::from_secs(5), "c1", "caller_hangup");
        assert!(drain(&mut a).is_empty());
        let q = &a.queues_view(t0)[0];
        assert_eq!(q.stats.abandoned, 1);
        assert_eq!(q.waiting, 0);
    }

    #[test]
    fn max_wait_and_join_empty() {
        let mut q = QueueConfig::new("support");
        q.max_wait = Some(Duration::from_secs(30));
        q.join_empty = true;
        let mut strict = QueueConfig::new("sales");
        strict.join_empty = false;
        let mut a = Acd::new(vec![q, strict], true, 1);
        let t0 = Instant::now();
        a.join(t0, "c1", "support", None, vec![]);
        a.join(t0, "c2", "sales", None, vec![]);
        let acts = drain(&mut a);
        assert!(acts.contains(&Action::Refused {
            call: "c2".into(),
            reason: Refusal::NoAgents
        }));
        a.handle_timeout(t0 + Duration::from_secs(30));
        let acts = drain(&mut a);
        assert!(acts.contains(&Action::Leave {
            call: "c1".into(),
            reason: "timeout"
        }));
        assert!(logs(&acts).contains(&"timeout"));
    }

    #[test]
    fn queue_stats() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.join(t0, "c1", "support", None, vec![]);
        drain(&mut a);
        assert!(a.answered(t0 + Duration::from_secs(10), "c1", "alice"));
        a.call_ended(t0 + Duration::from_secs(70), "c1", "agent");
        a.join(t0 + Duration::from_secs(71), "c2", "support", None, vec![]);
        a.leave(t0 + Duration::from_secs(80), "c2", "caller_hangup");
        let q = &a.queues_view(t0 + Duration::from_secs(80))[0];
        assert_eq!(q.stats.answered, 1);
        assert_eq!(q.stats.abandoned, 1);
        assert_eq!(q.service_level, Some(0.5));
        assert_eq!(q.asa_ms, Some(10_000));
        assert_eq!(q.aht_ms, Some(60_000));
    }

    #[test]
    fn unreachable_agent_is_logged_out_and_not_offered() {
        let (mut a, t0) = acd(Strategy::LongestIdle);
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.agent_update(t0, def("alice", &["support"], &[]), false);
        assert_eq!(a.agent_state("alice"), Some(AgentState::LoggedOut));
        a.join(t0, "c1", "support", None, vec![]);
        assert!(offers(&drain(&mut a)).is_empty());
        // Logged out on purpose: the phone registering again does not log the agent in…
        a.logout(t0, "alice");
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        assert_eq!(a.agent_state("alice"), Some(AgentState::LoggedOut));
        // …an explicit login does, and the waiting call is offered at once.
        a.login(t0, "alice");
        assert_eq!(a.agent_state("alice"), Some(AgentState::Offered));
    }
}

#[cfg(test)]
mod callback_tests {
    use super::*;

    #[test]
    fn a_callback_outlives_max_wait_and_an_empty_queue() {
        let mut q = QueueConfig::new("support");
        q.max_wait = Some(Duration::from_secs(10));
        q.leave_when_empty = true;
        let mut a = Acd::new(vec![q], true, 3);
        let t0 = Instant::now();
        let def = AgentDef {
            name: "gina".into(),
            queues: vec!["support".into()],
            skills: vec![],
        };
        a.agent_update(t0, def.clone(), true);
        a.pause(t0, "gina", "break");
        a.join(t0, "c1", "support", None, vec![]);
        a.join(t0, "c2", "support", None, vec![]);
        a.callback(t0, "c1");
        while a.poll_action().is_some() {}
        a.agent_update(t0, def.clone(), false);
        a.handle_timeout(t0 + Duration::from_secs(11));
        let acts: Vec<Action> = std::iter::from_fn(|| a.poll_action()).collect();
        // c2 left (no agents, then timeout); the callback c1 stays in line.
        assert!(acts.contains(&Action::Leave {
            call: "c2".into(),
            reason: "no_agents"
        }));
        assert!(!acts
            .iter()
            .any(|x| matches!(x, Action::Leave { call, .. } if call == "c1")));
        a.agent_update(t0 + Duration::from_secs(60), def, true);
        a.unpause(t0 + Duration::from_secs(60), "gina");
        let offers: Vec<Action> = std::iter::from_fn(|| a.poll_action())
            .filter(|x| matches!(x, Action::Offer { .. }))
            .collect();
        assert_eq!(offers.len(), 1, "{offers:?}");
    }

    #[test]
    fn paused_agent_unpaused_gets_one_offer_for_a_callback() {
        let mut q = QueueConfig::new("support");
        q.join_empty = false;
        let mut a = Acd::new(vec![q], true, 3);
        let t0 = Instant::now();
        a.agent_update(
            t0,
            AgentDef {
                name: "gina".into(),
                queues: vec!["support".into()],
                skills: vec![],
            },
            true,
        );
        a.pause(t0, "gina", "break");
        a.join(t0, "c1", "support", None, vec![]);
        a.callback(t0, "c1");
        while a.poll_action().is_some() {}
        a.unpause(t0, "gina");
        let acts: Vec<Action> = std::iter::from_fn(|| a.poll_action()).take(1000).collect();
        let offers = acts
            .iter()
            .filter(|x| matches!(x, Action::Offer { .. }))
            .count();
        assert_eq!(offers, 1, "{acts:?}");
        // The call refuses the offer at once (it cannot take it): no spinning re-offer, the
        // next round comes after `retry`.
        a.offer_ended(t0, "c1", "gina", OfferEnd::Cancelled);
        let again = std::iter::from_fn(|| a.poll_action())
            .take(1000)
            .filter(|x| matches!(x, Action::Offer { .. }))
            .count();
        assert_eq!(again, 0);
        a.handle_timeout(t0 + Duration::from_secs(2));
        let later = std::iter::from_fn(|| a.poll_action())
            .filter(|x| matches!(x, Action::Offer { .. }))
            .count();
        assert_eq!(later, 1);
    }
}

#[cfg(test)]
mod transfer_tests {
    //! Blind transfer to a named agent, in virtual time.
    use super::*;

    fn def(name: &str, queues: &[&str], _skills: &[(&str, i64)]) -> AgentDef {
        AgentDef {
            name: name.into(),
            queues: queues.iter().map(|s| s.to_string()).collect(),
            skills: Vec::new(),
        }
    }

    fn drain(a: &mut Acd) -> Vec<Action> {
        std::iter::from_fn(|| a.poll_action()).collect()
    }

    fn offers(actions: &[Action]) -> Vec<(String, Vec<String>)> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Offer { call, agents, .. } => Some((call.clone(), agents.clone())),
                _ => None,
            })
            .collect()
    }

    fn logs(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Log(e) => Some(e.event),
                _ => None,
            })
            .collect()
    }

    // ---- transfer to an agent -----------------------------------------------------------

    /// Queues `support` (alice, bob) and `sales` (carol), wrap-up 5 s; c1 (in `support`)
    /// connected to alice at t0 + 1 s. bob is paused unless `bob_available`.
    fn transfer_setup(bob_available: bool) -> (Acd, Instant) {
        let mut support = QueueConfig::new("support");
        support.wrapup = Duration::from_secs(5);
        support.ring_timeout = Duration::from_secs(10);
        support.segment_priority.insert("vip".into(), 10);
        let sales = QueueConfig::new("sales");
        let mut a = Acd::new(vec![support, sales], true, 7);
        let t0 = Instant::now();
        a.agent_update(t0, def("alice", &["support"], &[]), true);
        a.agent_update(t0, def("bob", &["support"], &[]), true);
        a.agent_update(t0, def("carol", &["sales"], &[]), true);
        a.pause(t0, "bob", "break");
        a.join(t0, "c1", "support", None, vec![]);
        drain(&mut a);
        let t1 = t0 + Duration::from_secs(1);
        assert!(a.answered(t1, "c1", "alice"));
        if bob_available {
            a.unpause(t1, "bob");
        }
        drain(&mut a);
        (a, t1)
    }

    fn log_rows(actions: &[Action]) -> Vec<(&'static str, Option<String>, Option<String>)> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Log(e) if e.agent.is_none() || e.call.is_some() => {
                    Some((e.event, e.agent.clone(), e.reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    const WAIT: Duration = Duration::from_secs(30);

    #[test]
    fn transfer_rings_only_the_named_agent_and_connects_it() {
        let (mut a, t) = transfer_setup(true);
        // carol serves another queue; bob (support) is available but is not offered c1.
        let out = a.transfer_to_agent(t + Duration::from_secs(20), "c1", "carol", WAIT);
        assert_eq!(out, Ok(TransferOutcome::Directed));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["carol".into()])]);
        assert_eq!(
            log_rows(&acts),
            vec![
                ("complete", Some("alice".into()), Some("transfer".into())),
                ("enter", None, Some("agent:carol".into())),
                ("offer", Some("carol".into()), None),
            ]
        );
        assert_eq!(a.agent_state("alice"), Some(AgentState::WrapUp));
        assert_eq!(a.agent_state("bob"), Some(AgentState::Available));
        // Offered in the caller's queue, with its ring timeout.
        assert!(acts.iter().any(|x| matches!(x,
            Action::Offer { queue, ring_timeout, .. }
                if queue == "support" && ring_timeout == &Duration::from_secs(10))));
        let t2 = t + Duration::from_secs(23);
        assert!(a.answered(t2, "c1", "carol"));
        assert_eq!(a.agent_state("carol"), Some(AgentState::OnCall));
        let acts = drain(&mut a);
        let connect = acts.iter().find_map(|x| match x {
            Action::Log(e) if e.event == "connect" => Some(e.clone()),
            _ => None,
        });
        let connect = connect.expect("connect row");
        assert_eq!(connect.agent.as_deref(), Some("carol"));
        assert_eq!(connect.queue, "support");
        assert_eq!(
            connect.wait_ms,
            Some(3000),
            "wait counted from the transfer"
        );
        // The figures count two visits of the queue, as a transfer to a queue does.
        let view = a.queues_view(t2);
        let support = view.iter().find(|q| q.name == "support").expect("support");
        assert_eq!(
            (
                support.stats.entered,
                support.stats.answered,
                support.stats.completed
            ),
            (2, 2, 1)
        );
        assert_eq!(support.waiting, 0);
        a.call_ended(t2 + Duration::from_secs(60), "c1", "caller");
        assert_eq!(a.agent_state("carol"), Some(AgentState::WrapUp));
        let view = a.queues_view(t2);
        let support = view.iter().find(|q| q.name == "support").expect("support");
        assert_eq!(support.stats.completed, 2);
    }

    #[test]
    fn transfer_to_a_busy_agent_waits_for_it_ahead_of_its_own_queue() {
        let (mut a, t) = transfer_setup(true);
        // carol is on a sales call, and another sales caller waits.
        a.join(t, "s1", "sales", None, vec![]);
        assert!(a.answered(t, "s1", "carol"));
        a.join(t, "s2", "sales", None, vec![]);
        drain(&mut a);
        let out = a.transfer_to_agent(t + Duration::from_secs(5), "c1", "carol", WAIT);
        assert_eq!(out, Ok(TransferOutcome::Directed));
        let acts = drain(&mut a);
        assert!(offers(&acts).is_empty(), "bob is not offered c1: {acts:?}");
        // The caller waits in its queue meanwhile (the wallboard counts it).
        let view = a.queues_view(t);
        assert_eq!(
            view.iter().find(|q| q.name == "support").map(|q| q.waiting),
            Some(1)
        );
        // carol's call ends; after her wrap-up (sales: 5 s) she gets c1 before s2.
        let t2 = t + Duration::from_secs(10);
        a.call_ended(t2, "s1", "caller");
        drain(&mut a);
        a.handle_timeout(t2 + Duration::from_secs(5));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["carol".into()])]);
    }

    #[test]
    fn a_missed_transfer_goes_back_to_the_queue() {
        let (mut a, t) = transfer_setup(true);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        drain(&mut a);
        // carol lets it ring out: the caller goes back to support, where bob takes it;
        // carol is not rung again for it.
        let t2 = t + Duration::from_secs(10);
        a.offer_ended(t2, "c1", "carol", OfferEnd::NoAnswer);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["bob".into()])]);
        let rows = log_rows(&acts);
        assert!(
            rows.contains(&("fallback", Some("carol".into()), Some("no_answer".into()))),
            "{rows:?}"
        );
        assert_eq!(a.agent_state("carol"), Some(AgentState::Available));
        assert!(a.answered(t2, "c1", "bob"));
        // A refusal by the phone (busy) falls back the same way.
        let (mut a, t) = transfer_setup(true);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        drain(&mut a);
        a.offer_ended(t, "c1", "carol", OfferEnd::Busy);
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c1".into(), vec!["bob".into()])]
        );
    }

    #[test]
    fn a_transfer_waits_at_most_its_bound_for_the_agent() {
        let (mut a, t) = transfer_setup(true);
        a.join(t, "s1", "sales", None, vec![]);
        assert!(a.answered(t, "s1", "carol"));
        drain(&mut a);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        drain(&mut a);
        a.handle_timeout(t + WAIT - Duration::from_millis(1));
        assert!(offers(&drain(&mut a)).is_empty());
        a.handle_timeout(t + WAIT);
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["bob".into()])]);
        assert!(log_rows(&acts).contains(&(
            "fallback",
            Some("carol".into()),
            Some("timeout".into())
        )));
        // carol free later: c1 is bob's now, she is not offered it.
        a.call_ended(t + WAIT, "s1", "caller");
        a.handle_timeout(t + WAIT + Duration::from_secs(5));
        assert!(offers(&drain(&mut a)).is_empty());
    }

    #[test]
    fn a_transfer_ringing_at_its_bound_lets_the_ring_finish() {
        let (mut a, t) = transfer_setup(true);
        a.join(t, "s1", "sales", None, vec![]);
        assert!(a.answered(t, "s1", "carol"));
        drain(&mut a);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        // carol free just before the bound: rung; the bound passes while she rings.
        a.call_ended(t + Duration::from_secs(20), "s1", "caller");
        a.handle_timeout(t + Duration::from_secs(25));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["carol".into()])]);
        a.handle_timeout(t + WAIT + Duration::from_secs(1));
        assert!(offers(&drain(&mut a)).is_empty());
        assert!(a.answered(t + WAIT + Duration::from_secs(2), "c1", "carol"));
    }

    #[test]
    fn a_transfer_to_an_agent_not_logged_in_goes_straight_back() {
        let (mut a, t) = transfer_setup(true);
        a.logout(t, "carol");
        drain(&mut a);
        let out = a.transfer_to_agent(t, "c1", "carol", WAIT);
        assert_eq!(out, Ok(TransferOutcome::FellBack));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["bob".into()])]);
        assert!(log_rows(&acts).contains(&(
            "fallback",
            Some("carol".into()),
            Some("logged_out".into())
        )));
        // The agent who transferred (no wrap-up here: available at once) does not get the
        // caller straight back: she was tried, so it waits `retry` first.
        let mut a = Acd::new(vec![QueueConfig::new("support")], true, 7);
        let mut support = QueueConfig::new("support");
        support.wrapup = Duration::ZERO;
        a.queues.get_mut("support").expect("support").cfg = support;
        a.agent_update(t, def("alice", &["support"], &[]), true);
        a.agent_update(t, def("carol", &[], &[]), false);
        a.join(t, "c1", "support", None, vec![]);
        assert!(a.answered(t, "c1", "alice"));
        drain(&mut a);
        let out = a.transfer_to_agent(t, "c1", "carol", WAIT);
        assert_eq!(out, Ok(TransferOutcome::FellBack));
        assert_eq!(a.agent_state("alice"), Some(AgentState::Available));
        assert!(offers(&drain(&mut a)).is_empty());
        a.handle_timeout(t + Duration::from_secs(2));
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("c1".into(), vec!["alice".into()])]
        );
    }

    #[test]
    fn the_named_agent_logging_out_sends_the_caller_back() {
        let (mut a, t) = transfer_setup(true);
        a.join(t, "s1", "sales", None, vec![]);
        assert!(a.answered(t, "s1", "carol"));
        drain(&mut a);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        drain(&mut a);
        // carol finishes her call and logs out during wrap-up.
        a.call_ended(t + Duration::from_secs(3), "s1", "caller");
        a.logout(t + Duration::from_secs(4), "carol");
        drain(&mut a);
        a.handle_timeout(t + Duration::from_secs(8));
        let acts = drain(&mut a);
        assert_eq!(offers(&acts), vec![("c1".into(), vec!["bob".into()])]);
        assert!(log_rows(&acts).contains(&(
            "fallback",
            Some("carol".into()),
            Some("logged_out".into())
        )));
    }

    #[test]
    fn a_fallen_back_caller_keeps_its_priority() {
        let mut support = QueueConfig::new("support");
        support.segment_priority.insert("vip".into(), 10);
        let mut a = Acd::new(vec![support, QueueConfig::new("sales")], true, 7);
        let t = Instant::now();
        a.agent_update(t, def("alice", &["support"], &[]), true);
        a.agent_update(t, def("carol", &["sales"], &[]), true);
        a.join(t, "vip", "support", Some("vip"), vec![]);
        assert!(a.answered(t, "vip", "alice"));
        a.join(t + Duration::from_secs(1), "plain", "support", None, vec![]);
        a.transfer_to_agent(t + Duration::from_secs(2), "vip", "carol", WAIT)
            .expect("transfer");
        drain(&mut a);
        a.offer_ended(
            t + Duration::from_secs(3),
            "vip",
            "carol",
            OfferEnd::NoAnswer,
        );
        drain(&mut a);
        // bob joins support: the VIP, transferred after "plain" arrived, is offered first.
        a.agent_update(
            t + Duration::from_secs(4),
            def("bob", &["support"], &[]),
            true,
        );
        assert_eq!(
            offers(&drain(&mut a)),
            vec![("vip".into(), vec!["bob".into()])]
        );
    }

    #[test]
    fn transfer_refusals_and_a_caller_hanging_up_while_it_waits() {
        let (mut a, t) = transfer_setup(true);
        assert_eq!(
            a.transfer_to_agent(t, "c1", "nobody", WAIT),
            Err(TransferError::UnknownAgent)
        );
        assert_eq!(
            a.transfer_to_agent(t, "c1", "alice", WAIT),
            Err(TransferError::ToSelf)
        );
        assert_eq!(
            a.transfer_to_agent(t, "c9", "carol", WAIT),
            Err(TransferError::NotConnected)
        );
        assert!(drain(&mut a).is_empty(), "a refusal changes nothing");
        assert_eq!(a.agent_state("alice"), Some(AgentState::OnCall));
        // A waiting caller (not connected) cannot be transferred either.
        a.join(t, "c2", "support", None, vec![]);
        drain(&mut a);
        assert_eq!(
            a.transfer_to_agent(t, "c2", "carol", WAIT),
            Err(TransferError::NotConnected)
        );
        // The transferred caller hangs up while carol is busy: nothing is left for her.
        a.join(t, "s1", "sales", None, vec![]);
        drain(&mut a);
        a.transfer_to_agent(t, "c1", "carol", WAIT)
            .expect("transfer");
        a.leave(t + Duration::from_secs(1), "c1", "caller_hangup");
        let acts = drain(&mut a);
        assert!(logs(&acts).contains(&"abandon"));
        a.offer_ended(
            t + Duration::from_secs(2),
            "s1",
            "carol",
            OfferEnd::NoAnswer,
        );
        a.handle_timeout(t + WAIT + Duration::from_secs(60));
        let acts = drain(&mut a);
        assert!(offers(&acts).iter().all(|(c, _)| c != "c1"), "{acts:?}");
        assert!(a.directed.is_empty());
    }
}
