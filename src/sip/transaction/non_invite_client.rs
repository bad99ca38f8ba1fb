//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! Trying: the request is retransmitted on Timer E (T1, doubling, capped at T2; unreliable
//! transports only) until a final response or Timer F (64·T1). After a provisional
//! (Proceeding) it is retransmitted every T2. The final response is passed up once;
//! retransmissions of it are absorbed in Completed for Timer K (T4; zero when reliable).

use std::time::{Duration, Instant};

use super::{class, io_methods, Core, Event, Timer, TimerConfig};
use crate::sip::message::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct NonInviteClient {
    core: Core,
    state: NonInviteClientState,
    request: Message,
    interval: Duration,
}

impl NonInviteClient {
    pub fn new(
        request: Message,
        now: Instant,
        cfg: TimerConfig,
        reliable: bool,
    ) -> NonInviteClient {
        let mut core = Core::new(cfg, reliable);
        core.send(request.clone());
        core.arm_retransmit(Timer::E, now + cfg.t1);
        core.arm(Timer::F, now);
        NonInviteClient {
            core,
            state: NonInviteClientState::Trying,
            request,
            interval: cfg.t1,
        }
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    pub fn handle_response(&mut self, response: Message, now: Instant) {
        let Some(code) = response.status() else {
            return;
        };
        use NonInviteClientState::*;
        match (self.state, class(code)) {
            (Trying | Proceeding, 1) => {
                self.state = Proceeding;
                self.core.emit(Event::Response(response));
            }
            (Trying | Proceeding, 2..=6) => {
                self.state = Completed;
                self.core.timers.stop(Timer::E);
                self.core.timers.stop(Timer::F);
                self.core.arm(Timer::K, now);
                self.core.emit(Event::Response(response));
            }
            _ => {}
        }
    }

    pub fn handle_transport_error(&mut self) {
        use NonInviteClientState::*;
        if matches!(self.state, Trying | Proceeding) {
            self.core.emit(Event::TransportError);
            self.enter_terminated();
        }
    }

    fn on_timer(&mut self, timer: Timer, due: Instant, _now: Instant) {
        use NonInviteClientState::*;
        match (timer, self.state) {
            (Timer::E, Trying | Proceeding) => {
                self.core.send(self.request.clone());
                self.interval = if self.state == Trying {
                    (self.interval * 2).min(self.core.cfg.t2)
                } else {
                    self.core.cfg.t2
                };
                self.core.arm_retransmit(Timer::E, due + self.interval);
            }
            (Timer::F, Trying | Proceeding) => {
                self.core.emit(Event::Timeout(Timer::F));
                self.enter_terminated();
            }
            (Timer::K, Completed) => self.enter_terminated(),
            _ => {}
        }
    }

    fn enter_terminated(&mut self) {
        self.state = NonInviteClientState::Terminated;
        self.core.terminate();
    }

    /// The transaction's request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    io_methods!();
}
