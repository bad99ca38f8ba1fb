//! WebRTC media legs for browser agents (docs/adr/0006-webrtc-str0m.md): a sans-IO session
//! over [str0m](https://github.com/algesten/str0m) — SDP offer/answer with the DTLS
//! fingerprint, ICE-lite, DTLS-SRTP, RTCP-mux, PCMU and Opus — and the one task per leg
//! that owns its UDP socket ([`driver::run`]). Not wired into `call/` yet;
//! [`session::WebRtcLeg`] plus [`driver`] are the contract the call core will use.

pub mod driver;
pub mod session;

pub use driver::{Frame, LegNotice};
pub use session::{LegCodec, LegEvent, WebRtcError, WebRtcLeg};
