//! RTCP (RFC 3550 §6, Appendix A), sans-IO and allocation-free: a zero-copy parser for
//! compound packets (SR, RR, SDES, BYE; other types skipped), writers for our compound
//! reports (SR or RR + SDES CNAME, + BYE at hangup) into a caller buffer, and the receive
//! statistics a report block needs (A.1 sequence tracking, A.3 loss, A.8 interarrival jitter).
//!
//! Parsing never panics on garbage (property test here, fuzz target `fuzz/fuzz_targets/rtcp.rs`):
//! every length is checked against the datagram before it is read.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;
/// Largest compound packet we write: SR with one report block (52) + SDES CNAME (≤ 24)
/// + BYE (8).
pub const MAX_COMPOUND: usize = 128;
/// Seconds between 1900-01-01 (NTP epoch) and 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its 4-byte header")]
    TooShort,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("RTCP length field runs past the datagram")]
    Truncated,
    #[error("RTCP report count does not fit the packet length")]
    BadCount,
    #[error("first packet of a compound is not SR or RR")]
    NotReport,
}

/// One report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let cum = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        // Sign-extend the 24-bit value.
        let cumulative_lost = ((cum << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(&b[0..4]),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: be32(&b[8..12]),
            jitter: be32(&b[12..16]),
            lsr: be32(&b[16..20]),
            dlsr: be32(&b[20..24]),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        b[4] = self.fraction_lost;
        let cum = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0xFF_FFFF;
        b[5..8].copy_from_slice(&cum.to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        b[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The report blocks of an SR or RR, read lazily from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reports<'a>(&'a [u8]);

impl<'a> Reports<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 24
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(24).map(ReportBlock::parse)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    Sr {
        ssrc: u32,
        /// 64-bit NTP timestamp (seconds since 1900 << 32 | fraction).
        ntp: u64,
        rtp_timestamp: u32,
        packet_count: u32,
        octet_count: u32,
        reports: Reports<'a>,
    },
    Rr {
        ssrc: u32,
        reports: Reports<'a>,
    },
    /// Source descriptions: `count` chunks, left unparsed (we only need to skip them).
    Sdes {
        count: u8,
        body: &'a [u8],
    },
    /// Sources leaving; the reason text is not read.
    Bye {
        ssrcs: &'a [u8],
    },
    /// APP, RTPFB, PSFB, XR, …: skipped.
    Other {
        packet_type: u8,
    },
}

impl RtcpPacket<'_> {
    pub fn bye_ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        let b: &[u8] = match self {
            RtcpPacket::Bye { ssrcs } => ssrcs,
            _ => &[],
        };
        b.chunks_exact(4).map(be32)
    }
}

/// Iterate the packets of a compound RTCP datagram. Yields `Err` once (then stops) at the
/// first malformed packet; packets before it are still yielded.
pub fn parse_compound(data: &[u8]) -> Compound<'_> {
    Compound {
        rest: data,
        first: true,
        failed: false,
    }
}

pub struct Compound<'a> {
    rest: &'a [u8],
    first: bool,
    failed: bool,
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = parse_one(self.rest, self.first);
        self.first = false;
        match r {
            Ok((pkt, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(pkt))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(data: &[u8], first: bool) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    if data.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    if data[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let padding = data[0] & 0x20 != 0;
    let count = data[0] & 0x1F;
    let pt = data[1];
    let total = (u16::from_be_bytes([data[2], data[3]]) as usize + 1) * 4;
    if data.len() < total {
        return Err(RtcpError::Truncated);
    }
    if first && pt != SR && pt != RR {
        return Err(RtcpError::NotReport);
    }
    let mut body = &data[4..total];
    if padding {
        let pad = data[total - 1] as usize;
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::Truncated);
        }
        body = &body[..body.len() - pad];
    }
    let pkt = match pt {
        SR => {
            let need = 24 + 24 * count as usize;
            if body.len() < need {
                return Err(RtcpError::BadCount);
            }
            RtcpPacket::Sr {
                ssrc: be32(&body[0..4]),
                ntp: ((be32(&body[4..8]) as u64) << 32) | be32(&body[8..12]) as u64,
                rtp_timestamp: be32(&body[12..16]),
                packet_count: be32(&body[16..20]),
                octet_count: be32(&body[20..24]),
                reports: Reports(&body[24..need]),
            }
        }
        RR => {
            let need = 4 + 24 * count as usize;
            if body.len() < need {
                return Err(RtcpError::BadCount);
            }
            RtcpPacket::Rr {
                ssrc: be32(&body[0..4]),
                reports: Reports(&body[4..need]),
            }
        }
        SDES => RtcpPacket::Sdes { count, body },
        BYE => {
            let need = 4 * count as usize;
            if body.len() < need {
                return Err(RtcpError::BadCount);
            }
            RtcpPacket::Bye {
                ssrcs: &body[..need],
            }
        }
        other => RtcpPacket::Other { packet_type: other },
    };
    Ok((pkt, total))
}

/// What our sender section says (an SR when we sent media since the last report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Write an SR (with `sender`) or RR, with at most one report block, then SDES CNAME
/// (`sb-<ssrc hex>`), then a BYE when `bye`. Returns the length written.
pub fn write_compound(
    buf: &mut [u8; MAX_COMPOUND],
    ssrc: u32,
    sender: Option<SenderInfo>,
    report: Option<ReportBlock>,
    bye: bool,
) -> usize {
    let rc = report.is_some() as u8;
    let mut n = 0;
    // SR / RR
    let (pt, words) = match sender {
        Some(_) => (SR, 6 + 6 * rc as usize),
        None => (RR, 1 + 6 * rc as usize),
    };
    buf[0] = 0x80 | rc;
    buf[1] = pt;
    buf[2..4].copy_from_slice(&(words as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    n += 8;
    if let Some(s) = sender {
        buf[8..16].copy_from_slice(&s.ntp.to_be_bytes());
        buf[16..20].copy_from_slice(&s.rtp_timestamp.to_be_bytes());
        buf[20..24].copy_from_slice(&s.packet_count.to_be_bytes());
        buf[24..28].copy_from_slice(&s.octet_count.to_be_bytes());
        n += 20;
    }
    if let Some(r) = report {
        r.write(&mut buf[n..n + 24]);
        n += 24;
    }
    // SDES: one chunk, CNAME "sb-xxxxxxxx" (RFC 3550 §6.5.1: unique per source is enough).
    const CNAME_LEN: usize = 11;
    let start = n;
    buf[n] = 0x81;
    buf[n + 1] = SDES;
    // 4 header + 4 SSRC + 2 item header + 11 text + END, padded: 24 octets = (5 + 1) words.
    buf[n + 2..n + 4].copy_from_slice(&5u16.to_be_bytes());
    buf[n + 4..n + 8].copy_from_slice(&ssrc.to_be_bytes());
    buf[n + 8] = 1; // CNAME
    buf[n + 9] = CNAME_LEN as u8;
    buf[n + 10..n + 13].copy_from_slice(b"sb-");
    for i in 0..8 {
        let nib = ((ssrc >> (28 - 4 * i)) & 0xF) as usize;
        buf[n + 13 + i] = b"0123456789abcdef"[nib];
    }
    buf[n + 21..n + 24].fill(0); // END + padding
    n = start + 24;
    if bye {
        buf[n] = 0x81;
        buf[n + 1] = BYE;
        buf[n + 2..n + 4].copy_from_slice(&1u16.to_be_bytes());
        buf[n + 4..n + 8].copy_from_slice(&ssrc.to_be_bytes());
        n += 8;
    }
    n
}

/// Wall clock ↔ monotonic clock, fixed at one instant, so NTP times are computed from the
/// `now: Instant` the core is given (and tests can pin the wall clock).
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    ntp_at_anchor: u64,
}

impl NtpClock {
    pub fn new(anchor: Instant, wall: SystemTime) -> NtpClock {
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        NtpClock {
            anchor,
            ntp_at_anchor: to_ntp(since + Duration::from_secs(NTP_UNIX_OFFSET)),
        }
    }

    /// The 64-bit NTP timestamp of `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        if now >= self.anchor {
            self.ntp_at_anchor.wrapping_add(to_ntp(now - self.anchor))
        } else {
            self.ntp_at_anchor.wrapping_sub(to_ntp(self.anchor - now))
        }
    }
}

fn to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) | (((d.subsec_nanos() as u64) << 32) / 1_000_000_000)
}

/// The middle 32 bits of an NTP timestamp (LSR, and the "A" of the RTT formula).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (DLSR), saturating.
pub fn to_short(d: Duration) -> u32 {
    let v = (d.as_secs_f64() * 65536.0) as u64;
    v.min(u32::MAX as u64) as u32
}

/// Round-trip time from a report block about us (RFC 3550 §6.4.1): A − LSR − DLSR, all in
/// 1/65536 s; None when the peer has not received an SR from us yet (LSR 0) or the result is
/// nonsense (negative: clocks or a corrupt report).
pub fn rtt(arrival_middle: u32, block: &ReportBlock) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = arrival_middle
        .wrapping_sub(block.lsr)
        .wrapping_sub(block.dlsr);
    (rtt < 0x8000_0000).then(|| Duration::from_secs_f64(rtt as f64 / 65536.0))
}

/// Receive statistics of one source (RFC 3550 A.1, A.3, A.8), per packet without allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxStats {
    pub ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    /// Packets counted as received (duplicates within the last 64 numbers excluded, so a
    /// duplicate does not hide a loss).
    pub received: u64,
    pub duplicates: u64,
    /// Packets older than the highest number seen (not duplicates).
    pub reordered: u64,
    /// Bit k: the number `max_seq - k` was received.
    seen: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter ×16 in timestamp units (the A.8 integer form).
    jitter16: u32,
    last_transit: Option<u32>,
}

impl RxStats {
    /// One RTP packet of the stream. `arrival_ts` is the arrival time in the stream's
    /// timestamp units (any origin); `timestamp` None for packets that must not count for
    /// jitter (RFC 4733 events carry their start time, not a sampling instant).
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, arrival_ts: u32, timestamp: Option<u32>) {
        if self.ssrc != Some(ssrc) {
            *self = RxStats {
                ssrc: Some(ssrc),
                base_seq: seq as u32,
                max_seq: seq,
                received: 1,
                seen: 1,
                ..RxStats::default()
            };
            self.jitter(arrival_ts, timestamp);
            return;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            self.duplicates += 1;
            return;
        }
        if delta < 0x8000 {
            // Ahead (possibly wrapping).
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
            self.seen = if delta >= 64 {
                1
            } else {
                (self.seen << delta) | 1
            };
        } else {
            let back = self.max_seq.wrapping_sub(seq) as u32;
            if back < 64 {
                if self.seen & (1 << back) != 0 {
                    self.duplicates += 1;
                    return;
                }
                self.seen |= 1 << back;
            }
            self.reordered += 1;
        }
        self.received += 1;
        self.jitter(arrival_ts, timestamp);
    }

    fn jitter(&mut self, arrival_ts: u32, timestamp: Option<u32>) {
        let Some(ts) = timestamp else { return };
        let transit = arrival_ts.wrapping_sub(ts);
        if let Some(last) = self.last_transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            // J += (|D| - J) / 16, kept ×16: J16 += |D| - (J16 + 8) / 16.
            self.jitter16 = self
                .jitter16
                .wrapping_add(d)
                .wrapping_sub((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    pub fn extended_highest(&self) -> u32 {
        (self.cycles << 16) | self.max_seq as u32
    }

    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        (self.extended_highest() as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    /// Cumulative lost (never negative here: duplicates are not counted as received).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter_ts(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// A report block about this source (and start a new fraction-lost interval).
    pub fn report(&mut self, lsr: u32, dlsr: u32) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = ((lost_interval << 8).checked_div(expected_interval))
            .unwrap_or(0)
            .min(255) as u8;
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().min(0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_highest(),
            jitter: self.jitter_ts(),
            lsr,
            dlsr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_with_a_block_sdes_and_bye_round_trip() {
        let mut buf = [0u8; MAX_COMPOUND];
        let block = ReportBlock {
            ssrc: 0xAABBCCDD,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 77,
            lsr: 0x1234_5678,
            dlsr: 65536,
        };
        let sender = SenderInfo {
            ntp: 0xE000_0000_8000_0000,
            rtp_timestamp: 160_000,
            packet_count: 1000,
            octet_count: 160_000,
        };
        let n = write_compound(&mut buf, 0x11223344, Some(sender), Some(block), true);
        assert_eq!(n, 52 + 24 + 8);
        assert_eq!(n % 4, 0);
        let pkts: Vec<_> = parse_compound(&buf[..n])
            .collect::<Result<_, _>>()
            .expect("parse");
        assert_eq!(pkts.len(), 3);
        match pkts[0] {
            RtcpPacket::Sr {
                ssrc,
                ntp,
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
            } => {
                assert_eq!(
                    (ssrc, ntp, rtp_timestamp, packet_count, octet_count),
                    (0x11223344, sender.ntp, 160_000, 1000, 160_000)
                );
                assert_eq!(reports.iter().collect::<Vec<_>>(), [block]);
            }
            other => panic!("want SR, got {other:?}"),
        }
        match pkts[1] {
            RtcpPacket::Sdes { count, body } => {
                assert_eq!(count, 1);
                assert_eq!(&body[4..6], &[1, 11]);
                assert_eq!(&body[6..17], b"sb-11223344");
            }
            other => panic!("want SDES, got {other:?}"),
        }
        assert_eq!(pkts[2].bye_ssrcs().collect::<Vec<_>>(), [0x11223344]);
    }

    #[test]
    fn rr_without_blocks() {
        let mut buf = [0u8; MAX_COMPOUND];
        let n = write_compound(&mut buf, 5, None, None, false);
        assert_eq!(n, 8 + 24);
        let first = parse_compound(&buf[..n]).next().expect("one").expect("ok");
        assert!(matches!(first, RtcpPacket::Rr { ssrc: 5, reports } if reports.is_empty()));
        assert!(crate::media::rtp::is_rtcp(&buf[..n]));
    }

    #[test]
    fn malformed_compounds_are_errors_not_panics() {
        assert_eq!(
            parse_compound(&[0x80]).next(),
            Some(Err(RtcpError::TooShort))
        );
        assert_eq!(
            parse_compound(&[0x40, 200, 0, 0]).next(),
            Some(Err(RtcpError::BadVersion))
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Truncated))
        );
        // RR claiming 2 blocks in a 2-word packet.
        assert_eq!(
            parse_compound(&[0x82, 201, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::BadCount))
        );
        assert_eq!(
            parse_compound(&[0x81, 203, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::NotReport))
        );
        // A good RR followed by garbage: the RR, then one error, then the end.
        let mut v = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        v.extend_from_slice(&[0xFF, 0xFF]);
        let all: Vec<_> = parse_compound(&v).collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].is_ok() && all[1].is_err());
    }

    #[test]
    fn loss_fraction_and_extended_sequence_across_wrap() {
        let mut rx = RxStats::default();
        // 65530..=65535, 0..=9 with 3 and 4 lost, 7 duplicated, 8 before 6 (reordered).
        let mut seqs: Vec<u16> = (65530..=65535).collect();
        seqs.extend([0, 1, 2, 5, 8, 6, 7, 7, 9]);
        for (i, s) in seqs.iter().enumerate() {
            rx.on_packet(1, *s, i as u32 * 160, Some(i as u32 * 160));
        }
        assert_eq!(rx.extended_highest(), 0x1_0009);
        assert_eq!(rx.expected(), 16);
        assert_eq!(rx.received, 14);
        assert_eq!(rx.lost(), 2);
        assert_eq!(rx.duplicates, 1);
        assert_eq!(rx.reordered, 2, "6 and 7 after 8");
        let b = rx.report(0, 0).expect("block");
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(b.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(b.extended_highest_seq, 0x1_0009);
        // Next interval: 10 more, none lost.
        for s in 10..20u16 {
            rx.on_packet(1, s, 0, None);
        }
        let b = rx.report(0, 0).expect("block");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 2));
    }

    #[test]
    fn interarrival_jitter_follows_a8() {
        // Packets every 160 ticks; arrivals alternate 0 and +80 ticks late: |D| = 80 each.
        let mut rx = RxStats::default();
        let mut j = 0f64;
        for i in 0..200u32 {
            let arrival = i * 160 + if i % 2 == 1 { 80 } else { 0 };
            rx.on_packet(9, i as u16, arrival, Some(i * 160));
            if i > 0 {
                j += (80.0 - j) / 16.0;
            }
        }
        assert!(
            (rx.jitter_ts() as f64 - j).abs() <= 1.0,
            "{} vs {j}",
            rx.jitter_ts()
        );
        assert!(rx.jitter_ts() >= 78);
        // Perfectly regular arrivals: jitter stays 0.
        let mut rx = RxStats::default();
        for i in 0..50u32 {
            rx.on_packet(9, i as u16, 1000 + i * 160, Some(i * 160));
        }
        assert_eq!(rx.jitter_ts(), 0);
    }

    #[test]
    fn ntp_clock_and_rtt() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = NtpClock::new(t0, wall);
        let n0 = c.ntp(t0);
        assert_eq!(n0 >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        let n1 = c.ntp(t0 + Duration::from_millis(1500));
        assert_eq!((n1 >> 32) - (n0 >> 32), 1);
        assert_eq!(n1 as u32, 0x8000_0000, "half a second in the fraction");
        // We sent an SR at t0; the peer held it 100 ms; its RR arrives at t0 + 300 ms.
        let block = ReportBlock {
            lsr: ntp_middle(n0),
            dlsr: to_short(Duration::from_millis(100)),
            ..ReportBlock::default()
        };
        let a = ntp_middle(c.ntp(t0 + Duration::from_millis(300)));
        let r = rtt(a, &block).expect("rtt");
        assert!((r.as_secs_f64() - 0.2).abs() < 0.001, "{r:?}");
        assert_eq!(rtt(a, &ReportBlock::default()), None, "no SR received yet");
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for p in parse_compound(&data).flatten() {
                if let RtcpPacket::Sr { reports, .. } | RtcpPacket::Rr { reports, .. } = p {
                    let _ = reports.iter().count();
                }
                let _ = p.bye_ssrcs().count();
            }
        }

        #[test]
        fn report_blocks_round_trip(ssrc: u32, fl: u8, cum in -0x80_0000i32..0x80_0000, h: u32, j: u32, lsr: u32, dlsr: u32) {
            let block = ReportBlock { ssrc, fraction_lost: fl, cumulative_lost: cum, extended_highest_seq: h, jitter: j, lsr, dlsr };
            let mut buf = [0u8; MAX_COMPOUND];
            let n = write_compound(&mut buf, 1, None, Some(block), false);
            let first = parse_compound(&buf[..n]).next().expect("one").expect("ok");
            match first {
                RtcpPacket::Rr { reports, .. } => proptest::prop_assert_eq!(reports.iter().next(), Some(block)),
                _ => proptest::prop_assert!(false, "not an RR"),
            }
        }
    }
}
