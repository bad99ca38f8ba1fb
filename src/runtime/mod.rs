//! Runtime shell pieces that touch the OS: RTP port allocation, shutdown plumbing and the
//! threads' scheduling policy, the call runtime and its lag probe, datagrams with their
//! queueing age.

pub mod calls;
pub mod ports;
pub mod priority;
pub mod stamped;
