//! The NBK's operational calendar, as central enforces it: bank <-> NBK conversions (emission
//! and redemption) move money in the ABS (the NBK's RTGS), which works on operational days
//! only. The default calendar is the pure one of `dtenge_core::calendar` (Monday to Friday,
//! minus Kazakhstan's fixed public holidays, in Astana time); the operator overrides single
//! days, and central keeps those overrides in its own store.
//!
//! **Rows**: `calendar:<year u16 BE><month u8><day u8>` in [`META_TABLE`] -> one byte, `1` a
//! working day, `0` a holiday. Only days that differ from the default have a row: setting a
//! day back to its default deletes it. Fixed bytes, so the order of the rows is the order of
//! the days and nothing depends on a serializer's format.
//!
//! **Time** is injected: every question about "today" takes the caller's `now_ms` (Unix
//! milliseconds), read as an Astana-time date; the role never reads a clock.
//!
//! **What the day decides**: whether central *takes* an emission or a redemption. One taken on
//! an operational day and certified after midnight is posted (its ABS posting is the end of
//! what was admitted, like a payment in flight when a bank is blocked).

use crate::{corrupt, CentralService, Inner, META_TABLE};
use dtenge_core::calendar::{Calendar, Date};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{Store, WriteBatch};

const CALENDAR_PREFIX: &[u8] = b"calendar:";

/// A day as the operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayView {
    pub date: Date,
    /// An operational day: conversions run.
    pub working: bool,
    /// The operator's decision overrides the default (weekends and public holidays).
    pub overridden: bool,
}

fn day_key(date: &Date) -> Vec<u8> {
    // `Date::new` bounds the year to 1970..=9999, so it fits a u16.
    let year = u16::try_from(date.year).expect("a valid date's year fits in u16");
    let mut key = CALENDAR_PREFIX.to_vec();
    key.extend_from_slice(&year.to_be_bytes());
    key.extend_from_slice(&[date.month, date.day]);
    key
}

fn day_of_key(key: &[u8]) -> Result<Date> {
    let bytes = key.get(CALENDAR_PREFIX.len()..).ok_or_else(|| corrupt("a calendar key"))?;
    let [y0, y1, month, day] = bytes else { return Err(corrupt("a calendar key")) };
    Date::new(i32::from(u16::from_be_bytes([*y0, *y1])), *month, *day).map_err(|_| corrupt("a calendar key's date"))
}

/// The operator's overrides, read at open.
pub(crate) fn load(store: &Store) -> Result<Calendar> {
    let mut calendar = Calendar::default();
    for (key, value) in store.scan_prefix(META_TABLE, CALENDAR_PREFIX)? {
        let date = day_of_key(&key)?;
        let working = match value.as_slice() {
            [0] => false,
            [1] => true,
            _ => return Err(corrupt("a calendar day's type")),
        };
        calendar.overrides.insert(date, working);
    }
    Ok(calendar)
}

fn view(calendar: &Calendar, date: Date) -> DayView {
    DayView { date, working: calendar.is_working_day(date), overridden: calendar.overrides.contains_key(&date) }
}

/// Refused with the network's code and words when `now_ms` falls on a day that is not
/// operational.
pub(crate) fn ensure_operational_day(calendar: &Calendar, now_ms: u64) -> Result<()> {
    let today = Date::astana_of_unix_ms(now_ms);
    if calendar.is_working_day(today) {
        return Ok(());
    }
    let next = calendar.next_working_day(today).map(|d| d.to_string()).unwrap_or_else(|| "none within a year".into());
    Err(Error::new(
        ErrorCode::NonWorkingDay,
        format!("{today} is not an operational day; bank <-> NBK conversions resume on {next}"),
    ))
}

impl Inner {
    pub(crate) fn ensure_operational_day(&self, now_ms: u64) -> Result<()> {
        ensure_operational_day(&self.calendar, now_ms)
    }
}

impl CentralService {
    /// The operator makes `date` a working day (`working`) or a holiday. Durable before it
    /// returns; setting a day back to its default removes the override. A day already past
    /// (before today in Astana time, by `now_ms`) keeps its type: the conversions taken or
    /// refused on it were decided by it.
    pub fn set_day(&self, date: Date, working: bool, now_ms: u64) -> Result<DayView> {
        // `Date`'s fields are public: a date built by hand may not exist.
        let date = Date::new(date.year, date.month, date.day)?;
        let today = Date::astana_of_unix_ms(now_ms);
        if date < today {
            return Err(Error::malformed(format!("{date} is past (today is {today}); a past day keeps its type")));
        }
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        let mut next = inner.calendar.clone();
        let mut batch = WriteBatch::new();
        if Calendar::default_is_working(date) == working {
            next.overrides.remove(&date);
            batch.delete(META_TABLE, day_key(&date));
        } else {
            next.overrides.insert(date, working);
            batch.put(META_TABLE, day_key(&date), vec![u8::from(working)]);
        }
        self.commit(&mut inner, batch)?;
        inner.calendar = next;
        Ok(view(&inner.calendar, date))
    }

    /// The Astana-time date at `now_ms` and its type.
    pub fn today(&self, now_ms: u64) -> DayView {
        view(&self.inner.lock().calendar, Date::astana_of_unix_ms(now_ms))
    }

    /// Whether conversions run at `now_ms`.
    pub fn is_operational_day(&self, now_ms: u64) -> bool {
        self.today(now_ms).working
    }

    /// `NonWorkingDay` (naming the next working day) unless conversions run at `now_ms`: for
    /// callers that check before they change anything of their own.
    pub fn ensure_operational_day(&self, now_ms: u64) -> Result<()> {
        self.inner.lock().ensure_operational_day(now_ms)
    }

    /// A day of the calendar and its type.
    pub fn day(&self, date: Date) -> DayView {
        view(&self.inner.lock().calendar, date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_key_decodes_to_its_date_and_keys_sort_as_days() {
        let days = [Date::new(1970, 1, 1).unwrap(), Date::new(2026, 3, 21).unwrap(), Date::new(9999, 12, 31).unwrap()];
        for date in days {
            assert_eq!(day_of_key(&day_key(&date)).unwrap(), date);
        }
        assert!(day_key(&days[0]) < day_key(&days[1]) && day_key(&days[1]) < day_key(&days[2]));
        assert!(day_of_key(b"calendar:\x07\xb2\x02\x1e").is_err(), "February 30th");
        assert!(day_of_key(b"calendar:\x07\xb2\x02").is_err());
    }

    #[test]
    fn a_refusal_names_the_next_working_day() {
        // 1970-01-01 (a holiday) 05:00 Astana; the 2nd is a holiday, the 3rd and 4th a weekend.
        let refused = ensure_operational_day(&Calendar::default(), 0).unwrap_err();
        assert_eq!(refused.code, ErrorCode::NonWorkingDay);
        assert!(refused.message.contains("1970-01-05"), "{}", refused.message);
        let mut calendar = Calendar::default();
        calendar.overrides.insert(Date::new(1970, 1, 1).unwrap(), true);
        assert!(ensure_operational_day(&calendar, 0).is_ok());
    }
}
