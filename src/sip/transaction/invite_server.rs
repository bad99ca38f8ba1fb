//! The INVITE server transaction (RFC 3261 §17.2.1, Figure 7, as modified by RFC 6026
//! §7.1 and §8.5–8.7 with the Accepted state).
//!
//! Proceeding: INVITE retransmissions are answered with the last provisional (if any); a
//! 100 Trying goes out on its own after `auto_trying` unless the TU answered first.
//! A 300–699 from the TU moves to Completed: retransmitted on Timer G (T1 doubling to T2,
//! unreliable only) until the ACK (Confirmed, absorbing ACKs for Timer I) or Timer H
//! (64·T1, reported). A 2xx moves to Accepted for Timer L (64·T1): the TU retransmits the
//! 2xx itself (each one it passes is sent), INVITE retransmissions are absorbed, a
//! matching ACK is passed to the TU.
//!
//! A shell that sends the TU's responses itself (the router: each call actor writes its
//! responses to its own flow) creates the machine with [`InviteServer::tracking`] and
//! reports them with [`InviteServer::response_sent`]: the machine then holds no copy of the
//! request, queues nothing for what was already sent, and keeps a response only as long as
//! it may have to repeat it (Proceeding, Completed) — in Accepted it holds no message at
//! all, since there the INVITE retransmissions are absorbed and the TU retransmits its 2xx.

use std::time::{Duration, Instant};

use super::{class, io_methods, Core, Event, Timer, TimerConfig, TransactionError};
use crate::sip::message::{Message, Method};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

impl InviteServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteServerState::Proceeding => "proceeding",
            InviteServerState::Completed => "completed",
            InviteServerState::Confirmed => "confirmed",
            InviteServerState::Accepted => "accepted",
            InviteServerState::Terminated => "terminated",
        }
    }
}

#[derive(Debug)]
pub struct InviteServer {
    core: Core,
    state: InviteServerState,
    /// The INVITE, kept while Proceeding for the automatic 100 Trying; `None` for a
    /// [`tracking`](InviteServer::tracking) machine and after Proceeding.
    request: Option<Message>,
    last_response: Option<Message>,
    /// Timer G's current interval.
    interval: Duration,
}

impl InviteServer {
    /// A new INVITE arrived (the TU gets it from the table, not as an event).
    pub fn new(request: Message, now: Instant, cfg: TimerConfig, reliable: bool) -> InviteServer {
        let mut core = Core::new(cfg, reliable);
        if cfg.auto_trying.is_some() {
            core.arm(Timer::Trying, now);
        }
        InviteServer {
            core,
            state: InviteServerState::Proceeding,
            request: Some(request),
            last_response: None,
            interval: cfg.t1,
        }
    }

    /// A machine for an INVITE whose TU sends every response itself and reports it with
    /// [`response_sent`](Self::response_sent): no copy of the request, no automatic 100
    /// (the TU answers at once).
    pub fn tracking(now: Instant, cfg: TimerConfig, reliable: bool) -> InviteServer {
        let _ = now;
        InviteServer {
            core: Core::new(cfg, reliable),
            state: InviteServerState::Proceeding,
            request: None,
            last_response: None,
            interval: cfg.t1,
        }
    }

    /// The INVITE, while Proceeding (`None` for a tracking machine).
    pub fn request(&self) -> Option<&Message> {
        self.request.as_ref()
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// The last response sent (what a retransmitted INVITE is answered with).
    pub fn last_response(&self) -> Option<&Message> {
        self.last_response.as_ref()
    }

    /// A retransmitted INVITE or an ACK matched to this transaction.
    pub fn handle_request(&mut self, request: Message, now: Instant) {
        use InviteServerState::*;
        match (request.method(), self.state) {
            (Some(Method::Invite), Proceeding | Completed) => {
                if let Some(r) = &self.last_response {
                    self.core.send(r.clone());
                }
            }
            (Some(Method::Ack), Completed) => {
                self.state = Confirmed;
                self.core.timers.stop(Timer::G);
                self.core.timers.stop(Timer::H);
                self.core.arm(Timer::I, now);
            }
            (Some(Method::Ack), Accepted) => self.core.emit(Event::Ack(request)),
            // INVITE in Accepted/Confirmed, ACK in Confirmed: absorbed.
            _ => {}
        }
    }

    /// The TU's response to the INVITE (or, in Accepted, a retransmission of its 2xx).
    pub fn send_response(
        &mut self,
        response: Message,
        now: Instant,
    ) -> Result<(), TransactionError> {
        self.respond(response, now, true)
    }

    /// The TU sent this response itself on the transaction's flow: the same state change
    /// as [`send_response`](Self::send_response), nothing queued to send.
    pub fn response_sent(
        &mut self,
        response: Message,
        now: Instant,
    ) -> Result<(), TransactionError> {
        self.respond(response, now, false)
    }

    fn respond(
        &mut self,
        response: Message,
        now: Instant,
        transmit: bool,
    ) -> Result<(), TransactionError> {
        let code = response.status().ok_or(TransactionError::NotAResponse)?;
        use InviteServerState::*;
        match (self.state, class(code)) {
            (Proceeding, 1) => {
                self.core.timers.stop(Timer::Trying);
            }
            (Proceeding, 2) => {
                self.core.timers.stop(Timer::Trying);
                self.state = Accepted;
                self.core.arm(Timer::L, now);
            }
            (Proceeding, 3..=6) => {
                self.core.timers.stop(Timer::Trying);
                self.state = Completed;
                self.core.arm_retransmit(Timer::G, now + self.core.cfg.t1);
                self.core.arm(Timer::H, now);
            }
            (Accepted, 2) => {}
            (state, _) => {
                return Err(TransactionError::InvalidState {
                    code,
                    state: state.as_str(),
                })
            }
        }
        if self.state != Proceeding {
            self.request = None;
        }
        if self.state == Accepted {
            // Nothing is ever repeated from here (INVITEs are absorbed, the TU resends).
            self.last_response = None;
            if transmit {
                self.core.send(response);
            }
            return Ok(());
        }
        if transmit {
            self.core.send(response.clone());
        }
        self.last_response = Some(response);
        Ok(())
    }

    /// The transport could not send a response (§17.2.4 after its retries).
    pub fn handle_transport_error(&mut self) {
        use InviteServerState::*;
        if matches!(self.state, Proceeding | Completed | Accepted) {
            self.core.emit(Event::TransportError);
            self.enter_terminated();
        }
    }

    fn on_timer(&mut self, timer: Timer, due: Instant, _now: Instant) {
        use InviteServerState::*;
        match (timer, self.state) {
            (Timer::Trying, Proceeding) if self.last_response.is_none() => {
                if let Some(trying) = self
                    .request
                    .as_ref()
                    .map(|r| r.response(100, "Trying", None))
                {
                    self.core.send(trying.clone());
                    self.last_response = Some(trying);
                }
            }
            (Timer::G, Completed) => {
                if let Some(r) = &self.last_response {
                    self.core.send(r.clone());
                }
                self.interval = (self.interval * 2).min(self.core.cfg.t2);
                self.core.arm_retransmit(Timer::G, due + self.interval);
            }
            (Timer::H, Completed) => {
                self.core.emit(Event::Timeout(Timer::H));
                self.enter_terminated();
            }
            (Timer::I, Confirmed) | (Timer::L, Accepted) => self.enter_terminated(),
            _ => {}
        }
    }

    fn enter_terminated(&mut self) {
        self.state = InviteServerState::Terminated;
        self.core.terminate();
    }

    io_methods!();
}
