//! Dialog helpers for the UAS side (RFC 3261 §12): building our responses and the requests
//! we send inside a dialog (BYE), plus the RFC 3261 §17 timer values.

use crate::sip::message::{HeaderName, Message, StartLine};
use crate::sip::uri::Uri;

// The SIP-level pieces (timer values, tags, branches, our identity, responses) live in
// `sip::build` so services below `call` (registrar, trunk registration) can use them without
// importing `call`; re-exported here so call code keeps its paths.
pub use crate::sip::build::{
    new_branch, new_tag, response, LocalIdentity, ALLOW, T1, T2, TIMEOUT_64T1,
};

/// The pieces of a UAS dialog needed to send requests in it.
#[derive(Debug, Clone)]
pub struct DialogState {
    pub call_id: String,
    /// Our From value when we send requests: the INVITE's To plus our tag.
    pub local_party: String,
    /// The remote party: the INVITE's From, tag included.
    pub remote_party: String,
    pub remote_target: Uri,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

impl DialogState {
    /// Build an in-dialog request (RFC 3261 §12.2.1.1).
    pub fn request(
        &mut self,
        method: crate::sip::message::Method,
        local: &LocalIdentity,
    ) -> (Message, String) {
        self.local_cseq += 1;
        let branch = new_branch();
        let mut m = Message {
            start: StartLine::Request {
                method: method.clone(),
                uri: self.remote_target.clone(),
            },
            headers: Vec::with_capacity(10),
            body: bytes::Bytes::new(),
        };
        m.push_header(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                local.transport.via_name(),
                local.via_host
            ),
        );
        m.push_header(HeaderName::MaxForwards, "70");
        m.push_header(HeaderName::From, self.local_party.clone());
        m.push_header(HeaderName::To, self.remote_party.clone());
        m.push_header(HeaderName::CallId, self.call_id.clone());
        m.push_header(HeaderName::CSeq, format!("{} {}", self.local_cseq, method));
        for r in &self.route_set {
            m.push_header(HeaderName::Route, r.clone());
        }
        m.push_header(HeaderName::UserAgent, local.user_agent.clone());
        (m, branch)
    }
}

/// Parse a SIP INFO body carrying a DTMF digit: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`).
pub fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let raw = match ct.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
                .map(|(_, v)| v.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    let c = match raw {
        "10" => '*',
        "11" => '#',
        s if s.len() == 1 => s.chars().next()?.to_ascii_uppercase(),
        _ => return None,
    };
    "0123456789*#ABCD".contains(c).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_digits() {
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(info_digit("Application/DTMF", b"11"), Some('#'));
        assert_eq!(info_digit("application/dtmf", b"x"), None);
        assert_eq!(info_digit("text/plain", b"5"), None);
        assert!(new_branch().starts_with("z9hG4bK"));
    }
}
