//! Identifiers of people and things, validated where they enter: IIN / BIN (12 digits with the
//! Kazakh check digit), phone numbers (+7 and 10 digits), card numbers (16 digits, Luhn).

use dtenge_core::{ensure, Result};

/// Check an IIN (individual) or BIN (business) number: 12 digits, the last a check digit.
pub fn check_iin_bin(id: &str) -> Result<()> {
    ensure!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()),
        MalformedInput,
        "'{id}' is not an IIN/BIN: 12 digits expected"
    );
    let digits: Vec<u32> = id.bytes().map(|b| u32::from(b - b'0')).collect();
    ensure!(
        iin_check_digit(&digits[..11]) == Some(digits[11]),
        MalformedInput,
        "'{id}' is not an IIN/BIN: wrong check digit"
    );
    Ok(())
}

/// The check digit of the first 11 digits, or `None` when no digit is valid (such prefixes
/// are never issued).
pub fn iin_check_digit(first11: &[u32]) -> Option<u32> {
    debug_assert_eq!(first11.len(), 11);
    let weighted = |offset: u32| -> u32 {
        first11.iter().enumerate().map(|(i, d)| d * ((i as u32 + offset) % 11 + 1)).sum::<u32>() % 11
    };
    let first = weighted(0);
    if first != 10 {
        return Some(first);
    }
    let second = weighted(2);
    (second != 10).then_some(second)
}

/// Complete an 11-digit prefix into a valid IIN/BIN, if the prefix has a check digit.
pub fn complete_iin_bin(prefix11: &str) -> Option<String> {
    if prefix11.len() != 11 || !prefix11.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: Vec<u32> = prefix11.bytes().map(|b| u32::from(b - b'0')).collect();
    iin_check_digit(&digits).map(|d| format!("{prefix11}{d}"))
}

/// Normalize a Kazakh phone number to `+7XXXXXXXXXX`. Accepts `+7…`, `8…` and `7…` forms with
/// spaces, dashes and brackets.
pub fn normalize_phone(phone: &str) -> Result<String> {
    let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
    let national = match digits.len() {
        11 if digits.starts_with('7') || digits.starts_with('8') => &digits[1..],
        10 => &digits[..],
        _ => "",
    };
    ensure!(
        national.len() == 10 && phone.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)),
        MalformedInput,
        "'{phone}' is not a phone number: +7 and 10 digits expected"
    );
    Ok(format!("+7{national}"))
}

/// Check a card number: 16 digits passing the Luhn check.
pub fn check_pan(pan: &str) -> Result<()> {
    ensure!(pan.len() == 16 && pan.bytes().all(|b| b.is_ascii_digit()), MalformedInput, "a card number has 16 digits");
    let sum: u32 = pan
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    ensure!(sum.is_multiple_of(10), MalformedInput, "card number fails the Luhn check");
    Ok(())
}

/// Complete a 15-digit prefix into a valid card number.
pub fn complete_pan(prefix15: &str) -> Option<String> {
    (0..10).map(|d| format!("{prefix15}{d}")).find(|pan| check_pan(pan).is_ok())
}

/// Mask a card number for display: `4400 •••• •••• 1234`.
pub fn mask_pan(pan: &str) -> String {
    // Only a checked card number (16 ASCII digits) is shown in part; anything else is hidden
    // whole (and never sliced inside a character).
    if pan.len() != 16 || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return "••••".into();
    }
    format!("{} •••• •••• {}", &pan[..4], &pan[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iin_check_digits() {
        let iin = complete_iin_bin("90010130000").unwrap();
        check_iin_bin(&iin).unwrap();
        let mut wrong = iin.clone().into_bytes();
        wrong[11] = if wrong[11] == b'0' { b'1' } else { b'0' };
        assert!(check_iin_bin(std::str::from_utf8(&wrong).unwrap()).is_err());
        assert!(check_iin_bin("12345").is_err());
    }

    #[test]
    fn phones_normalize() {
        assert_eq!(normalize_phone("+7 (701) 123-45-67").unwrap(), "+77011234567");
        assert_eq!(normalize_phone("87011234567").unwrap(), "+77011234567");
        assert!(normalize_phone("+7701").is_err());
        assert!(normalize_phone("+7701123456x").is_err());
    }

    #[test]
    fn luhn() {
        let pan = complete_pan("440043000000001").unwrap();
        check_pan(&pan).unwrap();
        assert!(check_pan("4400430000000000").is_err() || pan == "4400430000000000");
        assert_eq!(mask_pan(&pan), format!("4400 •••• •••• {}", &pan[12..]));
        assert_eq!(mask_pan("xéééééééx"), "••••");
    }
}
