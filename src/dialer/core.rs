//! The pure decision core of the outbound campaign dialer (sans-IO).
//!
//! Owns every rule that decides *whether*, *when* and *how fast* a contact may be dialed, so the
//! rules live in one tested place; the database and SIP shells call in and act on the answers:
//!
//! - [`CallingWindow`]: the legal calling hours (default 08:00–21:00), evaluated in the
//!   customer's own time zone, midnight-wrapping windows and DST days included.
//! - [`timezones_for`]: the customer's candidate zones — the ticket's IANA zone, else every zone
//!   the phone number can be in (libphonenumber's data, [`super::zones`]), else none: the
//!   contact is then not dialled (`no_timezone`), never dialled by a guessed zone.
//! - [`Pacer`]: calls-per-second and channel limits (a GCRA token bucket plus a 1-second
//!   sliding window), with [`Pacer::next_token_at`] so the service sleeps exactly until the
//!   next allowed dial.
//! - [`RetryPolicy`] / [`after_attempt`]: what a finished attempt ([`Disposition`]) does to the
//!   contact ([`ContactState`], next attempt time), VICIdial-like defaults.
//! - [`may_dial`]: the single gate the service must pass before every dial (window open in
//!   every candidate zone, due time, DNC / opt-out, 30-day attempt cap, dialable state).
//!
//! Inputs are plain values; nothing here reads a clock, a database or the network. Wall-clock
//! rules take `now: DateTime<Utc>`, pacing takes `std::time::Instant`.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::zones::zones_for_number;

/// Errors of the dialer core: bad configuration values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DialerError {
    #[error("invalid time of day {0:?} (expected HH:MM or HH:MM:SS)")]
    InvalidTime(String),
    #[error("calling window is empty: start and end are both {0}")]
    EmptyWindow(NaiveTime),
    #[error("max_cps must be a number between {MIN_CPS} and {MAX_CPS}, got {0}")]
    InvalidCps(f64),
    #[error("unknown contact state {0:?}")]
    UnknownState(String),
    #[error("retry rule {rule}: after_s {after_s} exceeds the maximum of {MAX_RETRY_AFTER_S} s")]
    RetryTooLate { rule: &'static str, after_s: u64 },
}

// ---------------------------------------------------------------------------------------------
// Calling window
// ---------------------------------------------------------------------------------------------

/// Days of local dates / UTC time scanned by [`CallingWindow::next_open`]; a non-empty window
/// opens at least once in any two consecutive local days, so this is ample.
const SCAN_DAYS: i64 = 5;

/// Days scanned by [`CallingWindow::next_open_all`] for several zones: their common window
/// can shrink or vanish for some days around DST changes, so look a little further.
const SCAN_DAYS_ALL: i64 = 10;

/// The hours during which a customer may be called, in the customer's local wall-clock time.
///
/// Half-open: local time `t` is inside when `start <= t < end`; when `start > end` the window
/// wraps midnight (`t >= start || t < end`), so `08:00`–`00:00` means "from 08:00 until
/// midnight". `start == end` is rejected (ambiguous between "never" and "always").
///
/// On DST days the rule is applied to the local wall clock: a start inside the spring-forward
/// gap opens the window at the transition; a start repeated by the fall-back hour opens it at the
/// first occurrence (and again after the clock is set back, since wall time leaves and re-enters
/// the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallingWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl Default for CallingWindow {
    /// 08:00–21:00 local time.
    fn default() -> Self {
        CallingWindow {
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(21, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

fn parse_time_of_day(s: &str) -> Result<NaiveTime, DialerError> {
    let t = s.trim();
    NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
        .map_err(|_| DialerError::InvalidTime(s.to_string()))
}

impl CallingWindow {
    /// A window from `start` to `end` (local times).
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, DialerError> {
        if start == end {
            return Err(DialerError::EmptyWindow(start));
        }
        Ok(CallingWindow { start, end })
    }

    /// Parse `"HH:MM"` (or `"HH:MM:SS"`) bounds, e.g. `parse("08:00", "21:00")`.
    pub fn parse(start: &str, end: &str) -> Result<Self, DialerError> {
        Self::new(parse_time_of_day(start)?, parse_time_of_day(end)?)
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Whether the window wraps midnight (`start > end`).
    pub fn wraps_midnight(&self) -> bool {
        self.start > self.end
    }

    fn contains_local(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// Whether `now` falls inside the window on the customer's wall clock in `tz`.
    pub fn contains(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        self.contains_local(now.with_timezone(&tz).time())
    }

    /// Whether `now` falls inside the window in EVERY zone of `zones` (a number that can be in
    /// several zones is called only when it is a legal hour in all of them). False for no
    /// zones: an unplaced customer is never inside calling hours.
    pub fn contains_all(&self, now: DateTime<Utc>, zones: &[Tz]) -> bool {
        !zones.is_empty() && zones.iter().all(|&tz| self.contains(now, tz))
    }

    /// The earliest instant `>= now` at which the window is open: `now` itself when it is open,
    /// else the next opening. Exact across DST transitions (computed from the zone's rules, not
    /// by adding 24 h).
    pub fn next_open(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        // Unreachable fallback for a non-empty window (it opens at least every other local
        // day); it still never claims the window is open now.
        self.next_open_all(now, &[tz])
            .unwrap_or(now + TimeDelta::days(1))
    }

    /// The earliest instant `>= now` at which the window is open in every zone of `zones`
    /// ([`Self::contains_all`]). None when there are no zones, or when the zones are so far
    /// apart that the window is never open in all of them at once within the next
    /// [`SCAN_DAYS_ALL`] days (e.g. a 09:00–17:00 window over all of Russia).
    pub fn next_open_all(&self, now: DateTime<Utc>, zones: &[Tz]) -> Option<DateTime<Utc>> {
        if zones.is_empty() {
            return None;
        }
        if self.contains_all(now, zones) {
            return Some(now);
        }
        // The window can only switch from closed to open in one zone when that zone's wall
        // clock passes `start` (a local `date + start` instant) or jumps at a UTC-offset
        // transition; so it opens in all of them at one of those instants of some zone. Collect
        // both kinds of candidates for every zone and keep the earliest one at which the window
        // is open everywhere.
        let days = if zones.len() == 1 {
            SCAN_DAYS
        } else {
            SCAN_DAYS_ALL
        };
        let mut best: Option<DateTime<Utc>> = None;
        let mut consider = |c: DateTime<Utc>| {
            if c >= now && best.is_none_or(|b| c < b) && self.contains_all(c, zones) {
                best = Some(c);
            }
        };
        for &tz in zones {
            let today = now.with_timezone(&tz).date_naive();
            for day in -1..=days {
                let Some(date) = today.checked_add_signed(TimeDelta::days(day)) else {
                    continue;
                };
                for c in local_instants(tz, date, self.start) {
                    consider(c);
                }
            }
            for c in offset_transitions(tz, now, now + TimeDelta::days(days)) {
                consider(c);
            }
        }
        best
    }
}

/// The UTC instants at which the local wall clock in `tz` shows `date time`: none in a DST gap,
/// two in a repeated hour.
fn local_instants(tz: Tz, date: NaiveDate, time: NaiveTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&date.and_time(time)) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => Vec::new(),
    }
}

fn utc_offset_secs(tz: Tz, at_secs: i64) -> Option<i32> {
    let at = DateTime::from_timestamp(at_secs, 0)?;
    Some(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The instants in `[from, to]` (whole seconds) at which `tz` changes its UTC offset. Scans in
/// one-hour steps (zones never change offset twice within an hour) and bisects each change to
/// the exact second.
fn offset_transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    const STEP: i64 = 3600;
    let mut out = Vec::new();
    let (mut a, end) = (from.timestamp(), to.timestamp());
    let Some(mut off_a) = utc_offset_secs(tz, a) else {
        return out;
    };
    while a < end {
        let b = a + STEP;
        let Some(off_b) = utc_offset_secs(tz, b) else {
            break;
        };
        if off_b != off_a {
            // Invariant: offset(lo) == off_a, offset(hi) != off_a.
            let (mut lo, mut hi) = (a, b);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if utc_offset_secs(tz, mid) == Some(off_a) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if let Some(t) = DateTime::from_timestamp(hi, 0) {
                out.push(t);
            }
        }
        a = b;
        off_a = off_b;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Customer time zone
// ---------------------------------------------------------------------------------------------

/// The customer's candidate time zones: the window must be open in every one of them.
///
/// The ticket's IANA zone (`"Europe/Paris"`) always wins when it is a valid name: one zone.
/// Otherwise every zone the E.164 number (`+` or `00` prefix; spaces, dots, dashes and
/// parentheses ignored) can be in, from libphonenumber's numbering data ([`zones_for_number`]):
/// NANP numbers by area code, split by exchange where an area code spans zones (else all of its
/// zones); other countries by prefix where the data has one, else all the country's zones.
/// A number placed nowhere in particular (toll-free +1 800, an invalid number) gets every zone
/// of its country. Empty when its country is unknown: the dialer refuses such a contact
/// ([`Refusal::NoTimezone`]) rather than assume a zone.
pub fn timezones_for(ticket_tz: Option<&str>, phone_e164: &str) -> Vec<Tz> {
    if let Some(tz) = ticket_tz.and_then(|s| s.trim().parse::<Tz>().ok()) {
        return vec![tz];
    }
    zones_for_number(phone_e164)
}

// ---------------------------------------------------------------------------------------------
// Pacing
// ---------------------------------------------------------------------------------------------

/// Lowest accepted `max_cps` (one dial every ~2.8 hours).
pub const MIN_CPS: f64 = 1e-4;
/// Highest accepted `max_cps`.
pub const MAX_CPS: f64 = 10_000.0;

pub const SLIDING_WINDOW: Duration = Duration::from_secs(1);

/// Dial pacing: at most `max_cps` calls per second and `max_channels` simultaneous calls.
///
/// Two rate rules, both enforced by [`Pacer::can_dial`]:
/// - a token bucket (implemented as GCRA with integer nanoseconds, so no float drift) refilled
///   at `max_cps` with capacity `burst = max(1, ceil(max_cps))`, starting full: over any span
///   of `T` seconds at most `burst + floor(T * max_cps)` dials, i.e. a long-run average of at
///   most `max_cps + burst / T`;
/// - a sliding window: at most `burst` dials in any half-open 1-second interval (a bare token
///   bucket would allow `burst + max_cps` there, which trunks enforcing a per-second limit
///   reject).
///
/// Channels are the caller's count of calls in progress; `can_dial` requires
/// `active_channels < max_channels`.
#[derive(Debug, Clone)]
pub struct Pacer {
    max_cps: f64,
    max_channels: u32,
    burst: u32,
    /// Emission interval 1 / max_cps, rounded up to the nanosecond.
    interval: Duration,
    /// GCRA theoretical arrival time: a dial conforms when `tat <= now + (burst - 1) * interval`.
    tat: Instant,
    /// The last `burst` dial instants, oldest first.
    recent: VecDeque<Instant>,
    /// No dial before this instant (see `hold_until`).
    not_before: Option<Instant>,
}

fn pace_params(max_cps: f64) -> Result<(u32, Duration), DialerError> {
    if !(MIN_CPS..=MAX_CPS).contains(&max_cps) {
        return Err(DialerError::InvalidCps(max_cps));
    }
    // Bounded by MIN_CPS / MAX_CPS above, so both conversions are in range.
    let burst = (max_cps.ceil() as u32).max(1);
    let interval = Duration::from_nanos((1e9 / max_cps).ceil() as u64);
    Ok((burst, interval))
}

impl Pacer {
    /// A pacer whose bucket is full at `now` (a burst may start immediately).
    pub fn new(max_cps: f64, max_channels: u32, now: Instant) -> Result<Self, DialerError> {
        let (burst, interval) = pace_params(max_cps)?;
        Ok(Pacer {
            max_cps,
            max_channels,
            burst,
            interval,
            tat: now,
            recent: VecDeque::with_capacity(burst as usize),
            not_before: None,
        })
    }

    /// Allow no dial before `at`. A runner started right after a restart knows nothing of
    /// the dials the previous process made in its last second; holding the first dial
    /// until one sliding window after this process started (`SLIDING_WINDOW` after start)
    /// keeps every 1-second window within the cap across the restart, at the cost of a
    /// one-second pause when a campaign resumes after a restart.
    pub fn hold_until(&mut self, at: Instant) {
        self.not_before = Some(self.not_before.map_or(at, |t| t.max(at)));
    }

    /// Change the limits (live campaign edit). Past dials keep counting: the bucket's debt and
    /// the most recent `burst` dials carry over.
    pub fn set_limits(&mut self, max_cps: f64, max_channels: u32) -> Result<(), DialerError> {
        let (burst, interval) = pace_params(max_cps)?;
        self.max_cps = max_cps;
        self.max_channels = max_channels;
        self.burst = burst;
        self.interval = interval;
        while self.recent.len() > burst as usize {
            self.recent.pop_front();
        }
        Ok(())
    }

    pub fn max_cps(&self) -> f64 {
        self.max_cps
    }

    pub fn max_channels(&self) -> u32 {
        self.max_channels
    }

    /// Bucket capacity: `max(1, ceil(max_cps))`, also the per-second cap.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn tolerance(&self) -> Duration {
        self.interval.saturating_mul(self.burst - 1)
    }

    /// When the rate rules (ignoring channels) next allow a dial, `>= now`.
    fn rate_ready_at(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(t) = self.not_before {
            at = at.max(t);
        }
        // Token bucket: conforming once tat - tolerance <= at.
        if let Some(t) = self.tat.checked_sub(self.tolerance()) {
            at = at.max(t);
        }
        // Sliding window: the oldest of the last `burst` dials must be >= 1 s old.
        if self.recent.len() >= self.burst as usize {
            if let Some(oldest) = self.recent.front() {
                at = at.max(*oldest + SLIDING_WINDOW);
            }
        }
        at
    }

    /// Whether a dial is allowed at `now` with `active_channels` calls in progress.
    pub fn can_dial(&self, now: Instant, active_channels: u32) -> bool {
        active_channels < self.max_channels && self.rate_ready_at(now) <= now
    }

    /// Record a dial at `now`. Call only after `can_dial` returned true; a forced dial is
    /// recorded anyway and paid back by waiting longer.
    pub fn take(&mut self, now: Instant) {
        let base = self.tat.max(now);
        self.tat = base.checked_add(self.interval).unwrap_or(base);
        self.recent.push_back(now);
        while self.recent.len() > self.burst as usize {
            self.recent.pop_front();
        }
    }

    /// The earliest instant `>= now` at which the rate limits allow the next dial (channels are
    /// not considered: they free up on call events, not on time). Sleep until then.
    pub fn next_token_at(&self, now: Instant) -> Instant {
        self.rate_ready_at(now)
    }
}

// ---------------------------------------------------------------------------------------------
// Dispositions and retry policy
// ---------------------------------------------------------------------------------------------

/// How an attempt ended: the call's own [`Disposition`] (database names: answered|busy|
/// no_answer|failed|machine|cancelled|interrupted).
pub use crate::call::disposition::Disposition;

/// Longest accepted retry delay (one year).
pub const MAX_RETRY_AFTER_S: u64 = 366 * 86_400;

/// Retry rule for one disposition: wait `after_s` seconds, and retry only while the contact's
/// total attempts (all dispositions, this one included) are below `max_attempts` — so
/// `max_attempts: 3` means at most three dials. `0` or `1` never retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    pub after_s: u64,
    pub max_attempts: u32,
}

impl RetryRule {
    pub const fn new(after_s: u64, max_attempts: u32) -> Self {
        RetryRule {
            after_s,
            max_attempts,
        }
    }
}

/// Retry rules per disposition plus the rolling cap on attempts per contact.
///
/// JSON: `{"no_answer": {"after_s": 600, "max_attempts": 3}}` — dispositions left out keep
/// their defaults, a given rule needs both fields, unknown keys are rejected. `interrupted`
/// uses the `failed` rule. Defaults (VICIdial-like): busy 300 s ×3, no_answer 600 s ×3,
/// failed 900 s ×2, machine 3600 s ×2, at most 3 attempts per rolling 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    pub busy: RetryRule,
    pub no_answer: RetryRule,
    pub failed: RetryRule,
    pub machine: RetryRule,
    pub max_attempts_per_30_days: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            busy: RetryRule::new(300, 3),
            no_answer: RetryRule::new(600, 3),
            failed: RetryRule::new(900, 2),
            machine: RetryRule::new(3600, 2),
            max_attempts_per_30_days: 3,
        }
    }
}

impl RetryPolicy {
    /// The rule applied after `d`, None for dispositions that are never retried on a timer
    /// (answered, cancelled).
    pub fn rule_for(&self, d: Disposition) -> Option<RetryRule> {
        match d {
            Disposition::Busy => Some(self.busy),
            Disposition::NoAnswer => Some(self.no_answer),
            Disposition::Failed | Disposition::Interrupted => Some(self.failed),
            Disposition::Machine => Some(self.machine),
            Disposition::Answered | Disposition::Cancelled => None,
        }
    }

    /// Reject absurd delays (over [`MAX_RETRY_AFTER_S`]); call after deserializing.
    pub fn validate(&self) -> Result<(), DialerError> {
        for (rule, r) in [
            ("busy", self.busy),
            ("no_answer", self.no_answer),
            ("failed", self.failed),
            ("machine", self.machine),
        ] {
            if r.after_s > MAX_RETRY_AFTER_S {
                return Err(DialerError::RetryTooLate {
                    rule,
                    after_s: r.after_s,
                });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Contact state machine
// ---------------------------------------------------------------------------------------------

/// Where a campaign contact stands (database names via [`ContactState::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContactState {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "dialing")]
    Dialing,
    #[serde(rename = "answered")]
    Answered,
    #[serde(rename = "completed")]
    Completed,
    #[serde(rename = "retry")]
    RetryScheduled,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "dnc")]
    DoNotCall,
    #[serde(rename = "opted_out")]
    OptedOut,
}

impl ContactState {
    pub const ALL: [ContactState; 8] = [
        ContactState::Pending,
        ContactState::Dialing,
        ContactState::Answered,
        ContactState::Completed,
        ContactState::RetryScheduled,
        ContactState::Failed,
        ContactState::DoNotCall,
        ContactState::OptedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::Pending => "pending",
            ContactState::Dialing => "dialing",
            ContactState::Answered => "answered",
            ContactState::Completed => "completed",
            ContactState::RetryScheduled => "retry",
            ContactState::Failed => "failed",
            ContactState::DoNotCall => "dnc",
            ContactState::OptedOut => "opted_out",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DialerError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| DialerError::UnknownState(s.to_string()))
    }

    /// Terminal states are never dialed again by the campaign.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ContactState::Completed
                | ContactState::Failed
                | ContactState::DoNotCall
                | ContactState::OptedOut
        )
    }

    /// States a dial may start from (subject to [`may_dial`]'s other rules).
    pub fn is_dialable(self) -> bool {
        matches!(self, ContactState::Pending | ContactState::RetryScheduled)
    }
}

impl FromStr for ContactState {
    type Err = DialerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ContactState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a contact after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub state: ContactState,
    /// Set exactly when `state` is `RetryScheduled`: inside the calling window.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Stable snake_case reason for the database / reports: `choice`, `no_choice`,
    /// `answered_other`, `opted_out`, `retry_busy`, `retry_no_answer`, `retry_failed`,
    /// `retry_machine`, `retry_interrupted`, `max_attempts`, `attempt_cap_30_days`,
    /// `cancelled`, `no_timezone`, `no_common_window`.
    pub reason: &'static str,
}

/// IVR outcomes of an answered call that are a customer's choice.
pub const CHOICES: [&str; 4] = ["wait", "refund", "agent", "callback"];
/// IVR outcome of an answered call where the customer asked never to be called again.
pub const OPT_OUT: &str = "opt_out";

/// Decide a contact's next state after an attempt ended with `disposition`.
///
/// - `attempts_so_far`: the contact's attempts, this one included.
/// - `attempts_last_30_days`: attempts in the rolling 30 days, this one included.
/// - `outcome`: the IVR outcome of an answered call (ignored otherwise).
///
/// Rules:
/// - answered + `opt_out` → `OptedOut` (the caller also adds the number to the DNC list);
/// - answered + a choice (`wait`/`refund`/`agent`/`callback`) → `Completed` (`choice`);
/// - answered with no choice (None, empty, `no_choice`) → `Completed` (`no_choice`), as
///   VICIdial does: a human was reached and heard the message, so calling again would harass;
///   any other outcome → `Completed` (`answered_other`);
/// - busy / no_answer / failed / machine / interrupted (a server crash mid-attempt counts as an
///   attempt and is retried like `failed`) → `RetryScheduled` at `now + after_s`, pushed to the
///   next window opening (open in every zone of `zones`) when that falls outside the window,
///   while `attempts_so_far <
///   rule.max_attempts` and `attempts_last_30_days < max_attempts_per_30_days`; else `Failed`
///   (`max_attempts` / `attempt_cap_30_days`); a retry that no calling hour can ever take
///   (`zones` empty, or never open in all of them at once) → `Failed` (`no_timezone` /
///   `no_common_window`);
/// - cancelled (our doing, not the customer's) → back to `Pending` with no due time, unless the
///   30-day cap is already reached (`Failed`).
#[allow(clippy::too_many_arguments)] // the brief's flat signature: every input is a DB column
pub fn after_attempt(
    policy: &RetryPolicy,
    disposition: Disposition,
    attempts_so_far: u32,
    attempts_last_30_days: u32,
    outcome: Option<&str>,
    now: DateTime<Utc>,
    window: &CallingWindow,
    zones: &[Tz],
) -> Decision {
    let done = |state, reason| Decision {
        state,
        next_attempt_at: None,
        reason,
    };
    let capped_30 = attempts_last_30_days >= policy.max_attempts_per_30_days;
    let rule = match disposition {
        Disposition::Answered => {
            let outcome = outcome.map(str::trim).unwrap_or("");
            return if outcome.eq_ignore_ascii_case(OPT_OUT) {
                done(ContactState::OptedOut, "opted_out")
            } else if CHOICES.iter().any(|c| outcome.eq_ignore_ascii_case(c)) {
                done(ContactState::Completed, "choice")
            } else if outcome.is_empty() || outcome.eq_ignore_ascii_case("no_choice") {
                done(ContactState::Completed, "no_choice")
            } else {
                done(ContactState::Completed, "answered_other")
            };
        }
        Disposition::Cancelled => {
            return if capped_30 {
                done(ContactState::Failed, "attempt_cap_30_days")
            } else {
                done(ContactState::Pending, "cancelled")
            };
        }
        Disposition::Busy => policy.busy,
        Disposition::NoAnswer => policy.no_answer,
        Disposition::Failed | Disposition::Interrupted => policy.failed,
        Disposition::Machine => policy.machine,
    };
    if attempts_so_far >= rule.max_attempts {
        return done(ContactState::Failed, "max_attempts");
    }
    if capped_30 {
        return done(ContactState::Failed, "attempt_cap_30_days");
    }
    let delay = TimeDelta::seconds(rule.after_s.min(MAX_RETRY_AFTER_S) as i64);
    let earliest = now.checked_add_signed(delay).unwrap_or(now);
    if zones.is_empty() {
        return done(ContactState::Failed, Refusal::NoTimezone.reason());
    }
    let Some(next) = window.next_open_all(earliest, zones) else {
        return done(ContactState::Failed, Refusal::NoCommonWindow.reason());
    };
    Decision {
        state: ContactState::RetryScheduled,
        next_attempt_at: Some(next),
        reason: match disposition {
            Disposition::Busy => "retry_busy",
            Disposition::NoAnswer => "retry_no_answer",
            Disposition::Machine => "retry_machine",
            Disposition::Interrupted => "retry_interrupted",
            _ => "retry_failed",
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The dial gate
// ---------------------------------------------------------------------------------------------

/// Why a contact may not be dialed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Outside the calling window in the customer's zone; opens at the given instant.
    #[error("outside the calling window; opens at {0}")]
    OutsideWindow(DateTime<Utc>),
    /// A retry is scheduled for later.
    #[error("retry not due before {0}")]
    NotDue(DateTime<Utc>),
    #[error("number is on the do-not-call list")]
    DoNotCall,
    #[error("customer opted out")]
    OptedOut,
    /// `max_attempts_per_30_days` reached.
    #[error("attempt cap for the last 30 days reached")]
    AttemptCap,
    /// The contact's state does not allow a dial (in progress or finished).
    #[error("contact is {0}, not dialable")]
    NotDialable(ContactState),
    /// No zone is known for the customer (no ticket zone, and the number cannot be placed):
    /// calling hours cannot be checked, so the contact is not dialled.
    #[error("no time zone for the customer: calling hours cannot be checked")]
    NoTimezone,
    /// The number can be in several zones and the calling window is never open in all of them
    /// at once (e.g. a short window over a country spanning many zones).
    #[error("the calling window is never open in all of the customer's possible time zones")]
    NoCommonWindow,
}

impl Refusal {
    /// When asking again could succeed, for refusals that lift with time alone. For `NotDue`
    /// this is the due time; the window may still be closed then.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Refusal::OutsideWindow(t) | Refusal::NotDue(t) => Some(*t),
            _ => None,
        }
    }

    /// Whether the contact can never be dialed again by the campaign.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Refusal::DoNotCall | Refusal::OptedOut)
    }

    /// The stable snake_case reason recorded on a contact the refusal ends (the contact's
    /// `last_disposition`): `no_timezone`, `no_common_window`, `do_not_call`, `opted_out`,
    /// `attempt_cap_30_days`; `outside_window`, `not_due`, `not_dialable` for the others.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::OutsideWindow(_) => "outside_window",
            Refusal::NotDue(_) => "not_due",
            Refusal::DoNotCall => "do_not_call",
            Refusal::OptedOut => "opted_out",
            Refusal::AttemptCap => "attempt_cap_30_days",
            Refusal::NotDialable(_) => "not_dialable",
            Refusal::NoTimezone => "no_timezone",
            Refusal::NoCommonWindow => "no_common_window",
        }
    }
}

/// The gate the service must pass immediately before every dial.
///
/// `attempts_last_30_days` counts attempts already made (not the one about to be made).
/// Checked in order: opted out, DNC (`on_dnc` or state `dnc`), dialable state (`pending` or
/// `retry`), 30-day cap, due time, a known zone ([`Refusal::NoTimezone`]), calling window open
/// in every zone of `zones` ([`Refusal::OutsideWindow`] with the instant it opens in all of
/// them, or [`Refusal::NoCommonWindow`] when it never does).
#[allow(clippy::too_many_arguments)] // the brief's flat signature: every input is a DB column
pub fn may_dial(
    now: DateTime<Utc>,
    zones: &[Tz],
    window: &CallingWindow,
    state: ContactState,
    next_attempt_at: Option<DateTime<Utc>>,
    on_dnc: bool,
    attempts_last_30_days: u32,
    policy: &RetryPolicy,
) -> Result<(), Refusal> {
    if state == ContactState::OptedOut {
        return Err(Refusal::OptedOut);
    }
    if on_dnc || state == ContactState::DoNotCall {
        return Err(Refusal::DoNotCall);
    }
    if !state.is_dialable() {
        return Err(Refusal::NotDialable(state));
    }
    if attempts_last_30_days >= policy.max_attempts_per_30_days {
        return Err(Refusal::AttemptCap);
    }
    if let Some(at) = next_attempt_at {
        if at > now {
            return Err(Refusal::NotDue(at));
        }
    }
    if zones.is_empty() {
        return Err(Refusal::NoTimezone);
    }
    match window.next_open_all(now, zones) {
        Some(open) if open == now => Ok(()),
        Some(open) => Err(Refusal::OutsideWindow(open)),
        None => Err(Refusal::NoCommonWindow),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn win(a: &str, b: &str) -> CallingWindow {
        CallingWindow::parse(a, b).unwrap()
    }

    const NY: Tz = Tz::America__New_York;
    const SH: Tz = Tz::Asia__Shanghai;

    // ---- calling window ----

    #[test]
    fn parse_and_default() {
        let d = CallingWindow::default();
        assert_eq!(d, win("08:00", "21:00"));
        assert_eq!(d.start(), NaiveTime::from_hms_opt(8, 0, 0).unwrap());
        assert!(!d.wraps_midnight());
        assert_eq!(
            win(" 22:00 ", "06:00:00").end(),
            NaiveTime::from_hms_opt(6, 0, 0).unwrap()
        );
        assert!(win("22:00", "06:00").wraps_midnight());
        assert!(matches!(
            CallingWindow::parse("8h", "21:00"),
            Err(DialerError::InvalidTime(_))
        ));
        assert!(matches!(
            CallingWindow::parse("08:00", "25:00"),
            Err(DialerError::InvalidTime(_))
        ));
        assert!(matches!(
            CallingWindow::parse("09:00", "09:00"),
            Err(DialerError::EmptyWindow(_))
        ));
    }

    #[test]
    fn contains_in_customer_zone() {
        let w = CallingWindow::default();
        // Summer, EDT (UTC-4): 08:00 local = 12:00Z.
        assert!(!w.contains(utc("2024-07-01T11:59:59Z"), NY));
        assert!(w.contains(utc("2024-07-01T12:00:00Z"), NY));
        assert!(w.contains(utc("2024-07-02T00:59:59Z"), NY)); // 20:59:59 local
        assert!(!w.contains(utc("2024-07-02T01:00:00Z"), NY)); // 21:00 local: end exclusive
                                                               // Winter, EST (UTC-5): 12:30Z is 07:30 local.
        assert!(!w.contains(utc("2024-01-15T12:30:00Z"), NY));
        assert!(w.contains(utc("2024-01-15T13:00:00Z"), NY));
        // Shanghai (UTC+8, no DST): 00:00Z = 08:00, 13:00Z = 21:00.
        assert!(w.contains(utc("2024-07-01T00:00:00Z"), SH));
        assert!(!w.contains(utc("2024-06-30T23:59:00Z"), SH));
        assert!(!w.contains(utc("2024-07-01T13:00:00Z"), SH));
        // Same instant, different customers.
        let t = utc("2024-07-01T14:00:00Z");
        assert!(w.contains(t, NY)); // 10:00
        assert!(!w.contains(t, SH)); // 22:00
        assert!(w.contains(t, Tz::Europe__Paris)); // 16:00
        assert!(!w.contains(t, Tz::Asia__Tokyo)); // 23:00
    }

    #[test]
    fn wrap_around_window() {
        let w = win("22:00", "06:00");
        let tokyo = Tz::Asia__Tokyo; // UTC+9
        assert!(w.contains(utc("2024-05-01T13:00:00Z"), tokyo)); // 22:00
        assert!(w.contains(utc("2024-05-01T15:00:00Z"), tokyo)); // 00:00
        assert!(w.contains(utc("2024-05-01T20:59:00Z"), tokyo)); // 05:59
        assert!(!w.contains(utc("2024-05-01T21:00:00Z"), tokyo)); // 06:00
        assert!(!w.contains(utc("2024-05-01T03:00:00Z"), tokyo)); // 12:00
        assert_eq!(
            w.next_open(utc("2024-05-01T03:00:00Z"), tokyo),
            utc("2024-05-01T13:00:00Z")
        );
        let inside = utc("2024-05-01T16:00:00Z");
        assert_eq!(w.next_open(inside, tokyo), inside);
        // Until midnight.
        let w = win("08:00", "00:00");
        assert!(w.contains(utc("2024-05-01T14:59:00Z"), tokyo)); // 23:59
        assert!(!w.contains(utc("2024-05-01T15:00:00Z"), tokyo)); // 00:00
    }

    #[test]
    fn next_open_plain_days() {
        let w = CallingWindow::default();
        // 22:00 in New York (EDT) → 08:00 next morning = 12:00Z.
        assert_eq!(
            w.next_open(utc("2024-07-02T02:00:00Z"), NY),
            utc("2024-07-02T12:00:00Z")
        );
        // Shanghai, 21:30 local → 08:00 local next day = 00:00Z.
        assert_eq!(
            w.next_open(utc("2024-07-01T13:30:00Z"), SH),
            utc("2024-07-02T00:00:00Z")
        );
        // Shanghai early morning 06:00 local → same day 08:00.
        assert_eq!(
            w.next_open(utc("2024-06-30T22:00:00Z"), SH),
            utc("2024-07-01T00:00:00Z")
        );
        // Sub-second `now` is preserved when inside.
        let t = utc("2024-07-01T03:00:00.123Z");
        assert_eq!(w.next_open(t, SH), t);
    }

    #[test]
    fn next_open_across_spring_forward() {
        // 2024-03-10 02:00 EST → 03:00 EDT in New York.
        let w = CallingWindow::default();
        // Saturday 22:00 EST (03:00Z Sunday) → Sunday 08:00 EDT = 12:00Z (not 13:00Z).
        assert_eq!(
            w.next_open(utc("2024-03-10T03:00:00Z"), NY),
            utc("2024-03-10T12:00:00Z")
        );
        // The day before still opens at 08:00 EST = 13:00Z.
        assert_eq!(
            w.next_open(utc("2024-03-09T05:00:00Z"), NY),
            utc("2024-03-09T13:00:00Z")
        );
        // A start inside the gap (02:30 does not exist) opens at the transition, 03:00 EDT.
        let w = win("02:30", "05:00");
        assert_eq!(
            w.next_open(utc("2024-03-10T05:00:00Z"), NY), // 00:00 EST
            utc("2024-03-10T07:00:00Z")
        );
        // A window entirely inside the gap skips that day.
        let w = win("02:10", "02:50");
        assert_eq!(
            w.next_open(utc("2024-03-10T05:00:00Z"), NY),
            utc("2024-03-11T06:10:00Z") // 02:10 EDT on Monday
        );
    }

    #[test]
    fn next_open_across_fall_back() {
        // 2024-11-03 02:00 EDT → 01:00 EST in New York.
        let w = CallingWindow::default();
        // Saturday 22:00 EDT (02:00Z Sunday) → Sunday 08:00 EST = 13:00Z.
        assert_eq!(
            w.next_open(utc("2024-11-03T02:00:00Z"), NY),
            utc("2024-11-03T13:00:00Z")
        );
        // 01:30 happens twice; the window first opens at the first one (EDT, 05:30Z).
        let w = win("01:30", "05:00");
        assert_eq!(
            w.next_open(utc("2024-11-03T04:00:00Z"), NY), // 00:00 EDT
            utc("2024-11-03T05:30:00Z")
        );
        // Clock set back from 02:00 EDT to 01:00 EST: wall time leaves the window at 06:00Z and
        // re-enters at 01:30 EST = 06:30Z.
        assert!(w.contains(utc("2024-11-03T05:59:00Z"), NY));
        assert!(!w.contains(utc("2024-11-03T06:00:00Z"), NY));
        assert_eq!(
            w.next_open(utc("2024-11-03T06:00:00Z"), NY),
            utc("2024-11-03T06:30:00Z")
        );
        // Wrapping window re-entered by the clock jumping back, not by passing `start`:
        // 22:00–01:30; at 01:45 EDT (05:45Z) closed, at 06:00Z it is 01:00 EST → open.
        let w = win("22:00", "01:30");
        assert!(!w.contains(utc("2024-11-03T05:45:00Z"), NY));
        assert_eq!(
            w.next_open(utc("2024-11-03T05:45:00Z"), NY),
            utc("2024-11-03T06:00:00Z")
        );
    }

    #[test]
    fn next_open_half_hour_dst_and_southern_hemisphere() {
        // Lord Howe shifts by 30 minutes; Sydney's DST starts 2024-10-06 02:00 → 03:00.
        let w = CallingWindow::default();
        let syd = Tz::Australia__Sydney;
        // Saturday 22:00 AEST (12:00Z) → Sunday 08:00 AEDT = 21:00Z Saturday.
        assert_eq!(
            w.next_open(utc("2024-10-05T12:00:00Z"), syd),
            utc("2024-10-05T21:00:00Z")
        );
        let lh = Tz::Australia__Lord_Howe;
        let w = win("02:15", "04:00"); // gap 02:00–02:30 on 2024-10-06
        assert_eq!(
            w.next_open(utc("2024-10-05T12:00:00Z"), lh), // 22:30 +10:30
            utc("2024-10-05T15:30:00Z")                   // 02:30 +11:00, the transition
        );
    }

    /// Oracle: scan minute by minute (every window bound and every tz transition is on a whole
    /// minute) for the first open instant.
    fn brute_next_open(w: &CallingWindow, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let mut t = now;
        while !w.contains(t, tz) {
            t += TimeDelta::minutes(1);
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn next_open_matches_brute_force(
            // 2023-01-01 .. 2026-01-01, whole minutes.
            minute in 27_838_080i64..29_416_320,
            start_min in 0u32..1440,
            len in 1u32..1439,
            zone in 0usize..7,
            near_transition in any::<bool>(),
        ) {
            let zones = [
                NY,
                SH,
                Tz::Europe__London,
                Tz::Australia__Sydney,
                Tz::Australia__Lord_Howe,
                Tz::Asia__Kolkata,
                Tz::America__St_Johns,
            ];
            let tz = zones[zone];
            let mut now = DateTime::from_timestamp(minute * 60, 0).unwrap();
            if near_transition {
                // Pin to the hours around New York's 2024 transitions.
                let base = if minute % 2 == 0 { "2024-03-10T04:00:00Z" } else { "2024-11-03T03:00:00Z" };
                now = utc(base) + TimeDelta::minutes(minute % 300);
            }
            let start = NaiveTime::from_num_seconds_from_midnight_opt(start_min * 60, 0).unwrap();
            let end_min = (start_min + len) % 1440;
            let end = NaiveTime::from_num_seconds_from_midnight_opt(end_min * 60, 0).unwrap();
            let w = CallingWindow::new(start, end).unwrap();
            let got = w.next_open(now, tz);
            prop_assert_eq!(got, brute_next_open(&w, now, tz));
            prop_assert!(w.contains(got, tz));
        }
    }

    // ---- time zone derivation ----

    fn names(zones: &[Tz]) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = zones.iter().map(|z| z.name()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn ticket_zone_wins() {
        assert_eq!(
            timezones_for(Some("Europe/Paris"), "+12125551234"),
            [Tz::Europe__Paris]
        );
        assert_eq!(
            timezones_for(Some(" Asia/Tokyo "), "+33612345678"),
            [Tz::Asia__Tokyo]
        );
        assert_eq!(timezones_for(Some("UTC"), "+33612345678"), [Tz::UTC]);
        // A ticket zone also places a number the data cannot (test numbers, toll-free).
        assert_eq!(
            timezones_for(Some("America/New_York"), "+15551230001"),
            [NY]
        );
        // Invalid or empty ticket zones fall back to the number.
        assert_eq!(
            timezones_for(Some("Mars/Olympus"), "+33612345678"),
            [Tz::Europe__Paris]
        );
        assert_eq!(
            timezones_for(Some(""), "+4915112345678"),
            [Tz::Europe__Berlin]
        );
        assert_eq!(timezones_for(None, "+4915112345678"), [Tz::Europe__Berlin]);
    }

    /// Every US zone from the number alone, including the Pacific area codes the old partial
    /// table did not know and dialled as New York.
    #[test]
    fn zones_from_nanp_numbers() {
        let cases: [(&str, &[&str]); 13] = [
            ("+1 (646) 555-1234", &["America/New_York"]),
            ("+13125551234", &["America/Chicago"]),
            ("+13035551234", &["America/Denver"]),
            ("+16025551234", &["America/Phoenix"]),
            ("+12135551234", &["America/Los_Angeles"]),
            ("+15305551234", &["America/Los_Angeles"]), // was New York
            ("+17075551234", &["America/Los_Angeles"]), // was New York
            ("+19075551234", &["America/Adak", "America/Anchorage"]),
            ("+18085551234", &["Pacific/Honolulu"]),
            ("+14165551234", &["America/Toronto"]),
            ("+16045551234", &["America/Vancouver"]),
            ("+18765551234", &["America/Jamaica"]), // was New York
            (
                "+17015551234",
                &["America/Denver", "America/North_Dakota/Center"],
            ),
        ];
        for (phone, want) in cases {
            assert_eq!(names(&timezones_for(None, phone)), want, "{phone}");
        }
    }

    #[test]
    fn zones_from_other_countries() {
        let cases: [(&str, &[&str]); 9] = [
            ("+442079460000", &["Europe/London"]),
            ("+49 30 123456", &["Europe/Berlin"]),
            ("+33 1 42 68 53 00", &["Europe/Paris"]),
            ("+86 10 1234 5678", &["Asia/Shanghai"]),
            ("+81-3-1234-5678", &["Asia/Tokyo"]),
            ("+61 2 9999 9999", &["Australia/Sydney"]),
            ("0033142685300", &["Europe/Paris"]),
            // 3-digit code, not +35. libphonenumber places Ireland on London's clock (the
            // same offsets and DST dates as Dublin's).
            (
                "+353 1 234 5678",
                &["Europe/Guernsey", "Europe/Isle_of_Man", "Europe/London"],
            ),
            ("+852 2345 6789", &["Asia/Hong_Kong"]), // not +85
        ];
        for (phone, want) in cases {
            assert_eq!(names(&timezones_for(None, phone)), want, "{phone}");
        }
        // Multi-zone countries give every candidate: a Russian mobile (anywhere in Russia).
        let ru = timezones_for(None, "+7 912 345 67 89");
        assert!(ru.len() > 5, "{ru:?}");
        assert!(ru.contains(&Tz::Europe__Moscow) && ru.contains(&Tz::Asia__Vladivostok));
    }

    #[test]
    fn unplaceable_numbers_have_no_zone() {
        for phone in [
            "",
            "12125551234", // not international
            "0612345678",
            "+",
            "+1",
            "+999123",
            "+44abc",
            "sip:1@x",
        ] {
            assert_eq!(timezones_for(None, phone), [], "{phone:?}");
        }
    }

    /// A +1 number placed nowhere in particular has every NANP zone: a usual window is never
    /// open in all of them (refused, not guessed), a round-the-clock window is.
    #[test]
    fn numbers_placed_nowhere_need_the_window_open_in_their_whole_country() {
        for phone in ["+18005551234", "+15551230001"] {
            let zones = timezones_for(None, phone);
            assert!(zones.len() > 20, "{phone}: {zones:?}");
            let day = CallingWindow::default();
            assert!(!day.contains_all(utc("2024-07-01T18:00:00Z"), &zones));
            let all_day = CallingWindow::parse("00:00", "23:59").expect("window");
            assert!(all_day.contains_all(utc("2024-07-01T18:30:00Z"), &zones));
        }
    }

    /// Calling hours over several candidate zones: open only while open in every one; the
    /// next opening is when the last of them opens.
    #[test]
    fn window_over_several_zones() {
        let w = CallingWindow::default(); // 08:00–21:00
        let boise_or_la = [Tz::America__Boise, Tz::America__Los_Angeles];
        // 2024-07-01: Boise is UTC-6 (MDT), Los Angeles UTC-7 (PDT). 08:00 PDT = 15:00Z.
        assert!(!w.contains_all(utc("2024-07-01T14:59:59Z"), &boise_or_la)); // 08:59 MDT, 07:59 PDT
        assert!(w.contains_all(utc("2024-07-01T15:00:00Z"), &boise_or_la));
        // 21:00 MDT = 03:00Z: closes for Boise while Los Angeles is still at 20:00.
        assert!(w.contains_all(utc("2024-07-02T02:59:59Z"), &boise_or_la));
        assert!(!w.contains_all(utc("2024-07-02T03:00:00Z"), &boise_or_la));
        assert_eq!(
            w.next_open_all(utc("2024-07-02T03:00:00Z"), &boise_or_la),
            Some(utc("2024-07-02T15:00:00Z"))
        );
        assert_eq!(
            w.next_open_all(utc("2024-07-01T12:00:00Z"), &boise_or_la),
            Some(utc("2024-07-01T15:00:00Z"))
        );
        // No zone: never open.
        assert!(!w.contains_all(utc("2024-07-01T18:00:00Z"), &[]));
        assert_eq!(w.next_open_all(utc("2024-07-01T18:00:00Z"), &[]), None);
        // Zones too far apart for a short window: never open in all at once.
        let short = win("09:00", "12:00");
        let apart = [Tz::Europe__Moscow, Tz::Asia__Vladivostok]; // 7 hours apart
        assert_eq!(
            short.next_open_all(utc("2024-07-01T00:00:00Z"), &apart),
            None
        );
        // A single zone agrees with next_open.
        let t = utc("2024-07-01T03:00:00Z");
        assert_eq!(w.next_open_all(t, &[NY]), Some(w.next_open(t, NY)));
    }

    /// The 08:00–21:00 default at its edges in every US zone ("09:00–21:00" style edges: the
    /// last second before the start is closed, the start is open, the last second before the
    /// end is open, the end is closed), on a summer and a winter day (DST on and off; Arizona
    /// and Hawaii never change).
    #[test]
    fn window_edges_in_every_us_zone() {
        let w = win("09:00", "21:00");
        let zones = [
            ("+12125551234", NY),
            ("+13125551234", Tz::America__Chicago),
            ("+13035551234", Tz::America__Denver),
            ("+16025551234", Tz::America__Phoenix),
            ("+12135551234", Tz::America__Los_Angeles),
            ("+18085551234", Tz::Pacific__Honolulu),
        ];
        for (phone, tz) in zones {
            let got = timezones_for(None, phone);
            assert_eq!(got, [tz], "{phone}");
            for date in ["2024-07-15", "2024-01-15"] {
                let at = |hms: &str| {
                    let local = chrono::NaiveDateTime::parse_from_str(
                        &format!("{date} {hms}"),
                        "%Y-%m-%d %H:%M:%S",
                    )
                    .unwrap();
                    tz.from_local_datetime(&local)
                        .single()
                        .unwrap()
                        .with_timezone(&Utc)
                };
                let ctx = format!("{phone} {date}");
                assert!(!w.contains_all(at("08:59:59"), &got), "{ctx} 08:59:59");
                assert!(w.contains_all(at("09:00:00"), &got), "{ctx} 09:00");
                assert!(w.contains_all(at("20:59:59"), &got), "{ctx} 20:59:59");
                assert!(!w.contains_all(at("21:00:00"), &got), "{ctx} 21:00");
                assert_eq!(w.next_open_all(at("08:59:59"), &got), Some(at("09:00:00")));
                let policy = RetryPolicy::default();
                let dial =
                    |t| may_dial(t, &got, &w, ContactState::Pending, None, false, 0, &policy);
                assert_eq!(
                    dial(at("08:59:59")),
                    Err(Refusal::OutsideWindow(at("09:00:00")))
                );
                assert_eq!(dial(at("09:00:00")), Ok(()));
                assert_eq!(dial(at("20:59:59")), Ok(()));
                assert!(matches!(
                    dial(at("21:00:00")),
                    Err(Refusal::OutsideWindow(_))
                ));
            }
        }
        // Alaska: both Anchorage and Adak (one hour behind) must be inside.
        let ak = timezones_for(None, "+19075551234");
        let adak_nine = utc("2024-07-15T18:00:00Z"); // 09:00 HDT Adak, 10:00 AKDT Anchorage
        assert!(!w.contains_all(adak_nine - TimeDelta::seconds(1), &ak));
        assert!(w.contains_all(adak_nine, &ak));
        let anchorage_nine_pm = utc("2024-07-16T05:00:00Z"); // 21:00 AKDT
        assert!(w.contains_all(anchorage_nine_pm - TimeDelta::seconds(1), &ak));
        assert!(!w.contains_all(anchorage_nine_pm, &ak));
    }

    /// The bug this fixes: a Northern California number (area code 530, not in the old
    /// table) was taken for New York and could be dialled at 05:00 local time.
    #[test]
    fn pacific_number_not_dialled_at_five_am() {
        let w = CallingWindow::default();
        let policy = RetryPolicy::default();
        let five_am_pdt = utc("2024-07-15T12:00:00Z"); // 08:00 EDT, 05:00 PDT
        let zones = timezones_for(None, "+15305550123");
        assert_eq!(
            may_dial(
                five_am_pdt,
                &zones,
                &w,
                ContactState::Pending,
                None,
                false,
                0,
                &policy
            ),
            Err(Refusal::OutsideWindow(utc("2024-07-15T15:00:00Z")))
        );
    }

    /// Around DST changes the common window of two zones follows each zone's own clock.
    #[test]
    fn window_over_several_zones_across_dst() {
        let w = CallingWindow::default();
        // Phoenix has no DST, Denver does: on 2024-03-10 Denver springs forward.
        let az_or_mt = [Tz::America__Phoenix, Tz::America__Denver];
        // Saturday 2024-03-09: both UTC-7, 08:00 = 15:00Z.
        assert_eq!(
            w.next_open_all(utc("2024-03-09T10:00:00Z"), &az_or_mt),
            Some(utc("2024-03-09T15:00:00Z"))
        );
        // Sunday: Denver is UTC-6 (08:00 = 14:00Z), Phoenix still UTC-7 (08:00 = 15:00Z);
        // the later one counts. Closing: 21:00 MDT = 03:00Z comes before 21:00 MST = 04:00Z.
        assert_eq!(
            w.next_open_all(utc("2024-03-10T10:00:00Z"), &az_or_mt),
            Some(utc("2024-03-10T15:00:00Z"))
        );
        assert!(w.contains_all(utc("2024-03-11T02:59:59Z"), &az_or_mt));
        assert!(!w.contains_all(utc("2024-03-11T03:00:00Z"), &az_or_mt));
        // Europe falls back on 2024-10-27, New York on 2024-11-03: in between London is 4 h
        // ahead of New York instead of 5.
        let both = [Tz::Europe__London, NY];
        // 2024-10-28: 08:00 EDT = 12:00Z (London 12:00 GMT); London closes at 21:00Z.
        assert_eq!(
            w.next_open_all(utc("2024-10-28T05:00:00Z"), &both),
            Some(utc("2024-10-28T12:00:00Z"))
        );
        assert!(w.contains_all(utc("2024-10-28T20:59:59Z"), &both));
        assert!(!w.contains_all(utc("2024-10-28T21:00:00Z"), &both));
        // 2024-11-04 (New York on EST): 08:00 EST = 13:00Z.
        assert_eq!(
            w.next_open_all(utc("2024-11-04T05:00:00Z"), &both),
            Some(utc("2024-11-04T13:00:00Z"))
        );
    }

    // ---- pacer ----

    fn dur_ns(ns: u64) -> Duration {
        Duration::from_nanos(ns)
    }

    #[test]
    fn pacer_limits_validation() {
        let t0 = Instant::now();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9, 20_000.0] {
            assert!(Pacer::new(bad, 1, t0).is_err(), "{bad}");
        }
        let mut p = Pacer::new(2.5, 4, t0).unwrap();
        assert_eq!(p.burst(), 3);
        assert_eq!(Pacer::new(0.2, 1, t0).unwrap().burst(), 1);
        assert!(p.set_limits(0.0, 1).is_err());
        assert_eq!(p.max_cps(), 2.5); // unchanged on error
        p.set_limits(10.0, 7).unwrap();
        assert_eq!((p.max_cps(), p.max_channels(), p.burst()), (10.0, 7, 10));
    }

    #[test]
    fn pacer_burst_then_steady_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(10.0, 100, t0).unwrap();
        for _ in 0..10 {
            assert!(p.can_dial(t0, 0));
            p.take(t0);
        }
        assert!(!p.can_dial(t0, 0));
        // A bare token bucket would allow dial 11 at t0+100ms; the 1-second window holds it
        // back until the burst is one second old.
        assert!(!p.can_dial(t0 + ms(100), 0));
        assert_eq!(p.next_token_at(t0), t0 + ms(1000));
        assert!(!p.can_dial(t0 + ms(999), 0));
        // By then the bucket is full again: a new burst of 10 in [t1, t1 + 1 s).
        let t1 = t0 + ms(1000);
        for _ in 0..10 {
            assert!(p.can_dial(t1, 0));
            p.take(t1);
        }
        assert_eq!(p.next_token_at(t1), t1 + ms(1000));

        // Evenly spaced dials at exactly the rate are never held back.
        let mut p = Pacer::new(10.0, 100, t0).unwrap();
        for k in 0..100u64 {
            let t = t0 + ms(100 * k);
            assert!(p.can_dial(t, 0), "dial {k}");
            p.take(t);
        }
        // Having used no burst, the bucket holds 9 more tokens after the last one: the window
        // allows them once the dial 1 s earlier is out of it.
        let last = t0 + ms(9_900);
        assert_eq!(p.next_token_at(last), last + ms(100));
    }

    #[test]
    fn pacer_hold_until_delays_the_first_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(20.0, 100, t0).expect("pacer");
        p.hold_until(t0 + SLIDING_WINDOW);
        assert!(!p.can_dial(t0, 0));
        assert!(!p.can_dial(t0 + Duration::from_millis(999), 0));
        assert_eq!(p.next_token_at(t0), t0 + SLIDING_WINDOW);
        let t1 = t0 + SLIDING_WINDOW;
        for _ in 0..20 {
            assert!(p.can_dial(t1, 0));
            p.take(t1);
        }
        assert!(!p.can_dial(t1, 0));
    }

    #[test]
    fn pacer_slow_rate_and_channels() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0.5, 2, t0).unwrap();
        assert!(p.can_dial(t0, 0));
        assert!(p.can_dial(t0, 1));
        assert!(!p.can_dial(t0, 2));
        p.take(t0);
        assert_eq!(p.next_token_at(t0), t0 + Duration::from_secs(2));
        assert!(!p.can_dial(t0 + Duration::from_millis(1999), 0));
        assert!(p.can_dial(t0 + Duration::from_secs(2), 0));
        // Zero channels: rate would allow, channels never do.
        p.set_limits(0.5, 0).unwrap();
        assert!(!p.can_dial(t0 + Duration::from_secs(10), 0));
    }

    #[test]
    fn pacer_long_run_rate() {
        // Greedy dialer sleeping exactly until next_token_at for 100 s at 7.5 cps.
        let t0 = Instant::now();
        let mut p = Pacer::new(7.5, 1000, t0).unwrap();
        let end = t0 + Duration::from_secs(100);
        let mut now = t0;
        let mut n = 0u32;
        while now <= end {
            assert!(p.can_dial(now, 0));
            p.take(now);
            n += 1;
            now = p.next_token_at(now);
        }
        // At most burst + rate*T, and not much less than rate*T (the pacer is not too strict).
        assert!(n <= 8 + 750, "{n}");
        assert!(n >= 750, "{n}");
    }

    #[derive(Debug, Clone)]
    struct Step {
        gap_ns: u64,
        call_ms: u64,
        jump_to_token: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (0u64..400_000_000, 0u64..5_000, any::<bool>()).prop_map(
            |(gap_ns, call_ms, jump_to_token)| Step {
                gap_ns,
                call_ms,
                jump_to_token,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any sequence of dials made only when `can_dial` is true respects the per-second cap,
        /// the long-run rate and the channel count.
        #[test]
        fn pacer_invariants(
            cps in 0.05f64..40.0,
            channels in 0u32..12,
            steps in prop::collection::vec(step(), 1..400),
        ) {
            let t0 = Instant::now();
            let mut p = Pacer::new(cps, channels, t0).unwrap();
            let burst = p.burst() as usize;
            prop_assert_eq!(burst, (cps.ceil() as usize).max(1));
            let interval_ns = (1e9 / cps).ceil() as u128;
            let mut now = t0;
            let mut calls: Vec<Instant> = Vec::new(); // end times of active calls
            let mut dials: Vec<Instant> = Vec::new();
            for s in &steps {
                now += dur_ns(s.gap_ns);
                if s.jump_to_token {
                    let next = p.next_token_at(now);
                    prop_assert!(next >= now);
                    if channels > 0 {
                        prop_assert!(p.can_dial(next, 0));
                        if next > now {
                            prop_assert!(!p.can_dial(next - dur_ns(1), 0));
                        }
                    }
                    now = next;
                }
                calls.retain(|&end| end > now);
                let active = calls.len() as u32;
                if p.can_dial(now, active) {
                    p.take(now);
                    dials.push(now);
                    calls.push(now + Duration::from_millis(s.call_ms));
                    prop_assert!(calls.len() as u32 <= channels);
                }
            }
            for i in 0..dials.len() {
                // Any half-open 1-second window starting at a dial holds at most `burst` dials.
                let in_window = dials[i..]
                    .iter()
                    .take_while(|&&t| t < dials[i] + SLIDING_WINDOW)
                    .count();
                prop_assert!(in_window <= burst, "{} dials in 1 s, burst {}", in_window, burst);
                // Any span [t_i, t_j] holds at most burst + floor(span / interval) dials, so the
                // average rate over T seconds is at most max_cps + burst / T.
                for j in i..dials.len() {
                    let span_ns = (dials[j] - dials[i]).as_nanos();
                    let allowed = burst as u128 + span_ns / interval_ns;
                    prop_assert!(((j - i + 1) as u128) <= allowed);
                    let t = span_ns as f64 / 1e9;
                    if t >= 1.0 {
                        prop_assert!((j - i + 1) as f64 / t <= cps + burst as f64 / t + 1e-9);
                    }
                }
            }
        }

        /// Live limit changes never let the per-second cap of the new limit be exceeded by dials
        /// made after the change.
        #[test]
        fn pacer_set_limits_keeps_window(
            cps in 0.5f64..30.0,
            new_cps in 0.5f64..30.0,
            steps in prop::collection::vec(step(), 1..200),
        ) {
            let t0 = Instant::now();
            let mut p = Pacer::new(cps, 1000, t0).unwrap();
            let mut now = t0;
            let mut dials: Vec<Instant> = Vec::new();
            let half = steps.len() / 2;
            let mut changed_at = None;
            for (k, s) in steps.iter().enumerate() {
                if k == half {
                    p.set_limits(new_cps, 1000).unwrap();
                    changed_at = Some(dials.len());
                }
                now += dur_ns(s.gap_ns / 4);
                if s.jump_to_token {
                    now = p.next_token_at(now);
                }
                if p.can_dial(now, 0) {
                    p.take(now);
                    dials.push(now);
                }
            }
            let burst = p.burst() as usize;
            let first_after = changed_at.unwrap_or(dials.len());
            // Every dial after the change sees at most `burst` dials in the preceding second
            // (itself included).
            for j in first_after..dials.len() {
                let n = dials[..=j]
                    .iter()
                    .filter(|&&t| t + SLIDING_WINDOW > dials[j])
                    .count();
                prop_assert!(n <= burst, "{} > {}", n, burst);
            }
        }
    }

    // ---- dispositions, states, policy ----

    #[test]
    fn names_round_trip() {
        for d in Disposition::ALL {
            assert_eq!(Disposition::parse(d.as_str()).unwrap(), d);
            assert_eq!(d.to_string().parse::<Disposition>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        for s in ContactState::ALL {
            assert_eq!(ContactState::parse(s.as_str()).unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ContactState>(&json).unwrap(), s);
        }
        assert_eq!(ContactState::RetryScheduled.as_str(), "retry");
        assert_eq!(ContactState::DoNotCall.as_str(), "dnc");
        assert_eq!(Disposition::NoAnswer.as_str(), "no_answer");
        assert!(Disposition::parse("NoAnswer").is_err());
        assert!(ContactState::parse("retry_scheduled").is_err());
    }

    #[test]
    fn policy_defaults_and_json() {
        let d = RetryPolicy::default();
        assert_eq!(d.busy, RetryRule::new(300, 3));
        assert_eq!(d.no_answer, RetryRule::new(600, 3));
        assert_eq!(d.failed, RetryRule::new(900, 2));
        assert_eq!(d.machine, RetryRule::new(3600, 2));
        assert_eq!(d.max_attempts_per_30_days, 3);
        assert_eq!(d.rule_for(Disposition::Interrupted), Some(d.failed));
        assert_eq!(d.rule_for(Disposition::Answered), None);

        let p: RetryPolicy =
            serde_json::from_str(r#"{"no_answer": {"after_s": 1200, "max_attempts": 5}}"#).unwrap();
        assert_eq!(p.no_answer, RetryRule::new(1200, 5));
        assert_eq!(p.busy, d.busy);
        assert_eq!(p.max_attempts_per_30_days, 3);
        let p: RetryPolicy = serde_json::from_str(r#"{"max_attempts_per_30_days": 6}"#).unwrap();
        assert_eq!(p.max_attempts_per_30_days, 6);
        assert_eq!(serde_json::from_str::<RetryPolicy>("{}").unwrap(), d);
        // Round trip.
        let back: RetryPolicy = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        // Unknown keys, incomplete rules.
        assert!(serde_json::from_str::<RetryPolicy>(
            r#"{"voicemail": {"after_s": 1, "max_attempts": 1}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<RetryPolicy>(
            r#"{"busy": {"after_s": 1, "max_attempts": 1, "x": 0}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"busy": {"after_s": 1}}"#).is_err());
        // Validation.
        assert!(d.validate().is_ok());
        let mut bad = d;
        bad.machine.after_s = MAX_RETRY_AFTER_S + 1;
        assert!(matches!(
            bad.validate(),
            Err(DialerError::RetryTooLate {
                rule: "machine",
                ..
            })
        ));
    }

    // ---- after_attempt ----

    fn decide(
        d: Disposition,
        attempts: u32,
        last30: u32,
        outcome: Option<&str>,
        now: &str,
    ) -> Decision {
        after_attempt(
            &RetryPolicy::default(),
            d,
            attempts,
            last30,
            outcome,
            utc(now),
            &CallingWindow::default(),
            &[NY],
        )
    }

    // 2024-07-01T15:00Z = 11:00 EDT, well inside the window.
    const MIDDAY: &str = "2024-07-01T15:00:00Z";

    #[test]
    fn answered_outcomes() {
        for choice in ["wait", "refund", "agent", "callback", "Refund"] {
            let dec = decide(Disposition::Answered, 1, 1, Some(choice), MIDDAY);
            assert_eq!(
                dec,
                Decision {
                    state: ContactState::Completed,
                    next_attempt_at: None,
                    reason: "choice"
                }
            );
        }
        let dec = decide(Disposition::Answered, 1, 1, Some("opt_out"), MIDDAY);
        assert_eq!(
            (dec.state, dec.reason),
            (ContactState::OptedOut, "opted_out")
        );
        for none in [None, Some(""), Some("no_choice")] {
            let dec = decide(Disposition::Answered, 1, 1, none, MIDDAY);
            assert_eq!(
                (dec.state, dec.reason),
                (ContactState::Completed, "no_choice")
            );
        }
        let dec = decide(Disposition::Answered, 1, 1, Some("hangup"), MIDDAY);
        assert_eq!(
            (dec.state, dec.reason),
            (ContactState::Completed, "answered_other")
        );
        // Answered even past the caps: still completed, never failed.
        let dec = decide(Disposition::Answered, 9, 9, Some("wait"), MIDDAY);
        assert_eq!(dec.state, ContactState::Completed);
    }

    #[test]
    fn retries_for_every_failed_disposition() {
        let now = utc(MIDDAY);
        let cases = [
            (Disposition::Busy, 300, "retry_busy"),
            (Disposition::NoAnswer, 600, "retry_no_answer"),
            (Disposition::Failed, 900, "retry_failed"),
            (Disposition::Machine, 3600, "retry_machine"),
            (Disposition::Interrupted, 900, "retry_interrupted"),
        ];
        for (d, after, reason) in cases {
            let dec = decide(d, 1, 1, Some("wait"), MIDDAY);
            assert_eq!(
                dec,
                Decision {
                    state: ContactState::RetryScheduled,
                    next_attempt_at: Some(now + TimeDelta::seconds(after)),
                    reason,
                },
                "{d}"
            );
        }
    }

    #[test]
    fn retry_caps() {
        // Per-rule totals: busy/no_answer allow 3 dials, failed/machine/interrupted 2.
        assert_eq!(
            decide(Disposition::Busy, 2, 2, None, MIDDAY).state,
            ContactState::RetryScheduled
        );
        let dec = decide(Disposition::Busy, 3, 2, None, MIDDAY);
        assert_eq!(
            (dec.state, dec.reason, dec.next_attempt_at),
            (ContactState::Failed, "max_attempts", None)
        );
        assert_eq!(
            decide(Disposition::NoAnswer, 3, 1, None, MIDDAY).state,
            ContactState::Failed
        );
        assert_eq!(
            decide(Disposition::Failed, 1, 1, None, MIDDAY).state,
            ContactState::RetryScheduled
        );
        assert_eq!(
            decide(Disposition::Failed, 2, 1, None, MIDDAY).state,
            ContactState::Failed
        );
        assert_eq!(
            decide(Disposition::Machine, 2, 1, None, MIDDAY).state,
            ContactState::Failed
        );
        assert_eq!(
            decide(Disposition::Interrupted, 2, 1, None, MIDDAY).state,
            ContactState::Failed
        );
        // 30-day cap, even when the rule would allow more.
        let mut policy = RetryPolicy::default();
        policy.busy.max_attempts = 10;
        let w = CallingWindow::default();
        let dec = after_attempt(
            &policy,
            Disposition::Busy,
            3,
            3,
            None,
            utc(MIDDAY),
            &w,
            &[NY],
        );
        assert_eq!(
            (dec.state, dec.reason),
            (ContactState::Failed, "attempt_cap_30_days")
        );
        let dec = after_attempt(
            &policy,
            Disposition::Busy,
            5,
            2,
            None,
            utc(MIDDAY),
            &w,
            &[NY],
        );
        assert_eq!(dec.state, ContactState::RetryScheduled);
        // max_attempts 0 never retries.
        policy.machine.max_attempts = 0;
        let dec = after_attempt(
            &policy,
            Disposition::Machine,
            1,
            1,
            None,
            utc(MIDDAY),
            &w,
            &[NY],
        );
        assert_eq!(dec.state, ContactState::Failed);
    }

    #[test]
    fn retry_pushed_into_window() {
        // 20:58 EDT + 300 s = 21:03 → next morning 08:00 EDT.
        let dec = decide(Disposition::Busy, 1, 1, None, "2024-07-02T00:58:00Z");
        assert_eq!(dec.next_attempt_at, Some(utc("2024-07-02T12:00:00Z")));
        // 20:50 + 300 s = 20:55, still inside.
        let dec = decide(Disposition::Busy, 1, 1, None, "2024-07-02T00:50:00Z");
        assert_eq!(dec.next_attempt_at, Some(utc("2024-07-02T00:55:00Z")));
        // Machine at 20:30 EST on the eve of spring forward → 08:00 EDT = 12:00Z.
        let dec = decide(Disposition::Machine, 1, 1, None, "2024-03-10T01:30:00Z");
        assert_eq!(dec.next_attempt_at, Some(utc("2024-03-10T12:00:00Z")));
        // Shanghai customer.
        let dec = after_attempt(
            &RetryPolicy::default(),
            Disposition::NoAnswer,
            1,
            1,
            None,
            utc("2024-07-01T12:55:00Z"), // 20:55 local
            &CallingWindow::default(),
            &[SH],
        );
        assert_eq!(dec.next_attempt_at, Some(utc("2024-07-02T00:00:00Z")));
    }

    #[test]
    fn cancelled_goes_back_to_pending() {
        let dec = decide(Disposition::Cancelled, 1, 1, None, MIDDAY);
        assert_eq!(
            dec,
            Decision {
                state: ContactState::Pending,
                next_attempt_at: None,
                reason: "cancelled"
            }
        );
        let dec = decide(Disposition::Cancelled, 3, 3, None, MIDDAY);
        assert_eq!(
            (dec.state, dec.reason),
            (ContactState::Failed, "attempt_cap_30_days")
        );
    }

    // ---- may_dial ----

    fn gate(
        now: &str,
        state: ContactState,
        next: Option<&str>,
        dnc: bool,
        last30: u32,
    ) -> Result<(), Refusal> {
        may_dial(
            utc(now),
            &[NY],
            &CallingWindow::default(),
            state,
            next.map(utc),
            dnc,
            last30,
            &RetryPolicy::default(),
        )
    }

    #[test]
    fn may_dial_allows_due_contacts_in_window() {
        assert_eq!(gate(MIDDAY, ContactState::Pending, None, false, 0), Ok(()));
        assert_eq!(
            gate(MIDDAY, ContactState::RetryScheduled, Some(MIDDAY), false, 2),
            Ok(())
        );
        assert_eq!(
            gate(
                MIDDAY,
                ContactState::RetryScheduled,
                Some("2024-07-01T14:00:00Z"),
                false,
                1
            ),
            Ok(())
        );
    }

    #[test]
    fn may_dial_refusals() {
        // Outside the window: 07:00 EDT → opens at 08:00 EDT.
        assert_eq!(
            gate(
                "2024-07-01T11:00:00Z",
                ContactState::Pending,
                None,
                false,
                0
            ),
            Err(Refusal::OutsideWindow(utc("2024-07-01T12:00:00Z")))
        );
        assert_eq!(
            gate(
                MIDDAY,
                ContactState::RetryScheduled,
                Some("2024-07-01T15:05:00Z"),
                false,
                1
            ),
            Err(Refusal::NotDue(utc("2024-07-01T15:05:00Z")))
        );
        assert_eq!(
            gate(MIDDAY, ContactState::Pending, None, true, 0),
            Err(Refusal::DoNotCall)
        );
        assert_eq!(
            gate(MIDDAY, ContactState::DoNotCall, None, false, 0),
            Err(Refusal::DoNotCall)
        );
        assert_eq!(
            gate(MIDDAY, ContactState::OptedOut, None, true, 0),
            Err(Refusal::OptedOut)
        );
        assert_eq!(
            gate(MIDDAY, ContactState::Pending, None, false, 3),
            Err(Refusal::AttemptCap)
        );
        for s in [
            ContactState::Dialing,
            ContactState::Answered,
            ContactState::Completed,
            ContactState::Failed,
        ] {
            assert_eq!(
                gate(MIDDAY, s, None, false, 0),
                Err(Refusal::NotDialable(s))
            );
        }
        // DNC beats everything else, even outside the window.
        assert_eq!(
            gate("2024-07-01T03:00:00Z", ContactState::Pending, None, true, 5),
            Err(Refusal::DoNotCall)
        );
        // Refusal helpers.
        let r = Refusal::OutsideWindow(utc(MIDDAY));
        assert_eq!(r.retry_at(), Some(utc(MIDDAY)));
        assert!(!r.is_permanent());
        assert!(Refusal::OptedOut.is_permanent());
        assert_eq!(Refusal::AttemptCap.retry_at(), None);
        assert!(Refusal::NotDialable(ContactState::Dialing)
            .to_string()
            .contains("dialing"));
    }

    proptest! {
        /// Whatever the inputs, may_dial never approves a dial outside the window, to a DNC or
        /// opted-out contact, or past the 30-day cap.
        #[test]
        fn may_dial_never_breaks_the_rules(
            secs in 1_700_000_000i64..1_800_000_000,
            state in 0usize..8,
            next_off in prop::option::of(-100_000i64..100_000),
            dnc in any::<bool>(),
            last30 in 0u32..6,
            zone in 0usize..5,
        ) {
            let all = [NY, SH, Tz::Europe__London, Tz::America__Los_Angeles, Tz::Asia__Tokyo];
            // One zone, or two candidate zones (a number placed in several).
            let zones: Vec<Tz> = if zone < 3 { vec![all[zone]] } else { vec![all[zone - 3], all[zone - 2]] };
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let state = ContactState::ALL[state];
            let next = next_off.map(|o| now + TimeDelta::seconds(o));
            let w = CallingWindow::default();
            let policy = RetryPolicy::default();
            match may_dial(now, &zones, &w, state, next, dnc, last30, &policy) {
                Ok(()) => {
                    prop_assert!(zones.iter().all(|&tz| w.contains(now, tz)));
                    prop_assert!(!dnc && state.is_dialable());
                    prop_assert!(last30 < policy.max_attempts_per_30_days);
                    prop_assert!(next.is_none_or(|t| t <= now));
                }
                Err(Refusal::OutsideWindow(at)) => {
                    prop_assert!(at > now && zones.iter().all(|&tz| w.contains(at, tz)));
                }
                Err(_) => {}
            }
        }
    }
}
