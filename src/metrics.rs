//! Prometheus metrics (`GET /metrics`): the process's counters and the gauges computed when
//! a scrape asks for them.
//!
//! Built on the `metrics` facade and `metrics-exporter-prometheus` (docs/operations.md
//! "Metrics" says why this pair: it writes the Prometheus text format 0.0.4 that
//! `promtool check metrics` and every scraper read, with `_total` counters typed as such).
//! The recorder is ours, not installed as the global `metrics` recorder, so nothing else in
//! the process can write into it by accident; it is one per process like the counters it
//! holds (the media, transport and store layers reach it through [`global`] without being
//! handed a context).
//!
//! Hot paths never look a label set up: RTP is counted in each media session's own
//! counters and flushed here once a second and when the session ends
//! ([`RtpFlush`]), through counter handles resolved once at start; SIP requests by method use
//! a pre-resolved handle per method. The browser-leg relay delay
//! (`switchboard_webrtc_relay_delay_seconds`) is counted per leg in plain integers
//! ([`RelayDelays`]) and added once a second to a fixed-bucket histogram of atomics
//! ([`RelayHistogram`]) that the scrape renders itself. Gauges (calls active, queues,
//! agents, campaigns) are set at scrape time from the live services, so a stale value
//! cannot linger in a handle.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use ::metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use ::metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use ::metrics_util::MetricKindMask;

static METADATA: Metadata<'static> = Metadata::new("switchboard", Level::INFO, None);

/// Buckets of `switchboard_call_setup_seconds`: INVITE to answer, from a fast IVR pick-up to a
/// customer who lets it ring.
const SETUP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0];

/// How often a live media session adds its packet counts here.
pub const RTP_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Upper bounds of `switchboard_webrtc_relay_delay_seconds` (nanoseconds, and as the `le`
/// label): fine below the 5 ms target, coarse up to a second, which is already a lost
/// frame. 19 bounds plus `+Inf`.
const RELAY_BOUNDS: [(u64, &str); 19] = [
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_000_000, "0.002"),
    (3_000_000, "0.003"),
    (5_000_000, "0.005"),
    (7_500_000, "0.0075"),
    (10_000_000, "0.01"),
    (15_000_000, "0.015"),
    (20_000_000, "0.02"),
    (30_000_000, "0.03"),
    (40_000_000, "0.04"),
    (50_000_000, "0.05"),
    (75_000_000, "0.075"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
];
/// Buckets of a relay-delay histogram: one per bound, then `+Inf`.
const RELAY_BUCKETS: usize = RELAY_BOUNDS.len() + 1;
const RELAY_METRIC: &str = "switchboard_webrtc_relay_delay_seconds";

/// Which way a browser call's audio was relayed (`direction` label of
/// `switchboard_webrtc_relay_delay_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDirection {
    /// The browser's audio: kernel arrival on the browser leg's UDP socket to the RTP
    /// packet handed to the caller's socket.
    BrowserToCaller,
    /// The caller's audio: kernel arrival on the browser leg's loopback socket (the caller's
    /// relay sent it there) to the SRTP packet handed to the browser leg's socket.
    CallerToBrowser,
}

impl RelayDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDirection::BrowserToCaller => "browser_to_caller",
            RelayDirection::CallerToBrowser => "caller_to_browser",
        }
    }
}

/// The bucket of a delay of `ns` nanoseconds: the first bound at or above it (Prometheus
/// `le`), or `+Inf` (the last). A binary search over 19 constants.
#[inline]
fn relay_bucket(ns: u64) -> usize {
    RELAY_BOUNDS.partition_point(|(bound, _)| *bound < ns)
}

/// The process-wide relay-delay histogram of one direction: a fixed array of atomic
/// counters, written only by [`RelayDelays::flush`] (once a second per live leg) and read by
/// the scrape. No lock, nothing allocated after start.
#[derive(Debug)]
pub struct RelayHistogram {
    buckets: [AtomicU64; RELAY_BUCKETS],
    sum_ns: AtomicU64,
}

impl RelayHistogram {
    fn new() -> RelayHistogram {
        RelayHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn add(&self, counts: &[u32; RELAY_BUCKETS], sum_ns: u64) {
        for (b, n) in self.buckets.iter().zip(counts) {
            if *n > 0 {
                b.fetch_add(u64::from(*n), Ordering::Relaxed);
            }
        }
        self.sum_ns.fetch_add(sum_ns, Ordering::Relaxed);
    }

    /// The Prometheus text lines of this direction (cumulative buckets, `_sum`, `_count`).
    /// `_count` is the `+Inf` bucket of the same read, so the two always agree even while
    /// a flush runs concurrently (the sum may then be a flush ahead or behind: harmless).
    fn render(&self, direction: &str, out: &mut String) {
        let mut cumulative = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = RELAY_BOUNDS.get(i).map_or("+Inf", |(_, le)| *le);
            let _ = writeln!(
                out,
                "{RELAY_METRIC}_bucket{{direction=\"{direction}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{RELAY_METRIC}_sum{{direction=\"{direction}\"}} {sum}");
        let _ = writeln!(
            out,
            "{RELAY_METRIC}_count{{direction=\"{direction}\"}} {cumulative}"
        );
    }
}

/// One browser leg's relay delays in one direction since its last flush: plain integers in
/// the leg's own task (the browser-leg task owns both directions' counters), so a relayed
/// packet costs a bucket search and two additions — no allocation, no lock, no atomic.
/// Added to the process's [`RelayHistogram`] once a second (checked when a packet is
/// recorded) and when the leg ends (`Drop`).
#[derive(Debug)]
pub struct RelayDelays {
    direction: RelayDirection,
    counts: [u32; RELAY_BUCKETS],
    sum_ns: u64,
    pending: bool,
    next: Instant,
}

impl RelayDelays {
    pub fn new(direction: RelayDirection, now: Instant) -> RelayDelays {
        RelayDelays {
            direction,
            counts: [0; RELAY_BUCKETS],
            sum_ns: 0,
            pending: false,
            next: now + RTP_FLUSH_EVERY,
        }
    }

    /// One packet relayed: it arrived at `arrived` and was handed to the outgoing socket at
    /// `sent` (a clock that went backwards counts as zero).
    #[inline]
    pub fn record(&mut self, arrived: Instant, sent: Instant) {
        let ns =
            u64::try_from(sent.saturating_duration_since(arrived).as_nanos()).unwrap_or(u64::MAX);
        let i = relay_bucket(ns);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.pending = true;
        if sent >= self.next {
            self.next = sent + RTP_FLUSH_EVERY;
            self.flush();
        }
    }

    /// Add what was counted since the last flush to the process's histogram.
    pub fn flush(&mut self) {
        if !self.pending {
            return;
        }
        global()
            .relay_delay(self.direction)
            .add(&self.counts, self.sum_ns);
        self.counts = [0; RELAY_BUCKETS];
        self.sum_ns = 0;
        self.pending = false;
    }
}

impl Drop for RelayDelays {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Call direction, as in `call_records.direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    fn parse(s: &str) -> Direction {
        if s == "outbound" {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the SIP source guard dropped a request (`switchboard_security_drops_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Banned,
    Scanner,
    Flood,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Banned => "banned",
            DropReason::Scanner => "scanner",
            DropReason::Flood => "flood",
        }
    }
}

/// Methods with a pre-resolved request counter (anything else counts as `other`).
const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// A call between its record's start and end, for the setup histogram and the totals.
#[derive(Debug)]
struct LiveCall {
    direction: Direction,
    started: Instant,
}

/// A call record open longer than this is taken to have lost its `CallEnded` (a task that
/// died without ending its record): it leaves the map and the active gauge.
const STALE_CALL: Duration = Duration::from_secs(12 * 3600);
/// The map is swept when it reaches this size, then at twice the size that survived.
const SWEEP_AT_LEAST: usize = 1024;

/// The open calls by record id, swept of stale entries as it grows (amortised O(1)).
#[derive(Default)]
struct LiveCalls {
    map: HashMap<String, LiveCall>,
    sweep_at: usize,
}

impl LiveCalls {
    /// Insert, first sweeping when the map has grown to `sweep_at`; returns how many stale
    /// calls of each direction were dropped (for the active gauges).
    fn insert(&mut self, id: String, call: LiveCall, now: Instant) -> [i64; 2] {
        let mut dropped = [0i64; 2];
        if self.map.len() >= self.sweep_at.max(SWEEP_AT_LEAST) {
            self.map.retain(|_, c| {
                let keep = now.saturating_duration_since(c.started) < STALE_CALL;
                if !keep {
                    dropped[c.direction.index()] += 1;
                }
                keep
            });
            self.sweep_at = (self.map.len() * 2).max(SWEEP_AT_LEAST);
        }
        self.map.insert(id, call);
        dropped
    }
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    rtp_sent: Counter,
    rtp_received: Counter,
    rtp_late: Counter,
    requests: Vec<Counter>,
    drops: [Counter; 3],
    setup: Histogram,
    /// `switchboard_webrtc_relay_delay_seconds`, by [`RelayDirection`] (rendered by us: the
    /// exporter's histograms keep every sample until the scrape, which is an allocation on
    /// the packet path).
    relay: [RelayHistogram; 2],
    active: [AtomicI64; 2],
    /// Calls by record id; touched once per call event, never per packet.
    calls: Mutex<LiveCalls>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect()
}

impl Metrics {
    fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            // Scrape-time gauges of a queue or campaign that no longer exists drop out.
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(300)));
        // The bucket list is a non-empty constant: this cannot fail, and if it did the
        // setup time would be a summary rather than no metrics at all.
        let builder = builder
            .set_buckets_for_metric(
                Matcher::Full("switchboard_call_setup_seconds".into()),
                SETUP_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let counter = |name: &'static str, pairs: &[(&'static str, &str)]| {
            recorder.register_counter(&Key::from_parts(name, labels(pairs)), &METADATA)
        };
        let rtp = "switchboard_rtp_packets_total";
        let m = Metrics {
            rtp_sent: counter(rtp, &[("direction", "sent")]),
            rtp_received: counter(rtp, &[("direction", "received")]),
            rtp_late: counter("switchboard_rtp_late_packets_total", &[]),
            requests: METHODS
                .iter()
                .map(|m| counter("switchboard_sip_requests_total", &[("method", m)]))
                .collect(),
            drops: [DropReason::Banned, DropReason::Scanner, DropReason::Flood].map(|r| {
                counter(
                    "switchboard_security_drops_total",
                    &[("reason", r.as_str())],
                )
            }),
            setup: recorder.register_histogram(
                &Key::from_static_name("switchboard_call_setup_seconds"),
                &METADATA,
            ),
            relay: [RelayHistogram::new(), RelayHistogram::new()],
            active: [AtomicI64::new(0), AtomicI64::new(0)],
            calls: Mutex::new(LiveCalls::default()),
            recorder,
            handle,
        };
        // Present from the first scrape (a counter that appears later breaks rate() joins).
        for d in [Direction::Inbound, Direction::Outbound] {
            m.set_gauge(
                "switchboard_calls_active",
                &[("direction", d.as_str())],
                0.0,
            );
        }
        m.counter("switchboard_store_spooled_total", &[])
            .absolute(0);
        m
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels(pairs)), &METADATA)
    }

    /// Set a gauge (scrape time only: a lookup and an allocation for its labels).
    pub fn set_gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels(pairs)), &METADATA)
            .set(v);
    }

    /// A SIP request the router received. Takes the method's name (`sip::message::Method`
    /// is `AsRef<str>`) so metrics, a leaf module, does not depend on `sip`.
    pub fn sip_request<M: AsRef<str> + ?Sized>(&self, method: &M) {
        let name = method.as_ref();
        let i = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|m| *m == name)
            .unwrap_or(METHODS.len() - 1);
        if let Some(c) = self.requests.get(i) {
            c.increment(1);
        }
    }

    /// Bytes about to be sent on a SIP flow: counted when they are a response. Reads the
    /// status line's three digits only (`SIP/2.0 NNN`).
    pub fn sip_sent(&self, bytes: &[u8]) {
        let Some(rest) = bytes.strip_prefix(b"SIP/2.0 ") else {
            return;
        };
        let Some(code) = rest.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit)) else {
            return;
        };
        let code = std::str::from_utf8(code).unwrap_or("000");
        self.counter("switchboard_sip_responses_total", &[("code", code)])
            .increment(1);
    }

    pub fn security_drop(&self, reason: DropReason) {
        self.drops[reason as usize].increment(1);
    }

    /// A call record started (`StoreOp::CallStarted`).
    pub fn call_started(&self, id: &str, direction: &str) {
        let direction = Direction::parse(direction);
        self.active[direction.index()].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let dropped = match self.calls.lock() {
            Ok(mut calls) => calls.insert(
                id.to_string(),
                LiveCall {
                    direction,
                    started: now,
                },
                now,
            ),
            Err(_) => [0, 0],
        };
        for (gauge, n) in self.active.iter().zip(dropped) {
            if n > 0 {
                gauge.fetch_sub(n, Ordering::Relaxed);
            }
        }
    }

    /// A call answered (`StoreOp::CallAnswered`): its setup time into the histogram.
    pub fn call_answered(&self, id: &str) {
        let started = self
            .calls
            .lock()
            .ok()
            .and_then(|c| c.map.get(id).map(|l| l.started));
        if let Some(s) = started {
            self.setup.record(s.elapsed().as_secs_f64());
        }
    }

    /// A call ended (`StoreOp::CallEnded`). A call whose start was never recorded (an
    /// outbound attempt that failed before it was sent) counts as outbound, not active.
    pub fn call_ended(&self, id: &str, disposition: &str) {
        let live = self.calls.lock().ok().and_then(|mut c| c.map.remove(id));
        let direction = match live {
            Some(l) => {
                self.active[l.direction.index()].fetch_sub(1, Ordering::Relaxed);
                l.direction
            }
            None => Direction::Outbound,
        };
        self.counter(
            "switchboard_calls_total",
            &[
                ("direction", direction.as_str()),
                ("disposition", disposition),
            ],
        )
        .increment(1);
    }

    /// Add a media session's packets since its last flush.
    pub fn rtp(&self, sent: u64, received: u64, late: u64) {
        if sent > 0 {
            self.rtp_sent.increment(sent);
        }
        if received > 0 {
            self.rtp_received.increment(received);
        }
        if late > 0 {
            self.rtp_late.increment(late);
        }
    }

    /// The process's relay-delay histogram of one direction.
    pub fn relay_delay(&self, d: RelayDirection) -> &RelayHistogram {
        match d {
            RelayDirection::BrowserToCaller => &self.relay[0],
            RelayDirection::CallerToBrowser => &self.relay[1],
        }
    }

    /// Calls whose record is open, by direction.
    pub fn calls_active(&self, d: Direction) -> i64 {
        self.active[d.index()].load(Ordering::Relaxed).max(0)
    }

    /// Set the scrape-time values that come from the process itself and render everything.
    pub fn render(&self, spooled: u64) -> String {
        for d in [Direction::Inbound, Direction::Outbound] {
            self.set_gauge(
                "switchboard_calls_active",
                &[("direction", d.as_str())],
                self.calls_active(d) as f64,
            );
        }
        self.counter("switchboard_store_spooled_total", &[])
            .absolute(spooled);
        let mut text = self.handle.render();
        // Our own histogram family after the exporter's (a family's lines stay together,
        // as the text format wants); present with zero counts from the first scrape.
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = writeln!(
            text,
            "# HELP {RELAY_METRIC} Browser calls: time from a packet's arrival at the server to \
             the relayed packet's send, by direction."
        );
        let _ = writeln!(text, "# TYPE {RELAY_METRIC} histogram");
        for d in [
            RelayDirection::BrowserToCaller,
            RelayDirection::CallerToBrowser,
        ] {
            self.relay_delay(d).render(d.as_str(), &mut text);
        }
        text
    }
}

fn describe(r: &PrometheusRecorder) {
    let d = |name: &'static str, help: &'static str, kind: u8| {
        let (k, h) = (name.into(), help.into());
        match kind {
            0 => r.describe_counter(k, None, h),
            1 => r.describe_gauge(k, None, h),
            _ => r.describe_histogram(k, None, h),
        }
    };
    d(
        "switchboard_calls_active",
        "Calls with an open call record, by direction.",
        1,
    );
    d(
        "switchboard_calls_total",
        "Calls ended, by direction and disposition.",
        0,
    );
    d(
        "switchboard_call_setup_seconds",
        "Time from a call's start (INVITE received or sent) to its answer.",
        2,
    );
    d(
        "switchboard_sip_requests_total",
        "SIP requests received, by method.",
        0,
    );
    d(
        "switchboard_sip_responses_total",
        "SIP responses sent, by status code.",
        0,
    );
    d(
        "switchboard_rtp_packets_total",
        "RTP packets sent and received by the calls' media sessions.",
        0,
    );
    d(
        "switchboard_rtp_late_packets_total",
        "RTP packets that arrived after the jitter buffer gave up on them.",
        0,
    );
    d(
        "switchboard_queue_waiting",
        "Callers waiting in a queue.",
        1,
    );
    d(
        "switchboard_queue_longest_wait_seconds",
        "Wait of the longest-waiting caller in a queue.",
        1,
    );
    d(
        "switchboard_agents",
        "Agents known to the ACD, by state.",
        1,
    );
    d(
        "switchboard_acd_leader",
        "1 while this node's ACD core serves the queues (alone, or as the cluster's leader), 0 while it follows another node.",
        1,
    );
    d(
        "switchboard_campaign_contacts",
        "Campaign contacts, by campaign and state.",
        1,
    );
    d(
        "switchboard_store_spooled_total",
        "Record-store ops written to the spool file while the database was unreachable.",
        0,
    );
    d(
        "switchboard_security_drops_total",
        "Out-of-dialog SIP requests the source guard dropped, by reason.",
        0,
    );
}

/// A media session's packet counts as last added to [`global`]: the session counts in its
/// own fields per packet and adds the difference here once a second and when it ends.
#[derive(Debug)]
pub struct RtpFlush {
    sent: u64,
    received: u64,
    late: u64,
    next: Instant,
}

impl RtpFlush {
    pub fn new(now: Instant) -> RtpFlush {
        RtpFlush {
            sent: 0,
            received: 0,
            late: 0,
            next: now + RTP_FLUSH_EVERY,
        }
    }

    /// Flush when a second has passed (one comparison per tick otherwise).
    #[inline]
    pub fn maybe(&mut self, now: Instant, sent: u64, received: u64, late: u64) {
        if now >= self.next {
            self.next = now + RTP_FLUSH_EVERY;
            self.flush(sent, received, late);
        }
    }

    pub fn flush(&mut self, sent: u64, received: u64, late: u64) {
        global().rtp(
            sent.saturating_sub(self.sent),
            received.saturating_sub(self.received),
            late.saturating_sub(self.late),
        );
        (self.sent, self.received, self.late) = (sent, received, late);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn calls_that_never_end_are_swept_as_the_map_grows() {
        use super::*;
        let mut live = LiveCalls::default();
        let t0 = Instant::now();
        let call = |started| LiveCall {
            direction: Direction::Inbound,
            started,
        };
        for i in 0..SWEEP_AT_LEAST {
            assert_eq!(live.insert(format!("old{i}"), call(t0), t0), [0, 0]);
        }
        // Half a day later the next start sweeps every call that never ended.
        let later = t0 + STALE_CALL + Duration::from_secs(1);
        let dropped = live.insert("new".into(), call(later), later);
        assert_eq!(dropped[Direction::Inbound.index()], SWEEP_AT_LEAST as i64);
        assert_eq!(live.map.len(), 1);
        // Young calls survive a sweep, and the next one waits for the map to double.
        let mut live = LiveCalls::default();
        for i in 0..=SWEEP_AT_LEAST {
            live.insert(format!("c{i}"), call(t0), t0);
        }
        assert_eq!(live.map.len(), SWEEP_AT_LEAST + 1);
        assert_eq!(live.sweep_at, SWEEP_AT_LEAST * 2);
    }

    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    /// A delay falls in the first bucket whose bound is at or above it (Prometheus `le`);
    /// beyond the last bound, `+Inf`.
    #[test]
    fn relay_delay_bucket_bounds() {
        assert!(
            RELAY_BOUNDS.windows(2).all(|w| w[0].0 < w[1].0),
            "ascending"
        );
        for (ns, le) in RELAY_BOUNDS {
            let f: f64 = le.parse().expect("le is a number");
            assert_eq!((f * 1e9).round() as u64, ns, "label {le} matches its bound");
        }
        assert_eq!(relay_bucket(0), 0);
        assert_eq!(relay_bucket(100_000), 0, "le is inclusive");
        assert_eq!(relay_bucket(100_001), 1);
        assert_eq!(relay_bucket(4_999_999), 6);
        assert_eq!(relay_bucket(5_000_000), 6, "the 5 ms target is a bound");
        assert_eq!(RELAY_BOUNDS[6].1, "0.005");
        assert_eq!(relay_bucket(5_000_001), 7);
        assert_eq!(relay_bucket(1_000_000_000), RELAY_BOUNDS.len() - 1);
        assert_eq!(relay_bucket(1_000_000_001), RELAY_BOUNDS.len(), "+Inf");
        assert_eq!(relay_bucket(u64::MAX), RELAY_BOUNDS.len());
    }

    /// A leg's delays reach the scrape once a second and when the leg ends, as cumulative
    /// buckets with `_count` equal to the `+Inf` bucket.
    #[test]
    fn relay_delays_flush_once_a_second_and_on_drop() {
        let m = global();
        let series = |text: &str, s: &str| {
            value(text, &format!("switchboard_webrtc_relay_delay_seconds_{s}")).unwrap_or(-1.0)
        };
        // (Each literal's braces balance: src/layers.rs finds the end of this module by them.)
        let count = "count{direction=\"browser_to_caller\"}";
        let le = |l: &str| format!("bucket{{direction=\"browser_to_caller\",le=\"{l}\"}}");
        let before = m.render(0);
        assert!(before.contains("# TYPE switchboard_webrtc_relay_delay_seconds histogram"));
        assert!(before.contains(
            "switchboard_webrtc_relay_delay_seconds_count{direction=\"caller_to_browser\"}"
        ));
        let base = |l: &str| series(&before, &le(l));
        let base_count = series(&before, count);
        assert!(base_count >= 0.0, "{before}");
        assert_eq!(series(&before, &le("+Inf")), base_count);

        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = RelayDelays::new(RelayDirection::BrowserToCaller, t0);
        d.record(t0, t0 + Duration::from_micros(400));
        d.record(t0 + ms(10), t0 + ms(13));
        // A clock that went backwards is a zero delay, not a panic.
        d.record(t0 + ms(30), t0 + ms(20));
        let text = m.render(0);
        assert_eq!(
            series(&text, count),
            base_count,
            "not flushed within the second"
        );
        // The first packet a second on flushes everything so far.
        d.record(t0 + ms(960), t0 + ms(1000));
        let text = m.render(0);
        assert_eq!(series(&text, count), base_count + 4.0, "{text}");
        assert_eq!(series(&text, &le("0.0001")), base("0.0001") + 1.0);
        assert_eq!(series(&text, &le("0.0005")), base("0.0005") + 2.0);
        assert_eq!(series(&text, &le("0.003")), base("0.003") + 3.0);
        assert_eq!(series(&text, &le("0.04")), base("0.04") + 4.0);
        assert_eq!(series(&text, &le("+Inf")), base_count + 4.0);
        // What is left is added when the leg's counters go away.
        d.record(t0 + ms(1000), t0 + ms(1000) + Duration::from_secs(2));
        drop(d);
        let text = m.render(0);
        assert_eq!(series(&text, count), base_count + 5.0, "{text}");
        assert_eq!(
            series(&text, &le("1")),
            base("1") + 4.0,
            "2 s is past the last bound"
        );
    }

    #[test]
    fn calls_rtp_and_sip_show_in_the_text() {
        let m = global();
        let before = m.render(0);
        let base =
            value(&before, "switchboard_rtp_packets_total{direction=\"sent\"}").unwrap_or(0.0);
        m.call_started("unit-1", "inbound");
        m.call_answered("unit-1");
        let mut f = RtpFlush::new(Instant::now());
        f.flush(10, 7, 1);
        f.flush(15, 7, 1);
        m.sip_request(&crate::sip::message::Method::Invite);
        m.sip_sent(b"SIP/2.0 486 Busy Here\r\n");
        m.sip_sent(b"INVITE sip:x SIP/2.0\r\n");
        let during = m.render(3);
        assert!(
            value(&during, "switchboard_calls_active{direction=\"inbound\"}").unwrap_or(0.0) >= 1.0
        );
        m.call_ended("unit-1", "completed");
        let text = m.render(3);
        assert_eq!(
            value(&text, "switchboard_rtp_packets_total{direction=\"sent\"}"),
            Some(base + 15.0)
        );
        assert!(text.contains("switchboard_sip_responses_total{code=\"486\"}"));
        assert!(text.contains("switchboard_sip_requests_total{method=\"INVITE\"}"));
        assert!(text
            .contains("switchboard_calls_total{direction=\"inbound\",disposition=\"completed\"}"));
        assert!(text.contains("# TYPE switchboard_call_setup_seconds histogram"));
        assert!(text.contains("switchboard_call_setup_seconds_bucket{le=\"0.05\"}"));
        assert_eq!(value(&text, "switchboard_store_spooled_total"), Some(3.0));
    }
}
