//! Per-source admission for requests that arrive outside any dialog (new INVITEs, OPTIONS,
//! SUBSCRIBE, stray BYEs …): the router asks before it answers or creates a call.
//!
//! Three rules, all of them cheap and bounded:
//! - **Scanner user agents** (SIPVicious' `friendly-scanner`, `sipcli`, `VaxSIPUserAgent`, …)
//!   are never answered: an answer tells a scanner that a SIP server lives here, and which
//!   users exist. The source is banned, unless it is trusted.
//! - **Floods**: more than `request_limit` requests within `window` from one address bans it
//!   for `ban` (the same window-counter design as the registrar's REGISTER limit).
//! - **Bans**: a banned source is dropped silently until the ban ends.
//!
//! Trusted sources (`[security] trusted_cidrs`, default the host itself, plus every
//! configured trunk's `inbound_cidrs`) are never banned: a carrier's burst must not take
//! the hotline down, and a load generator on the same box must be able to measure it —
//! the same default as fail2ban's `ignoreip = 127.0.0.1/8 ::1`. Scanner requests from a
//! trusted source are still dropped.
//!
//! Sans-IO: time is an argument; the caller logs the returned [`Verdict`] as a security event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::net::Cidr;

/// User-Agent substrings (lower case) of known SIP scanners and war-dialers.
pub const DEFAULT_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "vaxsipuseragent",
    "iwar",
    "sundayddr",
    "pplsip",
    "smap",
    "sipptk",
    "voip-scanner",
    "sipsak-scan",
];

/// Beyond this many tracked sources the guard forgets the quiet ones first, so a spoofed
/// flood from millions of addresses costs bounded memory.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub trusted: Vec<Cidr>,
    pub scanners: Vec<String>,
    pub request_limit: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            trusted: ["127.0.0.1/32", "::1/128"]
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
            scanners: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
            request_limit: 200,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(300),
        }
    }
}

/// What the router does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it normally.
    Admit,
    /// Drop without an answer; the source is (still) banned. Not logged again.
    Banned,
    /// Drop without an answer: a scanner. `banned` says whether this started a ban.
    Scanner { banned: bool },
    /// Drop without an answer: this request pushed the source over its limit; banned now.
    Flood,
}

#[derive(Debug, Default, Clone, Copy)]
struct Source {
    window_start: Option<Instant>,
    requests: u32,
    banned_until: Option<Instant>,
}

#[derive(Debug)]
pub struct SourceGuard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    /// Counters for the status API and the logs.
    pub dropped: u64,
    pub bans: u64,
}

impl SourceGuard {
    pub fn new(cfg: GuardConfig) -> SourceGuard {
        SourceGuard {
            cfg,
            sources: HashMap::new(),
            dropped: 0,
            bans: 0,
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|c| c.contains(ip))
    }

    pub fn is_scanner(&self, user_agent: &str) -> bool {
        if user_agent.is_empty() {
            return false;
        }
        let ua = user_agent.to_ascii_lowercase();
        self.cfg.scanners.iter().any(|s| ua.contains(s.as_str()))
    }

    /// Whether `ip` is banned at `now` (for callers that only need to know, e.g. in-dialog
    /// traffic is never refused by the guard).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Decide about one out-of-dialog request from `ip` whose User-Agent (or Server) header is
    /// `user_agent` ("" when absent).
    pub fn check(&mut self, ip: IpAddr, user_agent: &str, now: Instant) -> Verdict {
        let trusted = self.is_trusted(ip);
        if self.is_scanner(user_agent) {
            self.dropped += 1;
            if trusted {
                return Verdict::Scanner { banned: false };
            }
            let already = self.is_banned(ip, now);
            let ban = self.cfg.ban;
            self.entry(ip, now).banned_until = Some(now + ban);
            if !already {
                self.bans += 1;
            }
            return Verdict::Scanner { banned: !already };
        }
        if trusted {
            return Verdict::Admit;
        }
        let (limit, window, ban) = (self.cfg.request_limit, self.cfg.window, self.cfg.ban);
        let s = self.entry(ip, now);
        if s.banned_until.is_some_and(|t| t > now) {
            self.dropped += 1;
            return Verdict::Banned;
        }
        if s.window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= window)
        {
            s.window_start = Some(now);
            s.requests = 0;
        }
        s.requests += 1;
        if s.requests > limit {
            s.banned_until = Some(now + ban);
            self.dropped += 1;
            self.bans += 1;
            return Verdict::Flood;
        }
        Verdict::Admit
    }

    /// Forget windows and bans that are over (call now and then, e.g. once a second).
    pub fn expire(&mut self, now: Instant) {
        let window = self.cfg.window;
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| t > now)
                || s.window_start
                    .is_some_and(|t| now.saturating_duration_since(t) < window)
        });
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn entry(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if self.sources.len() >= MAX_TRACKED && !self.sources.contains_key(&ip) {
            // Keep the banned ones: forgetting a ban is what a spoofed flood would aim for.
            self.sources
                .retain(|_, s| s.banned_until.is_some_and(|t| t > now));
            if self.sources.len() >= MAX_TRACKED {
                // Every slot holds a live ban: drop the one that ends first.
                if let Some(k) = self
                    .sources
                    .iter()
                    .min_by_key(|(_, s)| s.banned_until)
                    .map(|(k, _)| *k)
                {
                    self.sources.remove(&k);
                }
            }
        }
        self.sources.entry(ip).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn guard(limit: u32) -> SourceGuard {
        SourceGuard::new(GuardConfig {
            request_limit: limit,
            ..GuardConfig::default()
        })
    }

    #[test]
    fn flood_bans_for_the_ban_time_then_admits_again() {
        let mut g = guard(5);
        let t0 = Instant::now();
        let a = ip("127.0.0.9");
        for i in 0..5 {
            assert_eq!(
                g.check(a, "", t0 + Duration::from_millis(i)),
                Verdict::Admit
            );
        }
        assert_eq!(
            g.check(a, "", t0 + Duration::from_millis(6)),
            Verdict::Flood
        );
        assert_eq!(g.check(a, "", t0 + Duration::from_secs(1)), Verdict::Banned);
        // Another source is unaffected.
        assert_eq!(g.check(ip("127.0.0.10"), "", t0), Verdict::Admit);
        let after = t0 + Duration::from_millis(6) + Duration::from_secs(300);
        assert_eq!(g.check(a, "", after), Verdict::Admit);
        assert_eq!(g.bans, 1);
    }

    #[test]
    fn the_window_resets_so_a_steady_slow_source_is_never_banned() {
        let mut g = guard(5);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..100u64 {
            // 4 requests per 10 s window.
            let t = t0 + Duration::from_millis(2_500 * i);
            assert_eq!(g.check(a, "", t), Verdict::Admit, "request {i}");
        }
    }

    #[test]
    fn scanners_are_dropped_and_banned_unless_trusted() {
        let mut g = guard(1000);
        let t0 = Instant::now();
        let a = ip("198.51.100.7");
        assert_eq!(
            g.check(a, "friendly-scanner", t0),
            Verdict::Scanner { banned: true }
        );
        assert_eq!(
            g.check(a, "SIPVicious 0.3", t0),
            Verdict::Scanner { banned: false }
        );
        // The ban also covers the same source without the tell-tale header.
        assert_eq!(g.check(a, "Linphone/5.0", t0), Verdict::Banned);
        let local = ip("127.0.0.1");
        assert_eq!(
            g.check(local, "VaxSIPUserAgent/3.1", t0),
            Verdict::Scanner { banned: false }
        );
        assert_eq!(g.check(local, "baresip v3", t0), Verdict::Admit);
        assert!(!g.is_scanner("Asterisk PBX 20"));
        assert!(!g.is_scanner(""));
    }

    #[test]
    fn trusted_sources_are_never_banned_for_volume() {
        let mut g = guard(3);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(g.check(ip("::1"), "", t0), Verdict::Admit);
        }
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn tracking_is_bounded_and_keeps_bans() {
        let mut g = guard(1);
        let t0 = Instant::now();
        let banned = ip("203.0.113.1");
        g.check(banned, "", t0);
        assert_eq!(g.check(banned, "", t0), Verdict::Flood);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.check(a, "", t0);
        }
        assert!(g.tracked() <= MAX_TRACKED);
        assert_eq!(g.check(banned, "", t0), Verdict::Banned);
        g.expire(t0 + Duration::from_secs(301));
        assert_eq!(g.tracked(), 0);
    }
}
