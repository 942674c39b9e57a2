//! Go-style durations as the API spells them: one or more `<integer><unit>` with unit `d`, `h`,
//! `m` or `s` ("2160h", "90d", "1h30m").

use chrono::Duration;

/// Longest duration anything may ask for: ten years.
pub const MAX: Duration = Duration::days(3650);

/// Parse a positive duration of at most [`MAX`]; the error says what is wrong, quoting `text`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = |problem: &str| format!("{text:?} {problem}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("is empty"));
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for ch in trimmed.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| invalid("is not a duration like \"2160h\" or \"90d\""))?;
        digits.clear();
        let part = match ch {
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            'm' => Duration::try_minutes(n),
            's' => Duration::try_seconds(n),
            _ => None,
        }
        .ok_or_else(|| invalid("is not a duration like \"2160h\" or \"90d\""))?;
        total = total
            .checked_add(&part)
            .ok_or_else(|| invalid("is too long"))?;
    }
    if !digits.is_empty() {
        return Err(invalid("has a number without a unit (d, h, m, s)"));
    }
    if total <= Duration::zero() {
        return Err(invalid("must be positive"));
    }
    if total > MAX {
        return Err(invalid("is longer than ten years"));
    }
    Ok(total)
}

/// Render a duration the way [`parse`] reads it: whole hours when possible, else seconds.
pub fn format(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse("2160h"), Ok(Duration::hours(2160)));
        assert_eq!(parse("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("90d"), Ok(Duration::days(90)));
        assert_eq!(parse("45s"), Ok(Duration::seconds(45)));
        for bad in [
            "", "10", "h", "1x", "-5h", "0h", "1h2", "99999d", "1.5h", "abc",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format(Duration::hours(2160)), "2160h");
        assert_eq!(format(Duration::seconds(61)), "61s");
    }
}
