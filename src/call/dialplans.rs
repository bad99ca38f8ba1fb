//! The dialplan set calls read: loading every plan of `dialplan_dir` at start and
//! reloading it on SIGHUP or `POST /api/dialplans/reload`. A module of its own, used by both
//! `server` (start, SIGHUP) and `api` (the endpoint), so neither imports the other.

use std::sync::Arc;

use super::CallContext;
use crate::config::Config;
use crate::ivr::loader::{DialplanSet, LoadContext, LoadError};
use crate::media::prompts::PromptLibrary;

pub fn load_dialplans(
    cfg: &Config,
    prompts: &PromptLibrary,
) -> Result<DialplanSet, Vec<LoadError>> {
    let exists = |lang: &str, name: &str| prompts.has(lang, name);
    let set = DialplanSet::load_dir(
        &cfg.dialplan_dir,
        &LoadContext {
            prompt_exists: &exists,
            queues: &cfg.queues,
        },
    )?;
    let mut errors = Vec::new();
    for r in &cfg.routes {
        if set.get(&r.dialplan).is_none() {
            errors.push(LoadError {
                file: cfg.source.clone(),
                line: r.line,
                reason: format!(
                    "route '{}' uses dialplan '{}', which is not in {}",
                    r.to,
                    r.dialplan,
                    cfg.dialplan_dir.display()
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Reload every dialplan in `dialplan_dir` (SIGHUP and `POST /api/dialplans/reload`): all or
/// nothing — the running set is replaced only when every file loads and every route finds
/// its plan. Returns the loaded plan names (sorted) or every `file:line: reason` error.
///
/// Reloads are serialized: without it, a slow reload that started first could finish last
/// and put back an older view of the folder over a newer one.
pub fn reload_dialplans(ctx: &CallContext) -> Result<Vec<String>, Vec<LoadError>> {
    static RELOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = RELOAD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let set = load_dialplans(&ctx.config, &ctx.prompts)?;
    let mut names: Vec<String> = set.plans.keys().cloned().collect();
    names.sort();
    match ctx.dialplans.write() {
        Ok(mut g) => *g = Arc::new(set),
        Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
    }
    Ok(names)
}
