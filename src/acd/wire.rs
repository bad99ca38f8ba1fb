//! What the nodes of a cluster tell each other about queues (docs/adr/0011): the messages a
//! node sends to the ACD leader ([`Up`]), what the leader sends back to one node ([`Down`])
//! and what it announces to all ([`Broadcast`]), as JSON payloads of PostgreSQL `NOTIFY`.
//!
//! Pure: encoding, decoding and the payload limit. Only what can cross a process is here:
//! a caller's mailbox becomes the node that holds the call, a reply channel becomes a
//! request id, an agent's connection-bound flow is left behind (the node that holds the
//! connection puts it back, see `acd::shared`).

use serde::{Deserialize, Serialize};

use super::core::{AgentDef, AgentView, OfferEnd, QueueView};
use super::{AgentCommand, AgentFeed, FeatureCommand, FeatureOutcome, Reachable};

/// PostgreSQL refuses a `NOTIFY` payload of 8 000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

/// A contact as another node can use it: the URI and the edge's Path (no connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub contact: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

impl From<&Reachable> for Contact {
    fn from(r: &Reachable) -> Contact {
        Contact {
            contact: r.contact.clone(),
            path: r.path.clone(),
        }
    }
}

impl From<Contact> for Reachable {
    fn from(c: Contact) -> Reachable {
        Reachable {
            contact: c.contact,
            flow: None,
            path: c.path,
        }
    }
}

/// A node to the leader: one `AcdMsg`, with the reply (if any) addressed by `req`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Up {
    /// A caller joins, or (`waited_ms` > 0, `agent`) is re-announced to a new leader with
    /// the time it has already waited and the agent it is connected to.
    Join {
        call: String,
        queue: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        segment: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        needs: Vec<(String, i64)>,
        caller: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<i64>,
        #[serde(default)]
        waited_ms: u64,
        #[serde(default)]
        callback: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    Leave {
        call: String,
        reason: String,
    },
    OfferEnded {
        call: String,
        agent: String,
        how: OfferEnd,
    },
    Connected {
        call: String,
        agent: String,
    },
    CallEnded {
        call: String,
        by: String,
    },
    TransferToAgent {
        call: String,
        to: String,
    },
    Position {
        call: String,
    },
    Callback {
        call: String,
    },
    /// The agent's contacts registered at the sending node (empty: none there).
    Reachability {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        def: Option<AgentDef>,
        contacts: Vec<Contact>,
    },
    BrowserPhone {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        def: Option<AgentDef>,
        on: bool,
        /// The sending node's SIP address: where other nodes' callers reach this page
        /// (`acd::peer`). Absent from nodes before the inter-node browser leg.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sip: Option<String>,
    },
    Command {
        req: u64,
        agent: String,
        command: AgentCommand,
    },
    Feature {
        req: u64,
        agent: String,
        source: std::net::SocketAddr,
        command: FeatureCommand,
    },
    Agents {
        req: u64,
    },
    Queues {
        req: u64,
    },
}

/// The leader to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Down {
    Queued {
        call: String,
        position: usize,
    },
    Unavailable {
        call: String,
        reason: String,
    },
    Position {
        call: String,
        position: usize,
        ewt_s: u64,
    },
    Offer {
        call: String,
        agent: String,
        contacts: Vec<Contact>,
        browser: bool,
        ring_timeout_ms: u64,
    },
    /// The reply to `Up::Command` (the agent's new state; None: unknown agent).
    State {
        req: u64,
        state: Option<super::AgentState>,
    },
    Feature {
        req: u64,
        outcome: Option<FeatureOutcome>,
    },
    Agents {
        req: u64,
        agents: Vec<AgentView>,
    },
    Queues {
        req: u64,
        queues: Vec<QueueView>,
    },
}

/// The leader to every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Broadcast {
    /// A new leader took over (`epoch` grows with every take-over): every node re-sends
    /// what it holds (its callers, its agents' contacts and browser phones).
    Leader { node: String, epoch: i64 },
    /// The screen-pop and dashboard feed, for every node's subscribers.
    Feed { feed: AgentFeed },
}

/// Why a payload cannot be sent or read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("payload of {0} bytes is over the NOTIFY limit")]
    TooLarge(usize),
    #[error("malformed payload: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// JSON within [`MAX_PAYLOAD`].
pub fn encode<T: Serialize>(msg: &T) -> Result<String, WireError> {
    let s = serde_json::to_string(msg)?;
    if s.len() > MAX_PAYLOAD {
        return Err(WireError::TooLarge(s.len()));
    }
    Ok(s)
}

pub fn decode<'a, T: Deserialize<'a>>(payload: &'a str) -> Result<T, WireError> {
    Ok(serde_json::from_str(payload)?)
}

/// The `NOTIFY` channel of one node: a fixed prefix and a hash of its id, so any valid node
/// id gives a short, plain identifier.
pub fn node_channel(node: &str) -> String {
    // FNV-1a: stable across builds and machines (the std hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sb_acd_n_{h:016x}")
}

/// Requests to the leader.
pub const LEADER_CHANNEL: &str = "sb_acd";
/// Announcements to all.
pub const BROADCAST_CHANNEL: &str = "sb_acd_all";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let ups = vec![
            Up::Join {
                call: "c1".into(),
                queue: "support".into(),
                segment: Some("vip".into()),
                needs: vec![("lang:zh".into(), 1)],
                caller: "+8613800000000".into(),
                ticket_id: Some(7),
                waited_ms: 1200,
                callback: true,
                agent: Some("alice".into()),
            },
            Up::Leave {
                call: "c1".into(),
                reason: "abandon".into(),
            },
            Up::OfferEnded {
                call: "c1".into(),
                agent: "a".into(),
                how: OfferEnd::NoAnswer,
            },
            Up::Reachability {
                name: "alice".into(),
                def: Some(AgentDef {
                    name: "alice".into(),
                    queues: vec!["support".into()],
                    skills: vec![("lang:zh".into(), 2)],
                }),
                contacts: vec![Contact {
                    contact: "<sip:alice@127.0.0.1:5070>".into(),
                    path: vec!["<sip:127.0.0.9;lr>".into()],
                }],
            },
            Up::Command {
                req: 3,
                agent: "alice".into(),
                command: AgentCommand::Pause("lunch".into()),
            },
            Up::Feature {
                req: 4,
                agent: "alice".into(),
                source: "127.0.0.1:5070".parse().expect("test value"),
                command: FeatureCommand::TogglePause,
            },
            Up::Queues { req: 5 },
        ];
        for m in ups {
            let s = encode(&m).expect("test value");
            assert_eq!(decode::<Up>(&s).expect("test value"), m, "{s}");
        }
        let d = Down::Offer {
            call: "c1".into(),
            agent: "alice".into(),
            contacts: vec![],
            browser: true,
            ring_timeout_ms: 15_000,
        };
        assert_eq!(
            decode::<Down>(&encode(&d).expect("test value")).expect("test value"),
            d
        );
    }

    #[test]
    fn a_join_is_small_and_an_oversized_payload_is_refused() {
        let join = Up::Join {
            call: "0123456789abcdef0123456789abcdef@203.0.113.7".into(),
            queue: "support".into(),
            segment: None,
            needs: vec![],
            caller: "+8613800000000".into(),
            ticket_id: Some(1),
            waited_ms: 0,
            callback: false,
            agent: None,
        };
        assert!(encode(&join).expect("test value").len() < 300);
        let huge = Up::Leave {
            call: "x".repeat(MAX_PAYLOAD),
            reason: "r".into(),
        };
        assert!(matches!(encode(&huge), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["", "{", "{\"t\":\"nope\"}", "[1,2]", "{\"t\":\"join\"}"] {
            assert!(decode::<Up>(bad).is_err(), "{bad}");
            assert!(decode::<Down>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_channels_are_plain_and_distinct() {
        let a = node_channel("node-a");
        let b = node_channel("node-b");
        assert_ne!(a, b);
        assert_eq!(a, node_channel("node-a"));
        assert!(a.len() < 63 && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    }
}
