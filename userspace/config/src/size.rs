//! Human-written byte sizes: `"512"`, `"64KB"`, `"1.5MB"`, `"16KiB"`, `"1 GB"`.
//!
//! Units are binary and case-insensitive: `KB` = `KiB` = 1024 bytes, `MB` = `MiB` = 1024²,
//! `GB` = `GiB` = 1024³, `B` or no unit = bytes. Binary because the guide's `max-message-size "1MB"`
//! is the inspector's documented default of 1048576 bytes. A fraction is accepted when it comes
//! out to a whole number of bytes (`"1.5KB"` = 1536, `"1.3B"` is an error).

/// Fraction digits beyond this are rejected; it keeps the arithmetic exact in `u128`.
const MAX_FRACTION_DIGITS: usize = 20;

pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        _ if number.is_empty() => {
            return Err(format!(
                "invalid size \"{text}\": expected a number with an optional unit B, KB, MB or GB"
            ))
        }
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` in \"{text}\" (use B, KB, MB or GB; 1KB = 1024 bytes)"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(whole) || (number.contains('.') && !digits_only(fraction)) {
        return Err(format!(
            "invalid size \"{text}\": expected a number with an optional unit B, KB, MB or GB"
        ));
    }
    let too_large = || format!("size \"{text}\" is too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Err(format!("size \"{text}\" has too many decimal places"));
    }
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| too_large())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction_bytes = fraction_value * u128::from(multiplier);
    if !fraction_bytes.is_multiple_of(scale) {
        return Err(format!("size \"{text}\" is not a whole number of bytes"));
    }
    let bytes = whole
        .checked_mul(u128::from(multiplier))
        .and_then(|bytes| bytes.checked_add(fraction_bytes / scale))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KB"), Ok(65536));
        assert_eq!(parse_size("64kb"), Ok(65536));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("1MB"), Ok(1_048_576));
        assert_eq!(parse_size("1mib"), Ok(1_048_576));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size(" 1 MB "), Ok(1_048_576));
    }

    #[test]
    fn whole_byte_fractions_are_accepted() {
        assert_eq!(parse_size("1.5MB"), Ok(1_572_864));
        assert_eq!(parse_size("0.5KB"), Ok(512));
        assert_eq!(parse_size("1.000KB"), Ok(1024));
        assert_eq!(
            parse_size("1.3B"),
            Err("size \"1.3B\" is not a whole number of bytes".to_owned())
        );
    }

    #[test]
    fn malformed_sizes_are_explained() {
        assert_eq!(
            parse_size("64XB"),
            Err(
                "unknown size unit `XB` in \"64XB\" (use B, KB, MB or GB; 1KB = 1024 bytes)"
                    .to_owned()
            )
        );
        let invalid = |s: &str| {
            format!("invalid size \"{s}\": expected a number with an optional unit B, KB, MB or GB")
        };
        for text in ["", "MB", "-5KB", "1.", ".5MB", "1.2.3KB", "ten"] {
            assert_eq!(parse_size(text), Err(invalid(text)), "{text:?}");
        }
        assert_eq!(
            parse_size("18446744073709551616"),
            Err("size \"18446744073709551616\" is too large".to_owned())
        );
        assert_eq!(
            parse_size("17179869184GB"),
            Err("size \"17179869184GB\" is too large".to_owned())
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse_size(&text);
        }

        #[test]
        fn integers_with_units_multiply(n in 0u64..(1 << 33), unit in prop::sample::select(vec![("", 1u64), ("b", 1), ("KB", 1024), ("MiB", 1 << 20), ("gb", 1 << 30)])) {
            let expected = n.checked_mul(unit.1);
            let parsed = parse_size(&format!("{n}{}", unit.0)).ok();
            prop_assert_eq!(parsed, expected);
        }
    }
}
