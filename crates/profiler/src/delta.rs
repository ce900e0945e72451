//! `ByteDelta`: a signed change in memory, printed with a sign and human units.

use std::fmt;

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

/// A signed number of bytes, e.g. how much RSS changed over a phase.
///
/// Prints as `+1.5 GiB`, `-3 MiB` or `0 B`; serializes as a plain signed integer of bytes.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// use masp_profiler::ByteDelta;
///
/// let d = ByteDelta::between(Bytes::from_mib(100), Bytes::from_mib(40));
/// assert_eq!(d.to_string(), "-60 MiB");
/// assert_eq!(ByteDelta::new(1 << 30).to_string(), "+1 GiB");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ByteDelta(i64);

impl ByteDelta {
    /// Zero.
    pub const ZERO: ByteDelta = ByteDelta(0);

    /// `n` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_profiler::ByteDelta::new(-5).get(), -5);
    /// ```
    #[must_use]
    pub const fn new(n: i64) -> Self {
        ByteDelta(n)
    }

    /// `to - from`, saturating at the `i64` range.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_profiler::ByteDelta;
    /// assert_eq!(ByteDelta::between(Bytes::new(3), Bytes::new(10)).get(), 7);
    /// ```
    #[must_use]
    pub fn between(from: Bytes, to: Bytes) -> Self {
        let diff = i128::from(to.get()) - i128::from(from.get());
        ByteDelta(i64::try_from(diff).unwrap_or(if diff < 0 { i64::MIN } else { i64::MAX }))
    }

    /// A fractional number of bytes, rounded (e.g. a fitted slope).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_profiler::ByteDelta::from_f64(-2.6).get(), -3);
    /// ```
    #[must_use]
    pub fn from_f64(n: f64) -> Self {
        // `as` saturates and maps NaN to 0, which is what a delta of unknown size should be.
        ByteDelta(n.round() as i64)
    }

    /// The number of bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_profiler::ByteDelta::ZERO.get(), 0);
    /// ```
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The size of the change, without its sign.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// assert_eq!(masp_profiler::ByteDelta::new(-1024).magnitude(), Bytes::from_kib(1));
    /// ```
    #[must_use]
    pub const fn magnitude(self) -> Bytes {
        Bytes::new(self.0.unsigned_abs())
    }
}

impl fmt::Display for ByteDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.0.signum() {
            1 => "+",
            -1 => "-",
            _ => "",
        };
        let text = match f.precision() {
            Some(p) => format!("{sign}{:.p$}", self.magnitude()),
            None => format!("{sign}{}", self.magnitude()),
        };
        f.pad_integral(true, "", &text)
    }
}

/// Formats a rate in bytes per second as `+12.5 KiB/s`.
pub(crate) fn fmt_rate(bytes_per_s: f64) -> String {
    format!("{}/s", ByteDelta::from_f64(bytes_per_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_sign_and_units() {
        assert_eq!(ByteDelta::ZERO.to_string(), "0 B");
        assert_eq!(ByteDelta::new(-(3 << 20)).to_string(), "-3 MiB");
        assert_eq!(ByteDelta::new(1536).to_string(), "+1.5 KiB");
        assert_eq!(format!("{:>9}", ByteDelta::new(1 << 20)), "   +1 MiB");
        assert_eq!(ByteDelta::new(i64::MIN).magnitude().get(), 1 << 63);
        assert_eq!(fmt_rate(-2048.0), "-2 KiB/s");
    }

    #[test]
    fn between_saturates() {
        assert_eq!(ByteDelta::between(Bytes::ZERO, Bytes::MAX).get(), i64::MAX);
        assert_eq!(ByteDelta::between(Bytes::MAX, Bytes::ZERO).get(), i64::MIN);
    }
}
