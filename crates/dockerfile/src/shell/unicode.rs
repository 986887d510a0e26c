//! The character classes of Go's `unicode` package that BuildKit's lexer uses.
//!
//! Rust's `char::is_alphabetic` and `char::is_numeric` are wider than Go's
//! `unicode.IsLetter` (general category L) and `unicode.IsDigit` (category
//! Nd): they also take letter numbers such as `Ⅻ`, superscripts such as `²`
//! and combining vowel signs. `$PWD²` must read the variable `PWD`, as in
//! BuildKit, so the general category decides here. `char::is_whitespace` is
//! the White_Space property, exactly Go's `unicode.IsSpace`.

use unicode_general_category::{GeneralCategory, get_general_category};

/// Go's `unicode.IsLetter`: general category Lu, Ll, Lt, Lm or Lo.
pub(super) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Go's `unicode.IsDigit`: general category Nd, in any script.
pub(super) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// Go's `unicode.IsSpace`.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_go_not_rust() {
        assert!(is_letter('한') && is_letter('é') && is_letter('ß'));
        assert!(!is_letter('Ⅻ') && 'Ⅻ'.is_alphabetic());
        assert!(!is_letter('\u{093f}') && '\u{093f}'.is_alphabetic());
        assert!(is_digit('٣') && is_digit('７'));
        assert!(!is_digit('²') && '²'.is_numeric());
        assert!(is_space('\u{85}') && is_space('\u{a0}') && is_space('\u{3000}'));
        assert!(!is_space('\u{200b}'));
    }
}
