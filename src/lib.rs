//! switchboard: a telephony call-center and proactive outbound-dialing server.
//!
//! Layers (see docs/architecture.md): protocol cores are sans-IO state machines (`sip`,
//! `media`, `ivr`), driven by thin tokio shells (`call` actors, `runtime`); services
//! (`store`) talk to calls by bounded messages; `api` serves HTTP.

pub mod acd;
pub mod api;
pub mod call;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dialer;
pub mod http_client;
pub mod ivr;
pub mod media;
pub mod metrics;
pub mod net;
pub mod registrar;
pub mod runtime;
pub mod server;
pub mod sip;
pub mod store;
pub mod trunk_reg;
pub mod webrtc;

/// The layer rule (docs/architecture.md) checked over the source tree.
#[cfg(test)]
mod layers;
