//! Dialplan interpreter: a pure state machine that runs one call through one [`Dialplan`].
//!
//! Inputs: `start`, `handle_digit`, `handle_playback_finished(id)`, `handle_timeout(now)`,
//! `handle_lookup_result`, `handle_enqueue_unavailable`. Outputs: [`Output`]s drained with
//! `poll_output` (play, stop, look up a ticket, record an outcome, log an event, enqueue,
//! hang up) and `poll_timeout` (the one deadline it waits for). No I/O, no clock: tests run
//! it in virtual time, the call actor runs it for real.
//!
//! Key presses are buffered (type-ahead): a digit pressed during a prompt stops the prompt
//! (barge-in) and is consumed by the next menu or collect step, as callers expect from
//! Asterisk/FreeSWITCH IVRs. An invalid choice flushes the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dialplan::{Action, Dialplan, LookupBy, PlayItem, Retry};
use super::expr::{expand, Vars};
use super::hours::ServiceHours;
use super::say::say;
use chrono::{DateTime, Utc};

const MAX_BUFFERED_DIGITS: usize = 64;

/// A playlist entry resolved to prompt names in the call's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRef {
    Prompt {
        lang: String,
        name: String,
        fallback: Option<String>,
    },
    Silence(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Play {
        id: u32,
        items: Vec<PromptRef>,
    },
    StopPlayback,
    Lookup {
        by: LookupBy,
        value: String,
    },
    Outcome {
        choice: String,
    },
    Event {
        kind: &'static str,
        detail: String,
    },
    Enqueue {
        queue: String,
    },
    /// Start recording the caller into a file named after `step`; put its path in `var`.
    /// With `min_speech_ms` > 0 the caller's side drops the file at `StopRecording` when it
    /// holds less voice than that.
    StartRecording {
        step: String,
        var: Option<String>,
        min_speech_ms: u32,
    },
    StopRecording,
    /// A post-call survey answer (`survey` step): a score of 1–5 and maybe a recording.
    Survey {
        score: u8,
        message: Option<String>,
    },
    Hangup {
        cause: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The step's prompts are playing (id).
    Prompting(u32),
    /// Invalid/no-input feedback is playing (id); the step's prompts follow.
    Feedback(u32),
    /// Waiting for input until the deadline.
    Waiting(Instant),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    Nothing,
    Play {
        id: u32,
        next: String,
        barge_in: bool,
    },
    Menu {
        step: String,
        attempt: u32,
        phase: Phase,
    },
    Collect {
        step: String,
        attempt: u32,
        phase: Phase,
        digits: String,
    },
    Lookup {
        step: String,
    },
    Enqueue {
        step: String,
    },
    Record {
        step: String,
        /// Prompts playing (id) before the recording starts.
        prompting: Option<u32>,
        /// The recording's end at the latest (None while prompting).
        until: Option<Instant>,
    },
    Done,
}

#[derive(Debug)]
pub struct Interpreter {
    plan: Arc<Dialplan>,
    vars: Vars,
    wait: Wait,
    buffer: VecDeque<char>,
    outputs: VecDeque<Output>,
    steps_taken: u32,
    next_play_id: u32,
    now: Instant,
    /// Business hours and the wall clock at one instant (`set_clock`); None: always open.
    clock: Option<(Arc<ServiceHours>, DateTime<Utc>, Instant)>,
}

impl Interpreter {
    pub fn new(plan: Arc<Dialplan>, vars: Vars) -> Interpreter {
        let mut vars = vars;
        vars.entry("language".to_string())
            .or_insert_with(|| plan.language.clone());
        Interpreter {
            plan,
            vars,
            wait: Wait::Nothing,
            buffer: VecDeque::new(),
            outputs: VecDeque::new(),
            steps_taken: 0,
            next_play_id: 1,
            now: Instant::now(),
            clock: None,
        }
    }

    /// The service's hours and the wall-clock time `wall` at the instant `at`: `hours` steps
    /// judge the wall time then (advanced by the call's elapsed time). Tests pass a fixed one.
    pub fn set_clock(&mut self, hours: Arc<ServiceHours>, wall: DateTime<Utc>, at: Instant) {
        self.clock = Some((hours, wall, at));
    }

    /// Open, or closed with the next opening (local `YYYY-MM-DD HH:MM`, if any).
    fn service_open(&self) -> (bool, Option<String>) {
        let Some((hours, wall, at)) = &self.clock else {
            return (true, None);
        };
        let elapsed = self.now.saturating_duration_since(*at);
        let now = *wall + chrono::Duration::from_std(elapsed).unwrap_or_default();
        if hours.is_open(now) {
            return (true, None);
        }
        let next = hours
            .next_opening(now)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string());
        (false, next)
    }

    /// Set a variable from outside the dialplan (e.g. `queue_status` when a queue refuses).
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
    }

    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    pub fn is_done(&self) -> bool {
        self.wait == Wait::Done
    }

    pub fn start(&mut self, now: Instant) {
        self.now = now;
        let start = self.plan.start.clone();
        self.run(start);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.wait {
            Wait::Menu {
                phase: Phase::Waiting(d),
                ..
            }
            | Wait::Collect {
                phase: Phase::Waiting(d),
                ..
            } => Some(*d),
            Wait::Record { until, .. } => *until,
            _ => None,
        }
    }

    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        self.now = now;
        if self.wait == Wait::Done {
            return;
        }
        if self.buffer.len() < MAX_BUFFERED_DIGITS {
            self.buffer.push_back(digit);
        }
        match self.wait.clone() {
            Wait::Play {
                next,
                barge_in: true,
                ..
            } => {
                // Barge-in: stop the prompt, keep the digit for the next input step.
                self.outputs.push_back(Output::StopPlayback);
                self.run(next);
            }
            Wait::Menu { phase, .. } | Wait::Collect { phase, .. } => {
                if matches!(phase, Phase::Prompting(_) | Phase::Feedback(_)) {
                    self.outputs.push_back(Output::StopPlayback);
                }
                self.consume_input();
            }
            Wait::Record {
                step,
                until: Some(_),
                ..
            } => {
                // While recording, only the terminator counts; it is not type-ahead.
                self.buffer.clear();
                if self.record_terminator(&step) == Some(digit) {
                    self.finish_recording(&step, "terminator");
                }
            }
            Wait::Record { until: None, .. } => {
                // Keys during the beep are not part of the message.
                self.buffer.clear();
            }
            _ => {}
        }
    }

    fn record_terminator(&self, step: &str) -> Option<char> {
        match self.plan.steps.get(step).map(|s| &s.action) {
            Some(Action::Record { terminator, .. }) => Some(*terminator),
            _ => None,
        }
    }

    fn start_recording(&mut self, step: String) {
        let (max_ms, var, min_speech_ms) = match self.plan.steps.get(&step).map(|s| &s.action) {
            Some(Action::Record {
                max_ms,
                var,
                min_speech_ms,
                ..
            }) => (*max_ms, var.clone(), *min_speech_ms),
            _ => return,
        };
        self.buffer.clear();
        self.outputs.push_back(Output::StartRecording {
            step: step.clone(),
            var,
            min_speech_ms,
        });
        self.wait = Wait::Record {
            step,
            prompting: None,
            until: Some(self.now + Duration::from_millis(max_ms)),
        };
    }

    fn finish_recording(&mut self, step: &str, why: &str) {
        self.outputs.push_back(Output::StopRecording);
        self.outputs.push_back(Output::Event {
            kind: "record_end",
            detail: format!("{step}:{why}"),
        });
        if let Some(Action::Record { next, .. }) = self.plan.steps.get(step).map(|s| &s.action) {
            let next = next.clone();
            self.run(next);
        }
    }

    pub fn handle_playback_finished(&mut self, now: Instant, id: u32) {
        self.now = now;
        match self.wait.clone() {
            Wait::Record {
                step,
                prompting: Some(p),
                ..
            } if p == id => self.start_recording(step),
            Wait::Play {
                id: playing, next, ..
            } if playing == id => self.run(next),
            Wait::Menu {
                step,
                attempt,
                phase: Phase::Prompting(p),
            } if p == id => {
                let timeout = self.retry_of(&step).map_or(5000, |r| r.timeout_ms);
                self.wait = Wait::Menu {
                    step,
                    attempt,
                    phase: Phase::Waiting(now + Duration::from_millis(timeout)),
                };
            }
            Wait::Collect {
                step,
                attempt,
                phase: Phase::Prompting(p),
                digits,
            } if p == id => {
                let timeout = self.retry_of(&step).map_or(5000, |r| r.timeout_ms);
                self.wait = Wait::Collect {
                    step,
                    attempt,
                    digits,
                    phase: Phase::Waiting(now + Duration::from_millis(timeout)),
                };
            }
            Wait::Menu {
                step,
                attempt,
                phase: Phase::Feedback(p),
            } if p == id => self.begin_attempt(step, attempt),
            Wait::Collect {
                step,
                attempt,
                phase: Phase::Feedback(p),
                ..
            } if p == id => self.begin_attempt(step, attempt),
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.wait.clone() {
            Wait::Record {
                step,
                until: Some(t),
                ..
            } if now >= t => self.finish_recording(&step, "max_ms"),
            Wait::Menu {
                step,
                attempt,
                phase: Phase::Waiting(d),
            } if now >= d => {
                self.outputs.push_back(Output::Event {
                    kind: "menu_timeout",
                    detail: step.clone(),
                });
                self.retry(step, attempt, false);
            }
            Wait::Collect {
                step,
                attempt,
                phase: Phase::Waiting(d),
                digits,
            } if now >= d => {
                if digits.is_empty() {
                    self.outputs.push_back(Output::Event {
                        kind: "collect_timeout",
                        detail: step.clone(),
                    });
                    self.retry(step, attempt, false);
                } else {
                    self.finish_collect(step, attempt, digits);
                }
            }
            _ => {}
        }
    }

    /// Result of an `Output::Lookup`: the ticket's fields (`id`, `order_id`, `status`, ...)
    /// or `None` when no ticket matched.
    pub fn handle_lookup_result(&mut self, now: Instant, ticket: Option<HashMap<String, String>>) {
        self.now = now;
        let Wait::Lookup { step } = self.wait.clone() else {
            return;
        };
        let Some(Action::Lookup {
            found, not_found, ..
        }) = self.plan.steps.get(&step).map(|s| s.action.clone())
        else {
            return;
        };
        match ticket {
            Some(fields) => {
                if let Some(lang) = fields.get("language").filter(|l| !l.is_empty()) {
                    self.vars.insert("language".into(), lang.clone());
                }
                for (k, v) in fields {
                    self.vars.insert(format!("ticket.{k}"), v);
                }
                self.outputs.push_back(Output::Event {
                    kind: "lookup",
                    detail: "found".into(),
                });
                self.run(found);
            }
            None => {
                self.outputs.push_back(Output::Event {
                    kind: "lookup",
                    detail: "not_found".into(),
                });
                self.run(not_found);
            }
        }
    }

    /// The database did not answer an `Output::Lookup` within the lookup budget, or failed:
    /// event `lookup` (`unavailable`), then the step's `unavailable` target, else its
    /// `not_found` one. `ticket.*` variables from an earlier lookup are left as they were.
    pub fn handle_lookup_unavailable(&mut self, now: Instant) {
        self.now = now;
        let Wait::Lookup { step } = self.wait.clone() else {
            return;
        };
        let Some(Action::Lookup {
            not_found,
            unavailable,
            ..
        }) = self.plan.steps.get(&step).map(|s| s.action.clone())
        else {
            return;
        };
        self.outputs.push_back(Output::Event {
            kind: "lookup",
            detail: "unavailable".into(),
        });
        self.run(unavailable.unwrap_or(not_found));
    }

    /// The queue could not take the call (no agents, closed, full).
    pub fn handle_enqueue_unavailable(&mut self, now: Instant) {
        self.now = now;
        let Wait::Enqueue { step } = self.wait.clone() else {
            return;
        };
        if let Some(Action::Enqueue { on_unavailable, .. }) =
            self.plan.steps.get(&step).map(|s| &s.action)
        {
            let next = on_unavailable.clone();
            self.run(next);
        }
    }

    /// Whether the call, now waiting in a queue, goes on in the dialplan when the agent
    /// hangs up first (the `enqueue` step's `after_agent`).
    pub fn continues_after_agent(&self) -> bool {
        let Wait::Enqueue { step } = &self.wait else {
            return false;
        };
        matches!(
            self.plan.steps.get(step).map(|s| &s.action),
            Some(Action::Enqueue {
                after_agent: Some(_),
                ..
            })
        )
    }

    /// The agent hung up first: continue at the `enqueue` step's `after_agent` (variable
    /// `queue_status` = `agent_hangup`). Returns false when there is nowhere to go.
    pub fn handle_agent_hangup(&mut self, now: Instant) -> bool {
        self.now = now;
        let Wait::Enqueue { step } = self.wait.clone() else {
            return false;
        };
        let Some(Action::Enqueue {
            after_agent: Some(next),
            ..
        }) = self.plan.steps.get(&step).map(|s| &s.action)
        else {
            return false;
        };
        let next = next.clone();
        self.wait = Wait::Nothing;
        self.vars
            .insert("queue_status".into(), "agent_hangup".into());
        self.run(next);
        true
    }

    fn retry_of(&self, step: &str) -> Option<&Retry> {
        match self.plan.steps.get(step).map(|s| &s.action) {
            Some(Action::Menu { retry, .. }) | Some(Action::Collect { retry, .. }) => Some(retry),
            _ => None,
        }
    }

    /// Run steps until one waits for input or playback.
    fn run(&mut self, first: String) {
        let mut next = Some(first);
        while let Some(name) = next.take() {
            self.steps_taken += 1;
            if self.steps_taken > self.plan.max_steps {
                self.outputs.push_back(Output::Event {
                    kind: "step_budget",
                    detail: name,
                });
                self.hangup("step_budget".into());
                return;
            }
            let Some(step) = self.plan.steps.get(&name) else {
                // The loader guarantees targets exist; a missing one means a bug, not a crash.
                self.hangup("dialplan_error".into());
                return;
            };
            let action = step.action.clone();
            self.outputs.push_back(Output::Event {
                kind: "step",
                detail: name.clone(),
            });
            match action {
                Action::Play {
                    prompts,
                    barge_in,
                    next: after,
                } => {
                    if barge_in && !self.buffer.is_empty() {
                        next = Some(after);
                        continue;
                    }
                    let items = self.resolve(&prompts);
                    if items.is_empty() {
                        next = Some(after);
                        continue;
                    }
                    let id = self.play(items);
                    self.wait = Wait::Play {
                        id,
                        next: after,
                        barge_in,
                    };
                }
                Action::Menu { .. } | Action::Collect { .. } => {
                    self.begin_attempt(name, 1);
                }
                Action::Lookup { by, value, .. } => {
                    let value = expand(&value, &self.vars);
                    self.outputs.push_back(Output::Lookup { by, value });
                    self.wait = Wait::Lookup { step: name };
                }
                Action::Branch { when, otherwise } => {
                    let target = when
                        .iter()
                        .find(|(c, _)| c.eval(&self.vars))
                        .map_or(otherwise.clone(), |(_, t)| t.clone());
                    next = Some(target);
                }
                Action::Set { vars, next: after } => {
                    for (k, v) in vars {
                        let value = expand(&v, &self.vars);
                        self.vars.insert(k, value);
                    }
                    next = Some(after);
                }
                Action::Outcome {
                    choice,
                    next: after,
                } => {
                    self.vars.insert("outcome".into(), choice.clone());
                    self.outputs.push_back(Output::Outcome { choice });
                    next = Some(after);
                }
                Action::Enqueue { queue, .. } => {
                    self.outputs.push_back(Output::Enqueue { queue });
                    self.wait = Wait::Enqueue { step: name };
                }
                Action::Record { prompts, .. } => {
                    let items = self.resolve(&prompts);
                    if items.is_empty() {
                        self.start_recording(name);
                    } else {
                        let id = self.play(items);
                        self.wait = Wait::Record {
                            step: name,
                            prompting: Some(id),
                            until: None,
                        };
                    }
                }
                Action::Survey {
                    score,
                    message,
                    next: after,
                    on_invalid,
                } => {
                    let raw = expand(&score, &self.vars);
                    match raw.trim().parse::<u8>() {
                        Ok(score @ 1..=5) => {
                            let message = message
                                .map(|m| expand(&m, &self.vars))
                                .filter(|m| !m.is_empty());
                            self.outputs.push_back(Output::Survey { score, message });
                            next = Some(after);
                        }
                        _ => {
                            self.outputs.push_back(Output::Event {
                                kind: "survey_invalid",
                                detail: raw,
                            });
                            next = Some(on_invalid.unwrap_or(after));
                        }
                    }
                }
                Action::Goto { next: after } => next = Some(after),
                Action::Hours { open, closed } => {
                    let (is_open, next_open) = self.service_open();
                    self.outputs.push_back(Output::Event {
                        kind: "hours",
                        detail: if is_open { "open" } else { "closed" }.into(),
                    });
                    if let Some(t) = next_open {
                        // "2026-12-10 09:00": for a `say = "date"` and the callback note.
                        self.vars
                            .insert("service.next_open_date".into(), t[..10].to_string());
                        self.vars.insert("service.next_open".into(), t);
                    }
                    next = Some(if is_open { open } else { closed });
                }
                Action::Hangup { cause } => self.hangup(cause),
            }
        }
    }

    fn hangup(&mut self, cause: String) {
        self.outputs.push_back(Output::Hangup { cause });
        self.wait = Wait::Done;
    }

    fn play(&mut self, items: Vec<PromptRef>) -> u32 {
        let id = self.next_play_id;
        self.next_play_id = self.next_play_id.wrapping_add(1).max(1);
        self.outputs.push_back(Output::Play { id, items });
        id
    }

    fn resolve(&self, items: &[PlayItem]) -> Vec<PromptRef> {
        let lang = self
            .vars
            .get("language")
            .cloned()
            .unwrap_or_else(|| self.plan.language.clone());
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                PlayItem::Prompt { name, fallback } => out.push(PromptRef::Prompt {
                    lang: lang.clone(),
                    name: expand(name, &self.vars),
                    fallback: fallback.clone(),
                }),
                PlayItem::Say { kind, value } => {
                    for name in say(*kind, &expand(value, &self.vars), &lang) {
                        out.push(PromptRef::Prompt {
                            lang: lang.clone(),
                            name,
                            fallback: None,
                        });
                    }
                }
                PlayItem::Silence(ms) => out.push(PromptRef::Silence(*ms)),
            }
        }
        out
    }

    /// Start (or restart) a menu/collect attempt: type-ahead first, else the prompts.
    fn begin_attempt(&mut self, step: String, attempt: u32) {
        let Some(s) = self.plan.steps.get(&step) else {
            return;
        };
        let (prompts, timeout) = match &s.action {
            Action::Menu { prompts, retry, .. } | Action::Collect { prompts, retry, .. } => {
                (prompts.clone(), retry.timeout_ms)
            }
            _ => return,
        };
        let is_menu = matches!(s.action, Action::Menu { .. });
        let items = self.resolve(&prompts);
        let phase = if !self.buffer.is_empty() || items.is_empty() {
            Phase::Waiting(self.now + Duration::from_millis(timeout))
        } else {
            Phase::Prompting(self.play(items))
        };
        self.wait = if is_menu {
            Wait::Menu {
                step,
                attempt,
                phase,
            }
        } else {
            Wait::Collect {
                step,
                attempt,
                phase,
                digits: String::new(),
            }
        };
        if !self.buffer.is_empty() {
            self.consume_input();
        }
    }

    /// Feed buffered digits to the current menu/collect step.
    fn consume_input(&mut self) {
        while let Some(d) = self.buffer.front().copied() {
            match self.wait.clone() {
                Wait::Menu { step, attempt, .. } => {
                    self.buffer.pop_front();
                    let Some(Action::Menu { choices, .. }) =
                        self.plan.steps.get(&step).map(|s| &s.action)
                    else {
                        return;
                    };
                    match choices.iter().find(|(c, _)| *c == d) {
                        Some((_, target)) => {
                            let target = target.clone();
                            self.outputs.push_back(Output::Event {
                                kind: "menu",
                                detail: format!("{step}={d}"),
                            });
                            self.run(target);
                        }
                        None => {
                            self.outputs.push_back(Output::Event {
                                kind: "menu_invalid",
                                detail: format!("{step}={d}"),
                            });
                            self.buffer.clear();
                            self.retry(step, attempt, true);
                        }
                    }
                    return;
                }
                Wait::Collect {
                    step,
                    attempt,
                    mut digits,
                    ..
                } => {
                    self.buffer.pop_front();
                    let Some(Action::Collect {
                        terminator,
                        max_digits,
                        inter_digit_timeout_ms,
                        ..
                    }) = self.plan.steps.get(&step).map(|s| s.action.clone())
                    else {
                        return;
                    };
                    if Some(d) == terminator {
                        self.finish_collect(step, attempt, digits);
                        return;
                    }
                    digits.push(d);
                    if digits.len() >= max_digits {
                        self.finish_collect(step, attempt, digits);
                        return;
                    }
                    let deadline = self.now + Duration::from_millis(inter_digit_timeout_ms);
                    self.wait = Wait::Collect {
                        step,
                        attempt,
                        digits,
                        phase: Phase::Waiting(deadline),
                    };
                }
                _ => return,
            }
        }
    }

    fn finish_collect(&mut self, step: String, attempt: u32, digits: String) {
        let Some(Action::Collect {
            var,
            min_digits,
            next,
            ..
        }) = self.plan.steps.get(&step).map(|s| s.action.clone())
        else {
            return;
        };
        if digits.len() < min_digits {
            self.outputs.push_back(Output::Event {
                kind: "collect_invalid",
                detail: format!("{step}={digits}"),
            });
            self.buffer.clear();
            self.retry(step, attempt, true);
            return;
        }
        self.outputs.push_back(Output::Event {
            kind: "collect",
            detail: format!("{var}={digits}"),
        });
        self.vars.insert(var, digits);
        self.run(next);
    }

    fn retry(&mut self, step: String, attempt: u32, invalid: bool) {
        let Some(retry) = self.retry_of(&step).cloned() else {
            return;
        };
        if attempt >= retry.max_tries {
            self.run(retry.on_failure);
            return;
        }
        let feedback = if invalid {
            &retry.invalid_prompts
        } else {
            &retry.no_input_prompts
        };
        let items = self.resolve(feedback);
        if items.is_empty() {
            self.begin_attempt(step, attempt + 1);
            return;
        }
        let id = self.play(items);
        let phase = Phase::Feedback(id);
        self.wait = match self.plan.steps.get(&step).map(|s| &s.action) {
            Some(Action::Menu { .. }) => Wait::Menu {
                step,
                attempt: attempt + 1,
                phase,
            },
            _ => Wait::Collect {
                step,
                attempt: attempt + 1,
                phase,
                digits: String::new(),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::loader::{load_str, LoadContext};

    const PLAN: &str = r##"
[dialplan]
start = "welcome"

[steps.welcome]
action = "play"
prompts = ["welcome"]
next = "menu"

[steps.menu]
action = "menu"
prompts = ["main-menu"]
choices = { "1" = "order", "2" = "lookup" }
invalid_prompts = ["invalid"]
no_input_prompts = ["no-input"]
timeout_ms = 5000
max_tries = 3
on_failure = "bye"

[steps.order]
action = "collect"
prompts = ["enter-order-number"]
var = "order"
terminator = "#"
max_digits = 8
on_failure = "bye"
next = "say"

[steps.say]
action = "play"
prompts = ["order-number", { say = "digits", value = "${order}" }]
next = "bye"

[steps.lookup]
action = "lookup_ticket"
by = "caller"
found = "refund"
not_found = "bye"

[steps.refund]
action = "outcome"
choice = "refund"
next = "bye"

[steps.bye]
action = "hangup"
"##;

    fn interp() -> (Interpreter, Instant) {
        let f = |_: &str, _: &str| true;
        let plan = load_str(
            "t.toml",
            PLAN,
            &LoadContext {
                prompt_exists: &f,
                queues: &[],
            },
        )
        .expect("plan");
        let mut vars = Vars::new();
        vars.insert("caller".into(), "+1555".into());
        (Interpreter::new(Arc::new(plan), vars), Instant::now())
    }

    fn drain(i: &mut Interpreter) -> Vec<Output> {
        std::iter::from_fn(|| i.poll_output())
            .filter(|o| !matches!(o, Output::Event { kind: "step", .. }))
            .collect()
    }

    fn names(o: &Output) -> Vec<String> {
        match o {
            Output::Play { items, .. } => items
                .iter()
                .map(|p| match p {
                    PromptRef::Prompt { name, .. } => name.clone(),
                    PromptRef::Silence(ms) => format!("silence-{ms}"),
                })
                .collect(),
            _ => vec![],
        }
    }

    fn play_id(o: &[Output]) -> u32 {
        o.iter()
            .find_map(|o| {
                if let Output::Play { id, .. } = o {
                    Some(*id)
                } else {
                    None
                }
            })
            .expect("a play")
    }

    #[test]
    fn record_after_the_beep_until_the_terminator_or_max() {
        let plan = r##"
[dialplan]
start = "msg"

[steps.msg]
action = "record"
prompts = ["beep"]
max_ms = 5000
var = "message"
next = "bye"

[steps.bye]
action = "hangup"
"##;
        let f = |_: &str, _: &str| true;
        let ctx = LoadContext {
            prompt_exists: &f,
            queues: &[],
        };
        let plan = Arc::new(load_str("r.toml", plan, &ctx).expect("plan"));
        let t0 = Instant::now();
        // Ended by '#': keys during the beep do not count.
        let mut i = Interpreter::new(plan.clone(), Vars::new());
        i.start(t0);
        let out = drain(&mut i);
        assert_eq!(names(&out[0]), ["beep"]);
        i.handle_digit(t0, '#');
        assert!(drain(&mut i).is_empty(), "'#' during the beep is ignored");
        i.handle_playback_finished(t0, play_id(&out));
        assert_eq!(
            drain(&mut i),
            [Output::StartRecording {
                step: "msg".into(),
                var: Some("message".into()),
                min_speech_ms: 0,
            }]
        );
        assert_eq!(i.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        i.handle_digit(t0, '5');
        assert!(drain(&mut i).is_empty());
        i.handle_digit(t0, '#');
        let out = drain(&mut i);
        assert_eq!(out[0], Output::StopRecording);
        assert!(matches!(out.last(), Some(Output::Hangup { .. })));
        // Ended by max_ms.
        let mut i = Interpreter::new(plan, Vars::new());
        i.start(t0);
        let out = drain(&mut i);
        i.handle_playback_finished(t0, play_id(&out));
        drain(&mut i);
        i.handle_timeout(t0 + Duration::from_secs(5));
        let out = drain(&mut i);
        assert_eq!(out[0], Output::StopRecording);
        assert!(out.contains(&Output::Event {
            kind: "record_end",
            detail: "msg:max_ms".into()
        }));
    }

    #[test]
    fn record_min_speech_ms_reaches_the_recorder_and_is_bounded() {
        let plan = |min: &str| {
            format!(
                "[dialplan]\nstart = \"msg\"\n\n[steps.msg]\naction = \"record\"\n\
                 var = \"message\"\nmin_speech_ms = {min}\nnext = \"bye\"\n\n\
                 [steps.bye]\naction = \"hangup\"\n"
            )
        };
        let f = |_: &str, _: &str| true;
        let ctx = LoadContext {
            prompt_exists: &f,
            queues: &[],
        };
        let loaded = Arc::new(load_str("r.toml", &plan("300"), &ctx).expect("plan"));
        let t0 = Instant::now();
        let mut i = Interpreter::new(loaded, Vars::new());
        i.start(t0);
        let out = drain(&mut i);
        assert!(
            out.contains(&Output::StartRecording {
                step: "msg".into(),
                var: Some("message".into()),
                min_speech_ms: 300,
            }),
            "{out:?}"
        );
        let err = load_str("r.toml", &plan("20000"), &ctx).expect_err("out of range");
        assert!(
            err.iter().any(|e| e.reason.contains("min_speech_ms")),
            "{err:?}"
        );
    }

    #[test]
    fn no_input_reprompts_three_times_then_fails() {
        let (mut i, t0) = interp();
        i.start(t0);
        let out = drain(&mut i);
        assert_eq!(names(&out[0]), ["welcome"]);
        i.handle_playback_finished(t0, play_id(&out));
        let out = drain(&mut i);
        assert_eq!(names(&out[0]), ["main-menu"]);
        let mut t = t0;
        let mut id = play_id(&out);
        for round in 0..3 {
            i.handle_playback_finished(t, id);
            assert_eq!(i.poll_timeout(), Some(t + Duration::from_secs(5)));
            t += Duration::from_secs(5);
            i.handle_timeout(t - Duration::from_millis(1));
            assert!(drain(&mut i).is_empty(), "not before the deadline");
            i.handle_timeout(t);
            let out = drain(&mut i);
            if round < 2 {
                assert_eq!(names(&out[1]), ["no-input"]);
                i.handle_playback_finished(t, play_id(&out));
                let out = drain(&mut i);
                assert_eq!(names(&out[0]), ["main-menu"]);
                id = play_id(&out);
            } else {
                assert_eq!(
                    out.last(),
                    Some(&Output::Hangup {
                        cause: "normal".into()
                    })
                );
            }
        }
        assert!(i.is_done());
    }

    #[test]
    fn barge_in_keeps_digits_and_collects_order_number() {
        let (mut i, t0) = interp();
        i.start(t0);
        drain(&mut i);
        // "1" during the welcome prompt: it stops, and the menu takes the digit at once.
        i.handle_digit(t0, '1');
        let out = drain(&mut i);
        assert_eq!(out[0], Output::StopPlayback);
        assert!(out.contains(&Output::Event {
            kind: "menu",
            detail: "menu=1".into()
        }));
        assert_eq!(names(out.last().expect("play")), ["enter-order-number"]);
        for d in "1234#".chars() {
            i.handle_digit(t0, d);
        }
        let out = drain(&mut i);
        assert!(out.contains(&Output::Event {
            kind: "collect",
            detail: "order=1234".into()
        }));
        assert_eq!(
            names(out.last().expect("play")),
            ["order-number", "digit-1", "digit-2", "digit-3", "digit-4"]
        );
        assert_eq!(i.vars()["order"], "1234");
    }

    #[test]
    fn stale_playback_finished_is_ignored() {
        let (mut i, t0) = interp();
        i.start(t0);
        let first = play_id(&drain(&mut i));
        i.handle_digit(t0, '5'); // invalid choice at the menu
        let out = drain(&mut i);
        assert!(out.contains(&Output::Event {
            kind: "menu_invalid",
            detail: "menu=5".into()
        }));
        let feedback = play_id(&out);
        i.handle_playback_finished(t0, first);
        assert!(
            drain(&mut i).is_empty(),
            "old playlist's end must not advance the menu"
        );
        i.handle_playback_finished(t0, feedback);
        assert_eq!(names(&drain(&mut i)[0]), ["main-menu"]);
    }

    #[test]
    fn lookup_and_outcome() {
        let (mut i, t0) = interp();
        i.start(t0);
        drain(&mut i);
        i.handle_digit(t0, '2');
        let out = drain(&mut i);
        assert!(out.contains(&Output::Lookup {
            by: LookupBy::Caller,
            value: "+1555".into()
        }));
        let mut t = HashMap::new();
        t.insert("id".to_string(), "7".to_string());
        i.handle_lookup_result(t0, Some(t));
        let out = drain(&mut i);
        assert!(out.contains(&Output::Outcome {
            choice: "refund".into()
        }));
        assert_eq!(
            out.last(),
            Some(&Output::Hangup {
                cause: "normal".into()
            })
        );
        assert_eq!(i.vars()["ticket.id"], "7");
    }

    fn interp_with(plan_src: &str) -> (Interpreter, Instant) {
        let f = |_: &str, _: &str| true;
        let plan = load_str(
            "t.toml",
            plan_src,
            &LoadContext {
                prompt_exists: &f,
                queues: &[],
            },
        )
        .expect("plan");
        let mut vars = Vars::new();
        vars.insert("caller".into(), "+1555".into());
        (Interpreter::new(Arc::new(plan), vars), Instant::now())
    }

    #[test]
    fn unavailable_lookup_takes_its_own_branch_else_not_found() {
        // With `unavailable`: the database did not answer in time -> that step, no outcome.
        let src = PLAN.replace(
            "found = \"refund\"\nnot_found = \"bye\"\n",
            "found = \"refund\"\nnot_found = \"bye\"\nunavailable = \"order\"\n",
        );
        assert_ne!(src, PLAN, "the plan was changed");
        let (mut i, t0) = interp_with(&src);
        i.start(t0);
        drain(&mut i);
        i.handle_digit(t0, '2');
        drain(&mut i);
        i.handle_lookup_unavailable(t0);
        let out = drain(&mut i);
        assert!(out.contains(&Output::Event {
            kind: "lookup",
            detail: "unavailable".into()
        }));
        assert!(!out.iter().any(|o| matches!(o, Output::Outcome { .. })));
        assert_eq!(names(&out[out.len() - 1]), ["enter-order-number"]);
        // A late answer after the budget is ignored: the call has moved on.
        let mut t = HashMap::new();
        t.insert("id".to_string(), "7".to_string());
        i.handle_lookup_result(t0, Some(t));
        assert!(drain(&mut i).is_empty());
        assert!(!i.vars().contains_key("ticket.id"));

        // Without it: the not_found branch, as before.
        let (mut i, t0) = interp();
        i.start(t0);
        drain(&mut i);
        i.handle_digit(t0, '2');
        drain(&mut i);
        i.handle_lookup_unavailable(t0);
        let out = drain(&mut i);
        assert!(out.contains(&Output::Event {
            kind: "lookup",
            detail: "unavailable".into()
        }));
        assert_eq!(
            out.last(),
            Some(&Output::Hangup {
                cause: "normal".into()
            })
        );
    }

    #[test]
    fn step_budget_stops_loops() {
        let f = |_: &str, _: &str| true;
        let src = "[dialplan]\nstart = \"a\"\nmax_steps = 10\n[steps.a]\naction = \"goto\"\nnext = \"b\"\n[steps.b]\naction = \"goto\"\nnext = \"a\"\n";
        let plan = load_str(
            "loop.toml",
            src,
            &LoadContext {
                prompt_exists: &f,
                queues: &[],
            },
        )
        .expect("plan");
        let mut i = Interpreter::new(Arc::new(plan), Vars::new());
        i.start(Instant::now());
        let out = drain(&mut i);
        assert_eq!(
            out.last(),
            Some(&Output::Hangup {
                cause: "step_budget".into()
            })
        );
    }

    /// The shipped hotline and delay notice with the language from `vars`: the prompts of
    /// the first play, in which language.
    fn shipped(file: &str, vars: &[(&str, &str)]) -> (Interpreter, Vec<Output>) {
        let path = format!("{}/dialplans/{file}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).expect("shipped dialplan");
        let f = |_: &str, _: &str| true;
        let queues = vec!["support".to_string()];
        let plan = load_str(
            file,
            &src,
            &LoadContext {
                prompt_exists: &f,
                queues: &queues,
            },
        )
        .expect("shipped plan loads");
        let vars: Vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut i = Interpreter::new(Arc::new(plan), vars);
        i.start(Instant::now());
        let out = drain(&mut i);
        (i, out)
    }

    fn first_play(o: &[Output]) -> (String, Vec<String>) {
        o.iter()
            .find_map(|o| match o {
                Output::Play { items, .. } => match items.first() {
                    Some(PromptRef::Prompt { lang, .. }) => Some((lang.clone(), names(o))),
                    _ => None,
                },
                _ => None,
            })
            .expect("a play")
    }

    #[test]
    fn shipped_plans_start_in_the_known_language() {
        for (file, first) in [("hotline.toml", "welcome"), ("delay-notify.toml", "hello")] {
            let (_, o) = shipped(file, &[("language", "zh"), ("language_source", "prefix")]);
            let (lang, names) = first_play(&o);
            assert_eq!((lang.as_str(), names[0].as_str()), ("zh", first), "{file}");
            let (_, o) = shipped(file, &[("language", "en"), ("language_source", "ticket")]);
            let (lang, names) = first_play(&o);
            assert_eq!((lang.as_str(), names[0].as_str()), ("en", first), "{file}");
        }
    }

    #[test]
    fn shipped_plans_offer_the_bilingual_choice_when_nothing_decides() {
        for (file, first) in [("hotline.toml", "welcome"), ("delay-notify.toml", "hello")] {
            let (mut i, o) = shipped(file, &[("language_source", "unknown")]);
            assert_eq!(first_play(&o).1, vec!["choose-language"], "{file}");
            i.handle_digit(Instant::now(), '1');
            let o = drain(&mut i);
            let (lang, names) = first_play(&o);
            assert_eq!(
                (lang.as_str(), names[0].as_str()),
                ("zh", first),
                "{file}: 1 = zh"
            );

            let (mut i, _) = shipped(file, &[("language_source", "unknown")]);
            i.handle_digit(Instant::now(), '2');
            let (lang, names) = first_play(&drain(&mut i));
            assert_eq!(
                (lang.as_str(), names[0].as_str()),
                ("en", first),
                "{file}: 2 = en"
            );
        }
    }

    #[test]
    fn hours_step_follows_the_fixed_clock() {
        const HOURS_PLAN: &str = r##"
[dialplan]
start = "check"

[steps.check]
action = "hours"
open = "menu"
closed = "closed"

[steps.menu]
action = "play"
prompts = ["main-menu"]
next = "bye"

[steps.closed]
action = "play"
prompts = ["closed", { say = "date", value = "${service.next_open_date}" }]
next = "bye"

[steps.bye]
action = "hangup"
"##;
        let f = |_: &str, _: &str| true;
        let plan = Arc::new(
            load_str(
                "t.toml",
                HOURS_PLAN,
                &LoadContext {
                    prompt_exists: &f,
                    queues: &[],
                },
            )
            .expect("plan"),
        );
        let week = crate::ivr::hours::parse_ranges("09:00-18:00").expect("range");
        let hours = Arc::new(crate::ivr::hours::ServiceHours::new(
            chrono_tz::Asia::Shanghai,
            [chrono::Weekday::Wed, chrono::Weekday::Thu].map(|d| (d, week.clone())),
            Default::default(),
        ));
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&chrono::Utc)
        };
        let run = |wall: &str| {
            let mut i = Interpreter::new(plan.clone(), Vars::new());
            let t = Instant::now();
            i.set_clock(hours.clone(), at(wall), t);
            i.start(t);
            let out: Vec<Output> = std::iter::from_fn(|| i.poll_output()).collect();
            (i, out)
        };
        // Wednesday 10:00 Shanghai: open.
        let (_, out) = run("2026-12-09T02:00:00Z");
        assert!(out.contains(&Output::Event {
            kind: "hours",
            detail: "open".into()
        }));
        assert_eq!(first_play(&out).1, vec!["main-menu"]);
        // Wednesday 20:00 Shanghai: closed, next opening Thursday 09:00.
        let (i, out) = run("2026-12-09T12:00:00Z");
        assert!(out.contains(&Output::Event {
            kind: "hours",
            detail: "closed".into()
        }));
        assert_eq!(first_play(&out).1[0], "closed");
        assert_eq!(
            i.vars().get("service.next_open").map(String::as_str),
            Some("2026-12-10 09:00")
        );
        // No clock: always open.
        let mut i = Interpreter::new(plan.clone(), Vars::new());
        i.start(Instant::now());
        let out: Vec<Output> = std::iter::from_fn(|| i.poll_output()).collect();
        assert!(out.contains(&Output::Event {
            kind: "hours",
            detail: "open".into()
        }));
    }

    #[test]
    fn shipped_hotline_outside_hours_offers_self_service_and_a_callback_never_the_queue() {
        let week = crate::ivr::hours::parse_ranges("09:00-18:00").expect("range");
        let hours = Arc::new(crate::ivr::hours::ServiceHours::new(
            chrono_tz::Asia::Shanghai,
            [chrono::Weekday::Wed, chrono::Weekday::Thu].map(|d| (d, week.clone())),
            Default::default(),
        ));
        // Wednesday 2026-12-09 20:00 in Shanghai.
        let wall = chrono::DateTime::parse_from_rfc3339("2026-12-09T12:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc);
        for (key, expect_outcome) in [('3', true), ('0', true), ('1', false)] {
            let path = format!("{}/dialplans/hotline.toml", env!("CARGO_MANIFEST_DIR"));
            let src = std::fs::read_to_string(&path).expect("hotline");
            let f = |_: &str, _: &str| true;
            let queues = vec!["support".to_string()];
            let plan = load_str(
                "hotline.toml",
                &src,
                &LoadContext {
                    prompt_exists: &f,
                    queues: &queues,
                },
            )
            .expect("plan");
            let mut vars = Vars::new();
            vars.insert("language".into(), "zh".into());
            vars.insert("language_source".into(), "prefix".into());
            let mut i = Interpreter::new(Arc::new(plan), vars);
            let t = Instant::now();
            i.set_clock(hours.clone(), wall, t);
            i.start(t);
            let o = drain(&mut i);
            i.handle_playback_finished(t, play_id(&o));
            let o = drain(&mut i);
            assert!(o.contains(&Output::Event {
                kind: "hours",
                detail: "closed".into()
            }));
            assert_eq!(first_play(&o).1, vec!["service-closed"]);
            i.handle_digit(t, key);
            let o = drain(&mut i);
            assert!(
                !o.iter().any(|x| matches!(x, Output::Enqueue { .. })),
                "never queued outside hours: {o:?}"
            );
            assert_eq!(
                o.contains(&Output::Outcome {
                    choice: "callback".into()
                }),
                expect_outcome,
                "key {key}: {o:?}"
            );
            if expect_outcome {
                assert_eq!(first_play(&o).1, vec!["callback-next-morning"]);
            } else {
                assert_eq!(first_play(&o).1, vec!["enter-order-number"]);
            }
        }
    }

    const SURVEY: &str = r##"
[dialplan]
name = "s"
start = "q"

[steps.q]
action = "enqueue"
queue = "support"
on_unavailable = "bye"
after_agent = "ask"

[steps.ask]
action = "collect"
var = "score"
max_digits = 1
next = "rate"
on_failure = "bye"

[steps.rate]
action = "survey"
score = "${score}"
message = "${note}"
on_invalid = "ask"
next = "bye"

[steps.bye]
action = "hangup"
"##;

    fn survey_interp(src: &str) -> (Interpreter, Instant) {
        let f = |_: &str, _: &str| true;
        let queues = ["support".to_string()];
        let plan = load_str(
            "s.toml",
            src,
            &LoadContext {
                prompt_exists: &f,
                queues: &queues,
            },
        )
        .expect("plan");
        (
            Interpreter::new(Arc::new(plan), Vars::new()),
            Instant::now(),
        )
    }

    #[test]
    fn agent_hangup_resumes_at_after_agent_and_the_survey_checks_the_score() {
        let (mut i, t0) = survey_interp(SURVEY);
        i.start(t0);
        assert_eq!(
            drain(&mut i),
            [Output::Enqueue {
                queue: "support".into()
            }]
        );
        assert!(i.continues_after_agent());
        assert!(i.handle_agent_hangup(t0));
        assert_eq!(i.vars()["queue_status"], "agent_hangup");
        // `ask` waits for a key (no prompts): a 7 is not a score -> back to `ask`.
        drain(&mut i);
        i.handle_digit(t0, '7');
        let out = drain(&mut i);
        assert!(
            out.contains(&Output::Event {
                kind: "survey_invalid",
                detail: "7".into()
            }),
            "{out:?}"
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Survey { .. })));
        i.handle_digit(t0, '4');
        let out = drain(&mut i);
        // No `note` variable: no message.
        assert!(
            out.contains(&Output::Survey {
                score: 4,
                message: None
            }),
            "{out:?}"
        );
        assert!(matches!(out.last(), Some(Output::Hangup { .. })));
    }

    #[test]
    fn without_after_agent_the_dialplan_does_not_resume() {
        let (mut i, t0) = survey_interp(&SURVEY.replace("after_agent = \"ask\"\n", ""));
        i.start(t0);
        drain(&mut i);
        assert!(!i.continues_after_agent());
        assert!(!i.handle_agent_hangup(t0));
        assert!(drain(&mut i).is_empty());
    }

    #[test]
    fn survey_and_after_agent_are_checked_at_load() {
        let f = |_: &str, _: &str| true;
        let queues = ["support".to_string()];
        let ctx = LoadContext {
            prompt_exists: &f,
            queues: &queues,
        };
        let bad_target = SURVEY.replace("after_agent = \"ask\"", "after_agent = \"nowhere\"");
        let err = load_str("s.toml", &bad_target, &ctx).expect_err("unknown step");
        assert!(format!("{err:?}").contains("nowhere"), "{err:?}");
        let no_score = SURVEY.replace("score = \"${score}\"\n", "");
        let err = load_str("s.toml", &no_score, &ctx).expect_err("score is required");
        assert!(format!("{err:?}").contains("score"), "{err:?}");
        let stray = SURVEY.replace(
            "after_agent = \"ask\"",
            "after_agent = \"ask\"\nscore = \"1\"",
        );
        assert!(
            load_str("s.toml", &stray, &ctx).is_err(),
            "score is not an enqueue field"
        );
    }
}
