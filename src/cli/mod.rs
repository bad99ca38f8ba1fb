//! Operator commands that talk to a running server over its HTTP API (docs/api.md) rather
//! than to the database: `switchboard campaign ...`, through the crate's one HTTP client
//! (`crate::http_client`).

pub mod campaign;
