//! A UAC core against a UAS core over a simulated network, in virtual time (the str0m
//! style): each side is a [`TransactionTable`] plus the little transaction user RFC 3261
//! asks for (the UAC ACKs every 2xx and sends BYE, the UAS answers, retransmits its 2xx
//! until the ACK per RFC 6026, answers CANCEL and BYE). The network loses, delays and
//! reorders messages from a seeded generator, and can drop chosen messages ("the first
//! 180"); time jumps to the next deadline of anything. The scenarios: call set-up with the
//! INVITE, 180, 200 or ACK lost, a CANCEL racing the 200, BYE retransmitted until its 200,
//! and whole calls over a lossy, reordering link.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::message::{Framing, Message};

const MS: Duration = Duration::from_millis(1);

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    Uac,
    Uas,
}

/// What a message is, for drop rules and the log: "INVITE", "ACK", "180 INVITE",
/// "200 BYE", ...
fn label(m: &Message) -> String {
    let method = m.cseq().map(|c| c.method.to_string()).unwrap_or_default();
    match m.status() {
        Some(code) => format!("{code} {method}"),
        None => m.method().map(ToString::to_string).unwrap_or_default(),
    }
}

struct Net {
    rng: Rng,
    /// Percent of messages lost at random.
    loss: u64,
    /// One-way delay: `base` plus up to `jitter` (a jitter above the gap between two
    /// messages reorders them).
    base: Duration,
    jitter: Duration,
    /// Drop the next `n` messages with this label.
    drops: Vec<(&'static str, usize)>,
    in_flight: Vec<(Instant, u64, To, Vec<u8>)>,
    seq: u64,
    /// (when sent, where to, label, delivered).
    log: Vec<(Duration, To, String, bool)>,
    t0: Instant,
}

impl Net {
    fn new(seed: u64, loss: u64, t0: Instant) -> Net {
        Net {
            rng: Rng::new(seed),
            loss,
            base: 20 * MS,
            jitter: Duration::ZERO,
            drops: Vec::new(),
            in_flight: Vec::new(),
            seq: 0,
            log: Vec::new(),
            t0,
        }
    }

    fn send(&mut self, now: Instant, to: To, m: &Message) {
        let l = label(m);
        let targeted = self
            .drops
            .iter_mut()
            .find(|(want, n)| *n > 0 && *want == l)
            .map(|(_, n)| *n -= 1)
            .is_some();
        let lost = targeted || self.rng.chance(self.loss);
        self.log.push((now - self.t0, to, l, !lost));
        if lost {
            return;
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.next() % self.jitter.as_nanos() as u64)
        };
        self.seq += 1;
        self.in_flight
            .push((now + self.base + jitter, self.seq, to, m.to_bytes()));
    }

    fn next_at(&self) -> Option<Instant> {
        self.in_flight.iter().map(|m| m.0).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<(To, Message)> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].0 <= now {
                due.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.0, m.1));
        due.into_iter()
            .map(|(_, _, to, b)| (to, Message::parse(&b, Framing::Datagram).unwrap()))
            .collect()
    }

    /// When each message with this label was sent, from t0.
    fn sent(&self, l: &str) -> Vec<Duration> {
        self.log.iter().filter(|e| e.2 == l).map(|e| e.0).collect()
    }
}

fn request(method: &str, branch: &str, cseq: u32, to_tag: Option<&str>) -> Message {
    let to = match to_tag {
        Some(t) => format!("<sip:bob@example.com>;tag={t}"),
        None => "<sip:bob@example.com>".into(),
    };
    let raw = format!(
        "{method} sip:bob@10.0.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=uac\r\n\
         To: {to}\r\n\
         Call-ID: sim-1\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes(), Framing::Datagram).unwrap()
}

/// The UAC: one INVITE, ACK for every 2xx, a CANCEL when asked, BYE after `talk`.
struct UacCore {
    table: TransactionTable<()>,
    invite: TransactionKey,
    /// Send a CANCEL at this instant (if still unanswered).
    cancel_at: Option<Instant>,
    cancelled: bool,
    /// Hang up this long after the 2xx.
    talk: Duration,
    bye_at: Option<Instant>,
    bye: Option<TransactionKey>,
    branches: u32,
    provisionals: usize,
    /// Every 2xx the TU saw (the first makes the dialog; the rest are re-ACKed).
    oks: usize,
    /// The INVITE's non-2xx final, if any.
    failed: Option<u16>,
    bye_answered: Option<u16>,
    timeouts: Vec<Timer>,
}

impl UacCore {
    fn new(now: Instant) -> UacCore {
        let mut table = TransactionTable::new(TimerConfig::default());
        let invite = table
            .start_client(request("INVITE", "z9hG4bKinv", 1, None), now, (), false)
            .unwrap();
        UacCore {
            table,
            invite,
            cancel_at: None,
            cancelled: false,
            talk: Duration::from_secs(2),
            bye_at: None,
            bye: None,
            branches: 0,
            provisionals: 0,
            oks: 0,
            failed: None,
            bye_answered: None,
            timeouts: Vec::new(),
        }
    }

    fn next_at(&self) -> Option<Instant> {
        [
            self.table.poll_timeout(),
            self.cancel_at.filter(|_| !self.cancelled),
            self.bye_at.filter(|_| self.bye.is_none()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn start_bye(&mut self, now: Instant, to_tag: &str) {
        self.branches += 1;
        let bye = request(
            "BYE",
            &format!("z9hG4bKbye{}", self.branches),
            2,
            Some(to_tag),
        );
        self.bye = Some(self.table.start_client(bye, now, (), false).unwrap());
    }

    fn on_time(&mut self, now: Instant, net: &mut Net) {
        self.table.handle_timeout(now);
        if self.cancel_at.is_some_and(|t| now >= t) && !self.cancelled {
            self.cancelled = true;
            // The table sends it now, or once a provisional arrives (§9.1).
            let _ = self.table.cancel(&self.invite, now);
        }
        if self.bye_at.is_some_and(|t| now >= t) && self.bye.is_none() {
            self.start_bye(now, "uas");
        }
        self.flush(now, net);
    }

    fn flush(&mut self, now: Instant, net: &mut Net) {
        loop {
            let mut idle = true;
            while let Some(t) = self.table.poll_transmit() {
                idle = false;
                net.send(now, To::Uas, &t.message);
            }
            while let Some((key, ev)) = self.table.poll_event() {
                idle = false;
                self.on_event(now, key, ev, net);
            }
            if idle {
                return;
            }
        }
    }

    fn on_event(&mut self, now: Instant, key: TransactionKey, ev: Event, net: &mut Net) {
        match ev {
            Event::Response(r) if key == self.invite => match r.status().unwrap_or(0) {
                100..=199 => self.provisionals += 1,
                200..=299 => {
                    self.oks += 1;
                    // Every 2xx gets an ACK from the TU (RFC 3261 §13.2.2.4), new branch.
                    let tag = r.to_header().unwrap().tag().unwrap().to_string();
                    net.send(now, To::Uas, &request("ACK", "z9hG4bKack", 1, Some(&tag)));
                    if self.oks == 1 {
                        if self.cancelled {
                            // The 200 crossed our CANCEL: the call exists, end it (§9.1).
                            self.start_bye(now, &tag);
                        } else {
                            self.bye_at = Some(now + self.talk);
                        }
                    }
                }
                code => self.failed = Some(code),
            },
            Event::Response(r) if Some(&key) == self.bye.as_ref() && r.status() >= Some(200) => {
                self.bye_answered = r.status();
            }
            Event::Timeout(t) if key == self.invite || Some(&key) == self.bye.as_ref() => {
                self.timeouts.push(t)
            }
            _ => {}
        }
    }
}

/// The UAS: 180 at once, 200 after `ring` unless cancelled first; its 2xx resent until
/// the ACK (the TU's job under RFC 6026); CANCEL and BYE answered 200.
struct UasCore {
    table: TransactionTable<()>,
    ring: Duration,
    invite: Option<(TransactionKey, Message)>,
    answer_at: Option<Instant>,
    /// The 2xx being retransmitted: next send, interval, give-up.
    ok_retx: Option<(Instant, Duration, Instant)>,
    /// Requests the TU saw, by method (retransmissions must never show here).
    seen: Vec<String>,
    acked: bool,
    answered: bool,
    cancelled: bool,
}

impl UasCore {
    fn new(ring: Duration) -> UasCore {
        UasCore {
            table: TransactionTable::new(TimerConfig::default()),
            ring,
            invite: None,
            answer_at: None,
            ok_retx: None,
            seen: Vec::new(),
            acked: false,
            answered: false,
            cancelled: false,
        }
    }

    fn next_at(&self) -> Option<Instant> {
        [
            self.table.poll_timeout(),
            self.answer_at,
            self.ok_retx.map(|r| r.0.min(r.2)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn ok(&self) -> Option<(TransactionKey, Message)> {
        self.invite
            .as_ref()
            .map(|(k, req)| (k.clone(), req.response(200, "OK", Some("uas"))))
    }

    fn on_time(&mut self, now: Instant, net: &mut Net) {
        self.table.handle_timeout(now);
        if self.answer_at.is_some_and(|t| now >= t) {
            self.answer_at = None;
            if let Some((key, ok)) = self.ok() {
                self.answered = true;
                self.table.send_response(&key, ok, now).unwrap();
                self.ok_retx = Some((now + 500 * MS, 500 * MS, now + 64 * 500 * MS));
            }
        }
        if let Some((at, iv, give_up)) = self.ok_retx {
            if now >= give_up {
                self.ok_retx = None;
            } else if now >= at {
                let (key, ok) = self.ok().unwrap();
                // Accepted (Timer L) outlives the give-up: the table takes it.
                self.table.send_response(&key, ok, now).unwrap();
                let iv = (iv * 2).min(Duration::from_secs(4));
                self.ok_retx = Some((now + iv, iv, give_up));
            }
        }
        self.flush(now, net);
    }

    fn on_request(&mut self, now: Instant, req: Message, net: &mut Net) {
        let method = req.method().unwrap().to_string();
        match self
            .table
            .handle_request(req.clone(), now, (), false)
            .unwrap()
        {
            Incoming::New(key) => {
                self.seen.push(method.clone());
                let code = if method == "INVITE" {
                    let ringing = req.response(180, "Ringing", Some("uas"));
                    self.table.send_response(&key, ringing, now).unwrap();
                    self.invite = Some((key, req));
                    self.answer_at = Some(now + self.ring);
                    return self.flush(now, net);
                } else {
                    200
                };
                let r = req.response(code, "OK", Some("uas"));
                self.table.send_response(&key, r, now).unwrap();
            }
            Incoming::Cancel { key, invite } => {
                self.seen.push(method);
                let r = req.response(200, "OK", Some("uas"));
                self.table.send_response(&key, r, now).unwrap();
                if let (Some(ik), false) = (invite, self.answered) {
                    // Not answered yet: the INVITE ends with 487 (§9.2).
                    self.cancelled = true;
                    self.answer_at = None;
                    let req = &self.invite.as_ref().unwrap().1;
                    let r = req.response(487, "Request Terminated", Some("uas"));
                    self.table.send_response(&ik, r, now).unwrap();
                }
            }
            Incoming::Unmatched if method == "ACK" => {
                if !self.acked {
                    self.seen.push(method);
                }
                // The ACK for our 2xx: stop resending it.
                self.acked = true;
                self.ok_retx = None;
            }
            _ => {}
        }
        self.flush(now, net);
    }

    fn flush(&mut self, now: Instant, net: &mut Net) {
        while let Some(t) = self.table.poll_transmit() {
            net.send(now, To::Uac, &t.message);
        }
        while self.table.poll_event().is_some() {}
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    net: Net,
    uac: UacCore,
    uas: UasCore,
}

impl Sim {
    fn new(seed: u64, loss: u64, ring: Duration) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            net: Net::new(seed, loss, t0),
            uac: UacCore::new(t0),
            uas: UasCore::new(ring),
        }
    }

    /// Step to each next deadline until nothing is left to happen (or `limit`).
    fn run(&mut self, limit: Duration) {
        self.uac.flush(self.now, &mut self.net);
        loop {
            let next = [self.uac.next_at(), self.uas.next_at(), self.net.next_at()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { return };
            if next > self.t0 + limit {
                return;
            }
            self.now = next.max(self.now);
            let now = self.now;
            for (to, m) in self.net.take_due(now) {
                match to {
                    To::Uas => self.uas.on_request(now, m, &mut self.net),
                    To::Uac => {
                        self.uac.table.handle_response(m, now);
                        self.uac.flush(now, &mut self.net);
                    }
                }
            }
            self.uac.on_time(now, &mut self.net);
            self.uas.on_time(now, &mut self.net);
        }
    }

    fn at(&self, v: &[u64]) -> Vec<Duration> {
        v.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
}

/// A call set up and torn down: one 2xx-based dialog on both sides, each request seen
/// once by the UAS's TU, the BYE answered, no transaction timed out.
fn assert_complete_call(s: &Sim, what: &str) {
    assert!(s.uac.oks >= 1, "answered: {what}");
    assert_eq!(s.uac.failed, None, "{what}");
    assert_eq!(s.uac.bye_answered, Some(200), "{what}");
    assert!(s.uac.timeouts.is_empty(), "{what}: {:?}", s.uac.timeouts);
    assert!(s.uas.acked, "the UAS got an ACK: {what}");
    assert_eq!(s.uas.seen, ["INVITE", "ACK", "BYE"], "{what}");
    assert!(s.uac.table.is_empty() && s.uas.table.is_empty(), "{what}");
}

#[test]
fn set_up_survives_the_loss_of_the_invite_180_200_or_ack() {
    // Lossless first: the reference timeline (20 ms each way, answer after 1 s).
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "no loss");
    assert_eq!(s.net.sent("INVITE"), s.at(&[0]));
    assert_eq!(s.net.sent("200 INVITE"), s.at(&[1020]));
    assert_eq!(s.uac.provisionals, 1);

    // The INVITE lost twice: Timer A resends at T1 and 3·T1 (doubling), the third copy
    // gets through; the UAS's TU sees one INVITE.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("INVITE", 2));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "INVITE lost twice");
    assert_eq!(s.net.sent("INVITE"), s.at(&[0, 500, 1500]));

    // The 180 lost: the INVITE is resent at T1 and its retransmission answered with the
    // last provisional by the server transaction — not by its TU.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("180 INVITE", 1));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "180 lost");
    assert_eq!(s.net.sent("INVITE"), s.at(&[0, 500]));
    assert_eq!(s.net.sent("180 INVITE"), s.at(&[20, 520]));

    // The 200 lost twice: the UAS's TU resends it (T1, 2·T1); the UAC ACKs the copy that
    // arrives; nothing times out.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("200 INVITE", 2));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "200 lost twice");
    assert_eq!(s.net.sent("200 INVITE"), s.at(&[1020, 1520, 2520]));
    assert_eq!(s.uac.oks, 1);

    // The ACK lost: the 200 comes again, the UAC's INVITE transaction (Accepted, RFC 6026)
    // passes it up and the TU ACKs it again.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("ACK", 1));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "ACK lost");
    assert_eq!(s.net.sent("ACK"), s.at(&[1040, 1540]));
    assert_eq!(s.uac.oks, 2, "the repeated 2xx reached the TU");
}

#[test]
fn a_cancel_racing_the_200_ends_in_487_or_in_a_call_that_is_hung_up() {
    let (mut cancelled, mut raced) = (0, 0);
    // The UAS answers at 1 s (its 200 leaves at 1020 ms); the UAC cancels around then,
    // so CANCEL and 200 cross on the wire in a window of about 40 ms.
    for cancel_ms in (960..=1080).step_by(5) {
        let mut s = Sim::new(cancel_ms, 0, Duration::from_secs(1));
        s.uac.cancel_at = Some(s.t0 + Duration::from_millis(cancel_ms));
        s.run(Duration::from_secs(120));
        let what = format!("cancel at {cancel_ms} ms: {:?}", s.net.log);
        assert!(s.uac.timeouts.is_empty(), "{what}");
        assert!(s.uac.table.is_empty() && s.uas.table.is_empty(), "{what}");
        if s.uas.cancelled {
            // The CANCEL came first: the INVITE ended in 487 (ACKed by the transaction).
            cancelled += 1;
            assert_eq!(s.uac.failed, Some(487), "{what}");
            assert_eq!(s.uac.oks, 0, "{what}");
            assert_eq!(s.uas.seen, ["INVITE", "CANCEL"], "{what}");
            assert_eq!(s.net.sent("ACK").len(), 1, "{what}");
        } else {
            // The 200 won: the call exists and the UAC ends it with BYE (RFC 3261 §9.1).
            assert_eq!(s.uac.failed, None, "{what}");
            assert_eq!(s.uac.bye_answered, Some(200), "{what}");
            assert!(s.uas.acked, "{what}");
            assert_eq!(
                s.uas.seen.first().map(String::as_str),
                Some("INVITE"),
                "{what}"
            );
            assert_eq!(s.uas.seen.last().map(String::as_str), Some("BYE"), "{what}");
            if s.uas.seen.contains(&"CANCEL".to_string()) {
                raced += 1;
                assert_eq!(s.net.sent("200 CANCEL").len(), 1, "{what}");
            }
        }
    }
    assert!(cancelled > 0, "some CANCELs came first");
    assert!(raced > 0, "some CANCELs crossed the 200");
}

#[test]
fn a_cancel_before_any_provisional_waits_for_one() {
    // The 180 is lost: the CANCEL asked for at 100 ms may not go before a provisional
    // (§9.1); it follows the 180 that answers the INVITE's retransmission at T1.
    let mut s = Sim::new(3, 0, Duration::from_secs(10));
    s.net.drops.push(("180 INVITE", 1));
    s.uac.cancel_at = Some(s.t0 + 100 * MS);
    s.run(Duration::from_secs(120));
    assert_eq!(s.net.sent("CANCEL"), s.at(&[540]));
    assert_eq!(s.uac.failed, Some(487));
    assert_eq!(s.uas.seen, ["INVITE", "CANCEL"]);
}

#[test]
fn bye_is_retransmitted_until_its_200() {
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("BYE", 3));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "BYE lost three times");
    // The 200's ACK at 1040 ms; BYE after 2 s of talk; Timer E: T1, 2·T1, 4·T1.
    assert_eq!(s.net.sent("BYE"), s.at(&[3040, 3540, 4540, 6540]));
    assert_eq!(s.net.sent("200 BYE"), s.at(&[6560]));

    // Its 200 lost: the BYE goes again and the server transaction (not its TU) repeats
    // the 200.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("200 BYE", 2));
    s.run(Duration::from_secs(120));
    assert_complete_call(&s, "200 to BYE lost twice");
    assert_eq!(s.net.sent("200 BYE").len(), 3);

    // Nothing gets through: Timer F gives up at 64·T1.
    let mut s = Sim::new(1, 0, Duration::from_secs(1));
    s.net.drops.push(("BYE", 100));
    s.run(Duration::from_secs(120));
    assert_eq!(s.uac.timeouts, [Timer::F]);
    assert_eq!(s.uac.bye_answered, None);
    // T1 doubling, capped at T2 (4 s): 11 copies in 32 s.
    assert_eq!(s.net.sent("BYE").len(), 11);
}

#[test]
fn whole_calls_complete_over_a_lossy_reordering_link() {
    let runs = 300;
    for loss in [10, 25] {
        let mut complete = 0;
        for seed in 1..=runs {
            let mut s = Sim::new(seed, loss, Duration::from_millis(300));
            // 10–310 ms one way: messages sent close together arrive in either order.
            s.net.base = 10 * MS;
            s.net.jitter = 300 * MS;
            s.run(Duration::from_secs(300));
            let what = format!("loss {loss}% seed {seed}");
            // Whatever happened, each TU saw each request at most once and both ended.
            for m in ["INVITE", "BYE"] {
                let n = s.uas.seen.iter().filter(|x| *x == m).count();
                assert!(n <= 1, "{m} seen {n} times: {what}");
            }
            assert!(s.uac.table.is_empty() && s.uas.table.is_empty(), "{what}");
            if s.uac.bye_answered == Some(200) {
                complete += 1;
                assert!(s.uas.acked, "{what}");
            } else {
                assert!(
                    !s.uac.timeouts.is_empty(),
                    "no outcome without a timeout: {what}"
                );
            }
        }
        // A call is ~8 exchanges each retried ~10 times: at 25 % loss practically all
        // complete; a few lost ACK series (the UAS gives up on its 2xx) may not.
        let floor = runs - runs / 50;
        eprintln!("loss {loss}%: {complete}/{runs} calls complete");
        assert!(complete >= floor, "loss {loss}%: {complete}/{runs}");
    }
}
