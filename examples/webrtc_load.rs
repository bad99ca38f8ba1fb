//! Browser-agent load tool (docs/benchmarks.md, "Browser agents (WebRTC)"; run by
//! `bench/webrtc_load.sh`). Acts as N browser agents and N SIP callers bridged to them, in
//! one process, so each packet's send time and arrival time are on the same clock.
//!
//! - **Browser peers** do what `/agent` (web/agent.html) does in Chromium: `POST
//!   /api/agent/login` (name `bNNN`, the password the script set), open the page's event
//!   stream (`GET /api/agent/events`, SSE), `POST /api/agent/phone {"on": true}`; on
//!   `incoming-call` they create a WebRTC offer with a str0m peer (full ICE agent, the
//!   controlling side as a browser is; DTLS role from the answer's `a=setup`, DTLS-SRTP,
//!   RTCP-mux; PCMU and Opus offered, or Opus only with `--codec opus`), `POST
//!   /api/agent/answer` it, apply the server's answer, and once ICE + DTLS are up send 20 ms
//!   of audio every 20 ms. The server's `offer` event (the screen pop) names the caller,
//!   which pairs the peer with the caller it is bridged to.
//! - **SIP callers** over UDP (one SIP and one RTP socket each, like a phone): INVITE to the
//!   bench route (a dialplan that enqueues at once into the agents' queue), ACK, 20 ms PCMU
//!   from the 200 on, BYE after the hold.
//!
//! Relay delay per direction: the sender keeps the send time of every packet (index k, RTP
//! timestamp base + k·step); the receiver keeps the kernel arrival time (SO_TIMESTAMPNS, so
//! the tool's own scheduling on a shared box is not charged to the server) and the packet's
//! index relative to the first it received (from the RTP timestamp: pass-through keeps
//! timestamps, transcoding rescales them, both keep the 20 ms step). The unknown offset
//! between the two indices is the largest one under which no packet arrives before it was
//! sent (exact as long as one packet of the stream was relayed in under 20 ms). Lost: holes
//! in the received indices.
//!
//! With `--server-pid` it samples the server's RSS and CPU (/proc) with the agents logged in
//! and no call (idle), and over the steady window (every call bridged, before the first BYE).
//! Exit status 1 when a call did not bridge audio both ways.
//!
//!   cargo run --release --example webrtc_load -- --sip 127.0.0.1:35260 \
//!       --http 127.0.0.1:38260 --calls 250 --hold 60 --codec pcmu

#[path = "support/procfs.rs"]
mod procfs;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction as MediaDirection, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use switchboard::media::codec::Codec;
use switchboard::media::rtp::{write_header, RtpPacket};
use switchboard::sip::message::{Framing, HeaderName, Message, Method, StartLine};
use switchboard::sip::sdp::{self, Direction, SessionDescription};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    /// Offer Opus and PCMU, as Chromium does: the server picks PCMU (pass-through).
    Pcmu,
    /// Offer Opus only: the server transcodes PCMU ↔ Opus.
    Opus,
}

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The server's SIP address (UDP), for the callers.
    #[arg(long, default_value = "127.0.0.1:35060")]
    sip: SocketAddr,
    /// The server's HTTP address (`/api/agent/*`), for the browser peers.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Request-URI user of the callers: the route to the bench dialplan.
    #[arg(long, default_value = "webrtcbench")]
    user: String,
    /// Concurrent bridged calls (= browser agents = callers).
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Agents are `<prefix>001`, `<prefix>002`, …
    #[arg(long, default_value = "b")]
    agent_prefix: String,
    /// Every agent's password (as the script set it with `switchboard agent add`).
    #[arg(long, default_value = "webrtc-load")]
    password: String,
    /// The browsers' codec offer.
    #[arg(long, value_enum, default_value_t = CodecArg::Pcmu)]
    codec: CodecArg,
    /// New calls per second while ramping up (and BYEs per second at the end).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds every call stays up once all calls are up (the steady window).
    #[arg(long, default_value_t = 60.0)]
    hold: f64,
    /// The tool's runtime threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The server's pid, to sample its RSS and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also print one line per call.
    #[arg(long)]
    per_call: bool,
}

const LOCAL_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PT_PCMU: u8 = 0;
const FRAME: Duration = Duration::from_millis(20);
/// Callers' numbers: this prefix and the call's index in 6 digits (the `offer` event's
/// `caller` names it, which pairs a browser with its caller).
const CALLER_PREFIX: &str = "4990";
/// Longest any one HTTP exchange or SIP transaction may take before the call is failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock nanoseconds (what SO_TIMESTAMPNS stamps arrivals with).
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---- results ---------------------------------------------------------------------------------

/// One direction of one call: send times by packet index, arrivals by relative index.
#[derive(Debug, Default)]
struct Stream {
    sent_ns: Vec<u64>,
    /// (index relative to the first packet received, kernel arrival time)
    recv: Vec<(u64, u64)>,
}

/// What one direction's packets say once aligned.
#[derive(Debug, Default)]
struct StreamFigures {
    received: usize,
    lost: u64,
    delays_ns: Vec<u64>,
    /// The offset the alignment chose (sent index = received index + offset).
    offset: Option<i64>,
}

impl Stream {
    fn figures(&self) -> StreamFigures {
        let mut f = StreamFigures {
            received: self.recv.len(),
            ..Default::default()
        };
        if self.recv.is_empty() || self.sent_ns.is_empty() {
            return f;
        }
        // The offset d (sent index = received index + d): the largest with no arrival
        // before its send time.
        let mut d = i64::MAX;
        for &(idx, at) in &self.recv {
            let latest = self.sent_ns.partition_point(|&s| s <= at) as i64 - 1;
            d = d.min(latest - idx as i64);
        }
        let mut seen: Vec<u64> = self.recv.iter().map(|r| r.0).collect();
        seen.sort_unstable();
        seen.dedup();
        if let (Some(lo), Some(hi)) = (seen.first(), seen.last()) {
            f.lost = (hi - lo + 1) - seen.len() as u64;
        }
        f.offset = Some(d);
        for &(idx, at) in &self.recv {
            let k = idx as i64 + d;
            if k >= 0 {
                if let Some(&s) = self.sent_ns.get(k as usize) {
                    f.delays_ns.push(at.saturating_sub(s));
                }
            }
        }
        f
    }
}

/// Everything known about one call (caller index i), filled in by its caller and the
/// browser peer it was bridged to.
#[derive(Debug, Default)]
struct CallResult {
    answered: bool,
    failed: Option<String>,
    ended_by_server: bool,
    invite_to_200: Option<Duration>,
    agent: Option<usize>,
    /// POST /api/agent/answer round trip.
    answer_rtt: Option<Duration>,
    /// From applying the server's answer to ICE + DTLS up, and to the first audio.
    to_connected: Option<Duration>,
    to_first_audio: Option<Duration>,
    c2b: Stream,
    b2c: Stream,
    /// The caller's first RTP timestamp and the first the browser received: with PCMU
    /// passed through the timestamps survive, which checks the alignment.
    c2b_ts0: u32,
    c2b_first_rx: Option<u64>,
}

struct Shared {
    args: Args,
    results: Vec<Mutex<CallResult>>,
    /// Peers logged in with the phone on; peers that failed to.
    ready: AtomicUsize,
    not_ready: AtomicUsize,
    /// Calls whose browser has heard its caller.
    bridged: AtomicUsize,
    /// Calls whose caller has heard its browser.
    heard_back: AtomicUsize,
    callers_done: AtomicUsize,
}

impl Shared {
    fn result(&self, i: usize) -> std::sync::MutexGuard<'_, CallResult> {
        self.results[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---- kernel-stamped receive ---------------------------------------------------------------

fn enable_timestamps(s: &std::net::UdpSocket) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
        .map_err(std::io::Error::from)
}

fn udp_socket() -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind((LOCAL_IP, 0))?;
    s.set_nonblocking(true)?;
    enable_timestamps(&s)?;
    UdpSocket::from_std(s)
}

/// One waiting datagram with its kernel arrival time (wall ns); WouldBlock when none.
fn recv_stamped(
    sock: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut Vec<u8>,
) -> std::io::Result<(usize, SocketAddr, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    use std::os::fd::AsRawFd;
    sock.try_io(tokio::io::Interest::READABLE, || {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn>(
            sock.as_raw_fd(),
            &mut iov,
            Some(cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(std::io::Error::from)?;
        let mut at = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    at = Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64);
                }
            }
        }
        let from = msg
            .address
            .map(|a| SocketAddr::new(IpAddr::V4(a.ip()), a.port()))
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(LOCAL_IP), 0));
        Ok((msg.bytes, from, at.unwrap_or_else(wall_ns)))
    })
}

// ---- HTTP (the page's requests) ------------------------------------------------------------

/// One HTTP/1.1 request on its own connection; (status, head, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String, String), String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: sb_agent={c}\r\n"));
        }
        let body = json.unwrap_or("");
        if json.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((code, head.to_string(), body.to_string()))
    };
    tokio::time::timeout(STEP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer in {STEP_TIMEOUT:?}"))?
}

fn cookie_of(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then_some(v.trim())
        })
        .and_then(|v| v.strip_prefix("sb_agent="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// Server-sent events from the page's event stream, one line at a time (the stream is
/// chunked: chunk-size lines are neither `event:` nor `data:` and are skipped).
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: String,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<(String, serde_json::Value)>) {
        self.pending.extend_from_slice(bytes);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(e) = line.strip_prefix("event:") {
                self.event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push_str(d.trim());
            } else if line.is_empty() && !self.event.is_empty() {
                let v = serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null);
                out.push((std::mem::take(&mut self.event), v));
                self.data.clear();
            }
        }
    }
}

// ---- browser peer ----------------------------------------------------------------------------

/// The call a peer is on: its str0m session and the measurements.
struct PeerCall {
    call_id: String,
    caller: Option<usize>,
    rtc: Rtc,
    mid: Mid,
    pt: Option<Pt>,
    step: u64,
    local: SocketAddr,
    next_timeout: Instant,
    answered_at: Instant,
    connected: bool,
    sent: u64,
    first_rx_time: Option<u64>,
    c2b: Stream,
    b2c: Stream,
    answer_rtt: Duration,
    to_connected: Option<Duration>,
    to_first_audio: Option<Duration>,
}

impl PeerCall {
    /// Publish this call's figures to its caller's result.
    fn publish(self, sh: &Shared, agent: usize) {
        let Some(i) = self.caller else { return };
        let mut r = sh.result(i);
        r.agent = Some(agent);
        r.answer_rtt = Some(self.answer_rtt);
        r.to_connected = self.to_connected;
        r.to_first_audio = self.to_first_audio;
        r.c2b.recv = self.c2b.recv;
        r.c2b_first_rx = self.first_rx_time;
        r.b2c.sent_ns = self.b2c.sent_ns;
    }
}

/// One 20 ms Opus frame of a 400 Hz tone, encoded once (the peer sends it every time).
fn opus_frame() -> Vec<u8> {
    let mut enc = match opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip) {
        Ok(e) => e,
        Err(e) => panic!("opus encoder: {e}"),
    };
    let pcm: Vec<i16> = (0..960)
        .map(|n| ((n as f64 * 400.0 * std::f64::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
        .collect();
    let mut out = vec![0u8; 400];
    let n = enc.encode(&pcm, &mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// One 20 ms PCMU frame of a 400 Hz tone (8 whole periods).
fn pcmu_frame() -> Vec<u8> {
    (0..160)
        .map(|n| {
            let s = (n as f64 * 400.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0;
            Codec::Pcmu.encode_sample(s as i16)
        })
        .collect()
}

/// The trailing index of a caller number (`4990000007` → 7).
fn caller_index(caller: &str) -> Option<usize> {
    let digits: String = caller.chars().filter(char::is_ascii_digit).collect();
    let tail = digits.get(digits.len().checked_sub(6)?..)?;
    tail.parse().ok()
}

async fn browser_peer(sh: Arc<Shared>, j: usize, stop: CancellationToken) {
    if let Err(e) = browser_peer_inner(&sh, j, &stop).await {
        eprintln!("browser {j}: {e}");
        sh.not_ready.fetch_add(1, Ordering::AcqRel);
    }
}

fn agent_name(args: &Args, j: usize) -> String {
    format!("{}{:03}", args.agent_prefix, j + 1)
}

async fn browser_peer_inner(sh: &Shared, j: usize, stop: &CancellationToken) -> Result<(), String> {
    let args = &sh.args;
    let name = agent_name(args, j);
    let login = serde_json::json!({"name": name, "password": args.password}).to_string();
    let (code, head, body) =
        http(args.http, "POST", "/api/agent/login", None, Some(&login)).await?;
    if code != 200 {
        return Err(format!("login {name}: {code} {body}"));
    }
    let cookie = cookie_of(&head).ok_or("login: no sb_agent cookie")?;
    // The page's event stream first (the phone is on only while a page watches).
    let mut sse = TcpStream::connect(args.http)
        .await
        .map_err(|e| format!("event stream: {e}"))?;
    let req = format!(
        "GET /api/agent/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
         Cookie: sb_agent={cookie}\r\n\r\n",
        args.http
    );
    sse.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("event stream: {e}"))?;
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut sse_buf = vec![0u8; 16 * 1024];
    // Wait for `hello` so the watch is registered before the phone goes on.
    let hello = async {
        loop {
            let n = sse.read(&mut sse_buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("event stream closed".to_string());
            }
            parser.feed(&sse_buf[..n], &mut events);
            if events.iter().any(|(e, _)| e == "hello") {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, hello)
        .await
        .map_err(|_| "no hello on the event stream")??;
    events.clear();
    let (code, _, body) = http(
        args.http,
        "POST",
        "/api/agent/phone",
        Some(&cookie),
        Some(r#"{"on":true}"#),
    )
    .await?;
    if code != 200 {
        return Err(format!("phone on {name}: {code} {body}"));
    }
    sh.ready.fetch_add(1, Ordering::AcqRel);

    let payload = match args.codec {
        CodecArg::Pcmu => pcmu_frame(),
        CodecArg::Opus => opus_frame(),
    };
    let udp = udp_socket().map_err(|e| format!("udp socket: {e}"))?;
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    let mut callers: HashMap<String, usize> = HashMap::new();
    let mut call: Option<PeerCall> = None;
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let far = Instant::now() + Duration::from_secs(3600);
    loop {
        if let Some(c) = call.as_mut() {
            drain(c, &udp, sh).await?;
        }
        let deadline = call.as_ref().map_or(far, |c| c.next_timeout);
        tokio::select! {
            n = sse.read(&mut sse_buf) => {
                let n = n.map_err(|e| format!("event stream: {e}"))?;
                if n == 0 {
                    return Err("event stream closed".into());
                }
                parser.feed(&sse_buf[..n], &mut events);
                for (event, data) in std::mem::take(&mut events) {
                    let call_id = data["call_id"].as_str().unwrap_or_default().to_string();
                    match event.as_str() {
                        // The screen pop (`offer`) may come before or after the ring.
                        "offer" => {
                            if let Some(i) = data["caller"].as_str().and_then(caller_index) {
                                match call.as_mut() {
                                    Some(c) if c.call_id == call_id => {
                                        c.caller = Some(i);
                                        sh.result(i).agent = Some(j);
                                    }
                                    _ => {
                                        callers.insert(call_id, i);
                                    }
                                }
                            }
                        }
                        "incoming-call" if call.is_none() => {
                            let caller = callers.get(&call_id).copied();
                            if let Some(i) = caller {
                                sh.result(i).agent = Some(j);
                            }
                            call = Some(answer(args, &cookie, call_id, caller, local).await?);
                        }
                        "call-ended" if call.as_ref().is_some_and(|c| c.call_id == call_id) => {
                            if let Some(c) = call.take() {
                                c.publish(sh, j);
                            }
                        }
                        _ => {}
                    }
                }
            }
            r = udp.readable(), if call.is_some() => {
                r.map_err(|e| format!("udp: {e}"))?;
                let Some(c) = call.as_mut() else { continue };
                loop {
                    match recv_stamped(&udp, &mut buf, &mut cmsg) {
                        Ok((n, from, at)) => {
                            let Ok(contents) = buf[..n].try_into() else { continue };
                            let input = Input::Receive(Instant::now(), Receive {
                                proto: Protocol::Udp,
                                source: from,
                                destination: c.local,
                                contents,
                            });
                            c.rtc.handle_input(input).map_err(|e| format!("str0m: {e}"))?;
                            // Drain per datagram: a MediaData event is this datagram's.
                            on_outputs(c, &udp, sh, at).await?;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("udp: {e}")),
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()), if call.is_some() => {
                if let Some(c) = call.as_mut() {
                    c.rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| format!("str0m: {e}"))?;
                }
            }
            _ = tick.tick() => {
                let Some(c) = call.as_mut() else { continue };
                let Some(pt) = c.pt.filter(|_| c.connected) else { continue };
                let now = Instant::now();
                let t = MediaTime::new(c.sent * c.step, frequency(c.step));
                if let Some(w) = c.rtc.writer(c.mid) {
                    c.b2c.sent_ns.push(wall_ns());
                    w.write(pt, now, t, payload.clone()).map_err(|e| format!("str0m write: {e}"))?;
                    c.sent += 1;
                }
            }
            _ = stop.cancelled() => {
                if let Some(c) = call.take() {
                    c.publish(sh, j);
                }
                return Ok(());
            }
        }
    }
}

fn frequency(step: u64) -> Frequency {
    if step == 960 {
        Frequency::FORTY_EIGHT_KHZ
    } else {
        Frequency::EIGHT_KHZ
    }
}

/// Answer an incoming call as the page does: our offer to `/api/agent/answer`, the server's
/// answer applied.
async fn answer(
    args: &Args,
    cookie: &str,
    call_id: String,
    caller: Option<usize>,
    local: SocketAddr,
) -> Result<PeerCall, String> {
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true)
        .enable_pcmu(args.codec == CodecArg::Pcmu)
        // Deliver each packet as it arrives: the arrival is what is measured.
        .set_reordering_size_audio(0)
        .build();
    // A clock before the SDP, as the server's leg does (src/webrtc/session.rs): accepting
    // the answer sets up DTLS, which otherwise starts from str0m's placeholder time.
    rtc.handle_input(Input::Timeout(Instant::now()))
        .map_err(|e| format!("str0m: {e}"))?;
    let cand = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, MediaDirection::SendRecv, None, None, None);
    let (offer, pending): (_, SdpPendingOffer) = api.apply().ok_or("no offer from str0m")?;
    let body = serde_json::json!({"call_id": call_id, "sdp": offer.to_sdp_string()}).to_string();
    let t0 = Instant::now();
    let (code, _, resp) = http(
        args.http,
        "POST",
        "/api/agent/answer",
        Some(cookie),
        Some(&body),
    )
    .await?;
    let answer_rtt = t0.elapsed();
    if code != 200 {
        return Err(format!("answer {call_id}: {code} {resp}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&resp).map_err(|e| format!("answer body: {e}"))?;
    let sdp = v["sdp"].as_str().ok_or("answer without sdp")?;
    let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("answer sdp: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accept answer: {e}"))?;
    let answered_at = Instant::now();
    rtc.handle_input(Input::Timeout(answered_at))
        .map_err(|e| format!("str0m: {e}"))?;
    let want = match args.codec {
        CodecArg::Pcmu => RtcCodec::PCMU,
        CodecArg::Opus => RtcCodec::Opus,
    };
    let pt = rtc.writer(mid).and_then(|w| {
        w.payload_params()
            .find(|p| p.spec().codec == want)
            .map(|p| p.pt())
    });
    Ok(PeerCall {
        call_id,
        caller,
        rtc,
        mid,
        pt,
        step: if want == RtcCodec::Opus { 960 } else { 160 },
        local,
        next_timeout: answered_at,
        answered_at,
        connected: false,
        sent: 0,
        first_rx_time: None,
        c2b: Stream::default(),
        b2c: Stream::default(),
        answer_rtt,
        to_connected: None,
        to_first_audio: None,
    })
}

async fn drain(c: &mut PeerCall, udp: &UdpSocket, sh: &Shared) -> Result<(), String> {
    on_outputs(c, udp, sh, wall_ns()).await
}

/// Poll the session until only a timeout is left; `at` is the arrival time of the datagram
/// just fed in (for the audio it carried).
async fn on_outputs(c: &mut PeerCall, udp: &UdpSocket, sh: &Shared, at: u64) -> Result<(), String> {
    loop {
        match c.rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
            Output::Timeout(t) => {
                c.next_timeout = t;
                return Ok(());
            }
            Output::Transmit(t) => {
                let _ = udp.send_to(&t.contents, t.destination).await;
            }
            Output::Event(Event::Connected) => {
                c.connected = true;
                c.to_connected = Some(c.answered_at.elapsed());
            }
            Output::Event(Event::MediaData(d)) => {
                let time = d.time.numer();
                let first = *c.first_rx_time.get_or_insert(time);
                if c.to_first_audio.is_none() {
                    c.to_first_audio = Some(c.answered_at.elapsed());
                    sh.bridged.fetch_add(1, Ordering::AcqRel);
                }
                let step = (u64::from(d.time.frequency().get()) / 50).max(1);
                c.c2b.recv.push((time.wrapping_sub(first) / step, at));
            }
            Output::Event(_) => {}
        }
    }
}

// ---- SIP caller ------------------------------------------------------------------------------

async fn caller(sh: Arc<Shared>, i: usize, bye_at: tokio::time::Instant) {
    let outcome = caller_inner(&sh, i, bye_at).await;
    if let Err(e) = outcome {
        sh.result(i).failed = Some(e);
    }
    sh.callers_done.fetch_add(1, Ordering::AcqRel);
}

async fn caller_inner(sh: &Shared, i: usize, bye_at: tokio::time::Instant) -> Result<(), String> {
    let args = &sh.args;
    let server = args.sip;
    let sip = UdpSocket::bind((LOCAL_IP, 0))
        .await
        .map_err(|e| format!("sip socket: {e}"))?;
    let rtp = udp_socket().map_err(|e| format!("rtp socket: {e}"))?;
    let local = sip.local_addr().map_err(|e| e.to_string())?;
    let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let user = format!("{CALLER_PREFIX}{i:06}");
    let cid = format!("wl-{}-{i}@webrtcload", std::process::id());
    let from = format!("<sip:{user}@{LOCAL_IP}>;tag=f{i}");
    let body = sdp::render(
        IpAddr::V4(LOCAL_IP),
        rtp_port,
        i as u64 + 1,
        1,
        &[(Codec::Pcmu, PT_PCMU)],
        &[(101, 8000)],
        Direction::SendRecv,
    );
    let req_uri = format!("sip:{}@{server}", args.user);
    let invite = format!(
        "INVITE {req_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-wl-{i}-i;rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <{req_uri}>\r\nCall-ID: {cid}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:{user}@{local}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let invited = Instant::now();
    let _ = sip.send_to(invite.as_bytes(), server).await;
    let mut retx = Some(tokio::time::Instant::now() + Duration::from_millis(500));
    let mut to_value = String::new();
    let mut target = String::new();
    let mut server_rtp: Option<SocketAddr> = None;
    let mut bye: Option<(String, tokio::time::Instant)> = None;
    let mut c2b_sent = Vec::new();
    let mut b2c = Stream::default();
    let mut ssrc_now: Option<u32> = None;
    let mut first_ts = 0u32;
    let (seq0, ts0, ssrc) = (
        rand::random::<u16>(),
        rand::random::<u32>(),
        rand::random::<u32>(),
    );
    sh.result(i).c2b_ts0 = ts0;
    let audio = pcmu_frame();
    let mut pkt = [0u8; 12 + 160];
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sip_buf = vec![0u8; 65535];
    let mut rtp_buf = vec![0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    let mut heard_back = false;
    let finish = |sh: &Shared, c2b_sent: Vec<u64>, b2c: Stream| {
        let mut r = sh.result(i);
        r.c2b.sent_ns = c2b_sent;
        r.b2c.recv = b2c.recv;
    };
    loop {
        let bye_due = if server_rtp.is_some() && bye.is_none() {
            bye_at
        } else {
            far
        };
        let retx_due = retx.unwrap_or(far);
        tokio::select! {
            r = sip.recv_from(&mut sip_buf) => {
                let (n, _) = r.map_err(|e| format!("sip: {e}"))?;
                let Ok(msg) = Message::parse(&sip_buf[..n], Framing::Datagram) else { continue };
                match &msg.start {
                    StartLine::Request { method, .. } => {
                        let code = if *method == Method::Bye { 200 } else { 501 };
                        let _ = sip.send_to(&msg.response(code, "OK", None).to_bytes(), server).await;
                        if *method == Method::Bye {
                            sh.result(i).ended_by_server = true;
                            finish(sh, c2b_sent, b2c);
                            return Ok(());
                        }
                    }
                    StartLine::Response { code, .. } => {
                        let Ok(cseq) = msg.cseq() else { continue };
                        let code = *code;
                        if cseq.method == Method::Bye && code >= 200 {
                            finish(sh, c2b_sent, b2c);
                            return Ok(());
                        }
                        if cseq.method != Method::Invite {
                            continue;
                        }
                        if code < 200 {
                            if server_rtp.is_none() {
                                retx = None;
                            }
                            continue;
                        }
                        let to = msg.header(&HeaderName::To).unwrap_or("").to_string();
                        if code >= 300 {
                            let ack = format!(
                                "ACK {req_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-wl-{i}-i;rport\r\n\
                                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
                            let _ = sip.send_to(ack.as_bytes(), server).await;
                            return Err(format!("INVITE answered {code}"));
                        }
                        if server_rtp.is_none() {
                            let remote = SessionDescription::parse(&msg.body)
                                .ok()
                                .and_then(|sd| sdp::negotiate(&sd, &[Codec::Pcmu]).ok())
                                .ok_or("200 without a usable SDP")?;
                            server_rtp = Some(remote.remote);
                            to_value = to;
                            target = msg.contact().map(|na| na.uri.to_string())
                                .unwrap_or_else(|| format!("sip:{server}"));
                            retx = None;
                            let mut r = sh.result(i);
                            r.answered = true;
                            r.invite_to_200 = Some(invited.elapsed());
                        }
                        let ack = format!(
                            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-wl-{i}-a;rport\r\n\
                             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to_value}\r\nCall-ID: {cid}\r\n\
                             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
                        let _ = sip.send_to(ack.as_bytes(), server).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(retx_due), if retx.is_some() => {
                if invited.elapsed() > STEP_TIMEOUT {
                    return Err("INVITE unanswered".into());
                }
                if let Some((b, _)) = &bye {
                    let _ = sip.send_to(b.as_bytes(), server).await;
                } else {
                    let _ = sip.send_to(invite.as_bytes(), server).await;
                }
                retx = Some(tokio::time::Instant::now() + Duration::from_millis(500));
            }
            _ = tokio::time::sleep_until(bye_due), if server_rtp.is_some() && bye.is_none() => {
                let b = format!(
                    "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-wl-{i}-b;rport\r\n\
                     Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to_value}\r\nCall-ID: {cid}\r\n\
                     CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
                let _ = sip.send_to(b.as_bytes(), server).await;
                let now = tokio::time::Instant::now();
                bye = Some((b, now));
                retx = Some(now + Duration::from_millis(500));
            }
            _ = tick.tick() => {
                if let Some((_, sent)) = &bye {
                    if sent.elapsed() > STEP_TIMEOUT {
                        finish(sh, c2b_sent, b2c);
                        return Err("BYE unanswered".into());
                    }
                    continue;
                }
                let Some(dest) = server_rtp else { continue };
                let k = c2b_sent.len() as u32;
                write_header(&mut pkt, k == 0, PT_PCMU, seq0.wrapping_add(k as u16),
                    ts0.wrapping_add(k.wrapping_mul(160)), ssrc);
                pkt[12..].copy_from_slice(&audio);
                c2b_sent.push(wall_ns());
                let _ = rtp.send_to(&pkt, dest).await;
            }
            r = rtp.readable() => {
                r.map_err(|e| format!("rtp: {e}"))?;
                loop {
                    match recv_stamped(&rtp, &mut rtp_buf, &mut cmsg) {
                        Ok((n, _, at)) => {
                            let Ok(p) = RtpPacket::parse(&rtp_buf[..n]) else { continue };
                            if p.payload_type != PT_PCMU {
                                continue;
                            }
                            // Music on hold comes first from another source; the bridged
                            // browser's stream is the last source heard.
                            if ssrc_now != Some(p.ssrc) {
                                ssrc_now = Some(p.ssrc);
                                first_ts = p.timestamp;
                                b2c.recv.clear();
                            }
                            b2c.recv.push((u64::from(p.timestamp.wrapping_sub(first_ts) / 160), at));
                            if !heard_back && b2c.recv.len() >= 10 && sh.result(i).agent.is_some() {
                                heard_back = true;
                                sh.heard_back.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("rtp: {e}")),
                    }
                }
            }
        }
    }
}

// ---- /proc -----------------------------------------------------------------------------------

struct ProcSample {
    at: Instant,
    rss_kib: u64,
    cpu_ticks: u64,
}

impl ProcSample {
    fn take(pid: u32) -> ProcSample {
        let (rss_kib, cpu_ticks) = procfs::rss_kib_and_cpu_ticks(pid);
        ProcSample {
            at: Instant::now(),
            rss_kib,
            cpu_ticks,
        }
    }
    /// Cores used between two samples (100 ticks per second on Linux).
    fn cores_since(&self, earlier: &ProcSample) -> f64 {
        let secs = (self.at - earlier.at).as_secs_f64().max(1e-3);
        (self.cpu_ticks.saturating_sub(earlier.cpu_ticks)) as f64 / 100.0 / secs
    }
}

// ---- main ------------------------------------------------------------------------------------

fn main() {
    let args = Args::parse();
    assert!(args.calls > 0 && args.threads > 0, "need calls and threads");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let ok = rt.block_on(run(args));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn run(args: Args) -> bool {
    let n = args.calls;
    let sh = Arc::new(Shared {
        results: (0..n).map(|_| Mutex::new(CallResult::default())).collect(),
        args: args.clone(),
        ready: AtomicUsize::new(0),
        not_ready: AtomicUsize::new(0),
        bridged: AtomicUsize::new(0),
        heard_back: AtomicUsize::new(0),
        callers_done: AtomicUsize::new(0),
    });
    let me0 = ProcSample::take(std::process::id());
    // 1. The browsers log in and turn their phones on (a few at a time).
    let stop = CancellationToken::new();
    let mut peers = Vec::with_capacity(n);
    for j in 0..n {
        peers.push(tokio::spawn(browser_peer(sh.clone(), j, stop.clone())));
        if j % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let t_login = Instant::now();
    while sh.ready.load(Ordering::Acquire) + sh.not_ready.load(Ordering::Acquire) < n {
        if t_login.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = sh.ready.load(Ordering::Acquire);
    println!(
        "# {ready}/{n} browser agents logged in with the phone on in {:.1} s",
        t_login.elapsed().as_secs_f64()
    );
    if ready == 0 {
        println!("webrtc_load: FAILED no browser agent could log in");
        return false;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = args.server_pid.map(ProcSample::take);

    // 2. The callers, ramped; every call lasts the ramp plus `hold`.
    let spacing = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let ramp = spacing * n as u32;
    let hold = Duration::from_secs_f64(args.hold);
    let t0 = tokio::time::Instant::now();
    let mut callers = Vec::with_capacity(n);
    {
        let sh = sh.clone();
        callers.push(tokio::spawn(async move {
            let mut hs = Vec::with_capacity(n);
            for i in 0..n {
                tokio::time::sleep_until(t0 + spacing * i as u32).await;
                let bye_at = t0 + spacing * i as u32 + ramp + hold;
                hs.push(tokio::spawn(caller(sh.clone(), i, bye_at)));
            }
            for h in hs {
                let _ = h.await;
            }
        }));
    }
    // 3. The steady window: every call bridged both ways (or the ramp long over), to the
    //    first BYE.
    let first_bye = t0 + ramp + hold;
    let give_up = t0 + ramp + Duration::from_secs(10);
    // RSS with half the calls bridged: the slope to the steady RSS is the memory a call
    // adds, without the one-off costs of the first calls (pools, caches, coder tables).
    let mut half: Option<(usize, ProcSample)> = None;
    loop {
        let now = tokio::time::Instant::now();
        let bridged = sh.bridged.load(Ordering::Acquire);
        if half.is_none() && n >= 2 && bridged >= n / 2 {
            half = args.server_pid.map(|p| (bridged, ProcSample::take(p)));
        }
        let all =
            sh.bridged.load(Ordering::Acquire) >= n && sh.heard_back.load(Ordering::Acquire) >= n;
        if all || now >= give_up.min(first_bye) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let steady_from = tokio::time::Instant::now();
    let s0 = args.server_pid.map(ProcSample::take);
    let me1 = ProcSample::take(std::process::id());
    let mut peak_rss = 0u64;
    let end_sample = first_bye
        .checked_sub(Duration::from_millis(100))
        .unwrap_or(first_bye);
    while tokio::time::Instant::now() < end_sample {
        if let Some(p) = args.server_pid {
            peak_rss = peak_rss.max(ProcSample::take(p).rss_kib);
        }
        tokio::time::sleep(
            Duration::from_millis(200)
                .min(end_sample - tokio::time::Instant::now().min(end_sample)),
        )
        .await;
    }
    let s1 = args.server_pid.map(ProcSample::take);
    let me2 = ProcSample::take(std::process::id());
    let steady_s = steady_from.elapsed().as_secs_f64();
    for c in callers {
        let _ = c.await;
    }
    // The last call-ended events reach the browsers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for p in peers {
        let _ = p.await;
    }
    let me3 = ProcSample::take(std::process::id());
    let server = ServerSamples {
        idle: idle.as_ref(),
        half: half.as_ref().map(|(k, s)| (*k, s)),
        steady: s0.as_ref().zip(s1.as_ref()),
        peak_rss,
    };
    report(&sh, &server, steady_s, (&me0, &me1, &me2, &me3))
}

fn quantiles(v: &mut [u64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e6;
    (q(0.5), q(0.99), v[v.len() - 1] as f64 / 1e6)
}

/// The server's /proc samples: idle (agents logged in, no call), with half the calls
/// bridged (how many), the steady window's two ends, the highest RSS seen in it.
struct ServerSamples<'a> {
    idle: Option<&'a ProcSample>,
    half: Option<(usize, &'a ProcSample)>,
    steady: Option<(&'a ProcSample, &'a ProcSample)>,
    peak_rss: u64,
}

fn report(
    sh: &Shared,
    server: &ServerSamples,
    steady_s: f64,
    me: (&ProcSample, &ProcSample, &ProcSample, &ProcSample),
) -> bool {
    let args = &sh.args;
    let n = args.calls;
    let (mut answered, mut both_ways, mut by_server, mut failed) = (0, 0, 0, 0);
    let (mut c2b_all, mut b2c_all) = (Vec::new(), Vec::new());
    let (mut c2b_lost, mut b2c_lost, mut c2b_rx, mut b2c_rx) = (0u64, 0u64, 0usize, 0usize);
    let (mut connect, mut first_audio, mut answer_rtt, mut setup) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let (mut ts_checked, mut ts_agree) = (0usize, 0usize);
    for i in 0..n {
        let r = sh.result(i);
        let c2b = r.c2b.figures();
        let b2c = r.b2c.figures();
        answered += usize::from(r.answered);
        by_server += usize::from(r.ended_by_server);
        let ok = r.agent.is_some() && c2b.received >= 10 && b2c.received >= 10;
        if let (CodecArg::Pcmu, Some(first), Some(d)) = (args.codec, r.c2b_first_rx, c2b.offset) {
            // Passed through, the browser's first timestamp is the caller's packet's own.
            let exact = (first as u32).wrapping_sub(r.c2b_ts0) / 160;
            ts_checked += 1;
            ts_agree += usize::from(i64::from(exact) == d);
        }
        both_ways += usize::from(ok);
        if let Some(f) = &r.failed {
            failed += 1;
            *reasons.entry(f.clone()).or_default() += 1;
        } else if !ok {
            let why = if r.agent.is_none() {
                "no browser paired"
            } else {
                "audio missing one way"
            };
            *reasons.entry(why.to_string()).or_default() += 1;
        }
        if let Some(d) = r.to_connected {
            connect.push(d.as_nanos() as u64);
        }
        if let Some(d) = r.to_first_audio {
            first_audio.push(d.as_nanos() as u64);
        }
        if let Some(d) = r.answer_rtt {
            answer_rtt.push(d.as_nanos() as u64);
        }
        if let Some(d) = r.invite_to_200 {
            setup.push(d.as_nanos() as u64);
        }
        if args.per_call {
            let (c50, c99, cmax) = quantiles(&mut c2b.delays_ns.clone());
            let (b50, b99, bmax) = quantiles(&mut b2c.delays_ns.clone());
            println!(
                "call {i} agent {} answer {:.1} ms connected {:.1} ms first audio {:.1} ms | \
                 caller->browser rx {} lost {} p50/p99/max {c50:.2}/{c99:.2}/{cmax:.2} ms | \
                 browser->caller rx {} lost {} p50/p99/max {b50:.2}/{b99:.2}/{bmax:.2} ms{}",
                r.agent.map_or("-".to_string(), |a| agent_name(args, a)),
                r.answer_rtt.map_or(f64::NAN, ms),
                r.to_connected.map_or(f64::NAN, ms),
                r.to_first_audio.map_or(f64::NAN, ms),
                c2b.received,
                c2b.lost,
                b2c.received,
                b2c.lost,
                r.failed
                    .as_deref()
                    .map_or(String::new(), |f| format!(" FAILED {f}")),
            );
        }
        c2b_lost += c2b.lost;
        b2c_lost += b2c.lost;
        c2b_rx += c2b.received;
        b2c_rx += b2c.received;
        c2b_all.extend(c2b.delays_ns);
        b2c_all.extend(b2c.delays_ns);
    }
    let codec = match args.codec {
        CodecArg::Pcmu => "pcmu (pass-through)",
        CodecArg::Opus => "opus (transcoded)",
    };
    println!(
        "# {n} calls, codec {codec}, ramp {} /s, steady window {steady_s:.1} s",
        args.rate
    );
    println!(
        "calls: answered {answered}/{n}, bridged with audio both ways {both_ways}/{n}, \
         failed {failed}, ended by the server {by_server}"
    );
    for (why, k) in &reasons {
        println!("  not bridged: {k} x {why}");
    }
    let (s50, s99, smax) = quantiles(&mut setup);
    println!("caller INVITE -> 200 (queue + ring + page answer): p50 {s50:.1} ms, p99 {s99:.1} ms, max {smax:.1} ms");
    let (a50, a99, amax) = quantiles(&mut answer_rtt);
    println!(
        "POST /api/agent/answer round trip: p50 {a50:.1} ms, p99 {a99:.1} ms, max {amax:.1} ms"
    );
    let (k50, k99, kmax) = quantiles(&mut connect);
    println!("answer applied -> ICE + DTLS connected: p50 {k50:.1} ms, p99 {k99:.1} ms, max {kmax:.1} ms");
    let (f50, f99, fmax) = quantiles(&mut first_audio);
    println!(
        "answer applied -> first audio from the caller (target p99 <= 300 ms): p50 {f50:.1} ms, \
         p99 {f99:.1} ms, max {fmax:.1} ms"
    );
    if ts_checked > 0 {
        println!(
            "alignment cross-check (PCMU keeps the caller's timestamps): {ts_agree}/{ts_checked} calls agree"
        );
    }
    let (c50, c99, cmax) = quantiles(&mut c2b_all);
    println!(
        "relay caller -> browser: {c2b_rx} packets, {c2b_lost} lost; delay p50 {c50:.2} ms, \
         p99 {c99:.2} ms, max {cmax:.2} ms (target p99 <= 5 ms)"
    );
    let (b50, b99, bmax) = quantiles(&mut b2c_all);
    println!(
        "relay browser -> caller: {b2c_rx} packets, {b2c_lost} lost; delay p50 {b50:.2} ms, \
         p99 {b99:.2} ms, max {bmax:.2} ms (target p99 <= 5 ms)"
    );
    let (mut kib_per_call, mut pct_per_call) = (f64::NAN, f64::NAN);
    if let (Some(idle), Some((s0, s1))) = (server.idle, server.steady) {
        let cores = s1.cores_since(s0);
        let calls = both_ways.max(1) as f64;
        let peak = s1.rss_kib.max(server.peak_rss);
        kib_per_call = (peak as f64 - idle.rss_kib as f64) / calls;
        pct_per_call = cores * 100.0 / calls;
        println!(
            "server: RSS idle {} KiB (agents logged in, no call), steady {} KiB, peak {peak} KiB \
             -> {kib_per_call:.1} KiB per call (target <= 150)",
            idle.rss_kib, s1.rss_kib,
        );
        if let Some((k, h)) = server.half.filter(|(k, _)| both_ways > *k) {
            println!(
                "server: RSS with {k} calls bridged {} KiB -> {:.1} KiB per added call (the slope, \
                 without the first calls' one-off costs)",
                h.rss_kib,
                (peak as f64 - h.rss_kib as f64) / (both_ways - k) as f64
            );
        }
        println!(
            "server: CPU over the steady window {cores:.3} cores -> {pct_per_call:.3} % of a core per call"
        );
    }
    println!(
        "tool: CPU {:.3} cores over the steady window, {:.2} s in all",
        me.2.cores_since(me.1),
        (me.3.cpu_ticks.saturating_sub(me.0.cpu_ticks)) as f64 / 100.0
    );
    println!(
        "webrtc_load: calls={n} codec={} bridged={both_ways} c2b_p99_ms={c99:.2} b2c_p99_ms={b99:.2} \
         lost={} dtls_first_audio_p99_ms={f99:.1} kib_per_call={kib_per_call:.1} cpu_pct_per_call={pct_per_call:.3}",
        match args.codec {
            CodecArg::Pcmu => "pcmu",
            CodecArg::Opus => "opus",
        },
        c2b_lost + b2c_lost
    );
    both_ways == n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_finds_the_offset_and_the_delays() {
        // Sent every 20 ms from 1 s; the receiver saw packets 5.. as its 0.., 2 ms late, one lost.
        let sent: Vec<u64> = (0..50).map(|k| 1_000_000_000 + k * 20_000_000).collect();
        let recv: Vec<(u64, u64)> = (0..40)
            .filter(|&j| j != 7)
            .map(|j| (j, sent[(j + 5) as usize] + 2_000_000))
            .collect();
        let f = Stream {
            sent_ns: sent,
            recv,
        }
        .figures();
        assert_eq!(f.received, 39);
        assert_eq!(f.lost, 1);
        assert!(
            f.delays_ns.iter().all(|&d| d == 2_000_000),
            "{:?}",
            f.delays_ns
        );
    }

    #[test]
    fn sse_lines_across_reads_and_chunks() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b"3a\r\nevent: incoming-call\ndata: {\"call_id\"", &mut out);
        assert!(out.is_empty());
        p.feed(b":\"c1\"}\n\n\r\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "incoming-call");
        assert_eq!(out[0].1["call_id"], "c1");
        assert_eq!(caller_index("+4990000007"), Some(7));
    }
}
