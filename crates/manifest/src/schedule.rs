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
    use super::check;

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
