//! Free text in entries (player and actor names, reasons): the rules new text must meet, the
//! rule that decides when two player names are the same player, and the one escaping
//! function every human-readable output uses for text read back from a log or a peer.
//!
//! Entries from older or hostile peers may carry anything [`crate::proto::entry::Entry::validate`]
//! lets through (it cannot become stricter without making old logs unreadable), so text is
//! checked strictly when an entry is *made* ([`clean_new_text`]) and escaped whenever it is
//! *shown* ([`terminal_safe`]).

use crate::proto::entry::EntryError;
use unicode_normalization::UnicodeNormalization;

/// Whether `c` must never reach a terminal raw: control characters (C0 such as tab, newline
/// and ESC, DEL, and C1 such as CSI `\u{9b}`), which can move the cursor or colour the
/// screen, and the invisible characters that reorder or hide text (bidirectional embeddings,
/// overrides and isolates, zero-width marks, the byte-order mark), which can fake a row.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{061c}'
                | '\u{feff}'
        )
}

/// Text read back from a log or a peer, made safe for a terminal: every character
/// [`is_unsafe_char`] flags is shown as a `\u{..}` escape, everything else as it is. JSON
/// output does not use this (JSON has its own escaping).
pub fn terminal_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_char(c) {
            safe.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            safe.push(c);
        }
    }
    safe
}

/// New text for an entry (a name or a reason), as it will be stored: Unicode NFC (so `é`
/// typed precomposed or as `e` + combining accent is the same text) and trimmed. Refused,
/// naming `field`, when it holds a character [`is_unsafe_char`] flags, is empty while
/// `required`, or is longer than `max` bytes.
pub fn clean_new_text(
    field: &'static str,
    text: &str,
    max: usize,
    required: bool,
) -> Result<String, EntryError> {
    let clean: String = text.nfc().collect::<String>().trim().to_string();
    if clean.chars().any(is_unsafe_char) {
        return Err(EntryError::ControlChars { field });
    }
    if required && clean.is_empty() {
        return Err(EntryError::EmptyName { field });
    }
    if clean.len() > max {
        return Err(EntryError::TooLong {
            field,
            len: clean.len(),
            max,
        });
    }
    Ok(clean)
}

/// The key under which two player names are the same player: NFC, then Unicode lower case.
/// `Alice`, `ALICE` and `alice` are one player; the spelling already in the ledger is the
/// one kept for display.
pub fn name_key(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

/// Whether `a` and `b` are different players whose names look alike on screen (Unicode
/// confusables, e.g. Latin `Alice` and `Аlice` with a Cyrillic `А`, or `AIice` with a capital
/// I): worth a warning when an entry would create the second one.
pub fn looks_alike(a: &str, b: &str) -> bool {
    use unicode_security::confusable_detection::skeleton;
    if name_key(a) == name_key(b) {
        return false;
    }
    // Both as written (capital I and small l look alike) and in lower case (so `ALICE`
    // and `аlice` still match).
    let same = |x: &str, y: &str| skeleton(x).eq(skeleton(y));
    same(a, b) || same(&name_key(a), &name_key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_text_is_escaped_for_terminals() {
        assert_eq!(terminal_safe("bob"), "bob");
        assert_eq!(terminal_safe("Zoë 🐉"), "Zoë 🐉");
        assert_eq!(terminal_safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(terminal_safe("x\ny\rz\u{7f}"), "x\\u{a}y\\u{d}z\\u{7f}");
        assert_eq!(terminal_safe("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(terminal_safe("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(terminal_safe("t\tab"), "t\\u{9}ab");
        assert!(!terminal_safe("\u{9b}31m").chars().any(char::is_control));
    }

    #[test]
    fn new_text_is_normalized_trimmed_and_checked() {
        assert_eq!(
            clean_new_text("reason", "  boss kill ", 256, true).unwrap(),
            "boss kill"
        );
        // Decomposed é becomes the precomposed one.
        assert_eq!(
            clean_new_text("player", "Zoe\u{301}", 64, true).unwrap(),
            "Zo\u{e9}"
        );
        for bad in [
            "a\tb",
            "a\nb",
            "\u{1b}[31mred",
            "x\u{9b}y",
            "\u{202e}gnp",
            "a\u{200d}b",
        ] {
            assert_eq!(
                clean_new_text("reason", bad, 256, true),
                Err(EntryError::ControlChars { field: "reason" }),
                "{bad:?}"
            );
        }
        assert_eq!(
            clean_new_text("player", "   ", 64, true),
            Err(EntryError::EmptyName { field: "player" })
        );
        assert_eq!(clean_new_text("reason", "", 256, false).unwrap(), "");
        assert!(matches!(
            clean_new_text("reason", &"r".repeat(257), 256, true),
            Err(EntryError::TooLong { len: 257, .. })
        ));
    }

    #[test]
    fn names_match_in_any_case_and_unicode_form() {
        assert_eq!(name_key("ALICE"), name_key("alice"));
        assert_eq!(name_key("Zo\u{e9}"), name_key("ZOE\u{301}"));
        assert_ne!(name_key("Alice"), name_key("Alicia"));
        assert!(looks_alike("Alice", "\u{410}lice"), "Cyrillic A");
        assert!(looks_alike("Alice", "AIice"), "capital I for l");
        assert!(
            !looks_alike("Alice", "alice"),
            "the same player, not a look-alike"
        );
        assert!(!looks_alike("Alice", "Bob"));
    }
}
