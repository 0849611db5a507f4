//! Kubernetes' resource `Quantity` (apimachinery `resource.Quantity`): parsed exactly, compared,
//! added, read as milli-units or units the way `MilliValue()`/`Value()` round, and printed in
//! the canonical form Kubernetes writes back.
//!
//! Kubernetes rounds every parsed quantity up to a whole nano-unit, so an `i128` count of
//! nano-units holds every value it can hold without loss, up to ±1.7·10²⁹ (beyond that the
//! count saturates; Kubernetes keeps such values as arbitrary-precision decimals, but no
//! resource comes near).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The suffix family a quantity was written with; it is kept so that the value is printed back
/// in the same family (`1536Mi`, not `1610612736`), as Kubernetes does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `n u m "" k M G T P E`.
    DecimalSI,
    /// `Ki Mi Gi Ti Pi Ei`.
    BinarySI,
    /// `e3`, `E-6`.
    DecimalExponent,
}

/// Why a string is not a quantity; the messages are apimachinery's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// An exact Kubernetes quantity. Equality and order are by value (`1k == 1000`), whatever the
/// format.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl Quantity {
    /// Zero, printed as `0`.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// Parses a quantity as Kubernetes decodes one from JSON: surrounding white space is
    /// ignored, then the grammar of `ParseQuantity` applies (`100m`, `1.5Gi`, `-2e3`, `.5`,
    /// `1.`). Unlike Kubernetes, a number part without any digit (`-`, `.`, `Ki`) is refused
    /// rather than read as zero, as Skiff always did.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let b = s.as_bytes();
        let mut pos = 0;
        let negative = match b.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };
        let digits = |pos: &mut usize| {
            let start = *pos;
            while *pos < b.len() && b[*pos].is_ascii_digit() {
                *pos += 1;
            }
            &s[start..*pos]
        };
        let num = digits(&mut pos);
        let denom = if b.get(pos) == Some(&b'.') {
            pos += 1;
            digits(&mut pos)
        } else {
            ""
        };
        if num.is_empty() && denom.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        // The suffix: letters of the suffix alphabet, then an optional signed exponent.
        let suffix_start = pos;
        while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
            pos += 1;
        }
        if matches!(b.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        digits(&mut pos);
        if pos != b.len() {
            return Err(QuantityError::FormatWrong);
        }
        let (exp10, exp2, format) = interpret_suffix(&s[suffix_start..])?;

        // value = 0.[num denom] digits × 10^exp10 × 2^exp2; in nano-units, rounded up (away
        // from zero) as Kubernetes rounds: "if you want some resources, you should get some".
        let mut digits: Vec<u8> = num.bytes().chain(denom.bytes()).map(|c| c - b'0').collect();
        if exp2 > 0 {
            mul_digits(&mut digits, 1u64 << exp2);
        }
        let shift = i64::from(exp10) - denom.len() as i64 + 9;
        let mut nanos = digits_to_nanos(&digits, shift);
        let mut format = format;
        if format == Format::BinarySI {
            // Kubernetes caps binary quantities at 2^63-1, and shows a fraction of a unit in
            // decimal form.
            nanos = nanos.min(i128::from(i64::MAX) * NANOS_PER_UNIT);
            if nanos > 0 && nanos < NANOS_PER_UNIT {
                format = Format::DecimalSI;
            }
        }
        if s == "0" {
            format = Format::DecimalSI;
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// A quantity as it appears in a JSON object: a string, or a bare number (which Kubernetes
    /// also accepts). `None` for anything else or an invalid quantity.
    pub fn from_json(v: &Value) -> Option<Quantity> {
        match v {
            Value::String(s) => Quantity::parse(s).ok(),
            Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
            _ => None,
        }
    }

    /// `milli` thousandths of a unit, in decimal form (`NewMilliQuantity(milli, DecimalSI)`).
    pub fn from_milli(milli: i64) -> Quantity {
        Quantity {
            nanos: i128::from(milli) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    /// `value` whole units in the given format (`NewQuantity(value, format)`).
    pub fn from_value(value: i64, format: Format) -> Quantity {
        Quantity {
            nanos: i128::from(value) * NANOS_PER_UNIT,
            format,
        }
    }

    /// `nanos` billionths of a unit (`NewScaledQuantity(nanos, Nano)` for decimal forms).
    pub fn from_nanos(nanos: i128, format: Format) -> Quantity {
        Quantity { nanos, format }
    }

    /// The value in thousandths, rounded away from zero (`MilliValue()`): `1n` is `1`, `1.5`
    /// is `1500`. Saturates at the ends of `i64`.
    pub fn milli_value(&self) -> i64 {
        scaled(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded away from zero (`Value()`): `1500m` is `2`.
    /// Saturates at the ends of `i64`.
    pub fn value(&self) -> i64 {
        scaled(self.nanos, NANOS_PER_UNIT)
    }

    /// Millicores (or any milli-unit) when the quantity is not negative: what a container
    /// runtime takes for CPU shares and quotas.
    pub fn milli_value_unsigned(&self) -> Option<u64> {
        u64::try_from(self.milli_value()).ok()
    }

    /// The exact value in nano-units (the finest Kubernetes keeps).
    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

/// The base-10 and base-2 exponents and the format a suffix stands for (apimachinery's
/// `quantitySuffixer.interpret`).
fn interpret_suffix(suffix: &str) -> Result<(i32, u32, Format), QuantityError> {
    use Format::*;
    Ok(match suffix {
        "n" => (-9, 0, DecimalSI),
        "u" => (-6, 0, DecimalSI),
        "m" => (-3, 0, DecimalSI),
        "" => (0, 0, DecimalSI),
        "k" => (3, 0, DecimalSI),
        "M" => (6, 0, DecimalSI),
        "G" => (9, 0, DecimalSI),
        "T" => (12, 0, DecimalSI),
        "P" => (15, 0, DecimalSI),
        "E" => (18, 0, DecimalSI),
        "Ki" => (0, 10, BinarySI),
        "Mi" => (0, 20, BinarySI),
        "Gi" => (0, 30, BinarySI),
        "Ti" => (0, 40, BinarySI),
        "Pi" => (0, 50, BinarySI),
        "Ei" => (0, 60, BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exp = s[1..].parse().map_err(|_| QuantityError::Suffix)?;
            (exp, 0, DecimalExponent)
        }
        _ => return Err(QuantityError::Suffix),
    })
}

/// Multiplies a big-endian decimal digit string by `factor` in place.
fn mul_digits(digits: &mut Vec<u8>, factor: u64) {
    let mut carry: u128 = 0;
    for d in digits.iter_mut().rev() {
        let v = u128::from(*d) * u128::from(factor) + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// `digits × 10^shift`, rounded up to a whole number and saturated to `i128::MAX`.
fn digits_to_nanos(digits: &[u8], shift: i64) -> i128 {
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        return 0;
    }
    let whole_len = digits.len() as i64 + shift;
    if whole_len <= 0 {
        return 1; // a non-zero value below one nano-unit
    }
    // i128::MAX has 39 digits: anything longer saturates.
    if whole_len > 39 {
        return i128::MAX;
    }
    let (whole, rest) = digits.split_at((whole_len as usize).min(digits.len()));
    let mut n: i128 = 0;
    for &d in whole {
        n = match n.checked_mul(10).and_then(|n| n.checked_add(i128::from(d))) {
            Some(n) => n,
            None => return i128::MAX,
        };
    }
    for _ in digits.len() as i64..whole_len {
        n = match n.checked_mul(10) {
            Some(n) => n,
            None => return i128::MAX,
        };
    }
    if rest.iter().any(|&d| d != 0) {
        n = n.saturating_add(1);
    }
    n
}

/// `nanos / per`, rounded away from zero, saturated to `i64`.
fn scaled(nanos: i128, per: i128) -> i64 {
    let q = nanos / per;
    let q = if nanos % per == 0 {
        q
    } else {
        q + nanos.signum()
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s)
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = QuantityError;

    fn try_from(
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<Quantity, QuantityError> {
        Quantity::parse(&q.0)
    }
}

impl From<Quantity> for k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    fn from(q: Quantity) -> Self {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.to_string())
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;

    /// The sum (saturating); a zero left side takes the right side's format, as Kubernetes'
    /// `Add` does.
    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: if self.nanos == 0 {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl std::ops::AddAssign for Quantity {
    fn add_assign(&mut self, other: Quantity) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::ZERO, |a, b| a + b)
    }
}

/// The canonical form Kubernetes serializes (`CanonicalizeBytes`): no fractional digits, the
/// largest suffix of the quantity's format that loses nothing (`1.5` → `1500m`, `1.5Gi` →
/// `1536Mi`, `0.5Ki` → `512`).
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI
            && (self.nanos.abs() < 1024 * NANOS_PER_UNIT || self.nanos % NANOS_PER_UNIT != 0)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut n = self.nanos / NANOS_PER_UNIT;
            let mut i = 0;
            while n % 1024 == 0 && i < SUFFIXES.len() - 1 {
                n /= 1024;
                i += 1;
            }
            return write!(f, "{n}{}", SUFFIXES[i]);
        }
        // Move the factors of ten into the exponent, then back down to a multiple of three.
        let mut m = self.nanos;
        let mut exp: i32 = -9;
        while m % 10 == 0 {
            m /= 10;
            exp += 1;
        }
        let down = exp.rem_euclid(3);
        m *= 10i128.pow(down as u32);
        exp -= down;
        match format {
            Format::DecimalExponent if exp == 0 => write!(f, "{m}"),
            Format::DecimalExponent => write!(f, "{m}e{exp}"),
            _ => {
                // Kubernetes has no suffix beyond E (it would print the bare mantissa, a
                // different value); write such values in E.
                if exp > 18 {
                    m *= 10i128.pow((exp - 18) as u32);
                    exp = 18;
                }
                let suffix = match exp {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                write!(f, "{m}{suffix}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (input, nano-units, canonical form) for inputs Kubernetes accepts.
    const VALID: &[(&str, i128, &str)] = &[
        ("0", 0, "0"),
        ("0Ki", 0, "0"),
        ("1", 1_000_000_000, "1"),
        ("+1", 1_000_000_000, "1"),
        ("-1", -1_000_000_000, "-1"),
        ("100m", 100_000_000, "100m"),
        ("1000m", 1_000_000_000, "1"),
        ("1.5", 1_500_000_000, "1500m"),
        ("0.1", 100_000_000, "100m"),
        (".5", 500_000_000, "500m"),
        ("1.", 1_000_000_000, "1"),
        ("007", 7_000_000_000, "7"),
        ("1n", 1, "1n"),
        ("1u", 1_000, "1u"),
        ("1500u", 1_500_000, "1500u"),
        ("1k", 1_000_000_000_000, "1k"),
        ("1M", 1_000_000_000_000_000, "1M"),
        ("1G", 1_000_000_000_000_000_000, "1G"),
        ("1T", 1_000_000_000_000_000_000_000, "1T"),
        ("1P", 1_000_000_000_000_000_000_000_000, "1P"),
        ("1E", 1_000_000_000_000_000_000_000_000_000, "1E"),
        ("1Ki", 1024 * 1_000_000_000, "1Ki"),
        ("128Mi", (128 << 20) * 1_000_000_000, "128Mi"),
        ("1.5Gi", 1_610_612_736 * 1_000_000_000, "1536Mi"),
        ("1024Mi", (1 << 30) * 1_000_000_000, "1Gi"),
        ("1Ti", (1 << 40) * 1_000_000_000, "1Ti"),
        ("1Pi", (1 << 50) * 1_000_000_000, "1Pi"),
        ("1Ei", (1 << 60) * 1_000_000_000, "1Ei"),
        ("0.5Ki", 512_000_000_000, "512"),
        ("1000Ki", 1_024_000_000_000_000, "1000Ki"),
        ("1.1Ki", 1_126_400_000_000, "1126400m"),
        (
            "16Ei",
            i64::MAX as i128 * 1_000_000_000,
            "9223372036854775807",
        ),
        ("2e3", 2_000_000_000_000, "2e3"),
        ("2E3", 2_000_000_000_000, "2e3"),
        ("1.5e3", 1_500_000_000_000, "1500"),
        ("1e+3", 1_000_000_000_000, "1e3"),
        ("1e-3", 1_000_000, "1e-3"),
        ("12e-1", 1_200_000_000, "1200e-3"),
        ("1e0", 1_000_000_000, "1"),
    ];

    #[test]
    fn parses_exactly_and_prints_canonically() {
        for (s, nanos, canonical) in VALID {
            let q = Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(q.as_nanos(), *nanos, "{s}");
            assert_eq!(q.to_string(), *canonical, "{s}");
            // The canonical form parses back to the same value.
            assert_eq!(Quantity::parse(canonical).unwrap(), q, "{s}");
        }
    }

    #[test]
    fn rounds_up_to_nano_units() {
        let cases: &[(&str, i128)] = &[
            ("0.1n", 1),
            ("1.1n", 2),
            ("1e-20", 1),
            ("-0.1n", -1),
            ("0.0000000001", 1),
            ("0.000000000", 0),
            ("1.0000000000000000000000000000000001Ki", 1_024_000_000_001),
        ];
        for (s, nanos) in cases {
            assert_eq!(Quantity::parse(s).unwrap().as_nanos(), *nanos, "{s}");
        }
        // Far beyond any resource: saturates rather than failing.
        assert_eq!(Quantity::parse("1e1000").unwrap().as_nanos(), i128::MAX);
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        let cases: &[(&str, QuantityError)] = &[
            ("", QuantityError::FormatWrong),
            ("   ", QuantityError::FormatWrong),
            ("abc", QuantityError::FormatWrong),
            ("-", QuantityError::FormatWrong),
            (".", QuantityError::FormatWrong),
            ("Ki", QuantityError::FormatWrong),
            ("1.2.3", QuantityError::FormatWrong),
            ("1 k", QuantityError::FormatWrong),
            ("1e3.5", QuantityError::FormatWrong),
            ("1Xi", QuantityError::FormatWrong),
            ("1e", QuantityError::Suffix),
            ("1ki", QuantityError::Suffix),
            ("1k3", QuantityError::Suffix),
            ("1-", QuantityError::Suffix),
            ("1+2", QuantityError::Suffix),
            ("1e99999999999", QuantityError::Suffix),
        ];
        for (s, want) in cases {
            assert_eq!(Quantity::parse(s).unwrap_err(), *want, "{s:?}");
        }
    }

    #[test]
    fn milli_value_and_value_round_away_from_zero() {
        let cases: &[(&str, i64, i64)] = &[
            // (input, MilliValue, Value)
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("1500m", 1500, 2),
            ("200345109n", 201, 1),
            ("1n", 1, 1),
            ("0", 0, 0),
            ("-1500m", -1500, -2),
            ("-1n", -1, -1),
            ("2Gi", 2_147_483_648_000, 2_147_483_648),
            ("1e30", i64::MAX, i64::MAX),
        ];
        for (s, milli, value) in cases {
            let q = Quantity::parse(s).unwrap();
            assert_eq!(q.milli_value(), *milli, "{s}");
            assert_eq!(q.value(), *value, "{s}");
        }
        assert_eq!(
            Quantity::parse("250m").unwrap().milli_value_unsigned(),
            Some(250)
        );
        assert_eq!(Quantity::parse("-1").unwrap().milli_value_unsigned(), None);
    }

    #[test]
    fn compares_and_adds_by_value() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("0.1"), q("100m"));
        assert!(q("1Ki") > q("1k"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        assert_eq!(q("100m") + q("900m"), q("1"));
        assert_eq!((q("100m") + q("900m")).to_string(), "1");
        assert_eq!((Quantity::ZERO + q("1Gi")).to_string(), "1Gi");
        assert_eq!(
            [q("512Mi"), q("512Mi")]
                .into_iter()
                .sum::<Quantity>()
                .to_string(),
            "1Gi"
        );
    }

    #[test]
    fn constructors_print_as_kubernetes() {
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (200, "200m"),
            (1000, "1"),
            (1500, "1500m"),
            (2_000_000, "2k"),
            (-250, "-250m"),
        ];
        for (milli, want) in cases {
            assert_eq!(Quantity::from_milli(*milli).to_string(), *want, "{milli}");
        }
        assert_eq!(
            Quantity::from_value(1 << 30, Format::BinarySI).to_string(),
            "1Gi"
        );
        assert_eq!(
            Quantity::from_value(1000, Format::DecimalSI).to_string(),
            "1k"
        );
        // Memory as the metrics API reports it: binary, below 1Ki in decimal form.
        let cases: &[(i64, &str)] = &[
            (2048, "2Ki"),
            (1 << 20, "1Mi"),
            (1025, "1025"),
            (1000, "1k"),
            (0, "0"),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                Quantity::from_value(*bytes, Format::BinarySI).to_string(),
                *want
            );
        }
        // CPU as the metrics API reports it: nano-cores.
        let cases: &[(i128, &str)] = &[
            (200_345_109, "200345109n"),
            (250_000_000, "250m"),
            (2_000_000_000, "2"),
            (0, "0"),
        ];
        for (nanos, want) in cases {
            assert_eq!(
                Quantity::from_nanos(*nanos, Format::DecimalSI).to_string(),
                *want
            );
        }
    }

    #[test]
    fn json_strings_and_numbers() {
        assert_eq!(
            Quantity::from_json(&json!("2")),
            Some(Quantity::from_milli(2000))
        );
        assert_eq!(
            Quantity::from_json(&json!(" 1Gi ")).unwrap().to_string(),
            "1Gi"
        );
        assert_eq!(
            Quantity::from_json(&json!(2)),
            Some(Quantity::from_milli(2000))
        );
        assert_eq!(
            Quantity::from_json(&json!(0.5)),
            Some(Quantity::from_milli(500))
        );
        assert_eq!(Quantity::from_json(&json!(true)), None);
        assert_eq!(Quantity::from_json(&json!("x")), None);
    }
}
