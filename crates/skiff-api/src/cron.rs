//! CronJob schedules: the standard five-field cron syntax and the `@hourly`-style macros, parsed
//! as Kubernetes' parser (robfig/cron v3 `ParseStandard`) does, with its error wording, so the
//! apiserver refuses what Kubernetes refuses and a controller can read what it accepts.

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fire when every field matches. Bit `n` of a field is set when value `n` matches.
    Fields {
        minutes: u64,
        hours: u64,
        days_of_month: u64,
        months: u64,
        days_of_week: u64,
        /// The day-of-month field was `*` or `?`: only the day of the week restricts days
        /// (cron's rule: when both are restricted, either may match).
        dom_any: bool,
        /// The day-of-week field was `*` or `?`.
        dow_any: bool,
    },
    /// `@every <duration>`: a fixed interval, in whole seconds (at least 1).
    Every(u64),
}

impl Schedule {
    /// The first time this schedule fires strictly after `after`, reading the fields as wall
    /// clock time in `tz` (as robfig/cron's `Next`, which Kubernetes' CronJob controller
    /// uses): whole minutes for five-field schedules, `after` plus the interval (in whole
    /// seconds) for `@every`. None when nothing matches within five years (e.g. `30 2 31 2 *`).
    pub fn next_after(
        &self,
        after: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<jiff::Timestamp> {
        use jiff::{SignedDuration, ToSpan};
        let (minutes, hours, days_of_month, months, days_of_week, dom_any, dow_any) = match *self {
            Schedule::Every(secs) => {
                let whole = jiff::Timestamp::from_second(after.as_second()).ok()?;
                return whole
                    .checked_add(SignedDuration::from_secs(secs as i64))
                    .ok();
            }
            Schedule::Fields {
                minutes,
                hours,
                days_of_month,
                months,
                days_of_week,
                dom_any,
                dow_any,
            } => (
                minutes,
                hours,
                days_of_month,
                months,
                days_of_week,
                dom_any,
                dow_any,
            ),
        };
        let has = |set: u64, v: i8| set & (1 << v) != 0;
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute after `after`.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if !has(months, t.month()) {
                t = t
                    .first_of_month()
                    .start_of_day()
                    .checked_add(1.month())
                    .ok()?;
                continue;
            }
            let dom = has(days_of_month, t.day());
            let dow = has(days_of_week, t.weekday().to_sunday_zero_offset());
            // Cron's rule: when both day fields are restricted, either may match.
            let day_ok = if dom_any || dow_any {
                dom && dow
            } else {
                dom || dow
            };
            if !day_ok {
                t = t.start_of_day().checked_add(1.day()).ok()?;
                continue;
            }
            if !has(hours, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(minutes, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A wall time skipped by a DST change fires at the same instant later, a repeated
            // one at its first occurrence.
            let at = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
/// Month names map to 1..=12 (index + 1).
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// Day names map to 0..=6 (index).
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses `spec`, returning the message Kubernetes' parser gives for a bad one (e.g.
/// `expected exactly 5 fields, found 4: [*/5 * * *]`).
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    // A leading TZ=/CRON_TZ= names the zone; the CronJob validation refuses it on its own
    // (Kubernetes has `spec.timeZone` for that), so only the rest is parsed here.
    let spec = match spec
        .strip_prefix("TZ=")
        .or_else(|| spec.strip_prefix("CRON_TZ="))
    {
        Some(rest) => {
            let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if jiff::tz::TimeZone::get(zone).is_err() {
                return Err(format!(
                    "provided bad location {zone}: unknown time zone {zone}"
                ));
            }
            rest.trim()
        }
        None => spec,
    };
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let any = |f: &str| f == "*" || f == "?";
    Ok(Schedule::Fields {
        minutes: field(fields[0], &MINUTES)?,
        hours: field(fields[1], &HOURS)?,
        days_of_month: field(fields[2], &DOM)?,
        months: field(fields[3], &MONTHS)?,
        days_of_week: field(fields[4], &DOW)?,
        dom_any: any(fields[2]),
        dow_any: any(fields[4]),
    })
}

/// Every value of a field, as a bit set.
fn all(b: &Bounds) -> u64 {
    (b.min..=b.max).fold(0, |acc, v| acc | 1 << v)
}

fn descriptor(spec: &str) -> Result<Schedule, String> {
    let fixed = |m: &str, h: &str, dom: &str, mon: &str, dow: &str| -> Result<Schedule, String> {
        parse(&format!("{m} {h} {dom} {mon} {dow}"))
    };
    match spec {
        "@yearly" | "@annually" => fixed("0", "0", "1", "1", "*"),
        "@monthly" => fixed("0", "0", "1", "*", "*"),
        "@weekly" => fixed("0", "0", "*", "*", "0"),
        "@daily" | "@midnight" => fixed("0", "0", "*", "*", "*"),
        "@hourly" => fixed("0", "*", "*", "*", "*"),
        _ => match spec.strip_prefix("@every ") {
            Some(d) => go_duration(d.trim())
                // Shorter intervals run every second, as Kubernetes' parser rounds them.
                .map(|s| Schedule::Every(s.max(1)))
                .ok_or_else(|| {
                    format!("failed to parse duration {spec}: time: invalid duration {d:?}")
                }),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// A Go duration (`1h30m`, `90s`, `1.5h`) in whole seconds, rounded down; sub-second units are
/// accepted as Go does.
fn go_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += num * scale;
    }
    Some((nanos / 1e9) as u64)
}

/// One comma-separated field.
fn field(text: &str, b: &Bounds) -> Result<u64, String> {
    text.split(',')
        .try_fold(0u64, |acc, part| Ok(acc | range(part, b)?))
}

/// One `a`, `a-b`, `*`, `?`, with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let (range_part, step) = match expr.split('/').collect::<Vec<_>>()[..] {
        [r] => (r, None),
        [r, s] => (r, Some(s)),
        _ => return Err(format!("too many slashes: {expr}")),
    };
    let bounds: Vec<&str> = range_part.split('-').collect();
    let (start, mut end) = match bounds[..] {
        ["*" | "?"] => (b.min, b.max),
        [one] => {
            let n = number_or_name(one, b)?;
            (n, n)
        }
        [lo, hi] => (number_or_name(lo, b)?, number_or_name(hi, b)?),
        _ => return Err(format!("too many hyphens: {expr}")),
    };
    let step = match step {
        None => 1,
        Some(s) => {
            // `N/step` means `N-max/step`.
            if bounds.len() == 1 && bounds[0] != "*" && bounds[0] != "?" {
                end = b.max;
            }
            number(s)?
        }
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok((start..=end)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | 1 << v)
        & all(b))
}

fn number_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        // Months count from 1, days of the week from 0.
        return Ok(i as u32 + b.min);
    }
    number(s)
}

/// A non-negative integer, with Go's `strconv.Atoi` wording for what is not one.
fn number(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
        ));
    }
    let n: i64 = s.parse().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: value out of range")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|_| format!("end of range ({n}) above maximum: {s}"))
}

/// Validates a `timeZone` as Kubernetes does: an IANA zone name this machine's time zone
/// database knows, not `Local`. The message is the detail of `spec.timeZone: Invalid value`.
pub fn validate_time_zone(zone: &str) -> Result<(), String> {
    if zone.is_empty() {
        return Err("timeZone must be nil or non-empty string".into());
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !zone.split('/').all(part_ok) {
        return Err(format!("unknown time zone {zone}"));
    }
    if zone.eq_ignore_ascii_case("local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    jiff::tz::TimeZone::get(zone)
        .map(|_| ())
        .map_err(|_| format!("unknown time zone {zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_kubernetes_accepts() {
        for spec in [
            "* * * * *",
            "*/1 * * * *",
            "0 0 13 * 5",
            "0-59/15 * * * *",
            "5 4 * * sun",
            "0 22 * * MON-FRI",
            "0 0 1 jan,jul *",
            "30 2 ? * *",
            "0 */2 1-15 * 1,3,5",
            "5/10 * * * *",
            "  0 1 * * *  ",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 1h30m",
            "@every 90s",
        ] {
            assert!(parse(spec).is_ok(), "{spec}: {:?}", parse(spec));
        }
    }

    #[test]
    fn refuses_with_kubernetes_messages() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "0 0 * * * *",
                "expected exactly 5 fields, found 6: [0 0 * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "* * * foo *",
                "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "@every soon",
                "failed to parse duration @every soon: time: invalid duration \"soon\"",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap_err(), want, "{spec}");
        }
    }

    #[test]
    fn fields_and_macros_mean_what_cron_means() {
        let Schedule::Fields {
            minutes,
            hours,
            days_of_week,
            dom_any,
            dow_any,
            ..
        } = parse("*/15 9-17 * * mon-fri").unwrap()
        else {
            panic!("not fields");
        };
        assert_eq!(minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(hours, (9..=17).fold(0, |a, h| a | 1 << h));
        assert_eq!(days_of_week, (1..=5).fold(0, |a, d| a | 1 << d));
        assert!(dom_any && !dow_any);
        assert_eq!(parse("@hourly").unwrap(), parse("0 * * * *").unwrap());
        assert_eq!(parse("@weekly").unwrap(), parse("0 0 * * 0").unwrap());
        assert_eq!(parse("@every 1h30m").unwrap(), Schedule::Every(5400));
        // N/step runs from N to the field's maximum.
        let Schedule::Fields { minutes, .. } = parse("50/5 * * * *").unwrap() else {
            panic!("not fields");
        };
        assert_eq!(minutes, 1 << 50 | 1 << 55);
    }

    #[test]
    fn time_zones() {
        assert!(validate_time_zone("Etc/UTC").is_ok());
        assert!(validate_time_zone("Europe/Berlin").is_ok());
        assert!(validate_time_zone("America/Argentina/Buenos_Aires").is_ok());
        assert_eq!(
            validate_time_zone("Mars/Olympus").unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert_eq!(
            validate_time_zone("../etc/passwd").unwrap_err(),
            "unknown time zone ../etc/passwd"
        );
        assert!(
            validate_time_zone("Local")
                .unwrap_err()
                .contains("explicit")
        );
        assert!(validate_time_zone("").is_err());
    }

    #[test]
    fn next_times_follow_the_fields_in_the_time_zone() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let next = |spec: &str, after: &str, tz: &jiff::tz::TimeZone| {
            parse(spec).unwrap().next_after(t(after), tz)
        };
        assert_eq!(
            next("*/1 * * * *", "2026-12-07T23:05:30Z", &utc),
            Some(t("2026-12-07T23:06:00Z"))
        );
        // Strictly after: a time on the schedule is not its own next.
        assert_eq!(
            next("*/15 * * * *", "2026-12-07T23:15:00Z", &utc),
            Some(t("2026-12-07T23:30:00Z"))
        );
        assert_eq!(
            next("@hourly", "2026-12-31T23:59:00Z", &utc),
            Some(t("2027-01-01T00:00:00Z"))
        );
        // 2026-12-07 is a Monday; weekdays at 09:00.
        assert_eq!(
            next("0 9 * * mon-fri", "2026-12-11T10:00:00Z", &utc),
            Some(t("2026-12-14T09:00:00Z"))
        );
        // Both day fields restricted: the 1st of the month or any Sunday.
        assert_eq!(
            next("0 0 1 * sun", "2026-12-07T00:00:00Z", &utc),
            Some(t("2026-12-13T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z", &utc),
            Some(t("2028-02-29T00:00:00Z"))
        );
        assert_eq!(next("0 0 30 2 *", "2026-03-01T00:00:00Z", &utc), None);
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            next("0 9 * * *", "2026-12-07T00:00:00Z", &berlin),
            Some(t("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            next("@every 90s", "2026-12-07T00:00:00.5Z", &utc),
            Some(t("2026-12-07T00:01:30Z"))
        );
    }
}
