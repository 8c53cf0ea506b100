//! Schedule expressions for scheduled tasks.
//!
//! Three spellings are accepted, so that schedules copied from crontab files and from
//! EventBridge rules both work unchanged: a five-field cron line (or `@daily`…), an AWS
//! `cron(min hour day-of-month month day-of-week year)` expression, and `rate(N unit)`.

use croner::parser::{CronParser, Seconds, Year};

/// Checks a schedule expression, explaining what is wrong with it.
pub(crate) fn check(expression: &str) -> Result<(), String> {
    let expression = expression.trim();
    if let Some(inner) = strip_call(expression, "rate") {
        return check_rate(inner);
    }
    if let Some(inner) = strip_call(expression, "cron") {
        // EventBridge cron: six fields, the last the year, days of the week 1-7 from
        // Sunday (croner calls that the Quartz weekday mode).
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, day_of_month, month, day_of_week, year] = fields[..] else {
            return Err("cron(…) takes six fields: minutes hours day-of-month month day-of-week year".to_owned());
        };
        check_year(year)?;
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .alternative_weekdays(true)
            .build();
        let five_fields = format!("{minutes} {hours} {day_of_month} {month} {day_of_week}");
        return parser.parse(&five_fields).map(|_| ()).map_err(|error| error.to_string());
    }
    if !expression.starts_with('@') && expression.split_whitespace().count() != 5 {
        return Err(
            "expected five cron fields (minute hour day-of-month month day-of-week), cron(…) or rate(…)".to_owned()
        );
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    parser.parse(expression).map(|_| ()).map_err(|error| error.to_string())
}

/// The first time strictly after `after_ms` (Unix ms) that `expression` fires, in UTC
/// (as EventBridge schedules are). `rate(N unit)` fires every N units counted from
/// `anchor_ms` (when the task was deployed, say). `None` for an expression that does
/// not check, or a cron with no time left.
///
/// An EventBridge `cron(…)`'s year field is only checked, not applied: launchway runs
/// Docker tasks every year the rest of the expression matches.
pub fn next_after(expression: &str, after_ms: i64, anchor_ms: i64) -> Option<i64> {
    let expression = expression.trim();
    check(expression).ok()?;
    if let Some(inner) = strip_call(expression, "rate") {
        let mut parts = inner.split_whitespace();
        let count: i64 = parts.next()?.parse().ok()?;
        let unit_ms: i64 = match parts.next()? {
            "minute" | "minutes" => 60_000,
            "hour" | "hours" => 3_600_000,
            _ => 86_400_000,
        };
        let period = count * unit_ms;
        // The first firing is one period after the anchor, never the anchor itself.
        let periods = ((after_ms - anchor_ms).div_euclid(period) + 1).max(1);
        return Some(anchor_ms + periods * period);
    }
    let cron = if let Some(inner) = strip_call(expression, "cron") {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .alternative_weekdays(true)
            .build()
            .parse(&fields[..5].join(" "))
            .ok()?
    } else {
        CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(expression).ok()?
    };
    let utc = jiff::tz::TimeZone::UTC;
    let after = jiff::Timestamp::from_millisecond(after_ms).ok()?.to_zoned(utc.clone()).datetime();
    let next: jiff::civil::DateTime = cron.find_next_occurrence(&after, false).ok()?;
    Some(next.to_zoned(utc).ok()?.timestamp().as_millisecond())
}

fn strip_call<'a>(expression: &'a str, name: &str) -> Option<&'a str> {
    expression.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')').map(str::trim)
}

/// The year field of an EventBridge cron: `*`, `?`, a year, a range or a list of them.
fn check_year(field: &str) -> Result<(), String> {
    if field == "*" || field == "?" {
        return Ok(());
    }
    let valid = field.split(',').all(|part| {
        let part = part.split('/').next().unwrap_or(part);
        part.split('-').all(|year| year.parse::<u32>().is_ok_and(|year| (1970..=2199).contains(&year)))
    });
    if valid { Ok(()) } else { Err(format!("{field:?} is not a year field (1970-2199, ranges, lists, * or ?)")) }
}

fn check_rate(inner: &str) -> Result<(), String> {
    let mut parts = inner.split_whitespace();
    let (Some(count), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("rate(…) takes a number and a unit, like rate(5 minutes)".to_owned());
    };
    match count.parse::<u32>() {
        Ok(count) if count > 0 => {}
        _ => return Err(format!("{count:?} is not a positive whole number")),
    }
    match unit {
        "minute" | "minutes" | "hour" | "hours" | "day" | "days" => Ok(()),
        other => Err(format!("unknown unit {other:?}, expected minutes, hours or days")),
    }
}

#[cfg(test)]
mod tests {
    use super::{check, next_after};

    /// 2026-11-21T10:17:30Z
    const SAT_10_17_30: i64 = 1_795_256_250_000;
    const MINUTE: i64 = 60_000;

    #[test]
    fn finds_when_each_spelling_fires_next() {
        let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        assert_eq!(at(SAT_10_17_30), "2026-11-21T10:17:30Z");
        let next = |expression: &str| next_after(expression, SAT_10_17_30, SAT_10_17_30 - 7 * MINUTE).map(at);
        assert_eq!(next("*/15 * * * *").as_deref(), Some("2026-11-21T10:30:00Z"));
        assert_eq!(next("0 3 * * *").as_deref(), Some("2026-11-22T03:00:00Z"));
        assert_eq!(next("@hourly").as_deref(), Some("2026-11-21T11:00:00Z"));
        // EventBridge: 2 = Monday.
        assert_eq!(next("cron(0 9 ? * 2 *)").as_deref(), Some("2026-11-23T09:00:00Z"));
        // Anchored 7 minutes ago (10:10:30), every 5 minutes: 10:15:30, then 10:20:30.
        assert_eq!(next("rate(5 minutes)").as_deref(), Some("2026-11-21T10:20:30Z"));
        assert_eq!(next_after("rate(5 minutes)", SAT_10_17_30, SAT_10_17_30), Some(SAT_10_17_30 + 5 * MINUTE));
        assert_eq!(next_after("rate(5 minutes)", SAT_10_17_30 - 1, SAT_10_17_30), Some(SAT_10_17_30 + 5 * MINUTE));
        assert_eq!(next("not a schedule"), None);
    }

    #[test]
    fn accepts_crontab_eventbridge_and_rate_spellings() {
        for expression in [
            "0 3 * * *",
            "*/15 9-17 * * MON-FRI",
            "@daily",
            "cron(0 3 * * ? *)",
            "cron(15 10 ? * 6L 2030)",
            "rate(1 hour)",
            "rate(5 minutes)",
        ] {
            assert_eq!(check(expression), Ok(()), "{expression}");
        }
    }

    #[test]
    fn refuses_malformed_schedules() {
        for expression in [
            "",
            "every day",
            "0 3 * *",
            "0 0 3 * * *",
            "61 * * * *",
            "cron(0 3 * * *)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "rate(five minutes)",
        ] {
            assert!(check(expression).is_err(), "{expression:?} should be refused");
        }
    }
}
