//! `GET /api/trunks`: every `[[trunk]]` with its limits, channels in use, failover and, for
//! a trunk with `register = true`, where its registration with the carrier stands.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;

pub async fn list(State(s): State<Arc<ApiState>>) -> Json<Value> {
    let ctx = &s.ctx;
    let trunks: Vec<Value> = ctx
        .config
        .trunks
        .iter()
        .map(|t| {
            let reg = t
                .register
                .then(|| ctx.trunk_registrations.status(&t.name))
                .flatten();
            json!({
                "name": t.name,
                "address": t.address.to_string(),
                "transport": t.transport.as_str(),
                "max_channels": t.max_channels,
                "max_cps": t.max_cps,
                "active_channels": ctx.trunk_gates.active(&t.name),
                // In a cluster: this node's block of the trunk's max_channels (null on a
                // single node, which holds them all).
                "node_channels": ctx.trunk_gates.share(&t.name),
                "failover": t.failover,
                "register": t.register,
                // null for a trunk that does not register; false until the first 2xx.
                "registered": t.register.then(|| reg.as_ref().is_some_and(|r| r.registered)),
                "registration_state": reg.as_ref().map(|r| r.phase.as_str()),
                "expires_in": reg.as_ref().and_then(|r| r.expires_in),
                "registrations": reg.as_ref().map(|r| r.successes),
                "last_error": reg.as_ref().and_then(|r| r.last_error.clone()),
            })
        })
        .collect();
    Json(json!({ "trunks": trunks }))
}
