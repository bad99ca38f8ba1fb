//! `[http]`, `[api]`, `[metrics]` and `[webrtc]`: HTTPS on the HTTP port, who may read the
//! API and scrape metrics, and what browser agents' media legs are told (public address,
//! ICE servers).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

/// `[webrtc]`: browser agents' media legs (docs/adr/0006-webrtc-str0m.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebRtc {
    /// The IP the browser is told to send media to (our ICE host candidate): the public
    /// address behind NAT. Default: `[server] media_address` (127.0.0.1 when unspecified).
    pub(super) public_address: Option<String>,
    /// STUN/TURN servers handed to the page's `RTCPeerConnection` (the server itself is
    /// ICE-lite and needs none).
    #[serde(default)]
    pub(super) ice_servers: Vec<IceServer>,
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

/// `[http]`: the HTTP port's own settings (the port itself is `[server] http_listen`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
}

/// `[api]`: who may read the status endpoints (`/api/status`, `/api/agents`,
/// `/api/agents/{name}`, `/api/queues`). The admin token (`[server] api_token`) always reads.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) read_token: Option<String>,
    pub(super) anonymous_read: Option<bool>,
}

/// `[metrics]`: who may scrape `GET /metrics`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// Scrapes without a token (off by default: queue and campaign names are business data).
    pub(super) public: Option<bool>,
}

/// HTTPS on the HTTP port (`[http] tls_cert`, `tls_key`): PEM files, read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Check `[webrtc]`: the public address and the page's ICE servers.
pub(super) fn webrtc(
    raw: Option<Spanned<RawWebRtc>>,
    s: &Source<'_>,
) -> Result<(Option<IpAddr>, Vec<IceServer>), ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let (webrtc_public_address, webrtc_ice_servers) = match raw {
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
                            format!("[webrtc] public_address = '{a}' is not a usable IP address"),
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
    Ok((webrtc_public_address, webrtc_ice_servers))
}

/// Check `[http]`: both PEM files or neither.
pub(super) fn http_tls(
    raw: Option<Spanned<RawHttp>>,
    s: &Source<'_>,
) -> Result<Option<HttpTls>, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let http_tls = match raw {
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
    Ok(http_tls)
}
