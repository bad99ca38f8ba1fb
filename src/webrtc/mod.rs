//! WebRTC media legs for browser agents (docs/adr/0006-webrtc-str0m.md): a sans-IO session
//! over [str0m](https://github.com/algesten/str0m) — SDP offer/answer with the DTLS
//! fingerprint, ICE-lite, DTLS-SRTP, RTCP-mux, PCMU and Opus — and the one task per leg
//! that owns its UDP socket ([`driver::run`]) — and the registry of browser phones
//! ([`phones::Phones`]: which agents take calls in the page, and their rings). The call core
//! uses them for browser agent legs (`call/actor/browser_leg.rs`).

pub mod driver;
pub mod phones;
pub mod session;

pub use driver::{Frame, LegNotice};
pub use session::{LegCodec, LegEvent, WebRtcError, WebRtcLeg};
