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

/// A rank, as in 第二位 (the queue position): in Mandarin 2 stays 二 here, unlike a count.
pub fn say_rank(n: u64, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    if lang == "zh" {
        zh_number(n, &mut out);
    } else {
        en_number(n, &mut out);
    }
    out
}

fn number(n: i64, zh: bool) -> Vec<String> {
    let mut out = Vec::new();
    if n < 0 {
        out.push("minus".to_string());
    }
    let n = n.unsigned_abs();
    if zh {
        // A number said (not digits) is a count in the notices, "延迟两天": 2 is 两.
        zh_count(n, &mut out);
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
///
/// Tone sandhi crosses the join of two fragments, which the recordings cannot do: 一 is
/// yi4 before 百/千 and yi2 before 万/亿 (yi1 as a digit alone), and a third tone before
/// 百 becomes second (两百 liang2 bai3, 五百, 九百). Those pairs are fragments of their
/// own (`zh-yibai`, `zh-yiqian`, `zh-yiwan`, `zh-yiyi`, `zh-liangbai`, `zh-wubai`,
/// `zh-jiubai`), recorded whole so the synthesizer's sandhi gives the spoken tones.
fn zh_number(n: u64, out: &mut Vec<String>) {
    if n == 0 {
        out.push("digit-0".into());
        return;
    }
    if n >= 100_000_000 {
        zh_count_before(n / 100_000_000, "zh-yi", "zh-yiyi", out);
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
        zh_count_before(n / 10_000, "zh-wan", "zh-yiwan", out);
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

/// A count before a unit (万, 亿, 元, 角): a lone 2 is 两 (两万, 两亿, 两元), any other
/// number as usual (二十万 keeps 二).
fn zh_count(n: u64, out: &mut Vec<String>) {
    if n == 2 {
        out.push("zh-liang".into());
    } else {
        zh_number(n, out);
    }
}

/// `count` then the unit fragment `unit`; 一 + unit is the fragment `one_unit` (一万 yi2).
fn zh_count_before(count: u64, unit: &str, one_unit: &str, out: &mut Vec<String>) {
    if count == 1 {
        out.push(one_unit.into());
    } else {
        zh_count(count, out);
        out.push(unit.into());
    }
}

/// The fragment for digit `d` and its place word together, where the pair's tones differ
/// from the two fragments said one after the other (see `zh_number`).
fn zh_place_pair(d: u64, place: u64) -> Option<&'static str> {
    match (d, place) {
        (1, 100) => Some("zh-yibai"),
        (1, 1000) => Some("zh-yiqian"),
        (2, 100) => Some("zh-liangbai"),
        (5, 100) => Some("zh-wubai"),
        (9, 100) => Some("zh-jiubai"),
        _ => None,
    }
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
        if let Some(pair) = zh_place_pair(d, value) {
            out.push(pair.into());
            started = true;
            continue;
        }
        // 十二, not 一十二, when ten is the leading place.
        if value >= 100 && d == 2 {
            // 两百, 两千 (and 一千两百): 二 only before 十 and as a digit of its own.
            out.push("zh-liang".into());
        } else if !(value == 10 && d == 1 && !started && leading) {
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
        // 两百三十元, 两元, 三元零五分, 五角 (no 零元 before a sum under one yuan).
        if units > 0 || cents == 0 {
            zh_count(units, &mut out);
            out.push("zh-yuan".into());
        }
        if cents / 10 > 0 {
            zh_count(cents / 10, &mut out);
            out.push("zh-jiao".into());
        } else if units > 0 && cents > 0 {
            out.push("zh-ling".into());
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
            s(&["zh-yibai", "zh-ling", "digit-5"])
        );
        assert_eq!(
            say(SayKind::Number, "110", "zh"),
            s(&["zh-yibai", "digit-1", "zh-shi"])
        );
        assert_eq!(
            say(SayKind::Number, "20005", "zh"),
            s(&["zh-liang", "zh-wan", "zh-ling", "digit-5"]) // 两万零五
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
            s(&["digit-3", "zh-yuan", "zh-ling", "digit-5", "zh-fen"])
        );
        assert!(say(SayKind::Date, "soon", "en").is_empty());
    }

    /// Issue 19: said as a Mandarin speaker says them: 两 before 百/千/万/亿 and as a count
    /// (两天, 两元, 两角), 二 in 二十, in digits and as a day; 12月20日; 零 for a skipped jiao.
    #[test]
    fn mandarin_says_liang_where_a_speaker_does() {
        let zh = |k, v| say(k, v, "zh");
        // 两百三十元
        assert_eq!(
            zh(SayKind::Money, "230"),
            s(&["zh-liangbai", "digit-3", "zh-shi", "zh-yuan"])
        );
        assert_eq!(zh(SayKind::Money, "2"), s(&["zh-liang", "zh-yuan"]));
        // 十二元两角
        assert_eq!(
            zh(SayKind::Money, "12.20"),
            s(&["zh-shi", "digit-2", "zh-yuan", "zh-liang", "zh-jiao"])
        );
        // 五角: no 零元 first.
        assert_eq!(zh(SayKind::Money, "0.5"), s(&["digit-5", "zh-jiao"]));
        assert_eq!(zh(SayKind::Money, "0"), s(&["digit-0", "zh-yuan"]));
        // 两千两百, 两万, 二十二万, 两亿, 二十二, 二
        assert_eq!(
            zh(SayKind::Number, "2200"),
            s(&["zh-liang", "zh-qian", "zh-liangbai"])
        );
        assert_eq!(zh(SayKind::Number, "20000"), s(&["zh-liang", "zh-wan"]));
        assert_eq!(
            zh(SayKind::Number, "220000"),
            s(&["digit-2", "zh-shi", "digit-2", "zh-wan"])
        );
        assert_eq!(zh(SayKind::Number, "200000000"), s(&["zh-liang", "zh-yi"]));
        assert_eq!(
            zh(SayKind::Number, "22"),
            s(&["digit-2", "zh-shi", "digit-2"])
        );
        // A count: 两天 (digits and days of the month keep 二).
        assert_eq!(zh(SayKind::Number, "2"), s(&["zh-liang"]));
        assert_eq!(zh(SayKind::Digits, "2"), s(&["digit-2"]));
        assert_eq!(say_rank(2, "zh"), s(&["digit-2"])); // 第二位
        assert_eq!(say_rank(2, "en"), s(&["num-2"]));
        // 12月20日 (Sunday 2026-12-20), 2月2日
        assert_eq!(
            zh(SayKind::Date, "2026-12-20"),
            s(&["month-12", "digit-2", "zh-shi", "zh-ri", "weekday-7"])
        );
        assert_eq!(
            zh(SayKind::Date, "2027-02-02"),
            s(&["month-2", "digit-2", "zh-ri", "weekday-2"])
        );
        // English is unchanged.
        assert_eq!(
            say(SayKind::Money, "230", "en"),
            s(&["num-2", "num-100", "num-30", "dollars"])
        );
    }

    /// Issue 19: tone sandhi across two fragments cannot happen in the recordings (一 then
    /// 百 is yi1 bai3, 两 then 百 liang3 bai3), so the pairs whose tones change are fragments
    /// of their own: 一百 yi4 bai3, 一千 yi4 qian1, 一万 yi2 wan4, 一亿 yi2 yi4, 两百/五百/九百
    /// with a second tone before bai3. Other digits and places keep the separate fragments.
    #[test]
    fn mandarin_sandhi_pairs_are_whole_fragments() {
        let zh = |v| say(SayKind::Number, v, "zh");
        assert_eq!(zh("100"), s(&["zh-yibai"]));
        assert_eq!(zh("1000"), s(&["zh-yiqian"]));
        assert_eq!(zh("10000"), s(&["zh-yiwan"]));
        assert_eq!(zh("100000000"), s(&["zh-yiyi"]));
        // 一千一百一十一: 一 before a place word is a count (yi4), before 十 and alone a digit.
        assert_eq!(
            zh("1111"),
            s(&["zh-yiqian", "zh-yibai", "digit-1", "zh-shi", "digit-1"])
        );
        // 一万零一百, 十一万 (一 inside 十一 stays a digit), 一亿零一万
        assert_eq!(zh("10100"), s(&["zh-yiwan", "zh-ling", "zh-yibai"]));
        assert_eq!(zh("110000"), s(&["zh-shi", "digit-1", "zh-wan"]));
        assert_eq!(zh("100010000"), s(&["zh-yiyi", "zh-ling", "zh-yiwan"]));
        // Third tone before 百: 两百, 五百五十, 九百万; 三百 and 五千 are unchanged.
        assert_eq!(zh("200"), s(&["zh-liangbai"]));
        assert_eq!(zh("550"), s(&["zh-wubai", "digit-5", "zh-shi"]));
        assert_eq!(zh("9000000"), s(&["zh-jiubai", "zh-wan"]));
        assert_eq!(zh("300"), s(&["digit-3", "zh-bai"]));
        assert_eq!(zh("5000"), s(&["digit-5", "zh-qian"]));
        // Money and ranks use the same numbers: 一百元, 第一百位.
        assert_eq!(
            say(SayKind::Money, "100", "zh"),
            s(&["zh-yibai", "zh-yuan"])
        );
        assert_eq!(say_rank(100, "zh"), s(&["zh-yibai"]));
        // A lone 1 is still the digit (一元, 第一位), English unchanged.
        assert_eq!(zh("1"), s(&["digit-1"]));
        assert_eq!(say(SayKind::Number, "100", "en"), s(&["num-1", "num-100"]));
    }
}
