//! The inter-node leg to a browser agent (docs/adr/0011, "As built"): pure decisions.
//!
//! With queues shared by the cluster, a caller on node B may be offered to an agent whose
//! `/agent` page (its browser phone) is served by node A. Only A can ring that page, so the
//! leader's offer to B carries a SIP contact at A's SIP address, marked with the URI
//! parameter [`MARKER`] ([`contact`]); B rings it like any SIP agent contact, adding
//! [`CALL_HEADER`] with its call's ACD id (the screen pop and the disposition are B's call).
//! A takes such an INVITE only from a running cluster peer ([`is_peer`]) and only for an
//! agent whose browser phone is on there ([`admit`]), and rings the page for it.
//!
//! The page's hold and blind transfer act on B's call, so A asks B for them exactly as a SIP
//! agent phone would: a re-INVITE offering `sendonly` (hold) or `sendrecv` (resume), and a
//! REFER whose Refer-To names the queue or agent at B ([`refer_to`]); B's agent-leg code
//! does the rest (music on hold, `on_refer`). The pad's DTMF needs nothing: RFC 4733 events
//! go through both nodes' relays like the audio.
//!
//! Here: building and reading the marker, the peer check against the `nodes` table, the
//! admission answer and the Refer-To. The call actor (`call::actor::peer_leg`) only wires
//! them.

use std::net::SocketAddr;

use crate::sip::uri::Uri;
use crate::store::nodes::NodeRow;

/// The Request-URI parameter that says "ring this agent's browser phone on this node".
pub const MARKER: &str = "sb-browser";
/// The header with the ACD call id of the caller's node (the call the agent's page shows
/// and whose disposition it writes).
pub const CALL_HEADER: &str = "X-Switchboard-Call";

/// The contact at which node `sip_addr` rings `agent`'s browser phone.
pub fn contact(agent: &str, sip_addr: &str) -> String {
    format!("<sip:{agent}@{sip_addr};{MARKER}>")
}

/// The agent whose browser phone a marked Request-URI asks for (None: not a peer leg).
pub fn marked_agent(uri: &Uri) -> Option<&str> {
    uri.params
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(MARKER))
        .then_some(uri.user.as_deref())
        .flatten()
        .filter(|u| !u.is_empty())
}

/// Whether `source` (where the INVITE came from) is the SIP socket of a running node other
/// than `me`. The inter-node leg goes over UDP from the sending node's SIP socket, so the
/// whole address (IP and port) must be a node's `sip_addr`: a stranger on the same host
/// (another port) or behind the same address is no peer.
pub fn is_peer(source: SocketAddr, nodes: &[NodeRow], me: &str) -> bool {
    nodes.iter().any(|n| {
        n.node_id != me
            && matches!(n.state.as_str(), "running" | "draining")
            && n.sip_addr
                .as_deref()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .is_some_and(|a| a == source)
    })
}

/// Why a marked INVITE is refused: its status code and reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
}

/// Whether node A takes a marked INVITE: from a peer (`peer`, [`is_peer`]; None: the
/// `nodes` table could not be read), naming B's call (`call`), for an agent whose browser
/// phone is on here (`phone_on`).
pub fn admit(peer: Option<bool>, call: Option<&str>, phone_on: bool) -> Result<(), Refusal> {
    match peer {
        None => {
            return Err(Refusal {
                code: 503,
                reason: "Cluster Membership Unavailable",
            })
        }
        Some(false) => {
            return Err(Refusal {
                code: 403,
                reason: "Browser Leg Only From A Cluster Peer",
            })
        }
        Some(true) => {}
    }
    if call.is_none_or(|c| c.trim().is_empty()) {
        return Err(Refusal {
            code: 400,
            reason: "Missing X-Switchboard-Call",
        });
    }
    if !phone_on {
        return Err(Refusal {
            code: 480,
            reason: "Browser Phone Off",
        });
    }
    Ok(())
}

/// The answer to B when the page did not take the call: rejected → busy, anything else
/// (no answer, page gone, media failed) → temporarily unavailable.
pub fn failure_status(how: super::OfferEnd) -> (u16, &'static str) {
    match how {
        super::OfferEnd::Busy => (486, "Busy Here"),
        _ => (480, "Temporarily Unavailable"),
    }
}

/// The Refer-To of A's REFER to B for a blind transfer to `name` (a queue, or an agent:
/// B's `on_refer` resolves a queue's name first), at `node`, B's URI in the dialog (its
/// Contact): `<sip:NAME@B_HOST:PORT>`. The name is escaped as a URI user part (RFC 3261
/// §25.1: unreserved characters stay, the rest as `%HH`), so B reads back the same name.
pub fn refer_to(name: &str, node: &Uri) -> String {
    let mut user = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            user.push(char::from(b));
        } else {
            user.push_str(&format!("%{b:02X}"));
        }
    }
    format!("<{}>", Uri::sip(Some(&user), &node.host, node.port))
}

/// The status code of a `message/sipfrag` body (RFC 3420) in a REFER's NOTIFY: its first
/// line, `SIP/2.0 200 OK`. None when it is no status line.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.lines().next()?.split_whitespace();
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..700).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::OfferEnd;

    fn node(id: &str, state: &str, sip: Option<&str>) -> NodeRow {
        NodeRow {
            node_id: id.into(),
            state: state.into(),
            started_at: String::new(),
            heartbeat_at: String::new(),
            version: String::new(),
            sip_addr: sip.map(str::to_string),
            http_addr: None,
            heartbeat_age_s: 0.0,
        }
    }

    #[test]
    fn the_contact_carries_the_marker_and_reads_back_as_the_agent() {
        let c = contact("alice", "10.0.0.2:5070");
        assert_eq!(c, "<sip:alice@10.0.0.2:5070;sb-browser>");
        let uri = Uri::parse(c.trim_matches(|c| c == '<' || c == '>')).expect("uri");
        assert_eq!(marked_agent(&uri), Some("alice"));
        assert_eq!(uri.port, Some(5070));
        let plain = Uri::parse("sip:alice@10.0.0.2:5070").expect("uri");
        assert_eq!(marked_agent(&plain), None, "an ordinary agent contact");
        let no_user = Uri::parse("sip:10.0.0.2:5070;sb-browser").expect("uri");
        assert_eq!(marked_agent(&no_user), None);
    }

    #[test]
    fn only_a_running_peers_sip_socket_is_a_peer() {
        let nodes = [
            node("a", "running", Some("127.0.0.1:5070")),
            node("b", "running", Some("127.0.0.1:5071")),
            node("c", "dead", Some("127.0.0.1:5072")),
            node("d", "running", None),
        ];
        let at = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(is_peer(at("127.0.0.1:5071"), &nodes, "a"));
        assert!(!is_peer(at("127.0.0.1:5070"), &nodes, "a"), "not itself");
        assert!(!is_peer(at("127.0.0.1:5072"), &nodes, "a"), "a dead node");
        assert!(
            !is_peer(at("127.0.0.1:40000"), &nodes, "a"),
            "same host, another port: a stranger"
        );
        assert!(!is_peer(at("10.0.0.9:5071"), &nodes, "a"));
    }

    #[test]
    fn admission_refuses_strangers_missing_calls_and_phones_off() {
        assert_eq!(admit(Some(true), Some("c1"), true), Ok(()));
        assert_eq!(
            admit(Some(false), Some("c1"), true).map_err(|r| r.code),
            Err(403)
        );
        assert_eq!(admit(None, Some("c1"), true).map_err(|r| r.code), Err(503));
        assert_eq!(admit(Some(true), None, true).map_err(|r| r.code), Err(400));
        assert_eq!(
            admit(Some(true), Some(" "), true).map_err(|r| r.code),
            Err(400)
        );
        assert_eq!(
            admit(Some(true), Some("c1"), false).map_err(|r| r.code),
            Err(480)
        );
        // The peer check comes first: a stranger learns nothing about the agents.
        assert_eq!(
            admit(Some(false), None, false).map_err(|r| r.code),
            Err(403)
        );
    }

    /// The Refer-To names the target at B's address, and reads back (as B's `on_refer`
    /// parses it) as the same name, odd characters included.
    #[test]
    fn refer_to_names_the_target_at_the_callers_node() {
        let b = Uri::parse("sip:sb@10.0.0.3:5071;transport=udp").expect("uri");
        assert_eq!(refer_to("sales", &b), "<sip:sales@10.0.0.3:5071>");
        for name in ["sales", "agent.bob", "a b;c@d%e", "ünïcode"] {
            let r = refer_to(name, &b);
            let inner = r.trim_start_matches('<').trim_end_matches('>');
            let u = Uri::parse(inner).unwrap_or_else(|_| panic!("{r} parses"));
            assert_eq!(u.user.as_deref(), Some(name), "{r}");
            assert_eq!((u.host.as_str(), u.port), ("10.0.0.3", Some(5071)));
            assert!(u.params.is_empty(), "{r}");
        }
        let v6 = Uri::parse("sip:[::1]:5072").expect("uri");
        assert_eq!(refer_to("q", &v6), "<sip:q@[::1]:5072>");
    }

    #[test]
    fn sipfrag_status_reads_the_status_line() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 603 Declined\r\nX: y\r\n"),
            Some(603)
        );
        assert_eq!(sipfrag_status(b""), None);
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 9999 Odd"), None);
    }

    #[test]
    fn a_rejecting_page_is_busy_anything_else_unavailable() {
        assert_eq!(failure_status(OfferEnd::Busy).0, 486);
        assert_eq!(failure_status(OfferEnd::NoAnswer).0, 480);
        assert_eq!(failure_status(OfferEnd::Failed).0, 480);
        assert_eq!(failure_status(OfferEnd::Cancelled).0, 480);
    }
}
