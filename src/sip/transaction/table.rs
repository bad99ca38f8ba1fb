//! The transaction table: finds the transaction a message belongs to, creates server
//! transactions for new requests, runs the timers of all of them and drops the ones that
//! ended.
//!
//! Matching (RFC 3261 §17.1.3, §17.2.3, §9.2):
//! - a response goes to the client transaction with its top Via branch and CSeq method;
//!   none: [`Incoming::Unmatched`] (a stray, or a 2xx retransmission after Timer M);
//! - a request goes to the server transaction with its branch, sent-by and method (ACK
//!   counted as INVITE, so the ACK for a non-2xx final finds its INVITE); none: a new
//!   server transaction — except an ACK, which never creates one (an ACK for a 2xx belongs
//!   to the dialog: [`Incoming::Unmatched`]);
//! - a CANCEL gets its own server transaction and is reported with the INVITE server
//!   transaction it cancels, if that one is still here.
//!
//! Each transaction carries a context `C` from the shell (the flow it arrived on or is
//! sent over), handed back with every message to send.
//!
//! Timers: the table keeps each transaction's next deadline in a min-heap (lazy deletion:
//! an entry whose instant is no longer its transaction's scheduled one is skipped when it
//! comes up), so `poll_timeout` is a peek and `handle_timeout` touches only the
//! transactions that are due — the router holds tens of thousands of INVITE transactions
//! at 2000 calls/s (Timer L is 32 s), and a scan per wake-up would not do.
//!
//! A shell whose TU sends its responses itself (the router and its call actors) does not
//! use `handle_request`/`send_response`: [`InviteServers`](super::InviteServers) holds such
//! INVITE transactions in a table through `track_invite` and `with_invite_server`, and is
//! the one place that decides what their responses and requests do (Accepted included).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::{
    build_cancel, Event, InviteClient, InviteServer, NonInviteClient, NonInviteServer, Role,
    TimerConfig, TransactionError, TransactionKey,
};
use crate::sip::message::{Message, Method};

/// What became of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A new server transaction: the TU handles the request and answers on `key`.
    New(TransactionKey),
    /// A CANCEL (its own server transaction, `key`) for the INVITE server transaction
    /// `invite`, when it is known.
    Cancel {
        key: TransactionKey,
        invite: Option<TransactionKey>,
    },
    /// Matched an existing transaction: a retransmission or ACK absorbed, or a response
    /// whose consequences come out of `poll_event`.
    Matched(TransactionKey),
    /// No transaction: an ACK for a 2xx (the dialog's), or a stray response.
    Unmatched,
}

/// A message to send, with the context of the transaction it belongs to.
#[derive(Debug, Clone)]
pub struct TableTransmit<C> {
    pub key: TransactionKey,
    pub ctx: C,
    pub message: Message,
}

#[derive(Debug)]
enum Transaction {
    InviteClient(InviteClient),
    InviteServer(InviteServer),
    NonInviteClient(NonInviteClient),
    NonInviteServer(NonInviteServer),
}

macro_rules! each {
    ($t:expr, $x:ident => $e:expr) => {
        match $t {
            Transaction::InviteClient($x) => $e,
            Transaction::InviteServer($x) => $e,
            Transaction::NonInviteClient($x) => $e,
            Transaction::NonInviteServer($x) => $e,
        }
    };
}

impl Transaction {
    fn poll_transmit(&mut self) -> Option<Message> {
        each!(self, t => t.poll_transmit())
    }
    fn poll_event(&mut self) -> Option<Event> {
        each!(self, t => t.poll_event())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        each!(self, t => t.poll_timeout())
    }
    fn handle_timeout(&mut self, now: Instant) {
        each!(self, t => t.handle_timeout(now))
    }
    fn is_terminated(&self) -> bool {
        each!(self, t => t.is_terminated())
    }
    fn handle_transport_error(&mut self) {
        each!(self, t => t.handle_transport_error())
    }
}

#[derive(Debug)]
struct Entry<C> {
    txn: Transaction,
    ctx: C,
    /// The deadline this transaction has in the heap (the only one of its heap entries
    /// that counts).
    scheduled: Option<Instant>,
}

impl<C> Entry<C> {
    fn new(txn: Transaction, ctx: C) -> Entry<C> {
        Entry {
            txn,
            ctx,
            scheduled: None,
        }
    }
}

/// A heap entry: ordered by instant only, earliest first.
#[derive(Debug)]
struct Due {
    at: Instant,
    key: TransactionKey,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        other.at.cmp(&self.at)
    }
}

/// All transactions of one endpoint.
#[derive(Debug)]
pub struct TransactionTable<C> {
    cfg: TimerConfig,
    txns: HashMap<TransactionKey, Entry<C>>,
    /// INVITE client transactions whose CANCEL waits for a provisional (§9.1).
    cancel_pending: HashSet<TransactionKey>,
    deadlines: BinaryHeap<Due>,
    transmits: VecDeque<TableTransmit<C>>,
    events: VecDeque<(TransactionKey, Event)>,
}

impl<C: Clone> TransactionTable<C> {
    pub fn new(cfg: TimerConfig) -> TransactionTable<C> {
        TransactionTable {
            cfg,
            txns: HashMap::new(),
            cancel_pending: HashSet::new(),
            deadlines: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Transactions alive (not yet terminated).
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.txns.contains_key(key)
    }

    /// A request from the network. `ctx` and `reliable` describe the flow it came on and
    /// are used only when it starts a new transaction.
    pub fn handle_request(
        &mut self,
        request: Message,
        now: Instant,
        ctx: C,
        reliable: bool,
    ) -> Result<Incoming, TransactionError> {
        let key = TransactionKey::server(&request)?;
        let is_ack = request.method() == Some(&Method::Ack);
        if let Some(e) = self.txns.get_mut(&key) {
            match &mut e.txn {
                Transaction::InviteServer(t) => t.handle_request(request, now),
                Transaction::NonInviteServer(t) if !is_ack => t.handle_request(request, now),
                _ => return Ok(Incoming::Unmatched),
            }
            self.collect(&key);
            return Ok(Incoming::Matched(key));
        }
        if is_ack {
            return Ok(Incoming::Unmatched);
        }
        let is_invite = request.method() == Some(&Method::Invite);
        let is_cancel = request.method() == Some(&Method::Cancel);
        let txn = if is_invite {
            Transaction::InviteServer(InviteServer::new(request, now, self.cfg, reliable))
        } else {
            Transaction::NonInviteServer(NonInviteServer::new(request, now, self.cfg, reliable))
        };
        self.txns.insert(key.clone(), Entry::new(txn, ctx));
        self.collect(&key);
        if is_cancel {
            let inv = key.cancelled_invite();
            let invite = self.txns.contains_key(&inv).then_some(inv);
            return Ok(Incoming::Cancel { key, invite });
        }
        Ok(Incoming::New(key))
    }

    /// A response from the network.
    pub fn handle_response(&mut self, response: Message, now: Instant) -> Incoming {
        let Ok(key) = TransactionKey::client(&response) else {
            return Incoming::Unmatched;
        };
        let code = response.status().unwrap_or(0);
        let provisional = (100..200).contains(&code);
        let Some(e) = self.txns.get_mut(&key) else {
            return Incoming::Unmatched;
        };
        match &mut e.txn {
            Transaction::InviteClient(t) => t.handle_response(response, now),
            Transaction::NonInviteClient(t) => t.handle_response(response, now),
            _ => return Incoming::Unmatched,
        }
        if self.cancel_pending.contains(&key) {
            if provisional {
                self.cancel_pending.remove(&key);
                // The CANCEL's own outcome is reported on its key; a failure to start it
                // (a duplicate) leaves the INVITE to finish on its own.
                let _ = self.send_cancel(&key, now);
            } else if code >= 200 {
                self.cancel_pending.remove(&key);
            }
        }
        self.collect(&key);
        Incoming::Matched(key)
    }

    /// Start a client transaction for a request the TU built (with a fresh branch).
    pub fn start_client(
        &mut self,
        request: Message,
        now: Instant,
        ctx: C,
        reliable: bool,
    ) -> Result<TransactionKey, TransactionError> {
        let key = TransactionKey::client(&request)?;
        if self.txns.contains_key(&key) {
            return Err(TransactionError::Duplicate);
        }
        let txn = match request.method() {
            Some(Method::Invite) => {
                Transaction::InviteClient(InviteClient::new(request, now, self.cfg, reliable))
            }
            Some(Method::Ack) | None => return Err(TransactionError::NotAResponse),
            Some(_) => {
                Transaction::NonInviteClient(NonInviteClient::new(request, now, self.cfg, reliable))
            }
        };
        self.txns.insert(key.clone(), Entry::new(txn, ctx));
        self.collect(&key);
        Ok(key)
    }

    /// The TU answers a server transaction.
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        response: Message,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let e = self.txns.get_mut(key).ok_or(TransactionError::NotFound)?;
        let r = match &mut e.txn {
            Transaction::InviteServer(t) => t.send_response(response, now),
            Transaction::NonInviteServer(t) => t.send_response(response, now),
            _ => Err(TransactionError::NotFound),
        };
        self.collect(key);
        r
    }

    /// Cancel an INVITE we sent (§9.1). Returns the CANCEL's client transaction key once
    /// it is sent, `None` when it waits for a provisional response first.
    pub fn cancel(
        &mut self,
        key: &TransactionKey,
        now: Instant,
    ) -> Result<Option<TransactionKey>, TransactionError> {
        let e = self.txns.get(key).ok_or(TransactionError::NotFound)?;
        let Transaction::InviteClient(t) = &e.txn else {
            return Err(TransactionError::NotInviteClient);
        };
        if t.can_cancel() {
            return self.send_cancel(key, now).map(Some);
        }
        if t.state() == super::InviteClientState::Calling {
            self.cancel_pending.insert(key.clone());
        }
        Ok(None)
    }

    fn send_cancel(
        &mut self,
        key: &TransactionKey,
        now: Instant,
    ) -> Result<TransactionKey, TransactionError> {
        let e = self.txns.get_mut(key).ok_or(TransactionError::NotFound)?;
        let Transaction::InviteClient(t) = &mut e.txn else {
            return Err(TransactionError::NotInviteClient);
        };
        let cancel = build_cancel(t.request());
        let reliable = t.is_reliable();
        t.cancel_sent(now);
        let ctx = e.ctx.clone();
        let r = self.start_client(cancel, now, ctx, reliable);
        // The INVITE's timers changed (§9.1 give-up): reschedule it.
        self.collect(key);
        r
    }

    /// The transport failed on a transaction's flow.
    pub fn handle_transport_error(&mut self, key: &TransactionKey) {
        if let Some(e) = self.txns.get_mut(key) {
            e.txn.handle_transport_error();
            self.collect(key);
        }
    }

    /// An INVITE server transaction for a request the shell hands to its TU itself; the TU
    /// sends its responses on its own, and the shell reports each one to the machine with
    /// [`with_invite_server`](Self::with_invite_server) (as [`InviteServers`](super::InviteServers)
    /// does, the one owner of that use). The table holds no copy of the request.
    pub(super) fn track_invite(
        &mut self,
        key: TransactionKey,
        now: Instant,
        ctx: C,
        reliable: bool,
    ) -> Result<(), TransactionError> {
        if self.txns.contains_key(&key) {
            return Err(TransactionError::Duplicate);
        }
        let txn = Transaction::InviteServer(InviteServer::tracking(now, self.cfg, reliable));
        self.txns.insert(key.clone(), Entry::new(txn, ctx));
        self.collect(&key);
        Ok(())
    }

    /// Run `f` on the INVITE server transaction `key` (a response its TU sent, a request
    /// that matched it), then take what it did: messages to send, events, its next timer,
    /// its end. `None`: no INVITE server transaction has this key.
    pub(super) fn with_invite_server<R>(
        &mut self,
        key: &TransactionKey,
        f: impl FnOnce(&mut InviteServer) -> R,
    ) -> Option<R> {
        let Some(Entry {
            txn: Transaction::InviteServer(t),
            ..
        }) = self.txns.get_mut(key)
        else {
            return None;
        };
        let r = f(t);
        self.collect(key);
        Some(r)
    }

    /// Forget an INVITE server transaction its TU never answered with a final response
    /// (the TU is gone): true if one was removed. Transactions past Proceeding stay for
    /// their timers.
    pub(super) fn remove_unanswered(&mut self, key: &TransactionKey) -> bool {
        let unanswered = matches!(
            self.txns.get(key).map(|e| &e.txn),
            Some(Transaction::InviteServer(t)) if t.state() == super::InviteServerState::Proceeding
        );
        if unanswered {
            self.txns.remove(key);
            self.prune();
        }
        unanswered
    }

    /// Forget a transaction outright, whatever its state (a shell that keeps a cheaper
    /// record of it, e.g. the router's memory of INVITEs answered 2xx, or a call that gives
    /// up on its BYE): true if one was removed.
    pub fn forget(&mut self, key: &TransactionKey) -> bool {
        let removed = self.txns.remove(key).is_some();
        if removed {
            self.cancel_pending.remove(key);
            self.prune();
        }
        removed
    }

    /// The earliest timer of any transaction (a peek at the deadline heap).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|d| d.at)
    }

    /// Run every timer due at `now`; terminated transactions are dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.deadlines.peek().is_some_and(|d| d.at <= now) {
            let Some(Due { at, key }) = self.deadlines.pop() else {
                break;
            };
            let Some(e) = self.txns.get_mut(&key) else {
                continue;
            };
            if e.scheduled != Some(at) {
                continue; // superseded: its current deadline has its own entry
            }
            e.scheduled = None;
            e.txn.handle_timeout(now);
            self.collect(&key);
        }
        self.prune();
    }

    pub fn poll_transmit(&mut self) -> Option<TableTransmit<C>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<(TransactionKey, Event)> {
        self.events.pop_front()
    }

    /// The role of a key's transaction, if it is alive.
    pub fn role(&self, key: &TransactionKey) -> Option<Role> {
        self.txns.get(key).map(|_| key.role)
    }

    /// Move a transaction's output to the table queues; drop it once terminated.
    fn collect(&mut self, key: &TransactionKey) {
        let Some(e) = self.txns.get_mut(key) else {
            return;
        };
        while let Some(message) = e.txn.poll_transmit() {
            self.transmits.push_back(TableTransmit {
                key: key.clone(),
                ctx: e.ctx.clone(),
                message,
            });
        }
        while let Some(ev) = e.txn.poll_event() {
            self.events.push_back((key.clone(), ev));
        }
        if e.txn.is_terminated() {
            self.txns.remove(key);
            self.cancel_pending.remove(key);
            self.prune();
            return;
        }
        let next = e.txn.poll_timeout();
        if next != e.scheduled {
            e.scheduled = next;
            if let Some(at) = next {
                self.deadlines.push(Due {
                    at,
                    key: key.clone(),
                });
            }
            self.prune();
        }
    }

    /// The earliest deadline by a scan of every transaction (what the heap must agree with).
    #[cfg(test)]
    pub(crate) fn scan_timeout(&self) -> Option<Instant> {
        self.txns
            .values()
            .filter_map(|e| e.txn.poll_timeout())
            .min()
    }

    /// Drop superseded entries from the top of the heap, so `poll_timeout` is exact.
    fn prune(&mut self) {
        while let Some(d) = self.deadlines.peek() {
            if self.txns.get(&d.key).and_then(|e| e.scheduled) == Some(d.at) {
                break;
            }
            self.deadlines.pop();
        }
        if self.txns.is_empty() {
            self.deadlines.clear();
            if self.deadlines.capacity() > 1024 {
                // Give the memory of a burst back.
                self.deadlines.shrink_to(1024);
                self.txns.shrink_to(1024);
            }
        }
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use crate::sip::transport::ReplyPath;

    /// What a call pays for its client transactions (`call::actor`, `client_txns`): the
    /// boxed table, and per live transaction one hash-table slot (key and entry) — hashbrown
    /// allocates 4 slots for up to 3 — plus the request's own heap (its header strings),
    /// until the transaction ends; the table goes with its last transaction.
    #[test]
    fn a_calls_client_table_stays_small() {
        let table = std::mem::size_of::<TransactionTable<ReplyPath>>();
        let slot = std::mem::size_of::<(TransactionKey, Entry<ReplyPath>)>() + 1;
        eprintln!("table {table} B, slot {slot} B, 4 slots {} B", 4 * slot);
        // Measured 264 and 921 B (x86-64): 4 slots are 3.7 KB while any transaction lives.
        assert!(table <= 320, "{table}");
        assert!(slot <= 960, "{slot}");
    }
}
