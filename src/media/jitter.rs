//! Receive-side jitter/reorder buffer (sans-IO): puts a stream's RTP payloads back in
//! sequence-number order before they reach the listeners of received audio (in-band DTMF,
//! AMD, the recorder of a dialplan `record` step).
//!
//! Design, and why:
//! - **Fixed capacity, preallocated.** [`DEPTH`] slots of one payload each, allocated once
//!   when the buffer is created (at most [`DEPTH`] × the codec's largest payload); inserting
//!   and releasing copy into and out of those slots, so the per-packet path neither
//!   allocates nor locks.
//! - **Keyed by the extended sequence number** (RFC 3550 A.1 style: the 16-bit number
//!   widened by its signed distance to the next expected one), so wrap-around at 65535 → 0
//!   is just +1.
//! - **Playout: zero delay in order, a fixed wait on a gap.** A packet that is the next one
//!   expected is released at once (no added latency: key press → prompt stays fast). When
//!   one is missing, later packets wait until either the gap is filled, the oldest waiting
//!   packet has waited [`GAP_WAIT`] (60 ms, three packets), or the window is full; then the
//!   missing numbers are declared lost and skipped. Not adaptive: the listeners are
//!   detectors and a recorder, not a loudspeaker, so a fixed 60 ms reorder tolerance is
//!   enough and keeps the behaviour testable in virtual time.
//! - **Late and duplicate packets are dropped and counted.** A 64-bit history of the last
//!   numbers released (1) or skipped (0) tells a duplicate (already released) from a late
//!   packet (its number was given up as lost).
//! - **Playout times from RTP timestamps**: each released frame carries `play_at`, the
//!   arrival time of the first frame plus its timestamp distance at the codec clock (re-anchored
//!   when that drifts more than [`REANCHOR`] from the arrival time, e.g. after a pause), so a
//!   recorder places reordered audio where it belongs instead of where it arrived.
//!
//! The bridge relay does **not** use this buffer: a B2BUA relay forwards packets as they
//! come (re-ordered ones included) and the far end's own jitter buffer sorts them out;
//! buffering there would add delay to the conversation for nothing.

use std::time::{Duration, Instant};

/// Slots in the buffer: how far ahead of the next expected packet one may arrive (160 ms of
/// 20 ms packets).
pub const DEPTH: usize = 8;
/// How long a packet after a gap waits for the missing one(s).
pub const GAP_WAIT: Duration = Duration::from_millis(60);
/// A playout time further than this from the arrival time re-anchors the playout clock.
pub const REANCHOR: Duration = Duration::from_millis(200);
/// A jump in sequence numbers larger than this (either way) is a restarted stream: the
/// buffer resynchronises instead of counting thousands of lost packets.
pub const MAX_JUMP: i64 = 200;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets released in order to the listeners.
    pub released: u64,
    /// Sequence numbers given up on (never arrived within the wait).
    pub lost: u64,
    /// Packets that arrived after their number had been given up on.
    pub late: u64,
    /// Copies of packets already buffered or released.
    pub duplicates: u64,
    /// Packets that arrived before an earlier-numbered one (put back in order).
    pub reordered: u64,
    /// Payloads larger than a slot (not buffered, counted and dropped).
    pub oversize: u64,
    /// Stream restarts (SSRC change or a sequence jump over `MAX_JUMP`).
    pub resyncs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored (it may be released at once by the next `pop`).
    Buffered,
    Duplicate,
    Late,
    Oversize,
    /// No room: `pop` until it returns `None`, then insert again. Happens when the packet
    /// is beyond the window or starts a new stream; the buffered packets go first.
    Full,
}

/// One payload released in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub seq: u16,
    pub timestamp: u32,
    pub payload: &'a [u8],
    /// When the frame should be heard (see the module doc).
    pub play_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    present: bool,
    ext: i64,
    timestamp: u32,
    len: usize,
    arrived: Instant,
}

#[derive(Debug)]
pub struct JitterBuffer {
    slots: [Slot; DEPTH],
    /// `DEPTH` payloads of `slot_size` bytes each, allocated once.
    data: Box<[u8]>,
    slot_size: usize,
    clock_hz: u32,
    ssrc: Option<u32>,
    /// Extended sequence number of the next packet to release; None before the first.
    next: Option<i64>,
    /// Highest extended number stored so far (for the reordering count).
    highest: i64,
    /// Bit k: the number `next - 1 - k` was released (1) or skipped (0).
    history: u64,
    count: usize,
    /// Release until the window reaches this number (a packet beyond it is waiting).
    pressure: Option<i64>,
    /// Release everything buffered, then restart at this packet.
    resync: Option<(u32, u16)>,
    /// Playout clock: (arrival instant, RTP timestamp) of the anchor frame.
    anchor: Option<(Instant, u32)>,
    pub stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for payloads of up to `max_payload` bytes at an RTP clock of `clock_hz`.
    pub fn new(max_payload: usize, clock_hz: u32, now: Instant) -> JitterBuffer {
        let empty = Slot {
            present: false,
            ext: 0,
            timestamp: 0,
            len: 0,
            arrived: now,
        };
        JitterBuffer {
            slots: [empty; DEPTH],
            data: vec![0u8; DEPTH * max_payload].into_boxed_slice(),
            slot_size: max_payload,
            clock_hz: clock_hz.max(1),
            ssrc: None,
            next: None,
            highest: 0,
            history: 0,
            count: 0,
            pressure: None,
            resync: None,
            anchor: None,
            stats: JitterStats::default(),
        }
    }

    /// Packets buffered now.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn index(ext: i64) -> usize {
        ext.rem_euclid(DEPTH as i64) as usize
    }

    /// Offer one received packet.
    pub fn insert(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Insert {
        if payload.len() > self.slot_size {
            self.stats.oversize += 1;
            return Insert::Oversize;
        }
        if self.resync.is_some() || self.pressure.is_some() {
            // The caller has not drained yet: still no room.
            return Insert::Full;
        }
        let Some(next) = self.next else {
            self.ssrc = Some(ssrc);
            self.next = Some(seq as i64);
            self.highest = seq as i64 - 1;
            return self.store(now, seq as i64, timestamp, payload);
        };
        if self.ssrc != Some(ssrc) {
            self.resync = Some((ssrc, seq));
            return Insert::Full;
        }
        // Widen to the extended number nearest to `next`.
        let delta = seq.wrapping_sub(next as u16) as i16 as i64;
        let ext = next + delta;
        if delta.abs() > MAX_JUMP {
            self.resync = Some((ssrc, seq));
            return Insert::Full;
        }
        if delta < 0 {
            let k = -delta - 1;
            if k < 64 && self.history & (1 << k) != 0 {
                self.stats.duplicates += 1;
                return Insert::Duplicate;
            }
            self.stats.late += 1;
            return Insert::Late;
        }
        if delta >= DEPTH as i64 {
            self.pressure = Some(ext);
            return Insert::Full;
        }
        let s = &self.slots[Self::index(ext)];
        if s.present && s.ext == ext {
            self.stats.duplicates += 1;
            return Insert::Duplicate;
        }
        self.store(now, ext, timestamp, payload)
    }

    fn store(&mut self, now: Instant, ext: i64, timestamp: u32, payload: &[u8]) -> Insert {
        if ext < self.highest {
            self.stats.reordered += 1;
        }
        self.highest = self.highest.max(ext);
        let i = Self::index(ext);
        self.slots[i] = Slot {
            present: true,
            ext,
            timestamp,
            len: payload.len(),
            arrived: now,
        };
        let at = i * self.slot_size;
        self.data[at..at + payload.len()].copy_from_slice(payload);
        self.count += 1;
        Insert::Buffered
    }

    /// The next frame in order, if one may be released at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Frame<'_>> {
        loop {
            let next = self.next?;
            if self.count == 0 {
                if let Some((ssrc, seq)) = self.resync.take() {
                    // Everything of the old stream is out: start the new one at its packet.
                    self.stats.resyncs += 1;
                    self.ssrc = Some(ssrc);
                    self.next = Some(seq as i64);
                    self.highest = seq as i64 - 1;
                    self.history = 0;
                    self.anchor = None;
                }
                if let Some(p) = self.pressure {
                    // Nothing buffered and the waiting packet is beyond the window: skip to
                    // it in one step (all of the numbers in between are lost).
                    if p >= next + DEPTH as i64 {
                        self.skip(p - next);
                    }
                    self.pressure = None;
                }
                return None;
            }
            let i = Self::index(next);
            let slot = self.slots[i];
            if slot.present && slot.ext == next {
                self.slots[i].present = false;
                self.count -= 1;
                self.next = Some(next + 1);
                self.history = (self.history << 1) | 1;
                self.stats.released += 1;
                if self.pressure.is_some_and(|p| p < next + 1 + DEPTH as i64) {
                    self.pressure = None;
                }
                let play_at = self.play_at(slot.arrived, slot.timestamp);
                let at = i * self.slot_size;
                return Some(Frame {
                    seq: next as u16,
                    timestamp: slot.timestamp,
                    payload: &self.data[at..at + slot.len],
                    play_at,
                });
            }
            // A gap at `next`. Give it up when the window must move (a packet beyond it,
            // or a restarted stream is waiting) or when a later packet waited long enough.
            let oldest = self
                .slots
                .iter()
                .filter(|s| s.present)
                .map(|s| s.arrived)
                .min()
                .unwrap_or(now);
            let forced =
                self.resync.is_some() || self.pressure.is_some_and(|p| p >= next + DEPTH as i64);
            if !forced {
                // The waiting packet fits the window now.
                self.pressure = None;
            }
            if forced || now.saturating_duration_since(oldest) >= GAP_WAIT {
                if self.resync.is_some() {
                    // A restart is not loss: just move on to what is buffered.
                    self.next = Some(next + 1);
                    self.history <<= 1;
                } else {
                    self.skip(1);
                }
                continue;
            }
            return None;
        }
    }

    fn skip(&mut self, n: i64) {
        if let Some(next) = self.next {
            self.next = Some(next + n);
            self.stats.lost += n as u64;
            self.history = if n >= 64 { 0 } else { self.history << n };
        }
    }

    fn play_at(&mut self, arrived: Instant, timestamp: u32) -> Instant {
        if let Some((t0, ts0)) = self.anchor {
            let ticks = timestamp.wrapping_sub(ts0);
            // Timestamps going backwards (ticks "negative") or far ahead: re-anchor.
            if ticks < u32::MAX / 2 {
                let at =
                    t0 + Duration::from_micros(ticks as u64 * 1_000_000 / self.clock_hz as u64);
                let off = if at > arrived {
                    at - arrived
                } else {
                    arrived - at
                };
                if off <= REANCHOR {
                    return at;
                }
            }
        }
        self.anchor = Some((arrived, timestamp));
        arrived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn payload(seq: u16) -> [u8; 4] {
        let b = seq.to_be_bytes();
        [b[0], b[1], 0xAA, 0x55]
    }

    /// Feed `(arrival ms, seq)` and pop after every packet and at the end (`end_ms`);
    /// the released sequence numbers in order.
    fn run(jb: &mut JitterBuffer, t0: Instant, packets: &[(u64, u16)], end_ms: u64) -> Vec<u16> {
        let mut out = Vec::new();
        let drain = |jb: &mut JitterBuffer, now: Instant, out: &mut Vec<u16>| {
            while let Some(f) = jb.pop(now) {
                assert_eq!(
                    &f.payload[..2],
                    &f.seq.to_be_bytes(),
                    "payload travels with seq"
                );
                out.push(f.seq);
            }
        };
        for &(at, seq) in packets {
            let now = t0 + MS * at as u32;
            let ts = (seq as u32).wrapping_mul(160);
            while let Insert::Full = jb.insert(now, 7, seq, ts, &payload(seq)) {
                drain(jb, now, &mut out);
            }
            drain(jb, now, &mut out);
        }
        drain(jb, t0 + MS * end_ms as u32, &mut out);
        out
    }

    #[test]
    fn in_order_packets_are_released_at_once() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        assert_eq!(jb.insert(t0, 7, 10, 0, &payload(10)), Insert::Buffered);
        let f = jb.pop(t0).expect("released without delay");
        assert_eq!((f.seq, f.play_at), (10, t0));
        assert!(jb.pop(t0).is_none());
        let out = run(&mut jb, t0, &[(20, 11), (40, 12), (60, 13)], 60);
        assert_eq!(out, [11, 12, 13]);
        assert_eq!(jb.stats.released, 4);
        assert_eq!(jb.stats.lost + jb.stats.late + jb.stats.duplicates, 0);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        // 3 and 4 swapped, 7 arrives after 8 and 9.
        let arrivals = [
            (0, 1),
            (20, 2),
            (40, 4),
            (41, 3),
            (80, 5),
            (100, 6),
            (120, 8),
            (140, 9),
            (150, 7),
            (160, 10),
        ];
        let out = run(&mut jb, t0, &arrivals, 400);
        assert_eq!(out, (1..=10).collect::<Vec<u16>>());
        assert_eq!(jb.stats.reordered, 2);
        assert_eq!(
            (jb.stats.lost, jb.stats.late, jb.stats.duplicates),
            (0, 0, 0)
        );
    }

    #[test]
    fn playout_times_follow_timestamps_not_arrival() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        let mut at = Vec::new();
        for (ms, seq) in [(0u32, 1u16), (45, 3), (46, 2)] {
            let now = t0 + MS * ms;
            jb.insert(now, 7, seq, seq as u32 * 160, &payload(seq));
            while let Some(f) = jb.pop(now) {
                at.push((f.seq, f.play_at));
            }
        }
        assert_eq!(at, [(1, t0), (2, t0 + MS * 20), (3, t0 + MS * 40)]);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        // 5 twice while still buffered (4 missing), 2 again after release.
        let out = run(
            &mut jb,
            t0,
            &[(0, 1), (20, 2), (40, 5), (41, 5), (42, 3), (43, 4), (60, 2)],
            200,
        );
        assert_eq!(out, [1, 2, 3, 4, 5]);
        assert_eq!(jb.stats.duplicates, 2);
        assert_eq!(jb.stats.lost, 0);
    }

    #[test]
    fn a_lost_packet_is_given_up_after_the_wait_and_a_late_one_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        // 3 never comes in time; 4 waits 60 ms, then 3 is skipped; 3 arriving later is late.
        jb.insert(t0, 7, 1, 160, &payload(1));
        jb.insert(t0, 7, 2, 320, &payload(2));
        assert_eq!(jb.pop(t0).map(|f| f.seq), Some(1));
        assert_eq!(jb.pop(t0).map(|f| f.seq), Some(2));
        jb.insert(t0 + MS * 60, 7, 4, 640, &payload(4));
        assert!(jb.pop(t0 + MS * 60).is_none(), "waits for 3");
        assert!(jb.pop(t0 + MS * 119).is_none(), "still within the wait");
        assert_eq!(jb.pop(t0 + MS * 120).map(|f| f.seq), Some(4));
        assert_eq!(jb.stats.lost, 1);
        assert_eq!(
            jb.insert(t0 + MS * 130, 7, 3, 480, &payload(3)),
            Insert::Late
        );
        assert_eq!(jb.stats.late, 1);
        assert_eq!(jb.stats.duplicates, 0, "a late packet is not a duplicate");
    }

    #[test]
    fn a_packet_beyond_the_window_moves_it() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        // 2..=4 lost; 5..=9 wait behind the gap; 10 does not fit the window 2..=9, so 2 is
        // given up at once, and 11 pushes out 3; 4 is given up after the 60 ms wait.
        let mut packets = vec![(0u64, 1u16)];
        packets.extend((5..=11).map(|s| (s as u64, s)));
        let out = run(&mut jb, t0, &packets, 11);
        assert_eq!(out, [1], "4 is still awaited");
        assert_eq!(jb.stats.lost, 2);
        let out = run(&mut jb, t0, &[], 100);
        assert_eq!(out, [5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(jb.stats.lost, 3);
        // A far jump ahead (beyond the window, under MAX_JUMP) with nothing buffered.
        let out = run(&mut jb, t0, &[(200, 111)], 200);
        assert_eq!(out, [111]);
        assert_eq!(jb.stats.lost, 3 + 99);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        let arrivals = [
            (0, 65533),
            (20, 65534),
            (40, 0),
            (41, 65535),
            (60, 1),
            (80, 3),
            (81, 2),
            (100, 3),
        ];
        let out = run(&mut jb, t0, &arrivals, 300);
        assert_eq!(out, [65533, 65534, 65535, 0, 1, 2, 3]);
        assert_eq!(jb.stats.reordered, 2);
        assert_eq!(jb.stats.duplicates, 1);
        assert_eq!(jb.stats.lost, 0);
    }

    #[test]
    fn a_restarted_stream_resynchronises() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(160, 8000, t0);
        let out = run(
            &mut jb,
            t0,
            &[(0, 100), (20, 102), (40, 30000), (60, 30001)],
            60,
        );
        assert_eq!(
            out,
            [100, 102, 30000, 30001],
            "old packets first, then the new stream"
        );
        assert_eq!(jb.stats.resyncs, 1);
        assert_eq!(jb.stats.lost, 0, "a restart is not loss");
        // A new SSRC restarts too, even with nearby numbers.
        let now = t0 + MS * 80;
        assert_eq!(jb.insert(now, 8, 5, 0, &payload(5)), Insert::Full);
        assert!(jb.pop(now).is_none());
        assert_eq!(jb.insert(now, 8, 5, 0, &payload(5)), Insert::Buffered);
        assert_eq!(jb.pop(now).map(|f| f.seq), Some(5));
        assert_eq!(jb.stats.resyncs, 2);
    }

    #[test]
    fn oversize_payloads_are_refused() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(4, 8000, t0);
        assert_eq!(jb.insert(t0, 1, 1, 0, &[0; 5]), Insert::Oversize);
        assert_eq!(jb.stats.oversize, 1);
    }

    proptest::proptest! {
        /// Any arrival order of any sequence numbers: never panics, never releases a number
        /// twice or out of order (within one stream), and every packet offered is accounted
        /// for exactly once.
        #[test]
        fn accounting_holds_for_any_arrivals(
            start in proptest::prelude::any::<u16>(),
            steps in proptest::collection::vec((0u16..20, 0u64..50), 1..200),
        ) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(4, 8000, t0);
            let mut now_ms = 0u64;
            let mut released: Vec<i64> = Vec::new();
            let mut offered = 0u64;
            let mut refused = 0u64;
            let mut last_ext: Option<i64> = None;
            for (i, (jitter, gap)) in steps.iter().enumerate() {
                now_ms += gap;
                let now = t0 + MS * now_ms as u32;
                let seq = start.wrapping_add(i as u16).wrapping_sub(*jitter);
                offered += 1;
                loop {
                    match jb.insert(now, 1, seq, 0, &payload(seq)) {
                        Insert::Full => {
                            while let Some(f) = jb.pop(now) {
                                released.push(f.seq as i64);
                            }
                        }
                        Insert::Buffered => break,
                        _ => { refused += 1; break }
                    }
                }
                while let Some(f) = jb.pop(now) {
                    released.push(f.seq as i64);
                }
            }
            while let Some(f) = jb.pop(t0 + MS * (now_ms as u32 + 1000)) {
                released.push(f.seq as i64);
            }
            proptest::prop_assert_eq!(jb.len(), 0);
            proptest::prop_assert_eq!(released.len() as u64 + refused, offered);
            proptest::prop_assert_eq!(jb.stats.released, released.len() as u64);
            // Strictly increasing modulo 2^16 (no resync: jumps stay under MAX_JUMP).
            for s in &released {
                if let Some(prev) = last_ext {
                    let d = (*s as u16).wrapping_sub(prev as u16) as i16;
                    proptest::prop_assert!(d > 0, "{} after {}", s, prev);
                }
                last_ext = Some(*s);
            }
        }
    }
}
