//! The retention policy against calendars: every `--keep-*` rule, ISO weeks, calendar months,
//! zone offsets, and properties over any times and any policy.
#![cfg(test)]

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
    let every = ["daily", "weekly", "monthly", "yearly", "newest"].map(|r| format!("{r} snapshot"));
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
    let t = ["10:05", "10:50", "09:59", "11:10", "10:20"].map(|t| at(&format!("2024-05-06 {t}")));
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
