//! Normalisation of the keys that identify a customer across channels
//! (emails, phones) and the stable ids given to guest customers.

/// Trims and lower-cases an email; `None` when nothing usable is left.
///
/// No further validation: a malformed address still identifies the same person
/// in every channel it was typed into, and rejecting it would lose a purchase.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim();
    if e.is_empty() {
        return None;
    }
    Some(e.to_lowercase())
}

/// National significant number lengths for common country calling codes
/// (ITU-T E.164 national numbering plans as summarised by libphonenumber's
/// metadata). Used to tell `8613800000000` (international) from a national number.
fn national_lengths(cc: &str) -> &'static [usize] {
    match cc {
        "1" => &[10],
        "7" => &[10],
        "20" => &[9, 10],
        "27" => &[9],
        "30" => &[10],
        "31" => &[9],
        "32" => &[8, 9],
        "33" => &[9],
        "34" => &[9],
        "36" => &[8, 9],
        "39" => &[6, 7, 8, 9, 10, 11],
        "40" => &[9],
        "41" => &[9],
        "43" => &[10, 11, 12, 13],
        "44" => &[9, 10],
        "45" => &[8],
        "46" => &[7, 8, 9],
        "47" => &[8],
        "48" => &[9],
        "49" => &[6, 7, 8, 9, 10, 11, 12, 13],
        "52" => &[10],
        "55" => &[10, 11],
        "60" => &[9, 10],
        "61" => &[9],
        "62" => &[9, 10, 11, 12],
        "63" => &[10],
        "64" => &[8, 9, 10],
        "65" => &[8],
        "66" => &[8, 9],
        "81" => &[9, 10],
        "82" => &[9, 10],
        "84" => &[9, 10],
        "86" => &[10, 11],
        "90" => &[10],
        "91" => &[10],
        "852" => &[8],
        "853" => &[8],
        "886" => &[8, 9],
        "971" => &[8, 9],
        _ => &[8, 9, 10],
    }
}

/// Countries whose numbers keep a leading zero after the country code.
fn keeps_trunk_zero(cc: &str) -> bool {
    matches!(cc, "39" | "1")
}

/// Reduces a phone number to E.164 (`+` and digits).
///
/// A leading `+` (or the international prefix `00`) means the number already has
/// its country code. Otherwise a number that is `default_cc` followed by a
/// complete national number is international too; any other number is national:
/// a trunk `0` is dropped and `default_cc` is put in front. `None` when the text
/// holds fewer than 4 digits.
pub fn normalize_phone(raw: &str, default_cc: &str) -> Option<String> {
    let t = raw.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return None;
    }
    if t.starts_with('+') {
        return Some(format!("+{digits}"));
    }
    if let Some(rest) = digits.strip_prefix("00")
        && rest.len() >= 7
    {
        return Some(format!("+{rest}"));
    }
    if let Some(national) = digits.strip_prefix(default_cc)
        && national_lengths(default_cc).contains(&national.len())
    {
        return Some(format!("+{digits}"));
    }
    let national = if !keeps_trunk_zero(default_cc) && digits.starts_with('0') {
        digits.trim_start_matches('0')
    } else {
        digits.as_str()
    };
    Some(format!("+{default_cc}{national}"))
}

/// Stable 64-bit hash (XXH3) of a key: the same on every machine and every run.
pub fn stable_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The id of a guest customer identified by `key` (e.g. `email:bo@example.com`):
/// `G-` and 16 hex digits, the same every night for the same key.
pub fn guest_id(key: &str) -> String {
    format!("G-{:016x}", stable_hash(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(normalize_email("   "), None);
    }

    #[test]
    fn phones_with_plus_are_international() {
        assert_eq!(
            normalize_phone("+86 138 0000 0000", "1").as_deref(),
            Some("+8613800000000")
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0958", "1").as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn national_numbers_take_the_default_country_code() {
        assert_eq!(
            normalize_phone("138-0000-0000", "86").as_deref(),
            Some("+8613800000000")
        );
        assert_eq!(
            normalize_phone("(212) 555-1234", "1").as_deref(),
            Some("+12125551234")
        );
        assert_eq!(
            normalize_phone("020 7946 0958", "44").as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn default_code_followed_by_a_complete_number_is_international() {
        assert_eq!(
            normalize_phone("8613800000000", "86").as_deref(),
            Some("+8613800000000")
        );
        assert_eq!(
            normalize_phone("1 212 555 1234", "1").as_deref(),
            Some("+12125551234")
        );
        // 86 followed by 9 digits is not a complete Chinese number: national.
        assert_eq!(
            normalize_phone("861234567", "86").as_deref(),
            Some("+86861234567")
        );
    }

    #[test]
    fn too_short_is_no_phone() {
        assert_eq!(normalize_phone("12", "1"), None);
        assert_eq!(normalize_phone("n/a", "1"), None);
    }

    #[test]
    fn guest_ids_are_stable() {
        assert_eq!(
            guest_id("email:bo@example.com"),
            guest_id("email:bo@example.com")
        );
        assert_ne!(
            guest_id("email:bo@example.com"),
            guest_id("phone:+8613800000000")
        );
        assert!(guest_id("x").starts_with("G-"));
        assert_eq!(guest_id("x").len(), 18);
    }
}
