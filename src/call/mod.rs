//! Calls: the router (Call-ID → call actor, stateless answers), one actor task per call
//! owning its dialog, media session and interpreter, and the shared context they use.

pub mod actor;
pub mod admission;
pub mod dialog;
pub mod dialplans;
pub mod disposition;
mod mailbox;
pub(crate) mod role;
pub mod router;
pub mod slots;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::call::dialog::LocalIdentity;
use crate::config::Config;
use crate::ivr::loader::DialplanSet;
use crate::media::prompts::PromptLibrary;
use crate::runtime::ports::PortRange;
use crate::sip::transport::{ReplyPath, TransportKind};
use crate::store::writer::StoreHandle;
use crate::store::Db;

/// Everything a call needs that is shared by all calls. Read-only on the per-packet path.
pub struct CallContext {
    pub config: Config,
    pub sip_local: SocketAddr,
    pub tcp_local: Option<SocketAddr>,
    /// The TLS listener's address, when `[server] tls_listen` is set.
    pub tls_local: Option<SocketAddr>,
    /// The HTTP listener's address: where SIP over WebSocket is accepted.
    pub ws_local: Option<SocketAddr>,
    /// Connections to `tcp`/`tls` trunks.
    pub trunk_flows: crate::sip::tls::TrunkConnections,
    pub ports: PortRange,
    pub prompts: Arc<PromptLibrary>,
    /// Swapped as a whole on reload; read once when a call starts.
    pub dialplans: RwLock<Arc<DialplanSet>>,
    pub store: StoreHandle,
    pub db: Db,
    /// Live calls (`max_calls`, `/api/status` active_calls): each holds a [`slots::CallSlot`].
    pub active_calls: Arc<slots::CallSlots>,
    /// New INVITEs refused with 503 by overload control (`[server] overload_queue_ms`).
    pub overload_refusals: std::sync::atomic::AtomicU64,
    /// Inbound call tasks that have started running (the router compares it with the ones
    /// it spawned: the wait of the oldest not yet started is its overload signal).
    pub calls_started: std::sync::atomic::AtomicU64,
    /// When overload control last refused a call (calls waiting for an ACK give up early
    /// while it is recent).
    pub overload: router::OverloadMark,
    /// How late the call runtime runs (overload control; `runtime::calls`).
    pub call_lag: Arc<crate::runtime::calls::CallLag>,
    /// Where call tasks run: the call runtime (`realtime_priority` applies to its threads
    /// only). Tasks a call spawns land there by themselves; services that start calls
    /// (router, dialer) spawn on this handle.
    pub calls_rt: tokio::runtime::Handle,
    /// Calls and the tasks they start (lookups, agent legs, feature codes): shutdown waits
    /// for all of them.
    pub tracker: tokio_util::task::TaskTracker,
    /// Out-of-dialog requests the router's source guard dropped (scanners, floods, bans).
    pub security_drops: std::sync::atomic::AtomicU64,
    pub router: mpsc::Sender<router::RouterControl>,
    /// The SIP UDP socket, for requests we originate (outbound calls through trunks).
    pub udp: Arc<tokio::net::UdpSocket>,
    pub registrar: crate::registrar::RegistrarHandle,
    pub acd: crate::acd::AcdHandle,
    /// Each trunk's max_channels/max_cps, shared by campaigns and failovers.
    pub trunk_gates: crate::dialer::gate::TrunkGates,
    /// Registration state of trunks with `register = true` (for the API).
    pub trunk_registrations: crate::sip::reg_table::TrunkRegistrations,
    /// Draining (SIGTERM, `POST /api/drain`): OPTIONS and new INVITEs are answered 503 so
    /// the edge's dispatcher sends new calls elsewhere; calls in progress finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// Agents taking calls in the `/agent` page, and the rings of their browser legs.
    pub phones: Arc<crate::webrtc::phones::Phones>,
}

impl CallContext {
    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs(self.config.media_timeout_s.max(1))
    }

    /// How long a ticket lookup may keep a call waiting before it counts as unavailable.
    pub fn lookup_budget(&self) -> Duration {
        Duration::from_millis(self.config.lookup_timeout_ms)
    }

    /// How we appear on `flow`: Via sent-by and Contact on the listener of its transport
    /// (RFC 3261 §18.2.1/§8.1.1.8), so in-dialog requests can find us; `sips:` over TLS
    /// (RFC 5630 §3), `transport=ws` over WebSocket (RFC 7118 §5).
    pub fn local_identity(&self, flow: &ReplyPath) -> LocalIdentity {
        let kind = flow.kind();
        let flow_local = match flow {
            ReplyPath::Stream { local, .. } => Some(*local),
            ReplyPath::Udp { .. } => None,
        };
        let addr = match kind {
            TransportKind::Udp => self.sip_local,
            TransportKind::Tcp => self.tcp_local.or(flow_local).unwrap_or(self.sip_local),
            TransportKind::Tls => self.tls_local.or(flow_local).unwrap_or(self.sip_local),
            TransportKind::Ws | TransportKind::Wss => {
                self.ws_local.or(flow_local).unwrap_or(self.sip_local)
            }
        };
        let contact = match kind {
            TransportKind::Udp => format!("<sip:switchboard@{addr}>"),
            TransportKind::Tcp => format!("<sip:switchboard@{addr};transport=tcp>"),
            TransportKind::Tls => format!("<sips:switchboard@{addr}>"),
            TransportKind::Ws => format!("<sip:switchboard@{addr};transport=ws>"),
            TransportKind::Wss => format!("<sips:switchboard@{addr};transport=ws>"),
        };
        LocalIdentity {
            contact,
            via_host: addr.to_string(),
            transport: kind,
            user_agent: self.config.user_agent.clone(),
        }
    }

    pub fn dialplans(&self) -> Arc<DialplanSet> {
        match self.dialplans.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
