//! The dialplan model: what a validated `dialplans/*.toml` file becomes.
//!
//! Every reference (step targets, prompts) has been checked by the loader, so the interpreter
//! can index without failing. See docs/dialplan.md for the language.

use std::collections::HashMap;

use super::expr::Condition;
use super::say::SayKind;

/// One validated dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub name: String,
    pub file: String,
    pub start: String,
    pub language: String,
    pub max_steps: u32,
    pub steps: HashMap<String, Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub line: usize,
    pub action: Action,
}

/// One item of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayItem {
    /// A prompt by name; may contain `${var}` (then `fallback` is played when it is missing).
    Prompt {
        name: String,
        fallback: Option<String>,
    },
    /// A value said with fragments.
    Say { kind: SayKind, value: String },
    /// Silence in milliseconds.
    Silence(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupBy {
    Caller,
    OrderId,
}

#[derive(Debug, Clone)]
pub struct Retry {
    pub timeout_ms: u64,
    pub max_tries: u32,
    pub invalid_prompts: Vec<PlayItem>,
    pub no_input_prompts: Vec<PlayItem>,
    pub on_failure: String,
}

#[derive(Debug, Clone)]
pub enum Action {
    Play {
        prompts: Vec<PlayItem>,
        barge_in: bool,
        next: String,
    },
    Menu {
        prompts: Vec<PlayItem>,
        choices: Vec<(char, String)>,
        retry: Retry,
    },
    Collect {
        prompts: Vec<PlayItem>,
        var: String,
        min_digits: usize,
        max_digits: usize,
        terminator: Option<char>,
        inter_digit_timeout_ms: u64,
        retry: Retry,
        next: String,
    },
    Lookup {
        by: LookupBy,
        value: String,
        found: String,
        not_found: String,
        /// Where to go when the database did not answer within the lookup budget (or
        /// failed); None: `not_found`.
        unavailable: Option<String>,
    },
    Branch {
        when: Vec<(Condition, String)>,
        otherwise: String,
    },
    Set {
        vars: Vec<(String, String)>,
        next: String,
    },
    Outcome {
        choice: String,
        next: String,
    },
    Enqueue {
        queue: String,
        on_unavailable: String,
        /// Where the dialplan continues when the agent hangs up first (e.g. a satisfaction
        /// survey); None: the call ends with the agent's hang-up, as before.
        after_agent: Option<String>,
    },
    /// Record a post-call satisfaction survey (`call_surveys`): `score` must expand to 1–5,
    /// `message` (optional) to a recording's path; an invalid score goes to `on_invalid`.
    Survey {
        score: String,
        message: Option<String>,
        next: String,
        on_invalid: Option<String>,
    },
    /// Record what the caller says (after the prompts, e.g. a beep) until the terminator
    /// key or `max_ms`; the file's path goes into `var` when given. A recording with less
    /// voice than a non-zero `min_speech_ms` (or no word) is dropped: file deleted, `var`
    /// emptied (`media::speech`).
    Record {
        prompts: Vec<PlayItem>,
        max_ms: u64,
        terminator: char,
        var: Option<String>,
        min_speech_ms: u32,
        next: String,
    },
    Goto {
        next: String,
    },
    /// Business hours and holidays (`[service]`, dialplans/holidays.toml): `open` when the
    /// service is open now (or no hours are configured), else `closed`.
    Hours {
        open: String,
        closed: String,
    },
    Hangup {
        cause: String,
    },
}

impl Action {
    /// Step names this action can continue to (for load-time checks).
    pub fn targets(&self) -> Vec<&str> {
        match self {
            Action::Play { next, .. }
            | Action::Set { next, .. }
            | Action::Outcome { next, .. }
            | Action::Record { next, .. }
            | Action::Goto { next } => {
                vec![next]
            }
            Action::Menu { choices, retry, .. } => {
                let mut v: Vec<&str> = choices.iter().map(|(_, t)| t.as_str()).collect();
                v.push(&retry.on_failure);
                v
            }
            Action::Collect { retry, next, .. } => vec![next, &retry.on_failure],
            Action::Lookup {
                found,
                not_found,
                unavailable,
                ..
            } => {
                let mut v = vec![found.as_str(), not_found.as_str()];
                v.extend(unavailable.as_deref());
                v
            }
            Action::Branch { when, otherwise } => {
                let mut v: Vec<&str> = when.iter().map(|(_, t)| t.as_str()).collect();
                v.push(otherwise);
                v
            }
            Action::Enqueue {
                on_unavailable,
                after_agent,
                ..
            } => {
                let mut v = vec![on_unavailable.as_str()];
                v.extend(after_agent.as_deref());
                v
            }
            Action::Survey {
                next, on_invalid, ..
            } => {
                let mut v = vec![next.as_str()];
                v.extend(on_invalid.as_deref());
                v
            }
            Action::Hours { open, closed } => vec![open, closed],
            Action::Hangup { .. } => vec![],
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Play { .. } => "play",
            Action::Menu { .. } => "menu",
            Action::Collect { .. } => "collect",
            Action::Lookup { .. } => "lookup_ticket",
            Action::Branch { .. } => "branch",
            Action::Set { .. } => "set",
            Action::Outcome { .. } => "outcome",
            Action::Enqueue { .. } => "enqueue",
            Action::Survey { .. } => "survey",
            Action::Record { .. } => "record",
            Action::Goto { .. } => "goto",
            Action::Hours { .. } => "hours",
            Action::Hangup { .. } => "hangup",
        }
    }
}

/// The outcomes a call can record (the `call_outcomes.choice` contract).
pub const OUTCOME_CHOICES: &[&str] = &[
    "wait",
    "refund",
    "agent",
    "opt_out",
    "no_choice",
    "callback",
];
