//! TLS for SIP (RFC 3261 §26.3.1 and §18; `sips:` per RFC 5630): loading the server's
//! certificate and key for the `tls_listen` socket, the trust roots trunks are verified
//! against, and the connections we open to `transport = "tcp" | "tls"` trunks.
//!
//! rustls with the `ring` provider, chosen explicitly so the process never depends on a
//! global default provider (docs/adr/0003-tls-and-websocket-crates.md). PEM parsing is
//! rustls' own (`pki_types::pem`). Files are read once at start; a missing or unusable file
//! stops the start with the key, the path and the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::transport::{connect_stream, Inbound, ReplyPath};
use crate::net::TrunkTransport;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} '{}': cannot read: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} '{}': {reason}", path.display())]
    Invalid {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("trunk '{trunk}': address host '{host}' is not a valid TLS server name")]
    ServerName { trunk: String, host: String },
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(key: &str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        key: key.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file; none is an error.
pub(crate) fn certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "no CERTIFICATE block in the PEM file"));
    }
    Ok(certs)
}

/// The acceptor for `[server] tls_listen`: `cert` is a PEM chain (leaf first), `key` its
/// private key (PKCS#8, PKCS#1 or SEC1 PEM). No client certificates are asked for: agents
/// authenticate with digest (RFC 3261 §22), trunks by address.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(
        "tls_cert", "tls_key", cert, key,
    )?)))
}

/// A TLS server configuration from a PEM chain and key; errors name the configuration keys
/// (`cert_key`, `key_key`) so the start error points at the right section.
pub fn server_config(
    cert_key: &str,
    key_key: &str,
    cert: &Path,
    key: &Path,
) -> Result<ServerConfig, TlsError> {
    let certs = certificates(cert_key, cert)?;
    let key_pem = read(key_key, key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            key_key,
            key,
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY block (PKCS#8, RSA or EC) in the PEM file".to_string()
                }
                other => format!("bad PEM: {other}"),
            },
        )
    })?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert_key, cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            invalid(
                key_key,
                key,
                format!("unusable with {cert_key} '{}': {e}", cert.display()),
            )
        })
}

/// The client side for a trunk: its `tls_ca` file as the only trust anchors when given, else
/// the Mozilla roots compiled in (`webpki-roots`).
pub fn connector(trunk: &str, ca: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let key = format!("trunk '{trunk}': tls_ca");
            for c in certificates(&key, path)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(&key, path, format!("unusable certificate: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            key: format!("trunk '{trunk}'"),
            path: PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connections to trunks over TCP or TLS, opened on first use and reused by every call
/// through the trunk while they stay up (RFC 3261 §18.1.1; RFC 5923's reuse, without the
/// alias negotiation). Answers on them reach the router like any inbound message.
///
/// Each trunk has its own lock, held across its connect and TLS handshake: concurrent calls
/// to one trunk that is down share one attempt instead of opening one each, and a dead trunk
/// (a connect that runs into its timeout) does not hold up calls to the others.
pub struct TrunkConnections {
    to_router: mpsc::Sender<Inbound>,
    trunks: HashMap<String, TrunkConnection>,
}

struct TrunkConnection {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    open: tokio::sync::Mutex<Option<ReplyPath>>,
}

/// What the connections need to know of one trunk. The sip layer takes these values rather
/// than `config::Trunk` so it does not depend on `config` (which sits above it,
/// docs/architecture.md); `config::Trunk` provides them through [`AsStreamPeer`].
#[derive(Debug, Clone, Copy)]
pub struct StreamPeer<'a> {
    pub name: &'a str,
    pub address: SocketAddr,
    pub transport: TrunkTransport,
    /// The name the TLS server's certificate must carry.
    pub host: &'a str,
    /// PEM file of the CAs to verify a TLS trunk against; None: the Mozilla roots.
    pub tls_ca: Option<&'a Path>,
}

/// Anything that can say how to reach a trunk over a stream ([`StreamPeer`]).
pub trait AsStreamPeer {
    fn stream_peer(&self) -> StreamPeer<'_>;
}

impl AsStreamPeer for StreamPeer<'_> {
    fn stream_peer(&self) -> StreamPeer<'_> {
        *self
    }
}

impl TrunkConnections {
    /// Build the TLS clients of every `transport = "tls"` trunk now, so a bad `tls_ca` stops
    /// the start instead of the first call.
    pub fn new<T: AsStreamPeer>(
        trunks: &[T],
        to_router: mpsc::Sender<Inbound>,
    ) -> Result<Self, TlsError> {
        let mut map = HashMap::new();
        for t in trunks
            .iter()
            .map(AsStreamPeer::stream_peer)
            .filter(|t| t.transport.is_stream())
        {
            let tls = if t.transport == TrunkTransport::Tls {
                let name =
                    ServerName::try_from(t.host.to_string()).map_err(|_| TlsError::ServerName {
                        trunk: t.name.to_string(),
                        host: t.host.to_string(),
                    })?;
                Some((connector(t.name, t.tls_ca)?, name))
            } else {
                None
            };
            map.insert(
                t.name.to_string(),
                TrunkConnection {
                    tls,
                    open: tokio::sync::Mutex::new(None),
                },
            );
        }
        Ok(TrunkConnections {
            to_router,
            trunks: map,
        })
    }

    /// The open connection to `trunk`, or a new one. Only for stream trunks (`tcp`, `tls`).
    pub async fn flow(&self, trunk: &impl AsStreamPeer) -> std::io::Result<ReplyPath> {
        let StreamPeer { name, address, .. } = trunk.stream_peer();
        let conn = self.trunks.get(name).ok_or_else(|| {
            std::io::Error::other(format!(
                "trunk '{name}' is not a tcp/tls trunk of this configuration"
            ))
        })?;
        let mut open = conn.open.lock().await;
        if let Some(f) = open.as_ref().filter(|f| f.is_open()) {
            return Ok(f.clone());
        }
        let flow = connect_stream(address, conn.tls.clone(), self.to_router.clone()).await?;
        *open = Some(flow.clone());
        Ok(flow)
    }
}
