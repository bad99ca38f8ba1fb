//! Concurrent-IVR load tool (docs/benchmarks.md, "Concurrent IVR calls"; run by
//! `bench/ivr_load.sh`). Opens N calls to the server over UDP (INVITE with SDP PCMU +
//! telephone-event, ACK, BYE at the end), ramped at a set rate so SIP set-up is not what is
//! measured. Every call sends 20 ms PCMU packets and, every few seconds, one RFC 4733 key
//! (start, continuations, three end packets, same SSRC and sequence as the audio), and records
//! the server's RTP: inter-arrival times, gaps over 22 ms, packets lost by sequence number,
//! and the time from each key's first packet to the first packet of the next prompt (the
//! server sets the RTP marker bit on the first packet of each new prompt, RFC 3551 §4.1).
//!
//! Threads, not tasks, so the tool's own cost stays small and visible: one SIP thread (one
//! socket for every call's signalling), one sender that wakes once a millisecond and sends
//! for the calls whose 20 ms phase falls in that millisecond (calls are spread over 20
//! phases), and a few receivers each polling (mio/epoll) the RTP sockets of its share of
//! the calls — one socket per call, as a real phone has, so the server's symmetric-RTP
//! latching sees one peer per call. No allocation per packet: packets are built in a fixed
//! buffer, statistics go into fixed-size histograms.
//!
//! With `--server-pid`, it samples the server's RSS and CPU (/proc) before the first call
//! (idle) and over the steady window (all calls up, before the first BYE), and its own CPU.
//!
//!   cargo run --release --example ivr_load -- --server 127.0.0.1:35060 --calls 2000 --hold 60

#[path = "support/procfs.rs"]
mod procfs;

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard::media::codec::Codec;
use switchboard::media::rtp::{self, RtpPacket};
use switchboard::media::telephone_event::EventPayload;
use switchboard::sip::message::{Framing, HeaderName, Message, Method, StartLine};
use switchboard::sip::sdp::{self, Direction, SessionDescription};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The server's SIP address (UDP).
    #[arg(long, default_value = "127.0.0.1:35060")]
    server: SocketAddr,
    /// Request-URI user: the route to the IVR dialplan.
    #[arg(long, default_value = "ivrbench")]
    user: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// New calls per second while ramping up (and BYEs per second at the end).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds every call stays up once all calls are up (the steady window).
    #[arg(long, default_value_t = 60.0)]
    hold: f64,
    /// A key every this many ms per call (the prompts are longer, so each key interrupts one).
    #[arg(long, default_value_t = 4000)]
    key_every_ms: u64,
    /// Receiver threads (each polls its share of the RTP sockets).
    #[arg(long, default_value_t = 2)]
    rx_threads: usize,
    /// Receivers wake on this tick (µs) and drain every ready socket, instead of blocking
    /// until a packet arrives: on one box a sender pays for waking a blocked receiver
    /// (loopback delivers in the sender's system call), so blocking receivers would bill the
    /// server a wake-up per packet that a phone on another machine never costs it. Arrival
    /// times are then late by up to one tick. 0: block (exact times, dearer for the server).
    #[arg(long, default_value_t = 500)]
    rx_tick_us: u64,
    /// The server's pid, to sample its RSS and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also print one line per call (arrivals, lost, max gap, keys).
    #[arg(long)]
    per_call: bool,
}

const LOCAL_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PT_PCMU: u8 = 0;
const PT_EVENT: u8 = 101;
/// 20 ms grid split in 1 ms phases: the sender wakes once per phase.
const PHASES: usize = 20;
/// The key: 5 frames of event (100 ms, start + 4 continuations), then 3 end packets.
const KEY_FRAMES: u8 = 5;
const KEY_END_REPEATS: u8 = 3;
/// A key with no new prompt within this long counts as missed.
const KEY_GIVE_UP_NS: u64 = 1_000_000_000;

const IDLE: u8 = 0;
const INVITING: u8 = 1;
const ACTIVE: u8 = 2;
const ENDING: u8 = 3;
const DONE: u8 = 4;
const FAILED: u8 = 5;

/// Histogram in 10 µs bins up to 2 s (more goes to the last bin): fixed size, no allocation
/// when recording.
struct Hist {
    bins: Vec<u64>,
    n: u64,
    max_ns: u64,
}

impl Hist {
    const BIN_NS: u64 = 10_000;
    const BINS: usize = 200_000;
    fn new() -> Hist {
        Hist {
            bins: vec![0; Self::BINS],
            n: 0,
            max_ns: 0,
        }
    }
    fn add(&mut self, ns: u64) {
        let i = ((ns / Self::BIN_NS) as usize).min(Self::BINS - 1);
        self.bins[i] += 1;
        self.n += 1;
        self.max_ns = self.max_ns.max(ns);
    }
    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            *a += b;
        }
        self.n += o.n;
        self.max_ns = self.max_ns.max(o.max_ns);
    }
    /// The value (ms, bin middle) at quantile q.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let target = ((self.n as f64 * q).ceil() as u64).clamp(1, self.n);
        let mut acc = 0;
        for (i, c) in self.bins.iter().enumerate() {
            acc += c;
            if acc >= target {
                return (i as f64 + 0.5) * Self::BIN_NS as f64 / 1e6;
            }
        }
        self.max_ns as f64 / 1e6
    }
    fn count_between_ms(&self, lo: f64, hi: f64) -> u64 {
        let lo = (lo * 1e6 / Self::BIN_NS as f64) as usize;
        let hi = ((hi * 1e6 / Self::BIN_NS as f64) as usize).min(Self::BINS);
        self.bins[lo.min(Self::BINS)..hi].iter().sum()
    }
    fn max_ms(&self) -> f64 {
        self.max_ns as f64 / 1e6
    }
}

/// What the threads share about one call.
struct Shared {
    state: AtomicU8,
    /// Server's RTP address from its SDP: IPv4 << 16 | port; 0 until answered.
    server_rtp: AtomicU64,
    /// When the last key's first packet was sent (ns since the tool's epoch); 0: none yet.
    key_sent_ns: AtomicU64,
}

struct Clock(Instant);
impl Clock {
    fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn at(&self, ns: u64) -> Instant {
        self.0 + Duration::from_nanos(ns)
    }
}

/// Cross-thread run state: set by the SIP thread, read by the others.
struct Run {
    clock: Clock,
    calls: Vec<Shared>,
    /// All calls up and none ending yet: arrivals count in the steady figures.
    steady: AtomicBool,
    steady_from_ns: AtomicU64,
    steady_to_ns: AtomicU64,
    stop: AtomicBool,
}

fn main() {
    let args = Args::parse();
    let n = args.calls;
    assert!(
        n > 0 && args.rx_threads > 0,
        "need calls and receiver threads"
    );
    let run = Arc::new(Run {
        clock: Clock(Instant::now()),
        calls: (0..n)
            .map(|_| Shared {
                state: AtomicU8::new(IDLE),
                server_rtp: AtomicU64::new(0),
                key_sent_ns: AtomicU64::new(0),
            })
            .collect(),
        steady: AtomicBool::new(false),
        steady_from_ns: AtomicU64::new(0),
        steady_to_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    // One RTP socket per call; the sender writes through a duplicate of it.
    let mut rx_socks: Vec<Vec<(usize, mio::net::UdpSocket)>> =
        (0..args.rx_threads).map(|_| Vec::new()).collect();
    let mut tx_socks = Vec::with_capacity(n);
    let mut rtp_ports = Vec::with_capacity(n);
    for i in 0..n {
        let s = UdpSocket::bind((LOCAL_IP, 0)).expect("bind an RTP socket (ulimit -n?)");
        s.set_nonblocking(true).expect("nonblocking");
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .expect("SO_TIMESTAMPNS");
        rtp_ports.push(s.local_addr().expect("local addr").port());
        tx_socks.push(s.try_clone().expect("dup RTP socket"));
        rx_socks[i % args.rx_threads].push((i, mio::net::UdpSocket::from_std(s)));
    }

    let idle = args.server_pid.map(|p| ProcSample::take(p, run.clock.ns()));
    let me = ProcSample::take(std::process::id(), run.clock.ns());
    let udp_errs0 = udp_rcvbuf_errors();

    let tick = Duration::from_micros(args.rx_tick_us);
    let receivers: Vec<_> = rx_socks
        .into_iter()
        .map(|socks| {
            let run = run.clone();
            std::thread::Builder::new()
                .name("rtp-rx".into())
                .spawn(move || receiver(&run, socks, tick))
                .expect("spawn receiver")
        })
        .collect();
    let sender = {
        let run = run.clone();
        let args = args.clone();
        std::thread::Builder::new()
            .name("rtp-tx".into())
            .spawn(move || sender(&run, &args, tx_socks))
            .expect("spawn sender")
    };
    let sip = {
        let run = run.clone();
        let args = args.clone();
        std::thread::Builder::new()
            .name("sip".into())
            .spawn(move || sip_thread(&run, &args, &rtp_ports))
            .expect("spawn sip")
    };

    // Sample the server at the start and end of the steady window.
    let mut at_steady_start: Option<(Option<ProcSample>, ProcSample)> = None;
    let mut at_steady_end: Option<(Option<ProcSample>, ProcSample)> = None;
    let mut peak_rss_kib = 0u64;
    while !run.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        let now = run.clock.ns();
        if let Some(p) = args.server_pid {
            peak_rss_kib = peak_rss_kib.max(ProcSample::take(p, now).rss_kib);
        }
        let sample = || {
            (
                args.server_pid.map(|p| ProcSample::take(p, now)),
                ProcSample::take(std::process::id(), now),
            )
        };
        if at_steady_start.is_none() && run.steady.load(Ordering::Acquire) {
            at_steady_start = Some(sample());
        }
        if at_steady_start.is_some()
            && at_steady_end.is_none()
            && run.steady_to_ns.load(Ordering::Acquire) != 0
        {
            at_steady_end = Some(sample());
        }
    }
    let sip_stats = sip.join().expect("sip thread");
    let tx_stats = sender.join().expect("sender thread");
    let mut rx = RxStats::new();
    let mut per_call = Vec::new();
    for r in receivers {
        let (s, calls) = r.join().expect("receiver thread");
        rx.merge(&s);
        per_call.extend(calls);
    }
    per_call.sort_by_key(|c| c.0);
    let me_end = ProcSample::take(std::process::id(), run.clock.ns());
    let udp_errs = udp_rcvbuf_errors().saturating_sub(udp_errs0);

    report(&ReportIn {
        args: &args,
        run: &run,
        sip: &sip_stats,
        tx: &tx_stats,
        rx: &rx,
        per_call: &per_call,
        idle: idle.as_ref(),
        steady: at_steady_start.as_ref().zip(at_steady_end.as_ref()),
        me: (&me, &me_end),
        peak_rss_kib,
        udp_errs,
    });
}

// ---- SIP ------------------------------------------------------------------------------------

#[derive(Default)]
struct SipCall {
    invite: Vec<u8>,
    sent_at_ns: u64,
    next_retx_ns: u64,
    retx_interval_ns: u64,
    to_value: String,
    target: String,
    /// `Route: …\r\n` from the 200's Record-Route set (empty when it has none): through a
    /// proxy that record-routes (Kamailio, bench/cluster.sh) the ACK and BYE go back via it.
    route: String,
    bye: Vec<u8>,
    bye_at_ns: u64,
}

#[derive(Default)]
struct SipStats {
    answered: usize,
    failed: usize,
    failed_codes: Vec<u16>,
    ended_by_server: usize,
    bye_unanswered: usize,
    invite_to_200: Vec<u64>,
    retransmissions: u64,
}

fn call_id(run_tag: u32, i: usize) -> String {
    format!("ivr-{run_tag}-{i}@ivrload")
}

fn index_of(run_tag: u32, call_id: &str) -> Option<usize> {
    let rest = call_id.strip_prefix(&format!("ivr-{run_tag}-"))?;
    rest.strip_suffix("@ivrload")?.parse().ok()
}

fn sip_thread(run: &Run, args: &Args, rtp_ports: &[u16]) -> SipStats {
    let n = args.calls;
    let sock = UdpSocket::bind((LOCAL_IP, 0)).expect("bind SIP socket");
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .expect("timeout");
    let local = sock.local_addr().expect("SIP local addr");
    let server = args.server;
    let run_tag = std::process::id();
    let mut calls: Vec<SipCall> = (0..n).map(|_| SipCall::default()).collect();
    let mut stats = SipStats::default();
    let spacing_ns = (1e9 / args.rate) as u64;
    let t0 = run.clock.ns() + 200_000_000;
    // Every call lasts the same: up for the whole ramp plus `hold`, so the BYEs come at the
    // ramp's rate too and the steady window is `hold` seconds long.
    let ramp_ns = spacing_ns * n as u64;
    let hold_ns = (args.hold * 1e9) as u64;
    let mut next_call = 0usize;
    let mut open = 0usize; // calls not yet DONE/FAILED
    let mut buf = [0u8; 65535];
    let mut last_scan = 0u64;
    let mut deadline_ns = u64::MAX;
    loop {
        let now = run.clock.ns();
        while next_call < n && now >= t0 + spacing_ns * next_call as u64 {
            let i = next_call;
            next_call += 1;
            open += 1;
            let body = sdp::render(
                IpAddr::V4(LOCAL_IP),
                rtp_ports[i],
                i as u64 + 1,
                1,
                &[(Codec::Pcmu, PT_PCMU)],
                &[(PT_EVENT, 8000)],
                Direction::SendRecv,
            );
            let c = &mut calls[i];
            c.to_value = format!("<sip:{}@{}>", args.user, server);
            c.invite = format!(
                "INVITE sip:{user}@{server} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-{run_tag}-{i}-i;rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:load{i}@{ip}>;tag=f{i}\r\n\
                 To: {to}\r\n\
                 Call-ID: {cid}\r\n\
                 CSeq: 1 INVITE\r\n\
                 Contact: <sip:load{i}@{local}>\r\n\
                 Content-Type: application/sdp\r\n\
                 Content-Length: {len}\r\n\r\n{body}",
                user = args.user,
                ip = LOCAL_IP,
                to = c.to_value,
                cid = call_id(run_tag, i),
                len = body.len(),
            )
            .into_bytes();
            let _ = sock.send_to(&c.invite, server);
            c.sent_at_ns = now;
            c.retx_interval_ns = 500_000_000;
            c.next_retx_ns = now + c.retx_interval_ns;
            c.bye_at_ns = t0 + spacing_ns * i as u64 + ramp_ns + hold_ns;
            run.calls[i].state.store(INVITING, Ordering::Release);
        }

        // Retransmissions, give-ups and BYEs: a scan every 5 ms is plenty.
        if now >= last_scan + 5_000_000 {
            last_scan = now;
            for (i, c) in calls.iter_mut().enumerate().take(next_call) {
                let sh = &run.calls[i];
                match sh.state.load(Ordering::Acquire) {
                    INVITING if now >= c.next_retx_ns => {
                        if now - c.sent_at_ns > 16_000_000_000 {
                            sh.state.store(FAILED, Ordering::Release);
                            stats.failed += 1;
                            open -= 1;
                        } else if !c.invite.is_empty() {
                            let _ = sock.send_to(&c.invite, server);
                            stats.retransmissions += 1;
                            c.retx_interval_ns = (c.retx_interval_ns * 2).min(4_000_000_000);
                            c.next_retx_ns = now + c.retx_interval_ns;
                        } else {
                            // A provisional answer stopped retransmissions; wait for the final.
                            c.next_retx_ns = now + 1_000_000_000;
                        }
                    }
                    ACTIVE if now >= c.bye_at_ns => {
                        if run.steady.swap(false, Ordering::AcqRel) {
                            run.steady_to_ns.store(now, Ordering::Release);
                        }
                        sh.state.store(ENDING, Ordering::Release);
                        c.bye = format!(
                            "BYE {target} SIP/2.0\r\n\
                             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{run_tag}-{i}-b;rport\r\n\
                             {route}Max-Forwards: 70\r\n\
                             From: <sip:load{i}@{ip}>;tag=f{i}\r\n\
                             To: {to}\r\n\
                             Call-ID: {cid}\r\n\
                             CSeq: 2 BYE\r\n\
                             Content-Length: 0\r\n\r\n",
                            target = c.target,
                            route = c.route,
                            ip = LOCAL_IP,
                            to = c.to_value,
                            cid = call_id(run_tag, i),
                        )
                        .into_bytes();
                        let _ = sock.send_to(&c.bye, server);
                        c.sent_at_ns = now;
                        c.retx_interval_ns = 500_000_000;
                        c.next_retx_ns = now + c.retx_interval_ns;
                    }
                    ENDING if now >= c.next_retx_ns => {
                        if now - c.sent_at_ns > 8_000_000_000 {
                            sh.state.store(DONE, Ordering::Release);
                            stats.bye_unanswered += 1;
                            open -= 1;
                        } else {
                            let _ = sock.send_to(&c.bye, server);
                            stats.retransmissions += 1;
                            c.retx_interval_ns = (c.retx_interval_ns * 2).min(4_000_000_000);
                            c.next_retx_ns = now + c.retx_interval_ns;
                        }
                    }
                    _ => {}
                }
            }
            let all_up = next_call == n
                && run_steady_ready(run)
                && run.steady_from_ns.load(Ordering::Acquire) == 0;
            if all_up {
                run.steady_from_ns.store(now, Ordering::Release);
                run.steady.store(true, Ordering::Release);
            }
            if next_call == n && open == 0 && deadline_ns == u64::MAX {
                // Give the receivers a moment for the last packets in flight.
                deadline_ns = now + 200_000_000;
            }
            if now >= deadline_ns {
                break;
            }
        }

        match sock.recv_from(&mut buf) {
            Ok((len, _from)) => {
                let Ok(msg) = Message::parse(&buf[..len], Framing::Datagram) else {
                    continue;
                };
                let Some(i) = msg.call_id().ok().and_then(|c| index_of(run_tag, c)) else {
                    continue;
                };
                if i >= n {
                    continue;
                }
                let mut ctx = SipCtx {
                    run,
                    args,
                    sock: &sock,
                    local,
                    stats: &mut stats,
                    open: &mut open,
                };
                on_sip(&mut ctx, &mut calls[i], i, &msg);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("SIP socket: {e}"),
        }
    }
    if run.steady_to_ns.load(Ordering::Acquire) == 0 {
        run.steady_to_ns.store(run.clock.ns(), Ordering::Release);
    }
    run.steady.store(false, Ordering::Release);
    run.stop.store(true, Ordering::Release);
    stats
}

/// Every call that did not fail is up.
fn run_steady_ready(run: &Run) -> bool {
    run.calls
        .iter()
        .all(|c| matches!(c.state.load(Ordering::Acquire), ACTIVE | FAILED))
        && run
            .calls
            .iter()
            .any(|c| c.state.load(Ordering::Acquire) == ACTIVE)
}

struct SipCtx<'a> {
    run: &'a Run,
    args: &'a Args,
    sock: &'a UdpSocket,
    local: SocketAddr,
    stats: &'a mut SipStats,
    open: &'a mut usize,
}

fn on_sip(x: &mut SipCtx, c: &mut SipCall, i: usize, msg: &Message) {
    let (run, sock, local, server) = (x.run, x.sock, x.local, x.args.server);
    let tag = std::process::id();
    let stats = &mut *x.stats;
    let open = &mut *x.open;
    let sh = &run.calls[i];
    let now = run.clock.ns();
    let state = sh.state.load(Ordering::Acquire);
    match &msg.start {
        StartLine::Request { method, .. } => {
            // The server ending the call (it should not: the dialplan never hangs up).
            let code = if *method == Method::Bye { 200 } else { 501 };
            let _ = sock.send_to(&msg.response(code, "OK", None).to_bytes(), server);
            if *method == Method::Bye && matches!(state, ACTIVE | INVITING) {
                stats.ended_by_server += 1;
                sh.state.store(DONE, Ordering::Release);
                *open -= 1;
            }
        }
        StartLine::Response { code, .. } => {
            let Ok(cseq) = msg.cseq() else { return };
            let code = *code;
            if cseq.method == Method::Invite {
                if code < 200 {
                    // Provisional: stop retransmitting the INVITE (RFC 3261 §17.1.1.2).
                    c.invite.clear();
                    return;
                }
                let to = msg.header(&HeaderName::To).unwrap_or("").to_string();
                if code >= 300 {
                    // ACK for a non-2xx: same branch as the INVITE.
                    let ack = format!(
                        "ACK sip:{user}@{server} SIP/2.0\r\n\
                         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}-{i}-i;rport\r\n\
                         Max-Forwards: 70\r\nFrom: <sip:load{i}@{ip}>;tag=f{i}\r\nTo: {to}\r\n\
                         Call-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        user = x.args.user,
                        ip = LOCAL_IP,
                        cid = call_id(tag, i),
                    );
                    let _ = sock.send_to(ack.as_bytes(), server);
                    if state == INVITING {
                        sh.state.store(FAILED, Ordering::Release);
                        stats.failed += 1;
                        stats.failed_codes.push(code);
                        *open -= 1;
                    }
                    return;
                }
                // 2xx: ACK every copy (the server retransmits until it sees one).
                if state == INVITING {
                    let Some(remote) = SessionDescription::parse(&msg.body)
                        .ok()
                        .and_then(|sd| sdp::negotiate(&sd, &[Codec::Pcmu]).ok())
                    else {
                        sh.state.store(FAILED, Ordering::Release);
                        stats.failed += 1;
                        *open -= 1;
                        return;
                    };
                    let IpAddr::V4(ip) = remote.remote.ip() else {
                        panic!("server media address is not IPv4");
                    };
                    c.to_value = to.clone();
                    // RFC 3261 §12.1.2: the UAC's route set is the Record-Route set reversed.
                    let rr: Vec<&str> = msg.header_values(&HeaderName::RecordRoute).collect();
                    c.route = if rr.is_empty() {
                        String::new()
                    } else {
                        let rev: Vec<&str> = rr.iter().rev().copied().collect();
                        format!("Route: {}\r\n", rev.join(", "))
                    };
                    c.target = msg
                        .contact()
                        .map(|na| na.uri.to_string())
                        .unwrap_or_else(|| format!("sip:{server}"));
                    sh.server_rtp.store(
                        (u64::from(u32::from(ip)) << 16) | u64::from(remote.remote.port()),
                        Ordering::Release,
                    );
                    stats.answered += 1;
                    stats.invite_to_200.push(now - c.sent_at_ns);
                    c.invite.clear();
                    sh.state.store(ACTIVE, Ordering::Release);
                }
                if c.target.is_empty() {
                    return;
                }
                let ack = format!(
                    "ACK {target} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}-{i}-a;rport\r\n\
                     {route}Max-Forwards: 70\r\nFrom: <sip:load{i}@{ip}>;tag=f{i}\r\nTo: {to}\r\n\
                     Call-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    target = c.target,
                    route = c.route,
                    ip = LOCAL_IP,
                    to = c.to_value,
                    cid = call_id(tag, i),
                );
                let _ = sock.send_to(ack.as_bytes(), server);
            } else if cseq.method == Method::Bye && code >= 200 && state == ENDING {
                sh.state.store(DONE, Ordering::Release);
                *open -= 1;
            }
        }
    }
}

// ---- RTP out --------------------------------------------------------------------------------

struct TxCall {
    seq: u16,
    ts: u32,
    ssrc: u32,
    started: bool,
    next_key_ns: u64,
    /// 0: no key in progress; 1..=KEY_FRAMES+KEY_END_REPEATS: frame of the key being sent.
    key_frame: u8,
    key_ts: u32,
}

#[derive(Default)]
struct TxStats {
    packets: u64,
    keys: u64,
    send_errors: u64,
    /// How late the sender woke for its 1 ms phases (its own scheduling noise).
    wake_late_max_ns: u64,
    wake_late_over_2ms: u64,
}

fn sender(run: &Run, args: &Args, socks: Vec<UdpSocket>) -> TxStats {
    let n = socks.len();
    let mut stats = TxStats::default();
    let mut calls: Vec<TxCall> = (0..n)
        .map(|i| TxCall {
            seq: (i as u16).wrapping_mul(7919),
            ts: (i as u32).wrapping_mul(104_729),
            ssrc: 0x5100_0000 | i as u32,
            started: false,
            next_key_ns: 0,
            key_frame: 0,
            key_ts: 0,
        })
        .collect();
    let phase_of: Vec<Vec<usize>> = (0..PHASES)
        .map(|p| (p..n).step_by(PHASES).collect())
        .collect();
    // One packet buffer; only the header (and an event's payload) change per packet. The
    // audio is a quiet 400 Hz tone, so it is not digital silence but never looks like a key.
    let mut pkt = [0u8; rtp::HEADER_LEN + 160];
    for (k, b) in pkt[rtp::HEADER_LEN..].iter_mut().enumerate() {
        let s = 1000.0 * (2.0 * std::f64::consts::PI * 400.0 * k as f64 / 8000.0).sin();
        *b = Codec::Pcmu.encode_sample(s as i16);
    }
    let audio = pkt;
    let mut tick: u64 = run.clock.ns() / 1_000_000 + 1;
    while !run.stop.load(Ordering::Acquire) {
        let due_ns = tick * 1_000_000;
        let now = run.clock.ns();
        if now < due_ns {
            std::thread::sleep(run.clock.at(due_ns) - Instant::now().min(run.clock.at(due_ns)));
            continue;
        }
        let late = now - due_ns;
        stats.wake_late_max_ns = stats.wake_late_max_ns.max(late);
        if late > 2_000_000 {
            stats.wake_late_over_2ms += 1;
        }
        let phase = (tick % PHASES as u64) as usize;
        tick += 1;
        for &i in &phase_of[phase] {
            let sh = &run.calls[i];
            if sh.state.load(Ordering::Acquire) != ACTIVE {
                continue;
            }
            let packed = sh.server_rtp.load(Ordering::Acquire);
            let dest = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from((packed >> 16) as u32)),
                packed as u16,
            );
            let c = &mut calls[i];
            let mut marker = false;
            if !c.started {
                c.started = true;
                marker = true;
                // First key 2 s in, then every key_every; calls spread over the interval
                // so the server sees keys at an even rate.
                c.next_key_ns = now
                    + 2_000_000_000
                    + (i as u64 * 7_919_000_000 % (args.key_every_ms * 1_000_000)) / 4;
            }
            if c.key_frame == 0 && now >= c.next_key_ns {
                c.key_frame = 1;
                c.key_ts = c.ts;
                c.next_key_ns += args.key_every_ms * 1_000_000;
            }
            let len;
            if c.key_frame > 0 {
                let f = c.key_frame;
                let end = f > KEY_FRAMES;
                let duration = 160 * u16::from(f.min(KEY_FRAMES));
                rtp::write_header(&mut pkt, f == 1, PT_EVENT, c.seq, c.key_ts, c.ssrc);
                let mut ev = [0u8; 4];
                EventPayload {
                    event: 1,
                    end,
                    volume: 10,
                    duration,
                }
                .write(&mut ev);
                pkt[rtp::HEADER_LEN..rtp::HEADER_LEN + 4].copy_from_slice(&ev);
                len = rtp::HEADER_LEN + 4;
                if f == 1 {
                    sh.key_sent_ns
                        .store(run.clock.ns().max(1), Ordering::Release);
                    stats.keys += 1;
                }
                c.key_frame = if f >= KEY_FRAMES + KEY_END_REPEATS {
                    0
                } else {
                    f + 1
                };
            } else {
                pkt.copy_from_slice(&audio);
                rtp::write_header(&mut pkt, marker, PT_PCMU, c.seq, c.ts, c.ssrc);
                len = pkt.len();
            }
            c.seq = c.seq.wrapping_add(1);
            c.ts = c.ts.wrapping_add(160);
            match socks[i].send_to(&pkt[..len], dest) {
                Ok(_) => stats.packets += 1,
                Err(_) => stats.send_errors += 1,
            }
            if len < audio.len() {
                // The next audio packet must start from the clean copy.
                pkt.copy_from_slice(&audio);
            }
        }
    }
    stats
}

// ---- RTP in ---------------------------------------------------------------------------------

#[derive(Default, Clone)]
struct RxCall {
    received: u64,
    last_ns: u64,
    last_seq: u16,
    ext_base: i64,
    ext_high: i64,
    max_gap_ns: u64,
    gaps_over_22: u64,
    keys_matched: u64,
    keys_missed: u64,
    /// key_sent_ns value already matched (or given up).
    key_done: u64,
}

impl RxCall {
    fn lost(&self) -> u64 {
        if self.received == 0 {
            return 0;
        }
        ((self.ext_high - self.ext_base + 1) as u64).saturating_sub(self.received)
    }
}

struct RxStats {
    all: Hist,
    steady: Hist,
    key: Hist,
    received: u64,
    not_measured: u64,
    foreign: u64,
    rtcp: u64,
    /// Arrivals timed by the kernel (SO_TIMESTAMPNS) rather than when this thread ran.
    kernel_stamped: u64,
    lost: u64,
    gaps_over_22: u64,
    calls_with_gaps: u64,
    keys_missed: u64,
}

impl RxStats {
    fn new() -> RxStats {
        RxStats {
            all: Hist::new(),
            steady: Hist::new(),
            key: Hist::new(),
            received: 0,
            not_measured: 0,
            foreign: 0,
            rtcp: 0,
            kernel_stamped: 0,
            lost: 0,
            gaps_over_22: 0,
            calls_with_gaps: 0,
            keys_missed: 0,
        }
    }
    fn merge(&mut self, o: &RxStats) {
        self.all.merge(&o.all);
        self.steady.merge(&o.steady);
        self.key.merge(&o.key);
        self.received += o.received;
        self.not_measured += o.not_measured;
        self.foreign += o.foreign;
        self.rtcp += o.rtcp;
        self.kernel_stamped += o.kernel_stamped;
        self.lost += o.lost;
        self.gaps_over_22 += o.gaps_over_22;
        self.calls_with_gaps += o.calls_with_gaps;
        self.keys_missed += o.keys_missed;
    }
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One datagram, non-blocking, with its kernel arrival time on the run's clock when the
/// socket has SO_TIMESTAMPNS (it does: see `main`). Arrival times taken when this thread
/// happens to run would charge the tool's own scheduling delays (it shares 2 cores with the
/// server) to the server's send intervals; on loopback the kernel stamps the packet inside
/// the server's `sendto`, so the stamp is the server's send time. `Ok(None)`: nothing waits.
fn recv_stamped(
    sock: &mio::net::UdpSocket,
    buf: &mut [u8],
    cmsg: &mut Vec<u8>,
    wall_offset: u64,
) -> std::io::Result<Option<(usize, Option<u64>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = match recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e)),
    };
    let mut at = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let wall = ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64;
                at = Some(wall.saturating_sub(wall_offset));
            }
        }
    }
    Ok(Some((msg.bytes, at)))
}

fn receiver(
    run: &Run,
    mut socks: Vec<(usize, mio::net::UdpSocket)>,
    tick: Duration,
) -> (RxStats, Vec<(usize, RxCall)>) {
    let mut poll = mio::Poll::new().expect("epoll");
    for (k, (_, s)) in socks.iter_mut().enumerate() {
        poll.registry()
            .register(s, mio::Token(k), mio::Interest::READABLE)
            .expect("register RTP socket");
    }
    let mut events = mio::Events::with_capacity(1024);
    let mut st = RxStats::new();
    let mut calls = vec![RxCall::default(); socks.len()];
    let mut buf = [0u8; 2048];
    // One control buffer for every receive (no allocation per packet).
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    // Kernel stamps are wall-clock; the run's clock is monotonic from its start.
    let wall_offset = wall_ns().saturating_sub(run.clock.ns());
    let mut next_tick = Instant::now();
    while !run.stop.load(Ordering::Acquire) {
        let timeout = if tick.is_zero() {
            Duration::from_millis(50)
        } else {
            // Absolute ticks, so the receiver's own work does not stretch them.
            next_tick += tick;
            let now = Instant::now();
            if next_tick > now {
                std::thread::sleep(next_tick - now);
            } else {
                next_tick = now;
            }
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        for ev in events.iter() {
            let k = ev.token().0;
            let (i, sock) = &socks[k];
            let sh = &run.calls[*i];
            let c = &mut calls[k];
            loop {
                let (len, now) = match recv_stamped(sock, &mut buf, &mut cmsg, wall_offset) {
                    Ok(Some((len, Some(at)))) => {
                        st.kernel_stamped += 1;
                        (len, at)
                    }
                    Ok(Some((len, None))) => (len, run.clock.ns()),
                    Ok(None) => break,
                    Err(e) => panic!("RTP recv: {e}"),
                };
                if len >= 2 && (192..=223).contains(&buf[1]) {
                    // RTCP (RFC 5761 §4): the server reports to our RTP port + 1, which is
                    // another call's RTP socket here. Not audio, not part of the figures.
                    st.rtcp += 1;
                    continue;
                }
                let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                    st.foreign += 1;
                    continue;
                };
                if sh.state.load(Ordering::Acquire) != ACTIVE {
                    // Before the 200 was seen or after our BYE: not part of the figures, but
                    // the next interval starts from here.
                    st.not_measured += 1;
                    c.last_ns = 0;
                    continue;
                }
                st.received += 1;
                if c.received == 0 {
                    c.ext_base = i64::from(p.sequence);
                    c.ext_high = c.ext_base;
                } else {
                    let d = i64::from(p.sequence.wrapping_sub(c.last_seq) as i16);
                    if d > 0 {
                        c.ext_high += d;
                    }
                }
                c.last_seq = p.sequence;
                c.received += 1;
                if c.last_ns != 0 {
                    let gap = now - c.last_ns;
                    st.all.add(gap);
                    if run.steady.load(Ordering::Relaxed) {
                        st.steady.add(gap);
                    }
                    c.max_gap_ns = c.max_gap_ns.max(gap);
                    if gap > 22_000_000 {
                        c.gaps_over_22 += 1;
                    }
                }
                c.last_ns = now;
                let key = sh.key_sent_ns.load(Ordering::Acquire);
                if key != 0 && key != c.key_done {
                    if p.marker && now > key {
                        st.key.add(now - key);
                        c.keys_matched += 1;
                        c.key_done = key;
                    } else if now > key + KEY_GIVE_UP_NS {
                        c.keys_missed += 1;
                        c.key_done = key;
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(calls.len());
    for (k, c) in calls.into_iter().enumerate() {
        st.lost += c.lost();
        st.gaps_over_22 += c.gaps_over_22;
        st.calls_with_gaps += u64::from(c.gaps_over_22 > 0);
        st.keys_missed += c.keys_missed;
        out.push((socks[k].0, c));
    }
    (st, out)
}

// ---- /proc ----------------------------------------------------------------------------------

struct ProcSample {
    at_ns: u64,
    rss_kib: u64,
    cpu_ticks: u64,
}

impl ProcSample {
    fn take(pid: u32, at_ns: u64) -> ProcSample {
        let (rss_kib, cpu_ticks) = procfs::rss_kib_and_cpu_ticks(pid);
        ProcSample {
            at_ns,
            rss_kib,
            cpu_ticks,
        }
    }
    /// Cores used between two samples (100 ticks per second on Linux).
    fn cores_since(&self, earlier: &ProcSample) -> f64 {
        let secs = (self.at_ns - earlier.at_ns) as f64 / 1e9;
        (self.cpu_ticks - earlier.cpu_ticks) as f64 / 100.0 / secs
    }
}

/// System-wide UDP receive-buffer drops (/proc/net/snmp): packets the kernel dropped because
/// a socket's queue was full (ours or the server's).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(head), Some(vals)) = (lines.next(), lines.next()) else {
        return 0;
    };
    head.split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(h, _)| *h == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

// ---- report ---------------------------------------------------------------------------------

/// The server's sample (when its pid is known) and the tool's, taken together.
type Samples = (Option<ProcSample>, ProcSample);

struct ReportIn<'a> {
    args: &'a Args,
    run: &'a Run,
    sip: &'a SipStats,
    tx: &'a TxStats,
    rx: &'a RxStats,
    per_call: &'a [(usize, RxCall)],
    idle: Option<&'a ProcSample>,
    steady: Option<(&'a Samples, &'a Samples)>,
    me: (&'a ProcSample, &'a ProcSample),
    peak_rss_kib: u64,
    udp_errs: u64,
}

fn report(r: &ReportIn) {
    let a = r.args;
    let rx = r.rx;
    let from = r.run.steady_from_ns.load(Ordering::Acquire);
    let to = r.run.steady_to_ns.load(Ordering::Acquire);
    let steady_s = if from != 0 && to > from {
        (to - from) as f64 / 1e9
    } else {
        0.0
    };
    let active = r.sip.answered;
    let mut s = String::new();
    let h = if rx.steady.n > 0 { &rx.steady } else { &rx.all };
    let _ = write!(
        s,
        "calls={} answered={} failed={} ended_by_server={} steady_s={:.1} \
         interval_ms p1={:.2} p50={:.2} p99={:.2} max={:.2} gaps_over_22ms={} lost={} \
         key_to_prompt_ms p50={:.1} p99={:.1} max={:.1} n={} missed={}",
        a.calls,
        active,
        r.sip.failed,
        r.sip.ended_by_server,
        steady_s,
        h.quantile_ms(0.01),
        h.quantile_ms(0.5),
        h.quantile_ms(0.99),
        h.max_ms(),
        rx.gaps_over_22,
        rx.lost,
        rx.key.quantile_ms(0.5),
        rx.key.quantile_ms(0.99),
        rx.key.max_ms(),
        rx.key.n,
        rx.keys_missed,
    );
    let mut mem_ok = None;
    if let (Some(idle), Some(((Some(s0), _), (Some(s1), _)))) = (r.idle, r.steady) {
        let per_call_kib =
            (s1.rss_kib.max(s0.rss_kib) as f64 - idle.rss_kib as f64) / active.max(1) as f64;
        let cores = s1.cores_since(s0);
        let _ = write!(
            s,
            " server_rss_mib idle={:.1} loaded={:.1} peak={:.1} mem_per_call_kib={:.1} \
             server_cores={:.2} cpu_per_call_pct={:.4}",
            idle.rss_kib as f64 / 1024.0,
            s1.rss_kib.max(s0.rss_kib) as f64 / 1024.0,
            r.peak_rss_kib as f64 / 1024.0,
            per_call_kib,
            cores,
            cores * 100.0 / active.max(1) as f64,
        );
        mem_ok = Some(per_call_kib <= 64.0);
    }
    if let Some(((_, m0), (_, m1))) = r.steady {
        let _ = write!(s, " tool_cores_steady={:.2}", m1.cores_since(m0));
    }
    let _ = write!(s, " tool_cores_whole={:.2}", r.me.1.cores_since(r.me.0));
    println!("{s}");

    println!("# targets (steady window):");
    let interval_ok = h.quantile_ms(0.99) <= 22.0 && h.quantile_ms(0.01) >= 18.0;
    let key_ok = rx.key.n > 0 && rx.key.quantile_ms(0.99) <= 60.0 && rx.keys_missed == 0;
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "#   send interval p1/p99 within 20 +- 2 ms: {} ({:.2} / {:.2})",
        verdict(interval_ok),
        h.quantile_ms(0.01),
        h.quantile_ms(0.99)
    );
    println!(
        "#   none lost (sequence gaps): {} ({} lost of {} received; system UDP receive-buffer drops during the run: {})",
        verdict(rx.lost == 0),
        rx.lost,
        rx.received,
        r.udp_errs
    );
    println!(
        "#   key -> next prompt p99 <= 60 ms: {} (p99 {:.1} ms, {} keys, {} without a new prompt)",
        verdict(key_ok),
        rx.key.quantile_ms(0.99),
        rx.key.n,
        rx.keys_missed
    );
    if let Some(ok) = mem_ok {
        println!("#   memory per call <= 64 KiB: {}", verdict(ok));
    }
    println!(
        "#   all calls answered and held: {}",
        verdict(r.sip.failed == 0 && r.sip.ended_by_server == 0 && active == a.calls)
    );

    for (name, h) in [
        ("steady window", &rx.steady),
        ("whole call (ramp included)", &rx.all),
    ] {
        println!(
            "# inter-arrival, {name}: n={} p0.1={:.2} p1={:.2} p50={:.2} p99={:.2} p99.9={:.2} p99.99={:.2} max={:.2} ms",
            h.n,
            h.quantile_ms(0.001),
            h.quantile_ms(0.01),
            h.quantile_ms(0.5),
            h.quantile_ms(0.99),
            h.quantile_ms(0.999),
            h.quantile_ms(0.9999),
            h.max_ms()
        );
        let edges = [
            0.0, 10.0, 18.0, 19.0, 19.5, 20.5, 21.0, 22.0, 30.0, 50.0, 100.0, 2000.0,
        ];
        let mut line = String::from("#   ");
        for w in edges.windows(2) {
            let _ = write!(
                line,
                "[{}-{}): {}  ",
                w[0],
                w[1],
                h.count_between_ms(w[0], w[1])
            );
        }
        println!("{line}");
    }
    println!(
        "# key -> first packet of the next prompt: n={} p50={:.1} p90={:.1} p99={:.1} max={:.1} ms",
        rx.key.n,
        rx.key.quantile_ms(0.5),
        rx.key.quantile_ms(0.9),
        rx.key.quantile_ms(0.99),
        rx.key.max_ms()
    );
    let mut setup = r.sip.invite_to_200.clone();
    setup.sort_unstable();
    let q = |v: &[u64], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .map_or(f64::NAN, |x| *x as f64 / 1e6)
    };
    println!(
        "# INVITE -> 200: p50={:.1} p99={:.1} max={:.1} ms; SIP retransmissions {}; failed codes {:?}; BYEs unanswered {}",
        q(&setup, 0.5),
        q(&setup, 0.99),
        setup.last().map_or(f64::NAN, |x| *x as f64 / 1e6),
        r.sip.retransmissions,
        r.sip.failed_codes,
        r.sip.bye_unanswered
    );
    println!(
        "# calls with a gap > 22 ms: {} of {}; packets outside the measured part of a call: {}, not RTP: {}, RTCP: {}; arrivals timed by the kernel: {} of {}",
        rx.calls_with_gaps, active, rx.not_measured, rx.foreign, rx.rtcp, rx.kernel_stamped,
        rx.received + rx.not_measured
    );
    println!(
        "# tool: sent {} packets ({} keys), send errors {}; sender woke late max {:.2} ms, {} phases > 2 ms late",
        r.tx.packets,
        r.tx.keys,
        r.tx.send_errors,
        r.tx.wake_late_max_ns as f64 / 1e6,
        r.tx.wake_late_over_2ms
    );
    if a.per_call {
        for (i, c) in r.per_call {
            println!(
                "call {i}: received {} lost {} max_gap_ms {:.2} gaps_over_22 {} keys {} missed {}",
                c.received,
                c.lost(),
                c.max_gap_ns as f64 / 1e6,
                c.gaps_over_22,
                c.keys_matched,
                c.keys_missed
            );
        }
    }
}
