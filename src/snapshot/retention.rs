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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::format_description;
    use time::{Date, PrimitiveDateTime};

    const HOUR: i64 = SECS_PER_HOUR * NANOS_PER_SEC;

    /// "2023-12-31 18:00", read as UTC, in nanoseconds.
    fn at(text: &str) -> i64 {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]");
        let time = PrimitiveDateTime::parse(text.trim(), format)
            .unwrap()
            .assume_utc();
        i64::try_from(time.unix_timestamp_nanos()).unwrap()
    }

    /// "2023-12-31 18:00, 2023-12-30 06:00" as nanoseconds.
    fn times(list: &str) -> Vec<i64> {
        list.split(',').map(at).collect()
    }

    /// A policy from `forget`'s flags, e.g. "--keep-daily 7 --keep-within 1m".
    fn policy(flags: &str) -> KeepPolicy {
        let mut policy = KeepPolicy::default();
        for pair in flags.split_whitespace().collect::<Vec<_>>().chunks(2) {
            let n = pair[1].parse().ok();
            match pair[0] {
                "--keep-last" => policy.last = n,
                "--keep-hourly" => policy.hourly = n,
                "--keep-daily" => policy.daily = n,
                "--keep-weekly" => policy.weekly = n,
                "--keep-monthly" => policy.monthly = n,
                "--keep-yearly" => policy.yearly = n,
                "--keep-within" => policy.within = Some(pair[1].parse().unwrap()),
                flag => panic!("unknown flag {flag}"),
            }
        }
        policy
    }

    fn parts(text: &str) -> (u32, u32, u32, u32) {
        let w = KeepWithin::parse(text).unwrap();
        (w.years, w.months, w.days, w.hours)
    }

    /// The times that `flags` keeps in UTC, newest first.
    fn kept(flags: &str, times: &[i64]) -> Vec<i64> {
        let verdicts = apply(&policy(flags), times, |_| 0);
        let kept = times.iter().zip(&verdicts).filter(|(_, v)| v.keep);
        let mut kept: Vec<i64> = kept.map(|(&t, _)| t).collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        kept
    }

    fn reasons(flags: &str, times: &[i64], time: i64) -> Vec<String> {
        let index = times.iter().position(|&t| t == time).unwrap();
        apply(&policy(flags), times, |_| 0)[index].reasons.clone()
    }

    /// A snapshot every 6 hours through 2022 and 2023, none from 2023-10-01 to 2023-12-13.
    fn two_years() -> Vec<i64> {
        let gap = at("2023-10-01 00:00")..at("2023-12-14 00:00");
        let end = at("2024-01-01 00:00");
        let every_6_hours = (0..).map(|i| at("2022-01-01 00:00") + i * 6 * HOUR);
        every_6_hours
            .take_while(|&t| t < end)
            .filter(|t| !gap.contains(t))
            .collect()
    }

    #[test]
    fn daily_weekly_monthly_yearly_over_two_years_with_a_gap() {
        let times = two_years();
        let flags = "--keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 2";
        // Worked out by hand; each kept snapshot is the 18:00 one, the last of its day.
        // daily: Dec 31 to 25. weekly: W52 (Dec 31), W51 (Dec 24), W50 (Dec 17: its snapshots
        // start on the 14th), the gap, then W39 (Sep 25 - Oct 1: Sep 30). monthly: Dec 2023,
        // no Nov nor Oct, Sep to Jan 2023, then Dec and Nov 2022. yearly: Dec 31 of each.
        let expected: Vec<i64> = "2023-12-31 2023-12-30 2023-12-29 2023-12-28 2023-12-27 \
            2023-12-26 2023-12-25 2023-12-24 2023-12-17 2023-09-30 2023-08-31 2023-07-31 \
            2023-06-30 2023-05-31 2023-04-30 2023-03-31 2023-02-28 2023-01-31 2022-12-31 \
            2022-11-30"
            .split_whitespace()
            .map(|day| at(&format!("{day} 18:00")))
            .collect();
        assert_eq!(kept(flags, &times), expected);
        let why = |i: usize| reasons(flags, &times, expected[i]);
        let every =
            ["daily", "weekly", "monthly", "yearly", "newest"].map(|r| format!("{r} snapshot"));
        assert_eq!(why(0), every);
        assert_eq!(why(9), ["weekly snapshot", "monthly snapshot"]);
        assert_eq!(why(18), ["monthly snapshot", "yearly snapshot"]);
    }

    #[test]
    fn last_hourly_and_within_over_two_years() {
        let times = two_years();
        let flags = "--keep-last 2 --keep-hourly 3 --keep-within 1d";
        // within 1d of Dec 31 18:00 is strictly after Dec 30 18:00: Dec 31 at 0, 6, 12, 18.
        let expected =
            self::times("2023-12-31 18:00, 2023-12-31 12:00, 2023-12-31 06:00, 2023-12-31 00:00");
        assert_eq!(kept(flags, &times), expected);
        let why = ["within 1d", "last snapshot", "hourly snapshot"];
        assert_eq!(reasons(flags, &times, expected[1]), why);
        // A month back from the newest reaches into the gap: all 18 days after it are kept.
        assert_eq!(kept("--keep-within 1m", &times).len(), 18 * 4);
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let times = [5, 1, 4, 2, 3].map(|h| h * HOUR);
        assert_eq!(kept("--keep-last 3", &times), [5, 4, 3].map(|h| h * HOUR));
    }

    #[test]
    fn keep_hourly_keeps_the_newest_of_each_hour() {
        let t =
            ["10:05", "10:50", "09:59", "11:10", "10:20"].map(|t| at(&format!("2024-05-06 {t}")));
        assert_eq!(kept("--keep-hourly 2", &t), [t[3], t[1]]);
        assert_eq!(kept("--keep-hourly 3", &t), [t[3], t[1], t[2]]);
    }

    #[test]
    fn weeks_are_iso_weeks_across_year_ends() {
        // 2025-W01 starts on Monday 2024-12-30; Sunday 2024-12-29 ends 2024-W52.
        let t = times("2024-12-28 12:00, 2024-12-29 12:00, 2024-12-30 12:00, 2025-01-02 12:00");
        assert_eq!(kept("--keep-weekly 2", &t), [t[3], t[1]]);
        // 2020-W53 runs from Monday 2020-12-28 to Sunday 2021-01-03.
        let t = times("2020-12-31 12:00, 2021-01-03 12:00, 2021-01-04 12:00, 2020-12-27 12:00");
        assert_eq!(kept("--keep-weekly 3", &t), [t[2], t[1], t[3]]);
    }

    #[test]
    fn keep_within_uses_calendar_months_like_go() {
        // One month before 2023-03-31 is "February 31", that is March 3; the cutoff is excluded.
        let t = times("2023-03-31 12:00, 2023-03-03 12:00, 2023-02-28 12:00");
        let just_after = t[1] + 1;
        assert_eq!(
            kept("--keep-within 1m", &[just_after, t[1], t[0]]),
            [t[0], just_after]
        );
        assert_eq!(kept("--keep-within 1m", &t), t[..1]);
        // In a leap year "February 31" is March 2.
        let t = times("2024-03-31 12:00, 2024-03-02 12:00, 2024-03-02 12:01");
        assert_eq!(kept("--keep-within 1m", &t), [t[0], t[2]]);
        // Years, months and days in the calendar first (2023-02-30 is March 2), hours last.
        let t = times("2024-03-31 00:00, 2023-03-01 22:01, 2023-03-01 22:00");
        assert_eq!(kept("--keep-within 1y1m1d2h", &t), t[..2]);
        let why = reasons("--keep-within 1y1m1d2h", &t, t[1]);
        assert_eq!(why, ["within 1y1m1d2h"]);
        // Central Europe went from UTC+1 to UTC+2 at 01:00 UTC on 2024-03-31. A day before
        // 01:30 on April 1 (UTC+2) is 01:30 on March 31, still UTC+1: 00:30 UTC.
        let cest = at("2024-03-31 01:00");
        let zone = |t: i64| if t >= cest { 7_200 } else { 3_600 };
        let t = times("2024-03-31 23:30, 2024-03-31 00:31, 2024-03-31 00:30");
        let verdicts = apply(&policy("--keep-within 1d"), &t, zone);
        assert_eq!(
            verdicts.iter().map(|v| v.keep).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn the_newest_is_always_kept() {
        let times = [3, 1, 2].map(|h| h * HOUR);
        assert!(KeepPolicy::default().is_empty());
        let newest = Verdict {
            keep: true,
            reasons: vec!["newest snapshot".into()],
        };
        let verdicts = apply(&KeepPolicy::default(), &times, |_| 0);
        assert_eq!(verdicts, [newest, Verdict::default(), Verdict::default()]);
        let zeros = "--keep-last 0 --keep-yearly 0 --keep-within 0d";
        assert!(policy(zeros).is_empty());
        assert_eq!(kept(zeros, &times), [3 * HOUR]);
        assert!(apply(&policy(zeros), &[], |_| 0).is_empty());
        assert!(!policy("--keep-yearly 1").is_empty());
        assert!(!policy("--keep-within 1h").is_empty());
    }

    #[test]
    fn the_offset_moves_a_snapshot_into_another_day() {
        let times = times("2023-06-10 23:30, 2023-06-10 12:00");
        let daily = policy("--keep-daily 2");
        let keeps_both = |offset: i32| apply(&daily, &times, |_| offset).iter().all(|v| v.keep);
        // In UTC and at UTC-1 both are on June 10: only the later one is kept.
        assert!(!keeps_both(0) && !keeps_both(-3_600));
        // At UTC+2, 23:30 is 01:30 on June 11; at UTC-13, 12:00 is 23:00 on June 9.
        assert!(keeps_both(2 * 3_600) && keeps_both(-13 * 3_600));
    }

    #[test]
    fn keep_within_parses_good_and_rejects_bad_input() {
        assert_eq!(parts("1y2m3d4h"), (1, 2, 3, 4));
        assert_eq!(parts("12h3d"), (0, 0, 3, 12));
        assert_eq!(parts("4294967295y"), (u32::MAX, 0, 0, 0));
        assert_eq!("0d".parse::<KeepWithin>().unwrap(), KeepWithin::default());
        for (text, shown) in [("1y2m3d4h", "1y2m3d4h"), ("12h3d", "3d12h"), ("0y", "0h")] {
            assert_eq!(KeepWithin::parse(text).unwrap().to_string(), shown);
        }
        let bad = [
            ("", "empty"),
            ("3x", "unknown unit 'x'"),
            ("-1d", "expected a number at \"-1d\""),
            ("d", "expected a number"),
            ("3", "no unit after 3"),
            ("4294967296d", "4294967296 is too large"),
            ("1d2d", "unit 'd' is given twice"),
            (" 1d", "expected a number"),
            ("1.5d", "unknown unit '.'"),
            ("1D", "unknown unit 'D'"),
            ("1dé", "expected a number at \"é\""),
        ];
        for (text, why) in bad {
            let message = KeepWithin::parse(text).unwrap_err().to_string();
            assert!(message.contains(why), "{text:?}: {message}");
            assert!(message.starts_with("invalid argument: keep-within"));
        }
    }

    #[test]
    fn the_local_zone_gives_sane_offsets() {
        for t in [i64::MIN, 0, at("2024-07-01 00:00"), i64::MAX] {
            assert!(local_offset(t).abs() < 86_400);
        }
        let last = policy("--keep-last 1");
        let times = [0, HOUR];
        assert_eq!(apply_local(&last, &times), apply(&last, &times, |_| 0));
    }

    fn any_time() -> impl Strategy<Value = i64> {
        let around_2020 = (1_577_836_800i64..1_640_995_200).prop_map(|s| s * NANOS_PER_SEC);
        prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>(), around_2020]
    }

    fn any_policy() -> impl Strategy<Value = KeepPolicy> {
        let n = prop_oneof![
            Just(None),
            (0u32..6).prop_map(Some),
            any::<u32>().prop_map(Some)
        ];
        let w = prop_oneof![
            (0u32..3, 0u32..15, 0u32..40, 0u32..50),
            any::<(u32, u32, u32, u32)>()
        ];
        (prop::array::uniform6(n), prop::option::of(w)).prop_map(|(counts, w)| {
            let mut p = KeepPolicy {
                within: w.map(|(y, m, d, h)| format!("{y}y{m}m{d}d{h}h").parse().unwrap()),
                ..KeepPolicy::default()
            };
            [p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly] = counts;
            p
        })
    }

    /// Each time with its verdict, sorted, so that equal times compare as a multiset.
    fn by_time(times: &[i64], verdicts: Vec<Verdict>) -> Vec<(i64, bool, Vec<String>)> {
        let mut pairs: Vec<_> = times
            .iter()
            .zip(verdicts)
            .map(|(&t, v)| (t, v.keep, v.reasons))
            .collect();
        pairs.sort();
        pairs
    }

    fn date(days: i64) -> Date {
        Date::from_julian_day(i32::try_from(days + 2_440_588).unwrap()).unwrap()
    }

    proptest! {
        #[test]
        fn input_order_does_not_matter_and_nothing_panics(
            (times, shuffled) in prop::collection::vec(any_time(), 0..40)
                .prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle())),
            policy in any_policy(),
            (a, b) in prop_oneof![(-50_400i32..50_400, -50_400i32..50_400), any::<(i32, i32)>()],
        ) {
            // A zone that changes its offset every other day, like an eager summer time.
            let zone = |t: i64| if t.div_euclid(86_400 * NANOS_PER_SEC) % 2 == 0 { a } else { b };
            let verdicts = apply(&policy, &times, zone);
            prop_assert!(verdicts.iter().all(|v| v.keep != v.reasons.is_empty()));
            prop_assert!(verdicts.iter().any(|v| v.keep) || times.is_empty());
            let again = apply(&policy, &shuffled, zone);
            prop_assert_eq!(by_time(&times, verdicts), by_time(&shuffled, again));
        }

        #[test]
        fn the_calendar_matches_the_time_crate(days in -2_900_000i64..2_900_000) {
            let d = date(days);
            let civil = (i64::from(d.year()), i64::from(u8::from(d.month())), i64::from(d.day()));
            prop_assert_eq!(civil_from_days(days), civil);
            prop_assert_eq!(days_from_civil(civil.0, civil.1, civil.2), days);
            // The week bucket is the Monday of the same ISO week.
            let monday = date(Period::Week.bucket(days * SECS_PER_DAY + 7_000).unwrap());
            prop_assert_eq!(monday.weekday(), time::Weekday::Monday);
            let iso = |d: Date| (d.to_iso_week_date().0, d.to_iso_week_date().1);
            prop_assert_eq!(iso(monday), iso(d));
        }
    }
}
