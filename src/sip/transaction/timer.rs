//! The transaction timer table (quinn style): one optional deadline per named RFC 3261 /
//! RFC 6026 timer, in a fixed array, so a machine's "next wake-up" is a scan of 13 slots and
//! arming a timer twice simply moves it.
//!
//! Durations follow RFC 3261 Table 4 and RFC 6026 §8.4 / §8.11: on a reliable transport
//! the retransmit timers (A, E, G) are never armed and the wait timers D, I, J and K are
//! zero, so the transaction ends as soon as the transport has done its job.

use std::time::{Duration, Instant};

/// The named timers. `Trying` is the "send 100 if the TU won't in 200 ms" of RFC 3261
/// §17.2.1, which the RFC does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmit (T1, doubling; unreliable only).
    A,
    /// INVITE client: no final response (64·T1).
    B,
    /// INVITE client: wait for response retransmits in Completed (≥ 32 s; 0 reliable).
    D,
    /// Non-INVITE client: request retransmit (T1 doubling to T2; unreliable only).
    E,
    /// Non-INVITE client: no final response (64·T1).
    F,
    /// INVITE server: final response retransmit (T1 doubling to T2; unreliable only).
    G,
    /// INVITE server: no ACK (64·T1).
    H,
    /// INVITE server: ACK retransmits absorbed in Confirmed (T4; 0 reliable).
    I,
    /// Non-INVITE server: request retransmits absorbed in Completed (64·T1; 0 reliable).
    J,
    /// Non-INVITE client: response retransmits absorbed in Completed (T4; 0 reliable).
    K,
    /// INVITE server (RFC 6026): Accepted state lifetime (64·T1).
    L,
    /// INVITE client (RFC 6026): Accepted state lifetime (64·T1).
    M,
    /// INVITE server: automatic 100 Trying (200 ms).
    Trying,
}

const COUNT: usize = 13;

impl Timer {
    pub const ALL: [Timer; COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Trying,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// RFC 3261 §17.1.1.1 timer values; T1 is also the RTT estimate everything else scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Timer D on unreliable transports ("at least 32 s").
    pub timer_d: Duration,
    /// Delay before an INVITE server transaction sends 100 Trying on its own; `None`: the
    /// TU always answers in time (RFC 3261 §17.2.1).
    pub auto_trying: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            auto_trying: Some(Duration::from_millis(200)),
        }
    }
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J (unreliable), L, M.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }

    /// The value of a wait timer on this transport (zero on reliable ones, RFC 3261 §17).
    pub fn wait(&self, timer: Timer, reliable: bool) -> Duration {
        match timer {
            Timer::D if reliable => Duration::ZERO,
            Timer::D => self.timer_d,
            Timer::I | Timer::K if reliable => Duration::ZERO,
            Timer::I | Timer::K => self.t4,
            Timer::J if reliable => Duration::ZERO,
            Timer::A | Timer::E | Timer::G => self.t1,
            Timer::Trying => self.auto_trying.unwrap_or(Duration::ZERO),
            Timer::B | Timer::F | Timer::H | Timer::J | Timer::L | Timer::M => self.t64(),
        }
    }
}

/// One deadline per timer.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    at: [Option<Instant>; COUNT],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    pub fn stop(&mut self, timer: Timer) {
        self.at[timer.index()] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    pub fn stop_all(&mut self) {
        self.at = [None; COUNT];
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The earliest timer due at `now` (disarmed) with the instant it was due at; ties go
    /// to the timer listed first, so a retransmit due together with the timeout is sent
    /// before the timeout ends the transaction only if it was listed first (A before B).
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let mut best: Option<(Timer, Instant)> = None;
        for t in Timer::ALL {
            if let Some(at) = self.at[t.index()] {
                if at <= now && best.is_none_or(|(_, b)| at < b) {
                    best = Some((t, at));
                }
            }
        }
        if let Some((t, _)) = best {
            self.stop(t);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_rearms() {
        let t0 = Instant::now();
        let mut tt = TimerTable::default();
        assert_eq!(tt.next(), None);
        tt.set(Timer::B, t0 + Duration::from_secs(32));
        tt.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(tt.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(tt.pop_expired(t0), None);
        let now = t0 + Duration::from_secs(40);
        assert_eq!(
            tt.pop_expired(now),
            Some((Timer::A, t0 + Duration::from_millis(500)))
        );
        assert_eq!(
            tt.pop_expired(now),
            Some((Timer::B, t0 + Duration::from_secs(32)))
        );
        assert_eq!(tt.pop_expired(now), None);
        tt.set(Timer::G, t0);
        tt.set(Timer::G, t0 + Duration::from_secs(1));
        assert_eq!(tt.next(), Some(t0 + Duration::from_secs(1)));
        tt.stop_all();
        assert_eq!(tt.next(), None);
    }

    #[test]
    fn reliable_transports_zero_the_wait_timers() {
        let c = TimerConfig::default();
        for t in [Timer::D, Timer::I, Timer::J, Timer::K] {
            assert_eq!(c.wait(t, true), Duration::ZERO, "{t:?}");
            assert!(c.wait(t, false) > Duration::ZERO, "{t:?}");
        }
        assert_eq!(c.wait(Timer::D, false), Duration::from_secs(32));
        assert_eq!(c.wait(Timer::J, false), Duration::from_secs(32));
        assert_eq!(c.wait(Timer::K, false), Duration::from_secs(5));
        assert_eq!(c.wait(Timer::H, true), Duration::from_secs(32));
    }
}
