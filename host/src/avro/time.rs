//! Calendar conversions for the `date` and timestamp logical types.
//!
//! Only the proleptic Gregorian calendar for years 0000-9999 is rendered as
//! text; values outside that range stay integers (which the encoder also
//! accepts), so every stored value still round-trips.

/// Resolution of a timestamp logical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Millis,
    Micros,
}

impl Unit {
    fn per_second(self) -> i64 {
        match self {
            Unit::Millis => 1_000,
            Unit::Micros => 1_000_000,
        }
    }

    fn digits(self) -> usize {
        match self {
            Unit::Millis => 3,
            Unit::Micros => 6,
        }
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a civil date (Gregorian, proleptic).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March so the leap day is the last day of the
    // "year"; then eras of 400 years repeat exactly.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Parses `YYYY-MM-DD` into days since the epoch.
fn parse_civil(s: &[u8]) -> Option<i64> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = i64::from(digits(&s[0..4])?);
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses a `date` string (`YYYY-MM-DD`) into days since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    i32::try_from(parse_civil(s.as_bytes())?).ok()
}

/// Renders days since the epoch as `YYYY-MM-DD`, if the year has 4 digits.
pub(crate) fn format_date(days: i64) -> Option<String> {
    let (y, m, d) = civil_from_days(days);
    (0..=9999)
        .contains(&y)
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// Parses an RFC 3339 timestamp (`local == false`, offset required) or an
/// offset-free ISO 8601 local date-time (`local == true`) into units since
/// the epoch. Fraction digits beyond the unit must be zeros: silently
/// truncating would change the value.
pub(crate) fn parse_timestamp(s: &str, unit: Unit, local: bool) -> Result<i64, String> {
    let b = s.as_bytes();
    let bad = || {
        if local {
            format!("`{s}` is not a date-time like `2024-01-31T12:00:00.000`")
        } else {
            format!("`{s}` is not an rfc 3339 timestamp like `2024-01-31T12:00:00.000Z`")
        }
    };
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let days = parse_civil(&b[..10]).ok_or_else(bad)?;
    let hour = i64::from(digits(&b[11..13]).ok_or_else(bad)?);
    let minute = i64::from(digits(&b[14..16]).ok_or_else(bad)?);
    let second = i64::from(digits(&b[17..19]).ok_or_else(bad)?);
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let mut rest = &b[19..];
    let mut sub: i64 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(bad());
        }
        let (kept, dropped) = frac[..n].split_at(n.min(unit.digits()));
        if dropped.iter().any(|&d| d != b'0') {
            return Err(format!(
                "`{s}` has more fraction digits than the {} resolution of the field",
                if unit == Unit::Millis {
                    "millisecond"
                } else {
                    "microsecond"
                }
            ));
        }
        for i in 0..unit.digits() {
            sub = sub * 10 + kept.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &frac[n..];
    }
    let offset_secs = if local {
        if !rest.is_empty() {
            return Err(bad());
        }
        0
    } else {
        match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = i64::from(digits(&[*h1, *h2]).ok_or_else(bad)?);
                let m = i64::from(digits(&[*m1, *m2]).ok_or_else(bad)?);
                if h > 23 || m > 59 {
                    return Err(bad());
                }
                let off = h * 3600 + m * 60;
                if *sign == b'-' { -off } else { off }
            }
            _ => return Err(bad()),
        }
    };
    let secs = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(unit.per_second())
        .and_then(|v| v.checked_add(sub))
        .ok_or_else(|| format!("`{s}` is out of range"))
}

/// Renders units since the epoch as `YYYY-MM-DDTHH:MM:SS.fff` plus `Z` unless
/// `local`; `None` when the year is outside 0000-9999.
pub(crate) fn format_timestamp(value: i64, unit: Unit, local: bool) -> Option<String> {
    let secs = value.div_euclid(unit.per_second());
    let sub = value.rem_euclid(unit.per_second());
    let days = secs.div_euclid(SECONDS_PER_DAY);
    let tod = secs.rem_euclid(SECONDS_PER_DAY);
    let date = format_date(days)?;
    let width = unit.digits();
    Some(format!(
        "{date}T{:02}:{:02}:{:02}.{sub:0width$}{}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        if local { "" } else { "Z" }
    ))
}
