//! Call-side dialog helpers: the SIP building blocks the call code uses under their old
//! paths, and the DTMF digit of an INFO body. The dialog itself (route set, CSeqs, targets,
//! the re-INVITE/UPDATE glare rules) is the sans-IO core `crate::sip::dialog`.

// The SIP-level pieces (timer values, tags, branches, our identity, responses) live in
// `sip::build` so services below `call` (registrar, trunk registration) can use them without
// importing `call`; re-exported here so call code keeps its paths.
pub use crate::sip::build::{
    new_branch, new_tag, response, LocalIdentity, ALLOW, T1, T2, TIMEOUT_64T1,
};
pub use crate::sip::dialog::Dialog;

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
