//! An exact reader of Kubernetes resource quantities (`resource.Quantity`'s text form):
//! `<sign><digits>[.<digits>]<suffix>`, where the suffix is a binary SI one (`Ki` .. `Ei`),
//! a decimal SI one (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal
//! exponent (`e3`, `E-2`). k8s-openapi keeps quantities as strings, so the scheduler reads
//! them here (the scheduler, the node agent's Downward API and limits).
//!
//! Values are kept as an exact fraction and scaled the way apimachinery scales them:
//! [`value`] is `Quantity.Value()` and [`milli_value`] is `Quantity.MilliValue()`, both
//! rounding up (towards positive infinity) and saturating at the bounds of `i64`.

/// An exact rational value: `num / den`, `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    num: i128,
    den: i128,
}

/// A parse failure (the quantity's text is not a valid quantity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError(pub String);

impl std::fmt::Display for QuantityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {:?}",
            self.0
        )
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn parse(s: &str) -> Result<Exact, QuantityError> {
    let err = || QuantityError(s.to_string());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        negative = bytes[i] == b'-';
        i += 1;
    }
    let mut num: i128 = 0;
    let mut frac_digits: u32 = 0;
    let mut digits = 0;
    let mut seen_dot = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => {
                num = num.checked_mul(10).and_then(|n| n.checked_add(i128::from(bytes[i] - b'0'))).ok_or_else(err)?;
                digits += 1;
                if seen_dot {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(err());
    }
    let mut den = pow10(frac_digits).ok_or_else(err)?;
    let suffix = &s[i..];
    let (mul10, mul2): (i32, u32) = match suffix {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        _ => {
            let rest = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E')).ok_or_else(err)?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            let exp: i32 = rest.parse().map_err(|_| err())?;
            (exp, 0)
        }
    };
    if mul2 > 0 {
        num = num.checked_mul(1i128 << mul2).ok_or_else(err)?;
    }
    if mul10 > 0 {
        num = num.checked_mul(pow10(mul10 as u32).ok_or_else(err)?).ok_or_else(err)?;
    } else if mul10 < 0 {
        den = den.checked_mul(pow10(mul10.unsigned_abs()).ok_or_else(err)?).ok_or_else(err)?;
    }
    if negative {
        num = -num;
    }
    Ok(Exact { num, den })
}

/// `ceil(q * 10^scale)` saturated to `i64`.
fn scaled(s: &str, scale: u32) -> Result<i64, QuantityError> {
    let q = parse(s)?;
    let Some(num) = pow10(scale).and_then(|p| q.num.checked_mul(p)) else {
        return Ok(if q.num < 0 { i64::MIN } else { i64::MAX });
    };
    let quotient = num.div_euclid(q.den);
    let ceil = if num.rem_euclid(q.den) == 0 { quotient } else { quotient + 1 };
    Ok(ceil.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The quantity in whole units, rounded up (`Quantity.Value()`).
pub fn value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

/// The quantity in thousandths, rounded up (`Quantity.MilliValue()`).
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// `ceil(q / divisor)` computed exactly, as the kubelet converts a resourceFieldRef
/// (`convertQuantityToString`); a zero divisor is an error.
pub fn divide_ceil(q: &str, divisor: &str) -> Result<i64, QuantityError> {
    let (a, b) = (parse(q)?, parse(divisor)?);
    let (Some(num), Some(den)) = (a.num.checked_mul(b.den), a.den.checked_mul(b.num)) else {
        return Ok(i64::MAX);
    };
    if den == 0 {
        return Err(QuantityError(divisor.to_string()));
    }
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    let quotient = num.div_euclid(den);
    let ceil = if num.rem_euclid(den) == 0 { quotient } else { quotient + 1 };
    Ok(ceil.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// `n` billionths as a canonical decimal quantity, as `resource.NewScaledQuantity(n, -9)`
/// prints (`12345678n`, `1500u`, `250m`, `2`): the largest suffix that keeps it whole.
pub fn nanos(n: u64) -> String {
    if n == 0 {
        return "0".into();
    }
    let (mut v, mut i) = (n, 0);
    let suffixes = ["n", "u", "m", "", "k", "M", "G", "T"];
    while v % 1000 == 0 && i + 1 < suffixes.len() {
        v /= 1000;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

/// Bytes as a canonical binary-SI quantity, as `resource.NewQuantity(n, BinarySI)` prints
/// (`512`, `4Ki`, `1536Ki`, `2Gi`; a value not a multiple of 1024 stays plain).
pub fn binary(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let (mut v, mut i) = (bytes, 0);
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    while v % 1024 == 0 && i + 1 < suffixes.len() {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_binary_and_exponent_forms() {
        assert_eq!(milli_value("1"), Ok(1000));
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("0.5"), Ok(500));
        assert_eq!(milli_value("1.5"), Ok(1500));
        assert_eq!(milli_value("2k"), Ok(2_000_000));
        assert_eq!(value("1Ki"), Ok(1024));
        assert_eq!(value("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(value("128974848"), Ok(128_974_848));
        assert_eq!(value("129e6"), Ok(129_000_000));
        assert_eq!(value("129M"), Ok(129_000_000));
        assert_eq!(value("123Mi"), Ok(128_974_848));
        assert_eq!(value("1E3"), Ok(1000));
        assert_eq!(value("1e-3"), Ok(1));
        assert_eq!(value("+110"), Ok(110));
        assert_eq!(value("-1"), Ok(-1));
        assert_eq!(value("1Ei"), Ok(1 << 60));
        assert_eq!(value("110"), Ok(110));
    }

    #[test]
    fn rounds_up_as_apimachinery() {
        // 1 nano-core is one milli-core once rounded up; so is 0.1m.
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(milli_value("0.1m"), Ok(1));
        assert_eq!(milli_value("1500u"), Ok(2));
        assert_eq!(value("500m"), Ok(1));
        assert_eq!(value("-500m"), Ok(0));
        assert_eq!(value("0"), Ok(0));
    }

    #[test]
    fn divisions_round_up_as_the_downward_api_does() {
        assert_eq!(divide_ceil("15m", "1m"), Ok(15));
        assert_eq!(divide_ceil("250m", "1"), Ok(1));
        assert_eq!(divide_ceil("8Mi", "1Ki"), Ok(8192));
        assert_eq!(divide_ceil("64Mi", "1Mi"), Ok(64));
        assert_eq!(divide_ceil("64Mi", "1"), Ok(67_108_864));
        assert_eq!(divide_ceil("1", "3"), Ok(1));
        assert!(divide_ceil("1", "0").is_err());
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(value("100E"), Ok(i64::MAX));
        assert_eq!(milli_value("10E"), Ok(i64::MAX));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "m", "1.2.3", "1KB", "1 Ki", "abc", "1e", "1e+", "--1", "1Kii", ".", "1i"] {
            assert!(value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities_are_written_canonically() {
        assert_eq!(nanos(0), "0");
        assert_eq!(nanos(12_345_678), "12345678n");
        assert_eq!(nanos(1_500_000), "1500u");
        assert_eq!(nanos(250_000_000), "250m");
        assert_eq!(nanos(2_000_000_000), "2");
        assert_eq!(binary(512), "512");
        assert_eq!(binary(4096), "4Ki");
        assert_eq!(binary(1536 * 1024), "1536Ki");
        assert_eq!(binary(1000 * 1000), "1000000");
        assert_eq!(binary(2 << 30), "2Gi");
        for q in ["12345678n", "1500u", "4Ki", "1536Ki", "2Gi"] {
            assert!(value(q).is_ok(), "{q} reads back");
        }
    }
}
