//! The per-call media core (sans-IO): RTP out on a fixed 20 ms grid, RTP in with symmetric
//! latching (RFC 4961), RFC 4733 digit extraction and the media inactivity timer.
//!
//! Inputs: `handle_datagram(now, bytes, source)`, `play`/`stop_playback`.
//! Outputs: `poll_transmit(now, buf)` (a packet to send and where), `poll_event()`
//! (digits, end of playback, media timeout) and `poll_timeout()` (the next instant anything
//! can happen). Time is only ever passed in, so tests run in virtual time.
//!
//! Packets are scheduled at `start + k·20 ms`, never `now + 20 ms`, so send jitter does not
//! accumulate into drift; the RTP timestamp is `base + k·step` with the codec's 20 ms step
//! at its RTP clock (160 for G.711 and G.722 — RFC 3551 §4.5.2 clocks G.722 at 8000 —
//! and 960 for Opus at 48000, RFC 7587 §4.1).
//!
//! Received audio is decoded (into a stack buffer, by the leg's own decoder) only when
//! something listens: in-band DTMF (waveform codecs without telephone-event), AMD, or a
//! recording of the leg. Those listeners get the audio through a small jitter/reorder buffer
//! ([`super::jitter`]: in order, duplicates and late packets dropped, gaps given up after
//! 60 ms); RFC 4733 events do not go through it (they carry their own redundancy and are
//! de-duplicated by timestamp).
//!
//! RTCP (RFC 3550): every received RTP packet updates the receive statistics (loss,
//! extended highest sequence, A.8 jitter); `poll_rtcp` emits an SR (when we sent RTP since
//! the last report) or RR every ~5 s (randomized 0.5–1.5×, the first after ~2.5 s) for the
//! RTCP port (RTP port + 1 of the peer, or the address its RTCP comes from); `handle_rtcp`
//! takes the peer's SR/RR (LSR/DLSR for our reports, its view of our stream, the RTT), and
//! `rtcp_bye` writes the final report with a BYE at hangup.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::amd::{Amd, AmdConfig, AmdResult};
use super::codec::{self, Codec, Decoder};
use super::dtmf_inband::InbandDetector;
use super::jitter::{Insert, JitterBuffer, JitterStats};
use super::player::{FillResult, PlayItem, Player};
use super::rtcp::{self, NtpClock, RtcpPacket, RxStats};
use super::rtp::{self, RtpPacket};
use super::telephone_event::EventReceiver;
use super::voicemail_cue::{Cue, CueConfig, CueDetector};

pub const FRAME: Duration = Duration::from_millis(20);
/// 8 kHz samples per 20 ms frame (the internal audio rate).
pub const SAMPLES_PER_FRAME: usize = 160;
/// Largest packet we build: header + the largest 20 ms payload (an Opus packet; G.711 and
/// G.722 are 160 octets).
pub const MAX_PACKET: usize = rtp::HEADER_LEN + codec::opus::MAX_ENCODED;
/// Falling further behind than this re-anchors the grid instead of bursting packets.
const MAX_LAG_FRAMES: u64 = 5;
/// The RTCP report interval before randomization (RFC 3550 §6.2: the 5 s minimum, which is
/// what a two-party call gets); the first report comes after half of it.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    Digit(char),
    /// The playlist started with this id has played to its end.
    PlaybackFinished(u32),
    MediaTimeout,
    /// Answering-machine detection reached a verdict (outbound calls that asked for it).
    Amd(AmdResult),
    /// An answering machine's greeting is over (its beep, a silence, or the wait ran out):
    /// time to leave the message ([`MediaSession::start_voicemail_cue`]).
    VoicemailCue(Cue),
}

#[derive(Debug, Clone, Copy)]
pub struct MediaParams {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    pub remote: SocketAddr,
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    pub media_timeout: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct MediaStats {
    pub packets_sent: u64,
    /// Payload octets sent (the SR's octet count).
    pub octets_sent: u64,
    pub packets_received: u64,
    pub late_frames: u64,
    pub ignored_packets: u64,
    /// Received stream, from the sequence numbers (RFC 3550 A.3): expected − received.
    pub lost: u64,
    /// Received copies of a packet already received (within the last 64 numbers).
    pub duplicates: u64,
    /// Packets that arrived after a higher-numbered one.
    pub reordered: u64,
    /// Packets that arrived after the jitter buffer gave up on them (audio listeners only).
    pub late: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    /// RTCP datagrams that did not parse (or parts of them).
    pub rtcp_ignored: u64,
}

/// What the peer's RTCP reports say about the stream we send (the last report, and the worst
/// seen), and the round-trip time computed from them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemoteReport {
    /// Report blocks about our SSRC received.
    pub reports: u64,
    /// Sender reports received (the peer sends media).
    pub sender_reports: u64,
    pub fraction_lost: u8,
    pub max_fraction_lost: u8,
    pub cumulative_lost: i32,
    /// Interarrival jitter the peer measured, in our RTP timestamp units.
    pub jitter: u32,
    pub max_jitter: u32,
    pub rtt: Option<Duration>,
    pub max_rtt: Option<Duration>,
    /// The peer sent an RTCP BYE.
    pub bye: bool,
}

#[derive(Debug)]
struct RtcpState {
    clock: NtpClock,
    next_at: Instant,
    rng: u32,
    /// RTP packets sent since the last report: SR, else RR.
    sent_since_report: bool,
    /// Middle 32 bits of the last SR received and when it arrived (for LSR/DLSR).
    last_sr: Option<(u32, Instant)>,
    /// Where the peer's RTCP comes from (symmetric RTCP, like RTP latching).
    latched: Option<SocketAddr>,
    remote: RemoteReport,
}

impl RtcpState {
    fn new(now: Instant, ssrc: u32) -> RtcpState {
        let mut st = RtcpState {
            clock: NtpClock::new(now, SystemTime::now()),
            next_at: now,
            rng: ssrc ^ 0x9E37_79B9,
            sent_since_report: false,
            last_sr: None,
            latched: None,
            remote: RemoteReport::default(),
        };
        if st.rng == 0 {
            st.rng = 1;
        }
        st.next_at = now + st.interval(RTCP_INTERVAL / 2);
        st
    }

    /// `base` × a factor uniform in [0.5, 1.5) (RFC 3550 §6.3.1), from a per-session
    /// xorshift so tests are deterministic and no global RNG is touched.
    fn interval(&mut self, base: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        base.mul_f64(0.5 + (x % 1000) as f64 / 1000.0)
    }
}

#[derive(Debug)]
pub struct MediaSession {
    params: MediaParams,
    remote: SocketAddr,
    latched: Option<SocketAddr>,
    anchor: Instant,
    frame_index: u64,
    seq: u16,
    marker_next: bool,
    sending: bool,
    last_rx: Instant,
    player: Player,
    play_id: u32,
    events: EventReceiver,
    /// In-band (Goertzel) detection, only when no telephone-event was negotiated, so a
    /// phone that sends both never has a key counted twice.
    inband: Option<Box<InbandDetector>>,
    amd: Option<Box<Amd>>,
    /// Listening for the end of a machine's greeting (after an AMD `Machine` verdict).
    cue: Option<Box<CueDetector>>,
    /// The received stream's decoder, created with the session (G.722/Opus state).
    decoder: Option<Decoder>,
    /// Record what the peer sends (a dialplan `record` step), channel 0.
    recorder: Option<super::recorder::Recorder>,
    /// Voice in what is being recorded (a `record` step may drop a message without speech).
    speech: Option<Box<super::speech::SpeechMeter>>,
    pending: VecDeque<MediaEvent>,
    timed_out: bool,
    expect_rx: bool,
    /// Reorder buffer in front of the audio listeners; created with the first listener.
    jitter: Option<Box<JitterBuffer>>,
    rx: RxStats,
    rtcp: RtcpState,
    pub stats: MediaStats,
    /// What of `stats` was added to the process's metrics (once a second and at drop).
    metrics: crate::metrics::RtpFlush,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        let s = &self.stats;
        self.metrics
            .flush(s.packets_sent, s.packets_received, s.late);
    }
}

impl MediaSession {
    pub fn new(now: Instant, params: MediaParams) -> MediaSession {
        let mut s = MediaSession {
            remote: params.remote,
            latched: None,
            anchor: now,
            frame_index: 0,
            seq: params.initial_seq,
            marker_next: true,
            sending: !params.remote.ip().is_unspecified() && params.remote.port() != 0,
            last_rx: now,
            player: Player::default(),
            play_id: 0,
            events: EventReceiver::default(),
            amd: None,
            cue: None,
            inband: (params.telephone_event.is_none() && params.codec.carries_inband_dtmf())
                .then(|| Box::new(InbandDetector::new())),
            // libopus can only fail to create a decoder on bad arguments or out of memory;
            // then nothing is decoded (no AMD/in-band/recording) but the call goes on.
            decoder: Decoder::new(params.codec).ok(),
            recorder: None,
            speech: None,
            pending: VecDeque::with_capacity(8),
            timed_out: false,
            expect_rx: true,
            jitter: None,
            rx: RxStats::default(),
            rtcp: RtcpState::new(now, params.ssrc),
            stats: MediaStats::default(),
            metrics: crate::metrics::RtpFlush::new(now),
            params,
        };
        if s.inband.is_some() {
            s.ensure_jitter(now);
        }
        s
    }

    /// The reorder buffer, sized for the codec's largest payload (G.711/G.722 up to 120 ms
    /// = 960 octets; Opus up to 1275 octets per RFC 6716 §3.4, rounded up).
    fn ensure_jitter(&mut self, now: Instant) {
        if self.jitter.is_none() {
            let max = match self.params.codec {
                Codec::Opus => 1280,
                _ => codec::MAX_DECODED_8K,
            };
            self.jitter = Some(Box::new(JitterBuffer::new(
                max,
                self.params.codec.clock_rate(),
                now,
            )));
        }
    }

    /// The reorder buffer's counters, if audio listeners ever ran.
    pub fn jitter_stats(&self) -> Option<JitterStats> {
        self.jitter.as_ref().map(|j| j.stats)
    }

    /// Receive statistics of the peer's stream (RFC 3550 A.1/A.8).
    pub fn receive_stats(&self) -> &RxStats {
        &self.rx
    }

    /// What the peer's RTCP says about our stream.
    pub fn remote_report(&self) -> RemoteReport {
        self.rtcp.remote
    }

    /// Pin the wall clock that NTP timestamps are computed from (tests).
    pub fn set_wall_clock(&mut self, at: Instant, wall: SystemTime) {
        self.rtcp.clock = NtpClock::new(at, wall);
    }

    /// One line for the call's events: our side's view of the received stream.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "sent={} received={} lost={} duplicates={} reordered={} late={} jitter_ms={:.1} rtcp_sent={} rtcp_received={}",
            s.packets_sent,
            s.packets_received,
            s.lost,
            s.duplicates,
            s.reordered,
            s.late,
            self.ts_to_ms(self.rx.jitter_ts()),
            s.rtcp_sent,
            s.rtcp_received,
        )
    }

    /// One line for the call's events: the peer's reports about our stream, or None when it
    /// sent none.
    pub fn remote_summary(&self) -> Option<String> {
        let r = &self.rtcp.remote;
        if r.reports == 0 && r.sender_reports == 0 && !r.bye {
            return None;
        }
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_string(),
                |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
            )
        };
        Some(format!(
            "reports={} sender_reports={} fraction_lost={:.3} max_fraction_lost={:.3} cumulative_lost={} jitter_ms={:.1} max_jitter_ms={:.1} rtt_ms={} max_rtt_ms={} bye={}",
            r.reports,
            r.sender_reports,
            r.fraction_lost as f64 / 256.0,
            r.max_fraction_lost as f64 / 256.0,
            r.cumulative_lost,
            self.ts_to_ms(r.jitter),
            self.ts_to_ms(r.max_jitter),
            ms(r.rtt),
            ms(r.max_rtt),
            r.bye,
        ))
    }

    fn ts_to_ms(&self, ticks: u32) -> f64 {
        ticks as f64 * 1000.0 / self.params.codec.clock_rate() as f64
    }

    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    /// Re-negotiated media (re-INVITE): new remote or hold state, same SSRC and sequence.
    pub fn update_remote(&mut self, remote: SocketAddr, sending: bool) {
        self.remote = remote;
        self.latched = None;
        self.sending = sending && !remote.ip().is_unspecified() && remote.port() != 0;
    }

    /// Start a playlist, replacing any current one; its end is reported with `id`.
    ///
    /// The first packet of the playlist carries the RTP marker bit: a new prompt is a new
    /// talkspurt (RFC 3551 §4.1), so a receiver can re-align its jitter buffer, and a test
    /// can see exactly when the prompt started (key press → prompt latency).
    pub fn play(&mut self, id: u32, items: Vec<PlayItem>, looping: bool) {
        self.play_id = id;
        self.marker_next = true;
        self.player.play(items, looping);
    }

    /// Start answering-machine detection on the audio the peer sends from now on.
    pub fn start_amd(&mut self, config: &AmdConfig) {
        self.amd = Amd::new(config).ok().map(Box::new);
        if self.amd.is_some() {
            self.ensure_jitter(self.last_rx);
        }
    }

    /// Listen for the end of an answering machine's greeting (its beep) from now on.
    pub fn start_voicemail_cue(&mut self, config: &CueConfig) {
        self.cue = Some(Box::new(CueDetector::new(config)));
        self.ensure_jitter(self.last_rx);
    }

    /// Stop listening for the greeting's end (the message started on the clock's bound).
    pub fn stop_voicemail_cue(&mut self) {
        self.cue = None;
    }

    /// Record (or stop recording, `None`) the decoded audio the peer sends. A new recording
    /// also starts counting its voice ([`MediaSession::recorded_speech`]).
    pub fn set_recorder(&mut self, recorder: Option<super::recorder::Recorder>) {
        if recorder.is_some() {
            self.ensure_jitter(self.last_rx);
            self.speech = Some(Box::default());
        }
        self.recorder = recorder;
    }

    /// The voice in the audio recorded since the last [`MediaSession::set_recorder`] with a
    /// recorder (None if nothing was ever recorded).
    pub fn recorded_speech(&self) -> Option<super::speech::Speech> {
        self.speech.as_ref().map(|m| m.measure())
    }

    pub fn stop_playback(&mut self) {
        self.player.stop();
    }

    pub fn is_playing(&self) -> bool {
        self.player.is_playing()
    }

    /// The id of the playlist being played, if any.
    pub fn current_playlist(&self) -> Option<u32> {
        self.is_playing().then_some(self.play_id)
    }

    /// Where packets go now: the latched source if any, else the SDP address.
    pub fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.remote)
    }

    pub fn handle_datagram(&mut self, now: Instant, data: &[u8], source: SocketAddr) {
        if rtp::is_rtcp(data) {
            // RTCP on the RTP port (a peer multiplexing, RFC 5761): take it as RTCP.
            self.handle_rtcp(now, data, source);
            return;
        }
        let Ok(pkt) = RtpPacket::parse(data) else {
            self.stats.ignored_packets += 1;
            return;
        };
        // Symmetric RTP: follow the peer's real source (NAT), but only from a packet that is
        // plausibly this stream's, so a stray datagram cannot steal the media.
        let known_pt = pkt.payload_type == self.params.payload_type
            || Some(pkt.payload_type) == self.params.telephone_event;
        if !known_pt {
            self.stats.ignored_packets += 1;
            return;
        }
        if self.latched != Some(source) {
            let stale = now.saturating_duration_since(self.last_rx) > Duration::from_secs(2);
            if self.latched.is_none() || stale {
                self.latched = Some(source);
            } else {
                self.stats.ignored_packets += 1;
                return;
            }
        }
        self.last_rx = now;
        self.stats.packets_received += 1;
        let is_event = Some(pkt.payload_type) == self.params.telephone_event;
        // Arrival time in the stream's timestamp units (origin: session start) for A.8.
        let arrival_ts = (now.saturating_duration_since(self.anchor).as_micros() as u64
            * self.params.codec.clock_rate() as u64
            / 1_000_000) as u32;
        self.rx.on_packet(
            pkt.ssrc,
            pkt.sequence,
            arrival_ts,
            (!is_event).then_some(pkt.timestamp),
        );
        self.stats.lost = self.rx.lost();
        self.stats.duplicates = self.rx.duplicates;
        self.stats.reordered = self.rx.reordered;
        if is_event {
            if let Some(d) = self
                .events
                .handle_packet(pkt.ssrc, pkt.timestamp, pkt.payload)
            {
                self.pending.push_back(MediaEvent::Digit(d));
            }
        } else if self.inband.is_some()
            || self.amd.is_some()
            || self.cue.is_some()
            || self.recorder.is_some()
        {
            // Bounded: each `Full` round releases or gives up at least one buffered number
            // (or resynchronises), after which the packet fits.
            for _ in 0..=jitter_rounds() {
                let Some(jb) = self.jitter.as_mut() else {
                    return;
                };
                match jb.insert(now, pkt.ssrc, pkt.sequence, pkt.timestamp, pkt.payload) {
                    Insert::Full => self.drain_jitter(now),
                    Insert::Late => {
                        self.stats.late += 1;
                        break;
                    }
                    Insert::Oversize => {
                        self.stats.ignored_packets += 1;
                        break;
                    }
                    Insert::Buffered | Insert::Duplicate => break,
                }
            }
            self.drain_jitter(now);
        }
    }

    /// Release what the reorder buffer lets go at `now` to the audio listeners: decoded into
    /// a stack buffer (no allocation on the per-packet path); a corrupt payload is counted
    /// and skipped.
    fn drain_jitter(&mut self, now: Instant) {
        let MediaSession {
            jitter,
            decoder,
            inband,
            amd,
            cue,
            recorder,
            speech,
            pending,
            stats,
            ..
        } = self;
        let Some(jb) = jitter.as_mut() else {
            return;
        };
        while let Some(f) = jb.pop(now) {
            let Some(decoder) = decoder.as_mut() else {
                continue;
            };
            let mut pcm = [0i16; codec::MAX_DECODED_8K];
            let Ok(n) = decoder.decode_8k(f.payload, &mut pcm) else {
                stats.ignored_packets += 1;
                continue;
            };
            if let Some(rec) = recorder.as_ref() {
                // Placed by its playout time, so reordered audio lands where it belongs.
                rec.push_pcm(f.play_at, 0, &pcm[..n]);
                if let Some(m) = speech.as_mut() {
                    m.process(&pcm[..n]);
                }
            }
            for frame in pcm[..n].chunks(SAMPLES_PER_FRAME) {
                if let Some(det) = inband.as_mut() {
                    if let Some(d) = det.process(frame) {
                        pending.push_back(MediaEvent::Digit(d));
                    }
                }
                if let Some(a) = amd.as_mut() {
                    if let Some(r) = a.process(frame) {
                        pending.push_back(MediaEvent::Amd(r));
                        *amd = None;
                    }
                }
                if let Some(c) = cue.as_mut() {
                    if let Some(r) = c.process(frame) {
                        pending.push_back(MediaEvent::VoicemailCue(r));
                        *cue = None;
                    }
                }
            }
        }
    }

    /// Take one RTCP datagram (compound SR/RR/SDES/BYE) from the peer. Malformed parts are
    /// counted and the rest of that datagram is ignored; nothing here can fail the call.
    pub fn handle_rtcp(&mut self, now: Instant, data: &[u8], source: SocketAddr) {
        let mut any = false;
        let mut bad = false;
        let ours = self.params.ssrc;
        let arrival = rtcp::ntp_middle(self.rtcp.clock.ntp(now));
        for p in rtcp::parse_compound(data) {
            let p = match p {
                Ok(p) => p,
                Err(_) => {
                    bad = true;
                    break;
                }
            };
            any = true;
            let reports = match p {
                RtcpPacket::Sr {
                    ssrc, ntp, reports, ..
                } => {
                    if self.rx.ssrc.is_none_or(|s| s == ssrc) {
                        self.rtcp.last_sr = Some((rtcp::ntp_middle(ntp), now));
                    }
                    self.rtcp.remote.sender_reports += 1;
                    Some(reports)
                }
                RtcpPacket::Rr { reports, .. } => Some(reports),
                RtcpPacket::Bye { .. } => {
                    self.rtcp.remote.bye = true;
                    None
                }
                RtcpPacket::Sdes { .. } | RtcpPacket::Other { .. } => None,
            };
            for b in reports
                .iter()
                .flat_map(|r| r.iter())
                .filter(|b| b.ssrc == ours)
            {
                let r = &mut self.rtcp.remote;
                r.reports += 1;
                r.fraction_lost = b.fraction_lost;
                r.max_fraction_lost = r.max_fraction_lost.max(b.fraction_lost);
                r.cumulative_lost = b.cumulative_lost;
                r.jitter = b.jitter;
                r.max_jitter = r.max_jitter.max(b.jitter);
                if let Some(rtt) = rtcp::rtt(arrival, &b) {
                    r.rtt = Some(rtt);
                    r.max_rtt = Some(r.max_rtt.map_or(rtt, |m| m.max(rtt)));
                }
            }
        }
        if any {
            self.stats.rtcp_received += 1;
            self.rtcp.latched = Some(source);
        }
        if bad || !any {
            self.stats.rtcp_ignored += 1;
        }
    }

    /// Where RTCP goes: where the peer's RTCP comes from, else its RTP address + 1
    /// (RFC 3550 §11; we never answer `a=rtcp-mux`, so the peer uses separate ports).
    pub fn rtcp_destination(&self) -> SocketAddr {
        self.rtcp.latched.unwrap_or_else(|| {
            let d = self.destination();
            SocketAddr::new(d.ip(), d.port().wrapping_add(1))
        })
    }

    fn build_rtcp(&mut self, now: Instant, buf: &mut [u8; rtcp::MAX_COMPOUND], bye: bool) -> usize {
        let sender = self.rtcp.sent_since_report.then(|| {
            let ticks = now.saturating_duration_since(self.anchor).as_micros() as u64
                * self.params.codec.clock_rate() as u64
                / 1_000_000;
            rtcp::SenderInfo {
                ntp: self.rtcp.clock.ntp(now),
                rtp_timestamp: self.params.initial_ts.wrapping_add(ticks as u32),
                packet_count: self.stats.packets_sent as u32,
                octet_count: self.stats.octets_sent as u32,
            }
        });
        let (lsr, dlsr) = self.rtcp.last_sr.map_or((0, 0), |(lsr, at)| {
            (lsr, rtcp::to_short(now.saturating_duration_since(at)))
        });
        let block = self.rx.report(lsr, dlsr);
        self.rtcp.sent_since_report = false;
        self.stats.rtcp_sent += 1;
        rtcp::write_compound(buf, self.params.ssrc, sender, block, bye)
    }

    /// When a report is due: write it into `buf` and say where it goes.
    pub fn poll_rtcp(
        &mut self,
        now: Instant,
        buf: &mut [u8; rtcp::MAX_COMPOUND],
    ) -> Option<(usize, SocketAddr)> {
        if now < self.rtcp.next_at || self.destination().port() == 0 {
            return None;
        }
        self.rtcp.next_at = now + self.rtcp.interval(RTCP_INTERVAL);
        let n = self.build_rtcp(now, buf, false);
        Some((n, self.rtcp_destination()))
    }

    /// The last report, with a BYE (RFC 3550 §6.6), for the end of the call.
    pub fn rtcp_bye(
        &mut self,
        now: Instant,
        buf: &mut [u8; rtcp::MAX_COMPOUND],
    ) -> Option<(usize, SocketAddr)> {
        if self.destination().port() == 0 {
            return None;
        }
        let n = self.build_rtcp(now, buf, true);
        Some((n, self.rtcp_destination()))
    }

    fn next_send_at(&self) -> Instant {
        self.anchor + FRAME * (self.frame_index as u32)
    }

    /// When called at or after the next send slot, write one packet into `buf` and return its
    /// length and destination.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_PACKET],
    ) -> Option<(usize, SocketAddr)> {
        let due = self.next_send_at();
        if now < due {
            return None;
        }
        // Per-packet counts stay in `stats`; the shared counters see them once a second.
        let s = &self.stats;
        self.metrics
            .maybe(now, s.packets_sent, s.packets_received, s.late);
        // The send tick also lets the reorder buffer give up on gaps (60 ms wait, checked
        // every 20 ms: no extra wake-ups).
        if self.jitter.as_ref().is_some_and(|j| !j.is_empty()) {
            self.drain_jitter(now);
        }
        let behind = (now - due).as_micros() / FRAME.as_micros();
        if behind as u64 > MAX_LAG_FRAMES {
            // Overloaded or suspended: skip the missed slots rather than burst them; the RTP
            // timestamp still advances by the samples that elapsed.
            self.stats.late_frames += behind as u64;
            self.frame_index += behind as u64;
        }
        let k = self.frame_index;
        self.frame_index += 1;
        let (result, len) = self
            .player
            .fill(self.params.codec, &mut buf[rtp::HEADER_LEN..]);
        if result == FillResult::Finished {
            self.pending
                .push_back(MediaEvent::PlaybackFinished(self.play_id));
        }
        if !self.sending {
            return None;
        }
        let ts = self
            .params
            .initial_ts
            .wrapping_add((k as u32).wrapping_mul(self.params.codec.timestamp_step()));
        rtp::write_header(
            buf,
            self.marker_next,
            self.params.payload_type,
            self.seq,
            ts,
            self.params.ssrc,
        );
        self.marker_next = false;
        self.seq = self.seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.octets_sent += len as u64;
        self.rtcp.sent_since_report = true;
        Some((rtp::HEADER_LEN + len, self.destination()))
    }

    pub fn poll_event(&mut self, now: Instant) -> Option<MediaEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        if !self.timed_out
            && self.expect_rx
            && now.saturating_duration_since(self.last_rx) >= self.params.media_timeout
        {
            self.timed_out = true;
            return Some(MediaEvent::MediaTimeout);
        }
        None
    }

    /// Whether the peer is expected to send (not when it put the call on hold with
    /// `inactive`, or asked us to only send), so hold does not trip the inactivity timer.
    pub fn set_expect_rx(&mut self, now: Instant, expect: bool) {
        self.expect_rx = expect;
        self.last_rx = now;
        self.timed_out = false;
    }

    pub fn poll_timeout(&self) -> Instant {
        let send = self.next_send_at().min(self.rtcp.next_at);
        if self.timed_out || !self.expect_rx {
            return send;
        }
        send.min(self.last_rx + self.params.media_timeout)
    }
}

/// Upper bound of insert attempts for one packet: each `Full` is followed by a drain that
/// makes progress, and a window's worth of drains always makes room.
const fn jitter_rounds() -> usize {
    super::jitter::DEPTH + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::prompts::Prompt;
    use std::sync::Arc;

    fn params() -> MediaParams {
        MediaParams {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote: "127.0.0.1:4000".parse().expect("addr"),
            ssrc: 0x1234,
            initial_seq: 65534,
            initial_ts: 1000,
            media_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn sends_on_a_fixed_grid_with_sample_timestamps() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        let mut buf = [0u8; MAX_PACKET];
        let mut seen = Vec::new();
        // Wake up with jitter: each wake is 0..7 ms late; the grid must not drift.
        for k in 0..100u32 {
            let now = t0 + FRAME * k + Duration::from_millis((k % 8) as u64);
            assert_eq!(s.poll_timeout(), t0 + FRAME * k);
            let (len, to) = s.poll_transmit(now, &mut buf).expect("due");
            assert_eq!((len, to.port()), (rtp::HEADER_LEN + 160, 4000));
            let p = RtpPacket::parse(&buf[..len]).expect("rtp");
            seen.push((p.sequence, p.timestamp, p.marker));
            assert!(
                s.poll_transmit(now, &mut buf).is_none(),
                "one packet per slot"
            );
        }
        assert_eq!(seen[0], (65534, 1000, true));
        assert_eq!(seen[2], (0, 1320, false));
        assert_eq!(seen[99].1, 1000 + 99 * 160);
    }

    #[test]
    fn skips_instead_of_bursting_when_far_behind() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        let mut buf = [0u8; MAX_PACKET];
        s.poll_transmit(t0, &mut buf).expect("first");
        let late = t0 + Duration::from_millis(500);
        s.poll_transmit(late, &mut buf).expect("late");
        let p = RtpPacket::parse(&buf).expect("rtp");
        assert_eq!(p.timestamp, 1000 + 25 * 160);
        assert!(s.poll_transmit(late, &mut buf).is_none());
        assert_eq!(s.stats.late_frames, 24);
    }

    fn event_packet(ts: u32, seq: u16, event: u8, end: bool) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        rtp::write_header(&mut b, false, 101, seq, ts, 99);
        b[12] = event;
        b[13] = if end { 0x80 } else { 0 } | 10;
        b[15] = 160;
        b
    }

    #[test]
    fn digits_latching_and_timeout() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let other: SocketAddr = "127.0.0.1:6666".parse().expect("addr");
        for (i, end) in [false, false, true, true, true].into_iter().enumerate() {
            s.handle_datagram(t0, &event_packet(800, i as u16, 2, end), peer);
        }
        assert_eq!(s.destination(), peer);
        s.handle_datagram(t0, &event_packet(1600, 9, 3, false), other);
        assert_eq!(s.poll_event(t0), Some(MediaEvent::Digit('2')));
        assert_eq!(
            s.poll_event(t0),
            None,
            "hijack attempt ignored, repeats deduplicated"
        );
        assert_eq!(s.destination(), peer);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            s.poll_timeout(),
            t0,
            "nothing sent yet: the first slot is due"
        );
        assert_eq!(s.poll_event(later), Some(MediaEvent::MediaTimeout));
        assert_eq!(s.poll_event(later), None);
    }

    #[test]
    fn a_new_playlist_starts_with_the_marker_bit() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        let mut buf = [0u8; MAX_PACKET];
        let mut marker_at = |s: &mut MediaSession, k: u32| {
            s.poll_transmit(t0 + FRAME * k, &mut buf).expect("due");
            RtpPacket::parse(&buf).expect("rtp").marker
        };
        assert!(marker_at(&mut s, 0), "first packet of the stream");
        assert!(!marker_at(&mut s, 1));
        let prompt = || PlayItem::Prompt(Arc::new(Prompt::from_pcm("x", &[500; 800])));
        s.play(1, vec![prompt()], false);
        assert!(marker_at(&mut s, 2), "first packet of the prompt");
        assert!(!marker_at(&mut s, 3));
        s.play(2, vec![prompt()], false);
        assert!(
            marker_at(&mut s, 4),
            "a prompt replacing another (barge-in)"
        );
        assert!(!marker_at(&mut s, 5));
    }

    #[test]
    fn playback_finished_is_reported() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        s.play(
            7,
            vec![PlayItem::Prompt(Arc::new(Prompt::from_pcm(
                "x",
                &[500; 320],
            )))],
            false,
        );
        let mut buf = [0u8; MAX_PACKET];
        s.poll_transmit(t0, &mut buf);
        assert_eq!(s.poll_event(t0), None);
        s.poll_transmit(t0 + FRAME, &mut buf);
        assert_eq!(
            s.poll_event(t0 + FRAME),
            Some(MediaEvent::PlaybackFinished(7))
        );
    }

    #[test]
    fn inband_digits_when_no_telephone_event_negotiated() {
        let t0 = Instant::now();
        let mut p = params();
        p.telephone_event = None;
        let mut s = MediaSession::new(t0, p);
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        // '5' = 770 Hz + 1336 Hz for 100 ms, then 100 ms of silence, in 20 ms PCMU packets.
        for k in 0..10u32 {
            let mut pkt = [0u8; MAX_PACKET];
            rtp::write_header(&mut pkt, false, 0, k as u16, k * 160, 7);
            for n in 0..160usize {
                let t = (k as usize * 160 + n) as f64 / 8000.0;
                let v = if k < 5 {
                    8000.0
                        * ((2.0 * std::f64::consts::PI * 770.0 * t).sin()
                            + (2.0 * std::f64::consts::PI * 1336.0 * t).sin())
                } else {
                    0.0
                };
                pkt[rtp::HEADER_LEN + n] = Codec::Pcmu.encode_sample(v as i16);
            }
            s.handle_datagram(t0, &pkt[..rtp::HEADER_LEN + 160], peer);
        }
        assert_eq!(s.poll_event(t0), Some(MediaEvent::Digit('5')));
        assert_eq!(s.poll_event(t0), None);
    }

    #[test]
    fn timestamps_follow_the_codec_clock() {
        // RTP timestamp steps per 20 ms: G.722 is clocked at 8000 (RFC 3551 §4.5.2) although
        // it samples at 16 kHz; Opus is always 48000 (RFC 7587 §4.1).
        for (codec, pt, step, payload) in [
            (Codec::Pcma, 8, 160, Some(160)),
            (Codec::G722, 9, 160, Some(160)),
            (Codec::Opus, 111, 960, None),
        ] {
            let t0 = Instant::now();
            let mut p = params();
            p.codec = codec;
            p.payload_type = pt;
            let mut s = MediaSession::new(t0, p);
            s.play(
                1,
                vec![PlayItem::Prompt(Arc::new(Prompt::from_pcm(
                    "x",
                    &[900; 800],
                )))],
                false,
            );
            let mut buf = [0u8; MAX_PACKET];
            for k in 0..10u32 {
                let (len, _) = s.poll_transmit(t0 + FRAME * k, &mut buf).expect("due");
                let pkt = RtpPacket::parse(&buf[..len]).expect("rtp");
                assert_eq!(pkt.payload_type, pt);
                assert_eq!(pkt.timestamp, 1000 + k * step, "{codec:?}");
                match payload {
                    Some(n) => assert_eq!(pkt.payload.len(), n),
                    None => assert!(!pkt.payload.is_empty() && pkt.payload.len() < 200),
                }
            }
        }
    }

    #[test]
    fn g722_and_opus_audio_reaches_inband_dtmf_and_the_decoder() {
        use crate::media::codec::Encoder;
        // '5' in G.722 without telephone-event: detected in-band from the decoded low band.
        // Opus without telephone-event: no in-band detector (browsers send RFC 4733).
        for (codec, pt, expect) in [(Codec::G722, 9, Some('5')), (Codec::Opus, 111, None)] {
            let t0 = Instant::now();
            let mut p = params();
            p.codec = codec;
            p.payload_type = pt;
            p.telephone_event = None;
            let mut s = MediaSession::new(t0, p);
            let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
            let mut enc = Encoder::new(codec).expect("encoder");
            for k in 0..10u32 {
                let mut frame = [0i16; 160];
                for (n, v) in frame.iter_mut().enumerate() {
                    let t = (k as usize * 160 + n) as f64 / 8000.0;
                    if k < 5 {
                        *v = (8000.0
                            * ((2.0 * std::f64::consts::PI * 770.0 * t).sin()
                                + (2.0 * std::f64::consts::PI * 1336.0 * t).sin()))
                            as i16;
                    }
                }
                let mut pkt = [0u8; MAX_PACKET];
                rtp::write_header(&mut pkt, false, pt, k as u16, k * codec.timestamp_step(), 7);
                let n = enc
                    .encode_8k(&frame, &mut pkt[rtp::HEADER_LEN..])
                    .expect("encode");
                s.handle_datagram(t0, &pkt[..rtp::HEADER_LEN + n], peer);
            }
            assert_eq!(s.poll_event(t0), expect.map(MediaEvent::Digit), "{codec:?}");
            assert_eq!(s.stats.packets_received, 10);
        }
    }

    #[test]
    fn corrupt_opus_payloads_are_counted_not_fatal() {
        let t0 = Instant::now();
        let mut p = params();
        p.codec = Codec::Opus;
        p.payload_type = 111;
        let mut s = MediaSession::new(t0, p);
        s.start_amd(&AmdConfig::default());
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let mut pkt = [0xFFu8; 40];
        rtp::write_header(&mut pkt, false, 111, 1, 960, 7);
        s.handle_datagram(t0, &pkt, peer);
        assert_eq!(s.stats.packets_received, 1);
    }

    /// PCMU packets of '5' (770 + 1336 Hz) for 100 ms then 100 ms of silence.
    fn tone_packets() -> Vec<Vec<u8>> {
        (0..10u32)
            .map(|k| {
                let mut pkt = vec![0u8; rtp::HEADER_LEN + 160];
                rtp::write_header(&mut pkt, false, 0, k as u16, k * 160, 7);
                for n in 0..160usize {
                    let t = (k as usize * 160 + n) as f64 / 8000.0;
                    let v = if k < 5 {
                        8000.0
                            * ((2.0 * std::f64::consts::PI * 770.0 * t).sin()
                                + (2.0 * std::f64::consts::PI * 1336.0 * t).sin())
                    } else {
                        0.0
                    };
                    pkt[rtp::HEADER_LEN + n] = Codec::Pcmu.encode_sample(v as i16);
                }
                pkt
            })
            .collect()
    }

    #[test]
    fn inband_listeners_get_reordered_and_duplicated_audio_in_order() {
        let t0 = Instant::now();
        let mut p = params();
        p.telephone_event = None;
        let mut s = MediaSession::new(t0, p);
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let pkts = tone_packets();
        // 1 and 2 swapped, 3 duplicated, 6 lost, everything 20 ms apart.
        let order = [0usize, 2, 1, 3, 3, 4, 5, 7, 8, 9];
        for (i, k) in order.iter().enumerate() {
            s.handle_datagram(t0 + FRAME * i as u32, &pkts[*k], peer);
        }
        let mut buf = [0u8; MAX_PACKET];
        for k in 0..20u32 {
            s.poll_transmit(t0 + FRAME * k, &mut buf);
        }
        let end = t0 + FRAME * 20;
        assert_eq!(s.poll_event(end), Some(MediaEvent::Digit('5')), "one digit");
        assert_eq!(s.poll_event(end), None, "not two");
        assert_eq!(s.stats.packets_received, 10);
        assert_eq!(
            (s.stats.lost, s.stats.duplicates, s.stats.reordered),
            (1, 1, 1)
        );
        let j = s.jitter_stats().expect("buffer in front of the detector");
        assert_eq!((j.released, j.lost, j.duplicates), (9, 1, 1));
        // Packet 6 arriving now is late for the listeners.
        s.handle_datagram(end, &pkts[6], peer);
        assert_eq!(s.stats.late, 1);
        assert_eq!(s.stats.lost, 0, "it did arrive: no longer lost on the wire");
    }

    /// A `record` step's speech test: what is recorded is also counted as voice or silence,
    /// and a new recording starts a new count.
    #[test]
    fn recorded_audio_is_measured_for_speech() {
        let dir = tempfile::tempdir().expect("dir");
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        assert_eq!(s.recorded_speech(), None, "nothing recorded yet");
        // 1 s of silence, then 600 ms of a 400 Hz tone at -12 dBFS, then 1 s of silence.
        fn feed(s: &mut MediaSession, t0: Instant, from: u32, to: u32, loud: fn(u32) -> bool) {
            let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
            for k in from..to {
                let mut pkt = [0u8; rtp::HEADER_LEN + 160];
                rtp::write_header(&mut pkt, k == 0, 0, k as u16, k * 160, 0xBEEF);
                for (i, b) in pkt[rtp::HEADER_LEN..].iter_mut().enumerate() {
                    let t = (k * 160) as f32 + i as f32;
                    let v = if loud(k) {
                        (8000.0 * (t * 2.0 * std::f32::consts::PI * 400.0 / 8000.0).sin()) as i16
                    } else {
                        0
                    };
                    *b = Codec::Pcmu.encode_sample(v);
                }
                s.handle_datagram(t0 + FRAME * k, &pkt, peer);
            }
            s.drain_jitter(t0 + FRAME * to + Duration::from_secs(1));
        }
        let rec = |name: &str| {
            super::super::recorder::Recorder::start_with(&dir.path().join(name), t0, 1)
                .expect("recorder")
        };
        s.set_recorder(Some(rec("a.wav")));
        feed(&mut s, t0, 0, 130, |k| (50..80).contains(&k));
        let speech = s.recorded_speech().expect("measured");
        assert_eq!(speech.words, 1, "{speech}");
        assert!((560..=620).contains(&speech.voice_ms), "{speech}");
        assert!(speech.is_message(300));
        s.set_recorder(None);
        // The next recording: silence only.
        s.set_recorder(Some(rec("b.wav")));
        feed(&mut s, t0, 130, 230, |_| false);
        let speech = s.recorded_speech().expect("measured");
        assert_eq!(speech.voice_ms, 0, "{speech}");
        assert!(!speech.is_message(300));
    }

    #[test]
    fn no_buffer_without_audio_listeners() {
        let t0 = Instant::now();
        let s = MediaSession::new(t0, params());
        assert!(
            s.jitter_stats().is_none(),
            "telephone-event: no in-band detector, no buffer"
        );
    }

    fn rtcp_of(buf: &[u8]) -> Vec<RtcpPacket<'_>> {
        rtcp::parse_compound(buf)
            .collect::<Result<_, _>>()
            .expect("our RTCP parses")
    }

    #[test]
    fn reports_come_every_few_seconds_sr_when_sending_rr_otherwise() {
        let t0 = Instant::now();
        let mut p = params();
        p.initial_seq = 100;
        let mut s = MediaSession::new(t0, p);
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let mut rbuf = [0u8; rtcp::MAX_COMPOUND];
        let mut buf = [0u8; MAX_PACKET];
        assert!(s.poll_rtcp(t0, &mut rbuf).is_none(), "not at once");
        // 10 s of a stream from the peer that loses every 10th packet, while we send.
        let mut reports = Vec::new();
        let mut at = t0;
        for k in 0..500u32 {
            at = t0 + FRAME * k;
            if k % 10 != 9 {
                let mut pkt = [0u8; rtp::HEADER_LEN + 160];
                rtp::write_header(&mut pkt, false, 0, k as u16, k * 160, 0xBEEF);
                s.handle_datagram(at, &pkt, peer);
            }
            s.poll_transmit(at, &mut buf);
            if let Some((n, dest)) = s.poll_rtcp(at, &mut rbuf) {
                assert_eq!(
                    dest,
                    "127.0.0.1:5556".parse().expect("addr"),
                    "RTP port + 1"
                );
                reports.push((at - t0, rbuf[..n].to_vec()));
            }
            assert!(s.poll_timeout() <= at + FRAME);
        }
        assert!(
            (2..=5).contains(&reports.len()),
            "{} reports in 10 s",
            reports.len()
        );
        let first = reports[0].0;
        assert!(
            first >= Duration::from_millis(1250) && first < Duration::from_millis(3750),
            "{first:?}"
        );
        for w in reports.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                gap >= Duration::from_millis(2480) && gap <= Duration::from_millis(7520),
                "{gap:?}"
            );
        }
        let (when, last) = reports.last().expect("one");
        match rtcp_of(last)[0] {
            RtcpPacket::Sr {
                ssrc,
                packet_count,
                octet_count,
                rtp_timestamp,
                reports,
                ..
            } => {
                assert_eq!(ssrc, 0x1234);
                let sent = (when.as_millis() / 20 + 1) as u32;
                assert_eq!(packet_count, sent);
                assert_eq!(octet_count, 160 * sent);
                // RTP time of the report instant: initial + elapsed samples.
                assert_eq!(rtp_timestamp, 1000 + (when.as_micros() * 8 / 1000) as u32);
                let b = reports.iter().next().expect("a block about the peer");
                assert_eq!(b.ssrc, 0xBEEF);
                assert!(b.cumulative_lost > 0);
                assert!(
                    (20..=31).contains(&b.fraction_lost),
                    "~10 % = 25/256: {}",
                    b.fraction_lost
                );
                assert_eq!(b.jitter, 0, "virtual time: perfectly regular arrivals");
                assert_eq!(b.lsr, 0, "no SR from the peer yet");
            }
            ref other => panic!("want SR, got {other:?}"),
        }
        // Stop sending (hold): the next report is an RR.
        s.update_remote(peer, false);
        let mut t = at;
        let rr = loop {
            t += FRAME;
            s.poll_transmit(t, &mut buf);
            if let Some((n, _)) = s.poll_rtcp(t, &mut rbuf) {
                break rbuf[..n].to_vec();
            }
        };
        // The first after hold may still cover packets sent before it; the one after must be RR.
        let rr = if matches!(rtcp_of(&rr)[0], RtcpPacket::Sr { .. }) {
            loop {
                t += FRAME;
                s.poll_transmit(t, &mut buf);
                if let Some((n, _)) = s.poll_rtcp(t, &mut rbuf) {
                    break rbuf[..n].to_vec();
                }
            }
        } else {
            rr
        };
        assert!(matches!(
            rtcp_of(&rr)[0],
            RtcpPacket::Rr { ssrc: 0x1234, .. }
        ));
        let (n, _) = s.rtcp_bye(t, &mut rbuf).expect("bye");
        let pkts = rtcp_of(&rbuf[..n]);
        assert_eq!(
            pkts.last().expect("bye").bye_ssrcs().collect::<Vec<_>>(),
            [0x1234]
        );
    }

    #[test]
    fn peer_reports_give_lsr_dlsr_rtt_and_figures() {
        use std::time::UNIX_EPOCH;
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, params());
        s.set_wall_clock(t0, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let peer_rtcp: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        let mut buf = [0u8; MAX_PACKET];
        let mut rbuf = [0u8; rtcp::MAX_COMPOUND];
        s.poll_transmit(t0, &mut buf);
        // Our SR at 3 s.
        let t_sr = t0 + Duration::from_secs(3);
        let (n, _) = loop {
            if let Some(x) = s.poll_rtcp(t_sr, &mut rbuf) {
                break x;
            }
            s.rtcp.next_at = t_sr;
        };
        let our_ntp = match rtcp_of(&rbuf[..n])[0] {
            RtcpPacket::Sr { ntp, .. } => ntp,
            ref o => panic!("want SR, got {o:?}"),
        };
        // The peer's SR (with a block about us: lsr = our SR, held 50 ms) arrives 130 ms after
        // ours: RTT = 130 - 50 = 80 ms.
        let block = rtcp::ReportBlock {
            ssrc: 0x1234,
            fraction_lost: 64,
            cumulative_lost: 12,
            extended_highest_seq: 7,
            jitter: 160,
            lsr: rtcp::ntp_middle(our_ntp),
            dlsr: rtcp::to_short(Duration::from_millis(50)),
        };
        let sender = rtcp::SenderInfo {
            ntp: 0x1111_2222_3333_4444,
            rtp_timestamp: 9,
            packet_count: 1,
            octet_count: 160,
        };
        let mut peer_buf = [0u8; rtcp::MAX_COMPOUND];
        let pn = rtcp::write_compound(&mut peer_buf, 0xBEEF, Some(sender), Some(block), false);
        let t_rx = t_sr + Duration::from_millis(130);
        s.handle_rtcp(t_rx, &peer_buf[..pn], peer_rtcp);
        let r = s.remote_report();
        assert_eq!(
            (
                r.reports,
                r.sender_reports,
                r.fraction_lost,
                r.cumulative_lost,
                r.jitter
            ),
            (1, 1, 64, 12, 160)
        );
        let rtt = r.rtt.expect("rtt").as_secs_f64();
        assert!((rtt - 0.080).abs() < 0.001, "{rtt}");
        assert_eq!(
            s.rtcp_destination(),
            peer_rtcp,
            "RTCP latched to where the peer's comes from"
        );
        // Our next report carries LSR = the peer's SR and DLSR = time since.
        let mut pkt = [0u8; rtp::HEADER_LEN + 160];
        rtp::write_header(&mut pkt, false, 0, 1, 160, 0xBEEF);
        s.handle_datagram(t_rx, &pkt, peer);
        let t_next = t_rx + Duration::from_millis(500);
        let (n, _) = s.rtcp_bye(t_next, &mut rbuf).expect("report");
        let b = match rtcp_of(&rbuf[..n])[0] {
            RtcpPacket::Sr { reports, .. } | RtcpPacket::Rr { reports, .. } => {
                reports.iter().next().expect("block")
            }
            ref o => panic!("want a report, got {o:?}"),
        };
        assert_eq!(b.lsr, 0x2222_3333);
        assert_eq!(b.dlsr, rtcp::to_short(Duration::from_millis(500)));
        // Garbage and a BYE: counted, flagged, never a panic.
        s.handle_rtcp(t_next, &[0x80, 201, 0xFF, 0xFF], peer_rtcp);
        assert_eq!(s.stats.rtcp_ignored, 1);
        let mut bye = [0u8; rtcp::MAX_COMPOUND];
        let bn = rtcp::write_compound(&mut bye, 0xBEEF, None, None, true);
        s.handle_rtcp(t_next, &bye[..bn], peer_rtcp);
        assert!(s.remote_report().bye);
        assert!(
            s.remote_summary().expect("summary").contains("rtt_ms=80."),
            "{:?}",
            s.remote_summary()
        );
    }
}
