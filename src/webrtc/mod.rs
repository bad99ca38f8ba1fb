//! WebRTC media legs for browser agents (docs/adr/0006-webrtc-str0m.md): a sans-IO session
//! over [str0m](https://github.com/algesten/str0m) — SDP offer/answer with the DTLS
//! fingerprint, ICE-lite, DTLS-SRTP, RTCP-mux, PCMU and Opus — that the call core will
//! drive as one more leg type. Not wired into `call/` yet (the call core is being
//! refactored); [`session::WebRtcLeg`] is the whole contract the core will use.

pub mod session;

pub use session::{LegEvent, WebRtcError, WebRtcLeg};
