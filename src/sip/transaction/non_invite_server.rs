//! The non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! Trying: retransmissions of the request are absorbed silently. After a provisional from
//! the TU (Proceeding) they are answered with it; after the final response (Completed)
//! with the final response, for Timer J (64·T1; zero when reliable).

use std::time::Instant;

use super::{class, io_methods, Core, Event, Timer, TimerConfig, TransactionError};
use crate::sip::message::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

impl NonInviteServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            NonInviteServerState::Trying => "trying",
            NonInviteServerState::Proceeding => "proceeding",
            NonInviteServerState::Completed => "completed",
            NonInviteServerState::Terminated => "terminated",
        }
    }
}

#[derive(Debug)]
pub struct NonInviteServer {
    core: Core,
    state: NonInviteServerState,
    request: Message,
    last_response: Option<Message>,
}

impl NonInviteServer {
    pub fn new(
        request: Message,
        _now: Instant,
        cfg: TimerConfig,
        reliable: bool,
    ) -> NonInviteServer {
        NonInviteServer {
            core: Core::new(cfg, reliable),
            state: NonInviteServerState::Trying,
            request,
            last_response: None,
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    pub fn last_response(&self) -> Option<&Message> {
        self.last_response.as_ref()
    }

    /// A retransmission of the request.
    pub fn handle_request(&mut self, _request: Message, _now: Instant) {
        use NonInviteServerState::*;
        if matches!(self.state, Proceeding | Completed) {
            if let Some(r) = &self.last_response {
                self.core.send(r.clone());
            }
        }
    }

    pub fn send_response(
        &mut self,
        response: Message,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let code = response.status().ok_or(TransactionError::NotAResponse)?;
        use NonInviteServerState::*;
        match (self.state, class(code)) {
            (Trying | Proceeding, 1) => self.state = Proceeding,
            (Trying | Proceeding, 2..=6) => {
                self.state = Completed;
                self.core.arm(Timer::J, now);
            }
            (state, _) => {
                return Err(TransactionError::InvalidState {
                    code,
                    state: state.as_str(),
                })
            }
        }
        self.core.send(response.clone());
        self.last_response = Some(response);
        Ok(())
    }

    pub fn handle_transport_error(&mut self) {
        use NonInviteServerState::*;
        if matches!(self.state, Proceeding | Completed) {
            self.core.emit(Event::TransportError);
            self.enter_terminated();
        }
    }

    fn on_timer(&mut self, timer: Timer, _due: Instant, _now: Instant) {
        if (timer, self.state) == (Timer::J, NonInviteServerState::Completed) {
            self.enter_terminated();
        }
    }

    fn enter_terminated(&mut self) {
        self.state = NonInviteServerState::Terminated;
        self.core.terminate();
    }

    /// The transaction's request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    io_methods!();
}
