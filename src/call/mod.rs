//! Calls: the router (Call-ID → call actor, stateless answers), one actor task per call
//! owning its dialog, media session and interpreter, and the shared context they use.

pub mod actor;
pub mod dialog;
pub mod router;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::ivr::loader::DialplanSet;
use crate::media::prompts::PromptLibrary;
use crate::runtime::ports::PortRange;
use crate::store::writer::StoreHandle;
use crate::store::Db;

/// Everything a call needs that is shared by all calls. Read-only on the per-packet path.
pub struct CallContext {
    pub config: Config,
    pub sip_local: SocketAddr,
    pub tcp_local: Option<SocketAddr>,
    pub ports: PortRange,
    pub prompts: Arc<PromptLibrary>,
    /// Swapped as a whole on reload; read once when a call starts.
    pub dialplans: RwLock<Arc<DialplanSet>>,
    pub store: StoreHandle,
    pub db: Db,
    pub active_calls: AtomicUsize,
    pub router: mpsc::Sender<router::RouterControl>,
    /// The SIP UDP socket, for requests we originate (outbound calls through trunks).
    pub udp: Arc<tokio::net::UdpSocket>,
    pub registrar: crate::registrar::RegistrarHandle,
    pub acd: crate::acd::AcdHandle,
}

impl CallContext {
    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs(self.config.media_timeout_s.max(1))
    }

    pub fn dialplans(&self) -> Arc<DialplanSet> {
        match self.dialplans.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
