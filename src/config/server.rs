//! `[server]` and `[cluster]`: the node's addresses, media ports and codecs, SIP over TLS,
//! digest algorithms, session timers, threads and priority, its name in a cluster and the
//! cluster's heartbeat timing. Parsed into a [`ServerSection`] that `Config` is built from.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};
use crate::media::codec::Codec;
use crate::runtime::ports::PortRange;

/// `[server] overload_queue_ms` when not set: well under SIP's T1 (500 ms), so an INVITE
/// that is accepted is still answered before its first retransmission, and well above what
/// a healthy server shows (a few milliseconds at the knee, docs/benchmarks.md).
pub const DEFAULT_OVERLOAD_QUEUE_MS: u64 = 150;

/// `[server] codecs` when the key is absent: G.711 first, so every peer that offers G.711
/// (all of today's SIP phones and trunks) gets exactly what it got before and bridges
/// between G.711 legs never transcode; G.722 and Opus are accepted when a peer offers
/// nothing else (a wideband-only phone, a WebRTC gateway) instead of being refused.
pub const DEFAULT_CODECS: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// `[cluster]`: heart-beating and dead-node detection between nodes sharing one PostgreSQL
/// (docs/adr/0007-cluster-state.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) heartbeat_s: Option<u64>,
    pub(super) dead_after_s: Option<u64>,
    pub(super) drain_s: Option<u64>,
    pub(super) queues: Option<String>,
}

/// `[server] log_format`: how log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The TLS listener: address and the PEM files of its certificate chain and key.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) sip_listen: Option<Spanned<String>>,
    pub(super) http_listen: Option<Spanned<String>>,
    pub(super) database: Option<String>,
    pub(super) rtp_ports: Option<Spanned<String>>,
    pub(super) media_address: Option<Spanned<String>>,
    pub(super) dialplan_dir: Option<String>,
    pub(super) audio_dir: Option<String>,
    pub(super) spool_dir: Option<String>,
    pub(super) demo_data: Option<bool>,
    pub(super) max_calls: Option<usize>,
    pub(super) realtime_priority: Option<Spanned<i64>>,
    pub(super) call_threads: Option<usize>,
    pub(super) media_timeout_s: Option<u64>,
    pub(super) session_expires_s: Option<u32>,
    pub(super) session_min_se_s: Option<u32>,
    pub(super) lookup_timeout_ms: Option<u64>,
    pub(super) overload_queue_ms: Option<u64>,
    pub(super) default_country_code: Option<String>,
    pub(super) codecs: Option<Spanned<Vec<String>>>,
    pub(super) user_agent: Option<String>,
    pub(super) api_token: Option<String>,
    pub(super) realm: Option<String>,
    pub(super) digest_algorithms: Option<Vec<String>>,
    pub(super) recordings_dir: Option<String>,
    pub(super) tls_listen: Option<Spanned<String>>,
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
    pub(super) node_id: Option<String>,
    pub(super) log_format: Option<LogFormat>,
}

/// `SCHED_RR` 10 (Asterisk's `-p` level) for the **call threads only** (`runtime::calls`):
/// media ticks leave on time on a busy box, while signalling, the store and the API stay at
/// normal priority. With the whole server at real time, 2000 call set-ups/s on 2 cores
/// starved the callers' own user agent until calls timed out by the thousand; with only the
/// call threads there, the same run has 0 failures (p99 4 ms) and 2 000 IVR calls meet every
/// media target beside a PostgreSQL that keeps its load (issue 14 #2, docs/benchmarks.md
/// "Overload and the default priority"). `0` turns it off.
pub const DEFAULT_REALTIME_PRIORITY: u8 = 10;

/// `[cluster]`: how often a node heart-beats and how old a heartbeat may get before a
/// survivor declares the node dead (and finalises its calls, retries its contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterTiming {
    pub heartbeat: std::time::Duration,
    pub dead_after: std::time::Duration,
    /// How long SIGTERM lets calls in progress finish while draining before the node stops
    /// (hanging up what is left). 0: stop at once, as a single node always did.
    pub drain: std::time::Duration,
    /// `[cluster] queues`: whether the nodes share their queues and agents (docs/adr/0011).
    pub queues: QueueScope,
}

/// `[cluster] queues`: who a node's callers can be answered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueScope {
    /// `"node"` (default): the agents whose phones registered with this node (or whose
    /// browser page it serves); each node runs its own ACD, as a single node does.
    #[default]
    Node,
    /// `"cluster"`: every node's agents; one node (the holder of a PostgreSQL advisory
    /// lock) runs the ACD for all, the others talk to it by LISTEN/NOTIFY. PostgreSQL only.
    Cluster,
}

impl QueueScope {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueScope::Node => "node",
            QueueScope::Cluster => "cluster",
        }
    }
}

impl Default for ClusterTiming {
    fn default() -> Self {
        ClusterTiming {
            heartbeat: std::time::Duration::from_secs(5),
            dead_after: std::time::Duration::from_secs(15),
            drain: std::time::Duration::ZERO,
            queues: QueueScope::Node,
        }
    }
}

/// A node name: 1-64 of A-Z a-z 0-9 - _ . (it goes into SQL as a bound value, logs and
/// metrics labels).
pub fn valid_node_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The default node name: the kernel's host name, else `HOSTNAME`, else `switchboard`.
pub fn default_node_id() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_kernel
        .into_iter()
        .chain(std::env::var("HOSTNAME").ok())
        .find(|h| valid_node_id(h))
        .unwrap_or_else(|| "switchboard".into())
}

/// What `[server]` and `[cluster]` give `Config`.
pub(super) struct ServerSection {
    pub sip_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub tls: Option<TlsListen>,
    pub database: String,
    pub rtp_ports: (u16, u16),
    pub media_address: IpAddr,
    pub media_address_explicit: bool,
    pub dialplan_dir: PathBuf,
    pub audio_dir: PathBuf,
    pub spool_dir: PathBuf,
    pub recordings_dir: PathBuf,
    pub demo_data: bool,
    pub max_calls: usize,
    pub realtime_priority: u8,
    pub call_threads: usize,
    pub media_timeout_s: u64,
    pub session_expires_s: u32,
    pub session_min_se_s: u32,
    pub lookup_timeout_ms: u64,
    pub overload_queue_ms: u64,
    pub default_country_code: String,
    pub codecs: Vec<Codec>,
    pub user_agent: String,
    pub api_token: Option<String>,
    pub realm: String,
    pub digest_algorithms: Vec<crate::sip::auth::Algorithm>,
    pub log_format: LogFormat,
    pub node_id: String,
    pub cluster: ClusterTiming,
}

/// Check and default `[server]` and `[cluster]`.
pub(super) fn parse(
    raw_server: Option<Spanned<RawServer>>,
    raw_cluster: Option<&Spanned<RawCluster>>,
    s: &Source<'_>,
) -> Result<ServerSection, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let server_at = raw_server.as_ref().map_or(0, |s| s.span().start);
    let server = raw_server.map(Spanned::into_inner).unwrap_or_default();
    let addr = |v: &Option<Spanned<String>>,
                default: &str,
                key: &str|
     -> Result<SocketAddr, ConfigError> {
        match v {
            Some(s) => s.get_ref().parse().map_err(|_| {
                err(
                    s.span().start,
                    format!("{key} = '{}' is not ADDR:PORT", s.get_ref()),
                )
            }),
            None => default
                .parse()
                .map_err(|_| err(0, format!("bad default {key}"))),
        }
    };
    let sip_listen = addr(&server.sip_listen, "127.0.0.1:5060", "sip_listen")?;
    let http_listen = addr(&server.http_listen, "127.0.0.1:8080", "http_listen")?;
    let rtp_ports = match &server.rtp_ports {
        Some(s) => PortRange::parse(s.get_ref()).ok_or_else(|| {
            err(
                s.span().start,
                format!(
                    "rtp_ports = '{}' must be LO-HI with 1024 <= LO < HI",
                    s.get_ref()
                ),
            )
        })?,
        None => (20000, 29999),
    };
    let realtime_priority = match &server.realtime_priority {
        Some(p) => u8::try_from(*p.get_ref())
            .ok()
            .filter(|v| *v <= crate::runtime::priority::MAX_PRIORITY)
            .ok_or_else(|| {
                err(
                    p.span().start,
                    format!(
                        "realtime_priority = {} must be 0 (off) to {}",
                        p.get_ref(),
                        crate::runtime::priority::MAX_PRIORITY
                    ),
                )
            })?,
        None => DEFAULT_REALTIME_PRIORITY,
    };
    let media_address = match &server.media_address {
        Some(s) => s.get_ref().parse().map_err(|_| {
            err(
                s.span().start,
                format!("media_address = '{}' is not an IP address", s.get_ref()),
            )
        })?,
        None => sip_listen.ip(),
    };
    let codecs = match &server.codecs {
        Some(list) => {
            let mut v = Vec::new();
            for name in list.get_ref() {
                let c = Codec::parse_name(name).ok_or_else(|| {
                    err(
                        list.span().start,
                        format!("unknown codec '{name}' (PCMU, PCMA, G722, opus)"),
                    )
                })?;
                // A repeated name keeps its first (most preferred) place.
                if !v.contains(&c) {
                    v.push(c);
                }
            }
            if v.is_empty() {
                return Err(err(list.span().start, "codecs must not be empty".into()));
            }
            v
        }
        None => DEFAULT_CODECS.to_vec(),
    };
    let digest_algorithms = match &server.digest_algorithms {
        None => vec![
            crate::sip::auth::Algorithm::Md5,
            crate::sip::auth::Algorithm::Sha256,
        ],
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                let alg = crate::sip::auth::Algorithm::parse(a).map_err(|_| {
                    err(
                        server_at,
                        format!("digest_algorithms: '{a}' must be MD5 or SHA-256"),
                    )
                })?;
                if !out.contains(&alg) {
                    out.push(alg);
                }
            }
            if out.is_empty() {
                return Err(err(server_at, "digest_algorithms must not be empty".into()));
            }
            out
        }
    };
    let tls = match (&server.tls_listen, &server.tls_cert, &server.tls_key) {
        (None, None, None) => None,
        (Some(_), Some(cert), Some(key)) => Some(TlsListen {
            listen: addr(&server.tls_listen, "", "tls_listen")?,
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        }),
        (Some(l), _, _) => {
            return Err(err(
                l.span().start,
                "tls_listen needs both tls_cert and tls_key (PEM files)".into(),
            ))
        }
        (None, _, _) => {
            return Err(err(
                server_at,
                "tls_cert/tls_key are set but tls_listen is not".into(),
            ))
        }
    };
    let media_address_explicit = server.media_address.is_some();
    let session_min_se_s = server.session_min_se_s.unwrap_or(90);
    let session_expires_s = server.session_expires_s.unwrap_or(1800);
    if session_min_se_s == 0 || session_expires_s < session_min_se_s {
        return Err(err(
                server_at,
                format!(
                    "session_min_se_s must be at least 1 and session_expires_s ({session_expires_s}) at least session_min_se_s ({session_min_se_s})"
                ),
            ));
    }
    let node_id = match server.node_id {
        Some(n) if !valid_node_id(&n) => {
            return Err(err(
                0,
                format!("[server] node_id '{n}' must be 1-64 of A-Z a-z 0-9 - _ ."),
            ))
        }
        Some(n) => n,
        None => default_node_id(),
    };
    let cluster = match raw_cluster {
        None => ClusterTiming::default(),
        Some(sp) => {
            let r = sp.get_ref();
            let d = ClusterTiming::default();
            let heartbeat = r
                .heartbeat_s
                .map_or(d.heartbeat, std::time::Duration::from_secs);
            let dead_after = r
                .dead_after_s
                .map_or(d.dead_after, std::time::Duration::from_secs);
            if heartbeat.is_zero() || heartbeat > std::time::Duration::from_secs(300) {
                return Err(err(
                    sp.span().start,
                    "[cluster] heartbeat_s must be 1..=300".into(),
                ));
            }
            // Two missed heartbeats at least, so one slow write does not kill a node.
            if dead_after < heartbeat * 2 {
                return Err(err(
                    sp.span().start,
                    "[cluster] dead_after_s must be at least twice heartbeat_s".into(),
                ));
            }
            let drain = r.drain_s.map_or(d.drain, std::time::Duration::from_secs);
            if drain > std::time::Duration::from_secs(86_400) {
                return Err(err(
                    sp.span().start,
                    "[cluster] drain_s must be at most 86400".into(),
                ));
            }
            let queues = match r.queues.as_deref() {
                None | Some("node") => QueueScope::Node,
                Some("cluster") => QueueScope::Cluster,
                Some(other) => {
                    return Err(err(
                        sp.span().start,
                        format!("[cluster] queues must be \"node\" or \"cluster\", not {other:?}"),
                    ))
                }
            };
            ClusterTiming {
                heartbeat,
                dead_after,
                drain,
                queues,
            }
        }
    };
    Ok(ServerSection {
        sip_listen,
        http_listen,
        tls,
        database: server
            .database
            .unwrap_or_else(|| "sqlite://data/switchboard.db".into()),
        rtp_ports,
        media_address,
        media_address_explicit,
        dialplan_dir: PathBuf::from(server.dialplan_dir.unwrap_or_else(|| "dialplans".into())),
        audio_dir: PathBuf::from(server.audio_dir.unwrap_or_else(|| "audio".into())),
        recordings_dir: PathBuf::from(
            server
                .recordings_dir
                .unwrap_or_else(|| "data/recordings".into()),
        ),
        spool_dir: PathBuf::from(server.spool_dir.unwrap_or_else(|| "data".into())),
        demo_data: server.demo_data.unwrap_or(true),
        max_calls: server.max_calls.unwrap_or(4000),
        realtime_priority,
        call_threads: server.call_threads.unwrap_or(0),
        media_timeout_s: server.media_timeout_s.unwrap_or(30),
        session_expires_s,
        session_min_se_s,
        lookup_timeout_ms: server.lookup_timeout_ms.unwrap_or(1000).clamp(50, 10_000),
        overload_queue_ms: server
            .overload_queue_ms
            .unwrap_or(DEFAULT_OVERLOAD_QUEUE_MS),
        default_country_code: server.default_country_code.unwrap_or_else(|| "1".into()),
        codecs,
        user_agent: server.user_agent.unwrap_or_else(|| "switchboard".into()),
        api_token: server.api_token,
        realm: server.realm.unwrap_or_else(|| "switchboard".into()),
        digest_algorithms,
        log_format: server.log_format.unwrap_or_default(),
        node_id,
        cluster,
    })
}
