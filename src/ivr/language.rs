//! The call's language before the first word: from the caller's ticket when the number is
//! known, else from the number's prefix (`[language] prefixes`), else unknown (the dialplan
//! then offers a bilingual choice). Pure: the call actor does the lookup and hands the
//! ticket's language in. See docs/configuration.md (`[language]`) and docs/dialplan.md.

/// Where the call's language came from; the dialplan sees it as `${language_source}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageSource {
    /// The caller's ticket (inbound: looked up by number; outbound: the dialer's ticket).
    Ticket,
    /// The calling number's prefix.
    Prefix,
    /// Neither decided: the dialplan's default language, and a choice is worth offering.
    Unknown,
}

impl LanguageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LanguageSource::Ticket => "ticket",
            LanguageSource::Prefix => "prefix",
            LanguageSource::Unknown => "unknown",
        }
    }
}

/// Number prefix -> language (longest prefix wins). Prefixes are E.164 with the `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixTable {
    /// Sorted longest first, so the first match is the most specific.
    entries: Vec<(String, String)>,
}

impl Default for PrefixTable {
    /// Mainland China, Hong Kong, Macau and Taiwan speak to us in Mandarin; North America
    /// and the UK in English.
    fn default() -> PrefixTable {
        PrefixTable::new(
            [
                ("+86", "zh"),
                ("+852", "zh"),
                ("+853", "zh"),
                ("+886", "zh"),
                ("+1", "en"),
                ("+44", "en"),
            ]
            .into_iter()
            .map(|(p, l)| (p.to_string(), l.to_string())),
        )
    }
}

impl PrefixTable {
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> PrefixTable {
        let mut entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(p, l)| (normalise(&p), l))
            .filter(|(p, _)| p.len() > 1)
            .collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        PrefixTable { entries }
    }

    /// The language of `number` (`+8613...`, `008613...`, `+86 138 ...`), if a prefix matches.
    pub fn lookup(&self, number: &str) -> Option<&str> {
        let n = normalise(number);
        if !n.starts_with('+') {
            // A SIP user name or a national number says nothing about the country.
            return None;
        }
        self.entries
            .iter()
            .find(|(p, _)| n.starts_with(p.as_str()))
            .map(|(_, l)| l.as_str())
    }
}

/// `+` and digits only; an international `00` becomes `+`.
fn normalise(number: &str) -> String {
    let kept: String = number
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    match kept.strip_prefix("00") {
        Some(rest) if !kept.starts_with('+') => format!("+{rest}"),
        _ => kept,
    }
}

/// The language and where it came from. `ticket_language` is the caller's ticket's language
/// (None or empty: no ticket, or the lookup did not answer in time).
pub fn choose(
    ticket_language: Option<&str>,
    caller: &str,
    table: &PrefixTable,
) -> (Option<String>, LanguageSource) {
    if let Some(l) = ticket_language.map(str::trim).filter(|l| !l.is_empty()) {
        return (Some(l.to_string()), LanguageSource::Ticket);
    }
    match table.lookup(caller) {
        Some(l) => (Some(l.to_string()), LanguageSource::Prefix),
        None => (None, LanguageSource::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_wins_over_prefix() {
        let t = PrefixTable::default();
        assert_eq!(
            choose(Some("en"), "+8613800138000", &t),
            (Some("en".into()), LanguageSource::Ticket)
        );
    }

    #[test]
    fn prefix_decides_without_ticket() {
        let t = PrefixTable::default();
        assert_eq!(
            choose(None, "+8613800138000", &t),
            (Some("zh".into()), LanguageSource::Prefix)
        );
        assert_eq!(
            choose(Some(""), "0085291234567", &t),
            (Some("zh".into()), LanguageSource::Prefix)
        );
        assert_eq!(
            choose(None, "+1 555 123 0001", &t),
            (Some("en".into()), LanguageSource::Prefix)
        );
    }

    #[test]
    fn unknown_when_nothing_matches() {
        let t = PrefixTable::default();
        assert_eq!(
            choose(None, "+33612345678", &t),
            (None, LanguageSource::Unknown)
        );
        assert_eq!(choose(None, "lena", &t), (None, LanguageSource::Unknown));
        assert_eq!(choose(None, "", &t), (None, LanguageSource::Unknown));
    }

    #[test]
    fn longest_prefix_wins() {
        let t = PrefixTable::new([
            ("+8".to_string(), "en".to_string()),
            ("+86".to_string(), "zh".to_string()),
        ]);
        assert_eq!(t.lookup("+8613800138000"), Some("zh"));
        assert_eq!(t.lookup("+8100"), Some("en"));
    }
}
