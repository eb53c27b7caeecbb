//! Unicode facts the tokenizers need, exactly as llama.cpp sees them: general-category flags
//! per code point, llama.cpp's `\s` set, and GPT-2's byte <-> printable-character mapping.

use super::unicode_table::{CATEGORY_RANGES, WHITESPACE};

/// llama.cpp's `unicode_cpt_flags` bits for one code point (the ones the pre-tokenizers use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CptFlags(u16);

impl CptFlags {
    const NUMBER: u16 = 0x0002;
    const LETTER: u16 = 0x0004;
    const WHITESPACE: u16 = 0x0100;

    pub(crate) fn of(c: char) -> Self {
        let cp = u32::from(c);
        // Index of the last range starting at or before `cp`; the table starts at 0.
        let i = CATEGORY_RANGES
            .partition_point(|&(start, _)| start <= cp)
            .saturating_sub(1);
        let mut bits = CATEGORY_RANGES.get(i).map_or(0, |&(_, f)| u16::from(f));
        if WHITESPACE.binary_search(&cp).is_ok() {
            bits |= Self::WHITESPACE;
        }
        Self(bits)
    }

    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }

    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }

    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }

    /// Any flag at all; false only for positions outside the text (llama.cpp's `as_uint()`).
    pub(crate) fn is_some(self) -> bool {
        self.0 != 0
    }
}

/// GPT-2's `bytes_to_unicode`: every byte gets a printable character, so byte-level BPE
/// vocabularies can store arbitrary bytes as text.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            u32::from(b)
        } else {
            let cp = next;
            next += 1;
            cp
        };
        // All values are below 0x144, far from the surrogate range.
        table[usize::from(b)] = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert!(CptFlags::of('a').is_letter());
        assert!(CptFlags::of('Ж').is_letter());
        assert!(CptFlags::of('中').is_letter());
        assert!(CptFlags::of('7').is_number());
        assert!(CptFlags::of('٣').is_number()); // Arabic-Indic digit
        assert!(CptFlags::of('½').is_number());
        assert!(CptFlags::of(' ').is_whitespace());
        assert!(CptFlags::of('\u{3000}').is_whitespace());
        assert!(!CptFlags::of('!').is_letter());
        assert!(CptFlags::of('!').is_some());
        assert!(CptFlags::of('\u{10FFFF}').is_some());
        let e = CptFlags::of('😀');
        assert!(!e.is_letter() && !e.is_number() && !e.is_whitespace());
    }

    #[test]
    fn gpt2_byte_map() {
        let t = byte_to_char_table();
        assert_eq!(t[usize::from(b'A')], 'A');
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }
}
