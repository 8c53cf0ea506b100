//! How every duration launchway prints is written, configured or measured: the way a
//! manifest writes one ("10m", "1m 30s", "2s 500ms", "250ms"), so that what `plan`
//! shows can be pasted back into a file.

use std::time::Duration;

/// Formats a duration as a manifest would write it. Measured durations are rounded to
/// what a reader can use: to the millisecond under 10 s, to the second under an hour,
/// to the minute above (configured durations, whole units, print exactly).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis() + u128::from(duration.subsec_nanos() % 1_000_000 >= 500_000);
    let unit = match millis {
        0..10_000 => 1,
        10_000..3_600_000 => 1_000,
        _ => 60_000,
    };
    let rounded = (millis + unit / 2) / unit * unit;
    humantime::format_duration(Duration::from_millis(rounded as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_durations_print_as_they_are_written() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(7200), "2h"),
        ];
        for (duration, written) in cases {
            assert_eq!(format_duration(duration), written);
            assert_eq!(humantime::parse_duration(written).unwrap(), duration, "{written} reads back");
        }
    }

    #[test]
    fn measured_durations_are_rounded_to_what_a_reader_can_use() {
        assert_eq!(format_duration(Duration::from_micros(2_345_678)), "2s 346ms");
        assert_eq!(format_duration(Duration::from_millis(12_499)), "12s");
        assert_eq!(format_duration(Duration::from_millis(65_700)), "1m 6s");
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1h 2m");
    }
}
