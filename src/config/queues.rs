//! `[[route]]`, `[[queue]]` and `[acd]`: which dialplan answers a called number, the
//! queues' ACD rules and what the call side needs of them, and the agents' pause reasons,
//! dispositions and browser-session lifetime.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source, Trunk};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) to: String,
    pub(super) dialplan: Spanned<String>,
    pub(super) ring_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) name: String,
    pub(super) strategy: Option<String>,
    pub(super) required_skills: Option<std::collections::HashMap<String, i64>>,
    pub(super) ring_timeout_s: Option<u64>,
    pub(super) wrapup_s: Option<u64>,
    pub(super) max_misses: Option<u32>,
    pub(super) max_wait_s: Option<u64>,
    pub(super) max_len: Option<usize>,
    pub(super) join_empty: Option<bool>,
    pub(super) leave_when_empty: Option<bool>,
    pub(super) segment_priority: Option<std::collections::HashMap<String, i32>>,
    pub(super) service_level_s: Option<u64>,
    pub(super) language_skill: Option<bool>,
    pub(super) music_on_hold: Option<String>,
    pub(super) callback_after_s: Option<u64>,
    pub(super) callback_trunk: Option<String>,
    pub(super) retry_s: Option<u64>,
    pub(super) announce_every_s: Option<u64>,
    pub(super) record: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcd {
    pub(super) auto_login: Option<bool>,
    pub(super) pause_reasons: Option<Vec<String>>,
    pub(super) dispositions: Option<Vec<String>>,
    pub(super) session_ttl_s: Option<u64>,
}

/// `[acd] pause_reasons` when not set: what an agent may give as the reason of a pause.
pub const DEFAULT_PAUSE_REASONS: [&str; 4] = ["break", "lunch", "training", "after-call"];
/// `[acd] dispositions` when not set: the outcomes an agent picks from after a call.
pub const DEFAULT_DISPOSITIONS: [&str; 5] = [
    "resolved",
    "refund-issued",
    "callback-promised",
    "escalated",
    "no-resolution",
];
/// `[acd] session_ttl_s` when not set: a browser agent's session lasts a shift (8 h) and
/// no longer; every authorised request slides it.
pub const DEFAULT_SESSION_TTL_S: u64 = 8 * 3600;

/// A queue as configured: the ACD's rules plus what the call side needs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub acd: crate::acd::QueueConfig,
    /// The caller's language adds a `lang:<language>` skill requirement.
    pub language_skill: bool,
    /// Prompt played while waiting (a file under the audio folder, without `.wav`).
    pub music_on_hold: String,
    /// After this wait the caller is offered a callback (press 1); None: never.
    pub callback_after_s: Option<u64>,
    /// Trunk for callbacks (default: the first trunk).
    pub callback_trunk: Option<String>,
    /// Every this often a waiting caller hears its position and estimated wait; None: never.
    pub announce_every_s: Option<u64>,
    /// Record bridged calls (stereo WAV in `[server] recordings_dir`).
    pub record: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub to: String,
    pub dialplan: String,
    pub ring_ms: u64,
    /// Source line, to report a route whose dialplan is missing.
    pub line: usize,
}

/// Check every `[[route]]`.
pub(super) fn routes(raw: &[Spanned<RawRoute>], s: &Source<'_>) -> Result<Vec<Route>, ConfigError> {
    let file = s.file;
    let mut routes = Vec::new();
    for r in raw {
        let line = s.line(r.span().start);
        let r = r.get_ref();
        if r.to.is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                line,
                reason: "route 'to' must not be empty".into(),
            });
        }
        routes.push(Route {
            to: r.to.clone(),
            dialplan: r.dialplan.get_ref().clone(),
            ring_ms: r.ring_ms.unwrap_or(1000),
            line,
        });
    }
    Ok(routes)
}

/// Check every `[[queue]]` (a callback trunk must be one of `trunks`).
pub(super) fn queues(
    raw: &[Spanned<RawQueue>],
    trunks: &[Trunk],
    s: &Source<'_>,
) -> Result<Vec<QueueSettings>, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let mut queue_settings: Vec<QueueSettings> = Vec::new();
    for q in raw {
        let at = q.span().start;
        let q = q.get_ref();
        if queue_settings.iter().any(|x| x.acd.name == q.name) {
            return Err(err(at, format!("queue '{}' is defined twice", q.name)));
        }
        let mut c = crate::acd::QueueConfig::new(&q.name);
        if let Some(st) = &q.strategy {
            c.strategy = crate::acd::Strategy::parse(st).ok_or_else(|| {
                    err(
                        at,
                        format!(
                            "queue '{}': strategy '{st}' must be ring-all, longest-idle, round-robin, fewest-calls, random or skills",
                            q.name
                        ),
                    )
                })?;
        }
        let mut skills: Vec<(String, i64)> = q
            .required_skills
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        skills.sort();
        c.required_skills = skills;
        let secs = |v: Option<u64>, d: u64| std::time::Duration::from_secs(v.unwrap_or(d));
        c.ring_timeout = secs(q.ring_timeout_s, 15);
        if c.ring_timeout.is_zero() {
            return Err(err(
                at,
                format!("queue '{}': ring_timeout_s must be > 0", q.name),
            ));
        }
        c.wrapup = secs(q.wrapup_s, 5);
        c.max_misses = q.max_misses.unwrap_or(3);
        c.max_wait = q
            .max_wait_s
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs);
        c.max_len = q.max_len.filter(|n| *n > 0);
        c.join_empty = q.join_empty.unwrap_or(true);
        c.leave_when_empty = q.leave_when_empty.unwrap_or(false);
        c.segment_priority = q.segment_priority.clone().unwrap_or_default();
        c.service_level = secs(q.service_level_s, 30);
        c.retry = secs(q.retry_s, 2).max(std::time::Duration::from_millis(100));
        if let Some(t) = &q.callback_trunk {
            if !trunks.iter().any(|x: &Trunk| &x.name == t) {
                return Err(err(
                    at,
                    format!(
                        "queue '{}': callback_trunk '{t}' is not a [[trunk]]",
                        q.name
                    ),
                ));
            }
        }
        queue_settings.push(QueueSettings {
            acd: c,
            language_skill: q.language_skill.unwrap_or(false),
            music_on_hold: q.music_on_hold.clone().unwrap_or_else(|| "moh".into()),
            callback_after_s: q.callback_after_s.filter(|s| *s > 0),
            callback_trunk: q.callback_trunk.clone(),
            announce_every_s: q.announce_every_s.filter(|s| *s > 0),
            record: q.record.unwrap_or(false),
        });
    }
    Ok(queue_settings)
}

/// What `[acd]` gives `Config`.
pub(super) struct AcdSection {
    pub auto_login: bool,
    pub pause_reasons: Vec<String>,
    pub dispositions: Vec<String>,
    pub session_ttl: std::time::Duration,
}

/// Check and default `[acd]`.
pub(super) fn acd(raw: Option<&RawAcd>, s: &Source<'_>) -> Result<AcdSection, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let list = |v: Option<Vec<String>>, default: &[&str], key: &str| {
        let v: Vec<String> = v
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect();
        if v.is_empty() || v.iter().any(|s| s.is_empty() || s.len() > 64) {
            return Err(err(
                0,
                format!("[acd] {key}: give at least one entry, each 1..64 characters"),
            ));
        }
        Ok(v)
    };
    let acd = raw;
    let pause_reasons = list(
        acd.and_then(|a| a.pause_reasons.clone()),
        &DEFAULT_PAUSE_REASONS,
        "pause_reasons",
    )?;
    let dispositions = list(
        acd.and_then(|a| a.dispositions.clone()),
        &DEFAULT_DISPOSITIONS,
        "dispositions",
    )?;
    let session_ttl_s = acd
        .and_then(|a| a.session_ttl_s)
        .unwrap_or(DEFAULT_SESSION_TTL_S);
    if session_ttl_s < 60 {
        return Err(err(0, "[acd] session_ttl_s must be at least 60".into()));
    }
    Ok(AcdSection {
        auto_login: raw.and_then(|a| a.auto_login).unwrap_or(true),
        pause_reasons,
        dispositions,
        session_ttl: std::time::Duration::from_secs(session_ttl_s),
    })
}
