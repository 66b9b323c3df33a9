//! Resource quantities (`500m`, `1.5`, `128Mi`, `1e3`, `2G`), as the
//! scheduler adds up requests and the kubelet sets limits.
//!
//! A quantity is a decimal number with an optional suffix: binary (`Ki`,
//! `Mi`, `Gi`, `Ti`, `Pi`, `Ei`: powers of 1024), decimal SI (`n`, `u`,
//! `m`, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent (`e3`, `E-2`).
//! Values are returned in the unit callers add up: whole units rounded up
//! ([`Quantity::value`]) or thousandths rounded up ([`Quantity::milli`]),
//! as Kubernetes' `Value()` and `MilliValue()` do.

use std::fmt;

/// A parsed quantity, kept exactly as a decimal mantissa and a power of
/// ten plus a power of two (binary suffixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQuantity(pub String);

impl fmt::Display for InvalidQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {:?}",
            self.0
        )
    }
}

impl std::error::Error for InvalidQuantity {}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, InvalidQuantity> {
        let bad = || InvalidQuantity(text.to_string());
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (negative, digits) = match number.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !(whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()))
        {
            return Err(bad());
        }
        if whole.len() + fraction.len() > 30 {
            return Err(bad());
        }
        let mut mantissa: i128 = format!("{whole}{fraction}").parse().map_err(|_| bad())?;
        if negative {
            mantissa = -mantissa;
        }
        let mut exp10 = -i32::try_from(fraction.len()).map_err(|_| bad())?;
        let mut exp2 = 0;
        match suffix {
            "" => {}
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            s if s.starts_with(['e', 'E']) => {
                let e: i32 = s[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&e) {
                    return Err(bad());
                }
                exp10 += e;
            }
            _ => return Err(bad()),
        }
        Ok(Quantity { mantissa, exp10, exp2 })
    }

    /// The value scaled by 10^`scale`, rounded up, saturating at i64.
    fn scaled(&self, scale: i32) -> i64 {
        let mut m = self.mantissa;
        for _ in 0..self.exp2 {
            m = m.saturating_mul(2);
        }
        let e = self.exp10 + scale;
        let value = if e >= 0 {
            let mut v = m;
            for _ in 0..e {
                v = v.saturating_mul(10);
            }
            v
        } else {
            let divisor = 10i128.checked_pow(e.unsigned_abs()).unwrap_or(i128::MAX);
            let q = m.div_euclid(divisor);
            if m.rem_euclid(divisor) != 0 {
                q + 1
            } else {
                q
            }
        };
        i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
    }

    /// Whole units, rounded up (bytes of memory, pods, GPUs).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// Thousandths, rounded up (millicores of CPU).
    pub fn milli(&self) -> i64 {
        self.scaled(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn suffixes_and_rounding() {
        assert_eq!(q("500m").milli(), 500);
        assert_eq!(q("1.5").milli(), 1500);
        assert_eq!(q("2").milli(), 2000);
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("2G").value(), 2_000_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1.5Ki").value(), 1536);
        assert_eq!(q("100m").value(), 1, "whole units round up");
        assert_eq!(q("0.1m").milli(), 1, "milli rounds up");
        assert_eq!(q("-1").value(), -1);
        assert_eq!(q("10k").value(), 10_000);
    }

    #[test]
    fn bad_quantities_are_refused() {
        for bad in ["", "abc", "1.2.3", "5 Mi", "1Zi", "m", "1e"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
