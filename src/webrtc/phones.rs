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
        /// The IP the page reached this server on (its request's `Host`, when that is an IP
        /// literal): the leg's candidate when media is bound on a wildcard address.
        page_ip: Option<std::net::IpAddr>,
    },
    Reject,
    /// Hang up an answered call (or give up a ring, as Reject).
    Hangup,
    /// Put the caller on hold (music on hold, as a SIP phone's hold) or take them back.
    Hold {
        on: bool,
    },
    /// Send these DTMF digits to the caller (RFC 4733 events on the caller's leg); already
    /// checked to be `0-9 * # A-D`.
    Dtmf {
        digits: String,
    },
    /// Blind transfer of the caller (the browser leg ends); `reply` says whether the call
    /// took it.
    Transfer {
        target: TransferTarget,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The agent's last page event stream closed during the call (the tab was closed, the
    /// browser died or lost the network): the leg ends unless the browser's media still flows.
    PageGone,
}

/// Where a blind transfer sends the caller (from the page or a SIP phone's REFER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// A configured `[[queue]]`: a new place in its line.
    Queue(String),
    /// A named agent: offered to that agent only, back to the caller's queue if the agent
    /// does not take it (see `acd::core::Acd::transfer_to_agent`).
    Agent(String),
}

impl std::fmt::Display for TransferTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferTarget::Queue(q) => f.write_str(q),
            TransferTarget::Agent(a) => write!(f, "agent:{a}"),
        }
    }
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

#[derive(Debug, Default)]
struct Table {
    phones: HashMap<String, Phone>,
    /// Open page event streams per agent: the last one closing (the tab is gone) turns an
    /// idle phone off, so a vanished page is not rung.
    watchers: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct Phones {
    inner: Mutex<Table>,
    events: broadcast::Sender<PhoneEvent>,
}

impl Default for Phones {
    fn default() -> Self {
        Phones {
            inner: Mutex::new(Table::default()),
            events: broadcast::channel(256).0,
        }
    }
}

impl Phones {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves a consistent table (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> PhonesGuard<'_> {
        PhonesGuard(self.table())
    }

    /// A page's event stream opened for `agent`.
    pub fn watch(&self, agent: &str) {
        *self.table().watchers.entry(agent.to_string()).or_default() += 1;
    }

    /// A page's event stream closed. When it was the agent's last one and its phone is on
    /// with no call in progress, the phone is turned off: returns true (the caller tells the
    /// ACD). A phone with calls keeps them, but each call's leg is told
    /// ([`PageAction::PageGone`]): it ends the call when the browser's media has stopped too
    /// (then [`Phones::off_if_unwatched`] turns the phone off), so a vanished browser's call
    /// is released at once rather than when ICE consent expires (30 s).
    pub fn unwatch(&self, agent: &str) -> bool {
        let mut t = self.table();
        let left = match t.watchers.get_mut(agent) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left > 0 {
            return false;
        }
        t.watchers.remove(agent);
        match t.phones.get(agent) {
            Some(p) if p.calls.is_empty() => {
                t.phones.remove(agent);
                true
            }
            Some(p) => {
                for tx in p.calls.values() {
                    let _ = tx.try_send(PageAction::PageGone);
                }
                false
            }
            None => false,
        }
    }

    /// After a call on the phone ended: when no page of the agent is open any more (its last
    /// event stream closed during the call) and no other call is in progress, turn the phone
    /// off. Returns true when it did (the caller tells the ACD), so a vanished page is not
    /// rung again.
    pub fn off_if_unwatched(&self, agent: &str) -> bool {
        let mut t = self.table();
        if t.watchers.get(agent).is_some_and(|n| *n > 0) {
            return false;
        }
        if t.phones.get(agent).is_some_and(|p| p.calls.is_empty()) {
            t.phones.remove(agent);
            return true;
        }
        false
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

/// The lock on the table, seen as the map of phones.
struct PhonesGuard<'a>(std::sync::MutexGuard<'a, Table>);

impl std::ops::Deref for PhonesGuard<'_> {
    type Target = HashMap<String, Phone>;
    fn deref(&self) -> &Self::Target {
        &self.0.phones
    }
}

impl std::ops::DerefMut for PhonesGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0.phones
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

    #[test]
    fn the_last_page_stream_closing_turns_an_idle_phone_off() {
        let phones = Phones::default();
        phones.set("ann", true);
        phones.watch("ann");
        phones.watch("ann");
        assert!(!phones.unwatch("ann"), "another stream is open");
        assert!(phones.is_on("ann"));
        let mut ring = phones.ring("ann", "c1").expect("rung");
        assert!(!phones.unwatch("ann"), "a call in progress keeps the phone");
        assert!(phones.is_on("ann"));
        assert!(
            matches!(ring.actions.try_recv(), Ok(PageAction::PageGone)),
            "the call's leg hears that the page is gone"
        );
        assert!(!phones.off_if_unwatched("ann"), "the call is still on");
        drop(ring);
        assert!(phones.off_if_unwatched("ann"), "call over, no page: off");
        assert!(!phones.is_on("ann"));
        phones.set("ann", true);
        phones.watch("ann");
        assert!(phones.unwatch("ann"), "last stream, idle: off");
        assert!(!phones.is_on("ann"));
        assert!(!phones.unwatch("bob"), "never on");
    }
}
