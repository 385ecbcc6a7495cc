//! AMQP topic matching: dot-separated words; in patterns `*` is one word and
//! `#` is zero or more words.

use super::BusError;

fn words(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

fn valid_word(w: &str) -> bool {
    !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@'))
}

/// Checks a concrete topic (no wildcards).
pub(crate) fn check_topic(topic: &str) -> Result<(), BusError> {
    if topic.len() <= 255 && words(topic).iter().all(|w| valid_word(w)) {
        Ok(())
    } else {
        Err(BusError::BadTopic(topic.to_owned()))
    }
}

/// Parses a pattern into its words.
pub(crate) fn parse_pattern(pattern: &str) -> Result<Vec<String>, BusError> {
    let ws = words(pattern);
    if pattern.len() <= 255 && ws.iter().all(|w| *w == "*" || *w == "#" || valid_word(w)) {
        Ok(ws.into_iter().map(str::to_owned).collect())
    } else {
        Err(BusError::BadTopic(pattern.to_owned()))
    }
}

/// Whether `topic` matches the parsed `pattern`.
pub(crate) fn matches(pattern: &[String], topic: &str) -> bool {
    fn go(p: &[String], t: &[&str]) -> bool {
        match (p.first().map(String::as_str), t.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some("#"), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(_), None) => false,
            (Some("*"), Some(_)) => go(&p[1..], &t[1..]),
            (Some(w), Some(tw)) => w == *tw && go(&p[1..], &t[1..]),
        }
    }
    go(pattern, &words(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        matches(&parse_pattern(p).unwrap(), t)
    }

    #[test]
    fn wildcards_follow_amqp_topic_rules() {
        assert!(m("vitals.p-1", "vitals.p-1"));
        assert!(!m("vitals.p-1", "vitals.p-2"));
        assert!(m("vitals.*", "vitals.p-1"));
        assert!(!m("vitals.*", "vitals.p-1.hr"));
        assert!(m("vitals.#", "vitals.p-1.hr"));
        assert!(m("vitals.#", "vitals"));
        assert!(m("#", "anything.at.all"));
        assert!(m("*.p-1.#", "alerts.p-1"));
        assert!(m("#.hr", "vitals.p-1.hr"));
        assert!(!m("#.hr", "vitals.p-1.spo2"));
    }

    #[test]
    fn malformed_topics_and_patterns_are_refused() {
        assert!(check_topic("vitals.p-1").is_ok());
        assert!(check_topic("vitals..p").is_err());
        assert!(check_topic("vitals.*").is_err());
        assert!(check_topic("").is_err());
        assert!(parse_pattern("a.*.#").is_ok());
        assert!(parse_pattern("a.b c").is_err());
    }
}
