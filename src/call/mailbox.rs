//! A call actor's mailbox as the services below `call` see it: the ACD tells waiting callers
//! [`AcdEvent`]s through [`CallerTx`] without naming [`CallInput`], so `acd` does not import
//! `call` (docs/architecture.md, layers).

use tokio::sync::mpsc;

use super::actor::CallInput;
use crate::acd::{AcdEvent, CallerMailbox, CallerTx};

impl CallerMailbox for mpsc::Sender<CallInput> {
    fn try_tell(&self, event: AcdEvent) -> bool {
        self.try_send(CallInput::Acd(event)).is_ok()
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
