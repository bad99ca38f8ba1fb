//! `[[trunk]]`: SIP trunks to carriers (address, transport, inbound networks, limits,
//! credentials and registration, failover chain), checked as a whole (names unique, every
//! failover a trunk, no failover cycle).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Cidr, ConfigError, Source, TrunkTransport};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) transport: Option<String>,
    pub(super) inbound_cidrs: Option<Vec<String>>,
    pub(super) max_channels: Option<u32>,
    pub(super) max_cps: Option<f64>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) register: Option<bool>,
    pub(super) caller_id: Option<String>,
    pub(super) tls_ca: Option<String>,
    pub(super) register_expires: Option<u32>,
    pub(super) auth_username: Option<String>,
    pub(super) from_user: Option<String>,
    pub(super) contact_user: Option<String>,
    pub(super) failover: Option<String>,
    pub(super) pai: Option<bool>,
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
pub(super) fn split_host(address: &str) -> String {
    let host = match address.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Check every `[[trunk]]`, in file order.
pub(super) fn parse(raw: &[Spanned<RawTrunk>], s: &Source<'_>) -> Result<Vec<Trunk>, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let mut trunks = Vec::new();
    let mut trunk_at = Vec::new();
    for t in raw {
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
    Ok(trunks)
}
