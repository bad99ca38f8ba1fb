//! Browser phones: which agents chose to take calls in the `/agent` page, and the rings in
//! progress. Shared by the HTTP side (the page answers, rejects or hangs up by posting to
//! `/api/agent/*`) and the call side (a browser agent leg registers its ring here and waits
//! for the page's action). The map is small (one entry per browser agent) and the lock is
//! never held across an await.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{broadcast, mpsc, oneshot};

/// What the page did about a call it was rung for.
#[derive(Debug)]
pub enum PageAction {
    /// Answer with this WebRTC offer; the SDP answer (or why the offer was refused) is sent
    /// back on `reply`.
    Answer {
        offer: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Reject,
    /// Hang up an answered call (or give up a ring, as Reject).
    Hangup,
}

/// Pushed to the agent's session event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    /// The page is rung for this call (`incoming-call`).
    Ring { agent: String, call: String },
    /// The ring or the call ended (`call-ended`), with why.
    Ended {
        agent: String,
        call: String,
        why: &'static str,
    },
}

/// Why a page action found no call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("the browser phone is off")]
    Off,
    #[error("no such call for this agent (it ended, or was never offered)")]
    NoCall,
}

#[derive(Debug, Default)]
struct Phone {
    /// Call (ACD key) → the leg's mailbox for page actions.
    calls: HashMap<String, mpsc::Sender<PageAction>>,
}

#[derive(Debug)]
pub struct Phones {
    inner: Mutex<HashMap<String, Phone>>,
    events: broadcast::Sender<PhoneEvent>,
}

impl Default for Phones {
    fn default() -> Self {
        Phones {
            inner: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
        }
    }
}

impl Phones {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Phone>> {
        // A panic while holding this lock leaves a consistent map (every change is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Turn the agent's browser phone on or off. Off drops the rings in progress (their legs
    /// see the page gone). Returns whether the state changed.
    pub fn set(&self, agent: &str, on: bool) -> bool {
        let mut m = self.lock();
        if on {
            if m.contains_key(agent) {
                return false;
            }
            m.insert(agent.to_string(), Phone::default());
            true
        } else {
            m.remove(agent).is_some()
        }
    }

    pub fn is_on(&self, agent: &str) -> bool {
        self.lock().contains_key(agent)
    }

    /// Ring the agent's page for `call`: page actions arrive on the returned receiver until
    /// the [`Ring`] is dropped. None when the phone is off.
    pub fn ring(&self, agent: &str, call: &str) -> Option<Ring<'_>> {
        let (tx, rx) = mpsc::channel(4);
        self.lock()
            .get_mut(agent)?
            .calls
            .insert(call.to_string(), tx);
        let _ = self.events.send(PhoneEvent::Ring {
            agent: agent.to_string(),
            call: call.to_string(),
        });
        Some(Ring {
            phones: self,
            agent: agent.to_string(),
            call: call.to_string(),
            actions: rx,
            why: "ended",
        })
    }

    /// The page's action for one of its calls.
    pub fn act(&self, agent: &str, call: &str, action: PageAction) -> Result<(), PhoneError> {
        let m = self.lock();
        let phone = m.get(agent).ok_or(PhoneError::Off)?;
        let tx = phone.calls.get(call).ok_or(PhoneError::NoCall)?;
        tx.try_send(action).map_err(|_| PhoneError::NoCall)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PhoneEvent> {
        self.events.subscribe()
    }
}

/// A ring (then a call) in progress on a browser phone; dropping it forgets the call and
/// tells the page it ended.
#[derive(Debug)]
pub struct Ring<'a> {
    phones: &'a Phones,
    agent: String,
    call: String,
    pub actions: mpsc::Receiver<PageAction>,
    /// Reported to the page when dropped.
    pub why: &'static str,
}

impl Drop for Ring<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.phones.lock().get_mut(&self.agent) {
            p.calls.remove(&self.call);
        }
        let _ = self.phones.events.send(PhoneEvent::Ended {
            agent: self.agent.clone(),
            call: self.call.clone(),
            why: self.why,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_reaches_its_leg_and_is_forgotten_on_drop() {
        let phones = Phones::default();
        let mut events = phones.subscribe();
        assert!(phones.ring("ann", "c1").is_none(), "phone off: not rung");
        assert!(phones.set("ann", true));
        assert!(!phones.set("ann", true));
        let mut ring = phones.ring("ann", "c1").expect("rung");
        assert_eq!(
            events.try_recv().ok(),
            Some(PhoneEvent::Ring {
                agent: "ann".into(),
                call: "c1".into()
            })
        );
        assert_eq!(
            phones.act("ann", "c2", PageAction::Reject),
            Err(PhoneError::NoCall)
        );
        assert_eq!(
            phones.act("bob", "c1", PageAction::Reject),
            Err(PhoneError::Off)
        );
        phones.act("ann", "c1", PageAction::Reject).expect("acted");
        assert!(matches!(ring.actions.try_recv(), Ok(PageAction::Reject)));
        ring.why = "rejected";
        drop(ring);
        assert!(matches!(
            events.try_recv(),
            Ok(PhoneEvent::Ended {
                why: "rejected",
                ..
            })
        ));
        assert_eq!(
            phones.act("ann", "c1", PageAction::Hangup),
            Err(PhoneError::NoCall)
        );
    }
}
