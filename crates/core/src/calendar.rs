//! Civil dates in Astana time and the operational-day calendar.
//!
//! The calendar decides on which days bank <-> NBK conversions (emission and redemption)
//! run: they move money in the central bank's RTGS (the ABS), which works on operational days
//! only. Payments in DT between clients run 24/7 and ignore the calendar.

use crate::{ensure, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Astana time: UTC+5, all year.
pub const ASTANA_OFFSET_SECONDS: i64 = 5 * 3600;
const SECONDS_PER_DAY: i64 = 86_400;

/// A civil date, `YYYY-MM-DD` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn new(year: i32, month: u8, day: u8) -> Result<Date> {
        ensure!((1970..=9999).contains(&year), MalformedInput, "year {year} out of range");
        ensure!((1..=12).contains(&month), MalformedInput, "month {month} out of range");
        ensure!(
            day >= 1 && day <= days_in_month(year, month),
            MalformedInput,
            "day {day} does not exist in {year}-{month:02}"
        );
        Ok(Date { year, month, day })
    }

    /// The Astana-time date of an instant given in milliseconds since the Unix epoch.
    pub fn astana_of_unix_ms(unix_ms: u64) -> Date {
        let seconds = (unix_ms / 1000) as i64 + ASTANA_OFFSET_SECONDS;
        Date::from_days(seconds.div_euclid(SECONDS_PER_DAY))
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01 (`civil_from_days`).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// ISO weekday: 1 = Monday … 7 = Sunday.
    pub fn weekday(&self) -> u8 {
        // 1970-01-01 was a Thursday (4).
        ((self.days() + 3).rem_euclid(7) + 1) as u8
    }

    pub fn is_weekend(&self) -> bool {
        self.weekday() >= 6
    }

    pub fn next(&self) -> Date {
        Date::from_days(self.days() + 1)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for Date {
    type Err = Error;
    fn from_str(text: &str) -> Result<Date> {
        let bad = || Error::malformed(format!("'{text}' is not a date YYYY-MM-DD"));
        let mut parts = text.split('-');
        let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        Date::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Fixed public holidays of the Republic of Kazakhstan (month, day), used as the calendar's
/// default. Movable days (Kurban Ait, transfers of days off) are set by the operator.
pub const KZ_PUBLIC_HOLIDAYS: [(u8, u8); 13] =
    [(1, 1), (1, 2), (3, 8), (3, 21), (3, 22), (3, 23), (5, 1), (5, 7), (5, 9), (7, 6), (8, 30), (10, 25), (12, 16)];

/// The operational-day calendar: Monday to Friday are working days, weekends and the public
/// holidays are not, and the operator overrides any single day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    /// Operator decisions: `true` = working day, `false` = holiday.
    pub overrides: BTreeMap<Date, bool>,
}

impl Calendar {
    /// The day type without operator overrides.
    pub fn default_is_working(date: Date) -> bool {
        !date.is_weekend() && !KZ_PUBLIC_HOLIDAYS.contains(&(date.month, date.day))
    }

    pub fn is_working_day(&self, date: Date) -> bool {
        match self.overrides.get(&date) {
            Some(&working) => working,
            None => Calendar::default_is_working(date),
        }
    }

    /// The first working day strictly after `date`, searching at most a year ahead.
    pub fn next_working_day(&self, date: Date) -> Option<Date> {
        let mut day = date;
        for _ in 0..366 {
            day = day.next();
            if self.is_working_day(day) {
                return Some(day);
            }
        }
        None
    }

    /// Working days in a year.
    pub fn working_days_in(&self, year: i32) -> u32 {
        let mut count = 0;
        let mut day = Date { year, month: 1, day: 1 };
        while day.year == year {
            count += u32::from(self.is_working_day(day));
            day = day.next();
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_weekday() {
        let d: Date = "2026-11-21".parse().unwrap();
        assert_eq!(d.weekday(), 6); // a Saturday
        assert_eq!(Date::from_days(d.days()), d);
        assert_eq!(Date::from_days(0), Date::new(1970, 1, 1).unwrap());
        assert!("2026-02-29".parse::<Date>().is_err());
        assert!("2024-02-29".parse::<Date>().is_ok());
        assert!("26-1-1".parse::<Date>().is_err());
    }

    #[test]
    fn astana_date_is_five_hours_ahead_of_utc() {
        // 2026-11-21 20:00 UTC is already 2026-11-22 01:00 in Astana.
        let ms = (Date::new(2026, 11, 21).unwrap().days() * 86_400 + 20 * 3600) as u64 * 1000;
        assert_eq!(Date::astana_of_unix_ms(ms).to_string(), "2026-11-22");
    }

    #[test]
    fn calendar_defaults_and_overrides() {
        let mut cal = Calendar::default();
        let saturday: Date = "2026-11-21".parse().unwrap();
        let monday: Date = "2026-11-23".parse().unwrap();
        assert!(!cal.is_working_day(saturday));
        assert_eq!(cal.next_working_day(saturday), Some(monday));
        assert!(!cal.is_working_day("2026-12-16".parse().unwrap()));
        cal.overrides.insert(monday, false);
        assert_eq!(cal.next_working_day(saturday).unwrap().to_string(), "2026-11-24");
        let base = Calendar::default().working_days_in(2026);
        assert!((240..=255).contains(&base), "{base}");
    }
}
