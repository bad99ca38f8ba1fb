//! RFC 3327 `Path` and the pre-loaded route set it becomes, sans-IO.
//!
//! A proxy between a phone and the registrar (the Kamailio edge, ADR 0008) puts a `Path`
//! header with its own URI into the REGISTER it relays (`add_path_received()`). The registrar
//! keeps the Path values with the binding, in order, and every request later sent to that
//! contact carries them as its `Route` headers (RFC 3327 §5.3; RFC 3261 §8.1.2 "pre-existing
//! route set"): Request-URI the registered contact, sent to the first Route's address — the
//! proxy, which takes its own Route off and relays to the phone on the flow it registered on.
//!
//! What lives here: reading the Path of a REGISTER ([`path_of`]), whether the phone said it
//! understands Path ([`supports_path`]), the one-column form the `registrations` table keeps
//! ([`to_column`], [`from_column`]) and where a request with that route set goes
//! ([`first_hop`]).

use std::net::{IpAddr, SocketAddr};

use super::message::{split_comma_list, HeaderName, Message};
use super::transport::TransportKind;
use super::uri::{NameAddr, Scheme};

/// The option tag of RFC 3327 (`Supported: path`).
pub const OPTION_TAG: &str = "path";

/// The `Path` header name (not one of [`HeaderName`]'s own variants: only the registrar and
/// its replies use it).
pub fn header_name() -> HeaderName {
    HeaderName::Other("Path".into())
}

/// Every Path value of `msg` in order: several Path headers and comma lists alike
/// (RFC 3261 §7.3.1), each a name-addr as received, trimmed. Empty: no Path.
pub fn path_of(msg: &Message) -> Vec<String> {
    let name = header_name();
    msg.headers
        .iter()
        .filter(|h| h.name.matches(&name))
        .flat_map(|h| split_comma_list(&h.value))
        .map(str::to_string)
        .collect()
}

/// Whether the request lists `path` in a `Supported` header (compact form `k` included):
/// the phone understands a Path header in the answer (RFC 3261 §8.2.2.3: no extension in a
/// response the request did not declare).
pub fn supports_path(msg: &Message) -> bool {
    msg.header_values(&HeaderName::Supported)
        .any(|t| t.trim().eq_ignore_ascii_case(OPTION_TAG))
}

/// The stored form of a path: the values joined as one Path header field value
/// (`<sip:a;lr>, <sip:b;lr>`); `None` for no path (the column stays NULL).
pub fn to_column(path: &[String]) -> Option<String> {
    (!path.is_empty()).then(|| path.join(", "))
}

/// The values of a stored path, in order (NULL or blank: none).
pub fn from_column(stored: Option<&str>) -> Vec<String> {
    stored
        .map(|s| split_comma_list(s).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Where a request with a pre-loaded route set is sent: the first Route's address and the
/// transport its URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub addr: SocketAddr,
    pub transport: TransportKind,
}

/// Why a route set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route {0:?} is not a SIP name-addr")]
    Malformed(String),
    /// No `;lr`: a strict router (RFC 2543) would need the Request-URI rewritten to it;
    /// every proxy that adds Path (RFC 3327 postdates RFC 3261) routes loosely.
    #[error("route {0:?} has no ;lr (strict routing is not supported)")]
    StrictRouter(String),
    /// A host name: resolving it would block the caller's task (std's resolver).
    #[error("route {0:?} names a host, not an IP address")]
    NotAnAddress(String),
    #[error("route {0:?} names an unknown transport")]
    Transport(String),
}

/// Where a request whose route set is `route` goes (RFC 3261 §8.1.2, loose routing): the
/// first Route URI's host and port (5060, or 5061 for `sips:`/TLS, when it has none) over
/// its `transport` parameter (UDP when absent). `Ok(None)` for an empty route set: the
/// request then goes to its Request-URI as before.
pub fn first_hop(route: &[String]) -> Result<Option<Hop>, RouteError> {
    let Some(first) = route.first() else {
        return Ok(None);
    };
    let na = NameAddr::parse(first).map_err(|_| RouteError::Malformed(first.clone()))?;
    let uri = na.uri;
    if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) {
        return Err(RouteError::Malformed(first.clone()));
    }
    if uri.param("lr").is_none() {
        return Err(RouteError::StrictRouter(first.clone()));
    }
    let transport = match (uri.scheme.clone(), uri.param("transport").flatten()) {
        (Scheme::Sips, _) => TransportKind::Tls,
        (_, None) => TransportKind::Udp,
        (_, Some(t)) if t.eq_ignore_ascii_case("udp") => TransportKind::Udp,
        (_, Some(t)) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
        (_, Some(t)) if t.eq_ignore_ascii_case("tls") => TransportKind::Tls,
        (_, Some(t)) if t.eq_ignore_ascii_case("ws") => TransportKind::Ws,
        (_, Some(t)) if t.eq_ignore_ascii_case("wss") => TransportKind::Wss,
        _ => return Err(RouteError::Transport(first.clone())),
    };
    let host = uri.host.trim_matches(|c| c == '[' || c == ']');
    let ip: IpAddr = host
        .parse()
        .map_err(|_| RouteError::NotAnAddress(first.clone()))?;
    let default_port = if transport == TransportKind::Tls {
        5061
    } else {
        5060
    };
    Ok(Some(Hop {
        addr: SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
        transport,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn register(extra: &str) -> Message {
        let raw = format!(
            "REGISTER sip:10.0.0.11 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10;branch=z9hG4bKe\r\n\
             Via: SIP/2.0/UDP 192.0.2.7:5090;branch=z9hG4bKp\r\n\
             From: <sip:alice@10.0.0.10>;tag=1\r\nTo: <sip:alice@10.0.0.10>\r\nCall-ID: c\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.1.5:5090>\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes(), Framing::Datagram).expect("parses")
    }

    #[test]
    fn path_values_in_order_across_headers_and_comma_lists() {
        let m = register(
            "Path: <sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>, <sip:p2.example;lr>\r\n\
             path: <sip:p3.example;lr>\r\n",
        );
        assert_eq!(
            path_of(&m),
            [
                "<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>",
                "<sip:p2.example;lr>",
                "<sip:p3.example;lr>"
            ]
        );
        assert!(path_of(&register("")).is_empty());
    }

    #[test]
    fn supported_path_is_an_option_tag_in_any_supported_header() {
        assert!(supports_path(&register("Supported: replaces, Path\r\n")));
        assert!(supports_path(&register("Supported: 100rel\r\nk: path\r\n")));
        assert!(!supports_path(&register("Supported: replaces, pathx\r\n")));
        assert!(!supports_path(&register("")));
    }

    #[test]
    fn column_round_trip_keeps_order_and_null_means_none() {
        let path = vec![
            "<sip:10.0.0.10:5070;lr;received=sip:192.0.2.7:5090>".to_string(),
            "<sip:p2.example;lr>".to_string(),
        ];
        let stored = to_column(&path).expect("a path is stored");
        assert_eq!(
            stored,
            "<sip:10.0.0.10:5070;lr;received=sip:192.0.2.7:5090>, <sip:p2.example;lr>"
        );
        assert_eq!(from_column(Some(&stored)), path);
        assert_eq!(to_column(&[]), None);
        assert!(from_column(None).is_empty());
        assert!(from_column(Some("  ")).is_empty());
    }

    #[test]
    fn first_hop_is_the_first_route_address() {
        let hop = |r: &[&str]| first_hop(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(hop(&[]), Ok(None));
        // Kamailio's add_path_received(): no port when 5060, the phone's address as a param.
        assert_eq!(
            hop(&[
                "<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>",
                "<sip:10.9.9.9:7000;lr>"
            ]),
            Ok(Some(Hop {
                addr: "10.0.0.10:5060".parse().expect("addr"),
                transport: TransportKind::Udp
            }))
        );
        assert_eq!(
            hop(&["<sip:127.0.0.1:35060;lr;received=sip:127.0.0.1:40000>"]),
            Ok(Some(Hop {
                addr: "127.0.0.1:35060".parse().expect("addr"),
                transport: TransportKind::Udp
            }))
        );
        assert_eq!(
            hop(&["<sip:[2001:db8::1]:5070;transport=tcp;lr>"]),
            Ok(Some(Hop {
                addr: "[2001:db8::1]:5070".parse().expect("addr"),
                transport: TransportKind::Tcp
            }))
        );
        assert_eq!(
            hop(&["<sips:10.0.0.10;lr>"]),
            Ok(Some(Hop {
                addr: "10.0.0.10:5061".parse().expect("addr"),
                transport: TransportKind::Tls
            }))
        );
        assert!(matches!(
            hop(&["<sip:10.0.0.10>"]),
            Err(RouteError::StrictRouter(_))
        ));
        assert!(matches!(
            hop(&["<sip:edge.example;lr>"]),
            Err(RouteError::NotAnAddress(_))
        ));
        assert!(matches!(
            hop(&["<sip:10.0.0.10;lr;transport=carrier-pigeon>"]),
            Err(RouteError::Transport(_))
        ));
        assert!(matches!(
            hop(&["nonsense <"]),
            Err(RouteError::Malformed(_))
        ));
        assert!(matches!(
            hop(&["<tel:+15551230000>"]),
            Err(RouteError::Malformed(_))
        ));
    }
}
