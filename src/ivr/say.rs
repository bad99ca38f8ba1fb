//! Saying values with recorded fragments: digits, numbers, dates and money in English and
//! Mandarin. Pure functions from a value to the prompt names to play (see audio/README.md for
//! the fragment names); the interpreter resolves names to audio.

use chrono::{Datelike, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SayKind {
    Digits,
    Number,
    Date,
    Money,
}

impl SayKind {
    pub fn parse(s: &str) -> Option<SayKind> {
        match s {
            "digits" => Some(SayKind::Digits),
            "number" => Some(SayKind::Number),
            "date" => Some(SayKind::Date),
            "money" => Some(SayKind::Money),
            _ => None,
        }
    }
}

/// Prompt names for `value` said as `kind` in `lang` ("en" or "zh"; others fall back to en
/// rules). An unparseable value says nothing rather than something wrong.
pub fn say(kind: SayKind, value: &str, lang: &str) -> Vec<String> {
    let zh = lang == "zh";
    match kind {
        SayKind::Digits => value
            .chars()
            .filter_map(|c| match c {
                '0'..='9' => Some(format!("digit-{c}")),
                '*' => Some("star".to_string()),
                '#' => Some("pound".to_string()),
                _ => None,
            })
            .collect(),
        SayKind::Number => match value.trim().parse::<i64>() {
            Ok(n) => number(n, zh),
            Err(_) => Vec::new(),
        },
        SayKind::Date => {
            match NaiveDate::parse_from_str(value.trim().get(..10).unwrap_or(""), "%Y-%m-%d") {
                Ok(d) => date(d, zh),
                Err(_) => Vec::new(),
            }
        }
        SayKind::Money => money(value.trim(), zh),
    }
}

fn number(n: i64, zh: bool) -> Vec<String> {
    let mut out = Vec::new();
    if n < 0 {
        out.push("minus".to_string());
    }
    let n = n.unsigned_abs();
    if zh {
        zh_number(n, &mut out);
    } else {
        en_number(n, &mut out);
    }
    out
}

fn en_number(n: u64, out: &mut Vec<String>) {
    if n >= 1_000_000 {
        en_number(n / 1_000_000, out);
        out.push("num-1000000".into());
        if !n.is_multiple_of(1_000_000) {
            en_number(n % 1_000_000, out);
        }
    } else if n >= 1000 {
        en_number(n / 1000, out);
        out.push("num-1000".into());
        if !n.is_multiple_of(1000) {
            en_number(n % 1000, out);
        }
    } else if n >= 100 {
        out.push(format!("num-{}", n / 100));
        out.push("num-100".into());
        if !n.is_multiple_of(100) {
            en_number(n % 100, out);
        }
    } else if n >= 20 {
        out.push(format!("num-{}", n / 10 * 10));
        if !n.is_multiple_of(10) {
            out.push(format!("num-{}", n % 10));
        }
    } else {
        out.push(format!("num-{n}"));
    }
}

/// Mandarin numbers: 十/百/千/万/亿 with 零 for skipped places, 一十 → 十 at the start.
fn zh_number(n: u64, out: &mut Vec<String>) {
    if n == 0 {
        out.push("digit-0".into());
        return;
    }
    if n >= 100_000_000 {
        zh_number(n / 100_000_000, out);
        out.push("zh-yi".into());
        let rest = n % 100_000_000;
        if rest != 0 {
            if rest < 10_000_000 {
                out.push("zh-ling".into());
            }
            zh_number(rest, out);
        }
        return;
    }
    if n >= 10_000 {
        zh_number(n / 10_000, out);
        out.push("zh-wan".into());
        let rest = n % 10_000;
        if rest != 0 {
            if rest < 1000 {
                out.push("zh-ling".into());
            }
            zh_below_10000(rest, out, false);
        }
        return;
    }
    zh_below_10000(n, out, true);
}

fn zh_below_10000(n: u64, out: &mut Vec<String>, leading: bool) {
    let places = [(1000, "zh-qian"), (100, "zh-bai"), (10, "zh-shi")];
    let mut started = false;
    let mut zero_pending = false;
    for (value, name) in places {
        let d = n / value % 10;
        if d == 0 {
            if started {
                zero_pending = true;
            }
            continue;
        }
        if zero_pending {
            out.push("zh-ling".into());
            zero_pending = false;
        }
        // 十二, not 一十二, when ten is the leading place.
        if !(value == 10 && d == 1 && !started && leading) {
            out.push(format!("digit-{d}"));
        }
        out.push(name.into());
        started = true;
    }
    let ones = n % 10;
    if ones != 0 {
        if zero_pending {
            out.push("zh-ling".into());
        }
        out.push(format!("digit-{ones}"));
    }
}

fn date(d: NaiveDate, zh: bool) -> Vec<String> {
    let weekday = format!("weekday-{}", d.weekday().number_from_monday());
    if zh {
        let mut out = vec![format!("month-{}", d.month())];
        zh_number(d.day() as u64, &mut out);
        out.push("zh-ri".into());
        out.push(weekday);
        out
    } else {
        vec![
            weekday,
            format!("month-{}", d.month()),
            format!("ordinal-{}", d.day()),
        ]
    }
}

fn money(value: &str, zh: bool) -> Vec<String> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    let Ok(units) = whole.parse::<u64>() else {
        return Vec::new();
    };
    let cents: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().map(|c| c * 10).unwrap_or(0),
        _ => frac.get(..2).and_then(|f| f.parse().ok()).unwrap_or(0),
    };
    let mut out = Vec::new();
    if zh {
        zh_number(units, &mut out);
        out.push("zh-yuan".into());
        if cents / 10 > 0 {
            out.push(format!("digit-{}", cents / 10));
            out.push("zh-jiao".into());
        }
        if !cents.is_multiple_of(10) {
            out.push(format!("digit-{}", cents % 10));
            out.push("zh-fen".into());
        }
        return out;
    }
    en_number(units, &mut out);
    out.push(if units == 1 { "dollar" } else { "dollars" }.into());
    if cents > 0 {
        out.push("and".into());
        en_number(cents, &mut out);
        out.push(if cents == 1 { "cent" } else { "cents" }.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn english_numbers() {
        assert_eq!(say(SayKind::Number, "0", "en"), s(&["num-0"]));
        assert_eq!(say(SayKind::Number, "15", "en"), s(&["num-15"]));
        assert_eq!(say(SayKind::Number, "42", "en"), s(&["num-40", "num-2"]));
        assert_eq!(
            say(SayKind::Number, "305", "en"),
            s(&["num-3", "num-100", "num-5"])
        );
        assert_eq!(
            say(SayKind::Number, "2026", "en"),
            s(&["num-2", "num-1000", "num-20", "num-6"])
        );
        assert_eq!(say(SayKind::Number, "-7", "en"), s(&["minus", "num-7"]));
        assert!(say(SayKind::Number, "x", "en").is_empty());
    }

    #[test]
    fn mandarin_numbers() {
        assert_eq!(say(SayKind::Number, "10", "zh"), s(&["zh-shi"]));
        assert_eq!(say(SayKind::Number, "12", "zh"), s(&["zh-shi", "digit-2"]));
        assert_eq!(
            say(SayKind::Number, "35", "zh"),
            s(&["digit-3", "zh-shi", "digit-5"])
        );
        assert_eq!(
            say(SayKind::Number, "105", "zh"),
            s(&["digit-1", "zh-bai", "zh-ling", "digit-5"])
        );
        assert_eq!(
            say(SayKind::Number, "110", "zh"),
            s(&["digit-1", "zh-bai", "digit-1", "zh-shi"])
        );
        assert_eq!(
            say(SayKind::Number, "20005", "zh"),
            s(&["digit-2", "zh-wan", "zh-ling", "digit-5"])
        );
    }

    #[test]
    fn digits_dates_money() {
        assert_eq!(
            say(SayKind::Digits, "A-10#", "en"),
            s(&["digit-1", "digit-0", "pound"])
        );
        // 2026-12-01 is a Tuesday.
        assert_eq!(
            say(SayKind::Date, "2026-12-01", "en"),
            s(&["weekday-2", "month-12", "ordinal-1"])
        );
        assert_eq!(
            say(SayKind::Date, "2026-12-01", "zh"),
            s(&["month-12", "digit-1", "zh-ri", "weekday-2"])
        );
        assert_eq!(
            say(SayKind::Money, "12.5", "en"),
            s(&["num-12", "dollars", "and", "num-50", "cents"])
        );
        assert_eq!(
            say(SayKind::Money, "3.05", "zh"),
            s(&["digit-3", "zh-yuan", "digit-5", "zh-fen"])
        );
        assert!(say(SayKind::Date, "soon", "en").is_empty());
    }
}
