//! Runtime shell pieces that touch the OS: RTP port allocation, shutdown plumbing and the
//! threads' scheduling policy, datagrams with their queueing age.

pub mod ports;
pub mod priority;
pub mod stamped;
