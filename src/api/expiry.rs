//! Key expiry dates: UTC days and times, written one way only, and real.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<u32> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`, zero-padded and
/// a real calendar day, as Unix seconds.
pub fn parse_expiry(text: &str) -> Option<u64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let y = i64::from(digits(parts.next()?, 4)?);
    let m = digits(parts.next()?, 2)?;
    let d = digits(parts.next()?, 2)?;
    if parts.next().is_some()
        || y < 1970
        || !(1..=12).contains(&m)
        || !(1..=days_in_month(y, m)).contains(&d)
    {
        return None;
    }
    let mut seconds = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let mut hms = time.split(':');
        let h = digits(hms.next()?, 2)?;
        let mi = digits(hms.next()?, 2)?;
        let s = digits(hms.next()?, 2)?;
        if hms.next().is_some() || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        seconds += i64::from(h * 3600 + mi * 60 + s);
    }
    u64::try_from(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_are_real_padded_days() {
        assert_eq!(parse_expiry("1970-01-02"), Some(86_400));
        assert_eq!(parse_expiry("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_expiry("2026-11-28T12:00:00Z"), Some(1_795_867_200));
        assert_eq!(parse_expiry("2028-02-29"), Some(1_835_395_200));
        for bad in [
            "2026-13-01",
            "tomorrow",
            "2026-02-30",
            "2027-02-29",
            "2026-04-31",
            "2026-1-1",
            "26-01-01",
            "+2026-01-01",
            "2026-01-01T1:00:00Z",
            "2026-01-01T12:00:60Z",
            "2026-01-01T12:00:00",
            "2026-01-01T12:00:00:00Z",
        ] {
            assert_eq!(parse_expiry(bad), None, "{bad}");
        }
    }
}
