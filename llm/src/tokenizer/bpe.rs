//! Byte-level BPE (`tokenizer.ggml.model = gpt2`), as llama.cpp's `llm_tokenizer_bpe_session`
//! does it: split the text into words with the pre-tokenizer named by `tokenizer.ggml.pre`,
//! map each word's bytes to GPT-2's printable characters, then apply the merges in rank order.

use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use super::unicode::{CptFlags, byte_to_char_table};
use super::{TokenId, Vocab};
use crate::error::{Error, Result};

/// One pass of llama.cpp's `unicode_regex_split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// `\p{N}`: every number code point becomes a word of its own.
    Digits,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: Llama 3 (3 digits) and Qwen2 (1).
    Llama3 { max_digits: usize },
}

/// The pre-tokenizers implemented, for error messages.
pub(crate) const SUPPORTED_PRE: &str =
    "smollm, starcoder, refact, gpt-2, phi-2, mpt, olmo, llama3 (llama-bpe), qwen2";

/// What `tokenizer.ggml.pre` selects, following llama-vocab.cpp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreTokenizer {
    splits: &'static [Split],
    /// llama.cpp's `clean_spaces` (clean_up_tokenization_spaces when decoding).
    pub(crate) clean_spaces: bool,
    /// A word that is a token as a whole is not merged (llama.cpp's `ignore_merges`).
    ignore_merges: bool,
    /// The default for `add_bos` before `tokenizer.ggml.add_bos_token` is read.
    pub(crate) add_bos: bool,
}

fn pre_tokenizer(pre: &str) -> Option<PreTokenizer> {
    const DIGITS_GPT2: &[Split] = &[Split::Digits, Split::Gpt2];
    const GPT2: &[Split] = &[Split::Gpt2];
    const LLAMA3: &[Split] = &[Split::Llama3 { max_digits: 3 }];
    const QWEN2: &[Split] = &[Split::Llama3 { max_digits: 1 }];
    let p = |splits, clean_spaces| PreTokenizer {
        splits,
        clean_spaces,
        ignore_merges: false,
        add_bos: false,
    };
    Some(match pre {
        "smollm" => p(DIGITS_GPT2, false),
        "starcoder" | "refact" => p(DIGITS_GPT2, true),
        "gpt-2" | "phi-2" | "mpt" | "olmo" => p(GPT2, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => PreTokenizer {
            ignore_merges: true,
            add_bos: true,
            ..p(LLAMA3, true)
        },
        "qwen2" | "deepseek-r1-qwen" => p(QWEN2, false),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Bpe {
    /// `"left right"` -> rank (the merge's line number; the first line wins on duplicates).
    ranks: HashMap<String, u32>,
    splits: &'static [Split],
    ignore_merges: bool,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

impl Bpe {
    /// Builds the merge table. Returns the tokenizer and what `pre` selects.
    pub(crate) fn new<'a>(
        merges: impl IntoIterator<Item = &'a str>,
        pre: &str,
    ) -> Result<(Self, PreTokenizer)> {
        let config = pre_tokenizer(pre).ok_or_else(|| Error::UnsupportedPreTokenizer {
            pre: pre.to_string(),
            supported: SUPPORTED_PRE,
        })?;
        let mut ranks = HashMap::new();
        for (rank, merge) in merges.into_iter().enumerate() {
            // llama.cpp splits at the first space after the first byte; a line without one
            // becomes the pair ("", ""), which never matches.
            let key = if merge.bytes().skip(1).any(|b| b == b' ') {
                merge.to_string()
            } else {
                " ".to_string()
            };
            let rank = u32::try_from(rank).map_err(|_| Error::InvalidVocab {
                detail: "more than 2^32 merges".into(),
            })?;
            ranks.entry(key).or_insert(rank);
        }
        let byte_to_char = byte_to_char_table();
        let char_to_byte = byte_to_char
            .iter()
            .zip(0..=255u8)
            .map(|(&c, b)| (c, b))
            .collect();
        Ok((
            Self {
                ranks,
                splits: config.splits,
                ignore_merges: config.ignore_merges,
                byte_to_char,
                char_to_byte,
            },
            config,
        ))
    }

    /// Appends the tokens of `text` (one raw-text fragment, special tokens already removed).
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<TokenId>) {
        let cpts: Vec<char> = text.chars().collect();
        let words = split_words(self.splits, &cpts);
        let mut word = String::new();
        let mut utf8 = [0u8; 4];
        for range in words {
            word.clear();
            for &c in &cpts[range] {
                for &b in c.encode_utf8(&mut utf8).as_bytes() {
                    word.push(self.byte_to_char[usize::from(b)]);
                }
            }
            if self.ignore_merges
                && let Some(id) = vocab.id(&word)
            {
                out.push(id);
                continue;
            }
            for piece in self.merge(&word) {
                match vocab.id(piece) {
                    Some(id) => out.push(id),
                    None => {
                        // llama.cpp falls back to single-byte strings of the encoded piece;
                        // only ASCII bytes can match a token.
                        for b in piece.bytes().filter(u8::is_ascii) {
                            if let Some(id) = vocab.id(char::from(b).encode_utf8(&mut utf8)) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies the merges to one byte-encoded word; returns its final pieces in order.
    fn merge<'w>(&self, word: &'w str) -> Vec<&'w str> {
        let mut syms: Vec<Symbol> = Vec::with_capacity(word.len());
        for (i, (start, c)) in word.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if let Some(p) = i.checked_sub(1) {
                syms[p].next = Some(i);
            }
        }
        let text = |s: &Symbol| &word[s.start..s.start + s.len];
        let mut heap = BinaryHeap::new();
        let mut key = String::new();
        let push = |heap: &mut BinaryHeap<Bigram>, key: &mut String, syms: &[Symbol], l: usize| {
            let Some(r) = syms[l].next else { return };
            let (ls, rs) = (&syms[l], &syms[r]);
            key.clear();
            key.push_str(&word[ls.start..ls.start + ls.len]);
            key.push(' ');
            key.push_str(&word[rs.start..rs.start + rs.len]);
            if let Some(&rank) = self.ranks.get(key.as_str()) {
                heap.push(Bigram {
                    rank,
                    left: l,
                    right: r,
                    len: ls.len + rs.len,
                });
            }
        };
        for i in 0..syms.len().saturating_sub(1) {
            push(&mut heap, &mut key, &syms, i);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (&syms[b.left], &syms[b.right]);
            // Stale entry: one side was merged away or grew since it was queued.
            if l.len == 0 || r.len == 0 || l.next != Some(b.right) || l.len + r.len != b.len {
                continue;
            }
            let right_next = r.next;
            syms[b.left].len = b.len;
            syms[b.right].len = 0;
            syms[b.left].next = right_next;
            if let Some(n) = right_next {
                syms[n].prev = Some(b.left);
            }
            if let Some(p) = syms[b.left].prev {
                push(&mut heap, &mut key, &syms, p);
            }
            push(&mut heap, &mut key, &syms, b.left);
        }
        syms.iter().filter(|s| s.len > 0).map(text).collect()
    }

    /// Appends the bytes a normal token stands for (GPT-2 characters back to bytes).
    pub(crate) fn decode_token(&self, token_text: &str, out: &mut Vec<u8>) {
        for c in token_text.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    // What llama.cpp's llama_decode_text writes for a character outside the map.
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut utf8 = [0u8; 4];
                    for b in c.encode_utf8(&mut utf8).bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(token_text.as_bytes());
                    out.push(b']');
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge; the heap pops the lowest rank first, then the leftmost.
#[derive(Debug, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.len.cmp(&self.len))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Runs the pre-tokenizer's passes over the whole text; returns word ranges in code points.
fn split_words(splits: &[Split], cpts: &[char]) -> Vec<Range<usize>> {
    let mut words: Vec<Range<usize>> = std::iter::once(0..cpts.len()).collect();
    for split in splits {
        words = match split {
            Split::Digits => split_digits(cpts, &words),
            Split::Gpt2 => split_gpt2(cpts, &words),
            Split::Llama3 { max_digits } => split_llama3(cpts, &words, *max_digits),
        };
    }
    words
}

/// `\p{N}` through llama.cpp's std::regex path: matches and the gaps between them are words.
fn split_digits(cpts: &[char], words: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        let mut gap_start = w.start;
        for i in w.clone() {
            if CptFlags::of(cpts[i]).is_number() {
                if gap_start < i {
                    out.push(gap_start..i);
                }
                out.push(i..i + 1);
                gap_start = i + 1;
            }
        }
        if gap_start < w.end {
            out.push(gap_start..w.end);
        }
    }
    out
}

/// llama.cpp's hand-written `unicode_regex_split_custom_gpt2`, line for line.
fn split_gpt2(cpts: &[char], words: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        let (ini, end) = (w.start, w.end);
        let cpt = |pos: usize| (ini <= pos && pos < end).then(|| cpts[pos]);
        let flags = |pos: usize| cpt(pos).map(CptFlags::of).unwrap_or_default();
        let mut prev_end = ini;
        let mut add = |out: &mut Vec<Range<usize>>, to: usize| {
            if to > prev_end {
                out.push(prev_end..to);
            }
            prev_end = to;
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags(pos);

            // 's|'t|'re|'ve|'m|'ll|'d
            if c == '\'' && pos + 1 < end {
                let n = cpts[pos + 1];
                if matches!(n, 's' | 't' | 'm' | 'd') {
                    add(&mut out, pos + 2);
                    pos += 2;
                    continue;
                }
                if pos + 2 < end {
                    let nn = cpts[pos + 2];
                    if matches!((n, nn), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        add(&mut out, pos + 3);
                        pos += 3;
                        continue;
                    }
                }
            }

            let space = usize::from(c == ' ');
            let mut f2 = if c == ' ' { flags(pos + 1) } else { f };
            // ' ?\p{L}+'
            if f2.is_letter() {
                pos += space;
                while f2.is_letter() {
                    pos += 1;
                    f2 = flags(pos);
                }
                add(&mut out, pos);
                continue;
            }
            // ' ?\p{N}+'
            if f2.is_number() {
                pos += space;
                while f2.is_number() {
                    pos += 1;
                    f2 = flags(pos);
                }
                add(&mut out, pos);
                continue;
            }
            // ' ?[^\s\p{L}\p{N}]+'
            let other =
                |f: CptFlags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some();
            if other(f2) {
                pos += space;
                while other(f2) {
                    pos += 1;
                    f2 = flags(pos);
                }
                add(&mut out, pos);
                continue;
            }

            let mut spaces = 0;
            while flags(pos + spaces).is_whitespace() {
                spaces += 1;
            }
            // '\s+(?!\S)': leave the last space to prefix the next word
            if spaces > 1 && cpt(pos + spaces).is_some() {
                pos += spaces - 1;
                add(&mut out, pos);
                continue;
            }
            // '\s+'
            if spaces > 0 {
                pos += spaces;
                add(&mut out, pos);
                continue;
            }
            // no match: one code point alone
            pos += 1;
            add(&mut out, pos);
        }
    }
    out
}

/// llama.cpp's hand-written `unicode_regex_split_custom_llama3` / `_qwen2`, line for line.
fn split_llama3(cpts: &[char], words: &[Range<usize>], max_digits: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        let (ini, end) = (w.start, w.end);
        let cpt = |pos: usize| (ini <= pos && pos < end).then(|| cpts[pos]);
        let flags = |pos: usize| cpt(pos).map(CptFlags::of).unwrap_or_default();
        let is_cr_lf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
        let mut prev_end = ini;
        let mut add = |out: &mut Vec<Range<usize>>, to: usize| {
            if to > prev_end {
                out.push(prev_end..to);
            }
            prev_end = to;
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags(pos);

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == '\'' && pos + 1 < end {
                let n = cpts[pos + 1].to_ascii_lowercase();
                if matches!(n, 's' | 't' | 'm' | 'd') {
                    add(&mut out, pos + 2);
                    pos += 2;
                    continue;
                }
                if pos + 2 < end {
                    let nn = cpts[pos + 2].to_ascii_lowercase();
                    if matches!((n, nn), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        add(&mut out, pos + 3);
                        pos += 3;
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == '\r' || c == '\n' || f.is_number())
                && (f.is_letter() || flags(pos + 1).is_letter())
            {
                pos += 1;
                while flags(pos).is_letter() {
                    pos += 1;
                }
                add(&mut out, pos);
                continue;
            }

            // \p{N}{1,max_digits}
            if f.is_number() {
                let mut run = pos;
                while flags(pos).is_number() {
                    pos += 1;
                    if pos - run >= max_digits {
                        add(&mut out, pos);
                        run = pos;
                    }
                }
                add(&mut out, pos);
                continue;
            }

            // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (llama.cpp tests the first code point's flags for
            // being in range, the second's for the class)
            let mut f2 = if c == ' ' { flags(pos + 1) } else { f };
            let other =
                |f: CptFlags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some();
            if !(f2.is_whitespace() || f2.is_letter() || f2.is_number()) && f.is_some() {
                pos += usize::from(c == ' ');
                while other(f2) {
                    pos += 1;
                    f2 = flags(pos);
                }
                while is_cr_lf(cpt(pos)) {
                    pos += 1;
                }
                add(&mut out, pos);
                continue;
            }

            let mut spaces = 0;
            let mut last_cr_lf_end = 0;
            while flags(pos + spaces).is_whitespace() {
                if is_cr_lf(cpt(pos + spaces)) {
                    last_cr_lf_end = pos + spaces + 1;
                }
                spaces += 1;
            }
            // '\s*[\r\n]+'
            if last_cr_lf_end > 0 {
                pos = last_cr_lf_end;
                add(&mut out, pos);
                continue;
            }
            // '\s+(?!\S)'
            if spaces > 1 && cpt(pos + spaces).is_some() {
                pos += spaces - 1;
                add(&mut out, pos);
                continue;
            }
            // '\s+'
            if spaces > 0 {
                pos += spaces;
                add(&mut out, pos);
                continue;
            }
            // no match: one code point alone
            pos += 1;
            add(&mut out, pos);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str, splits: &[Split]) -> Vec<String> {
        let cpts: Vec<char> = text.chars().collect();
        split_words(splits, &cpts)
            .into_iter()
            .map(|r| cpts[r].iter().collect())
            .collect()
    }

    #[test]
    fn gpt2_split_matches_the_regex() {
        let w = words("Hello world's  big\t\n 123 !!x", &[Split::Gpt2]);
        assert_eq!(
            w,
            [
                "Hello", " world", "'s", " ", " big", "\t\n", " 123", " !!", "x"
            ]
        );
        assert_eq!(words("a   ", &[Split::Gpt2]), ["a", "   "]);
        assert_eq!(
            words("I'll DON'T", &[Split::Gpt2]),
            ["I", "'ll", " DON", "'", "T"]
        );
    }

    #[test]
    fn smollm_isolates_digits() {
        let w = words("x 2024, 3.14", &[Split::Digits, Split::Gpt2]);
        assert_eq!(
            w,
            ["x", " ", "2", "0", "2", "4", ",", " ", "3", ".", "1", "4"]
        );
    }

    #[test]
    fn llama3_and_qwen2_splits() {
        let llama3 = [Split::Llama3 { max_digits: 3 }];
        assert_eq!(
            words("I'LL pay 1234567 .x\n\n  y", &llama3),
            [
                "I", "'LL", " pay", " ", "123", "456", "7", " .", "x", "\n\n", " ", " y"
            ]
        );
        let qwen2 = [Split::Llama3 { max_digits: 1 }];
        assert_eq!(words("ab12;\r\n", &qwen2), ["ab", "1", "2", ";\r\n"]);
    }

    #[test]
    fn unsupported_pre_tokenizer() {
        let err = Bpe::new([], "deepseek-llm").expect_err("not implemented");
        assert!(matches!(err, Error::UnsupportedPreTokenizer { .. }));
        assert!(err.to_string().contains("smollm"));
    }
}
