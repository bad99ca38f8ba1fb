//! The registrar's credential cache: every agent account (HA1 digests, extension, queues,
//! skills, enabled) in memory, so a REGISTER is answered without waiting for the database.
//!
//! Sans-IO: the registrar feeds it snapshots (loaded at start and every
//! [`REFRESH_EVERY`] by a task it owns) and the results of single-user look-ups, and asks it
//! two things per REGISTER: "who is this user?" ([`Credentials::find`]) and, when the answer
//! would refuse the phone, "may I ask the database about this user now?"
//! ([`Credentials::begin_lookup`]). Time is an input, so the limits are tested in virtual time.
//!
//! Why look-ups on a miss: agents are created by `switchboard agent add` or the API, possibly
//! on another node of a shared PostgreSQL; the periodic refresh sees them within seconds, but
//! a phone configured right after `agent add` must register at once, and a changed password
//! must work at once too. Why limits: unknown users are what a scanner sends, so a miss must
//! not become a query. Each user is looked up at most once per [`LOOKUP_EVERY`], all users
//! together at most [`LOOKUP_BURST`] at once and [`LOOKUPS_PER_SEC`] per second, with at most
//! [`MAX_IN_FLIGHT`] queries outstanding; beyond that the cache answers alone (an unknown user
//! gets 403 and is counted as a failure for its source, as before).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::agents::AgentRow;

/// How often the whole account table is reloaded (other nodes' and the CLI's changes).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// One single-user look-up per user per this interval, whatever its result.
pub const LOOKUP_EVERY: Duration = Duration::from_secs(5);
/// Single-user look-ups for all users together: a burst of this many, then this many per second.
pub const LOOKUP_BURST: u32 = 20;
pub const LOOKUPS_PER_SEC: u32 = 20;
/// Single-user look-ups outstanding at once (each holds a database connection).
pub const MAX_IN_FLIGHT: usize = 8;
/// Per-user look-up memory kept; beyond it, entries older than `LOOKUP_EVERY` are forgotten.
const MAX_TRACKED_USERS: usize = 10_000;

/// What the last single-user look-up of a user found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// The account as stored now (it may be disabled).
    Found(Arc<AgentRow>),
    /// No such user.
    Missing,
    /// The database did not answer (in time): nothing is known.
    Failed,
}

#[derive(Debug)]
struct UserLookup {
    /// When the last look-up started.
    started: Instant,
    in_flight: bool,
    /// The last finished look-up's result.
    last: Option<LookupResult>,
}

/// A token bucket in virtual time.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = self
            .at
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(f64::MAX);
        self.tokens =
            (self.tokens + elapsed * f64::from(LOOKUPS_PER_SEC)).min(f64::from(LOOKUP_BURST));
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
pub struct Credentials {
    by_name: HashMap<String, Arc<AgentRow>>,
    /// Extension → the names that carry it (normally one).
    by_ext: HashMap<String, Vec<String>>,
    /// When the snapshot in force was read (its query started).
    snapshot_at: Option<Instant>,
    lookups: HashMap<String, UserLookup>,
    in_flight: usize,
    budget: Budget,
    /// Single-user look-ups started since creation (for tests and logs).
    pub lookups_started: u64,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            by_name: HashMap::new(),
            by_ext: HashMap::new(),
            snapshot_at: None,
            lookups: HashMap::new(),
            in_flight: 0,
            budget: Budget {
                tokens: f64::from(LOOKUP_BURST),
                at: None,
            },
            lookups_started: 0,
        }
    }
}

impl Credentials {
    /// Accounts known.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The account a SIP user part names: its name or its extension, the oldest account
    /// (lowest id) when several match — what `agents::find_by_user` answers.
    pub fn find(&self, user: &str) -> Option<Arc<AgentRow>> {
        let by_name = self.by_name.get(user);
        let by_ext = self
            .by_ext
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|n| self.by_name.get(n));
        by_name
            .into_iter()
            .chain(by_ext)
            .min_by_key(|a| a.id)
            .cloned()
    }

    /// Replace every account with a snapshot whose query started at `read_at`. A single-user
    /// look-up that started after it is newer than the snapshot: its result stays.
    pub fn replace(&mut self, rows: Vec<AgentRow>, read_at: Instant) {
        if self.snapshot_at.is_some_and(|t| t > read_at) {
            return; // an older snapshot arriving late
        }
        self.by_name.clear();
        self.by_ext.clear();
        for row in rows {
            self.insert(Arc::new(row));
        }
        self.snapshot_at = Some(read_at);
        let newer: Vec<(String, LookupResult)> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.started > read_at)
            .filter_map(|(u, l)| l.last.clone().map(|r| (u.clone(), r)))
            .collect();
        for (user, result) in newer {
            self.apply(&user, &result);
        }
    }

    fn insert(&mut self, row: Arc<AgentRow>) {
        self.remove_name(&row.name);
        if let Some(ext) = &row.extension {
            self.by_ext
                .entry(ext.clone())
                .or_default()
                .push(row.name.clone());
        }
        self.by_name.insert(row.name.clone(), row);
    }

    fn remove_name(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            if let Some(ext) = &old.extension {
                if let Some(names) = self.by_ext.get_mut(ext) {
                    names.retain(|n| n != name);
                    if names.is_empty() {
                        self.by_ext.remove(ext);
                    }
                }
            }
        }
    }

    /// Whether a look-up of `user` is under way (its REGISTERs wait for the result).
    pub fn in_flight(&self, user: &str) -> bool {
        self.lookups.get(user).is_some_and(|l| l.in_flight)
    }

    /// The result of `user`'s last look-up if it started within `LOOKUP_EVERY` of `now`.
    pub fn recent(&self, user: &str, now: Instant) -> Option<&LookupResult> {
        self.lookups
            .get(user)
            .filter(|l| now.saturating_duration_since(l.started) < LOOKUP_EVERY)
            .and_then(|l| l.last.as_ref())
    }

    /// Ask for a single-user look-up of `user` now: true when the limits allow it (the
    /// caller then queries and reports with [`Credentials::finish_lookup`]).
    pub fn begin_lookup(&mut self, user: &str, now: Instant) -> bool {
        if let Some(l) = self.lookups.get(user) {
            if l.in_flight || now.saturating_duration_since(l.started) < LOOKUP_EVERY {
                return false;
            }
        }
        if self.in_flight >= MAX_IN_FLIGHT {
            return false;
        }
        if self.lookups.len() >= MAX_TRACKED_USERS && !self.lookups.contains_key(user) {
            self.lookups.retain(|_, l| {
                l.in_flight || now.saturating_duration_since(l.started) < LOOKUP_EVERY
            });
            if self.lookups.len() >= MAX_TRACKED_USERS {
                return false;
            }
        }
        if !self.budget.take(now) {
            return false;
        }
        self.lookups.insert(
            user.to_string(),
            UserLookup {
                started: now,
                in_flight: true,
                last: None,
            },
        );
        self.in_flight += 1;
        self.lookups_started += 1;
        true
    }

    /// The look-up of `user` begun earlier has finished.
    pub fn finish_lookup(&mut self, user: &str, result: LookupResult) {
        let Some(l) = self.lookups.get_mut(user) else {
            return;
        };
        if l.in_flight {
            l.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        l.last = Some(result.clone());
        self.apply(user, &result);
    }

    /// What a look-up says about `user` now overrides the cache.
    fn apply(&mut self, user: &str, result: &LookupResult) {
        match result {
            LookupResult::Found(row) => self.insert(row.clone()),
            // Gone (deleted, or renamed): no account has this name or extension any more.
            LookupResult::Missing => {
                while let Some(found) = self.find(user) {
                    self.remove_name(&found.name);
                }
            }
            LookupResult::Failed => {}
        }
    }

    /// Forget look-up memory older than `LOOKUP_EVERY` (the registrar's periodic sweep).
    pub fn sweep(&mut self, now: Instant) {
        self.lookups
            .retain(|_, l| l.in_flight || now.saturating_duration_since(l.started) < LOOKUP_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: i64, name: &str, ext: Option<&str>, ha1: &str) -> AgentRow {
        AgentRow {
            id,
            name: name.into(),
            extension: ext.map(str::to_string),
            realm: "switchboard".into(),
            ha1_md5: ha1.into(),
            ha1_sha256: format!("{ha1}-sha"),
            max_calls: 1,
            enabled: true,
            queues: vec!["support".into()],
            skills: vec![("lang:en".into(), 5)],
        }
    }

    #[test]
    fn finds_by_name_or_extension_oldest_first() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        c.replace(
            vec![
                agent(1, "alice", Some("101"), "a"),
                agent(2, "bob", Some("alice"), "b"),
                agent(3, "carol", None, "c"),
            ],
            t0,
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c.find("101").map(|a| a.name.clone()), Some("alice".into()));
        // Bob's extension is another agent's name: the older account wins, as in SQL.
        assert_eq!(c.find("alice").map(|a| a.id), Some(1));
        assert_eq!(c.find("carol").map(|a| a.ha1_md5.clone()), Some("c".into()));
        assert!(c.find("dave").is_none());
        // A new snapshot without carol, bob's extension changed.
        c.replace(
            vec![
                agent(1, "alice", Some("101"), "a"),
                agent(2, "bob", Some("102"), "b"),
            ],
            t0 + Duration::from_secs(5),
        );
        assert!(c.find("carol").is_none());
        assert_eq!(c.find("102").map(|a| a.id), Some(2));
        assert_eq!(c.find("alice").map(|a| a.id), Some(1));
    }

    #[test]
    fn one_lookup_per_user_per_interval() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        assert!(c.begin_lookup("new", t0));
        assert!(c.in_flight("new"));
        assert!(!c.begin_lookup("new", t0), "one at a time");
        c.finish_lookup(
            "new",
            LookupResult::Found(Arc::new(agent(7, "new", None, "n"))),
        );
        assert!(!c.in_flight("new"));
        assert_eq!(c.find("new").map(|a| a.id), Some(7));
        assert!(!c.begin_lookup("new", t0 + Duration::from_secs(4)));
        assert!(matches!(
            c.recent("new", t0 + Duration::from_secs(4)),
            Some(LookupResult::Found(_))
        ));
        assert!(c.recent("new", t0 + LOOKUP_EVERY).is_none());
        assert!(c.begin_lookup("new", t0 + LOOKUP_EVERY));
        c.finish_lookup("new", LookupResult::Missing);
        assert!(
            c.find("new").is_none(),
            "a deleted account leaves the cache"
        );
        assert_eq!(c.lookups_started, 2);
    }

    #[test]
    fn unknown_users_cannot_flood_the_database() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        // A scanner trying many names at once: at most MAX_IN_FLIGHT queries outstanding.
        let mut started = 0;
        for i in 0..100 {
            if c.begin_lookup(&format!("guess{i}"), t0) {
                started += 1;
            }
        }
        assert_eq!(started, MAX_IN_FLIGHT);
        for i in 0..MAX_IN_FLIGHT {
            c.finish_lookup(&format!("guess{i}"), LookupResult::Missing);
        }
        // Each answered at once: the burst then the rate bound the queries per second.
        let mut t = t0;
        let mut per_sec = Vec::new();
        let mut n = 100;
        for _sec in 0..3 {
            let mut this = 0;
            for _ in 0..100 {
                let user = format!("guess{n}");
                n += 1;
                if c.begin_lookup(&user, t) {
                    this += 1;
                    c.finish_lookup(&user, LookupResult::Missing);
                }
                t += Duration::from_millis(10);
            }
            per_sec.push(this);
        }
        // First second: what is left of the burst plus the refill; later ones: the rate.
        assert!(
            per_sec[0] <= (LOOKUP_BURST + LOOKUPS_PER_SEC) as usize,
            "{per_sec:?}"
        );
        for n in &per_sec[1..] {
            assert!(
                *n <= LOOKUPS_PER_SEC as usize + 1 && *n >= LOOKUPS_PER_SEC as usize - 1,
                "{per_sec:?}"
            );
        }
        // The same unknown name over and over: one query per interval.
        let mut c = Credentials::default();
        let mut q = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 20); // 20 s
            if c.begin_lookup("root", now) {
                q += 1;
                c.finish_lookup("root", LookupResult::Missing);
            }
        }
        assert_eq!(q, 4, "20 s at one look-up per {LOOKUP_EVERY:?}");
    }

    #[test]
    fn failed_lookups_are_remembered_and_change_nothing() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        c.replace(vec![agent(1, "alice", None, "a")], t0);
        assert!(c.begin_lookup("alice", t0));
        c.finish_lookup("alice", LookupResult::Failed);
        assert_eq!(
            c.find("alice").map(|a| a.id),
            Some(1),
            "kept through an outage"
        );
        assert_eq!(c.recent("alice", t0), Some(&LookupResult::Failed));
    }

    #[test]
    fn a_lookup_newer_than_the_snapshot_survives_it() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        c.replace(vec![agent(1, "alice", None, "old")], t0);
        // A reload starts, then a look-up (the password was just changed) starts and ends
        // first; the reload's older read arrives afterwards.
        let reload_read_at = t0 + Duration::from_secs(5);
        let lookup_at = reload_read_at + Duration::from_millis(10);
        assert!(c.begin_lookup("alice", lookup_at));
        c.finish_lookup(
            "alice",
            LookupResult::Found(Arc::new(agent(1, "alice", None, "new"))),
        );
        c.finish_lookup("bob", LookupResult::Missing); // never begun: ignored
        c.replace(vec![agent(1, "alice", None, "old")], reload_read_at);
        assert_eq!(
            c.find("alice").map(|a| a.ha1_md5.clone()),
            Some("new".into())
        );
        // A snapshot older than the one in force is ignored altogether.
        c.replace(vec![], t0);
        assert!(c.find("alice").is_some());
        // The next one, read after the look-up, is the truth again.
        c.replace(
            vec![agent(1, "alice", None, "newer")],
            lookup_at + Duration::from_secs(5),
        );
        assert_eq!(
            c.find("alice").map(|a| a.ha1_md5.clone()),
            Some("newer".into())
        );
    }

    #[test]
    fn lookup_memory_is_swept() {
        let t0 = Instant::now();
        let mut c = Credentials::default();
        assert!(c.begin_lookup("a", t0));
        c.finish_lookup("a", LookupResult::Missing);
        assert!(c.begin_lookup("b", t0));
        c.sweep(t0 + LOOKUP_EVERY);
        assert!(c.recent("a", t0).is_none());
        assert!(c.in_flight("b"), "an outstanding look-up is kept");
    }
}
