//! Dialplan loader: TOML text → validated [`Dialplan`], with `file:line: reason` errors.
//!
//! Checks done here so the interpreter never meets a dangling reference: the start step and
//! every target exist, every fixed prompt exists in every language the plan declares, every
//! queue is configured, choices are DTMF keys, conditions parse, fields belong to the action.
//! A set of plans is only swapped in when every file in it loads (see `DialplanSet`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::dialplan::{Action, Dialplan, LookupBy, PlayItem, Retry, Step, OUTCOME_CHOICES};
use super::expr::{template_is_valid, Condition};
use super::say::SayKind;

/// One problem found while loading, pointing at its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// What the loader checks references against.
pub struct LoadContext<'a> {
    pub prompt_exists: &'a dyn Fn(&str, &str) -> bool,
    pub queues: &'a [String],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    dialplan: Spanned<RawHeader>,
    #[serde(default)]
    steps: BTreeMap<String, Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    start: Spanned<String>,
    language: Option<String>,
    languages: Option<Vec<String>>,
    max_steps: Option<u32>,
    description: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawItem {
    Name(String),
    Table(RawItemTable),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawItemTable {
    prompt: Option<String>,
    fallback: Option<String>,
    say: Option<String>,
    value: Option<String>,
    silence_ms: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(rename = "if")]
    cond: Spanned<String>,
    goto: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: Spanned<String>,
    prompts: Option<Vec<RawItem>>,
    next: Option<Spanned<String>>,
    barge_in: Option<bool>,
    choices: Option<BTreeMap<String, Spanned<String>>>,
    timeout_ms: Option<u64>,
    max_tries: Option<u32>,
    invalid_prompts: Option<Vec<RawItem>>,
    no_input_prompts: Option<Vec<RawItem>>,
    on_failure: Option<Spanned<String>>,
    var: Option<String>,
    min_digits: Option<usize>,
    max_digits: Option<usize>,
    terminator: Option<String>,
    inter_digit_timeout_ms: Option<u64>,
    by: Option<String>,
    value: Option<String>,
    found: Option<Spanned<String>>,
    not_found: Option<Spanned<String>>,
    unavailable: Option<Spanned<String>>,
    when: Option<Vec<RawWhen>>,
    #[serde(rename = "else")]
    otherwise: Option<Spanned<String>>,
    vars: Option<BTreeMap<String, String>>,
    choice: Option<String>,
    queue: Option<String>,
    on_unavailable: Option<Spanned<String>>,
    cause: Option<String>,
    max_ms: Option<u64>,
    min_speech_ms: Option<u32>,
    open: Option<Spanned<String>>,
    closed: Option<Spanned<String>>,
    after_agent: Option<Spanned<String>>,
    score: Option<String>,
    message: Option<String>,
    on_invalid: Option<Spanned<String>>,
}

impl RawStep {
    fn present_fields(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! chk {
            ($($f:ident => $n:literal),*) => { $( if self.$f.is_some() { v.push($n); } )* };
        }
        chk!(prompts => "prompts", next => "next", barge_in => "barge_in", choices => "choices",
             timeout_ms => "timeout_ms", max_tries => "max_tries", invalid_prompts => "invalid_prompts",
             no_input_prompts => "no_input_prompts", on_failure => "on_failure", var => "var",
             min_digits => "min_digits", max_digits => "max_digits", terminator => "terminator",
             inter_digit_timeout_ms => "inter_digit_timeout_ms", by => "by", value => "value",
             found => "found", not_found => "not_found", unavailable => "unavailable", when => "when", otherwise => "else",
             vars => "vars", choice => "choice", queue => "queue", on_unavailable => "on_unavailable",
             cause => "cause", max_ms => "max_ms", open => "open", closed => "closed",
             after_agent => "after_agent", score => "score", message => "message",
             on_invalid => "on_invalid");
        v
    }
}

fn allowed_fields(action: &str) -> Option<&'static [&'static str]> {
    const RETRY: [&str; 5] = [
        "timeout_ms",
        "max_tries",
        "invalid_prompts",
        "no_input_prompts",
        "on_failure",
    ];
    Some(match action {
        "play" => &["prompts", "next", "barge_in"],
        "menu" => &[
            "prompts", "choices", RETRY[0], RETRY[1], RETRY[2], RETRY[3], RETRY[4],
        ],
        "collect" => &[
            "prompts",
            "var",
            "min_digits",
            "max_digits",
            "terminator",
            "inter_digit_timeout_ms",
            "next",
            RETRY[0],
            RETRY[1],
            RETRY[2],
            RETRY[3],
            RETRY[4],
        ],
        "lookup_ticket" => &["by", "value", "found", "not_found", "unavailable"],
        "branch" => &["when", "else"],
        "set" => &["vars", "next"],
        "outcome" => &["choice", "next"],
        "enqueue" => &["queue", "on_unavailable", "after_agent"],
        "survey" => &["score", "message", "next", "on_invalid"],
        "record" => &[
            "prompts",
            "max_ms",
            "terminator",
            "var",
            "min_speech_ms",
            "next",
        ],
        "goto" => &["next"],
        "hours" => &["open", "closed"],
        "hangup" => &["cause"],
        _ => return None,
    })
}

/// The 1-based line of byte `offset` in `src`: where a TOML error points, for the "file,
/// line and reason" every refused dialplan, hours file and config names.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parse and validate one dialplan from its text. `file` is used in errors only.
pub fn load_str(file: &str, src: &str, ctx: &LoadContext<'_>) -> Result<Dialplan, Vec<LoadError>> {
    let err = |offset: usize, reason: String| LoadError {
        file: file.to_string(),
        line: line_of(src, offset),
        reason,
    };
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(src, s.start));
        vec![LoadError {
            file: file.to_string(),
            line,
            reason: e.message().to_string(),
        }]
    })?;
    let mut errors = Vec::new();
    let header_span = raw.dialplan.span();
    let header = raw.dialplan.into_inner();
    let _ = header.description;
    let default_name = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("dialplan")
        .to_string();
    let language = header.language.unwrap_or_else(|| "en".to_string());
    let mut languages = header.languages.unwrap_or_default();
    if !languages.contains(&language) {
        languages.insert(0, language.clone());
    }
    let max_steps = header.max_steps.unwrap_or(500);
    if max_steps == 0 {
        errors.push(err(
            header_span.start,
            "max_steps must be at least 1".into(),
        ));
    }

    let mut steps = HashMap::new();
    for (name, spanned) in &raw.steps {
        let offset = spanned.span().start;
        match build_step(name, spanned.get_ref(), &languages, ctx) {
            Ok(action) => {
                steps.insert(
                    name.clone(),
                    Step {
                        name: name.clone(),
                        line: line_of(src, offset),
                        action,
                    },
                );
            }
            Err((field_offset, reason)) => {
                errors.push(err(
                    field_offset.unwrap_or(offset),
                    format!("step '{name}': {reason}"),
                ));
            }
        }
    }

    // References: start and every target.
    let start = header.start.get_ref().clone();
    if !raw.steps.contains_key(&start) {
        errors.push(err(
            header.start.span().start,
            format!("start step '{start}' does not exist"),
        ));
    }
    for (name, spanned) in &raw.steps {
        for (target, offset) in raw_targets(spanned.get_ref()) {
            if !raw.steps.contains_key(target) {
                errors.push(err(
                    offset,
                    format!("step '{name}' goes to '{target}', which does not exist"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    Ok(Dialplan {
        name: header.name.unwrap_or(default_name),
        file: file.to_string(),
        start,
        language,
        max_steps,
        steps,
    })
}

fn raw_targets(s: &RawStep) -> Vec<(&str, usize)> {
    let mut v = Vec::new();
    for t in [
        &s.next,
        &s.on_failure,
        &s.found,
        &s.not_found,
        &s.unavailable,
        &s.otherwise,
        &s.on_unavailable,
        &s.after_agent,
        &s.on_invalid,
    ]
    .into_iter()
    .flatten()
    {
        v.push((t.get_ref().as_str(), t.span().start));
    }
    if let Some(c) = &s.choices {
        for t in c.values() {
            v.push((t.get_ref().as_str(), t.span().start));
        }
    }
    if let Some(w) = &s.when {
        for t in w {
            v.push((t.goto.get_ref().as_str(), t.goto.span().start));
        }
    }
    v
}

type StepResult = Result<Action, (Option<usize>, String)>;

fn build_step(name: &str, s: &RawStep, languages: &[String], ctx: &LoadContext<'_>) -> StepResult {
    let action = s.action.get_ref().as_str();
    let action_at = Some(s.action.span().start);
    let Some(allowed) = allowed_fields(action) else {
        return Err((
            action_at,
            format!("unknown action '{action}' (expected play, menu, collect, lookup_ticket, branch, set, outcome, enqueue, record, goto, hangup)"),
        ));
    };
    for f in s.present_fields() {
        if !allowed.contains(&f) {
            return Err((
                action_at,
                format!("field '{f}' is not used by action '{action}'"),
            ));
        }
    }
    let _ = name;
    let need =
        |t: &Option<Spanned<String>>, field: &str| -> Result<String, (Option<usize>, String)> {
            t.as_ref()
                .map(|t| t.get_ref().clone())
                .ok_or((action_at, format!("action '{action}' needs '{field}'")))
        };
    let items = |list: &Option<Vec<RawItem>>| -> Result<Vec<PlayItem>, (Option<usize>, String)> {
        list.as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|i| build_item(i, languages, ctx).map_err(|r| (action_at, r)))
            .collect()
    };
    let retry = || -> Result<Retry, (Option<usize>, String)> {
        let max_tries = s.max_tries.unwrap_or(3);
        if max_tries == 0 {
            return Err((action_at, "max_tries must be at least 1".into()));
        }
        Ok(Retry {
            timeout_ms: s.timeout_ms.unwrap_or(5000),
            max_tries,
            invalid_prompts: items(&s.invalid_prompts)?,
            no_input_prompts: items(&s.no_input_prompts)?,
            on_failure: need(&s.on_failure, "on_failure")?,
        })
    };
    Ok(match action {
        "play" => Action::Play {
            prompts: items(&s.prompts)?,
            barge_in: s.barge_in.unwrap_or(true),
            next: need(&s.next, "next")?,
        },
        "menu" => {
            let raw = s
                .choices
                .as_ref()
                .ok_or((action_at, "action 'menu' needs 'choices'".to_string()))?;
            let mut choices = Vec::new();
            for (key, target) in raw {
                let mut chars = key.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return Err((
                        Some(target.span().start),
                        format!("choice '{key}' must be one key (0-9, *, #, A-D)"),
                    ));
                };
                if !"0123456789*#ABCD".contains(c) {
                    return Err((
                        Some(target.span().start),
                        format!("choice '{key}' must be one key (0-9, *, #, A-D)"),
                    ));
                }
                choices.push((c, target.get_ref().clone()));
            }
            Action::Menu {
                prompts: items(&s.prompts)?,
                choices,
                retry: retry()?,
            }
        }
        "collect" => {
            let var = s
                .var
                .clone()
                .ok_or((action_at, "action 'collect' needs 'var'".to_string()))?;
            let min_digits = s.min_digits.unwrap_or(1);
            let max_digits = s.max_digits.unwrap_or(20);
            if min_digits == 0 || min_digits > max_digits || max_digits > 64 {
                return Err((
                    action_at,
                    format!(
                        "need 1 <= min_digits <= max_digits <= 64, got {min_digits}..{max_digits}"
                    ),
                ));
            }
            let terminator = match s.terminator.as_deref() {
                None | Some("") => None,
                Some(t) if t.len() == 1 && "#*".contains(t) => t.chars().next(),
                Some(t) => return Err((action_at, format!("terminator '{t}' must be '#' or '*'"))),
            };
            Action::Collect {
                prompts: items(&s.prompts)?,
                var,
                min_digits,
                max_digits,
                terminator,
                inter_digit_timeout_ms: s.inter_digit_timeout_ms.unwrap_or(4000),
                retry: retry()?,
                next: need(&s.next, "next")?,
            }
        }
        "lookup_ticket" => {
            let by = match s.by.as_deref() {
                Some("caller") | None => LookupBy::Caller,
                Some("order_id") => LookupBy::OrderId,
                Some(other) => {
                    return Err((
                        action_at,
                        format!("by = '{other}' must be 'caller' or 'order_id'"),
                    ))
                }
            };
            let value = match (by, s.value.clone()) {
                (_, Some(v)) => v,
                (LookupBy::Caller, None) => "${caller}".to_string(),
                (LookupBy::OrderId, None) => {
                    return Err((
                        action_at,
                        "lookup_ticket by order_id needs 'value' (e.g. \"${order_number}\")".into(),
                    ))
                }
            };
            if !template_is_valid(&value) {
                return Err((action_at, format!("bad template '{value}'")));
            }
            Action::Lookup {
                by,
                value,
                found: need(&s.found, "found")?,
                not_found: need(&s.not_found, "not_found")?,
                unavailable: s.unavailable.as_ref().map(|u| u.get_ref().clone()),
            }
        }
        "branch" => {
            let mut when = Vec::new();
            for w in s.when.as_deref().unwrap_or(&[]) {
                let c = Condition::parse(w.cond.get_ref()).map_err(|e| {
                    (
                        Some(w.cond.span().start),
                        format!("condition '{}': {e}", w.cond.get_ref()),
                    )
                })?;
                when.push((c, w.goto.get_ref().clone()));
            }
            Action::Branch {
                when,
                otherwise: need(&s.otherwise, "else")?,
            }
        }
        "hours" => Action::Hours {
            open: need(&s.open, "open")?,
            closed: need(&s.closed, "closed")?,
        },
        "set" => {
            let vars: Vec<(String, String)> =
                s.vars.clone().unwrap_or_default().into_iter().collect();
            for (k, v) in &vars {
                if !template_is_valid(v) || k.is_empty() {
                    return Err((action_at, format!("bad variable '{k}' = '{v}'")));
                }
            }
            Action::Set {
                vars,
                next: need(&s.next, "next")?,
            }
        }
        "outcome" => {
            let choice = s
                .choice
                .clone()
                .ok_or((action_at, "action 'outcome' needs 'choice'".to_string()))?;
            if !OUTCOME_CHOICES.contains(&choice.as_str()) {
                return Err((
                    action_at,
                    format!(
                        "choice '{choice}' must be one of {}",
                        OUTCOME_CHOICES.join(", ")
                    ),
                ));
            }
            Action::Outcome {
                choice,
                next: need(&s.next, "next")?,
            }
        }
        "enqueue" => {
            let queue = s
                .queue
                .clone()
                .ok_or((action_at, "action 'enqueue' needs 'queue'".to_string()))?;
            if !ctx.queues.contains(&queue) {
                return Err((action_at, format!("queue '{queue}' is not configured")));
            }
            Action::Enqueue {
                queue,
                on_unavailable: need(&s.on_unavailable, "on_unavailable")?,
                after_agent: s.after_agent.as_ref().map(|t| t.get_ref().clone()),
            }
        }
        "survey" => {
            let score = s
                .score
                .clone()
                .ok_or((action_at, "action 'survey' needs 'score'".to_string()))?;
            for (field, t) in [("score", Some(&score)), ("message", s.message.as_ref())] {
                if let Some(t) = t {
                    if !template_is_valid(t) {
                        return Err((action_at, format!("bad template in '{field}': '{t}'")));
                    }
                }
            }
            Action::Survey {
                score,
                message: s.message.clone(),
                next: need(&s.next, "next")?,
                on_invalid: s.on_invalid.as_ref().map(|t| t.get_ref().clone()),
            }
        }
        "record" => {
            let max_ms = s.max_ms.unwrap_or(60_000);
            if !(1000..=600_000).contains(&max_ms) {
                return Err((
                    action_at,
                    format!("max_ms {max_ms} must be between 1000 and 600000"),
                ));
            }
            let terminator = match s.terminator.as_deref() {
                None => '#',
                Some(t) if t.len() == 1 && "#*".contains(t) => t.chars().next().unwrap_or('#'),
                Some(t) => return Err((action_at, format!("terminator '{t}' must be '#' or '*'"))),
            };
            let min_speech_ms = s.min_speech_ms.unwrap_or(0);
            if min_speech_ms > 10_000 {
                return Err((
                    action_at,
                    format!("min_speech_ms {min_speech_ms} must be between 0 and 10000"),
                ));
            }
            Action::Record {
                prompts: items(&s.prompts)?,
                max_ms,
                terminator,
                var: s.var.clone(),
                min_speech_ms,
                next: need(&s.next, "next")?,
            }
        }
        "goto" => Action::Goto {
            next: need(&s.next, "next")?,
        },
        "hangup" => Action::Hangup {
            cause: s.cause.clone().unwrap_or_else(|| "normal".to_string()),
        },
        _ => unreachable_action(action_at, action)?,
    })
}

fn unreachable_action(at: Option<usize>, action: &str) -> StepResult {
    Err((at, format!("unknown action '{action}'")))
}

fn build_item(
    item: &RawItem,
    languages: &[String],
    ctx: &LoadContext<'_>,
) -> Result<PlayItem, String> {
    let check = |name: &str| -> Result<(), String> {
        for lang in languages {
            if !(ctx.prompt_exists)(lang, name) {
                return Err(format!(
                    "prompt '{name}' does not exist for language '{lang}'"
                ));
            }
        }
        Ok(())
    };
    match item {
        RawItem::Name(name) => {
            if name.contains("${") {
                if !template_is_valid(name) {
                    return Err(format!("bad template '{name}'"));
                }
            } else {
                check(name)?;
            }
            Ok(PlayItem::Prompt { name: name.clone(), fallback: None })
        }
        RawItem::Table(t) => match (&t.prompt, &t.say, t.silence_ms) {
            (Some(p), None, None) if t.value.is_none() => {
                if let Some(f) = &t.fallback {
                    check(f)?;
                }
                if !p.contains("${") {
                    check(p)?;
                } else if !template_is_valid(p) {
                    return Err(format!("bad template '{p}'"));
                }
                Ok(PlayItem::Prompt { name: p.clone(), fallback: t.fallback.clone() })
            }
            (None, Some(kind), None) if t.fallback.is_none() => {
                let kind = SayKind::parse(kind).ok_or(format!("say = '{kind}' must be digits, number, date or money"))?;
                let value = t.value.clone().ok_or("say needs 'value'")?;
                if !template_is_valid(&value) {
                    return Err(format!("bad template '{value}'"));
                }
                Ok(PlayItem::Say { kind, value })
            }
            (None, None, Some(ms)) if t.value.is_none() && t.fallback.is_none() => Ok(PlayItem::Silence(ms)),
            _ => Err("a playlist item is a prompt name, {prompt, fallback}, {say, value} or {silence_ms}".to_string()),
        },
    }
}

/// All dialplans by name, loaded from one folder; replaced only as a whole.
#[derive(Debug, Clone, Default)]
pub struct DialplanSet {
    pub plans: HashMap<String, std::sync::Arc<Dialplan>>,
    /// The holiday calendar (`holidays.toml` in the same folder, reloaded with the plans);
    /// empty when there is no such file.
    pub holidays: std::collections::BTreeSet<chrono::NaiveDate>,
}

/// The holiday calendar's file name in the dialplan folder (not a dialplan).
pub const HOLIDAYS_FILE: &str = "holidays.toml";

impl DialplanSet {
    /// Load every `*.toml` in `dir`; any error in any file fails the whole set.
    pub fn load_dir(dir: &Path, ctx: &LoadContext<'_>) -> Result<DialplanSet, Vec<LoadError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![LoadError {
                file: dir.display().to_string(),
                line: 0,
                reason: format!("cannot read folder: {e}"),
            }]
        })?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
            .collect();
        files.sort();
        let mut set = DialplanSet::default();
        let mut errors = Vec::new();
        for path in files {
            let file = path.display().to_string();
            let src = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(LoadError {
                        file,
                        line: 0,
                        reason: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            if path.file_name().and_then(|n| n.to_str()) == Some(HOLIDAYS_FILE) {
                match super::hours::parse_holidays(&file, &src) {
                    Ok(days) => set.holidays = days,
                    Err(super::hours::HoursError::Holidays { file, line, reason }) => {
                        errors.push(LoadError { file, line, reason })
                    }
                    Err(e) => errors.push(LoadError {
                        file,
                        line: 0,
                        reason: e.to_string(),
                    }),
                }
                continue;
            }
            match load_str(&file, &src, ctx) {
                Ok(plan) => {
                    if set.plans.contains_key(&plan.name) {
                        errors.push(LoadError {
                            file,
                            line: 1,
                            reason: format!("dialplan name '{}' is used twice", plan.name),
                        });
                    } else {
                        set.plans
                            .insert(plan.name.clone(), std::sync::Arc::new(plan));
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<Dialplan>> {
        self.plans.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type PromptCheck = Box<dyn Fn(&str, &str) -> bool>;

    fn ctx_all() -> (PromptCheck, Vec<String>) {
        (
            Box::new(|_l: &str, n: &str| n != "missing"),
            vec!["support".to_string()],
        )
    }

    fn load(src: &str) -> Result<Dialplan, Vec<LoadError>> {
        let (f, q) = ctx_all();
        load_str(
            "t.toml",
            src,
            &LoadContext {
                prompt_exists: &*f,
                queues: &q,
            },
        )
    }

    #[test]
    fn loads_a_small_plan() {
        let plan = load(
            r##"
[dialplan]
start = "menu"

[steps.menu]
action = "menu"
prompts = ["main-menu", { say = "number", value = "${n}" }]
choices = { "1" = "bye", "#" = "bye" }
on_failure = "bye"

[steps.bye]
action = "hangup"
"##,
        )
        .expect("loads");
        assert_eq!(plan.name, "t");
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps["bye"].line, 11);
    }

    #[test]
    fn errors_point_at_the_line() {
        let e =
            load("[dialplan]\nstart = \"a\"\n\n[steps.a]\naction = \"goto\"\nnext = \"nowhere\"\n")
                .expect_err("bad");
        assert_eq!(e[0].line, 6, "{e:?}");
        assert!(e[0].reason.contains("nowhere"));
        assert_eq!(
            e[0].to_string(),
            "t.toml:6: step 'a' goes to 'nowhere', which does not exist"
        );

        let e = load("[dialplan]\nstart = \"a\"\n[steps.a]\naction = \"play\"\nprompts = [\"missing\"]\nnext = \"a\"\n").expect_err("bad");
        assert!(e[0].reason.contains("prompt 'missing'"), "{e:?}");

        let e = load("[dialplan]\nstart = \"a\"\n[steps.a]\naction = \"hangup\"\nnext = \"a\"\n")
            .expect_err("bad");
        assert!(e[0].reason.contains("'next' is not used"), "{e:?}");

        let e = load("[dialplan]\nstart = \"a\"\n[steps.a]\naction = \"enqueue\"\nqueue = \"sales\"\non_unavailable = \"a\"\n").expect_err("bad");
        assert!(e[0].reason.contains("queue 'sales'"), "{e:?}");

        let e = load("[dialplan]\nstart = \"a\"\n[steps.a]\naction = \"branch\"\nwhen = [{ if = \"x ==\", goto = \"a\" }]\nelse = \"a\"\n").expect_err("bad");
        assert_eq!(e[0].line, 5, "{e:?}");

        let e = load("[dialplan]\nstart = \"a\"\nbogus = 1\n").expect_err("bad");
        assert_eq!(e[0].line, 3, "{e:?}");
        assert!(e[0].reason.contains("bogus"), "{e:?}");
    }
}
