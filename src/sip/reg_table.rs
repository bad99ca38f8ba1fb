//! The latest registration status of every registering trunk (`[[trunk]] register =
//! true`): published by the registration tasks (`trunk_reg`), read by the API. A shared
//! table rather than part of the `registration` core, which stays sans-IO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::registration::RegStatus;

/// The latest status of every registering trunk, by name; cheap to clone.
#[derive(Clone, Default)]
pub struct TrunkRegistrations {
    inner: Arc<Mutex<HashMap<String, (RegStatus, Instant)>>>,
}

impl TrunkRegistrations {
    /// Record `trunk`'s status as of `at` (the registration shell, `trunk_reg`).
    pub fn publish(&self, trunk: &str, status: RegStatus, at: Instant) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(trunk.to_string(), (status, at));
    }

    /// `trunk`'s status as of now (None: the trunk does not register).
    pub fn status(&self, trunk: &str) -> Option<RegStatus> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (st, at) = m.get(trunk)?;
        let mut st = st.clone();
        let passed = at.elapsed().as_secs();
        st.expires_in = st
            .expires_in
            .and_then(|e| e.checked_sub(passed))
            .filter(|e| *e > 0);
        st.registered = st.expires_in.is_some();
        Some(st)
    }
}
