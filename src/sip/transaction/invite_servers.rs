//! The INVITE server transactions (RFC 3261 §17.2.1, Figure 7, with RFC 6026's Accepted
//! state) of a shell whose TU sends its responses itself and reports a copy: the SIP router
//! and its call actors. Initial INVITEs and re-INVITEs alike: a retransmitted INVITE never
//! reaches the TU.
//!
//! - Until its final response a transaction is a full [`InviteServer`] in a
//!   [`TransactionTable`] ([`track`](InviteServers::track)): a retransmission is absorbed
//!   silently before the TU's first response, and gets the last provisional after it.
//! - A non-2xx final (a 486, a 487 after CANCEL, a re-INVITE's 491, 500 + Retry-After, 422
//!   or 488) stays in the table: retransmitted on Timer G until its ACK, which is absorbed
//!   (Confirmed, Timer I), or until Timer H.
//! - A 2xx leaves the table for a compact memory of the key: a 64-bit keyed hash of branch
//!   and sent-by with its expiry (Timer L, 64·T1), 24 bytes instead of about a kilobyte of
//!   parsed transaction (full transactions in Accepted doubled the router's peak RSS at
//!   2000 calls/s). INVITE retransmissions are absorbed; the TU retransmits its 2xx until
//!   the ACK (RFC 3261 §13.3.1.4, RFC 6026 §8.1), and that ACK — a new branch — matches no
//!   transaction here: the shell hands it to the TU (the dialog matches it by CSeq).
//! - A TU that never answers: the initial INVITE's transaction is the shell's to remove when
//!   its TU ends ([`remove_unanswered`](InviteServers::remove_unanswered)); an in-dialog
//!   INVITE's is given up 64·T1 after it arrived (the peer's Timer B: no retransmission
//!   comes later), so a request the TU ignores (or whose answer was never reported) cannot
//!   hold memory for the life of the dialog.
//!
//! This is the one owner of that use of a table: the table only holds the machines
//! (`track_invite`, `with_invite_server`); what a reported response or a matched request
//! does — the 2xx that leaves for the compact Accepted memory included — is decided here
//! alone, so there is one RFC 6026 Accepted mechanism for these transactions, not a
//! full-machine one beside it.
//!
//! Sans-IO: time is an argument, messages to send come out of
//! [`poll_transmit`](InviteServers::poll_transmit) with the context (flow) given at
//! [`track`](InviteServers::track), and [`poll_timeout`](InviteServers::poll_timeout) is the
//! next instant [`handle_timeout`](InviteServers::handle_timeout) has work.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::time::{Duration, Instant};

use super::compact::Identity;
use super::{
    TableTransmit, Timer, TimerConfig, TransactionError, TransactionKey, TransactionTable,
};
use crate::sip::message::{Message, Method};

/// Whose answer a tracked INVITE waits for, which decides who ends it unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// The initial INVITE of a new call: it may ring for as long as the call likes; the
    /// shell removes it if the call ends without a final answer.
    Initial,
    /// An INVITE inside a dialog (a re-INVITE): answered at once by the TU, given up
    /// 64·T1 after it arrived if not.
    InDialog,
}

/// The shell's INVITE server transactions (see the module doc).
#[derive(Debug)]
pub struct InviteServers<C> {
    /// Proceeding, and Completed/Confirmed after a non-2xx final.
    table: TransactionTable<C>,
    hasher: RandomState,
    /// INVITEs answered 2xx, for Timer L (Accepted): their keys hashed.
    accepted: HashSet<u64, BuildHasherDefault<Identity>>,
    /// When each of `accepted` expires, in order (all are 64·T1 from a non-decreasing now).
    accepted_order: VecDeque<(Instant, u64)>,
    accepted_cap: usize,
    /// In-dialog INVITEs with the instant their TU is given up on, in order.
    in_dialog: VecDeque<(Instant, TransactionKey)>,
    t64: Duration,
}

impl<C: Clone> InviteServers<C> {
    /// At most `accepted_cap` keys in Accepted at once (24 bytes each; beyond it the oldest
    /// go first: a retransmission that late is rare and then reaches the TU).
    pub fn new(cfg: TimerConfig, accepted_cap: usize) -> InviteServers<C> {
        InviteServers {
            // The TU answers (100 Trying, or its final answer) as soon as it has the request.
            table: TransactionTable::new(TimerConfig {
                auto_trying: None,
                ..cfg
            }),
            hasher: RandomState::new(),
            accepted: HashSet::default(),
            accepted_order: VecDeque::new(),
            accepted_cap,
            in_dialog: VecDeque::new(),
            t64: cfg.wait(Timer::L, false),
        }
    }

    /// Full transactions alive (Proceeding, Completed, Confirmed): only these can match an
    /// ACK, so a shell need not build the key of an ACK while there are none.
    pub fn has_transactions(&self) -> bool {
        !self.table.is_empty()
    }

    /// Full transactions alive.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// INVITEs remembered in Accepted.
    pub fn accepted_len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.accepted.is_empty() && self.in_dialog.is_empty()
    }

    fn accepted_key(&self, key: &TransactionKey) -> u64 {
        self.hasher.hash_one((&*key.branch, &*key.sent_by))
    }

    /// A new INVITE handed to its TU: its transaction starts (Proceeding). False when one
    /// with this key is alive already (the request was a retransmission after all).
    pub fn track(
        &mut self,
        key: TransactionKey,
        now: Instant,
        ctx: C,
        reliable: bool,
        tracked: Tracked,
    ) -> bool {
        if self
            .table
            .track_invite(key.clone(), now, ctx, reliable)
            .is_err()
        {
            return false;
        }
        if tracked == Tracked::InDialog {
            self.in_dialog.push_back((now + self.t64, key));
        }
        true
    }

    /// An INVITE or an ACK with this key from the network: taken here (a retransmission
    /// absorbed or answered with the last response, an ACK of a non-2xx final absorbed),
    /// or given back for the TU (a new INVITE, an ACK for a 2xx).
    // Given back by value: boxing it would allocate for every new INVITE and ACK.
    #[allow(clippy::result_large_err)]
    pub fn absorb(
        &mut self,
        key: &TransactionKey,
        request: Message,
        now: Instant,
    ) -> Result<(), Message> {
        self.expire_accepted(now);
        if request.method() == Some(&Method::Invite)
            && !self.accepted.is_empty()
            && self.accepted.contains(&self.accepted_key(key))
        {
            // Accepted: the TU retransmits its 2xx on its own timer.
            return Ok(());
        }
        // Only INVITE server transactions live in this table, so a key it holds is one.
        if !self.table.contains(key) {
            return Err(request);
        }
        // An INVITE gets the last provisional or non-2xx final again (out of
        // `poll_transmit`), the ACK of a non-2xx final confirms.
        self.table
            .with_invite_server(key, |t| t.handle_request(request, now));
        self.drop_events();
        Ok(())
    }

    /// The TU sent `response` to the INVITE `key` (already on the wire, or about to be). A
    /// 2xx ends the full transaction for the compact memory of Accepted; anything else
    /// goes to the transaction (a non-2xx final is retransmitted from here on Timer G).
    pub fn response_sent(
        &mut self,
        key: &TransactionKey,
        response: Message,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let code = response.status().ok_or(TransactionError::NotAResponse)?;
        if (200..300).contains(&code) {
            // Remembered even if the transaction is gone (its TU answered late, or an
            // earlier report was lost): its retransmissions must not reach the TU.
            self.table.forget(key);
            self.remember_accepted(key, now);
            return Ok(());
        }
        let r = self
            .table
            .with_invite_server(key, |t| t.response_sent(response, now))
            .unwrap_or(Err(TransactionError::NotFound));
        self.drop_events();
        r
    }

    /// The TU ended (or never got the request) without a final answer: its transaction
    /// goes, so a retransmission is a new request again. True if one was removed; one past
    /// its final answer stays for its timers.
    pub fn remove_unanswered(&mut self, key: &TransactionKey) -> bool {
        self.table.remove_unanswered(key)
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.table.poll_timeout(),
            self.accepted_order.front().map(|(at, _)| *at),
            self.in_dialog.front().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run what is due at `now`: Timer G retransmissions (out of
    /// [`poll_transmit`](Self::poll_transmit)), Timers H, I and L, and in-dialog INVITEs
    /// whose TU never answered.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
        self.drop_events();
        self.expire_accepted(now);
        while self.in_dialog.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, key)) = self.in_dialog.pop_front() {
                // A no-op for one answered meanwhile (Accepted, Completed or gone). A
                // retransmission tracked again under the same key after an abandon is
                // given up with the first one's deadline: its TU answers at once anyway.
                self.table.remove_unanswered(&key);
            }
        }
        if self.in_dialog.is_empty() && self.in_dialog.capacity() > 1024 {
            self.in_dialog.shrink_to(1024);
        }
    }

    /// A response to send again (a retransmitted INVITE's answer, Timer G), with the
    /// context its transaction was tracked with.
    pub fn poll_transmit(&mut self) -> Option<TableTransmit<C>> {
        self.table.poll_transmit()
    }

    /// The table's events need nothing from the shell: no transaction here ever reaches
    /// Accepted (where an ACK would be handed up), and a Timer H timeout ends nothing the
    /// TU still has.
    fn drop_events(&mut self) {
        while self.table.poll_event().is_some() {}
    }

    fn remember_accepted(&mut self, key: &TransactionKey, now: Instant) {
        self.expire_accepted(now);
        if self.accepted.len() >= self.accepted_cap {
            if let Some((_, old)) = self.accepted_order.pop_front() {
                self.accepted.remove(&old);
            }
        }
        let k = self.accepted_key(key);
        if self.accepted.insert(k) {
            self.accepted_order.push_back((now + self.t64, k));
        }
    }

    fn expire_accepted(&mut self, now: Instant) {
        let before = self.accepted.len();
        while self
            .accepted_order
            .front()
            .is_some_and(|(at, _)| *at <= now)
        {
            if let Some((_, k)) = self.accepted_order.pop_front() {
                self.accepted.remove(&k);
            }
        }
        if before > 0 && self.accepted.is_empty() {
            // Give back the memory of a burst.
            self.accepted.shrink_to(1024);
            self.accepted_order.shrink_to(1024);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    //! The router's view of INVITE transactions in virtual time: re-INVITEs retransmitted
    //! before and after the answer, a lost ACK, which ACKs match, and what is left behind.

    use super::*;
    use crate::sip::message::Framing;
    use crate::sip::transaction::{Event, InviteClient};

    const MS: Duration = Duration::from_millis(1);
    const T64: Duration = Duration::from_secs(32);

    /// A request from the peer at 10.0.0.2; `to_tag`: inside our dialog (a re-INVITE).
    fn request(method: &str, branch: &str, cseq: u32, to_tag: Option<&str>) -> Message {
        let to = match to_tag {
            Some(t) => format!("<sip:svc@10.0.0.1>;tag={t}"),
            None => "<sip:svc@10.0.0.1>".into(),
        };
        let raw = format!(
            "{method} sip:svc@10.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.2:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@10.0.0.2>;tag=from1\r\n\
             To: {to}\r\n\
             Call-ID: c1@10.0.0.2\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes(), Framing::Datagram).unwrap()
    }

    fn reinvite(branch: &str) -> Message {
        request("INVITE", branch, 2, Some("ours"))
    }

    fn key(m: &Message) -> TransactionKey {
        TransactionKey::server(m).unwrap()
    }

    fn answer(req: &Message, code: u16) -> Message {
        req.response(code, "Test", Some("ours"))
    }

    fn servers() -> InviteServers<u8> {
        InviteServers::new(TimerConfig::default(), 1000)
    }

    /// Offsets from `t0` (ms) of every response sent again, stepping through deadlines.
    fn run(s: &mut InviteServers<u8>, t0: Instant, until: Duration) -> Vec<u128> {
        let mut sent = Vec::new();
        while let Some(at) = s.poll_timeout() {
            if at > t0 + until {
                break;
            }
            s.handle_timeout(at);
            while s.poll_transmit().is_some() {
                sent.push((at - t0).as_millis());
            }
        }
        sent
    }

    /// Before the call's answer a retransmitted re-INVITE is absorbed silently; after its
    /// 200 it is absorbed too (the call retransmits the 200 itself) for Timer L, then the
    /// key is forgotten.
    #[test]
    fn reinvite_retransmitted_before_and_after_the_answer_never_reaches_the_call() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre1");
        let k = key(&re);
        assert!(s.absorb(&k, re.clone(), t0).is_err(), "new: for the call");
        assert!(s.track(k.clone(), t0, 7, false, Tracked::InDialog));
        assert!(!s.track(k.clone(), t0, 7, false, Tracked::InDialog));
        // Retransmitted before the call's answer was reported: absorbed, nothing sent.
        s.absorb(&k, re.clone(), t0 + 500 * MS).unwrap();
        assert!(s.poll_transmit().is_none());
        s.response_sent(&k, answer(&re, 200), t0 + 600 * MS)
            .unwrap();
        assert_eq!(s.len(), 0, "the full transaction is gone");
        assert_eq!(s.accepted_len(), 1);
        // Retransmitted after the 200: absorbed, nothing sent from here.
        s.absorb(&k, re.clone(), t0 + 1500 * MS).unwrap();
        assert!(s.poll_transmit().is_none());
        // The in-dialog bound finds it answered: nothing happens.
        assert!(run(&mut s, t0, T64).is_empty());
        s.absorb(&k, re.clone(), t0 + 600 * MS + T64 - MS).unwrap();
        // Timer L: the key is forgotten; a request this late is the call's again.
        assert!(run(&mut s, t0, 2 * T64).is_empty());
        assert!(s.absorb(&k, re, t0 + 600 * MS + T64).is_err());
        assert!(s.is_empty());
    }

    /// A provisional is repeated for a retransmission; a 491 (glare) is retransmitted on
    /// Timer G until its ACK, which is absorbed here, and later ACKs with it.
    #[test]
    fn reinvite_refused_is_retransmitted_until_its_ack_which_stays_here() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre2");
        let k = key(&re);
        assert!(s.track(k.clone(), t0, 3, false, Tracked::InDialog));
        s.response_sent(&k, answer(&re, 100), t0).unwrap();
        s.absorb(&k, re.clone(), t0 + 500 * MS).unwrap();
        let again = s.poll_transmit().unwrap();
        assert_eq!((again.ctx, again.message.status()), (3, Some(100)));
        s.response_sent(&k, answer(&re, 491), t0 + 600 * MS)
            .unwrap();
        assert!(s.poll_transmit().is_none(), "the call sent it itself");
        // The peer's retransmission gets the 491 again.
        s.absorb(&k, re.clone(), t0 + 700 * MS).unwrap();
        assert_eq!(s.poll_transmit().unwrap().message.status(), Some(491));
        // Timer G: 0.5 s, 1 s after the 491 (first ACK lost)...
        let sent = run(&mut s, t0, 2500 * MS);
        assert_eq!(sent, vec![1100, 2100]);
        // ...the ACK (same branch, RFC 3261 §17.1.1.3) confirms: absorbed, never the call's.
        let ack = request("ACK", "z9hG4bKre2", 2, Some("ours"));
        s.absorb(&k, ack.clone(), t0 + 2200 * MS).unwrap();
        s.absorb(&k, ack, t0 + 2300 * MS).unwrap();
        assert!(run(&mut s, t0, 60_000 * MS).is_empty(), "no more Timer G");
        assert!(s.is_empty(), "Timer I ended it");
    }

    /// The ACK for a 2xx has a branch of its own: it matches nothing here and goes to the
    /// call (whose dialog matches it by CSeq); so does any ACK without a transaction. An
    /// ACK from another sent-by is not this transaction's either.
    #[test]
    fn ack_matching() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre3");
        let k = key(&re);
        s.track(k.clone(), t0, 1, false, Tracked::InDialog);
        s.response_sent(&k, answer(&re, 200), t0).unwrap();
        let ack_2xx = request("ACK", "z9hG4bKack3", 2, Some("ours"));
        assert!(s.absorb(&key(&ack_2xx), ack_2xx, t0 + MS).is_err());
        // An ACK reusing the INVITE's branch (a broken peer) is not absorbed either: the
        // transaction left the table with its 2xx, and the call wants that ACK.
        let same_branch = request("ACK", "z9hG4bKre3", 2, Some("ours"));
        assert!(s.absorb(&key(&same_branch), same_branch, t0 + MS).is_err());

        let re4 = reinvite("z9hG4bKre4");
        let k4 = key(&re4);
        s.track(k4.clone(), t0, 1, false, Tracked::InDialog);
        s.response_sent(&k4, answer(&re4, 488), t0).unwrap();
        let raw = String::from_utf8(request("ACK", "z9hG4bKre4", 2, Some("ours")).to_bytes())
            .unwrap()
            .replace("10.0.0.2:5060", "10.0.0.9:5060");
        let elsewhere = Message::parse(raw.as_bytes(), Framing::Datagram).unwrap();
        assert!(
            s.absorb(&key(&elsewhere), elsewhere, t0 + MS).is_err(),
            "another sent-by"
        );
        let ack = request("ACK", "z9hG4bKre4", 2, Some("ours"));
        s.absorb(&key(&ack), ack, t0 + MS).unwrap();
    }

    /// A 491 whose ACK never comes: Timer G doubles to T2, Timer H ends it at 64·T1.
    #[test]
    fn lost_ack_of_a_refusal_ends_with_timer_h() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre5");
        let k = key(&re);
        s.track(k.clone(), t0, 1, false, Tracked::InDialog);
        s.response_sent(&k, answer(&re, 491), t0).unwrap();
        let sent = run(&mut s, t0, 40_000 * MS);
        assert_eq!(
            &sent[..6],
            &[500, 1500, 3500, 7500, 11500, 15500],
            "{sent:?}"
        );
        assert!(s.is_empty(), "Timer H");
        assert!(s.absorb(&k, re, t0 + T64).is_err());
    }

    /// Over TCP nothing is retransmitted from here; the ACK ends the transaction at once.
    #[test]
    fn reliable_transport_no_timer_g() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre6");
        let k = key(&re);
        s.track(k.clone(), t0, 1, true, Tracked::InDialog);
        s.response_sent(&k, answer(&re, 500), t0).unwrap();
        assert!(run(&mut s, t0, T64 - MS).is_empty());
        let ack = request("ACK", "z9hG4bKre6", 2, Some("ours"));
        s.absorb(&k, ack, t0 + MS).unwrap();
        s.handle_timeout(t0 + MS);
        assert_eq!(s.len(), 0, "Timer I is zero");
    }

    /// A re-INVITE the call never answers is given up after 64·T1; an initial INVITE
    /// waits for its call (which may ring for longer) to remove it.
    #[test]
    fn unanswered_in_dialog_invites_are_given_up_initial_ones_are_not() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre7");
        let k = key(&re);
        let initial = request("INVITE", "z9hG4bKinit", 1, None);
        let ki = key(&initial);
        s.track(k.clone(), t0, 1, false, Tracked::InDialog);
        s.track(ki.clone(), t0, 1, false, Tracked::Initial);
        assert_eq!(s.poll_timeout(), Some(t0 + T64));
        s.handle_timeout(t0 + T64);
        assert!(s.absorb(&k, re, t0 + T64).is_err(), "given up");
        s.absorb(&ki, initial, t0 + T64).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.remove_unanswered(&ki));
        assert!(s.is_empty());
    }

    /// A request that could not be delivered to its call is forgotten: the retransmission
    /// is delivered instead.
    #[test]
    fn undelivered_request_is_new_again() {
        let t0 = Instant::now();
        let mut s = servers();
        let re = reinvite("z9hG4bKre8");
        let k = key(&re);
        s.track(k.clone(), t0, 1, false, Tracked::InDialog);
        assert!(s.remove_unanswered(&k));
        assert!(s.absorb(&k, re.clone(), t0 + 500 * MS).is_err());
        assert!(s.track(k.clone(), t0 + 500 * MS, 1, false, Tracked::InDialog));
        s.response_sent(&k, answer(&re, 200), t0 + 500 * MS)
            .unwrap();
        s.absorb(&k, re, t0 + MS * 1000).unwrap();
    }

    /// xorshift64*: deterministic loss without a dependency.
    struct Rng(u64);

    impl Rng {
        fn chance(&mut self, percent: u64) -> bool {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100 < percent
        }
    }

    /// The peer's INVITE client sends a re-INVITE over a link losing `loss` % each way
    /// (40 ms delay); the router's `InviteServers` stand in front of a call that answers
    /// 200 once and retransmits it (T1 doubling to T2) until the ACK, which the peer sends
    /// for every 2xx it gets (new branch). Returns how often the call saw the re-INVITE and
    /// whether it got the ACK.
    fn lossy_reinvite(seed: u64, loss: u64) -> (u32, bool) {
        let t0 = Instant::now();
        let delay = 40 * MS;
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let re = reinvite("z9hG4bKsim");
        let mut client = InviteClient::new(re, t0, TimerConfig::default(), false);
        let mut servers = servers();
        // (deliver at, to the server?, message)
        let mut net: Vec<(Instant, bool, Message)> = Vec::new();
        let mut seen = 0u32;
        let mut ok: Option<Message> = None;
        let mut resend: Option<(Instant, Duration)> = None;
        let give_up = t0 + T64;
        let mut acked = false;
        let mut now = t0;
        let send = |net: &mut Vec<(Instant, bool, Message)>,
                    rng: &mut Rng,
                    now: Instant,
                    to_server: bool,
                    m: &Message| {
            if !rng.chance(loss) {
                let m = Message::parse(&m.to_bytes(), Framing::Datagram).unwrap();
                net.push((now + delay, to_server, m));
            }
        };
        loop {
            while let Some(m) = client.poll_transmit() {
                send(&mut net, &mut rng, now, true, &m);
            }
            while let Some(t) = servers.poll_transmit() {
                send(&mut net, &mut rng, now, false, &t.message);
            }
            while let Some(ev) = client.poll_event() {
                if let Event::Response(r) = ev {
                    if r.status() == Some(200) {
                        // The peer's TU ACKs every 2xx (RFC 3261 §13.2.2.4).
                        let ack = request("ACK", "z9hG4bKsimack", 2, Some("ours"));
                        send(&mut net, &mut rng, now, true, &ack);
                    }
                }
            }
            let next = [
                client.poll_timeout(),
                servers.poll_timeout(),
                resend.map(|(at, _)| at),
                net.iter().map(|(at, _, _)| *at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= t0 + 2 * T64) else {
                break;
            };
            now = next;
            client.handle_timeout(now);
            servers.handle_timeout(now);
            if let Some((at, interval)) = resend.filter(|(at, _)| *at <= now) {
                if at >= give_up {
                    resend = None;
                } else if let Some(r) = &ok {
                    // The call's own 2xx retransmission (the TU's, RFC 3261 §13.3.1.4).
                    send(&mut net, &mut rng, now, false, r);
                    let interval = (interval * 2).min(Duration::from_secs(4));
                    resend = Some((at + interval, interval));
                }
            }
            let due: Vec<(Instant, bool, Message)>;
            (due, net) = net.into_iter().partition(|(at, _, _)| *at <= now);
            for (_, to_server, m) in due {
                if !to_server {
                    client.handle_response(m, now);
                    continue;
                }
                let k = key(&m);
                let Err(m) = servers.absorb(&k, m, now) else {
                    continue;
                };
                if m.method() == Some(&Method::Ack) {
                    acked = true;
                    resend = None;
                    continue;
                }
                // The call: the re-INVITE, answered 200 once.
                seen += 1;
                assert!(servers.track(k.clone(), now, 0, false, Tracked::InDialog));
                let r = answer(&m, 200);
                servers.response_sent(&k, r.clone(), now).unwrap();
                send(&mut net, &mut rng, now, false, &r);
                resend = Some((now + Duration::from_millis(500), Duration::from_millis(500)));
                ok = Some(r);
            }
        }
        (seen, acked)
    }

    /// Over a lossy link the call sees the re-INVITE exactly once (its copies are the
    /// router's), and its 2xx retransmission gets the ACK through despite lost ACKs.
    #[test]
    fn lossy_link_the_call_answers_once_and_gets_its_ack() {
        let mut lost_acks_recovered = 0;
        for seed in 0..200 {
            let (seen, acked) = lossy_reinvite(seed, 25);
            assert!(seen <= 1, "seed {seed}: the call saw {seen} copies");
            if seen == 1 {
                assert!(acked, "seed {seed}: no ACK");
                lost_acks_recovered += 1;
            }
        }
        assert!(lost_acks_recovered > 150, "{lost_acks_recovered}");
        assert_eq!(lossy_reinvite(7, 0), (1, true), "no loss");
    }

    /// The Accepted memory is bounded: beyond the cap the oldest key goes first.
    #[test]
    fn accepted_memory_is_capped() {
        let t0 = Instant::now();
        let mut s: InviteServers<u8> = InviteServers::new(TimerConfig::default(), 2);
        let reqs: Vec<Message> = (0..3)
            .map(|i| reinvite(&format!("z9hG4bKcap{i}")))
            .collect();
        for (i, r) in reqs.iter().enumerate() {
            let at = t0 + MS * i as u32;
            s.track(key(r), at, 1, false, Tracked::InDialog);
            s.response_sent(&key(r), answer(r, 200), at).unwrap();
        }
        assert_eq!(s.accepted_len(), 2);
        assert!(s
            .absorb(&key(&reqs[0]), reqs[0].clone(), t0 + 3 * MS)
            .is_err());
        s.absorb(&key(&reqs[2]), reqs[2].clone(), t0 + 3 * MS)
            .unwrap();
    }
}
