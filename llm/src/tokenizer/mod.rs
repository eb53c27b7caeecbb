//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`), giving the same token ids as
//! llama.cpp for both vocabulary types of the default models:
//!
//! - byte-level BPE (`gpt2`, SmolLM2): `bpe.rs`;
//! - SentencePiece with scores (`llama`, Gemma): `spm.rs`.
//!
//! What both share lives here: the vocabulary with its token attributes, the special tokens,
//! splitting special/user-defined tokens out of the text before the model's algorithm runs
//! (llama.cpp's `tokenizer_st_partition`), and decoding ids back to text.
//!
//! Pure Rust without I/O, so it compiles for native, `wasm32-unknown-unknown` and
//! `wasm32-wasip2` alike.

mod bpe;
mod spm;
mod unicode;
mod unicode_table;

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use candle_core::quantized::gguf_file::Value;

use crate::error::{Error, Result};
use crate::gguf::{get_array, get_bool, get_str, get_u32, require_str, wrong_type};

/// A token id, an index into the vocabulary.
pub type TokenId = u32;

/// What kind of token an id is, from `tokenizer.ggml.token_type` (llama.cpp's token
/// attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenAttr(u16);

impl TokenAttr {
    pub const UNDEFINED: Self = Self(0);
    pub const UNKNOWN: Self = Self(1 << 0);
    pub const UNUSED: Self = Self(1 << 1);
    pub const NORMAL: Self = Self(1 << 2);
    pub const CONTROL: Self = Self(1 << 3);
    pub const USER_DEFINED: Self = Self(1 << 4);
    pub const BYTE: Self = Self(1 << 5);

    /// From a GGUF token type (0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte).
    pub fn from_gguf_type(t: i64) -> Self {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }

    /// Whether any of `other`'s bits are set.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for TokenAttr {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The token strings, scores and attributes, and the reverse map.
#[derive(Debug, Clone)]
pub struct Vocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<TokenAttr>,
    ids: HashMap<String, TokenId>,
}

impl Vocab {
    /// Builds a vocabulary. `scores` and `attrs` may be empty (all 0.0 / all normal, as
    /// llama.cpp assumes when the keys are absent); otherwise they must be at least as long as
    /// `tokens`.
    pub fn new(tokens: Vec<String>, scores: Vec<f32>, attrs: Vec<TokenAttr>) -> Result<Self> {
        let n = tokens.len();
        if TokenId::try_from(n).is_err() {
            return Err(Error::InvalidVocab {
                detail: format!("{n} tokens do not fit in 32-bit ids"),
            });
        }
        if !scores.is_empty() && scores.len() < n {
            return Err(Error::InvalidVocab {
                detail: format!("{} scores for {n} tokens", scores.len()),
            });
        }
        if !attrs.is_empty() && attrs.len() < n {
            return Err(Error::InvalidVocab {
                detail: format!("{} token types for {n} tokens", attrs.len()),
            });
        }
        let mut scores = scores;
        scores.resize(n, 0.0);
        scores.truncate(n);
        let mut attrs = attrs;
        attrs.resize(n, TokenAttr::NORMAL);
        attrs.truncate(n);
        let mut tokens = tokens;
        let mut ids = HashMap::with_capacity(n);
        for (i, tok) in tokens.iter_mut().enumerate() {
            if tok.is_empty() {
                // llama.cpp renames empty tokens the same way.
                *tok = format!("[EMPTY_{i}]");
            }
            let id = i as TokenId; // fits: checked above
            if let Some(prev) = ids.insert(tok.clone(), id) {
                return Err(Error::InvalidVocab {
                    detail: format!("token {tok:?} appears twice (ids {prev} and {id})"),
                });
            }
        }
        Ok(Self {
            tokens,
            scores,
            attrs,
            ids,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token's exact text.
    pub fn id(&self, text: &str) -> Option<TokenId> {
        self.ids.get(text).copied()
    }

    /// A token's text as stored in the vocabulary (escaped: `▁` or GPT-2 byte characters).
    pub fn text(&self, id: TokenId) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// A token's attributes.
    pub fn attr(&self, id: TokenId) -> Option<TokenAttr> {
        self.attrs.get(id as usize).copied()
    }

    fn score(&self, id: TokenId) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    fn check(&self, id: TokenId) -> Result<usize> {
        let i = id as usize;
        if i < self.tokens.len() {
            Ok(i)
        } else {
            Err(Error::TokenOutOfRange {
                id,
                vocab_size: self.tokens.len(),
            })
        }
    }
}

/// Which algorithm turns a raw-text fragment into ids.
#[derive(Debug, Clone)]
enum Model {
    Bpe(Box<bpe::Bpe>),
    Spm {
        /// `<0xXX>` byte tokens (or the byte as a one-character token), by byte value.
        byte_tokens: Box<[Option<TokenId>; 256]>,
    },
}

/// Ids of the special tokens, where the vocabulary has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<TokenId>,
    pub eos: Option<TokenId>,
    /// End of turn (`<|im_end|>`, `<end_of_turn>`, ...).
    pub eot: Option<TokenId>,
    pub eom: Option<TokenId>,
    pub unk: Option<TokenId>,
    pub sep: Option<TokenId>,
    pub pad: Option<TokenId>,
    pub mask: Option<TokenId>,
    /// Every token that ends generation (sorted).
    pub eog: Vec<TokenId>,
}

/// How [`Tokenizer::encode`] treats the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add the tokens the model wants around a sequence (BOS/EOS per
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token`).
    pub add_special: bool,
    /// Turn the text of control tokens (`<|im_start|>`, `<start_of_turn>`, ...) into those
    /// tokens. User-defined tokens are always recognised, as in llama.cpp.
    pub parse_special: bool,
}

impl EncodeOptions {
    /// A whole prompt rendered from a chat template: BOS if the model wants one, control
    /// tokens recognised. What `llama-tokenize` and `llama-server` do by default.
    pub const PROMPT: Self = Self {
        add_special: true,
        parse_special: true,
    };
    /// Untrusted text (a user's message, a continuation): nothing added, control-token text
    /// stays text, so a user cannot inject `<|im_end|>`.
    pub const TEXT: Self = Self {
        add_special: false,
        parse_special: false,
    };
}

/// How [`Tokenizer::decode`] renders ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Drop a leading BOS / trailing EOS that encoding would have added.
    pub remove_special: bool,
    /// Write control tokens as their text (`<|im_end|>`); otherwise they render as nothing.
    pub render_special: bool,
}

/// A tokenizer built from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    special: SpecialTokens,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    /// Control, user-defined and unknown tokens, longest text first (llama.cpp's
    /// `cache_special_tokens`).
    special_cache: Vec<TokenId>,
    /// Finds which of `special_cache` occur in a text (pattern i = special_cache[i]).
    special_finder: Option<AhoCorasick>,
}

/// Token texts llama.cpp treats as end-of-turn when the metadata names none.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Token texts llama.cpp treats as end-of-generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
const TOKENIZER_HINT: &str = "the GGUF carries no tokenizer; convert the model with llama.cpp's convert_hf_to_gguf.py, which embeds it";

/// The parts of a text after special tokens are split out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fragment<'a> {
    Text(Cow<'a, str>),
    Token(TokenId),
}

/// Which special tokens [`Tokenizer::partition`] splits out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Control, unknown and user-defined tokens (`parse_special`).
    Special,
    /// User-defined tokens only (always recognised).
    UserDefined,
    /// Control and unknown tokens only.
    Control,
}

/// One part of a prompt for [`Tokenizer::encode_segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub text: &'a str,
    /// Template scaffolding whose control-token text (`<|im_start|>`) is meant as control
    /// tokens. Message contents are untrusted: `false`.
    pub trusted: bool,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata (the `tokenizer.ggml.*` keys).
    pub fn from_gguf_metadata(meta: &HashMap<String, Value>) -> Result<Self> {
        let model_name = require_str(meta, "tokenizer.ggml.model", TOKENIZER_HINT)?;
        let pre = get_str(meta, "tokenizer.ggml.pre")?.unwrap_or("");

        let tokens = get_array(meta, TOKENS_KEY)?.ok_or_else(|| Error::MissingMetadata {
            key: TOKENS_KEY.into(),
            hint: TOKENIZER_HINT,
        })?;
        let tokens = tokens
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(TOKENS_KEY, "an array of strings", other)),
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = match get_array(meta, "tokenizer.ggml.scores")? {
            None => Vec::new(),
            Some(a) => a
                .iter()
                .map(|v| match *v {
                    Value::F32(x) => Ok(x),
                    Value::I32(x) => Ok(x as f32),
                    ref other => Err(wrong_type("tokenizer.ggml.scores", "f32 or i32", other)),
                })
                .collect::<Result<_>>()?,
        };
        let attrs = match get_array(meta, "tokenizer.ggml.token_type")? {
            None => Vec::new(),
            Some(a) => a
                .iter()
                .map(|v| match *v {
                    Value::I32(t) => Ok(TokenAttr::from_gguf_type(t.into())),
                    ref other => Err(wrong_type("tokenizer.ggml.token_type", "i32", other)),
                })
                .collect::<Result<_>>()?,
        };
        let vocab = Vocab::new(tokens, scores, attrs)?;

        let mut cfg = match model_name {
            "gpt2" => {
                let merges = get_array(meta, "tokenizer.ggml.merges")?.ok_or_else(|| {
                    Error::MissingMetadata {
                        key: "tokenizer.ggml.merges".into(),
                        hint: "a gpt2 (byte-level BPE) vocabulary needs its merges; convert the model again",
                    }
                })?;
                let merges = merges
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.as_str()),
                        other => Err(wrong_type(
                            "tokenizer.ggml.merges",
                            "an array of strings",
                            other,
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let (bpe, pre) = bpe::Bpe::new(merges, pre)?;
                Config {
                    model: Model::Bpe(Box::new(bpe)),
                    special: SpecialTokens {
                        bos: Some(11),
                        eos: Some(11),
                        ..SpecialTokens::default()
                    },
                    add_bos: pre.add_bos,
                    add_eos: false,
                    add_space_prefix: false,
                    clean_spaces: pre.clean_spaces,
                }
            }
            "llama" => Config {
                model: Model::Spm {
                    byte_tokens: Box::new(std::array::from_fn(|b| {
                        let b = b as u8; // b < 256
                        vocab
                            .id(&format!("<0x{b:02X}>"))
                            .or_else(|| vocab.id(std::str::from_utf8(&[b]).ok()?))
                    })),
                },
                special: SpecialTokens {
                    bos: Some(1),
                    eos: Some(2),
                    unk: Some(0),
                    ..SpecialTokens::default()
                },
                add_bos: true,
                add_eos: false,
                add_space_prefix: true,
                clean_spaces: false,
            },
            other => {
                return Err(Error::UnsupportedTokenizer {
                    model: other.to_string(),
                });
            }
        };
        if let Some(v) = get_bool(meta, "tokenizer.ggml.add_space_prefix")? {
            cfg.add_space_prefix = v;
        }
        if matches!(cfg.model, Model::Bpe(_)) {
            cfg.add_space_prefix = false;
        }
        if let Some(v) = get_bool(meta, "tokenizer.ggml.add_bos_token")? {
            cfg.add_bos = v;
        }
        if let Some(v) = get_bool(meta, "tokenizer.ggml.add_eos_token")? {
            cfg.add_eos = v;
        }
        Self::assemble(vocab, cfg, meta)
    }

    fn assemble(mut vocab: Vocab, cfg: Config, meta: &HashMap<String, Value>) -> Result<Self> {
        let n = vocab.len();
        let in_range = |id: Option<TokenId>| id.filter(|&i| (i as usize) < n);
        let mut special = cfg.special;
        // Defaults out of range are dropped; ids from the metadata must be in range.
        special.bos = in_range(special.bos);
        special.eos = in_range(special.eos);
        special.unk = in_range(special.unk);
        for (key, slot) in [
            ("tokenizer.ggml.bos_token_id", &mut special.bos),
            ("tokenizer.ggml.eos_token_id", &mut special.eos),
            ("tokenizer.ggml.eot_token_id", &mut special.eot),
            ("tokenizer.ggml.eom_token_id", &mut special.eom),
            ("tokenizer.ggml.unknown_token_id", &mut special.unk),
            ("tokenizer.ggml.seperator_token_id", &mut special.sep),
            ("tokenizer.ggml.padding_token_id", &mut special.pad),
            ("tokenizer.ggml.mask_token_id", &mut special.mask),
        ] {
            if let Some(id) = get_u32(meta, key)? {
                // llama.cpp keeps the default when the file's id is out of range.
                if (id as usize) < n {
                    *slot = Some(id);
                }
            }
        }

        // End of turn by text when the metadata names none, and end of generation by text;
        // tokens found by text become control tokens, as in llama.cpp (which also turns
        // Gemma's user-defined `</s>` into a control token this way). For the end of turn
        // llama.cpp takes the first match of a hash-map walk; we take the first text of
        // EOT_TEXTS present, so ChatML vocabularies get `<|im_end|>`, not `<|endoftext|>`.
        let mut by_text: Vec<TokenId> = EOG_TEXTS.iter().filter_map(|t| vocab.id(t)).collect();
        if special.eot.is_none() {
            special.eot = EOT_TEXTS.iter().find_map(|t| vocab.id(t));
            by_text.extend(special.eot);
        }
        for &id in &by_text {
            let a = &mut vocab.attrs[id as usize];
            *a = *a | TokenAttr::CONTROL;
        }
        let mut eog = by_text;
        eog.extend(
            [special.eos, special.eot, special.eom]
                .into_iter()
                .flatten(),
        );
        eog.sort_unstable();
        eog.dedup();
        // Control tokens named "unused" are unused.
        for (text, attr) in vocab.tokens.iter().zip(vocab.attrs.iter_mut()) {
            if attr.intersects(TokenAttr::CONTROL) && text.contains("unused") {
                *attr = *attr | TokenAttr::UNUSED;
            }
        }
        special.eog = eog;

        if cfg.add_bos && special.bos.is_none() {
            return Err(Error::InvalidVocab {
                detail: "tokenizer.ggml.add_bos_token is true but the vocabulary has no BOS token"
                    .into(),
            });
        }
        if cfg.add_eos && special.eos.is_none() {
            return Err(Error::InvalidVocab {
                detail: "tokenizer.ggml.add_eos_token is true but the vocabulary has no EOS token"
                    .into(),
            });
        }

        let mut special_cache: Vec<TokenId> = (0..n as TokenId)
            .filter(|&id| {
                vocab.attrs[id as usize]
                    .intersects(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
            })
            .collect();
        // Longest first. llama.cpp's sort is not stable; ties only matter for equal-length
        // tokens that overlap in one text, which no real vocabulary has.
        special_cache.sort_by_key(|&id| std::cmp::Reverse(vocab.tokens[id as usize].len()));
        let special_finder = if special_cache.is_empty() {
            None
        } else {
            let patterns = special_cache.iter().map(|&id| &vocab.tokens[id as usize]);
            Some(AhoCorasick::new(patterns).map_err(|e| Error::InvalidVocab {
                detail: format!("cannot index the special tokens: {e}"),
            })?)
        };

        Ok(Self {
            vocab,
            model: cfg.model,
            special,
            add_bos: cfg.add_bos,
            add_eos: cfg.add_eos,
            add_space_prefix: cfg.add_space_prefix,
            clean_spaces: cfg.clean_spaces,
            special_cache,
            special_finder,
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The special token ids.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Whether `id` ends generation (EOS, end of turn, ...).
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.special.eog.binary_search(&id).is_ok()
    }

    /// Whether encoding with `add_special` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Text to token ids, exactly as llama.cpp's `llama_tokenize`.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<TokenId> {
        let which = if opts.parse_special {
            Split::Special
        } else {
            Split::UserDefined
        };
        let fragments = self.partition(Fragment::Text(text.into()), which);
        self.encode_fragments(fragments, opts.add_special)
    }

    /// Encodes a prompt assembled from trusted parts (template scaffolding, whose control-token
    /// text becomes control tokens) and untrusted parts (message contents, whose control-token
    /// text stays text). Otherwise the same ids as encoding the concatenation with
    /// [`EncodeOptions::PROMPT`]; `add_special` adds BOS/EOS as the model wants.
    pub fn encode_segments(&self, segments: &[Segment<'_>], add_special: bool) -> Vec<TokenId> {
        // 1. Control tokens out of trusted parts only; adjacent text joined, so the model's
        //    algorithm sees the same text runs as for the concatenated prompt.
        let mut joined: Vec<Fragment<'_>> = Vec::new();
        for seg in segments {
            let frags = if seg.trusted {
                self.partition(Fragment::Text(seg.text.into()), Split::Control)
            } else if seg.text.is_empty() {
                Vec::new()
            } else {
                vec![Fragment::Text(seg.text.into())]
            };
            for frag in frags {
                match (joined.last_mut(), frag) {
                    (Some(Fragment::Text(prev)), Fragment::Text(t)) => prev.to_mut().push_str(&t),
                    (_, frag) => joined.push(frag),
                }
            }
        }
        // 2. User-defined tokens everywhere, as encoding always does.
        let mut fragments = Vec::with_capacity(joined.len());
        for f in joined {
            fragments.extend(self.partition(f, Split::UserDefined));
        }
        self.encode_fragments(fragments, add_special)
    }

    fn encode_fragments(&self, fragments: Vec<Fragment<'_>>, add_special: bool) -> Vec<TokenId> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.special.bos);
        }
        match &self.model {
            Model::Spm { byte_tokens } => {
                let mut prev_special = true; // the first fragment gets the space prefix
                let mut buf = String::new();
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in t.chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::tokenize(
                                &self.vocab,
                                byte_tokens,
                                self.special.unk,
                                &buf,
                                &mut out,
                            );
                            prev_special = false;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => bpe.tokenize(&self.vocab, &t, &mut out),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        out
    }

    /// Splits special tokens out of a text fragment, longest token first, each at its
    /// non-overlapping occurrences from the left (llama.cpp's `tokenizer_st_partition`).
    /// `which` picks the tokens: llama.cpp's `parse_special` is [`Split::Special`], without it
    /// only user-defined tokens split.
    fn partition<'a>(&self, fragment: Fragment<'a>, which: Split) -> Vec<Fragment<'a>> {
        let text = match fragment {
            Fragment::Text(t) if !t.is_empty() => t,
            Fragment::Text(_) => return Vec::new(),
            token => return vec![token],
        };
        let Some(finder) = &self.special_finder else {
            return vec![Fragment::Text(text)];
        };
        // Fragments are substrings of `text`, so only tokens occurring in `text` can split.
        let mut present = vec![false; self.special_cache.len()];
        for m in finder.find_overlapping_iter(text.as_ref()) {
            present[m.pattern().as_usize()] = true;
        }
        // Work on byte ranges of `text`; build the fragments at the end.
        let mut frags: Vec<Result<std::ops::Range<usize>, TokenId>> = vec![Ok(0..text.len())];
        for (i, &id) in self.special_cache.iter().enumerate() {
            if !present[i] {
                continue;
            }
            let attr = self.vocab.attrs[id as usize];
            let control = attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN);
            let wanted = match which {
                Split::Special => true,
                Split::UserDefined => !control,
                Split::Control => control,
            };
            if !wanted {
                continue;
            }
            let tok = self.vocab.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for frag in frags {
                let Ok(range) = frag else {
                    next.push(frag);
                    continue;
                };
                let mut last = range.start;
                for (at, _) in text[range.clone()].match_indices(tok) {
                    let at = range.start + at;
                    if at > last {
                        next.push(Ok(last..at));
                    }
                    next.push(Err(id));
                    last = at + tok.len();
                }
                if last < range.end {
                    next.push(Ok(last..range.end));
                }
            }
            frags = next;
        }
        frags
            .into_iter()
            .map(|f| match f {
                Ok(r) => Fragment::Text(match &text {
                    Cow::Borrowed(t) => Cow::Borrowed(&t[r]),
                    Cow::Owned(t) => Cow::Owned(t[r].to_string()),
                }),
                Err(id) => Fragment::Token(id),
            })
            .collect()
    }

    /// The bytes one token stands for (llama.cpp's `token_to_piece` without stripping).
    /// Control and unknown tokens give nothing unless `render_special`. Pieces of one
    /// character can be split across tokens, so a stream must join bytes before decoding UTF-8.
    pub fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let i = self.vocab.check(id)?;
        let attr = self.vocab.attrs[i];
        let text = self.vocab.tokens[i].as_str();
        let special = TokenAttr::UNKNOWN | TokenAttr::CONTROL;
        if attr.intersects(special) && !render_special {
            return Ok(Cow::Borrowed(&[]));
        }
        if attr.intersects(special | TokenAttr::USER_DEFINED) {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        if attr.intersects(TokenAttr::NORMAL) {
            return Ok(match &self.model {
                Model::Spm { .. } => {
                    if text.contains('\u{2581}') {
                        Cow::Owned(text.replace('\u{2581}', " ").into_bytes())
                    } else {
                        Cow::Borrowed(text.as_bytes())
                    }
                }
                Model::Bpe(bpe) => {
                    let mut out = Vec::with_capacity(text.len());
                    bpe.decode_token(text, &mut out);
                    Cow::Owned(out)
                }
            });
        }
        if attr.intersects(TokenAttr::BYTE) {
            return Ok(Cow::Owned(parse_byte_token(text).into_iter().collect()));
        }
        Ok(Cow::Borrowed(&[]))
    }

    /// Ids to bytes, as llama.cpp's `llama_detokenize`.
    pub fn decode_bytes(&self, ids: &[TokenId], opts: DecodeOptions) -> Result<Vec<u8>> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if opts.remove_special
            && self.add_bos
            && self.special.bos.is_some()
            && ids.first() == self.special.bos.as_ref()
        {
            remove_space = false;
            ids = &ids[1..];
        }
        if opts.remove_special
            && self.add_eos
            && self.special.eos.is_some()
            && ids.last() == self.special.eos.as_ref()
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let piece = self.token_bytes(id, opts.render_special)?;
            let piece: &[u8] = &piece;
            // The space prefix added at encoding comes off the first token again.
            let piece = match (remove_space, piece.first()) {
                (true, Some(b' ')) => &piece[1..],
                _ => piece,
            };
            remove_space = false;
            out.extend_from_slice(piece);
        }
        if self.clean_spaces {
            clean_up_spaces(&mut out);
        }
        Ok(out)
    }

    /// Ids to text. Byte sequences that are not UTF-8 (e.g. a cut-off multi-byte character)
    /// become U+FFFD.
    pub fn decode(&self, ids: &[TokenId], opts: DecodeOptions) -> Result<String> {
        let bytes = self.decode_bytes(ids, opts)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}

/// What differs between vocabulary types before assembly.
struct Config {
    model: Model,
    special: SpecialTokens,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

/// `<0xAB>` -> 0xAB.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// llama.cpp's `clean_up_tokenization_spaces` passes (for BPE vocabularies that ask for it),
/// ported in place as written there.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ,"  ->  "?", "!", ".", ","
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    // " ' "  ->  "'"
    let n = total;
    total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    // " 's", " 'm", " 're", " 've"  ->  "'s", ...
    let n = total;
    total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if !matches!(x1, b't' | b'd') && i + 2 < n {
                let x2 = text[i + 2];
                if matches!((x1, x2), (b'r', b'e') | (b'v', b'e')) {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
pub(crate) mod tests;
