//! Runtime shell pieces that touch the OS: RTP port allocation and shutdown plumbing.

pub mod ports;
