//! A call actor's mailbox as the services below `call` see it: the ACD tells waiting callers
//! [`AcdEvent`]s through [`CallerTx`] without naming [`CallInput`], so `acd` does not import
//! `call` (docs/architecture.md, layers).

use tokio::sync::mpsc;

use super::actor::CallInput;
use crate::acd::{AcdEvent, CallerMailbox, CallerTx};

impl CallerMailbox for mpsc::Sender<CallInput> {
    fn try_tell(&self, event: AcdEvent) -> Result<(), AcdEvent> {
        self.try_send(CallInput::Acd(event))
            .map_err(|e| match e.into_inner() {
                CallInput::Acd(event) => event,
                // Unreachable: what we sent is what comes back.
                _ => AcdEvent::Unavailable {
                    reason: "lost".into(),
                },
            })
    }

    fn is_closed(&self) -> bool {
        mpsc::Sender::is_closed(self)
    }
}

impl From<mpsc::Sender<CallInput>> for CallerTx {
    fn from(tx: mpsc::Sender<CallInput>) -> CallerTx {
        CallerTx::new(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_mailbox_hands_the_event_back() {
        let (tx, mut rx) = mpsc::channel::<CallInput>(1);
        let caller = CallerTx::from(tx.clone());
        assert!(tx.try_tell(AcdEvent::Queued { position: 1 }).is_ok());
        // Full: the ACD gets its event back to keep and retry (it is not dropped).
        match tx.try_tell(AcdEvent::Unavailable {
            reason: "timeout".into(),
        }) {
            Err(AcdEvent::Unavailable { reason }) => assert_eq!(reason, "timeout"),
            other => panic!("expected the event back, got {other:?}"),
        }
        assert!(matches!(
            rx.recv().await,
            Some(CallInput::Acd(AcdEvent::Queued { position: 1 }))
        ));
        assert!(tx.try_tell(AcdEvent::Queued { position: 2 }).is_ok());
        assert!(!CallerMailbox::is_closed(&tx));
        drop(rx);
        assert!(CallerMailbox::is_closed(&tx));
        drop(caller);
    }
}
