//! Operator commands that talk to a running server over its HTTP API (docs/api.md) rather
//! than to the database: `switchboard campaign ...`. `http` is the small HTTP/1.1 client they
//! share.

pub mod campaign;
pub mod http;
