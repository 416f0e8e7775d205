//! Times in the API and in every record are nanoseconds since the Unix epoch (UTC) in an
//! `i64`: the unit the format stores, exact, and able to name 1677-09-21 to 2262-04-11.
//! These convert them to and from [`SystemTime`] for programs that work in those.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// `nanos` (nanoseconds since the epoch, negative before it) as a [`SystemTime`].
///
/// ```
/// use ouroboros_db::model::nanos::{from_system_time, to_system_time};
/// let t = to_system_time(1_700_000_000_123_456_789);
/// assert_eq!(from_system_time(t).unwrap(), 1_700_000_000_123_456_789);
/// ```
pub fn to_system_time(nanos: i64) -> SystemTime {
    // A
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// `t` as nanoseconds since the epoch; an error for a time an `i64` of nanoseconds cannot
/// hold (before 1677 or after 2262).
pub fn from_system_time(t: SystemTime) -> Result<i64> {
    // A
    let out_of_range = || Error::InvalidArgument(format!("time {t:?} is out of range (1677-2262)"));
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).map_err(|_| out_of_range()),
        // Negated as an i128: i64::MIN's magnitude (2^63) is one more than i64::MAX.
        Err(before) => i128::try_from(before.duration().as_nanos())
            .ok()
            .and_then(|n| i64::try_from(-n).ok())
            .ok_or_else(out_of_range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(n in i64::MIN..=i64::MAX) {
            prop_assert_eq!(from_system_time(to_system_time(n)).unwrap(), n);
        }
    }

    /// The earliest time an i64 names (1677-09-21T00:12:43.145224192Z) converts back too:
    /// its magnitude, 2^63 ns, is one more than i64::MAX.
    #[test]
    fn extremes_round_trip() {
        for n in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            assert_eq!(from_system_time(to_system_time(n)).unwrap(), n, "{n}");
        }
        let before = to_system_time(i64::MIN) - Duration::from_nanos(1);
        assert!(from_system_time(before).is_err());
        let after = to_system_time(i64::MAX) + Duration::from_nanos(1);
        assert!(from_system_time(after).is_err());
    }

    #[test]
    fn out_of_range_is_an_error() {
        let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
        assert!(from_system_time(far).is_err());
    }
}
