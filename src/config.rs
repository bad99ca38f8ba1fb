//! Configuration: the embedded default (`config/default.toml`), an optional `--config FILE`
//! that replaces it, and command-line overrides. Errors name the file, line and reason.
//! Every key is documented in docs/configuration.md.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::media::codec::Codec;
// Defined in the leaf module `net` so the sip layer can use them without depending on
// config; re-exported here so `config::Cidr` and `config::TrunkTransport` stay as they were.
pub use crate::net::{Cidr, TrunkTransport};
use crate::runtime::ports::PortRange;

/// `[server] overload_queue_ms` when not set: well under SIP's T1 (500 ms), so an INVITE
/// that is accepted is still answered before its first retransmission, and well above what
/// a healthy server shows (a few milliseconds at the knee, docs/benchmarks.md).
pub const DEFAULT_OVERLOAD_QUEUE_MS: u64 = 150;

pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
const DEFAULT_CONFIG_NAME: &str = "<embedded config/default.toml>";
/// `[server] codecs` when the key is absent: G.711 first, so every peer that offers G.711
/// (all of today's SIP phones and trunks) gets exactly what it got before and bridges
/// between G.711 legs never transcode; G.722 and Opus are accepted when a peer offers
/// nothing else (a wideband-only phone, a WebRTC gateway) instead of being refused.
pub const DEFAULT_CODECS: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: Option<Spanned<RawServer>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default, rename = "queue")]
    queues: Vec<Spanned<RawQueue>>,
    #[serde(default, rename = "trunk")]
    trunks: Vec<Spanned<RawTrunk>>,
    #[serde(default)]
    acd: Option<RawAcd>,
    #[serde(default)]
    security: Option<Spanned<RawSecurity>>,
    #[serde(default)]
    sms: Option<Spanned<RawSms>>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    webhooks: Option<Spanned<RawWebhooks>>,
    #[serde(default)]
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    http: Option<Spanned<RawHttp>>,
    #[serde(default)]
    language: Option<Spanned<RawLanguage>>,
    #[serde(default)]
    service: Option<Spanned<RawService>>,
    #[serde(default)]
    webrtc: Option<Spanned<RawWebRtc>>,
    #[serde(default, rename = "operator")]
    operators: Vec<Spanned<RawOperator>>,
}

/// `[webrtc]`: browser agents' media legs (docs/adr/0006-webrtc-str0m.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebRtc {
    /// The IP the browser is told to send media to (our ICE host candidate): the public
    /// address behind NAT. Default: `[server] media_address` (127.0.0.1 when unspecified).
    public_address: Option<String>,
    /// STUN/TURN servers handed to the page's `RTCPeerConnection` (the server itself is
    /// ICE-lite and needs none).
    #[serde(default)]
    ice_servers: Vec<IceServer>,
}

/// One `RTCIceServer` for the page, as the browser API spells it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `[service]`: the service's local time and business hours (the dialplan `hours` step);
/// holidays are `holidays.toml` in the dialplan folder.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    /// IANA zone, e.g. "Asia/Shanghai" (default UTC).
    timezone: Option<String>,
    /// Day (`mon`..`sun`) -> "HH:MM-HH:MM[,HH:MM-HH:MM]"; days not listed are closed.
    hours: Option<std::collections::BTreeMap<String, String>>,
}

/// `[language]`: how a call's language is chosen before the first word when the caller's
/// ticket does not say (src/ivr/language.rs).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLanguage {
    /// E.164 prefix (`"+86"`) -> language (`"zh"`); replaces the built-in table.
    prefixes: Option<std::collections::BTreeMap<String, String>>,
}

/// `[cluster]`: heart-beating and dead-node detection between nodes sharing one PostgreSQL
/// (docs/adr/0007-cluster-state.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    heartbeat_s: Option<u64>,
    dead_after_s: Option<u64>,
    drain_s: Option<u64>,
}

/// `[http]`: the HTTP port's own settings (the port itself is `[server] http_listen`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

/// `[api]`: who may read the status endpoints (`/api/status`, `/api/agents`,
/// `/api/agents/{name}`, `/api/queues`). The admin token (`[server] api_token`) always reads.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    read_token: Option<String>,
    anonymous_read: Option<bool>,
}

/// `[metrics]`: who may scrape `GET /metrics`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// Scrapes without a token (off by default: queue and campaign names are business data).
    public: Option<bool>,
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

/// `[webhooks]`: how campaigns' fallback webhooks (`webhook_url`) are sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    ca_file: Option<String>,
    timeout_s: Option<u64>,
}

/// `[security]`: the router's per-source guard (src/sip/guard.rs).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    trusted_cidrs: Option<Vec<String>>,
    scanner_user_agents: Option<Vec<String>>,
    request_limit: Option<u32>,
    window_s: Option<u64>,
    ban_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    url: String,
    from: String,
    token: Option<String>,
    text: Option<String>,
    max_tries: Option<u32>,
    retry_s: Option<u64>,
    timeout_s: Option<u64>,
    ca_file: Option<String>,
    /// HMAC key of `POST /api/sms/inbound` (replies to the notice); unset: replies off.
    inbound_secret: Option<String>,
    replay_window_s: Option<u64>,
    help_text: Option<String>,
    /// `[sms.replies]`: choice -> words that choose it.
    replies: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// The text a campaign's SMS fallback sends when neither the campaign's `sms_text` nor
/// `[sms] text` is given.
pub const DEFAULT_SMS_TEXT: &str = "Hello ${name}, your order ${order_id} is delayed; the new delivery date is ${new_date}. Call us to keep waiting or get a refund.";

/// The SMS gateway used by campaigns' SMS fallback (`[sms]`): a generic HTTP endpoint that
/// takes one JSON POST per text.
#[derive(Debug, Clone, PartialEq)]
pub struct SmsGateway {
    /// `https://HOST[:PORT]/PATH` (or `http://`) of the gateway.
    pub url: String,
    /// Sender number or name the gateway puts on the text.
    pub from: String,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Template (`${name}`, `${order_id}`, `${new_date}`, `${delay_days}`, `${phone}`,
    /// `${campaign}`, `${ticket.COLUMN}`).
    pub text: String,
    /// Requests per text before it is given up as failed (>= 1).
    pub max_tries: u32,
    /// Back-off before the second try; doubles per try, at most an hour.
    pub retry_s: u64,
    /// Bound on connecting to the gateway (TCP and TLS), and again on the exchange.
    pub timeout_s: u64,
    /// Extra trust anchors (PEM) for an `https://` gateway, beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Replies to the notice (`POST /api/sms/inbound`): set by `[sms] inbound_secret`.
    pub inbound: Option<crate::dialer::sms_reply::InboundConfig>,
}

/// How campaigns' fallback webhooks are sent (`[webhooks]`; defaults without it).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhooks {
    /// Extra trust anchors (PEM) for `https://` webhooks, beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Bound on connecting (TCP and TLS), and again on the exchange.
    pub timeout_s: u64,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks {
            ca_file: None,
            timeout_s: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    name: String,
    address: String,
    transport: Option<String>,
    inbound_cidrs: Option<Vec<String>>,
    max_channels: Option<u32>,
    max_cps: Option<f64>,
    username: Option<String>,
    password: Option<String>,
    register: Option<bool>,
    caller_id: Option<String>,
    tls_ca: Option<String>,
    register_expires: Option<u32>,
    auth_username: Option<String>,
    from_user: Option<String>,
    contact_user: Option<String>,
    failover: Option<String>,
    pai: Option<bool>,
}

/// The TLS listener: address and the PEM files of its certificate chain and key.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A SIP trunk to a carrier (outbound calls; inbound calls recognised by source address).
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    pub address: SocketAddr,
    pub transport: TrunkTransport,
    pub inbound_cidrs: Vec<Cidr>,
    pub max_channels: u32,
    pub max_cps: f64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub register: bool,
    pub caller_id: Option<String>,
    /// HOST of `address` as written: the name a TLS trunk's certificate must carry.
    pub host: String,
    /// PEM file of the CAs (or the self-signed certificate) a TLS trunk is verified
    /// against; None: the Mozilla roots built in.
    pub tls_ca: Option<PathBuf>,
    /// Expires we ask for in REGISTER (the registrar may grant less, or ask for more).
    pub register_expires: u32,
    /// Digest user name when it differs from the account (`username`) in the AOR.
    pub auth_username: Option<String>,
    /// From user of every INVITE through this trunk instead of the call's caller ID (some
    /// carriers want the account there; the caller ID then goes in P-Asserted-Identity).
    pub from_user: Option<String>,
    /// User part of the Contact we register (default: `username`).
    pub contact_user: Option<String>,
    /// Trunk to retry on when this one answers 503/408, does not answer, or is full.
    pub failover: Option<String>,
    /// Send `P-Asserted-Identity` with the caller ID (RFC 3325) on INVITEs.
    pub pai: bool,
}

/// What `sip::tls::TrunkConnections` needs of a trunk: the sip layer does not see `config`.
impl crate::sip::tls::AsStreamPeer for Trunk {
    fn stream_peer(&self) -> crate::sip::tls::StreamPeer<'_> {
        crate::sip::tls::StreamPeer {
            name: &self.name,
            address: self.address,
            transport: self.transport,
            host: &self.host,
            tls_ca: self.tls_ca.as_deref(),
        }
    }
}

impl Trunk {
    /// A plain peer reached at `address` (an agent's phone): no limits worth naming, no
    /// credentials, no registration, no failover.
    pub fn peer(name: String, address: SocketAddr) -> Trunk {
        Trunk {
            name,
            address,
            transport: TrunkTransport::Udp,
            inbound_cidrs: Vec::new(),
            max_channels: 1,
            max_cps: 1.0,
            username: None,
            password: None,
            register: false,
            caller_id: None,
            host: address.ip().to_string(),
            tls_ca: None,
            register_expires: 3600,
            auth_username: None,
            from_user: None,
            contact_user: None,
            failover: None,
            pai: false,
        }
    }

    /// The digest user name: `auth_username`, else `username`.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_username.as_deref().or(self.username.as_deref())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    sip_listen: Option<Spanned<String>>,
    http_listen: Option<Spanned<String>>,
    database: Option<String>,
    rtp_ports: Option<Spanned<String>>,
    media_address: Option<Spanned<String>>,
    dialplan_dir: Option<String>,
    audio_dir: Option<String>,
    spool_dir: Option<String>,
    demo_data: Option<bool>,
    max_calls: Option<usize>,
    realtime_priority: Option<Spanned<i64>>,
    call_threads: Option<usize>,
    media_timeout_s: Option<u64>,
    session_expires_s: Option<u32>,
    session_min_se_s: Option<u32>,
    lookup_timeout_ms: Option<u64>,
    overload_queue_ms: Option<u64>,
    default_country_code: Option<String>,
    codecs: Option<Spanned<Vec<String>>>,
    user_agent: Option<String>,
    api_token: Option<String>,
    realm: Option<String>,
    digest_algorithms: Option<Vec<String>>,
    recordings_dir: Option<String>,
    tls_listen: Option<Spanned<String>>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    node_id: Option<String>,
    log_format: Option<LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: String,
    dialplan: Spanned<String>,
    ring_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: String,
    strategy: Option<String>,
    required_skills: Option<std::collections::HashMap<String, i64>>,
    ring_timeout_s: Option<u64>,
    wrapup_s: Option<u64>,
    max_misses: Option<u32>,
    max_wait_s: Option<u64>,
    max_len: Option<usize>,
    join_empty: Option<bool>,
    leave_when_empty: Option<bool>,
    segment_priority: Option<std::collections::HashMap<String, i32>>,
    service_level_s: Option<u64>,
    language_skill: Option<bool>,
    music_on_hold: Option<String>,
    callback_after_s: Option<u64>,
    callback_trunk: Option<String>,
    retry_s: Option<u64>,
    announce_every_s: Option<u64>,
    record: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAcd {
    auto_login: Option<bool>,
    pause_reasons: Option<Vec<String>>,
    dispositions: Option<Vec<String>>,
    session_ttl_s: Option<u64>,
}

/// `[acd] pause_reasons` when not set: what an agent may give as the reason of a pause.
pub const DEFAULT_PAUSE_REASONS: [&str; 4] = ["break", "lunch", "training", "after-call"];
/// `[acd] dispositions` when not set: the outcomes an agent picks from after a call.
pub const DEFAULT_DISPOSITIONS: [&str; 5] = [
    "resolved",
    "refund-issued",
    "callback-promised",
    "escalated",
    "no-resolution",
];
/// `[acd] session_ttl_s` when not set: a browser agent's session lasts a shift (8 h) and
/// no longer; every authorised request slides it.
pub const DEFAULT_SESSION_TTL_S: u64 = 8 * 3600;

/// HTTPS on the HTTP port (`[http] tls_cert`, `tls_key`): PEM files, read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A queue as configured: the ACD's rules plus what the call side needs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub acd: crate::acd::QueueConfig,
    /// The caller's language adds a `lang:<language>` skill requirement.
    pub language_skill: bool,
    /// Prompt played while waiting (a file under the audio folder, without `.wav`).
    pub music_on_hold: String,
    /// After this wait the caller is offered a callback (press 1); None: never.
    pub callback_after_s: Option<u64>,
    /// Trunk for callbacks (default: the first trunk).
    pub callback_trunk: Option<String>,
    /// Every this often a waiting caller hears its position and estimated wait; None: never.
    pub announce_every_s: Option<u64>,
    /// Record bridged calls (stereo WAV in `[server] recordings_dir`).
    pub record: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub to: String,
    pub dialplan: String,
    pub ring_ms: u64,
    /// Source line, to report a route whose dialplan is missing.
    pub line: usize,
}

/// `SCHED_RR` 10 (Asterisk's `-p` level) for the **call threads only** (`runtime::calls`):
/// media ticks leave on time on a busy box, while signalling, the store and the API stay at
/// normal priority. With the whole server at real time, 2000 call set-ups/s on 2 cores
/// starved the callers' own user agent until calls timed out by the thousand; with only the
/// call threads there, the same run has 0 failures (p99 4 ms) and 2 000 IVR calls meet every
/// media target beside a PostgreSQL that keeps its load (issue 14 #2, docs/benchmarks.md
/// "Overload and the default priority"). `0` turns it off.
pub const DEFAULT_REALTIME_PRIORITY: u8 = 10;

#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub sip_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// SIP over TLS (`[server] tls_listen`); None: no TLS listener.
    pub tls: Option<TlsListen>,
    /// HTTPS (and so WSS) on `http_listen` (`[http] tls_cert`, `tls_key`); None: plain HTTP.
    pub http_tls: Option<HttpTls>,
    /// `[webrtc] public_address`: the IP browsers send media to (None: the media address).
    pub webrtc_public_address: Option<IpAddr>,
    /// `[webrtc] ice_servers`, for the page.
    pub webrtc_ice_servers: Vec<IceServer>,
    pub database: String,
    pub rtp_ports: (u16, u16),
    pub media_address: IpAddr,
    /// Whether `media_address` was set in the file (else it follows `sip_listen`).
    pub media_address_explicit: bool,
    pub dialplan_dir: PathBuf,
    pub audio_dir: PathBuf,
    pub spool_dir: PathBuf,
    /// Where queue recordings go (`<call id>.wav`).
    pub recordings_dir: PathBuf,
    pub demo_data: bool,
    pub max_calls: usize,
    /// `SCHED_RR` priority for the server's threads (1-99); 0: normal time-sharing
    /// (`[server] realtime_priority`, runtime::priority).
    pub realtime_priority: u8,
    /// Threads of the call runtime (`[server] call_threads`); 0: one per core. Fewer
    /// threads than cores bound what real-time call work can take from the other processes.
    pub call_threads: usize,
    pub media_timeout_s: u64,
    /// RFC 4028 session interval we prefer when a caller asks for a session timer.
    pub session_expires_s: u32,
    /// Smallest session interval we accept (422 below it); the RFC floor is 90 s, lower
    /// values are allowed for tests.
    pub session_min_se_s: u32,
    /// The most a ticket lookup may hold a call up (`[server] lookup_timeout_ms`); beyond
    /// it the lookup counts as unavailable.
    pub lookup_timeout_ms: u64,
    /// Overload control (`[server] overload_queue_ms`): a new INVITE that waited longer than
    /// this between the kernel and the router is refused with 503 + Retry-After before any
    /// call state exists (0: off).
    pub overload_queue_ms: u64,
    pub default_country_code: String,
    pub codecs: Vec<Codec>,
    pub user_agent: String,
    pub api_token: Option<String>,
    /// Bearer token that may only read (`[api] read_token`, SWITCHBOARD_API_READ_TOKEN).
    pub api_read_token: Option<String>,
    /// Reads without any token (`[api] anonymous_read`): an explicit opt-in, off by default,
    /// since agent names and states are not for anyone who reaches the port.
    pub api_anonymous_read: bool,
    /// `GET /metrics` without a token (`[metrics] public`, off by default).
    pub metrics_public: bool,
    /// `[[operator]]`: console/wallboard logins from the file (see [`ConfigOperator`]).
    pub operators: Vec<ConfigOperator>,
    /// `[server] log_format` (`--log-format` overrides it).
    pub log_format: LogFormat,
    pub routes: Vec<Route>,
    pub queues: Vec<String>,
    pub queue_settings: Vec<QueueSettings>,
    /// A registered agent phone counts as logged in (`[acd] auto_login`).
    pub acd_auto_login: bool,
    /// Reasons an agent may give for a pause in the workspace (`[acd] pause_reasons`).
    pub pause_reasons: Vec<String>,
    /// Outcomes an agent picks from after a call (`[acd] dispositions`).
    pub dispositions: Vec<String>,
    /// Idle lifetime of a browser agent's session (`[acd] session_ttl_s`).
    pub agent_session_ttl: std::time::Duration,
    pub trunks: Vec<Trunk>,
    /// Digest realm for agent accounts (HA1 depends on it).
    pub realm: String,
    /// Digest challenges the registrar offers, in order (`[server] digest_algorithms`).
    pub digest_algorithms: Vec<crate::sip::auth::Algorithm>,
    /// `[security]`, with every trunk's `inbound_cidrs` added to the trusted networks.
    pub guard: crate::sip::guard::GuardConfig,
    /// The SMS gateway for campaigns' SMS fallback (`[sms]`); None: no SMS fallback.
    pub sms: Option<SmsGateway>,
    /// Campaigns' fallback webhooks (`[webhooks]`).
    pub webhooks: Webhooks,
    /// This node's name (`[server] node_id`, `--node-id`; default: the host name): written on
    /// its call records, its `nodes` row and its campaign leases.
    pub node_id: String,
    /// `[cluster]` timing.
    pub cluster: ClusterTiming,
    /// `[language] prefixes`: the calling number's prefix -> the call's language when no
    /// ticket says.
    pub language_prefixes: crate::ivr::language::PrefixTable,
    /// `[service]` business hours (holidays empty; the dialplan set carries them); None: no
    /// hours configured, the `hours` step always says open.
    pub service_hours: Option<crate::ivr::hours::ServiceHours>,
}

/// `[cluster]`: how often a node heart-beats and how old a heartbeat may get before a
/// survivor declares the node dead (and finalises its calls, retries its contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterTiming {
    pub heartbeat: std::time::Duration,
    pub dead_after: std::time::Duration,
    /// How long SIGTERM lets calls in progress finish while draining before the node stops
    /// (hanging up what is left). 0: stop at once, as a single node always did.
    pub drain: std::time::Duration,
}

impl Default for ClusterTiming {
    fn default() -> Self {
        ClusterTiming {
            heartbeat: std::time::Duration::from_secs(5),
            dead_after: std::time::Duration::from_secs(15),
            drain: std::time::Duration::ZERO,
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

fn security_config(
    raw: Option<Spanned<RawSecurity>>,
    trunks: &[Trunk],
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<crate::sip::guard::GuardConfig, ConfigError> {
    use std::time::Duration;
    let mut g = crate::sip::guard::GuardConfig::default();
    if let Some(raw) = raw {
        let at = raw.span().start;
        let raw = raw.into_inner();
        if let Some(list) = raw.trusted_cidrs {
            g.trusted = list
                .iter()
                .map(|c| {
                    Cidr::parse(c).ok_or_else(|| {
                        err(at, format!("[security] trusted_cidrs: '{c}' is not a CIDR"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(list) = raw.scanner_user_agents {
            g.scanners = list.iter().map(|s| s.to_ascii_lowercase()).collect();
        }
        if let Some(n) = raw.request_limit {
            if n == 0 {
                return Err(err(
                    at,
                    "[security] request_limit must be at least 1".into(),
                ));
            }
            g.request_limit = n;
        }
        if let Some(s) = raw.window_s {
            if s == 0 {
                return Err(err(at, "[security] window_s must be at least 1".into()));
            }
            g.window = Duration::from_secs(s);
        }
        if let Some(s) = raw.ban_s {
            g.ban = Duration::from_secs(s);
        }
    }
    for t in trunks {
        g.trusted.extend(t.inbound_cidrs.iter().copied());
    }
    Ok(g)
}

/// Every `failover` names another trunk and following them never comes back to where it
/// started (a cycle would retry a refused call forever). Err: index of the trunk at fault.
fn check_failover(trunks: &[Trunk]) -> Result<(), (usize, String)> {
    for (i, t) in trunks.iter().enumerate() {
        let Some(next) = &t.failover else { continue };
        if !trunks.iter().any(|x| &x.name == next) {
            return Err((
                i,
                format!("trunk '{}': failover '{next}' is not a [[trunk]]", t.name),
            ));
        }
        let mut path = vec![t.name.as_str()];
        let mut cur = Some(next.as_str());
        while let Some(n) = cur {
            if path.contains(&n) {
                path.push(n);
                return Err((
                    i,
                    format!("trunk '{}': failover cycle {}", t.name, path.join(" -> ")),
                ));
            }
            path.push(n);
            cur = trunks
                .iter()
                .find(|x| x.name == n)
                .and_then(|x| x.failover.as_deref());
        }
    }
    Ok(())
}

/// HOST of `HOST:PORT` (brackets of an IPv6 literal removed).
fn split_host(address: &str) -> String {
    let host = match address.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG_NAME, DEFAULT_CONFIG)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&file, &src)
    }

    pub fn parse(file: &str, src: &str) -> Result<Config, ConfigError> {
        let err = |offset: usize, reason: String| ConfigError {
            file: file.to_string(),
            line: line_of(src, offset),
            reason,
        };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(src, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                reason: e.message().to_string(),
            }
        })?;
        let server_at = raw.server.as_ref().map_or(0, |s| s.span().start);
        let server = raw.server.map(Spanned::into_inner).unwrap_or_default();
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
        let mut routes = Vec::new();
        for r in &raw.routes {
            let line = line_of(src, r.span().start);
            let r = r.get_ref();
            if r.to.is_empty() {
                return Err(ConfigError {
                    file: file.to_string(),
                    line,
                    reason: "route 'to' must not be empty".into(),
                });
            }
            routes.push(Route {
                to: r.to.clone(),
                dialplan: r.dialplan.get_ref().clone(),
                ring_ms: r.ring_ms.unwrap_or(1000),
                line,
            });
        }
        let mut trunks = Vec::new();
        let mut trunk_at = Vec::new();
        for t in &raw.trunks {
            let at = t.span().start;
            let t = t.get_ref();
            let address = std::net::ToSocketAddrs::to_socket_addrs(t.address.as_str())
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    err(
                        at,
                        format!(
                            "trunk '{}': address '{}' is not HOST:PORT",
                            t.name, t.address
                        ),
                    )
                })?;
            let given = t.transport.as_deref().unwrap_or("udp");
            let Some(transport) = TrunkTransport::parse(given) else {
                return Err(err(
                    at,
                    format!(
                        "trunk '{}': transport '{}' must be udp, tcp or tls",
                        t.name,
                        given.to_ascii_lowercase()
                    ),
                ));
            };
            if t.tls_ca.is_some() && transport != TrunkTransport::Tls {
                return Err(err(
                    at,
                    format!(
                        "trunk '{}': tls_ca needs transport = \"tls\" (transport is '{transport}')",
                        t.name
                    ),
                ));
            }
            let host = split_host(&t.address);
            let mut inbound_cidrs = Vec::new();
            for c in t.inbound_cidrs.as_deref().unwrap_or(&[]) {
                inbound_cidrs.push(
                    Cidr::parse(c)
                        .ok_or_else(|| err(at, format!("trunk '{}': bad CIDR '{c}'", t.name)))?,
                );
            }
            let max_cps = t.max_cps.unwrap_or(10.0);
            if !(max_cps > 0.0 && max_cps <= 10_000.0) {
                return Err(err(at, format!("trunk '{}': max_cps must be > 0", t.name)));
            }
            if trunks.iter().any(|x: &Trunk| x.name == t.name) {
                return Err(err(at, format!("trunk '{}' is defined twice", t.name)));
            }
            let register = t.register.unwrap_or(false);
            if register && (t.username.is_none() || t.password.is_none()) {
                return Err(err(
                    at,
                    format!(
                        "trunk '{}': register = true needs username and password",
                        t.name
                    ),
                ));
            }
            let register_expires = t.register_expires.unwrap_or(3600);
            if !(10..=86_400).contains(&register_expires) {
                return Err(err(
                    at,
                    format!(
                        "trunk '{}': register_expires must be 10..=86400 seconds",
                        t.name
                    ),
                ));
            }
            trunk_at.push(at);
            trunks.push(Trunk {
                name: t.name.clone(),
                address,
                transport,
                inbound_cidrs,
                max_channels: t.max_channels.unwrap_or(30).max(1),
                max_cps,
                username: t.username.clone(),
                password: t.password.clone(),
                register,
                caller_id: t.caller_id.clone(),
                host,
                tls_ca: t.tls_ca.as_ref().map(PathBuf::from),
                register_expires,
                auth_username: t.auth_username.clone(),
                from_user: t.from_user.clone(),
                contact_user: t.contact_user.clone(),
                failover: t.failover.clone(),
                pai: t.pai.unwrap_or(false),
            });
        }
        check_failover(&trunks).map_err(|(i, reason)| err(trunk_at[i], reason))?;
        let mut queue_settings: Vec<QueueSettings> = Vec::new();
        for q in &raw.queues {
            let at = q.span().start;
            let q = q.get_ref();
            if queue_settings.iter().any(|x| x.acd.name == q.name) {
                return Err(err(at, format!("queue '{}' is defined twice", q.name)));
            }
            let mut c = crate::acd::QueueConfig::new(&q.name);
            if let Some(st) = &q.strategy {
                c.strategy = crate::acd::Strategy::parse(st).ok_or_else(|| {
                    err(
                        at,
                        format!(
                            "queue '{}': strategy '{st}' must be ring-all, longest-idle, round-robin, fewest-calls, random or skills",
                            q.name
                        ),
                    )
                })?;
            }
            let mut skills: Vec<(String, i64)> = q
                .required_skills
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            skills.sort();
            c.required_skills = skills;
            let secs = |v: Option<u64>, d: u64| std::time::Duration::from_secs(v.unwrap_or(d));
            c.ring_timeout = secs(q.ring_timeout_s, 15);
            if c.ring_timeout.is_zero() {
                return Err(err(
                    at,
                    format!("queue '{}': ring_timeout_s must be > 0", q.name),
                ));
            }
            c.wrapup = secs(q.wrapup_s, 5);
            c.max_misses = q.max_misses.unwrap_or(3);
            c.max_wait = q
                .max_wait_s
                .filter(|s| *s > 0)
                .map(std::time::Duration::from_secs);
            c.max_len = q.max_len.filter(|n| *n > 0);
            c.join_empty = q.join_empty.unwrap_or(true);
            c.leave_when_empty = q.leave_when_empty.unwrap_or(false);
            c.segment_priority = q.segment_priority.clone().unwrap_or_default();
            c.service_level = secs(q.service_level_s, 30);
            c.retry = secs(q.retry_s, 2).max(std::time::Duration::from_millis(100));
            if let Some(t) = &q.callback_trunk {
                if !trunks.iter().any(|x: &Trunk| &x.name == t) {
                    return Err(err(
                        at,
                        format!(
                            "queue '{}': callback_trunk '{t}' is not a [[trunk]]",
                            q.name
                        ),
                    ));
                }
            }
            queue_settings.push(QueueSettings {
                acd: c,
                language_skill: q.language_skill.unwrap_or(false),
                music_on_hold: q.music_on_hold.clone().unwrap_or_else(|| "moh".into()),
                callback_after_s: q.callback_after_s.filter(|s| *s > 0),
                callback_trunk: q.callback_trunk.clone(),
                announce_every_s: q.announce_every_s.filter(|s| *s > 0),
                record: q.record.unwrap_or(false),
            });
        }
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
        let guard = security_config(raw.security, &trunks, &err)?;
        let operators = operators_config(&raw.operators, &err)?;
        let sms = match &raw.sms {
            None => None,
            Some(sp) => {
                let at = sp.span().start;
                let r = sp.get_ref();
                if let Err(e) = crate::http_client::Url::parse(&r.url) {
                    return Err(err(
                        at,
                        format!("[sms] url must be an https:// or http:// URL: {e}"),
                    ));
                }
                if r.from.trim().is_empty() {
                    return Err(err(at, "[sms] from must not be empty".into()));
                }
                let text = r.text.clone().unwrap_or_else(|| DEFAULT_SMS_TEXT.into());
                if text.trim().is_empty() || !crate::ivr::expr::template_is_valid(&text) {
                    return Err(err(
                        at,
                        "[sms] text must be a non-empty template (${name} ...)".into(),
                    ));
                }
                let max_tries = r.max_tries.unwrap_or(5);
                if !(1..=20).contains(&max_tries) {
                    return Err(err(at, "[sms] max_tries must be 1..=20".into()));
                }
                let timeout_s = r.timeout_s.unwrap_or(10);
                if !(1..=120).contains(&timeout_s) {
                    return Err(err(at, "[sms] timeout_s must be 1..=120".into()));
                }
                let inbound = match r.inbound_secret.as_deref() {
                    None => None,
                    Some(secret) if secret.len() < 16 => {
                        return Err(err(
                            at,
                            "[sms] inbound_secret must be at least 16 characters".into(),
                        ));
                    }
                    Some(secret) => {
                        let replay_window_s = r.replay_window_s.unwrap_or(300);
                        if !(10..=3600).contains(&replay_window_s) {
                            return Err(err(at, "[sms] replay_window_s must be 10..=3600".into()));
                        }
                        let help_text = r
                            .help_text
                            .clone()
                            .unwrap_or_else(|| crate::dialer::sms_reply::DEFAULT_HELP_TEXT.into());
                        if help_text.trim().is_empty() {
                            return Err(err(at, "[sms] help_text must not be empty".into()));
                        }
                        let replies = crate::dialer::sms_reply::InboundConfig::replies_from(
                            &r.replies.clone().unwrap_or_default(),
                        )
                        .map_err(|e| err(at, e))?;
                        Some(crate::dialer::sms_reply::InboundConfig {
                            secret: secret.to_string(),
                            replay_window_s,
                            replies,
                            help_text,
                        })
                    }
                };
                if inbound.is_none() && (r.replies.is_some() || r.help_text.is_some()) {
                    return Err(err(
                        at,
                        "[sms] replies/help_text need inbound_secret (replies are off without it)"
                            .into(),
                    ));
                }
                Some(SmsGateway {
                    inbound,
                    url: r.url.clone(),
                    from: r.from.clone(),
                    token: r.token.clone().filter(|t| !t.is_empty()),
                    text,
                    max_tries,
                    retry_s: r.retry_s.unwrap_or(30).clamp(1, 3600),
                    timeout_s,
                    ca_file: r.ca_file.as_ref().map(PathBuf::from),
                })
            }
        };
        let webhooks = match &raw.webhooks {
            None => Webhooks::default(),
            Some(sp) => {
                let r = sp.get_ref();
                let timeout_s = r.timeout_s.unwrap_or(10);
                if !(1..=120).contains(&timeout_s) {
                    return Err(err(
                        sp.span().start,
                        "[webhooks] timeout_s must be 1..=120".into(),
                    ));
                }
                Webhooks {
                    ca_file: r.ca_file.as_ref().map(PathBuf::from),
                    timeout_s,
                }
            }
        };
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
        let cluster = match &raw.cluster {
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
                ClusterTiming {
                    heartbeat,
                    dead_after,
                    drain,
                }
            }
        };
        let language_prefixes = match raw.language.as_ref() {
            Some(sp) => match sp.get_ref().prefixes.as_ref() {
                Some(map) => {
                    for (prefix, lang) in map {
                        let digits = prefix.strip_prefix('+').unwrap_or("");
                        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                            return Err(err(
                                sp.span().start,
                                format!("[language] prefixes: '{prefix}' is not '+' and digits"),
                            ));
                        }
                        if lang.is_empty() {
                            return Err(err(
                                sp.span().start,
                                format!("[language] prefixes: '{prefix}' has an empty language"),
                            ));
                        }
                    }
                    crate::ivr::language::PrefixTable::new(
                        map.iter().map(|(p, l)| (p.clone(), l.clone())),
                    )
                }
                None => crate::ivr::language::PrefixTable::default(),
            },
            None => crate::ivr::language::PrefixTable::default(),
        };
        let service_hours = match raw.service.as_ref() {
            None => None,
            Some(sp) => {
                let r = sp.get_ref();
                let at = sp.span().start;
                let tz = match r.timezone.as_deref() {
                    None => chrono_tz::UTC,
                    Some(z) => z.parse::<chrono_tz::Tz>().map_err(|_| {
                        err(
                            at,
                            format!("[service] timezone '{z}' is not an IANA time zone"),
                        )
                    })?,
                };
                match &r.hours {
                    None => None,
                    Some(map) => {
                        let mut weekly = Vec::new();
                        for (day, ranges) in map {
                            let d = crate::ivr::hours::parse_day(day)
                                .map_err(|e| err(at, format!("[service] hours: {e}")))?;
                            let rs = crate::ivr::hours::parse_ranges(ranges)
                                .map_err(|e| err(at, format!("[service] hours.{day}: {e}")))?;
                            weekly.push((d, rs));
                        }
                        Some(crate::ivr::hours::ServiceHours::new(
                            tz,
                            weekly,
                            Default::default(),
                        ))
                    }
                }
            }
        };
        let (webrtc_public_address, webrtc_ice_servers) = match raw.webrtc {
            None => (None, Vec::new()),
            Some(sp) => {
                let at = sp.span().start;
                let w = sp.into_inner();
                let addr = match w.public_address {
                    None => None,
                    Some(a) => match a.trim().parse::<IpAddr>() {
                        Ok(ip) if !ip.is_unspecified() => Some(ip),
                        _ => {
                            return Err(err(
                                at,
                                format!(
                                    "[webrtc] public_address = '{a}' is not a usable IP address"
                                ),
                            ))
                        }
                    },
                };
                if w.ice_servers.iter().any(|s| s.urls.is_empty()) {
                    return Err(err(
                        at,
                        "[webrtc] ice_servers: every server needs urls".into(),
                    ));
                }
                (addr, w.ice_servers)
            }
        };
        let http_tls = match raw.http {
            None => None,
            Some(sp) => {
                let at = sp.span().start;
                match sp.into_inner() {
                    RawHttp {
                        tls_cert: Some(c),
                        tls_key: Some(k),
                    } => Some(HttpTls {
                        cert: PathBuf::from(c),
                        key: PathBuf::from(k),
                    }),
                    RawHttp {
                        tls_cert: None,
                        tls_key: None,
                    } => None,
                    _ => {
                        return Err(err(
                            at,
                            "[http] needs both tls_cert and tls_key (PEM files) for HTTPS".into(),
                        ))
                    }
                }
            }
        };
        let list = |v: Option<Vec<String>>, default: &[&str], key: &str| {
            let v: Vec<String> = v
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
                .into_iter()
                .map(|s| s.trim().to_string())
                .collect();
            if v.is_empty() || v.iter().any(|s| s.is_empty() || s.len() > 64) {
                return Err(err(
                    0,
                    format!("[acd] {key}: give at least one entry, each 1..64 characters"),
                ));
            }
            Ok(v)
        };
        let acd = raw.acd.as_ref();
        let pause_reasons = list(
            acd.and_then(|a| a.pause_reasons.clone()),
            &DEFAULT_PAUSE_REASONS,
            "pause_reasons",
        )?;
        let dispositions = list(
            acd.and_then(|a| a.dispositions.clone()),
            &DEFAULT_DISPOSITIONS,
            "dispositions",
        )?;
        let session_ttl_s = acd
            .and_then(|a| a.session_ttl_s)
            .unwrap_or(DEFAULT_SESSION_TTL_S);
        if session_ttl_s < 60 {
            return Err(err(0, "[acd] session_ttl_s must be at least 60".into()));
        }
        Ok(Config {
            language_prefixes,
            service_hours,
            node_id,
            cluster,
            http_tls,
            webrtc_public_address,
            webrtc_ice_servers,
            pause_reasons,
            dispositions,
            agent_session_ttl: std::time::Duration::from_secs(session_ttl_s),
            guard,
            session_expires_s,
            session_min_se_s,
            sms,
            webhooks,
            media_address_explicit,
            trunks,
            realm: server.realm.unwrap_or_else(|| "switchboard".into()),
            digest_algorithms,
            source: file.to_string(),
            sip_listen,
            http_listen,
            tls,
            database: server
                .database
                .unwrap_or_else(|| "sqlite://data/switchboard.db".into()),
            rtp_ports,
            media_address,
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
            lookup_timeout_ms: server.lookup_timeout_ms.unwrap_or(1000).clamp(50, 10_000),
            overload_queue_ms: server
                .overload_queue_ms
                .unwrap_or(DEFAULT_OVERLOAD_QUEUE_MS),
            default_country_code: server.default_country_code.unwrap_or_else(|| "1".into()),
            codecs,
            user_agent: server.user_agent.unwrap_or_else(|| "switchboard".into()),
            api_token: server.api_token,
            api_read_token: raw
                .api
                .as_ref()
                .and_then(|a| a.read_token.clone())
                .filter(|t| !t.is_empty()),
            api_anonymous_read: raw
                .api
                .as_ref()
                .and_then(|a| a.anonymous_read)
                .unwrap_or(false),
            metrics_public: raw.metrics.as_ref().and_then(|m| m.public).unwrap_or(false),
            operators,
            log_format: server.log_format.unwrap_or_default(),
            routes,
            queues: raw
                .queues
                .iter()
                .map(|q| q.get_ref().name.clone())
                .collect(),
            queue_settings,
            acd_auto_login: raw.acd.as_ref().and_then(|a| a.auto_login).unwrap_or(true),
        })
    }

    /// Resolve relative asset folders: as given when they exist (run from the project root),
    /// else next to the source tree this binary was built from (run from anywhere on a dev box).
    pub fn resolve_asset_dirs(&mut self) {
        for dir in [&mut self.dialplan_dir, &mut self.audio_dir] {
            if dir.is_relative() && !dir.exists() {
                let alt = Path::new(env!("CARGO_MANIFEST_DIR")).join(&*dir);
                if alt.exists() {
                    *dir = alt;
                }
            }
        }
    }

    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Whether inbound calls are limited to configured trunks' networks: as soon as any
    /// trunk lists `inbound_cidrs`, INVITEs from anywhere else are refused (403).
    pub fn inbound_acl_active(&self) -> bool {
        self.trunks.iter().any(|t| !t.inbound_cidrs.is_empty())
    }

    /// The trunk whose `inbound_cidrs` contain `ip`.
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.inbound_cidrs.iter().any(|c| c.contains(ip)))
    }

    pub fn queue(&self, name: &str) -> Option<&QueueSettings> {
        self.queue_settings.iter().find(|q| q.acd.name == name)
    }

    pub fn route_for(&self, user: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.to == user)
    }
}

// ---- [[operator]] -------------------------------------------------------------------
// Console and wallboard logins kept in the file (besides `switchboard operator add`, which
// writes the `operators` table). Self-contained: the raw table, the checked form and its
// parser, so the section can move to its own module as it is.

/// One `[[operator]]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    name: String,
    role: String,
    /// An argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), e.g. the
    /// `password_hash` column written by `switchboard operator add`, or `argon2` CLI output.
    password_hash: String,
}

/// A checked `[[operator]]`. For its name it takes precedence over a row of the
/// `operators` table (docs/configuration.md#operator): the file is what was deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOperator {
    pub name: String,
    pub role: crate::store::operators::Role,
    pub password_hash: String,
}

/// Check every `[[operator]]`: a valid, unique name, role `admin` or `viewer`, and a
/// password hash that is an argon2 PHC string (so a plain password put there by mistake
/// is refused at start, not silently never matching).
fn operators_config(
    raw: &[Spanned<RawOperator>],
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<ConfigOperator>, ConfigError> {
    use crate::store::operators::{valid_name, Role};
    let mut out: Vec<ConfigOperator> = Vec::with_capacity(raw.len());
    for item in raw {
        let at = item.span().start;
        let o = item.get_ref();
        if !valid_name(&o.name) {
            return Err(err(
                at,
                format!("[[operator]] name '{}' is not a valid name", o.name),
            ));
        }
        if out.iter().any(|x| x.name == o.name) {
            return Err(err(
                at,
                format!("[[operator]] '{}' is listed twice", o.name),
            ));
        }
        let role = Role::parse(&o.role).ok_or_else(|| {
            err(
                at,
                format!(
                    "[[operator]] '{}': role '{}' must be admin or viewer",
                    o.name, o.role
                ),
            )
        })?;
        let argon2 = argon2::PasswordHash::new(&o.password_hash)
            .is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"));
        if !argon2 {
            return Err(err(
                at,
                format!(
                    "[[operator]] '{}': password_hash must be an argon2 PHC string ($argon2id$v=19$...); \
                     make one with `switchboard operator hash --password-stdin`",
                    o.name
                ),
            ));
        }
        out.push(ConfigOperator {
            name: o.name.clone(),
            role,
            password_hash: o.password_hash.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[metrics] public` and `[server] log_format`: off / text by default, read when set,
    /// and a log format other than text or json is refused at load.
    #[test]
    fn metrics_public_and_log_format() {
        let c = Config::embedded().expect("default config");
        assert!(!c.metrics_public);
        assert_eq!(c.log_format, LogFormat::Text);
        let c = Config::parse(
            "x.toml",
            "[server]\nlog_format = \"json\"\n[metrics]\npublic = true\n",
        )
        .expect("parses");
        assert!(c.metrics_public);
        assert_eq!(c.log_format, LogFormat::Json);
        Config::parse("x.toml", "[server]\nlog_format = \"xml\"\n").expect_err("xml refused");
        Config::parse("x.toml", "[metrics]\nopen = true\n").expect_err("unknown key");
    }

    #[test]
    fn operators_from_the_file_are_checked() {
        use crate::store::operators::{hash_password, Role};
        assert!(Config::embedded().expect("default").operators.is_empty());
        let h = hash_password("pw").expect("hash");
        let src = format!(
            "[[operator]]\nname = \"olga\"\nrole = \"admin\"\npassword_hash = \"{h}\"\n\
             [[operator]]\nname = \"vic\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n"
        );
        let c = Config::parse("x.toml", &src).expect("parses");
        assert_eq!(c.operators.len(), 2);
        assert_eq!(
            (c.operators[0].name.as_str(), c.operators[0].role),
            ("olga", Role::Admin)
        );
        assert_eq!(c.operators[1].role, Role::Viewer);
        for (bad, why) in [
            (
                "name = \"olga\"\nrole = \"root\"\npassword_hash = \"H\"",
                "role",
            ),
            (
                "name = \"olga\"\nrole = \"admin\"\npassword_hash = \"s3cret\"",
                "argon2",
            ),
            (
                "name = \"bad name\"\nrole = \"admin\"\npassword_hash = \"H\"",
                "name",
            ),
            ("name = \"olga\"\nrole = \"admin\"", "password_hash"),
        ] {
            let src = format!("[[operator]]\n{}\n", bad.replace('H', &h));
            let e = Config::parse("x.toml", &src).expect_err(why);
            assert!(e.reason.contains(why), "{why}: {e}");
            assert_eq!(e.line, 1, "{e}");
        }
        let twice = format!(
            "{src}[[operator]]\nname = \"olga\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n"
        );
        let e = Config::parse("x.toml", &twice).expect_err("twice");
        assert!(e.reason.contains("twice"), "{e}");
    }

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded().expect("default config");
        assert_eq!(c.sip_listen.to_string(), "127.0.0.1:5060");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.route_for("hotline").map(|r| r.dialplan.as_str()),
            Some("hotline")
        );
        assert_eq!(c.queues, vec!["support".to_string()]);
    }

    #[test]
    fn session_timer_keys() {
        let c = Config::embedded().expect("default config");
        assert_eq!((c.session_expires_s, c.session_min_se_s), (1800, 90));
        let c = Config::parse(
            "t.toml",
            "[server]\nsession_expires_s = 4\nsession_min_se_s = 1\n",
        )
        .expect("low values for tests");
        assert_eq!((c.session_expires_s, c.session_min_se_s), (4, 1));
        for bad in [
            "[server]\nsession_min_se_s = 0\n",
            "[server]\nsession_expires_s = 60\n",
        ] {
            let e = Config::parse("t.toml", bad).expect_err(bad);
            assert!(e.reason.contains("session_min_se_s"), "{e}");
        }
    }

    #[test]
    fn trunks_and_cidrs() {
        let c = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:5090\"\ntransport = \"udp\"\n\
             inbound_cidrs = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\nmax_channels = 30\nmax_cps = 10\n",
        )
        .expect("trunk config");
        let t = c.trunk("carrier").expect("trunk");
        assert_eq!(t.address.port(), 5090);
        assert!(t.inbound_cidrs[1].contains("10.1.2.3".parse().expect("ip")));
        assert!(!t.inbound_cidrs[0].contains("127.0.0.2".parse().expect("ip")));
        assert_eq!(
            Cidr::parse("::1/128").map(|c| c.contains("::1".parse().expect("ip"))),
            Some(true)
        );
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Config::parse("x.toml", "[server]\nsip_listen = \"nope\"\n").expect_err("bad");
        assert_eq!((e.file.as_str(), e.line), ("x.toml", 2));
        let e = Config::parse("x.toml", "[server]\n\nbogus = 1\n").expect_err("bad");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("bogus"), "{e}");
        let e = Config::parse("x.toml", "[[trunk]]\nname = \"c\"\naddress = \"nope\"\n")
            .expect_err("bad");
        assert_eq!(e.line, 1, "{e}");
        let e = Config::parse("x.toml", "[server]\nrealtime_priority = 100\n").expect_err("bad");
        assert!(
            e.to_string()
                .starts_with("x.toml:2: realtime_priority = 100"),
            "{e}"
        );
        let off = Config::parse("x.toml", "[server]\nrealtime_priority = 0\n");
        assert_eq!(off.map(|c| c.realtime_priority).ok(), Some(0));
        let e = Config::parse("x.toml", "[server]\nrtp_ports = \"9-1\"\n").expect_err("bad");
        assert!(e.to_string().starts_with("x.toml:2: rtp_ports"), "{e}");
    }

    #[test]
    fn sms_inbound_keys() {
        let c = Config::parse(
            "t.toml",
            "[sms]\nurl = \"http://gw:8088/\"\nfrom = \"+1\"\ninbound_secret = \"0123456789abcdef\"\n\
             replay_window_s = 60\nhelp_text = \"1 or 2\"\n[sms.replies]\nrefund = [\"R\", \"退款\"]\n",
        )
        .expect("inbound");
        let inbound = c.sms.and_then(|s| s.inbound).expect("inbound");
        assert_eq!(inbound.replay_window_s, 60);
        assert_eq!(inbound.help_text, "1 or 2");
        assert_eq!(
            inbound.choice("r"),
            Some(crate::dialer::sms_reply::ReplyChoice::Refund)
        );
        assert_eq!(inbound.choice("2"), None);
        let off = Config::parse("t.toml", "[sms]\nurl = \"http://gw/\"\nfrom = \"+1\"\n");
        assert_eq!(off.ok().and_then(|c| c.sms).map(|s| s.inbound), Some(None));
        for (bad, want) in [
            ("inbound_secret = \"short\"\n", "at least 16"),
            (
                "inbound_secret = \"0123456789abcdef\"\nreplay_window_s = 5\n",
                "replay_window_s",
            ),
            ("help_text = \"x\"\n", "need inbound_secret"),
            (
                "inbound_secret = \"0123456789abcdef\"\n[sms.replies]\nmaybe = [\"x\"]\n",
                "not a choice",
            ),
        ] {
            let text = format!("[sms]\nurl = \"http://gw/\"\nfrom = \"+1\"\n{bad}");
            let e = Config::parse("t.toml", &text).expect_err(bad);
            assert!(e.reason.contains(want), "{e}");
        }
    }

    #[test]
    fn sms_and_webhook_https_keys() {
        let c = Config::parse(
            "t.toml",
            "[sms]\nurl = \"https://gw.example:8443/v1/sms\"\nfrom = \"+1\"\nca_file = \"ca.pem\"\n\
             [webhooks]\nca_file = \"hooks.pem\"\ntimeout_s = 3\n",
        )
        .expect("https gateway");
        let sms = c.sms.expect("sms");
        assert_eq!(sms.url, "https://gw.example:8443/v1/sms");
        assert_eq!(sms.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            c.webhooks,
            Webhooks {
                ca_file: Some(PathBuf::from("hooks.pem")),
                timeout_s: 3
            }
        );
        // Plain http stays accepted; no [webhooks] gives the defaults.
        let c = Config::parse(
            "t.toml",
            "[sms]\nurl = \"http://gw:8088/\"\nfrom = \"+1\"\n",
        )
        .expect("http gateway");
        assert_eq!(c.sms.expect("sms").ca_file, None);
        assert_eq!(c.webhooks, Webhooks::default());
        for (bad, want) in [
            (
                "[sms]\nurl = \"ftp://gw/\"\nfrom = \"+1\"\n",
                "[sms] url must be",
            ),
            (
                "[sms]\nurl = \"gw:80\"\nfrom = \"+1\"\n",
                "[sms] url must be",
            ),
            ("[webhooks]\ntimeout_s = 0\n", "[webhooks] timeout_s"),
            ("[webhooks]\nca = \"x\"\n", "unknown field"),
        ] {
            let e = Config::parse("t.toml", bad).expect_err(bad);
            assert!(e.reason.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn http_tls_and_agent_lists() {
        let c = Config::embedded().expect("default config");
        assert_eq!(c.http_tls, None);
        assert_eq!(c.pause_reasons, DEFAULT_PAUSE_REASONS.map(String::from));
        assert_eq!(c.dispositions.len(), DEFAULT_DISPOSITIONS.len());
        let c = Config::parse(
            "t.toml",
            "[http]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[acd]\npause_reasons = [\"coffee\"]\n",
        )
        .expect("https config");
        assert_eq!(
            c.http_tls,
            Some(HttpTls {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(c.pause_reasons, vec!["coffee".to_string()]);
        let e = Config::parse("t.toml", "\n[http]\ntls_cert = \"c.pem\"\n").expect_err("half");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("tls_key"), "{e}");
        let e = Config::parse("t.toml", "[acd]\npause_reasons = []\n").expect_err("empty");
        assert!(e.reason.contains("pause_reasons"), "{e}");
    }

    #[test]
    fn webrtc_keys() {
        let c = Config::embedded().expect("default config");
        assert_eq!(c.webrtc_public_address, None);
        assert!(c.webrtc_ice_servers.is_empty());
        let c = Config::parse(
            "t.toml",
            "[webrtc]\npublic_address = \"203.0.113.7\"\n\
             ice_servers = [{ urls = [\"turn:turn.example:3478\"], username = \"u\", credential = \"p\" }]\n",
        )
        .expect("webrtc config");
        assert_eq!(
            c.webrtc_public_address,
            Some("203.0.113.7".parse().expect("ip"))
        );
        assert_eq!(c.webrtc_ice_servers.len(), 1);
        assert_eq!(c.webrtc_ice_servers[0].username.as_deref(), Some("u"));
        let e = Config::parse("t.toml", "\n[webrtc]\npublic_address = \"0.0.0.0\"\n")
            .expect_err("unspecified");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("public_address"), "{e}");
        let e = Config::parse("t.toml", "[webrtc]\nice_servers = [{ urls = [] }]\n")
            .expect_err("no urls");
        assert!(e.reason.contains("urls"), "{e}");
    }

    #[test]
    fn tls_listener_keys() {
        let c = Config::parse(
            "t.toml",
            "[server]\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .expect("tls config");
        let t = c.tls.expect("tls on");
        assert_eq!(t.listen.port(), 5061);
        assert_eq!(t.cert, PathBuf::from("c.pem"));
        assert!(Config::embedded().expect("default").tls.is_none());
        let e = Config::parse("t.toml", "[server]\n\ntls_listen = \"127.0.0.1:5061\"\n")
            .expect_err("no files");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("tls_cert and tls_key"), "{e}");
        let e = Config::parse("t.toml", "[server]\ntls_cert = \"c.pem\"\n").expect_err("no listen");
        assert!(e.reason.contains("tls_listen is not"), "{e}");
        let e = Config::parse(
            "t.toml",
            "[server]\ntls_listen = \"nope\"\ntls_cert = \"c\"\ntls_key = \"k\"\n",
        )
        .expect_err("bad addr");
        assert!(e.reason.starts_with("tls_listen = 'nope'"), "{e}");
    }

    #[test]
    fn stream_trunks() {
        let c = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5061\"\ntransport = \"TLS\"\ntls_ca = \"ca.pem\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"[::1]:5060\"\ntransport = \"tcp\"\n",
        )
        .expect("stream trunks");
        let a = c.trunk("a").expect("a");
        assert_eq!(
            (a.transport.as_str(), a.host.as_str()),
            ("tls", "127.0.0.1")
        );
        assert_eq!(a.tls_ca, Some(PathBuf::from("ca.pem")));
        let b = c.trunk("b").expect("b");
        assert_eq!((b.transport.as_str(), b.host.as_str()), ("tcp", "::1"));
        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"u\"\naddress = \"127.0.0.1:5060\"\ntls_ca = \"ca.pem\"\n",
        )
        .expect_err("tls_ca on udp");
        assert!(e.reason.contains("tls_ca needs transport"), "{e}");
        assert_eq!(split_host("carrier.example:5061"), "carrier.example");
    }

    #[test]
    fn trunk_registration_and_failover_keys() {
        let c = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nusername = \"u\"\npassword = \"p\"\n\
             register = true\nregister_expires = 120\nauth_username = \"au\"\nfailover = \"b\"\npai = true\n\
             from_user = \"acct\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"127.0.0.1:5091\"\n",
        )
        .expect("keys");
        let a = c.trunk("a").expect("a");
        assert!(a.register && a.pai);
        assert_eq!(a.register_expires, 120);
        assert_eq!(a.auth_user(), Some("au"));
        assert_eq!(a.failover.as_deref(), Some("b"));
        assert_eq!(a.from_user.as_deref(), Some("acct"));
        let b = c.trunk("b").expect("b");
        assert_eq!(
            (b.register_expires, b.pai, b.failover.is_none()),
            (3600, false, true)
        );
        assert_eq!(b.auth_user(), None);

        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\n\n[[trunk]]\nname = \"b\"\n\
             address = \"127.0.0.1:5091\"\nfailover = \"zz\"\n",
        )
        .expect_err("unknown failover");
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("failover 'zz' is not a [[trunk]]"), "{e}");
        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nfailover = \"b\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"127.0.0.1:5091\"\nfailover = \"c\"\n\
             [[trunk]]\nname = \"c\"\naddress = \"127.0.0.1:5092\"\nfailover = \"a\"\n",
        )
        .expect_err("cycle");
        assert_eq!(e.line, 1, "{e}");
        assert!(e.reason.contains("failover cycle a -> b -> c -> a"), "{e}");
        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nfailover = \"a\"\n",
        )
        .expect_err("self");
        assert!(e.reason.contains("failover cycle a -> a"), "{e}");
        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nregister = true\n",
        )
        .expect_err("register without credentials");
        assert!(e.reason.contains("needs username and password"), "{e}");
        let e = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nregister_expires = 5\n",
        )
        .expect_err("expires");
        assert!(e.reason.contains("register_expires"), "{e}");
    }

    #[test]
    fn codecs_are_an_ordered_preference_list() {
        let c = Config::embedded().expect("default config");
        assert_eq!(
            c.codecs,
            DEFAULT_CODECS.to_vec(),
            "default.toml matches the built-in default"
        );
        let c = Config::parse(
            "c.toml",
            "[server]\ncodecs = [\"OPUS\", \"g722\", \"opus\", \"PCMU\"]\n",
        )
        .expect("codecs");
        assert_eq!(
            c.codecs,
            vec![Codec::Opus, Codec::G722, Codec::Pcmu],
            "order kept, duplicate dropped"
        );
        let e = Config::parse("c.toml", "[server]\ncodecs = [\"G729\"]\n").expect_err("unknown");
        assert!(
            e.reason
                .contains("unknown codec 'G729' (PCMU, PCMA, G722, opus)"),
            "{e}"
        );
        let e = Config::parse("c.toml", "[server]\ncodecs = []\n").expect_err("empty");
        assert!(e.reason.contains("must not be empty"), "{e}");
    }

    #[test]
    fn service_hours_and_language_prefixes() {
        let c = Config::parse(
            "t.toml",
            "[service]\ntimezone = \"Asia/Shanghai\"\nhours = { mon = \"09:00-18:00\", sat = \"10:00-12:00,13:00-16:00\" }\n\n[language]\nprefixes = { \"+65\" = \"zh\" }\n",
        )
        .expect("config");
        let h = c.service_hours.expect("hours");
        assert_eq!(h.tz, chrono_tz::Asia::Shanghai);
        // Monday 2026-12-07 10:00 Shanghai.
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-07T02:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc);
        assert!(h.is_open(t));
        assert_eq!(c.language_prefixes.lookup("+6591234567"), Some("zh"));
        assert_eq!(
            c.language_prefixes.lookup("+8613800138000"),
            None,
            "replaced"
        );
        assert_eq!(
            Config::embedded()
                .expect("default")
                .language_prefixes
                .lookup("+8613800138000"),
            Some("zh")
        );
        for bad in [
            "[service]\ntimezone = \"Mars/Base\"\n",
            "[service]\nhours = { monday = \"09:00-18:00\" }\n",
            "[service]\nhours = { mon = \"18:00-09:00\" }\n",
            "[language]\nprefixes = { \"86\" = \"zh\" }\n",
        ] {
            let e = Config::parse("t.toml", bad).expect_err(bad);
            assert!(e.to_string().contains("t.toml:1"), "{bad}: {e}");
        }
    }
}
