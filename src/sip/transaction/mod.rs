//! SIP transactions (RFC 3261 §17, updated by RFC 6026) as sans-IO state machines.
//!
//! Four machines — [`InviteClient`], [`InviteServer`], [`NonInviteClient`],
//! [`NonInviteServer`] — and a [`TransactionTable`] that matches messages to them by
//! [`TransactionKey`] (RFC 3261 §17.1.3 for responses, §17.2.3 for requests, §9.2 for
//! CANCEL). Everything a transaction owns stays here: request retransmissions, response
//! retransmissions, the ACK for a non-2xx final response, absorbing duplicate requests and
//! ACKs. What reaches the transaction user (the call) is one request, the responses that
//! matter, and timeouts.
//!
//! Inputs: parsed [`Message`]s (`handle_request`, `handle_response`), TU commands
//! (`send_response`, `cancel`), transport errors, and `handle_timeout(now)`. Outputs:
//! `poll_transmit()` (a message to send on the transaction's flow), `poll_event()`
//! ([`Event`]s for the TU) and `poll_timeout()` (the next instant anything can happen). Time
//! is only ever passed in, so the tests run in virtual time.
//!
//! RFC 6026: a 2xx ends neither side at once. The INVITE server goes to Accepted for Timer
//! L (64·T1): the TU retransmits its 2xx (the transaction sends what it is given), INVITE
//! retransmissions are absorbed, an ACK that matches is handed to the TU. The INVITE client
//! goes to Accepted for Timer M (64·T1) and passes every 2xx up (each needs an ACK from the
//! TU, and forked 2xx's are new dialogs).
//!
//! Two compact sets serve a shell whose TU sends its responses itself and reports a copy
//! (the SIP router and its call actors): [`InviteServers`] for INVITEs, initial and
//! in-dialog (full machines until the final response, a 24-byte memory in Accepted), and
//! [`NonInviteServers`] for in-dialog non-INVITE requests (a hashed key, the last
//! response's bytes and a deadline).

mod compact;
mod invite_client;
mod invite_server;
mod invite_servers;
mod non_invite_client;
mod non_invite_server;
mod table;
mod timer;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod sim;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

pub use compact::{Matched, NonInviteServers};
pub use invite_client::{InviteClient, InviteClientState};
pub use invite_server::{InviteServer, InviteServerState};
pub use invite_servers::{InviteServers, Tracked};
pub use non_invite_client::{NonInviteClient, NonInviteClientState};
pub use non_invite_server::{NonInviteServer, NonInviteServerState};
pub use table::{Incoming, TableTransmit, TransactionTable};
pub use timer::{Timer, TimerConfig, TimerTable};

use super::message::{Header, HeaderName, Message, Method, ParseError, StartLine};

/// The RFC 3261 branch prefix: a branch that starts with it is unique per transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// What a transaction tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response for the TU (client transactions): a provisional, the final response, or
    /// in Accepted (RFC 6026) a further 2xx, which the TU must ACK again.
    Response(Message),
    /// An ACK that matched an INVITE server transaction in Accepted (RFC 6026 §8.7): the
    /// TU stops retransmitting its 2xx. (An ACK for a 2xx normally has a new branch and
    /// matches no transaction; the table reports it as [`Incoming::Unmatched`].)
    Ack(Message),
    /// A timer ran out: B or F (no final response), H (no ACK for a non-2xx final).
    Timeout(Timer),
    /// The transport could not deliver a message (RFC 3261 §17.1.4, §17.2.4).
    TransportError,
    /// The transaction ended; nothing more will come from it.
    Terminated,
}

/// A TU command the transaction cannot carry out in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("not a response")]
    NotAResponse,
    #[error("response {code} not allowed in state {state}")]
    InvalidState { code: u16, state: &'static str },
    #[error("no such transaction")]
    NotFound,
    #[error("not an INVITE client transaction")]
    NotInviteClient,
    #[error("transaction key: {0}")]
    Key(#[from] ParseError),
    #[error("a transaction with this key already exists")]
    Duplicate,
}

/// Client or server side of a key (a branch we generated never names a peer's transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

/// Identifies a transaction (RFC 3261 §17.1.3, §17.2.3): the top Via branch, the method
/// (ACK counted as INVITE, CANCEL its own) and, for server transactions, the top Via's
/// sent-by. Requests from RFC 2543 peers (no magic cookie) are keyed by what §17.2.3 lists
/// instead — Call-ID, From tag, CSeq number and the top Via — folded into `branch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    pub role: Role,
    pub branch: Box<str>,
    pub method: Method,
    pub sent_by: Box<str>,
}

impl TransactionKey {
    /// The key of the server transaction a received request belongs to.
    pub fn server(req: &Message) -> Result<TransactionKey, ParseError> {
        let method = req.method().ok_or(ParseError::BadStartLine)?;
        let via = req.top_via()?;
        let sent_by = match via.port {
            Some(p) => format!("{}:{p}", via.host.to_ascii_lowercase()),
            None => via.host.to_ascii_lowercase(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_string(),
            _ => {
                // RFC 2543 matching (§17.2.3): the To tag is left out so an ACK (which
                // carries the tag our final response added) finds its INVITE.
                let from_tag = req.from_header()?.tag().map(str::to_string);
                let raw_via = req
                    .header_values(&HeaderName::Via)
                    .next()
                    .unwrap_or_default();
                format!(
                    "2543|{}|{}|{}|{}|{}",
                    req.call_id()?,
                    from_tag.unwrap_or_default(),
                    req.cseq()?.seq,
                    req.request_uri().map(|u| u.as_str()).unwrap_or_default(),
                    raw_via
                )
            }
        };
        Ok(TransactionKey {
            role: Role::Server,
            branch: branch.into(),
            method: key_method(method),
            sent_by: sent_by.into(),
        })
    }

    /// The key of the client transaction a request we send, or a response we receive,
    /// belongs to: top Via branch and CSeq method (§17.1.3).
    pub fn client(msg: &Message) -> Result<TransactionKey, ParseError> {
        let via = msg.top_via()?;
        let branch = via.branch().ok_or(ParseError::Malformed("Via"))?;
        let method = msg.cseq()?.method;
        Ok(TransactionKey {
            role: Role::Client,
            branch: branch.into(),
            method: key_method(&method),
            sent_by: "".into(),
        })
    }

    /// The INVITE server transaction a CANCEL with this key cancels (§9.2: same branch and
    /// sent-by, method INVITE).
    pub fn cancelled_invite(&self) -> TransactionKey {
        TransactionKey {
            method: Method::Invite,
            ..self.clone()
        }
    }
}

fn key_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

/// What every machine carries: its timers and the queues the shell drains.
#[derive(Debug)]
struct Core {
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    transmits: VecDeque<Message>,
    events: VecDeque<Event>,
}

impl Core {
    fn new(cfg: TimerConfig, reliable: bool) -> Core {
        Core {
            cfg,
            reliable,
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Arm a timer for its RFC duration from `now`.
    fn arm(&mut self, timer: Timer, now: Instant) {
        let d = self.cfg.wait(timer, self.reliable);
        self.timers.set(timer, now + d);
    }

    /// Arm a retransmit timer (never on a reliable transport).
    fn arm_retransmit(&mut self, timer: Timer, at: Instant) {
        if !self.reliable {
            self.timers.set(timer, at);
        }
    }

    fn send(&mut self, msg: Message) {
        self.transmits.push_back(msg);
    }

    fn emit(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.emit(Event::Terminated);
    }
}

/// Shared accessors of the four machines.
macro_rules! io_methods {
    () => {
        /// A message to send on this transaction's flow.
        pub fn poll_transmit(&mut self) -> Option<Message> {
            self.core.transmits.pop_front()
        }

        /// The next event for the TU.
        pub fn poll_event(&mut self) -> Option<Event> {
            self.core.events.pop_front()
        }

        /// The next instant [`handle_timeout`](Self::handle_timeout) has work; `None` once
        /// terminated.
        pub fn poll_timeout(&self) -> Option<std::time::Instant> {
            self.core.timers.next()
        }

        /// Run every timer due at `now`.
        pub fn handle_timeout(&mut self, now: std::time::Instant) {
            while let Some((timer, due)) = self.core.timers.pop_expired(now) {
                self.on_timer(timer, due, now);
            }
        }
    };
}
pub(crate) use io_methods;

/// The ACK a client transaction sends for a non-2xx final response (RFC 3261 §17.1.1.3):
/// Request-URI, Call-ID, From, the top Via and Route of the INVITE, To of the response,
/// CSeq number of the INVITE with method ACK.
pub fn build_ack(invite: &Message, response: &Message) -> Message {
    build_from_invite(invite, Method::Ack, response.header(&HeaderName::To))
}

/// A CANCEL for an INVITE we sent (RFC 3261 §9.1): the same Request-URI, Call-ID, From,
/// To, CSeq number, top Via and Route.
pub fn build_cancel(invite: &Message) -> Message {
    build_from_invite(invite, Method::Cancel, None)
}

fn build_from_invite(invite: &Message, method: Method, to: Option<&str>) -> Message {
    let uri = match &invite.start {
        StartLine::Request { uri, .. } => uri.clone(),
        // Only ever called with the INVITE the transaction was created for.
        StartLine::Response { .. } => crate::sip::uri::Uri::sip(None, "invalid", None),
    };
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = invite.header_values(&HeaderName::Via).next() {
        headers.push(Header {
            name: HeaderName::Via,
            value: v.to_string(),
        });
    }
    headers.push(Header {
        name: HeaderName::MaxForwards,
        value: "70".into(),
    });
    for h in &invite.headers {
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => headers.push(h.clone()),
            HeaderName::To => headers.push(Header {
                name: HeaderName::To,
                value: to.unwrap_or(&h.value).to_string(),
            }),
            _ => {}
        }
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    headers.push(Header {
        name: HeaderName::CSeq,
        value: format!("{seq} {method}"),
    });
    Message {
        start: StartLine::Request { method, uri },
        headers,
        body: Bytes::new(),
    }
}

/// A status code's class, for the state machines.
fn class(code: u16) -> u16 {
    code / 100
}
