//! SentencePiece with scores (`tokenizer.ggml.model = llama`), as llama.cpp's
//! `llm_tokenizer_spm_session` does it: start from single characters, repeatedly merge the
//! adjacent pair whose concatenation is the vocabulary piece with the highest score (leftmost
//! first on ties), and spell pieces that are not in the vocabulary as `<0xXX>` byte tokens.
//!
//! The caller has already replaced spaces by U+2581 and added the optional space prefix.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{TokenId, Vocab};

/// Appends the tokens of `text` (one escaped raw-text fragment). Bytes without a byte token
/// become `unk` (llama.cpp throws there), or nothing without one.
pub(crate) fn tokenize(
    vocab: &Vocab,
    byte_tokens: &[Option<TokenId>; 256],
    unk: Option<TokenId>,
    text: &str,
    out: &mut Vec<TokenId>,
) {
    let mut syms: Vec<Symbol> = text
        .char_indices()
        .map(|(start, c)| Symbol {
            start,
            len: c.len_utf8(),
            prev: None,
            next: None,
        })
        .collect();
    for i in 0..syms.len() {
        syms[i].prev = i.checked_sub(1);
        syms[i].next = (i + 1 < syms.len()).then_some(i + 1);
    }

    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Bigram>, syms: &[Symbol], left: usize| {
        let Some(right) = syms[left].next else { return };
        let (l, r) = (&syms[left], &syms[right]);
        let len = l.len + r.len;
        if let Some(id) = vocab.id(&text[l.start..l.start + len]) {
            heap.push(Bigram {
                score: vocab.score(id),
                left,
                right,
                len,
            });
        }
    };
    for i in 0..syms.len().saturating_sub(1) {
        push(&mut heap, &syms, i);
    }

    while let Some(b) = heap.pop() {
        let (l, r) = (&syms[b.left], &syms[b.right]);
        // Stale entry: one side was merged away or grew since it was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
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
            push(&mut heap, &syms, p);
        }
        push(&mut heap, &syms, b.left);
    }

    // Every merged piece is in the vocabulary by construction, so llama.cpp's `rev_merge`
    // re-segmentation never applies: a piece is either a token or a single character that
    // is spelt as bytes.
    let mut i = (!syms.is_empty()).then_some(0);
    while let Some(idx) = i {
        let s = &syms[idx];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(
                piece
                    .bytes()
                    .filter_map(|b| byte_tokens[usize::from(b)].or(unk)),
            ),
        }
        i = s.next;
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge; the heap pops the highest score first, then the leftmost.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.len.cmp(&self.len))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
