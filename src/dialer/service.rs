//! The dialer service: one runner task per running campaign, the shell around the pure
//! rules in [`super::core`].
//!
//! A runner loops: process finished calls (write the attempt's result, decide the contact's
//! next state with `after_attempt`, add opt-outs to do-not-call, fire the webhook and/or
//! queue the SMS (see [`super::sms`]) after a last failed attempt), then dial while both its own pacer and the trunk's shared gate
//! allow: fetch due contacts, pass each through `may_dial` (window in the customer's zone,
//! DNC, 30-day cap), claim the attempt in the database (the claim commits before the INVITE
//! is sent), and start an outbound call actor. It sleeps exactly until the next token or a
//! result, and polls for due retries once a second.
//!
//! The campaign's state in the database rules every node: a claim succeeds only while the
//! campaign is `running`, and each runner re-reads the state every [`CONTROL_POLL`], so a
//! pause or stop through any node's API stops every node's runner (calls in progress end
//! normally); in a cluster each node polls for running campaigns without a live runner and
//! starts one, which is how a start or resume reaches the other nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use super::core::{
    after_attempt, may_dial, timezones_for, CallingWindow, ContactState, Disposition, Pacer,
    Refusal, RetryPolicy,
};
use crate::call::actor::{run_outbound, CallResult, MachineHandling, OutboundRequest};
use crate::call::CallContext;
use crate::config::Config;
use crate::http_client::{HttpClient, HttpError, Method, Request, Url, DEFAULT_MAX_BODY};
use crate::store::campaigns::{self, CampaignRow, ContactRow};
use crate::store::{tickets, StoreError};

/// How many due contacts a runner reads per query.
const FETCH: i64 = 200;
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a runner re-reads its campaign's state, and (in a cluster) how often a node
/// looks for running campaigns it has no runner for: the bound on how long another node's
/// runner keeps going after a pause or stop made through this node's API (it claims no
/// contact meanwhile: [`campaigns::claim`] checks the state), and on how long a resume
/// takes to reach the other nodes. docs/deployment.md, "Campaign control across nodes".
pub const CONTROL_POLL: Duration = Duration::from_secs(1);

/// Parse and check a retry policy given as JSON (API validation and runners share it).
pub fn retry_policy_from_json(v: &serde_json::Value) -> Result<RetryPolicy, String> {
    let p: RetryPolicy = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// Settings of a running campaign, from its stored spec.
#[derive(Debug, Clone)]
struct Settings {
    max_channels: u32,
    max_cps: f64,
    ring_timeout: Duration,
    window: CallingWindow,
    retry: RetryPolicy,
    webhook_url: Option<String>,
    /// After the last failed attempt: the webhook (`webhook_url`), an SMS, or both.
    fallback: Fallback,
    /// The campaign's own SMS text (`sms_text`), else `[sms] text`.
    sms_text: Option<String>,
    machine: Option<MachineHandling>,
    schedule_start: Option<DateTime<Utc>>,
    schedule_end: Option<DateTime<Utc>>,
    /// Per-segment dialplan and language (`segments.<name>.dialplan|language`).
    segment_overrides: std::collections::HashMap<String, (Option<String>, Option<String>)>,
}

/// What a campaign does for a contact whose last attempt failed (`fallback` in its spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// POST to `webhook_url` (when given): the default, as before `fallback` existed.
    Webhook,
    Sms,
    Both,
}

impl Fallback {
    pub fn parse(s: &str) -> Option<Fallback> {
        match s {
            "webhook" => Some(Fallback::Webhook),
            "sms" => Some(Fallback::Sms),
            "both" => Some(Fallback::Both),
            _ => None,
        }
    }

    fn webhook(self) -> bool {
        self != Fallback::Sms
    }

    fn sms(self) -> bool {
        self != Fallback::Webhook
    }
}

/// `segments` of a campaign spec: which dialplan and language each segment uses.
fn segment_overrides(
    spec: &serde_json::Value,
) -> std::collections::HashMap<String, (Option<String>, Option<String>)> {
    let Some(map) = spec.get("segments").and_then(|v| v.as_object()) else {
        return Default::default();
    };
    map.iter()
        .map(|(seg, rule)| {
            let get = |k: &str| rule.get(k).and_then(|v| v.as_str()).map(str::to_string);
            (seg.clone(), (get("dialplan"), get("language")))
        })
        .filter(|(_, (d, l))| d.is_some() || l.is_some())
        .collect()
}

fn settings(c: &CampaignRow, trunk_channels: u32, trunk_cps: f64) -> Settings {
    let spec = &c.spec;
    let window = spec
        .get("window")
        .and_then(|w| Some((w.get("start")?.as_str()?, w.get("end")?.as_str()?)))
        .and_then(|(a, b)| CallingWindow::parse(a, b).ok())
        .unwrap_or_default();
    let retry = spec
        .get("retry")
        .and_then(|r| retry_policy_from_json(r).ok())
        .unwrap_or_default();
    let ts = |k: &str| {
        spec.get("schedule")
            .and_then(|s| s.get(k))
            .and_then(|v| v.as_str())
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Settings {
        max_channels: spec
            .get("max_channels")
            .and_then(|v| v.as_u64())
            .map_or(trunk_channels, |v| v as u32)
            .min(trunk_channels)
            .max(1),
        max_cps: spec
            .get("max_cps")
            .and_then(|v| v.as_f64())
            .unwrap_or(trunk_cps)
            .min(trunk_cps),
        ring_timeout: Duration::from_secs(
            spec.get("ring_timeout_s")
                .and_then(|v| v.as_u64())
                .unwrap_or(25)
                .clamp(15, 120),
        ),
        window,
        retry,
        webhook_url: spec
            .get("webhook_url")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        fallback: spec
            .get("fallback")
            .and_then(|v| v.as_str())
            .and_then(Fallback::parse)
            .unwrap_or(Fallback::Webhook),
        sms_text: spec
            .get("sms_text")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        // Answering machines are detected on every campaign call; "voicemail" leaves the
        // message, anything else hangs up and retries per the `machine` rule.
        machine: Some(match spec.get("machine").and_then(|v| v.as_str()) {
            Some("voicemail") => MachineHandling::Voicemail,
            _ => MachineHandling::Hangup,
        }),
        schedule_start: ts("start"),
        schedule_end: ts("end"),
        segment_overrides: segment_overrides(spec),
    }
}

struct Shared {
    ctx: Arc<CallContext>,
    /// Per campaign: its stop token, its live call count, and whether its runner task is
    /// still alive (a paused runner keeps running until its calls have finished).
    runners: Mutex<HashMap<i64, Runner>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Wakes the SMS sender when a text is queued.
    sms_wake: Arc<tokio::sync::Notify>,
    /// The outbound HTTP ends, made once at start.
    http: DialerHttp,
    /// When this process's dialer started: no campaign dials within the first second
    /// (`Pacer::hold_until`), so a restart cannot double the calls-per-second cap.
    started: Instant,
}

struct Runner {
    stop: CancellationToken,
    active: Arc<AtomicU32>,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// The dialer's outbound HTTP: the `[sms]` gateway (when configured) and the client for
/// campaigns' webhooks (`[webhooks]`). Made before the server binds anything, so an unusable
/// URL or CA file stops the start.
#[derive(Debug, Clone)]
pub struct DialerHttp {
    sms: Option<super::sms::Gateway>,
    webhook: HttpClient,
}

impl DialerHttp {
    pub fn from_config(config: &Config) -> Result<DialerHttp, HttpError> {
        let sms = config
            .sms
            .clone()
            .map(super::sms::Gateway::new)
            .transpose()?;
        let w = &config.webhooks;
        let webhook = HttpClient::new(
            Duration::from_secs(w.timeout_s),
            DEFAULT_MAX_BODY,
            w.ca_file.as_deref().map(|p| ("[webhooks] ca_file", p)),
        )?;
        Ok(DialerHttp { sms, webhook })
    }
}

/// Start/stop campaign runners; cheap to clone.
#[derive(Clone)]
pub struct DialerHandle {
    shared: Arc<Shared>,
}

impl DialerHandle {
    pub fn new(
        ctx: Arc<CallContext>,
        shutdown: CancellationToken,
        http: DialerHttp,
    ) -> DialerHandle {
        DialerHandle {
            shared: Arc::new(Shared {
                ctx,
                runners: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                shutdown,
                sms_wake: Arc::new(tokio::sync::Notify::new()),
                http,
                started: Instant::now(),
            }),
        }
    }

    /// Start the SMS fallback sender when `[sms]` is configured (once, at start).
    pub fn start_sms(&self) {
        let Some(gw) = self.shared.http.sms.clone() else {
            return;
        };
        self.shared.tracker.spawn(super::sms::run_sender(
            self.shared.ctx.db.clone(),
            gw,
            self.shared.sms_wake.clone(),
            self.shared.shutdown.clone(),
        ));
    }

    /// Resume every campaign that was running before a restart.
    pub async fn resume_running(&self) -> Result<usize, StoreError> {
        let running = campaigns::by_state(&self.shared.ctx.db, "running").await?;
        for c in &running {
            self.run(c.id);
        }
        Ok(running.len())
    }

    /// Start runners for the running campaigns this node has no live runner for: in a
    /// cluster a campaign started, or resumed, through another node's API (the nodes poll
    /// for them every [`CONTROL_POLL`]; see docs/deployment.md). The database's state
    /// decides: a runner this node halted (its own API's pause), or one that stopped after
    /// seeing the campaign paused elsewhere, is replaced once the campaign runs again. A
    /// runner that ended without being halted (its trunk is gone, its pacing is bad) is left
    /// alone: a new one would end the same way.
    pub async fn adopt_running(&self) -> Result<usize, StoreError> {
        let running = campaigns::by_state(&self.shared.ctx.db, "running").await?;
        let new: Vec<i64> = {
            let runners = match self.shared.runners.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            running
                .iter()
                .map(|c| c.id)
                .filter(|id| runners.get(id).is_none_or(|r| r.stop.is_cancelled()))
                .collect()
        };
        for id in &new {
            self.run(*id);
        }
        Ok(new.len())
    }

    /// Start a runner for a campaign (idempotent).
    pub fn run(&self, id: i64) {
        let mut runners = match self.shared.runners.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if runners.get(&id).is_some_and(|r| !r.stop.is_cancelled()) {
            return;
        }
        // A paused runner may still be waiting for its calls: the new one starts after it,
        // so in-flight contacts are not mistaken for crashed ones and channels are not
        // counted twice.
        let previous = runners.get(&id).map(|r| r.alive.clone());
        let stop = self.shared.shutdown.child_token();
        let active = Arc::new(AtomicU32::new(0));
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        runners.insert(
            id,
            Runner {
                stop: stop.clone(),
                active: active.clone(),
                alive: alive.clone(),
            },
        );
        let shared = self.shared.clone();
        self.shared.tracker.spawn(
            async move {
                if let Some(prev) = previous {
                    while prev.load(Ordering::Acquire) && !stop.is_cancelled() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                // A database outage stops a pass; the runner retries until stopped.
                while !stop.is_cancelled() {
                    match run_campaign(shared.clone(), id, stop.clone(), active.clone()).await {
                        Ok(()) => break,
                        Err(e) => {
                            warn!(campaign = id, error = %e, "campaign runner hit a database error; retrying in 5 s");
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            }
                        }
                    }
                }
                alive.store(false, Ordering::Release);
            }
            .instrument(info_span!("campaign", id)),
        );
    }

    /// Stop dialing new contacts for a campaign (calls in progress finish normally).
    pub fn halt(&self, id: i64) {
        let runners = match self.shared.runners.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(r) = runners.get(&id) {
            r.stop.cancel();
        }
    }

    pub fn active_calls(&self, id: i64) -> u32 {
        let runners = match self.shared.runners.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        runners
            .get(&id)
            .map_or(0, |r| r.active.load(Ordering::Relaxed))
    }

    /// Wait for runners and their calls after shutdown was signalled.
    pub async fn wait(&self) {
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

/// The customer's candidate zones: the ticket's, unless it is empty or the schema default
/// `UTC` (meaning "unknown"), in which case every zone the number can be in (none when the
/// number cannot be placed: the contact is then refused, `no_timezone`).
fn contact_zones(c: &ContactRow) -> Vec<chrono_tz::Tz> {
    let tz = c.timezone.trim();
    let known = !tz.is_empty() && !tz.eq_ignore_ascii_case("UTC");
    timezones_for(known.then_some(tz), &c.phone)
}

fn fmt_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parse what the database returns for a timestamp (ISO text, or PostgreSQL's text form).
fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let fixed = if s.len() > 3 && (s.ends_with("+00") || s.ends_with("-00")) {
        format!("{s}:00")
    } else {
        s.to_string()
    };
    DateTime::parse_from_str(&fixed, "%Y-%m-%d %H:%M:%S%.f%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

struct Finished {
    contact: ContactRow,
    attempt: i64,
    result: Option<CallResult>,
}

async fn run_campaign(
    shared: Arc<Shared>,
    id: i64,
    stop: CancellationToken,
    active: Arc<AtomicU32>,
) -> Result<(), StoreError> {
    let ctx = shared.ctx.clone();
    let db = &ctx.db;
    let Some(campaign) = campaigns::get(db, id).await? else {
        return Ok(());
    };
    if campaign.state != "running" {
        // Paused or stopped (through any node) between the decision to run and now.
        stop.cancel();
        return Ok(());
    }
    let Some(trunk) = ctx.config.trunk(&campaign.trunk).cloned() else {
        warn!(trunk = %campaign.trunk, "campaign's trunk is no longer configured; not dialing");
        return Ok(());
    };
    let st = settings(&campaign, trunk.max_channels, trunk.max_cps);
    info!(name = %campaign.name, channels = st.max_channels, cps = st.max_cps, "campaign running");
    let now = Instant::now();
    let mut pacer = match Pacer::new(st.max_cps, st.max_channels, now) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "bad pacing; not dialing");
            return Ok(());
        }
    };
    pacer.hold_until(shared.started + crate::dialer::core::SLIDING_WINDOW);
    // In a cluster the campaign's caps are held across the nodes: this runner dials within
    // the node's block of them (dialer::share), given back when the runner ends.
    let shares = ctx.trunk_gates.shares().cloned();
    let share_key = super::share::ShareKey::campaign(id);
    let mut fit = super::share::Fit::new(st.max_channels, st.max_cps);
    let _share_guard = shares.as_ref().map(|s| {
        s.register(share_key.clone(), st.max_channels, now);
        CloseShare(s.clone(), share_key.clone(), active.clone())
    });
    // When the block is full and nothing is queued, whether the campaign has work is
    // read at most this often (a block grows only for work).
    let mut next_prefetch = Instant::now();
    let dead_after_s = ctx.config.cluster.dead_after.as_secs() as i64;
    let lease = campaigns::Lease {
        node: &ctx.config.node_id,
        ttl_s: dead_after_s,
    };
    // Attempts this node claimed before a crash: possibly dialed, so counted and retried per
    // policy. Another node's are taken over only once it is dead (`take_orphans` below).
    for c in campaigns::interrupted_contacts(db, id, lease.node, dead_after_s).await? {
        finish(&ctx, &st, &shared, &c, c.attempts, None).await?;
    }
    let mut next_orphan_check = Instant::now();
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(1024);
    let mut queue: std::collections::VecDeque<ContactRow> = std::collections::VecDeque::new();
    let mut stopping = false;
    let mut next_state_check = Instant::now() + CONTROL_POLL;
    loop {
        // Results first: they free channels and decide retries.
        while let Ok(f) = done_rx.try_recv() {
            handle_finished(&ctx, &st, &shared, &active, f).await?;
        }
        // The campaign's state is the database's: a pause or stop through another node's
        // API is seen here within CONTROL_POLL (claims already fail meanwhile). The runner
        // then ends like one halted on this node, and the node's poll starts a new one
        // when the campaign is resumed (`adopt_running`).
        if !stopping && !stop.is_cancelled() && Instant::now() >= next_state_check {
            next_state_check = Instant::now() + CONTROL_POLL;
            let now_state = campaigns::state(db, id).await?;
            if now_state.as_deref() != Some("running") {
                info!(state = ?now_state, "campaign is no longer running: no new contacts; calls in progress finish");
                stop.cancel();
            }
        }
        // A draining node finishes its calls and claims no new contact.
        if !stopping && (stop.is_cancelled() || ctx.draining.load(Ordering::Relaxed)) {
            stopping = true;
            // The reserved contacts go back at once, for the other nodes (or a resume).
            queue.clear();
            campaigns::release_reservations(db, id, lease.node).await?;
        }
        if !stopping && Instant::now() >= next_orphan_check {
            next_orphan_check = Instant::now() + ctx.config.cluster.heartbeat;
            // Dialing contacts of a node that died: their attempt is over (counted once,
            // as interrupted) and the retry policy decides, as after our own crash.
            for c in campaigns::take_orphans(db, id, lease).await? {
                warn!(
                    contact = c.id,
                    attempt = c.attempts,
                    "contact of a dead node taken over: attempt closed as interrupted"
                );
                finish(&ctx, &st, &shared, &c, c.attempts, None).await?;
            }
        }
        let wall = Utc::now();
        if st.schedule_end.is_some_and(|e| wall >= e) && !stopping {
            info!("campaign schedule ended");
            campaigns::set_state(db, id, &["running"], "completed").await?;
            stopping = true;
        }
        if stopping && active.load(Ordering::Relaxed) == 0 {
            break;
        }
        let mut next_wake = Instant::now() + IDLE_POLL;
        let before_start = st.schedule_start.is_some_and(|s| wall < s);
        if !stopping && !before_start {
            loop {
                let now = Instant::now();
                let running = active.load(Ordering::Relaxed);
                if let Some(s) = &shares {
                    // Channels in use, for the block's idle accounting.
                    s.observe(&share_key, now, running, false);
                    if let Some(l) = s.limits(&share_key, now) {
                        if !fit.apply(l, &mut pacer) {
                            s.paced(&share_key);
                            // Channels just granted: their rate follows within a second.
                            next_wake = next_wake.min(now + SHARE_WAIT);
                            break;
                        }
                    }
                }
                if !pacer.can_dial(now, running) {
                    if running < pacer.max_channels() {
                        next_wake = next_wake.min(pacer.next_token_at(now));
                        if let (Some(s), false) = (&shares, queue.is_empty()) {
                            // Waiting for the rate with work at hand: not idle channels.
                            s.paced(&share_key);
                        }
                    } else if let Some(s) = &shares {
                        // The node's block is full: ask for more only with work at hand.
                        if queue.is_empty() && now >= next_prefetch {
                            next_prefetch = now + IDLE_POLL;
                            // A few only: reserving a full batch would keep the
                            // contacts from nodes that have channels now.
                            let few = i64::from(st.max_channels).min(FETCH);
                            queue.extend(
                                campaigns::due(db, id, &fmt_ts(Utc::now()), few, lease).await?,
                            );
                        }
                        let has_work = !queue.is_empty();
                        s.observe(&share_key, now, running, has_work);
                        if has_work && running < st.max_channels {
                            next_wake = next_wake.min(now + SHARE_WAIT);
                        }
                    }
                    break;
                }
                // The trunk's own gate, shared with every other campaign; a full trunk
                // hands the call to its `failover` trunk when that one has room.
                let via = match super::gate::pick_trunk(
                    &ctx.trunk_gates,
                    &ctx.config.trunks,
                    &trunk,
                    now,
                ) {
                    Ok(t) => t.clone(),
                    Err(wait) => {
                        if let Some(s) = &shares {
                            // The campaign waits for the trunk: its channels are not idle
                            // (else the two blocks could take turns being given back).
                            s.paced(&share_key);
                        }
                        match wait {
                            Some(t) => next_wake = next_wake.min(t),
                            // In a cluster a full trunk may be this node's block of it,
                            // which grows without a call event: look again soon.
                            None if shares.is_some() => next_wake = next_wake.min(now + SHARE_WAIT),
                            None => {}
                        }
                        break;
                    }
                };
                // Held from before the database round trips below: another campaign on
                // the same trunk checking meanwhile sees the channel taken. A contact that
                // is then not dialed gives it back (the rate token stays spent).
                let Some(slot) = ctx.trunk_gates.try_take(&via.name, now) else {
                    next_wake = next_wake.min(now + Duration::from_millis(20));
                    break;
                };
                if queue.is_empty() {
                    queue.extend(campaigns::due(db, id, &fmt_ts(Utc::now()), FETCH, lease).await?);
                    if queue.is_empty() {
                        break;
                    }
                }
                let Some(contact) = queue.pop_front() else {
                    break;
                };
                let dialed = dial(
                    &shared, &st, &via, slot, &campaign, contact, &active, &done_tx, &mut pacer,
                )
                .await?;
                if dialed == Dialed::CampaignLeft {
                    // Paused or stopped elsewhere: look at the state now, not at the next
                    // poll, rather than try the rest of the queue.
                    next_state_check = Instant::now();
                    next_wake = Instant::now();
                    break;
                }
            }
            if active.load(Ordering::Relaxed) == 0
                && queue.is_empty()
                && campaigns::open_contacts(db, id).await? == 0
            {
                info!(name = %campaign.name, "every contact is done; campaign completed");
                campaigns::set_state(db, id, &["running"], "completed").await?;
                break;
            }
        }
        let sleep_until = tokio::time::Instant::from_std(
            next_wake.max(Instant::now() + Duration::from_millis(5)),
        );
        tokio::select! {
            _ = stop.cancelled(), if !stopping => {}
            Some(f) = done_rx.recv() => handle_finished(&ctx, &st, &shared, &active, f).await?,
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
    }
    debug!("campaign runner ends");
    Ok(())
}

/// How soon a runner waiting on its node's block of a shared cap looks again.
const SHARE_WAIT: Duration = Duration::from_millis(100);

/// Gives a campaign's block back when its runner ends (however it ends).
struct CloseShare(super::share::Shares, super::share::ShareKey, Arc<AtomicU32>);

impl Drop for CloseShare {
    fn drop(&mut self) {
        let active = self.2.load(Ordering::Relaxed);
        self.0.observe(&self.1, Instant::now(), active, false);
        self.0.close(&self.1);
    }
}

/// What [`dial`] did with a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialed {
    /// A call was started.
    Started,
    /// Not dialed: refused by the rules, postponed, or claimed by another node.
    Skipped,
    /// Not dialed: the claim failed because the campaign is no longer running.
    CampaignLeft,
}

/// Gate, claim and dial one contact.
#[allow(clippy::too_many_arguments)]
async fn dial(
    shared: &Arc<Shared>,
    st: &Settings,
    trunk: &crate::config::Trunk,
    slot: super::gate::TrunkSlot,
    campaign: &CampaignRow,
    contact: ContactRow,
    active: &Arc<AtomicU32>,
    done_tx: &mpsc::Sender<Finished>,
    pacer: &mut Pacer,
) -> Result<Dialed, StoreError> {
    let ctx = &shared.ctx;
    let db = &ctx.db;
    let wall = Utc::now();
    let zones = contact_zones(&contact);
    let state = ContactState::parse(&contact.state).unwrap_or(ContactState::Pending);
    let next = contact.next_attempt_at.as_deref().and_then(parse_ts);
    let on_dnc = campaigns::on_dnc(db, &contact.phone).await?;
    let recent = campaigns::attempts_last_30_days(
        db,
        &contact.phone,
        &fmt_ts(wall - chrono::Duration::days(30)),
    )
    .await?;
    match may_dial(
        wall,
        &zones,
        &st.window,
        state,
        next,
        on_dnc,
        recent as u32,
        &st.retry,
    ) {
        Ok(()) => {}
        Err(Refusal::OutsideWindow(open)) | Err(Refusal::NotDue(open)) => {
            campaigns::postpone(db, contact.id, &fmt_ts(open)).await?;
            return Ok(Dialed::Skipped);
        }
        Err(Refusal::DoNotCall) => {
            campaigns::set_contact_state(db, contact.id, "dnc", Some("do_not_call")).await?;
            return Ok(Dialed::Skipped);
        }
        Err(Refusal::OptedOut) => {
            campaigns::set_contact_state(db, contact.id, "opted_out", None).await?;
            return Ok(Dialed::Skipped);
        }
        Err(Refusal::AttemptCap) => {
            campaigns::set_contact_state(db, contact.id, "failed", Some("attempt_cap_30_days"))
                .await?;
            return Ok(Dialed::Skipped);
        }
        Err(Refusal::NotDialable(_)) => return Ok(Dialed::Skipped),
        Err(r @ (Refusal::NoTimezone | Refusal::NoCommonWindow)) => {
            // Calling hours cannot be honoured for this customer: skip the contact with the
            // reason recorded rather than dial by a guessed zone (docs/operations.md).
            warn!(contact = contact.id, phone = %contact.phone, reason = r.reason(), "contact skipped: {r}");
            campaigns::set_contact_state(db, contact.id, "failed", Some(r.reason())).await?;
            return Ok(Dialed::Skipped);
        }
    }
    if shared.shutdown.is_cancelled() {
        return Ok(Dialed::Skipped);
    }
    let lease = campaigns::Lease {
        node: &ctx.config.node_id,
        ttl_s: ctx.config.cluster.dead_after.as_secs() as i64,
    };
    let Some(attempt) = campaigns::claim(db, &contact, lease).await? else {
        if campaigns::state(db, campaign.id).await?.as_deref() != Some("running") {
            return Ok(Dialed::CampaignLeft);
        }
        return Ok(Dialed::Skipped);
    };
    let ticket = tickets::by_id(db, contact.ticket_id).await?;
    let mut vars = crate::ivr::expr::Vars::new();
    if let Some(t) = &ticket {
        if let Some(lang) = t.get("language").filter(|l| !l.is_empty()) {
            vars.insert("language".into(), lang.clone());
        }
        for (k, v) in t {
            vars.insert(format!("ticket.{k}"), v.clone());
        }
    }
    vars.insert("campaign.name".into(), campaign.name.clone());
    vars.insert("campaign.id".into(), campaign.id.to_string());
    // Segment rules: e.g. VIPs get their own dialplan (straight to an agent) or language.
    let mut dialplan = campaign.dialplan.clone();
    let segment = ticket.as_ref().and_then(|t| t.get("segment")).cloned();
    if let Some((d, l)) = segment.and_then(|s| st.segment_overrides.get(&s)) {
        if let Some(d) = d {
            dialplan = d.clone();
        }
        if let Some(l) = l {
            vars.insert("language".into(), l.clone());
        }
    }
    // The language before the first word: the ticket's (or the segment's), else the
    // customer's number's prefix, else unknown (the dialplan may offer the choice).
    if vars.contains_key("language") {
        vars.insert("language_source".into(), "ticket".into());
    } else {
        let (lang, source) =
            crate::ivr::language::choose(None, &contact.phone, &ctx.config.language_prefixes);
        if let Some(l) = lang {
            vars.insert("language".into(), l);
        }
        vars.insert("language_source".into(), source.as_str().into());
    }
    let (tx, rx) = oneshot::channel();
    let req = OutboundRequest {
        slot: Some(slot),
        dialplan,
        vars,
        ticket_id: Some(contact.ticket_id),
        campaign_id: Some(campaign.id),
        result: Some(tx),
        machine: st.machine,
        ..OutboundRequest::new(
            contact.phone.clone(),
            trunk.clone(),
            campaign.caller_id.clone(),
            st.ring_timeout,
        )
    };
    if shared.shutdown.is_cancelled() {
        // The stop began while this contact was being claimed: do not start a call that
        // shutdown would have to cut (and might not finish cutting before the process
        // exits). The claimed attempt was never dialed; it is closed as interrupted and
        // retried per policy, like any attempt a stop cut.
        finish(ctx, st, shared, &contact, attempt, None).await?;
        return Ok(Dialed::Skipped);
    }
    pacer.take(Instant::now());
    active.fetch_add(1, Ordering::Relaxed);
    debug!(contact = contact.id, attempt, "dialing contact");
    let call_shutdown = shared.shutdown.child_token();
    shared
        .tracker
        .spawn_on(run_outbound(ctx.clone(), req, call_shutdown), &ctx.calls_rt);
    let done_tx = done_tx.clone();
    shared.tracker.spawn(async move {
        let result = rx.await.ok();
        let _ = done_tx
            .send(Finished {
                contact,
                attempt,
                result,
            })
            .await;
    });
    Ok(Dialed::Started)
}

async fn handle_finished(
    ctx: &Arc<CallContext>,
    st: &Settings,
    shared: &Arc<Shared>,
    active: &Arc<AtomicU32>,
    f: Finished,
) -> Result<(), StoreError> {
    // The trunk's channel went back when the call dropped its slot.
    active.fetch_sub(1, Ordering::Relaxed);
    finish(ctx, st, shared, &f.contact, f.attempt, f.result.as_ref()).await
}

/// Write an attempt's end and move the contact on. No result: the attempt was cut
/// (`interrupted`: our stop, a crash, a dead node).
async fn finish(
    ctx: &Arc<CallContext>,
    st: &Settings,
    shared: &Arc<Shared>,
    contact: &ContactRow,
    attempt: i64,
    result: Option<&CallResult>,
) -> Result<(), StoreError> {
    let db = &ctx.db;
    let wall = Utc::now();
    let zones = contact_zones(contact);
    let disposition = result.map_or(Disposition::Interrupted, |r| r.disposition);
    let mut disp = disposition;
    let outcome = result.and_then(|r| r.outcome.clone());
    if disp == Disposition::Machine && outcome.as_deref() == Some("voicemail") {
        // The message was left: the customer has been told, like an answered call.
        disp = Disposition::Answered;
    }
    let recent = campaigns::attempts_last_30_days(
        db,
        &contact.phone,
        &fmt_ts(wall - chrono::Duration::days(30)),
    )
    .await?;
    let decision = after_attempt(
        &st.retry,
        disp,
        attempt as u32,
        recent as u32,
        outcome.as_deref(),
        wall,
        &st.window,
        &zones,
    );
    let next = decision.next_attempt_at.map(fmt_ts);
    campaigns::finish_attempt(
        db,
        contact.id,
        attempt,
        result.map(|r| r.call_uuid.as_str()),
        disposition.as_str(),
        outcome.as_deref(),
        decision.state.as_str(),
        next.as_deref(),
    )
    .await?;
    if decision.state == ContactState::OptedOut {
        campaigns::add_dnc(
            db,
            &contact.phone,
            "opted out by keypad during a campaign call",
        )
        .await?;
    }
    info!(contact = contact.id, attempt, disposition = disposition.as_str(), outcome = ?outcome, next = %decision.state.as_str(), reason = decision.reason, "attempt finished");
    if decision.state == ContactState::Failed && st.fallback.sms() {
        queue_sms(ctx, st, shared, contact).await?;
    }
    if decision.state == ContactState::Failed && st.fallback.webhook() {
        if let Some(url) = &st.webhook_url {
            let ticket = tickets::by_id(db, contact.ticket_id).await.ok().flatten();
            let body = serde_json::json!({
                "event": "campaign_contact_failed",
                "campaign_id": contact.campaign_id,
                "ticket_id": contact.ticket_id,
                "ticket": ticket,
                "phone": contact.phone,
                "attempts": attempt,
                "last_disposition": disposition.as_str(),
                "reason": decision.reason,
            });
            let url = url.clone();
            let client = shared.http.webhook.clone();
            // On the dialer's tracker, like its runners: shutdown waits for a webhook in
            // flight (bounded by the client's timeouts) instead of cutting it off.
            shared.tracker.spawn(async move {
                if let Err(e) = post_webhook(&client, &url, &body).await {
                    warn!(%url, error = %e, "webhook failed");
                }
            });
        }
    }
    Ok(())
}

/// Queue the contact's fallback SMS (at most one per contact: the row is keyed by it) and
/// wake the sender. The text is rendered now, from the ticket as it is at the contact's end.
async fn queue_sms(
    ctx: &Arc<CallContext>,
    st: &Settings,
    shared: &Arc<Shared>,
    contact: &ContactRow,
) -> Result<(), StoreError> {
    let Some(gw) = &ctx.config.sms else {
        warn!(
            contact = contact.id,
            "SMS fallback asked for but no [sms] gateway is configured"
        );
        return Ok(());
    };
    let db = &ctx.db;
    let ticket = tickets::by_id(db, contact.ticket_id).await?;
    let campaign = campaigns::get(db, contact.campaign_id)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    let template = st.sms_text.as_deref().unwrap_or(&gw.text);
    let body = super::sms::render(template, ticket.as_ref(), &contact.phone, &campaign);
    if campaigns::enqueue_sms(db, contact, &body, &fmt_ts(Utc::now())).await? {
        debug!(contact = contact.id, "SMS fallback queued");
        shared.sms_wake.notify_one();
    }
    Ok(())
}

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("webhook answered {0}")]
    Status(u16),
}

/// POST the fallback webhook once (`http://` or `https://`); accepted on 2xx.
async fn post_webhook(
    client: &HttpClient,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), WebhookError> {
    let req = Request::new(Method::POST, Url::parse(url)?).json(body);
    let status = match client.send(req).await {
        Ok(r) => r.status,
        // The status line came; the body is not needed to judge it.
        Err(HttpError::TooLarge { status, .. }) => status,
        Err(e) => return Err(e.into()),
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(WebhookError::Status(status))
    }
}

#[cfg(test)]
mod segment_tests {
    #[test]
    fn segment_rules_pick_dialplan_and_language() {
        let spec = serde_json::json!({"segments": {
            "vip": {"priority": 1, "dialplan": "hotline", "language": "zh"},
            "standard": {"priority": 5}
        }});
        let o = super::segment_overrides(&spec);
        assert_eq!(
            o.get("vip"),
            Some(&(Some("hotline".to_string()), Some("zh".to_string())))
        );
        assert!(!o.contains_key("standard"), "priority only: no override");
        assert!(super::segment_overrides(&serde_json::json!({})).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_both_engines() {
        let t = Utc::now();
        let s = fmt_ts(t);
        assert_eq!(
            parse_ts(&s).map(|p| p.timestamp_millis()),
            Some(t.timestamp_millis())
        );
        assert!(parse_ts("2026-11-23 15:26:08.123+00").is_some());
        assert!(parse_ts("garbage").is_none());
    }

    #[test]
    fn retry_policy_json() {
        let p = retry_policy_from_json(
            &serde_json::json!({"no_answer": {"after_s": 60, "max_attempts": 2}}),
        )
        .expect("ok");
        assert_eq!(p.no_answer.after_s, 60);
        assert_eq!(p.busy, RetryPolicy::default().busy);
        assert!(retry_policy_from_json(&serde_json::json!({"bogus": 1})).is_err());
    }
}
