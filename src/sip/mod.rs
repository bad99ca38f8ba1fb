//! SIP signalling: message model and parser, URIs, SDP offer/answer, transactions, dialogs
//! and the UDP, TCP, TLS and WebSocket transports (RFC 3261, RFC 3264, RFC 3581, RFC 7118);
//! Path and pre-loaded route sets (RFC 3327).
//!
//! Our own sans-IO core rather than `rsip`/`rsipstack`: see docs/adr/0001-own-sip-core.md.

pub mod auth;
pub mod build;
pub mod dialog;
pub mod guard;
pub mod message;
pub mod path;
pub mod reg_table;
pub mod registration;
pub mod sdp;
pub mod session_timer;
pub mod tls;
pub mod transaction;
pub mod transport;
pub mod uri;
pub mod ws;
