//! Runtime shell pieces that touch the OS: RTP port allocation, shutdown plumbing and the
//! threads' scheduling policy.

pub mod ports;
pub mod priority;
