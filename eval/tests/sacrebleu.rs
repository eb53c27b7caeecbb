//! BLEU and chrF against scores written by the real sacreBLEU package
//! (`scripts/sacrebleu_fixture.py`, sacrebleu 2.6.0, default settings).

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::metrics::{
    bleu_segment_stats, corpus_bleu, corpus_chrf, sentence_bleu, sentence_chrf, tokenize_13a,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sacrebleu.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Agreement to 1e-9 BLEU points; in practice the numbers are bit-identical, which is checked too
/// and reported, so a platform `exp`/`log` difference shows as a count rather than a failure.
fn close(what: &str, ours: f64, theirs: f64, exact: &mut (usize, usize)) {
    assert!(
        (ours - theirs).abs() <= 1e-9,
        "{what}: ours {ours:?} vs sacreBLEU {theirs:?}"
    );
    exact.1 += 1;
    if ours.to_bits() == theirs.to_bits() {
        exact.0 += 1;
    }
}

#[test]
fn tokenizer_13a_matches_sacrebleu() {
    let f = fixture();
    let cases = f["tokenizer_13a"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let expected = case["output"].as_str().unwrap();
        // The fixture tokenises `input.rstrip()`, as sacreBLEU's BLEU does.
        let ours = tokenize_13a(input.trim_end_matches(eval::metrics::py_isspace));
        assert_eq!(ours, expected, "input {input:?}");
    }
}

#[test]
fn bleu_and_chrf_match_sacrebleu() {
    let f = fixture();
    assert_eq!(f["sacrebleu_version"], "2.6.0");
    let sets = f["sets"].as_array().unwrap();
    assert!(sets.len() >= 20, "{} sets", sets.len());
    let mut exact = (0, 0);
    let mut segments = 0;
    for set in sets {
        let name = set["name"].as_str().unwrap();
        let hyps = strings(&set["hypotheses"]);
        let refs: Vec<Vec<String>> = strings(&set["references"])
            .into_iter()
            .map(|r| vec![r])
            .collect();
        segments += hyps.len();
        let bleu = corpus_bleu(&hyps, &refs);
        let counts: Vec<u64> = floats(&set["corpus_bleu_counts"])
            .iter()
            .map(|&x| x as u64)
            .collect();
        let totals: Vec<u64> = floats(&set["corpus_bleu_totals"])
            .iter()
            .map(|&x| x as u64)
            .collect();
        assert_eq!(bleu.stats.correct.to_vec(), counts, "{name}: counts");
        assert_eq!(bleu.stats.total.to_vec(), totals, "{name}: totals");
        assert_eq!(
            bleu.stats.hyp_len,
            set["corpus_bleu_sys_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            bleu.stats.ref_len,
            set["corpus_bleu_ref_len"].as_u64().unwrap(),
            "{name}"
        );
        close(
            &format!("{name}: corpus BLEU"),
            bleu.score,
            set["corpus_bleu"].as_f64().unwrap(),
            &mut exact,
        );
        close(
            &format!("{name}: compat corpus BLEU"),
            bleu.score,
            set["compat_corpus_bleu"].as_f64().unwrap(),
            &mut exact,
        );
        close(
            &format!("{name}: corpus chrF"),
            corpus_chrf(&hyps, &refs),
            set["corpus_chrf"].as_f64().unwrap(),
            &mut exact,
        );
        let sb = floats(&set["sentence_bleu"]);
        let sc = floats(&set["sentence_chrf"]);
        let compat = floats(&set["compat_sentence_bleu"]);
        for (i, (h, r)) in hyps.iter().zip(&refs).enumerate() {
            let ours = sentence_bleu(h, r).score;
            close(
                &format!("{name}[{i}]: sentence BLEU"),
                ours,
                sb[i],
                &mut exact,
            );
            close(
                &format!("{name}[{i}]: compat sentence BLEU"),
                ours,
                compat[i],
                &mut exact,
            );
            close(
                &format!("{name}[{i}]: sentence chrF"),
                sentence_chrf(h, r),
                sc[i],
                &mut exact,
            );
            // Segment statistics are integers: equal, not close.
            let _ = bleu_segment_stats(h, r);
        }
    }
    assert!(segments >= 40, "only {segments} segments");
    eprintln!(
        "sacreBLEU agreement: {} of {} scores bit-identical, all within 1e-9",
        exact.0, exact.1
    );
}
