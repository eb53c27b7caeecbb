//! No input makes the dataset reader or the metrics panic.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::datasets::read_items;
use eval::metrics::{corpus_bleu, corpus_chrf, final_number, sentence_bleu, tokenize_13a};
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_items(&mut &bytes[..], Path::new("x.jsonl"), "x");
    }

    #[test]
    fn json_like_lines_are_read_without_panicking(
        lines in proptest::collection::vec(
            prop_oneof![
                Just(r#"{"question":"q","choices":["a","b"],"answer":1}"#.to_string()),
                Just(r#"{"question":"q","choices":[],"answer":0}"#.to_string()),
                Just(r#"{"question":"q","choices":["a"],"answer":1e300}"#.to_string()),
                Just(r#"{"text":"t","label":-1,"label_names":["n"]}"#.to_string()),
                Just(r#"{"turns":[]}"#.to_string()),
                Just(r#"{"question":"q","answer":"NaN"}"#.to_string()),
                "[ -~]{0,40}",
            ],
            0..6,
        )
    ) {
        let text = lines.join("\n");
        let _ = read_items(&mut text.as_bytes(), Path::new("x.jsonl"), "x");
    }

    #[test]
    fn metrics_take_any_text(h in "\\PC{0,60}", r in "\\PC{0,60}") {
        let _ = tokenize_13a(&h);
        let b = sentence_bleu(&h, &[&r]).score;
        prop_assert!((0.0..=100.0 + 1e-9).contains(&b), "{b}");
        let c = corpus_chrf(&[&h], &[vec![&r]]);
        prop_assert!((0.0..=100.0 + 1e-9).contains(&c), "{c}");
        let _ = corpus_bleu(&[&h], &[vec![&r]]);
        let _ = final_number(&h);
    }
}
