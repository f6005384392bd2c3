//! Timestamps: microseconds since the Unix epoch.
//!
//! Verifiers never read the clock: they take `now` from the caller, so that
//! tests (and the sans-IO cores) run on virtual time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, Reader};

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest timestamp, for "never expires".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// The current wall-clock time. Clocks before 1970 read as the epoch.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// A timestamp `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// A duration as people write one in a config file or on a command line:
/// `300ms`, `5s`, `2m`, `1h 30m`, `7d` (humantime's units), or a bare
/// number of seconds (`10`, `0.5`). The one parser of every GDP program.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 300ms, 5s, 2m, 1h 30m or 7d: {e}"))
}

/// A duration written so that [`parse_duration`] reads back exactly the
/// same duration, in humantime's form: `5m`, `1m 30s`, `1s 500ms`, `0s`.
/// What the daemons print their settings with.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl Encode for Timestamp {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64(self.0);
    }
    fn encoded_len(&self) -> usize {
        8
    }
}

impl Decode for Timestamp {
    const WHAT: &'static str = "timestamp";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Timestamp(r.u64("timestamp")?))
    }
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    use super::{format_duration, parse_duration};

    #[test]
    fn durations_are_written_in_humantime_form() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_millis(1500), "1s 500ms"),
        ] {
            assert_eq!(format_duration(d), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn written_durations_read_back_exactly(secs in 0u64..100_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
