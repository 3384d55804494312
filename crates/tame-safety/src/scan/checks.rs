//! Validators that confirm a pattern candidate: Luhn, IBAN mod-97, SSN ranges, entropy, JWT header,
//! the randomness of a token's body, Discord's encoded user id.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// True when `digits` (ASCII digits only) passes the Luhn checksum.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let Some(mut v) = d.checked_sub(b'0').map(u32::from) else {
            return false;
        };
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// True when the digits start with a known card issuer prefix (IIN) and have
/// a length that issuer uses.
pub(crate) fn card_issuer_ok(digits: &[u8]) -> bool {
    let len = digits.len();
    let prefix = |n: usize| -> u32 {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d.saturating_sub(b'0')))
    };
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    match len {
        // Visa
        13 | 16 | 19 if p1 == 4 => true,
        // Mastercard (51-55, 2221-2720)
        16 if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) => true,
        // American Express
        15 if p2 == 34 || p2 == 37 => true,
        // Diners Club
        14 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => true,
        // Discover, UnionPay, JCB, Maestro
        16..=19
            if p4 == 6011
                || p2 == 65
                || (644..=649).contains(&p3)
                || (622_126..=622_925).contains(&p6)
                || p2 == 62
                || (3528..=3589).contains(&p4) =>
        {
            true
        }
        12..=19 if matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763) => true,
        _ => false,
    }
}

/// Area, group and serial ranges that the US Social Security Administration
/// never issues, plus numbers it has published as invalid examples.
pub(crate) fn ssn_ok(area: u32, group: u32, serial: u32) -> bool {
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    // Published examples that were never valid numbers.
    !matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789))
}

/// IBAN length per country (ISO 13616 registry).
fn iban_length(country: &[u8]) -> Option<usize> {
    let len = match country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SC" => 31,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    };
    Some(len)
}

/// Expected IBAN length for the two-letter country code at the start of `compact`.
pub(crate) fn iban_expected_len(compact: &[u8]) -> Option<usize> {
    iban_length(compact.get(..2)?)
}

/// True when `compact` (no spaces, uppercase) passes the IBAN mod-97 check.
pub(crate) fn iban_mod97(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => {
                let v = u32::from(c - b'A') + 10;
                rem = (rem * 100 + v) % 97;
            }
            _ => return false,
        }
    }
    rem == 1
}

/// Shannon entropy of the bytes of `s`, in bits per byte.
pub(crate) fn shannon_entropy(s: &str) -> f64 {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// A generated credential's body rather than a word: it holds both letters
/// and digits and has at least 3 bits of entropy per byte.
pub(crate) fn looks_random(body: &str) -> bool {
    body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().any(|b| b.is_ascii_alphabetic())
        && shannon_entropy(body) >= 3.0
}

/// Letters drawn at random from both cases: at least six of each. A
/// camel-case identifier has far fewer capitals.
pub(crate) fn mixed_case(text: &str) -> bool {
    text.bytes().filter(u8::is_ascii_uppercase).count() >= 6 && text.bytes().filter(u8::is_ascii_lowercase).count() >= 6
}

/// True when `segment` is the base64 (either alphabet, unpadded) of a
/// numeric id of 17 to 20 digits, as the first part of a Discord bot token is.
pub(crate) fn is_base64_user_id(segment: &str) -> bool {
    let decoded = URL_SAFE_NO_PAD
        .decode(segment)
        .or_else(|_| STANDARD_NO_PAD.decode(segment));
    decoded.is_ok_and(|id| (17..=20).contains(&id.len()) && id.iter().all(u8::is_ascii_digit))
}

/// True when a base64url segment decodes to a JSON object.
fn decodes_to_json_object(segment: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let trimmed = segment.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD.decode(trimmed).ok()?;
    match serde_json::from_slice::<serde_json::Value>(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// True when `token` is `header.payload.signature` whose header is a JSON
/// object naming an `alg` (or `typ`) and whose payload is a JSON object.
pub(crate) fn jwt_ok(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(h) = decodes_to_json_object(header) else {
        return false;
    };
    (h.contains_key("alg") || h.contains_key("typ")) && decodes_to_json_object(payload).is_some()
}

/// Values that look like placeholders, templates or masks rather than secrets.
pub(crate) fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "${",
        "{{",
        "}}",
        "%s",
        "%(",
        "<",
        ">",
        "***",
        "xxxx",
        "...",
        "[redacted",
        "redacted",
        "placeholder",
        "changeme",
        "change_me",
        "your_",
        "your-",
        "yourpassword",
        "example.com",
        "process.env",
        "os.environ",
        "getenv",
        "env(",
        "secret_here",
        "_here",
    ];
    if MARKERS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    if lower.starts_with('$') || lower.starts_with('%') {
        return true;
    }
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "pass",
        "secret",
        "token",
        "null",
        "none",
        "true",
        "false",
        "undefined",
        "required",
        "optional",
        "string",
        "hidden",
        "masked",
        "empty",
        "test",
        "dummy",
        "sample",
        "unknown",
        "default",
    ];
    if WORDS.contains(&lower.as_str()) {
        return true;
    }
    // A single repeated character ("aaaaaaaa", "00000000").
    let mut chars = value.chars();
    match chars.next() {
        Some(first) => chars.all(|c| c == first),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b""));
    }

    #[test]
    fn iban_checksum() {
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        assert!(!iban_mod97(b"DE89370400440532013001"));
        assert_eq!(iban_expected_len(b"DE89"), Some(22));
        assert_eq!(iban_expected_len(b"ZZ12"), None);
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn_ok(536, 22, 1234));
        assert!(!ssn_ok(0, 22, 1234));
        assert!(!ssn_ok(666, 22, 1234));
        assert!(!ssn_ok(912, 22, 1234));
        assert!(!ssn_ok(536, 0, 1234));
        assert!(!ssn_ok(536, 22, 0));
        assert!(!ssn_ok(78, 5, 1120));
    }

    #[test]
    fn entropy_orders_strings() {
        assert!(shannon_entropy("aaaaaaaa") < 0.01);
        assert!(shannon_entropy("abcdefgh") > 2.9);
        assert!(shannon_entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.0);
    }

    #[test]
    fn token_bodies() {
        assert!(looks_random("d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!looks_random("abcdefghijklmnopqrstuvwxyzabcdef"));
        assert!(!looks_random("12345678901234567890123456789012"));
        assert!(mixed_case("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"));
        assert!(!mixed_case("hf_requiredCharacteristicTypesForDisplay"));
        // base64 of "123456789012345678"
        assert!(is_base64_user_id("MTIzNDU2Nzg5MDEyMzQ1Njc4"));
        assert!(!is_base64_user_id("NotAnIdAtAllButLettersXY"));
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("${DB_PASSWORD}"));
        assert!(is_placeholder("********"));
        assert!(is_placeholder("changeme"));
        assert!(!is_placeholder("Zq8#kL2!pW9x"));
    }
}
