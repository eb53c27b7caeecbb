//! Quality metrics: corpus BLEU and chrF computed exactly like sacreBLEU 2.x's defaults
//! (`BLEU()`: tokenizer `13a`, `exp` smoothing, 4-grams, brevity penalty; `CHRF()`: character
//! n-grams up to 6, no word n-grams, β = 2, whitespace removed), accuracy, and GSM8K exact match.
//!
//! The arithmetic follows sacreBLEU's Python operation by operation (same order of additions,
//! multiplications and divisions, the same `exp`/`log` from the C library), so the scores are
//! the same floating-point numbers; `tests/sacrebleu.rs` checks this against a fixture written by
//! the real package (`scripts/sacrebleu_fixture.py`).

use std::collections::HashMap;

/// Python's `str.isspace()` for one character (what `str.split()` splits on): Rust's
/// `char::is_whitespace` plus the four ASCII separators U+001C..U+001F.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` (no argument).
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_isspace).filter(|t| !t.is_empty())
}

/// Applies a two-character rewrite left to right without overlaps, as `re.sub` does for a
/// pattern of two single-character groups.
fn sub_pair(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    emit: impl Fn(&mut Vec<char>, char, char),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            emit(&mut out, chars[i], chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// The character class `[\{-\~\[-\` -\&\(-\+\:-\@\/]` of sacreBLEU's regexp tokenizer.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// sacreBLEU's `13a` tokenizer (mteval-v13a), applied to one line.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let padded: Vec<char> = format!(" {line} ").chars().collect();
    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
    let mut step = Vec::with_capacity(padded.len() * 2);
    for c in padded {
        if is_13a_symbol(c) {
            step.extend([' ', c, ' ']);
        } else {
            step.push(c);
        }
    }
    // ([^0-9])([\.,]) -> "\1 \2 "
    let step = sub_pair(
        &step,
        |a| !is_digit(a),
        |b| b == '.' || b == ',',
        |out, a, b| out.extend([a, ' ', b, ' ']),
    );
    // ([\.,])([^0-9]) -> " \1 \2"
    let step = sub_pair(
        &step,
        |a| a == '.' || a == ',',
        |b| !is_digit(b),
        |out, a, b| out.extend([' ', a, ' ', b]),
    );
    // ([0-9])(-) -> "\1 \2 "
    let step = sub_pair(
        &step,
        is_digit,
        |b| b == '-',
        |out, a, b| out.extend([a, ' ', b, ' ']),
    );
    let s: String = step.into_iter().collect();
    py_split(&s).collect::<Vec<_>>().join(" ")
}

pub const BLEU_MAX_ORDER: usize = 4;

/// Sufficient statistics of BLEU for one segment or a whole corpus (summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub hyp_len: u64,
    pub ref_len: u64,
    pub correct: [u64; BLEU_MAX_ORDER],
    pub total: [u64; BLEU_MAX_ORDER],
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: Self) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..BLEU_MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// A BLEU score with its parts (as sacreBLEU's `BLEUScore`).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// In BLEU points (0–100).
    pub score: f64,
    pub precisions: [f64; BLEU_MAX_ORDER],
    pub bp: f64,
    pub stats: BleuStats,
}

fn word_ngrams(tokens: &[&str]) -> HashMap<Vec<String>, u64> {
    let mut counts: HashMap<Vec<String>, u64> = HashMap::new();
    for n in 1..=BLEU_MAX_ORDER {
        for w in tokens.windows(n) {
            *counts
                .entry(w.iter().map(|s| s.to_string()).collect())
                .or_default() += 1;
        }
    }
    counts
}

/// Python's `str.rstrip()`.
fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_isspace)
}

/// BLEU statistics of one hypothesis against its references (sacreBLEU: tokenised with `13a`
/// after `rstrip`, reference n-gram counts merged by maximum, the closest reference length with
/// ties to the shorter).
pub fn bleu_segment_stats<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> BleuStats {
    let hyp = tokenize_13a(py_rstrip(hypothesis));
    let hyp_tokens: Vec<&str> = py_split(&hyp).collect();
    let mut ref_counts: HashMap<Vec<String>, u64> = HashMap::new();
    let mut ref_lens = Vec::new();
    for r in references {
        let r = tokenize_13a(py_rstrip(r.as_ref()));
        let tokens: Vec<&str> = py_split(&r).collect();
        ref_lens.push(tokens.len() as u64);
        for (ngram, count) in word_ngrams(&tokens) {
            let e = ref_counts.entry(ngram).or_default();
            *e = (*e).max(count);
        }
    }
    let hyp_len = hyp_tokens.len() as u64;
    // Closest reference length, ties to the shorter (sacreBLEU's `_get_closest_ref_len`).
    let mut closest: Option<(u64, u64)> = None;
    for &len in &ref_lens {
        let diff = hyp_len.abs_diff(len);
        closest = match closest {
            None => Some((diff, len)),
            Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
            keep => keep,
        };
    }
    let mut stats = BleuStats {
        hyp_len,
        ref_len: closest.map_or(0, |(_, l)| l),
        ..Default::default()
    };
    for (ngram, count) in word_ngrams(&hyp_tokens) {
        let n = ngram.len() - 1;
        stats.total[n] += count;
        if let Some(&r) = ref_counts.get(&ngram) {
            stats.correct[n] += count.min(r);
        }
    }
    stats
}

/// sacreBLEU's `my_log`: `log(x)`, or -9999999999 for 0.
fn my_log(x: f64) -> f64 {
    if x == 0.0 { -9_999_999_999.0 } else { x.ln() }
}

/// sacreBLEU's `BLEU.compute_bleu` with `exp` smoothing.
pub fn bleu_from_stats(stats: &BleuStats, effective_order: bool) -> BleuScore {
    let (sys_len, ref_len) = (stats.hyp_len, stats.ref_len);
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; BLEU_MAX_ORDER];
    if stats.correct.iter().all(|&c| c == 0) {
        return BleuScore {
            score: 0.0,
            precisions,
            bp,
            stats: *stats,
        };
    }
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = BLEU_MAX_ORDER;
    for (n, precision) in precisions.iter_mut().enumerate() {
        let (correct, total) = (stats.correct[n], stats.total[n]);
        if total == 0 {
            break;
        }
        if effective_order {
            eff_order = n + 1;
        }
        if correct == 0 {
            smooth_mteval *= 2.0;
            *precision = 100.0 / (smooth_mteval * total as f64);
        } else {
            *precision = 100.0 * correct as f64 / total as f64;
        }
    }
    let log_sum = precisions[..eff_order]
        .iter()
        .fold(0.0, |acc, &p| acc + my_log(p));
    let score = bp * (log_sum / eff_order as f64).exp();
    BleuScore {
        score,
        precisions,
        bp,
        stats: *stats,
    }
}

/// Corpus BLEU (sacreBLEU `corpus_bleu(hyps, [refs])` with defaults). `references[i]` holds the
/// references of hypothesis `i` (one or more).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
) -> BleuScore {
    let mut stats = BleuStats::default();
    for (h, r) in hypotheses.iter().zip(references) {
        stats += bleu_segment_stats(h.as_ref(), r);
    }
    bleu_from_stats(&stats, false)
}

/// Sentence BLEU (sacreBLEU `sentence_bleu(hyp, refs)`, which uses the effective order).
pub fn sentence_bleu<R: AsRef<str>>(hypothesis: &str, references: &[R]) -> BleuScore {
    bleu_from_stats(&bleu_segment_stats(hypothesis, references), true)
}

pub const CHRF_CHAR_ORDER: usize = 6;
pub const CHRF_BETA: u32 = 2;

/// chrF statistics: `[hyp, ref, match]` counts per character n-gram order 1..=6.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChrfStats(pub [[u64; 3]; CHRF_CHAR_ORDER]);

impl std::ops::AddAssign for ChrfStats {
    fn add_assign(&mut self, o: Self) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

fn char_ngram_counts(chars: &[char]) -> Vec<HashMap<&[char], u64>> {
    (1..=CHRF_CHAR_ORDER)
        .map(|n| {
            let mut m: HashMap<&[char], u64> = HashMap::new();
            for w in chars.windows(n) {
                *m.entry(w).or_default() += 1;
            }
            m
        })
        .collect()
}

fn strip_whitespace(s: &str) -> Vec<char> {
    s.chars().filter(|&c| !py_isspace(c)).collect()
}

/// sacreBLEU's `CHRF._compute_f_score` with the default effective-order averaging.
pub fn chrf_from_stats(stats: &ChrfStats) -> f64 {
    let eps = 1e-16;
    let factor = f64::from(CHRF_BETA.pow(2));
    let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
    let mut effective_order = 0u32;
    for &[n_hyp, n_ref, n_match] in &stats.0 {
        let prec = if n_hyp > 0 {
            n_match as f64 / n_hyp as f64
        } else {
            eps
        };
        let rec = if n_ref > 0 {
            n_match as f64 / n_ref as f64
        } else {
            eps
        };
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += prec;
            avg_rec += rec;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        avg_prec = 0.0;
        avg_rec = 0.0;
    } else {
        avg_prec /= f64::from(effective_order);
        avg_rec /= f64::from(effective_order);
    }
    if avg_prec + avg_rec != 0.0 {
        let mut score = (1.0 + factor) * avg_prec * avg_rec;
        score /= (factor * avg_prec) + avg_rec;
        100.0 * score
    } else {
        0.0
    }
}

/// chrF statistics of one hypothesis; with several references, those of the reference with the
/// best sentence chrF (the first on ties), as sacreBLEU does.
pub fn chrf_segment_stats<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> ChrfStats {
    let hyp_chars = strip_whitespace(hypothesis);
    let hyp = char_ngram_counts(&hyp_chars);
    let mut best = ChrfStats::default();
    let mut best_f = -1.0;
    for r in references {
        let ref_chars = strip_whitespace(r.as_ref());
        let refs = char_ngram_counts(&ref_chars);
        let mut stats = ChrfStats::default();
        for (n, (h, r)) in hyp.iter().zip(&refs).enumerate() {
            let mut hyp_count = 0;
            let mut matches = 0;
            for (ng, &c) in h {
                hyp_count += c;
                if let Some(&rc) = r.get(ng) {
                    matches += c.min(rc);
                }
            }
            stats.0[n] = [
                if r.is_empty() { 0 } else { hyp_count },
                r.values().sum(),
                matches,
            ];
        }
        let f = chrf_from_stats(&stats);
        if f > best_f {
            best_f = f;
            best = stats;
        }
    }
    best
}

/// Corpus chrF (sacreBLEU `corpus_chrf(hyps, [refs])` with defaults), in points (0–100).
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> f64 {
    let mut stats = ChrfStats::default();
    for (h, r) in hypotheses.iter().zip(references) {
        stats += chrf_segment_stats(h.as_ref(), r);
    }
    chrf_from_stats(&stats)
}

/// Sentence chrF.
pub fn sentence_chrf<R: AsRef<str>>(hypothesis: &str, references: &[R]) -> f64 {
    chrf_from_stats(&chrf_segment_stats(hypothesis, references))
}

/// Percent of `true` values; `None` for an empty input.
pub fn percent(hits: usize, n: usize) -> Option<f64> {
    (n > 0).then(|| 100.0 * hits as f64 / n as f64)
}

/// The final number of a generated GSM8K answer: the text after the last `####` if there is
/// one, otherwise the last number in the text (`1,234`, `-3.5`, `$18` all count).
pub fn final_number(text: &str) -> Option<f64> {
    if let Some((_, after)) = text.rsplit_once("####")
        && let Some(x) = numbers(after).into_iter().next()
    {
        return Some(x);
    }
    numbers(text).into_iter().last()
}

fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let neg = chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if neg || chars[i].is_ascii_digit() {
            i += usize::from(neg);
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            while i < chars.len() {
                let c = chars[i];
                let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if c.is_ascii_digit() {
                    s.push(c);
                } else if c == ',' && next_digit {
                    // thousands separator
                } else if c == '.' && next_digit {
                    s.push(c);
                } else {
                    break;
                }
                i += 1;
            }
            if let Ok(x) = s.parse::<f64>() {
                out.push(x);
            }
            if i == start {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// GSM8K exact match: the prediction's final number equals the gold number.
pub fn gsm8k_match(prediction: &str, gold: &str) -> bool {
    match (
        final_number(prediction),
        crate::datasets::parse_number(gold),
    ) {
        (Some(p), Some(g)) => (p - g).abs() <= 1e-9 * g.abs().max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_examples() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(
            tokenize_13a("It costs $3.50, ok?"),
            "It costs $ 3.50 , ok ?"
        );
        assert_eq!(tokenize_13a("1990-2000"), "1990 - 2000");
        assert_eq!(tokenize_13a("a &amp; b &quot;c&quot;"), "a & b \" c \"");
        assert_eq!(tokenize_13a("well-known"), "well-known");
        assert_eq!(tokenize_13a(""), "");
    }

    #[test]
    fn bleu_of_an_exact_match_is_100() {
        let s = corpus_bleu(
            &["The cat sat on the mat."],
            &[vec!["The cat sat on the mat."]],
        );
        assert!((s.score - 100.0).abs() < 1e-9, "{}", s.score);
        assert_eq!(corpus_chrf(&["abc def"], &[vec!["abc def"]]), 100.0);
        assert_eq!(corpus_bleu(&[""], &[vec!["x y z"]]).score, 0.0);
    }

    #[test]
    fn gsm8k_numbers() {
        assert!(gsm8k_match(
            "so she makes 9 * 2 = 18 dollars.\n#### 18",
            "18"
        ));
        assert!(gsm8k_match("The answer is 2,125.", "2125"));
        assert!(gsm8k_match("It is -3.", "-3"));
        assert!(!gsm8k_match("The answer is 17.", "18"));
        assert!(!gsm8k_match("no idea", "18"));
        assert_eq!(final_number("1.5 then 2"), Some(2.0));
    }
}
