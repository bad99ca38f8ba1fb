//! Compact non-INVITE server transactions (RFC 3261 §17.2.2, Figure 8) for a shell whose
//! TU sends its responses itself and reports a copy: the SIP router and its call actors.
//!
//! A [`NonInviteServer`](super::NonInviteServer) keeps the request and its last response as
//! parsed [`Message`](crate::sip::message::Message)s, about a kilobyte with its key and heap
//! entries. The router holds one transaction per in-dialog request for Timer J (64·T1 =
//! 32 s after the final response over UDP): at 2000 calls/s the BYEs alone are 64 000
//! Completed transactions at any time, and keeping full transactions (the INVITE ones in
//! Accepted) once doubled the router's peak RSS. A transaction here is what Figure 8 needs
//! and nothing more:
//! - its key as a keyed 64-bit hash of the [`TransactionKey`] (branch, sent-by, method;
//!   SipHash with a per-process random key, so a peer cannot craft a collision, and the
//!   chance of an accidental one among 64 000 live entries is about 10⁻¹⁰);
//! - the bytes of the last response (none in Trying, the provisional in Proceeding, the
//!   final in Completed), exactly as sent;
//! - one deadline: the peer's Timer F (64·T1 after the request: no retransmission comes
//!   later) until the final response, then Timer J (64·T1 over UDP, zero over reliable
//!   transports: the transaction ends with its final response).
//!
//! Measured (tests `entry_is_compact`, `bytes_per_completed_bye`): `size_of::<Entry>()` is
//! 40 bytes, a hash-table slot (key + entry + control byte) 49, a queued deadline 24 (two per
//! transaction: the request's and the final response's); with the call's 327-byte 200 OK to
//! a BYE (a 336-byte heap block), 64 000 Completed BYEs take 6.4 MB of table, 3.1 MB of
//! queue and 21.5 MB of responses: 485 bytes per transaction, 31 MB in all. The router's transactions are never
//! asked to retransmit on a timer (only INVITE responses are, Timer G), so no flow context
//! is kept: a retransmission is answered on the flow it came on.
//!
//! Sans-IO: time is an argument; the shell expires entries with
//! [`handle_timeout`](NonInviteServers::handle_timeout), typically after each event.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::{class, Timer, TimerConfig, TransactionError, TransactionKey};

/// What a request that matches a transaction here gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    /// Trying: the TU has not answered yet; the retransmission is absorbed silently.
    Trying,
    /// Proceeding or Completed: the last response, to send again.
    Repeat(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug)]
struct Entry {
    /// Trying/Proceeding: the peer's Timer F; Completed: Timer J.
    deadline: Instant,
    response: Option<Box<[u8]>>,
    state: State,
    reliable: bool,
}

/// The keys are SipHash outputs already: hashing them again would only cost the router.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in, to stay a valid hasher.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The shell's non-INVITE server transactions (see the module doc).
#[derive(Debug)]
pub struct NonInviteServers {
    hasher: RandomState,
    entries: HashMap<u64, Entry, BuildHasherDefault<Identity>>,
    /// Deadlines in the order they were set (all are 64·T1 from a non-decreasing `now`,
    /// so this is also the order of expiry); an item whose entry has another deadline now
    /// is skipped (lazy deletion).
    order: VecDeque<(Instant, u64)>,
    t64: Duration,
    cap: usize,
}

impl NonInviteServers {
    /// At most `cap` transactions at once: beyond it [`start`](Self::start) refuses and the
    /// shell hands the request to its TU without a transaction (never unbounded memory).
    pub fn new(cfg: TimerConfig, cap: usize) -> NonInviteServers {
        NonInviteServers {
            hasher: RandomState::new(),
            entries: HashMap::default(),
            order: VecDeque::new(),
            t64: cfg.wait(Timer::J, false),
            cap,
        }
    }

    /// The compact key of a server transaction.
    pub fn key(&self, key: &TransactionKey) -> u64 {
        self.hasher
            .hash_one((&*key.branch, &*key.sent_by, key.method.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A request that belongs to a live transaction (a retransmission): what to answer.
    /// `None`: no transaction (a new request, or one whose transaction has ended).
    pub fn matched(&self, key: u64, now: Instant) -> Option<Matched<'_>> {
        let e = self.entries.get(&key).filter(|e| e.deadline > now)?;
        Some(match (&e.response, e.state) {
            (Some(bytes), State::Proceeding | State::Completed) => Matched::Repeat(bytes),
            _ => Matched::Trying,
        })
    }

    /// A new request handed to the TU: its transaction starts in Trying (replacing one
    /// with the same key that has ended but not been swept yet). Refused (false) when a
    /// live transaction has the key or the set is full.
    pub fn start(&mut self, key: u64, now: Instant, reliable: bool) -> bool {
        match self.entries.get(&key) {
            Some(e) if e.deadline > now => return false,
            Some(_) => {}
            None if self.entries.len() >= self.cap => return false,
            None => {}
        }
        let deadline = now + self.t64;
        self.entries.insert(
            key,
            Entry {
                deadline,
                response: None,
                state: State::Trying,
                reliable,
            },
        );
        self.order.push_back((deadline, key));
        true
    }

    /// The request never reached the TU (its mailbox was full or closed): forget the
    /// transaction, so the peer's retransmission is a new request again.
    pub fn abandon(&mut self, key: u64) -> bool {
        self.entries.remove(&key).is_some()
    }

    /// The TU sent `bytes`, a response with status `code`, on transaction `key`. A
    /// provisional moves it to Proceeding; a final response to Completed for Timer J, or
    /// ends it at once over a reliable transport (Timer J is zero).
    pub fn response_sent(
        &mut self,
        key: u64,
        code: u16,
        bytes: Box<[u8]>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let e = self
            .entries
            .get_mut(&key)
            .filter(|e| e.deadline > now)
            .ok_or(TransactionError::NotFound)?;
        match (e.state, class(code)) {
            (State::Trying | State::Proceeding, 1) => {
                e.state = State::Proceeding;
                e.response = Some(bytes);
            }
            (State::Trying | State::Proceeding, 2..=6) if e.reliable => {
                self.entries.remove(&key);
            }
            (State::Trying | State::Proceeding, 2..=6) => {
                e.state = State::Completed;
                e.response = Some(bytes);
                e.deadline = now + self.t64;
                self.order.push_back((e.deadline, key));
            }
            (state, _) => {
                return Err(TransactionError::InvalidState {
                    code,
                    state: match state {
                        State::Trying => "trying",
                        State::Proceeding => "proceeding",
                        State::Completed => "completed",
                    },
                })
            }
        }
        Ok(())
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work (a transaction
    /// ends), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|(at, key)| self.entries.get(key).is_some_and(|e| e.deadline == *at))
            .map(|(at, _)| *at)
    }

    /// End every transaction whose deadline is `now` or earlier.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.deadline == at) {
                self.entries.remove(&key);
            }
        }
        if self.entries.is_empty() {
            // Give back the memory of a burst.
            self.order.clear();
            self.entries.shrink_to(1024);
            self.order.shrink_to(1024);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Message};

    fn bye(branch: &str, host: &str) -> Message {
        let raw = format!(
            "BYE sip:svc@10.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {host}:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@10.0.0.2>;tag=from1\r\n\
             To: <sip:svc@10.0.0.1>;tag=to1\r\n\
             Call-ID: c1@10.0.0.2\r\n\
             CSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes(), Framing::Datagram).unwrap()
    }

    fn key_of(set: &NonInviteServers, m: &Message) -> u64 {
        set.key(&TransactionKey::server(m).unwrap())
    }

    fn set() -> NonInviteServers {
        NonInviteServers::new(TimerConfig::default(), 1000)
    }

    const T64: Duration = Duration::from_secs(32);

    #[test]
    fn keys_follow_rfc_3261_matching() {
        let s = set();
        let a = key_of(&s, &bye("z9hG4bKa", "10.0.0.2"));
        assert_eq!(a, key_of(&s, &bye("z9hG4bKa", "10.0.0.2")));
        assert_ne!(
            a,
            key_of(&s, &bye("z9hG4bKb", "10.0.0.2")),
            "another branch"
        );
        assert_ne!(
            a,
            key_of(&s, &bye("z9hG4bKa", "10.0.0.3")),
            "another sent-by"
        );
        let mut info = bye("z9hG4bKa", "10.0.0.2");
        info.start = crate::sip::message::StartLine::Request {
            method: crate::sip::message::Method::Info,
            uri: crate::sip::uri::Uri::sip(Some("svc"), "10.0.0.1", None),
        };
        assert_ne!(a, key_of(&s, &info), "another method");
    }

    /// Figure 8 over UDP: Trying absorbs silently, Proceeding repeats the provisional,
    /// Completed repeats the final for Timer J, then the transaction is gone.
    #[test]
    fn figure_8_unreliable() {
        let mut s = set();
        let t0 = Instant::now();
        let k = key_of(&s, &bye("z9hG4bK1", "10.0.0.2"));
        assert_eq!(s.matched(k, t0), None, "a new request");
        assert!(s.start(k, t0, false));
        assert!(!s.start(k, t0, false), "one transaction per key");
        assert_eq!(s.matched(k, t0), Some(Matched::Trying));
        let t1 = t0 + Duration::from_millis(300);
        s.response_sent(k, 100, b"100".to_vec().into(), t1).unwrap();
        assert_eq!(s.matched(k, t1), Some(Matched::Repeat(b"100")));
        let t2 = t0 + Duration::from_secs(2);
        s.response_sent(k, 200, b"200".to_vec().into(), t2).unwrap();
        assert_eq!(s.matched(k, t2), Some(Matched::Repeat(b"200")));
        assert!(
            s.response_sent(k, 200, b"again".to_vec().into(), t2)
                .is_err(),
            "one final response"
        );
        // Timer J runs from the final response, not from the request.
        assert_eq!(s.poll_timeout(), Some(t2 + T64));
        s.handle_timeout(t0 + T64);
        assert_eq!(
            s.matched(k, t0 + T64),
            Some(Matched::Repeat(b"200")),
            "the request's deadline was superseded"
        );
        let almost = t2 + T64 - Duration::from_millis(1);
        s.handle_timeout(almost);
        assert_eq!(s.matched(k, almost), Some(Matched::Repeat(b"200")));
        // Ended at its deadline even before it is swept: the same request is new again.
        assert_eq!(s.matched(k, t2 + T64), None);
        let mut unswept = NonInviteServers::new(TimerConfig::default(), 10);
        unswept.start(k, t0, false);
        assert!(
            unswept.start(k, t0 + T64, false),
            "an ended transaction gives way"
        );
        assert_eq!(unswept.matched(k, t0 + T64), Some(Matched::Trying));
        s.handle_timeout(t2 + T64);
        assert_eq!(s.matched(k, t2 + T64), None);
        assert!(s.is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    /// Over a reliable transport Timer J is zero: the final response ends the transaction.
    #[test]
    fn figure_8_reliable() {
        let mut s = set();
        let t0 = Instant::now();
        let k = key_of(&s, &bye("z9hG4bK2", "10.0.0.2"));
        assert!(s.start(k, t0, true));
        assert_eq!(s.matched(k, t0), Some(Matched::Trying));
        s.response_sent(k, 200, b"200".to_vec().into(), t0).unwrap();
        assert_eq!(s.matched(k, t0), None);
        assert!(s.is_empty());
    }

    /// A TU that never answers (its request was lost in a full mailbox and not abandoned,
    /// or it ended): the transaction ends with the peer's Timer F.
    #[test]
    fn unanswered_transactions_end_after_64_t1() {
        let mut s = set();
        let t0 = Instant::now();
        let k = key_of(&s, &bye("z9hG4bK3", "10.0.0.2"));
        s.start(k, t0, false);
        assert_eq!(s.poll_timeout(), Some(t0 + T64));
        s.handle_timeout(t0 + T64);
        assert!(s.is_empty());
        assert!(
            s.response_sent(k, 200, b"late".to_vec().into(), t0 + T64)
                .is_err(),
            "a response after the end is the TU's own business"
        );
    }

    #[test]
    fn an_abandoned_request_is_new_again() {
        let mut s = set();
        let t0 = Instant::now();
        let k = key_of(&s, &bye("z9hG4bK4", "10.0.0.2"));
        s.start(k, t0, false);
        assert!(s.abandon(k));
        assert_eq!(s.matched(k, t0), None);
        assert!(s.start(k, t0, false));
        // The abandoned transaction's queue item does not end the new one early.
        let t1 = t0 + Duration::from_secs(1);
        s.response_sent(k, 200, b"200".to_vec().into(), t1).unwrap();
        s.handle_timeout(t0 + T64);
        assert_eq!(s.matched(k, t0 + T64), Some(Matched::Repeat(b"200")));
    }

    #[test]
    fn the_cap_bounds_memory() {
        let mut s = NonInviteServers::new(TimerConfig::default(), 2);
        let t0 = Instant::now();
        assert!(s.start(1, t0, false));
        assert!(s.start(2, t0, false));
        assert!(
            !s.start(3, t0, false),
            "full: the TU gets the request without one"
        );
        let t1 = t0 + Duration::from_secs(1);
        s.response_sent(1, 200, b"x".to_vec().into(), t1).unwrap();
        s.handle_timeout(t0 + T64);
        assert_eq!(
            s.len(),
            1,
            "Trying #2 ended, Completed #1 has 1 s of Timer J left"
        );
        assert!(s.start(3, t0 + T64, false), "room again");
    }

    /// Many transactions in virtual time: each ends exactly at its own deadline, in order.
    #[test]
    fn expiry_in_virtual_time() {
        let mut s = set();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i * 10);
            assert!(s.start(i, at, false));
            if i % 2 == 0 {
                // Even ones answered 1 s later (Completed, J from then).
                s.handle_timeout(at);
            }
        }
        for i in (0..100u64).step_by(2) {
            let at = t0 + Duration::from_millis(i * 10 + 1000);
            s.response_sent(i, 200, vec![i as u8].into(), at).unwrap();
        }
        let mut now = t0;
        let mut ended = Vec::new();
        while let Some(next) = s.poll_timeout() {
            assert!(next >= now, "deadlines come in order");
            now = next;
            let before: Vec<u64> = (0..100).filter(|k| s.entries.contains_key(k)).collect();
            s.handle_timeout(now);
            for k in before {
                if !s.entries.contains_key(&k) {
                    assert!(
                        s.matched(k, now - Duration::from_nanos(1)).is_none(),
                        "gone"
                    );
                    ended.push((k, now));
                }
            }
        }
        assert_eq!(ended.len(), 100);
        for (k, at) in ended {
            let extra = if k % 2 == 0 { 1000 } else { 0 };
            assert_eq!(
                at,
                t0 + Duration::from_millis(k * 10 + extra) + T64,
                "key {k}"
            );
        }
    }

    /// The figure of the module doc: 64 000 Completed BYE transactions (32 s of Timer J at
    /// 2000 calls/s) with the 327-byte 200 OK the call sends (measured in
    /// `tests/dialog_sipp.rs`), counted from the tables' capacities (a hash-table slot is
    /// the key, the entry and one control byte) plus the responses' heap blocks.
    #[test]
    fn bytes_per_completed_bye() {
        let mut s = NonInviteServers::new(TimerConfig::default(), 100_000);
        let t0 = Instant::now();
        let n = 64_000u64;
        for i in 0..n {
            let at = t0 + Duration::from_micros(i * 500);
            assert!(s.start(i, at, false));
            s.response_sent(i, 200, vec![0u8; 327].into(), at).unwrap();
        }
        let slot = std::mem::size_of::<(u64, Entry)>() + 1;
        // `capacity()` is 7/8 of the buckets hashbrown allocates (a power of two).
        let buckets = (s.entries.capacity() * 8 / 7).next_power_of_two();
        let table = buckets * slot;
        let queue = s.order.capacity() * std::mem::size_of::<(Instant, u64)>();
        // A heap block of 327 bytes takes 336 with glibc malloc's 8-byte header and rounding.
        let responses = n as usize * 336;
        let per_entry = (table + queue + responses) / n as usize;
        eprintln!(
            "{n} entries: table {table} B, queue {queue} B, responses {responses} B: \
             {per_entry} B per Completed BYE"
        );
        assert!(per_entry < 600, "{per_entry} bytes per entry");
    }

    /// The memory figure of the module doc (and of the router's): keep it honest.
    #[test]
    fn entry_is_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 40,
            "{}",
            std::mem::size_of::<Entry>()
        );
        assert_eq!(std::mem::size_of::<(u64, Entry)>(), 48);
        assert_eq!(std::mem::size_of::<(Instant, u64)>(), 24);
    }
}
