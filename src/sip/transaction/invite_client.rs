//! The INVITE client transaction (RFC 3261 §17.1.1, Figure 5, as modified by RFC 6026
//! §8.4 with the Accepted state).
//!
//! Calling: the INVITE is retransmitted on Timer A (T1, doubling, unreliable transports
//! only) until a response or Timer B (64·T1). A 1xx stops retransmission (Proceeding). A
//! 300–699 is ACKed here (the ACK is the transaction's, §17.1.1.3), passed up once, and
//! its retransmissions re-ACKed in Completed until Timer D. A 2xx goes to the TU and moves
//! to Accepted, where further 2xx's (retransmissions or other forks) are passed up too,
//! until Timer M.

use std::time::Instant;

use super::{build_ack, class, io_methods, Core, Event, Timer, TimerConfig};
use crate::sip::message::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct InviteClient {
    core: Core,
    state: InviteClientState,
    request: Message,
    ack: Option<Message>,
    /// Timer A's current interval.
    interval: std::time::Duration,
}

impl InviteClient {
    /// Start the transaction: the INVITE is queued for sending at once.
    pub fn new(request: Message, now: Instant, cfg: TimerConfig, reliable: bool) -> InviteClient {
        let mut core = Core::new(cfg, reliable);
        core.send(request.clone());
        core.arm_retransmit(Timer::A, now + cfg.t1);
        core.arm(Timer::B, now);
        InviteClient {
            core,
            state: InviteClientState::Calling,
            request,
            ack: None,
            interval: cfg.t1,
        }
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// A response matched to this transaction.
    pub fn handle_response(&mut self, response: Message, now: Instant) {
        let Some(code) = response.status() else {
            return;
        };
        use InviteClientState::*;
        match (self.state, class(code)) {
            (Calling | Proceeding, 1) => {
                self.state = Proceeding;
                self.core.timers.stop(Timer::A);
                self.core.timers.stop(Timer::B);
                self.core.emit(Event::Response(response));
            }
            (Calling | Proceeding, 2) => {
                self.state = Accepted;
                self.core.timers.stop(Timer::A);
                self.core.timers.stop(Timer::B);
                self.core.arm(Timer::M, now);
                self.core.emit(Event::Response(response));
            }
            (Calling | Proceeding, 3..=6) => {
                let ack = build_ack(&self.request, &response);
                self.core.send(ack.clone());
                self.ack = Some(ack);
                self.state = Completed;
                self.core.timers.stop(Timer::A);
                self.core.timers.stop(Timer::B);
                self.core.arm(Timer::D, now);
                self.core.emit(Event::Response(response));
            }
            (Completed, 3..=6) => {
                // A retransmitted final response: our ACK was lost; absorbed, re-ACKed.
                if let Some(ack) = &self.ack {
                    self.core.send(ack.clone());
                }
            }
            (Accepted, 2) => self.core.emit(Event::Response(response)),
            // Late provisionals, 2xx after a non-2xx, anything once terminated: absorbed.
            _ => {}
        }
    }

    /// The transport failed to deliver the INVITE or the ACK (§17.1.4).
    pub fn handle_transport_error(&mut self) {
        use InviteClientState::*;
        if matches!(self.state, Calling | Proceeding | Completed) {
            self.core.emit(Event::TransportError);
            self.enter_terminated();
        }
    }

    pub fn is_reliable(&self) -> bool {
        self.core.reliable
    }

    /// Whether a CANCEL may be sent now (§9.1: only after a provisional response).
    pub fn can_cancel(&self) -> bool {
        self.state == InviteClientState::Proceeding
    }

    /// A CANCEL for this INVITE went out: if no final response comes within 64·T1 the
    /// transaction is given up (§9.1), reported as Timer B. Without a CANCEL, Proceeding
    /// has no timer: the TU's ring timeout is what ends it.
    pub fn cancel_sent(&mut self, now: Instant) {
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            self.core.arm(Timer::B, now);
        }
    }

    fn on_timer(&mut self, timer: Timer, due: Instant, _now: Instant) {
        use InviteClientState::*;
        match (timer, self.state) {
            (Timer::A, Calling) => {
                self.core.send(self.request.clone());
                self.interval *= 2;
                self.core.arm_retransmit(Timer::A, due + self.interval);
            }
            (Timer::B, Calling | Proceeding) => {
                self.core.emit(Event::Timeout(Timer::B));
                self.enter_terminated();
            }
            (Timer::D, Completed) | (Timer::M, Accepted) => self.enter_terminated(),
            _ => {}
        }
    }

    fn enter_terminated(&mut self) {
        self.state = InviteClientState::Terminated;
        self.core.terminate();
    }

    /// The transaction's request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    io_methods!();
}
