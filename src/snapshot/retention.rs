//! The retention policy of `ouro forget`: which snapshots to keep, with the semantics of
//! restic's `forget --keep-*`, plus one rule of our own: the newest snapshot is always kept.
//!
//! Pure: snapshots are creation times, and the local zone is a function giving the UTC offset
//! at an instant, so tests pick the zone and the CLI passes [`local_offset`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_HOUR: i64 = 3_600;
const SECS_PER_DAY: i64 = 86_400;

/// How many snapshots each rule keeps (restic's `forget --keep-*`). A count of `None` or
/// `Some(0)` leaves the rule out, as restic does with 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest snapshots.
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N latest hours that have one.
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N latest days that have one.
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N latest ISO weeks (Monday to Sunday) that have one.
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N latest months that have one.
    pub monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N latest years that have one.
    pub yearly: Option<u32>,
    /// Keep every snapshot younger than this, measured back from the newest snapshot (restic).
    pub within: Option<KeepWithin>,
}

impl KeepPolicy {
    /// True when no rule is given: `forget` must refuse such a policy rather than remove
    /// everything but the newest snapshot.
    pub fn is_empty(&self) -> bool {
        // A
        Rule::all(self).is_empty() && self.within.is_none_or(|w| w.is_zero())
    }
}

/// A `--keep-within` duration in calendar units, written as restic writes it: `1y2m3d4h`
/// (any subset of the units, each at most once, in any order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepWithin {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Calendar days.
    pub days: u32,
    /// Hours of 3600 seconds.
    pub hours: u32,
}

impl KeepWithin {
    /// Parses `1y2m3d4h`-style text; the error says what is wrong in one line.
    pub fn parse(s: &str) -> Result<Self> {
        // A
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "keep-within {s:?}: {why}; expected a duration such as 1y2m3d4h \
                 (years, months, days, hours)"
            ))
        };
        if s.is_empty() {
            return Err(bad("the duration is empty".into()));
        }
        let mut within = KeepWithin::default();
        let mut seen = [false; 4];
        let mut rest = s;
        while !rest.is_empty() {
            // Digits are ASCII, so their count is also a char boundary.
            let (number, tail) = rest.split_at(rest.bytes().take_while(u8::is_ascii_digit).count());
            if number.is_empty() {
                return Err(bad(format!("expected a number at {rest:?}")));
            }
            let n: u32 = number
                .parse()
                .map_err(|_| bad(format!("{number} is too large")))?;
            let mut chars = tail.chars();
            let unit = chars
                .next()
                .ok_or_else(|| bad(format!("no unit after {number}")))?;
            let (slot, index) = match unit {
                'y' => (&mut within.years, 0),
                'm' => (&mut within.months, 1),
                'd' => (&mut within.days, 2),
                'h' => (&mut within.hours, 3),
                other => return Err(bad(format!("unknown unit {other:?}"))),
            };
            if seen[index] {
                return Err(bad(format!("unit '{unit}' is given twice")));
            }
            seen[index] = true;
            *slot = n;
            rest = chars.as_str();
        }
        Ok(within)
    }

    /// True when every unit is 0: such a duration keeps nothing, and restic ignores it.
    pub fn is_zero(&self) -> bool {
        // A
        *self == KeepWithin::default()
    }
}

impl FromStr for KeepWithin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        // A
        KeepWithin::parse(s)
    }
}

impl fmt::Display for KeepWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A
        if self.is_zero() {
            return f.write_str("0h");
        }
        let units = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        for (n, unit) in units.into_iter().filter(|&(n, _)| n != 0) {
            write!(f, "{n}{unit}")?;
        }
        Ok(())
    }
}

/// What the policy decided for one snapshot: kept when at least one rule wants it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Every rule that keeps it, e.g. "daily snapshot", "within 7d", "newest snapshot";
    /// empty when it is to be forgotten.
    pub reasons: Vec<String>,
}

/// Decides which snapshots to keep; `times` are creation times in nanoseconds since the Unix
/// epoch (UTC), in any order, and `offset(t)` is the local zone's offset east of UTC, in
/// seconds, at instant `t`. Returns one [`Verdict`] per time, in input order.
///
/// Hours, days, ISO weeks, months and years are those of the local zone. Each bucket rule
/// walks the snapshots newest first and keeps the first of every bucket it meets while its
/// count lasts, so periods without a snapshot use up nothing. Equal times count in input order.
///
/// ```
/// use ouroboros_db::snapshot::retention::{apply, KeepPolicy};
///
/// const HOUR: i64 = 3_600 * 1_000_000_000;
/// // Two snapshots on 1970-01-01 and two on the next day, in UTC.
/// let times = [10 * HOUR, 20 * HOUR, 30 * HOUR, 31 * HOUR];
/// let policy = KeepPolicy { daily: Some(2), ..KeepPolicy::default() };
/// let verdicts = apply(&policy, &times, |_| 0);
/// let kept: Vec<bool> = verdicts.iter().map(|v| v.keep).collect();
/// assert_eq!(kept, [false, true, false, true]);
/// assert_eq!(verdicts[3].reasons, ["daily snapshot", "newest snapshot"]);
/// ```
pub fn apply(policy: &KeepPolicy, times: &[i64], offset: impl Fn(i64) -> i32) -> Vec<Verdict> {
    // A
    let mut order: Vec<usize> = (0..times.len()).collect();
    // Stable and newest first, as restic's sort.Stable: equal times stay in input order.
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    let mut verdicts = vec![Verdict::default(); times.len()];
    let Some(&newest) = order.first() else {
        return verdicts;
    };
    let cutoff = |w| {
        (
            format!("within {w}"),
            within_cutoff(times[newest], w, &offset),
        )
    };
    let within = policy.within.filter(|w| !w.is_zero()).map(cutoff);
    let mut rules = Rule::all(policy);
    for &index in &order {
        let time = times[index];
        let reasons = &mut verdicts[index].reasons;
        if let Some((reason, cutoff)) = &within {
            if i128::from(time) > *cutoff {
                reasons.push(reason.clone());
            }
        }
        let local = local_seconds(time, offset(time));
        for rule in &mut rules {
            if rule.takes(local) {
                reasons.push(rule.reason.to_string());
            }
        }
        if index == newest {
            reasons.push("newest snapshot".to_string());
        }
        verdicts[index].keep = !verdicts[index].reasons.is_empty();
    }
    verdicts
}

/// [`apply`] in the machine's local time zone (`TZ`, else `/etc/localtime`, else UTC).
pub fn apply_local(policy: &KeepPolicy, times: &[i64]) -> Vec<Verdict> {
    // A
    apply(policy, times, local_offset)
}

/// The machine's local UTC offset, in seconds east, at `nanos` since the Unix epoch. Uses
/// chrono, which reads the zone itself: `time`'s local offset refuses multi-threaded processes.
pub fn local_offset(nanos: i64) -> i32 {
    // A
    use chrono::TimeZone;
    let utc = chrono::DateTime::from_timestamp_nanos(nanos).naive_utc();
    chrono::Local
        .offset_from_utc_datetime(&utc)
        .local_minus_utc()
}

/// The calendar period a bucket rule groups snapshots by.
#[derive(Clone, Copy, Debug)]
enum Period {
    /// No grouping: every snapshot is a bucket of its own (`--keep-last`).
    Each,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The bucket of a local time (seconds since the epoch, in local wall-clock time); `None`
    /// for [`Period::Each`], whose every snapshot is a new bucket.
    fn bucket(self, local: i64) -> Option<i64> {
        // A
        let days = local.div_euclid(SECS_PER_DAY);
        match self {
            Period::Each => None,
            Period::Hour => Some(local.div_euclid(SECS_PER_HOUR)),
            Period::Day => Some(days),
            // ISO weeks run Monday to Sunday, so each one is named by its Monday: the same
            // partition as (ISO year, ISO week), across year ends included.
            Period::Week => Some(days - (days + 3).rem_euclid(7)),
            Period::Month => {
                let (year, month, _) = civil_from_days(days);
                Some(year * 12 + month - 1)
            }
            Period::Year => Some(civil_from_days(days).0),
        }
    }
}

/// One `--keep-*` count rule as it walks the snapshots newest first.
struct Rule {
    period: Period,
    left: u32,
    previous: Option<i64>,
    reason: &'static str,
}

impl Rule {
    /// The count rules of a policy, in restic's order (which is the order of the reasons).
    fn all(policy: &KeepPolicy) -> Vec<Rule> {
        // A
        [
            (policy.last, Period::Each, "last snapshot"),
            (policy.hourly, Period::Hour, "hourly snapshot"),
            (policy.daily, Period::Day, "daily snapshot"),
            (policy.weekly, Period::Week, "weekly snapshot"),
            (policy.monthly, Period::Month, "monthly snapshot"),
            (policy.yearly, Period::Year, "yearly snapshot"),
        ]
        .into_iter()
        .filter_map(|(count, period, reason)| {
            Some(Rule {
                period,
                left: count.filter(|&n| n > 0)?,
                previous: None,
                reason,
            })
        })
        .collect()
    }

    /// Whether this rule keeps the next (older) snapshot, at local time `local`.
    fn takes(&mut self, local: i64) -> bool {
        // A
        if self.left == 0 {
            return false;
        }
        let bucket = self.period.bucket(local);
        if bucket.is_some() && bucket == self.previous {
            return false;
        }
        self.previous = bucket;
        self.left -= 1;
        true
    }
}

/// Seconds since the epoch in local wall-clock time; cannot overflow, as `nanos` is
/// divided down before the offset is added.
fn local_seconds(nanos: i64, offset: i32) -> i64 {
    // A
    nanos.div_euclid(NANOS_PER_SEC) + i64::from(offset)
}

/// The instant (nanoseconds, widened so that no duration overflows) that `within` reaches back
/// from `newest`, computed as restic does with Go's `AddDate(-y, -m, -d)` in local time then
/// `Add(-hours)`: a day that does not exist rolls over, so one month before March 31 is
/// "February 31", that is March 3 (March 2 in a leap year).
fn within_cutoff(newest: i64, within: KeepWithin, offset: &impl Fn(i64) -> i32) -> i128 {
    // A
    let local = local_seconds(newest, offset(newest));
    let days = local.div_euclid(SECS_PER_DAY);
    let second_of_day = local.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // u32 units keep every intermediate far inside i64 (|years * 12| < 2^36).
    let months = year * 12 + (month - 1) - i64::from(within.years) * 12 - i64::from(within.months);
    let day = day - i64::from(within.days);
    let wall = days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, day)
        * SECS_PER_DAY
        + second_of_day;
    // As Go's time.Date: guess the offset at the wall time read as UTC, then correct it once.
    let guess = offset(wall.saturating_mul(NANOS_PER_SEC));
    let zone = offset((wall - i64::from(guess)).saturating_mul(NANOS_PER_SEC));
    let utc = wall - i64::from(zone) - i64::from(within.hours) * SECS_PER_HOUR;
    i128::from(utc) * i128::from(NANOS_PER_SEC) + i128::from(newest.rem_euclid(NANOS_PER_SEC))
}

/// Proleptic Gregorian (year, month 1-12, day 1-31) of a day number (0 is 1970-01-01), by
/// Howard Hinnant's `civil_from_days`: total over all of i64's day range that we use.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // A
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = shifted_month + if shifted_month < 10 { 3 } else { -9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day number (0 is 1970-01-01) of a proleptic Gregorian date, by Howard Hinnant's
/// `days_from_civil`; a `day` outside the month rolls into the next or previous months, as
/// Go's `time.Date` does.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // A
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
