//! Outbound campaign dialer: delivery-delay campaigns that call customers back.
//!
//! `core` holds the pure decision rules (calling windows, customer time zones, pacing, retries,
//! the dial gate); the database and SIP shells drive it. `sms` is the SMS fallback after a
//! contact's last failed attempt; `sms_reply`
//! reads the customer's answer to it (`POST /api/sms/inbound`).

pub mod core;
pub mod gate;
pub mod service;
pub mod share;
pub mod sms;
pub mod sms_reply;
pub mod zones;

pub use service::{retry_policy_from_json, DialerHandle, DialerHttp};
