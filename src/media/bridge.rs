//! The RTP relay between two legs of a bridged call (caller ↔ agent): each leg's actor
//! rewrites the packets it receives in place and sends them from the *other* leg's socket,
//! so each phone keeps talking to the address it negotiated.
//!
//! Per packet: no allocation, no lock — the header is rewritten in the receive buffer, G.711
//! is transcoded byte by byte through a 256-entry table when the legs chose different laws,
//! and the shared packet counters are relaxed atomics. Each direction gets its own SSRC
//! (RFC 3550 §8: we are the source the far end sees, so a new source is announced properly)
//! while sequence numbers pass through.
//!
//! Other mismatches (G.722 or Opus on one side only) are transcoded through 8 kHz PCM with
//! a decoder and an encoder owned by this direction's relay (created at bridge time, never
//! per packet): G.722↔G.711 costs a few µs per packet; an Opus encode is the expensive one
//! (~20–50 µs per 20 ms frame, i.e. 0.1–0.25 % of a core per direction). When the clock
//! rates differ (Opus 48000 vs 8000) timestamps are rescaled from the first packet on, and
//! RFC 4733 event durations (in timestamp units) with them. If a coder cannot be created
//! the direction drops its audio rather than relay bytes the other side would decode as
//! noise: mismatched payloads are never passed through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::codec::{self, Codec, Decoder, Encoder};
use super::rtp::RtpPacket;

/// One side's negotiated media (what a leg sends and expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// Packets relayed in each direction, shared by both legs (dashboard, tests, records).
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub caller_to_agent: AtomicU64,
    pub agent_to_caller: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    CallerToAgent,
    AgentToCaller,
}

/// Rewrites packets from one leg for the other.
#[derive(Debug)]
pub struct Relay {
    from: LegMedia,
    to: LegMedia,
    ssrc: u32,
    dest: SocketAddr,
    direction: Direction,
    counters: Arc<RelayCounters>,
    last_rx: Instant,
    /// Recording: what this leg receives goes to this channel (0 caller, 1 agent).
    recorder: Option<(super::recorder::Recorder, u8)>,
    path: Path,
    /// A decoder for recording a stateful codec that is otherwise passed through.
    rec_decoder: Option<Decoder>,
    /// (first input timestamp, its output value) when the two clocks differ.
    ts_map: Option<(u32, u32)>,
    /// Packets relayed (each one received and sent), added to the process's metrics once a
    /// second and at drop, never per packet.
    relayed: u64,
    metrics: crate::metrics::RtpFlush,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.metrics.flush(self.relayed, self.relayed, 0);
    }
}

/// How audio payloads cross.
#[derive(Debug)]
enum Path {
    Pass,
    Table(&'static [u8; 256]),
    Transcode(Box<(Decoder, Encoder)>),
    /// A coder could not be created: audio is dropped, events still flow.
    Refuse,
}

fn ulaw_to_alaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u8; 256];
        for (b, out) in t.iter_mut().enumerate() {
            *out = Codec::Pcma.encode_sample(Codec::Pcmu.decode_sample(b as u8));
        }
        t
    })
}

fn alaw_to_ulaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u8; 256];
        for (b, out) in t.iter_mut().enumerate() {
            *out = Codec::Pcmu.encode_sample(Codec::Pcma.decode_sample(b as u8));
        }
        t
    })
}

impl Relay {
    pub fn new(
        now: Instant,
        from: LegMedia,
        to: LegMedia,
        dest: SocketAddr,
        direction: Direction,
        counters: Arc<RelayCounters>,
    ) -> Relay {
        // Build the tables and coders off the packet path.
        let path = match (from.codec, to.codec) {
            (a, b) if a == b => Path::Pass,
            (Codec::Pcmu, Codec::Pcma) => Path::Table(ulaw_to_alaw()),
            (Codec::Pcma, Codec::Pcmu) => Path::Table(alaw_to_ulaw()),
            (a, b) => match (Decoder::new(a), Encoder::new(b)) {
                (Ok(d), Ok(e)) => Path::Transcode(Box::new((d, e))),
                (d, e) => {
                    tracing::warn!(from = ?a, to = ?b, decoder = ?d.err(), encoder = ?e.err(),
                        "cannot transcode: audio of this direction is dropped");
                    Path::Refuse
                }
            },
        };
        Relay {
            path,
            rec_decoder: None,
            ts_map: None,
            from,
            to,
            ssrc: rand::random(),
            dest,
            direction,
            counters,
            last_rx: now,
            recorder: None,
            relayed: 0,
            metrics: crate::metrics::RtpFlush::new(now),
        }
    }

    /// Also record what this leg receives (before any transcoding).
    pub fn record(&mut self, recorder: super::recorder::Recorder) {
        let channel = match self.direction {
            Direction::CallerToAgent => 0,
            Direction::AgentToCaller => 1,
        };
        self.recorder = Some((recorder, channel));
        if !self.from.codec.is_g711() && matches!(self.path, Path::Pass) {
            self.rec_decoder = Decoder::new(self.from.codec).ok();
        }
    }

    /// The codec path of this direction, for logs and tests.
    pub fn transcodes(&self) -> bool {
        !matches!(self.path, Path::Pass)
    }

    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    pub fn set_dest(&mut self, dest: SocketAddr) {
        self.dest = dest;
    }

    /// Restart the silence clock (after a hold, during which nothing was relayed).
    pub fn touch(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Rewrite the datagram in `buf[..len]` for the other leg, in place (`buf` is the whole
    /// receive buffer: a transcoded payload may be longer than the received one). Returns
    /// the length to send, or None to drop it (not RTP, a payload type the other leg did not
    /// negotiate, an undecodable payload).
    pub fn rewrite(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Option<usize> {
        let len = len.min(buf.len());
        let (pt, offset, end, ts) = {
            let p = RtpPacket::parse(&buf[..len]).ok()?;
            let offset = p.payload.as_ptr() as usize - buf.as_ptr() as usize;
            (
                p.payload_type,
                offset,
                offset + p.payload.len(),
                p.timestamp,
            )
        };
        self.last_rx = now;
        let (from_rate, to_rate) = (self.from.codec.clock_rate(), self.to.codec.clock_rate());
        let mut out_len = len;
        let new_pt = if pt == self.from.payload_type {
            match &mut self.path {
                Path::Pass | Path::Table(_) => {
                    if let Some((rec, channel)) = &self.recorder {
                        if self.from.codec.is_g711() {
                            rec.push(now, *channel, self.from.codec, &buf[offset..end]);
                        } else if let Some(d) = self.rec_decoder.as_mut() {
                            let mut pcm = [0i16; codec::MAX_DECODED_8K];
                            if let Ok(n) = d.decode_8k(&buf[offset..end], &mut pcm) {
                                rec.push_pcm(now, *channel, &pcm[..n]);
                            }
                        }
                    }
                    if let Path::Table(table) = &self.path {
                        for b in &mut buf[offset..end] {
                            *b = table[*b as usize];
                        }
                    }
                }
                Path::Transcode(coders) => {
                    let (dec, enc) = &mut **coders;
                    let mut pcm = [0i16; codec::MAX_DECODED_8K];
                    let n = dec.decode_8k(&buf[offset..end], &mut pcm).ok()?;
                    if let Some((rec, channel)) = &self.recorder {
                        rec.push_pcm(now, *channel, &pcm[..n]);
                    }
                    // Opus takes exactly one 20 ms frame per packet (we negotiate ptime 20;
                    // a longer packet keeps its first 20 ms rather than being repacketized).
                    let pcm = if enc.codec() == Codec::Opus {
                        let mut frame = [0i16; codec::FRAME_8K];
                        frame[..n.min(codec::FRAME_8K)]
                            .copy_from_slice(&pcm[..n.min(codec::FRAME_8K)]);
                        let written = enc.encode_8k(&frame, &mut buf[offset..]).ok()?;
                        out_len = offset + written;
                        None
                    } else {
                        Some(pcm)
                    };
                    if let Some(pcm) = pcm {
                        let written = enc.encode_8k(&pcm[..n], &mut buf[offset..]).ok()?;
                        out_len = offset + written;
                    }
                    // The payload was replaced: any RTP padding went with it.
                    buf[0] &= !0x20;
                }
                Path::Refuse => return None,
            }
            self.to.payload_type
        } else if Some(pt) == self.from.telephone_event {
            let te = self.to.telephone_event?;
            if from_rate != to_rate && end >= offset + 4 {
                // RFC 4733 §2.3.5: the duration is in timestamp units of the stream's clock.
                let d = u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]) as u64;
                let scaled = (d * to_rate as u64 / from_rate as u64).min(u16::MAX as u64) as u16;
                buf[offset + 2..offset + 4].copy_from_slice(&scaled.to_be_bytes());
            }
            te
        } else {
            // Comfort noise and anything else the other leg never agreed to.
            return None;
        };
        if from_rate != to_rate {
            let (in0, out0) = *self.ts_map.get_or_insert((ts, ts));
            let delta = ts.wrapping_sub(in0) as u64;
            let mapped = out0.wrapping_add((delta * to_rate as u64 / from_rate as u64) as u32);
            buf[4..8].copy_from_slice(&mapped.to_be_bytes());
        }
        buf[1] = (buf[1] & 0x80) | (new_pt & 0x7F);
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let counter = match self.direction {
            Direction::CallerToAgent => &self.counters.caller_to_agent,
            Direction::AgentToCaller => &self.counters.agent_to_caller,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.relayed += 1;
        self.metrics.maybe(now, self.relayed, self.relayed, 0);
        Some(out_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::write_header;

    fn leg(codec: Codec, te: Option<u8>) -> LegMedia {
        LegMedia {
            codec,
            payload_type: codec.offer_pt(),
            telephone_event: te,
        }
    }

    fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload.len()];
        write_header(&mut buf, false, pt, 7, 160, 0xdead_beef);
        buf[12..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn same_codec_passes_payload_and_takes_our_ssrc() {
        let c = Arc::new(RelayCounters::default());
        let dest = "127.0.0.1:4000".parse().expect("addr");
        let now = Instant::now();
        let mut r = Relay::new(
            now,
            leg(Codec::Pcmu, Some(101)),
            leg(Codec::Pcmu, Some(96)),
            dest,
            Direction::CallerToAgent,
            c.clone(),
        );
        let mut p = packet(0, &[1, 2, 3]);
        assert_eq!(r.rewrite(now, &mut p, 15), Some(15));
        let parsed = RtpPacket::parse(&p).expect("rtp");
        assert_eq!(parsed.payload, &[1, 2, 3]);
        assert_eq!(parsed.sequence, 7);
        assert_ne!(parsed.ssrc, 0xdead_beef);
        // DTMF events keep flowing, renumbered to the other leg's payload type.
        let mut e = packet(101, &[5, 0x80, 0, 160]);
        let n = e.len();
        r.rewrite(now, &mut e, n).expect("event relayed");
        assert_eq!(RtpPacket::parse(&e).expect("rtp").payload_type, 96);
        // Comfort noise (13) was not negotiated: dropped.
        assert_eq!(r.rewrite(now, &mut packet(13, &[0]), 13), None);
        assert_eq!(c.caller_to_agent.load(Ordering::Relaxed), 2);
        assert_eq!(r.rewrite(now, &mut [0u8; 5], 5), None);
    }

    #[test]
    fn transcodes_between_laws() {
        let c = Arc::new(RelayCounters::default());
        let dest = "127.0.0.1:4000".parse().expect("addr");
        let now = Instant::now();
        let mut r = Relay::new(
            now,
            leg(Codec::Pcmu, None),
            leg(Codec::Pcma, None),
            dest,
            Direction::AgentToCaller,
            c.clone(),
        );
        let samples: Vec<i16> = vec![0, 1000, -1000, 8000, -32000];
        let ulaw: Vec<u8> = samples
            .iter()
            .map(|s| Codec::Pcmu.encode_sample(*s))
            .collect();
        let mut p = packet(0, &ulaw);
        let n = p.len();
        r.rewrite(now, &mut p, n).expect("relayed");
        let parsed = RtpPacket::parse(&p).expect("rtp");
        assert_eq!(parsed.payload_type, 8);
        for (b, s) in parsed.payload.iter().zip(&samples) {
            let back = Codec::Pcma.decode_sample(*b) as i32;
            // Both laws quantize; the round trip stays within one coarse step.
            assert!((back - *s as i32).abs() <= (s.unsigned_abs() as i32 / 8).max(16));
        }
        assert_eq!(c.agent_to_caller.load(Ordering::Relaxed), 1);
    }

    fn tone_frame(k: usize) -> [i16; 160] {
        let mut f = [0i16; 160];
        for (n, v) in f.iter_mut().enumerate() {
            let t = (k * 160 + n) as f64 / 8000.0;
            *v = (6000.0 * (2.0 * std::f64::consts::PI * 600.0 * t).sin()) as i16;
        }
        f
    }

    /// Every codec pair: the payload that comes out decodes (with the *target* codec) to
    /// the tone that went in, never to garbage, and timestamps follow the target clock.
    #[test]
    fn transcodes_every_pair_through_pcm() {
        let now = Instant::now();
        let dest = "127.0.0.1:4000".parse().expect("addr");
        for from in Codec::ALL {
            for to in Codec::ALL {
                let c = Arc::new(RelayCounters::default());
                let mut r = Relay::new(
                    now,
                    leg(from, Some(101)),
                    leg(to, Some(110)),
                    dest,
                    Direction::CallerToAgent,
                    c,
                );
                assert_eq!(r.transcodes(), from != to);
                let mut enc = Encoder::new(from).expect("enc");
                let mut dec = Decoder::new(to).expect("dec");
                let (mut sig, mut err) = (0f64, 0f64);
                let mut level = 0f64;
                for k in 0..25usize {
                    let pcm = tone_frame(k);
                    let mut buf = [0u8; 1500];
                    let ts = 5000 + k as u32 * from.timestamp_step();
                    write_header(&mut buf, false, from.offer_pt(), k as u16, ts, 1);
                    let n = enc.encode_8k(&pcm, &mut buf[12..]).expect("encode");
                    let out = r.rewrite(now, &mut buf, 12 + n).expect("relayed");
                    let p = RtpPacket::parse(&buf[..out]).expect("rtp");
                    assert_eq!(p.payload_type, to.offer_pt(), "{from:?}->{to:?}");
                    assert_eq!(
                        p.timestamp,
                        5000 + k as u32 * to.timestamp_step(),
                        "{from:?}->{to:?}"
                    );
                    let mut back = [0i16; codec::MAX_DECODED_8K];
                    let m = dec.decode_8k(p.payload, &mut back).expect("decodes");
                    assert_eq!(m, 160, "{from:?}->{to:?}");
                    if k >= 10 {
                        for (a, b) in pcm.iter().zip(&back[..m]) {
                            sig += (*a as f64).powi(2);
                            err += (*a as f64 - *b as f64).powi(2);
                            level += (*b as f64).powi(2);
                        }
                    }
                }
                let ratio = (level / sig).sqrt();
                assert!(
                    (0.6..1.4).contains(&ratio),
                    "{from:?}->{to:?} level {ratio:.2}"
                );
                if from != Codec::Opus && to != Codec::Opus {
                    // Waveform codecs keep the waveform: sample SNR is meaningful.
                    let db = 10.0 * (sig / err).log10();
                    assert!(db > 15.0, "{from:?}->{to:?} SNR {db:.1} dB");
                }
            }
        }
    }

    #[test]
    fn events_are_rescaled_between_8k_and_48k() {
        let now = Instant::now();
        let c = Arc::new(RelayCounters::default());
        let dest = "127.0.0.1:4000".parse().expect("addr");
        let mut r = Relay::new(
            now,
            leg(Codec::Pcmu, Some(101)),
            leg(Codec::Opus, Some(110)),
            dest,
            Direction::CallerToAgent,
            c,
        );
        // Event start at ts 8000, 400 ms in: duration 3200 at 8 kHz -> 19200 at 48 kHz.
        let mut e = packet(101, &[5, 0x0A, 0x0C, 0x80]);
        e[4..8].copy_from_slice(&8000u32.to_be_bytes());
        let n = e.len();
        r.rewrite(now, &mut e, n).expect("relayed");
        let mut e2 = packet(101, &[5, 0x8A, 0x0C, 0x80]);
        e2[4..8].copy_from_slice(&8160u32.to_be_bytes());
        r.rewrite(now, &mut e2, n).expect("relayed");
        let p = RtpPacket::parse(&e2).expect("rtp");
        assert_eq!(p.payload_type, 110);
        assert_eq!(p.timestamp, 8000 + 160 * 6);
        assert_eq!(u16::from_be_bytes([p.payload[2], p.payload[3]]), 3200 * 6);
        // An 8 kHz leg without telephone-event never gets the 48 kHz events.
        let mut r = Relay::new(
            now,
            leg(Codec::Opus, Some(110)),
            leg(Codec::Pcmu, None),
            dest,
            Direction::AgentToCaller,
            Arc::new(RelayCounters::default()),
        );
        let mut e = packet(110, &[5, 0x8A, 0, 160]);
        let n = e.len();
        assert_eq!(r.rewrite(now, &mut e, n), None);
    }

    proptest::proptest! {
        /// Garbage in an Opus or G.722 payload is dropped or transcoded, never a panic.
        #[test]
        fn transcoding_never_panics(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let now = Instant::now();
            let dest = "127.0.0.1:4000".parse().expect("addr");
            for (from, to) in [(Codec::Opus, Codec::Pcmu), (Codec::G722, Codec::Opus), (Codec::Pcma, Codec::G722)] {
                let mut r = Relay::new(now, leg(from, None), leg(to, None), dest,
                    Direction::CallerToAgent, Arc::new(RelayCounters::default()));
                let mut buf = [0u8; 1500];
                write_header(&mut buf, false, from.offer_pt(), 1, 1, 1);
                buf[12..12 + payload.len()].copy_from_slice(&payload);
                let _ = r.rewrite(now, &mut buf, 12 + payload.len());
            }
        }
    }
}
