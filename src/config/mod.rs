//! Configuration: the embedded default (`config/default.toml`), an optional `--config FILE`
//! that replaces it, and command-line overrides. Errors name the file, line and reason.
//! Every key is documented in docs/configuration.md.
//!
//! One module per group of sections, each with its raw (serde) tables and the function that
//! checks them: `server` (`[server]`, `[cluster]`), `trunks`, `queues` (`[[route]]`,
//! `[[queue]]`, `[acd]`), `security`, `messaging` (`[sms]`, `[webhooks]`), `web` (`[http]`,
//! `[api]`, `[metrics]`, `[webrtc]`), `service` (`[service]`, `[language]`) and
//! `operators`. This file holds the whole file's table, the flat `Config` every service reads,
//! and [`Config::parse`], which runs the sections in dependency order (queues and the
//! security guard need the trunks).

mod messaging;
mod operators;
mod queues;
mod security;
mod server;
mod service;
mod trunks;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::ivr::loader::line_of;
use crate::media::codec::Codec;
// Defined in the leaf module `net` so the sip layer can use them without depending on
// config; re-exported here so `config::Cidr` and `config::TrunkTransport` stay as they were.
pub use crate::net::{Cidr, TrunkTransport};
pub use messaging::{SmsGateway, Webhooks, DEFAULT_SMS_TEXT};
pub use operators::ConfigOperator;
pub use queues::{
    QueueSettings, Route, DEFAULT_DISPOSITIONS, DEFAULT_PAUSE_REASONS, DEFAULT_SESSION_TTL_S,
};
pub use server::{
    default_node_id, valid_node_id, ClusterTiming, LogFormat, QueueScope, TlsListen,
    DEFAULT_CODECS, DEFAULT_OVERLOAD_QUEUE_MS, DEFAULT_REALTIME_PRIORITY,
};
pub use trunks::Trunk;
pub use web::{HttpTls, IceServer};

use messaging::{RawSms, RawWebhooks};
use operators::RawOperator;
use queues::{RawAcd, RawQueue, RawRoute};
use security::RawSecurity;
use server::{RawCluster, RawServer};
use service::{RawLanguage, RawService};
use trunks::RawTrunk;
use web::{RawApi, RawHttp, RawMetrics, RawWebRtc};

pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");
const DEFAULT_CONFIG_NAME: &str = "<embedded config/default.toml>";

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

/// The file being parsed: its name and text, to turn a byte offset of a table into
/// "file:line: reason".
struct Source<'a> {
    file: &'a str,
    src: &'a str,
}

impl Source<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        line_of(self.src, offset)
    }

    fn err(&self, offset: usize, reason: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line(offset),
            reason,
        }
    }
}

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
        let s = Source { file, src };
        let err = |offset: usize, reason: String| s.err(offset, reason);
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(src, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                reason: e.message().to_string(),
            }
        })?;
        let server = server::parse(raw.server, raw.cluster.as_ref(), &s)?;
        let routes = queues::routes(&raw.routes, &s)?;
        let trunks = trunks::parse(&raw.trunks, &s)?;
        let queue_settings = queues::queues(&raw.queues, &trunks, &s)?;
        let guard = security::security_config(raw.security, &trunks, &err)?;
        let operators = operators::operators_config(&raw.operators, &err)?;
        let sms = messaging::sms(raw.sms.as_ref(), &s)?;
        let webhooks = messaging::webhooks(raw.webhooks.as_ref(), &s)?;
        let language_prefixes = service::language_prefixes(raw.language.as_ref(), &s)?;
        let service_hours = service::service_hours(raw.service.as_ref(), &s)?;
        let (webrtc_public_address, webrtc_ice_servers) = web::webrtc(raw.webrtc, &s)?;
        let http_tls = web::http_tls(raw.http, &s)?;
        let acd = queues::acd(raw.acd.as_ref(), &s)?;
        Ok(Config {
            language_prefixes,
            service_hours,
            node_id: server.node_id,
            cluster: server.cluster,
            http_tls,
            webrtc_public_address,
            webrtc_ice_servers,
            pause_reasons: acd.pause_reasons,
            dispositions: acd.dispositions,
            agent_session_ttl: acd.session_ttl,
            guard,
            session_expires_s: server.session_expires_s,
            session_min_se_s: server.session_min_se_s,
            sms,
            webhooks,
            media_address_explicit: server.media_address_explicit,
            trunks,
            realm: server.realm,
            digest_algorithms: server.digest_algorithms,
            source: file.to_string(),
            sip_listen: server.sip_listen,
            http_listen: server.http_listen,
            tls: server.tls,
            database: server.database,
            rtp_ports: server.rtp_ports,
            media_address: server.media_address,
            dialplan_dir: server.dialplan_dir,
            audio_dir: server.audio_dir,
            recordings_dir: server.recordings_dir,
            spool_dir: server.spool_dir,
            demo_data: server.demo_data,
            max_calls: server.max_calls,
            realtime_priority: server.realtime_priority,
            call_threads: server.call_threads,
            media_timeout_s: server.media_timeout_s,
            lookup_timeout_ms: server.lookup_timeout_ms,
            overload_queue_ms: server.overload_queue_ms,
            default_country_code: server.default_country_code,
            codecs: server.codecs,
            user_agent: server.user_agent,
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
            log_format: server.log_format,
            routes,
            queues: raw
                .queues
                .iter()
                .map(|q| q.get_ref().name.clone())
                .collect(),
            queue_settings,
            acd_auto_login: acd.auto_login,
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

#[cfg(test)]
mod tests;
