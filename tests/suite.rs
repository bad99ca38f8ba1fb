//! The integration tests, one binary: every `tests/<name>.rs` is a module here.
//!
//! Why one binary: each test binary links the whole crate (about a minute of CI per binary
//! and hundreds of MB of disk); one binary links once. Run a file's tests with
//! `cargo test --test suite <name>::` (e.g. `cargo test --test suite hotline_sipp::`), or
//! `scripts/test <name>::`. A new test file is added to the list below.

#[path = "support/campaign.rs"]
mod campaign;
#[path = "support/sip_stream.rs"]
mod sip_stream;
mod support;

mod acd_baresip;
mod acd_sipp;
mod amd;
mod bench_smoke;
mod campaign_cli;
mod campaign_large;
mod campaign_sipp;
mod campaign_sms;
mod codecs;
mod concurrent_writer;
mod crash_recovery;
mod dialog_sipp;
mod dialplan_reload;
mod dtmf_inband;
mod hotline_sipp;
mod pg_outage;
mod registrar;
mod rfc4475_parse;
mod rtcp;
mod sip_guard;
mod sip_robustness;
mod sip_tls;
mod sip_ws;
mod store;
mod trunk_acl;
mod trunk_sipp;
mod voicemail;
