//! Building the SIP messages we send (RFC 3261): the §17 timer values, fresh tags and
//! branches (§8.1.1.7), how our side looks on the wire, and responses with our standard
//! headers. SIP-level helpers shared by the call actors, the registrar and trunk
//! registration; `call::dialog` re-exports them.

use std::time::Duration;

use rand::Rng;

use super::message::{HeaderName, Message};
use super::transport::TransportKind;

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// 64·T1: how long a transaction may wait for its answer (Timers B, F, H, J).
pub const TIMEOUT_64T1: Duration = Duration::from_secs(32);

pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";

pub fn new_tag() -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// RFC 3261 §8.1.1.7 magic-cookie branch.
pub fn new_branch() -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("z9hG4bK{n:016x}")
}

/// What our side of a dialog looks like on the wire.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    pub contact: String,
    pub via_host: String,
    pub transport: TransportKind,
    pub user_agent: String,
}

/// A response to `req` with our standard headers. `to_tag` is added to To when missing.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    local: &LocalIdentity,
) -> Message {
    let mut r = req.response(code, reason, to_tag);
    let dialog_forming = matches!(req.method(), Some(crate::sip::message::Method::Invite))
        && (101..300).contains(&code);
    if dialog_forming {
        // RFC 3261 §12.1.1: the UAS copies Record-Route into dialog-creating responses.
        for h in req
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::RecordRoute)
        {
            r.headers.push(h.clone());
        }
        r.push_header(HeaderName::Contact, local.contact.clone());
    }
    if code == 200 || code == 405 {
        r.push_header(HeaderName::Allow, ALLOW);
    }
    r.push_header(HeaderName::Other("Server".into()), local.user_agent.clone());
    r
}
