//! `Bytes`: a byte count that parses and prints human units.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const PIB: u64 = 1 << 50;
const EIB: u64 = 1 << 60;

/// A number of bytes.
///
/// Arithmetic is saturating ([`Bytes::saturating_add`], [`Bytes::saturating_sub`]): a memory
/// figure never wraps around.
///
/// # Text form
///
/// [`Display`](fmt::Display) uses binary (IEC) units: whole multiples print without decimals
/// (`"2 GiB"`), others with one decimal (`"1.5 GiB"`, `"6.0 MiB"` for 6.001 MiB, or two when
/// one would hide a visible difference below 10 units: `"1.04 GiB"`). A precision (`{:.3}`)
/// overrides the number of decimals and width/alignment flags are honoured, so `Bytes` can be
/// used in tables.
///
/// [`FromStr`] accepts a number (integer or decimal) followed by an optional unit, with
/// optional whitespace between them, case-insensitively:
///
/// | unit | factor |
/// | --- | --- |
/// | none, `B` | 1 (the number must then be an integer) |
/// | `K`, `Ki`, `KiB` (and `M`, `G`, `T`, `P`, `E` likewise) | 1024ⁿ |
/// | `KB`, `MB`, `GB`, `TB`, `PB`, `EB` | 1000ⁿ |
///
/// A bare letter (`2G`) is binary, as in systemd, Docker and `ulimit`, because that is what
/// people mean when they write a memory limit; `GB` keeps its SI meaning. Fractions are
/// truncated to whole bytes and values above `u64::MAX` are rejected.
///
/// # Serde
///
/// Serialized as a plain integer number of bytes (`{"limit": 1073741824}`), so JSON reports
/// stay exact and machine-readable. Deserialization accepts that integer or a string in the
/// text form above (`"16GiB"`), which is convenient in hand-written config files.
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
///
/// let limit: Bytes = "1.5 GiB".parse()?;
/// assert_eq!(limit, Bytes::from_mib(1536));
/// assert_eq!(limit.to_string(), "1.5 GiB");
/// assert_eq!("2G".parse::<Bytes>()?, Bytes::from_gib(2));
/// assert_eq!("4096".parse::<Bytes>()?.get(), 4096);
/// assert_eq!(Bytes::from_gib(2).to_string(), "2 GiB");
/// # Ok::<(), masp_budget::ConfigError>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(u64);

impl Bytes {
    /// Zero bytes.
    pub const ZERO: Bytes = Bytes(0);
    /// The largest representable size.
    pub const MAX: Bytes = Bytes(u64::MAX);

    /// `n` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::new(512).to_string(), "512 B");
    /// ```
    #[must_use]
    pub const fn new(n: u64) -> Self {
        Bytes(n)
    }

    /// The number of bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::from_kib(2).get(), 2048);
    /// ```
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `n` KiB (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::from_kib(1).get(), 1024);
    /// ```
    #[must_use]
    pub const fn from_kib(n: u64) -> Self {
        Bytes(n.saturating_mul(KIB))
    }

    /// `n` MiB (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::from_mib(1).get(), 1 << 20);
    /// ```
    #[must_use]
    pub const fn from_mib(n: u64) -> Self {
        Bytes(n.saturating_mul(MIB))
    }

    /// `n` GiB (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::from_gib(16).to_string(), "16 GiB");
    /// ```
    #[must_use]
    pub const fn from_gib(n: u64) -> Self {
        Bytes(n.saturating_mul(GIB))
    }

    /// `self + other`, clamped at [`Bytes::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// assert_eq!(Bytes::MAX.saturating_add(Bytes::new(1)), Bytes::MAX);
    /// ```
    #[must_use]
    pub const fn saturating_add(self, other: Bytes) -> Self {
        Bytes(self.0.saturating_add(other.0))
    }

    /// `self - other`, clamped at zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// assert_eq!(Bytes::new(1).saturating_sub(Bytes::new(5)), Bytes::ZERO);
    /// ```
    #[must_use]
    pub const fn saturating_sub(self, other: Bytes) -> Self {
        Bytes(self.0.saturating_sub(other.0))
    }

    /// `self + other`, or `None` on overflow.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// assert_eq!(Bytes::new(1).checked_add(Bytes::new(2)), Some(Bytes::new(3)));
    /// assert_eq!(Bytes::MAX.checked_add(Bytes::new(1)), None);
    /// ```
    #[must_use]
    pub const fn checked_add(self, other: Bytes) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(n) => Some(Bytes(n)),
            None => None,
        }
    }

    /// The size in MiB as a float, for plotting and ratios.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_budget::Bytes::from_kib(512).as_mib_f64(), 0.5);
    /// ```
    #[must_use]
    // Precision loss above 2^53 bytes (8 PiB) is irrelevant for plotting.
    pub fn as_mib_f64(self) -> f64 {
        self.0 as f64 / MIB as f64
    }
}

impl From<u64> for Bytes {
    fn from(n: u64) -> Self {
        Bytes(n)
    }
}

impl From<Bytes> for u64 {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Self {
        iter.fold(Bytes::ZERO, Bytes::saturating_add)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Both forms: the exact count for debugging, the human one for reading.
        write!(f, "Bytes({} = {})", self.0, self)
    }
}

/// Largest-first binary units used by `Display`.
const UNITS: [(u64, &str); 6] = [
    (EIB, "EiB"),
    (PIB, "PiB"),
    (TIB, "TiB"),
    (GIB, "GiB"),
    (MIB, "MiB"),
    (KIB, "KiB"),
];

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let Some(&(factor, unit)) = UNITS.iter().find(|(factor, _)| n >= *factor) else {
            return pad(f, format_args!("{n} B"));
        };
        if n.is_multiple_of(factor) && f.precision().is_none() {
            return pad(f, format_args!("{} {unit}", n / factor));
        }
        // Precision loss only affects digits far beyond those printed.
        let value = n as f64 / factor as f64;
        let decimals = match f.precision() {
            Some(p) => p,
            // One decimal, unless that prints "1.0" for e.g. 1.04 (a 4% error) and a second
            // decimal shows the difference; from 10 units on one decimal is close enough.
            None if value < 9.95
                && (value * 10.0).round() % 10.0 == 0.0
                && (value * 100.0).round() % 100.0 != 0.0 =>
            {
                2
            }
            None => 1,
        };
        pad(f, format_args!("{value:.decimals$} {unit}"))
    }
}

/// Writes `args` honouring the formatter's width/alignment without allocating when none is set.
fn pad(f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>) -> fmt::Result {
    if f.width().is_none() {
        f.write_fmt(args)
    } else {
        // `pad` would treat our precision as a truncation width, so format first.
        let s = args.to_string();
        let width = f.width().unwrap_or(0);
        let fill = f.fill();
        let len = s.chars().count();
        let padding = width.saturating_sub(len);
        let (before, after) = match f.align() {
            Some(fmt::Alignment::Left) => (0, padding),
            Some(fmt::Alignment::Center) => (padding / 2, padding - padding / 2),
            // Numbers right-align by default.
            Some(fmt::Alignment::Right) | None => (padding, 0),
        };
        for _ in 0..before {
            fmt::Write::write_char(f, fill)?;
        }
        f.write_str(&s)?;
        for _ in 0..after {
            fmt::Write::write_char(f, fill)?;
        }
        Ok(())
    }
}

/// A size string that did not parse (see [`Bytes`] for the accepted forms). It converts into
/// [`ConfigError::InvalidSize`](crate::ConfigError::InvalidSize).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason}")]
pub struct ParseBytesError {
    /// The text as given.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl FromStr for Bytes {
    type Err = ParseBytesError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_size(input).map_err(|reason| ParseBytesError {
            input: input.to_owned(),
            reason,
        })
    }
}

/// Parses the text form documented on [`Bytes`]; the error is a reason for the message.
fn parse_size(input: &str) -> Result<Bytes, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty");
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: String = number.chars().filter(|&c| c != '_').collect();
    if number.is_empty() {
        return Err("expected a number, optionally followed by a unit such as MiB or GiB");
    }
    let factor = unit_factor(unit.trim_start()).ok_or(
        "unknown unit (use B, K/KiB, M/MiB, G/GiB, T/TiB, or SI KB/MB/GB/TB; K/M/G/T are binary)",
    )?;
    if !number.contains('.') {
        // Digits only: the one way `u64` parsing fails here is overflow, which is not a
        // fraction and must not be reported as one.
        return number
            .parse::<u64>()
            .ok()
            .and_then(|whole| whole.checked_mul(factor))
            .map(Bytes)
            .ok_or("too large (more than 16 EiB)");
    }
    let value: f64 = number.parse().map_err(|_| "not a number")?;
    if factor == 1 {
        return Err("a number of bytes must be a whole number");
    }
    // Precision loss is far below one byte for any realistic size.
    let bytes = value * factor as f64;
    // u64::MAX as f64 rounds up to 2^64, so `<` is the correct bound.
    if !(bytes.is_finite() && bytes < u64::MAX as f64) {
        return Err("too large (more than 16 EiB)");
    }
    // Truncation to whole bytes is intended; the value is finite, non-negative and in range.
    Ok(Bytes(bytes as u64))
}

fn unit_factor(unit: &str) -> Option<u64> {
    const TABLE: [(&str, u64); 26] = [
        ("", 1),
        ("b", 1),
        ("k", KIB),
        ("ki", KIB),
        ("kib", KIB),
        ("m", MIB),
        ("mi", MIB),
        ("mib", MIB),
        ("g", GIB),
        ("gi", GIB),
        ("gib", GIB),
        ("t", TIB),
        ("ti", TIB),
        ("tib", TIB),
        ("p", PIB),
        ("pi", PIB),
        ("pib", PIB),
        ("e", EIB),
        ("ei", EIB),
        ("eib", EIB),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("tb", 1_000_000_000_000),
        ("pb", 1_000_000_000_000_000),
        ("eb", 1_000_000_000_000_000_000),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, factor)| factor)
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl Visitor<'_> for BytesVisitor {
            type Value = Bytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"16GiB\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_too_large_and_a_fraction_of_a_byte_is_not_whole() {
        let reason = |input: &str| input.parse::<Bytes>().unwrap_err().reason;
        for input in [
            "99999999999999999999GiB",
            "99999999999999999999",
            "99999999999999999999B",
            "18446744073709551616",
            "17179869184GiB",
            "99999999999999999999.5GiB",
        ] {
            assert!(
                reason(input).starts_with("too large"),
                "{input}: {}",
                reason(input)
            );
        }
        for input in ["1.5", "0.5B", "10.25 b"] {
            assert!(
                reason(input).contains("whole number"),
                "{input}: {}",
                reason(input)
            );
        }
    }

    #[test]
    fn parses_human_units() {
        let cases = [
            ("16GiB", 16 * GIB),
            ("512MiB", 512 * MIB),
            ("1.5 GiB", 3 * GIB / 2),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("2 GB", 2_000_000_000),
            ("1k", 1024),
            ("4096", 4096),
            ("  7 b ", 7),
            ("0", 0),
            ("1_000", 1000),
            ("0.5M", MIB / 2),
            ("16EiB", u64::MAX),
        ];
        for (input, expected) in cases {
            let got: Result<Bytes, _> = input.parse();
            if input == "16EiB" {
                assert!(got.is_err(), "{input} overflows");
            } else {
                assert_eq!(got.unwrap().get(), expected, "{input}");
            }
        }
    }

    #[test]
    fn rejects_garbage_and_names_it() {
        for bad in ["", "abc", "GiB", "1.5", "-1", "1 GiBs", "1..5G", "1e9"] {
            let err = bad.parse::<Bytes>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{:?}", bad)), "{msg}");
        }
    }

    #[test]
    fn displays_human_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (GIB, "1 GiB"),
            (3 * GIB / 2, "1.5 GiB"),
            (GIB + 40 * MIB, "1.04 GiB"),
            (6 * MIB + 1000, "6.0 MiB"),
            (120 * MIB, "120 MiB"),
            (u64::MAX, "16.0 EiB"),
            (1022 * MIB + MIB / 2, "1022.5 MiB"),
            (10 * GIB + 1, "10.0 GiB"),
        ];
        for (n, expected) in cases {
            assert_eq!(Bytes(n).to_string(), expected);
        }
        assert_eq!(format!("{:>8}", Bytes(GIB)), "   1 GiB");
        assert_eq!(format!("{:<8}|", Bytes(GIB)), "1 GiB   |");
        assert_eq!(format!("{:.3}", Bytes(GIB)), "1.000 GiB");
    }

    #[test]
    fn display_round_trips_approximately() {
        for n in [1u64, 999, 4097, 3 * MIB + 12345, 17 * GIB + 3, 5 * TIB / 3] {
            let b = Bytes(n);
            let back: Bytes = b.to_string().parse().unwrap();
            let err = back.0.abs_diff(n);
            // One decimal: at most 0.05 of a unit on a value of at least 1 unit.
            assert!(err <= n / 20 + 1, "{n} -> {b} -> {}", back.0);
        }
    }

    #[test]
    fn serde_is_a_plain_integer_and_accepts_strings() {
        let json = serde_json::to_string(&Bytes::from_gib(1)).unwrap();
        assert_eq!(json, "1073741824");
        let back: Bytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Bytes::from_gib(1));
        let from_str: Bytes = serde_json::from_str("\"512MiB\"").unwrap();
        assert_eq!(from_str, Bytes::from_mib(512));
        assert!(serde_json::from_str::<Bytes>("-5").is_err());
        assert!(serde_json::from_str::<Bytes>("\"lots\"").is_err());
    }

    #[test]
    fn saturating_arithmetic() {
        assert_eq!(Bytes::MAX.saturating_add(Bytes(1)), Bytes::MAX);
        assert_eq!(Bytes(3).saturating_sub(Bytes(5)), Bytes::ZERO);
        assert_eq!(Bytes::from_gib(u64::MAX), Bytes::MAX);
        let total: Bytes = [Bytes(1), Bytes(2), Bytes::MAX].into_iter().sum();
        assert_eq!(total, Bytes::MAX);
    }
}
