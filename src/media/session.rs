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
//! recording of the leg.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::amd::{Amd, AmdConfig, AmdResult};
use super::codec::{self, Codec, Decoder};
use super::dtmf_inband::InbandDetector;
use super::player::{FillResult, PlayItem, Player};
use super::rtp::{self, RtpPacket};
use super::telephone_event::EventReceiver;

pub const FRAME: Duration = Duration::from_millis(20);
/// 8 kHz samples per 20 ms frame (the internal audio rate).
pub const SAMPLES_PER_FRAME: usize = 160;
/// Largest packet we build: header + the largest 20 ms payload (an Opus packet; G.711 and
/// G.722 are 160 octets).
pub const MAX_PACKET: usize = rtp::HEADER_LEN + codec::opus::MAX_ENCODED;
/// Falling further behind than this re-anchors the grid instead of bursting packets.
const MAX_LAG_FRAMES: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    Digit(char),
    /// The playlist started with this id has played to its end.
    PlaybackFinished(u32),
    MediaTimeout,
    /// Answering-machine detection reached a verdict (outbound calls that asked for it).
    Amd(AmdResult),
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
    pub packets_received: u64,
    pub late_frames: u64,
    pub ignored_packets: u64,
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
    /// The received stream's decoder, created with the session (G.722/Opus state).
    decoder: Option<Decoder>,
    /// Record what the peer sends (a dialplan `record` step), channel 0.
    recorder: Option<super::recorder::Recorder>,
    pending: VecDeque<MediaEvent>,
    timed_out: bool,
    expect_rx: bool,
    pub stats: MediaStats,
}

impl MediaSession {
    pub fn new(now: Instant, params: MediaParams) -> MediaSession {
        MediaSession {
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
            inband: (params.telephone_event.is_none() && params.codec.carries_inband_dtmf())
                .then(|| Box::new(InbandDetector::new())),
            // libopus can only fail to create a decoder on bad arguments or out of memory;
            // then nothing is decoded (no AMD/in-band/recording) but the call goes on.
            decoder: Decoder::new(params.codec).ok(),
            recorder: None,
            pending: VecDeque::with_capacity(8),
            timed_out: false,
            expect_rx: true,
            stats: MediaStats::default(),
            params,
        }
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
    }

    /// Record (or stop recording, `None`) the decoded audio the peer sends.
    pub fn set_recorder(&mut self, recorder: Option<super::recorder::Recorder>) {
        self.recorder = recorder;
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
        if Some(pkt.payload_type) == self.params.telephone_event {
            if let Some(d) = self
                .events
                .handle_packet(pkt.ssrc, pkt.timestamp, pkt.payload)
            {
                self.pending.push_back(MediaEvent::Digit(d));
            }
        } else if self.inband.is_some() || self.amd.is_some() || self.recorder.is_some() {
            let Some(decoder) = self.decoder.as_mut() else {
                return;
            };
            // Decode into a stack buffer: no allocation on the per-packet path. A corrupt
            // payload is counted and skipped.
            let mut pcm = [0i16; codec::MAX_DECODED_8K];
            let Ok(n) = decoder.decode_8k(pkt.payload, &mut pcm) else {
                self.stats.ignored_packets += 1;
                return;
            };
            if let Some(rec) = &self.recorder {
                rec.push_pcm(now, 0, &pcm[..n]);
            }
            for frame in pcm[..n].chunks(SAMPLES_PER_FRAME) {
                if let Some(det) = self.inband.as_mut() {
                    if let Some(d) = det.process(frame) {
                        self.pending.push_back(MediaEvent::Digit(d));
                    }
                }
                if let Some(amd) = self.amd.as_mut() {
                    if let Some(r) = amd.process(frame) {
                        self.pending.push_back(MediaEvent::Amd(r));
                        self.amd = None;
                    }
                }
            }
        }
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
        let send = self.next_send_at();
        if self.timed_out || !self.expect_rx {
            return send;
        }
        send.min(self.last_rx + self.params.media_timeout)
    }
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
}
