//! The sliding-window quantile against references: a naive sort-per-query implementation of
//! NumPy's formula on random streams (proptest), and NumPy itself (a committed fixture written by
//! `scripts/numpy_quantile_fixture.py`), compared bit for bit.

#![allow(clippy::unwrap_used)]

use offload::{SlidingWindow, Windows};
use offload::{TaskType, Tier};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::VecDeque;

/// NumPy's `np.quantile(a, beta)` (method "linear"), written out step by step from
/// `numpy/lib/_function_base_impl.py` (`_quantile`, `_get_indexes`, `_get_gamma`, `_lerp`) on a
/// freshly sorted copy: the reference the window's incremental version must equal.
fn naive_numpy_quantile(values: &[f64], beta: f64) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mut arr = values.to_vec();
    arr.sort_by(f64::total_cmp);
    let virtual_index = (n - 1) as f64 * beta;
    let (mut previous, mut next) = (virtual_index.floor(), virtual_index.floor() + 1.0);
    if virtual_index >= (n - 1) as f64 {
        previous = -1.0;
        next = -1.0;
    }
    let at = |i: f64| if i < 0.0 { arr[n - 1] } else { arr[i as usize] };
    let (a, b) = (at(previous), at(next));
    let gamma = virtual_index - previous;
    let diff_b_a = b - a;
    Some(if gamma >= 0.5 {
        b - diff_b_a * (1.0 - gamma)
    } else {
        a + diff_b_a * gamma
    })
}

fn bits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

/// A value of a stream: mostly from a small set (many duplicates, both zeros), sometimes any
/// finite float, sometimes a probability.
fn stream_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => prop::sample::select(vec![0.0, -0.0, 0.1, 0.25, 0.3, 0.5, 0.5, 0.9, 1.0, -2.0]),
        2 => 0.0..=1.0f64,
        1 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

fn beta() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), Just(0.5), Just(0.3), 0.0..=1.0f64,]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn quantile_equals_a_naive_resort_after_every_push(
        stream in prop::collection::vec(stream_value(), 0..150),
        k in 1usize..50,
        betas in prop::collection::vec(beta(), 1..4),
    ) {
        let mut window = SlidingWindow::new(k).unwrap();
        let mut fifo: VecDeque<f64> = VecDeque::new();
        for &v in &stream {
            let evicted = window.push(v).unwrap();
            fifo.push_back(v);
            let expected_evicted = if fifo.len() > k { fifo.pop_front() } else { None };
            prop_assert_eq!(bits(evicted), bits(expected_evicted));

            let values: Vec<f64> = fifo.iter().copied().collect();
            let got: Vec<f64> = window.values().collect();
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            values.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            prop_assert_eq!(window.sorted().iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            sorted.iter().map(|x| x.to_bits()).collect::<Vec<_>>());

            for &beta in &betas {
                let expected = naive_numpy_quantile(&values, beta);
                match (window.quantile(beta), expected) {
                    (Ok(got), Some(e)) if e.is_finite() => {
                        prop_assert_eq!(bits(got), Some(e.to_bits()), "beta {} over {:?}", beta, values);
                    }
                    // NumPy gives inf/NaN only when the values span more than f64::MAX.
                    (Err(_), Some(e)) => prop_assert!(!e.is_finite()),
                    (Ok(got), None) => prop_assert_eq!(got, None),
                    (got, e) => prop_assert!(false, "got {:?}, expected {:?}", got, e),
                }
            }
        }
    }

    #[test]
    fn set_capacity_keeps_the_newest_values(
        stream in prop::collection::vec(stream_value(), 0..80),
        k in 1usize..30,
        new_k in 1usize..30,
        more in prop::collection::vec(stream_value(), 0..40),
    ) {
        let mut window = SlidingWindow::new(k).unwrap();
        let mut all = stream.clone();
        for &v in &stream {
            window.push(v).unwrap();
        }
        window.set_capacity(new_k).unwrap();
        let kept = all.len().min(k).min(new_k);
        let mut expected: Vec<f64> = all[all.len() - kept..].to_vec();
        prop_assert_eq!(window.values().collect::<Vec<_>>().len(), expected.len());
        for &v in &more {
            window.push(v).unwrap();
            all.push(v);
            expected.push(v);
            if expected.len() > new_k {
                expected.remove(0);
            }
        }
        let got: Vec<u64> = window.values().map(f64::to_bits).collect();
        prop_assert_eq!(got, expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let mut sorted = expected.clone();
        sorted.sort_by(f64::total_cmp);
        prop_assert_eq!(window.sorted().iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        sorted.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn serde_round_trip_preserves_the_window(
        stream in prop::collection::vec(stream_value(), 0..60),
        k in 1usize..20,
    ) {
        let mut windows = Windows::new(k).unwrap();
        for (i, &v) in stream.iter().enumerate() {
            let tier = Tier::ALL[i % 3];
            let task = TaskType::ALL[(i / 3) % 4];
            windows.observe(tier, task, v).unwrap();
        }
        let json = serde_json::to_string(&windows).unwrap();
        let back: Windows = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.capacity(), k);
        prop_assert_eq!(back.iter().count(), windows.iter().count());
        for (tier, task, w) in windows.iter() {
            let b = back.get(tier, task).unwrap();
            prop_assert_eq!(b.capacity(), k);
            // The workspace enables serde_json's `float_roundtrip`, so values come back exactly.
            let (ours, theirs): (Vec<u64>, Vec<f64>) =
                (w.values().map(f64::to_bits).collect(), b.values().collect());
            prop_assert_eq!(ours, theirs.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            let mut sorted = theirs.clone();
            sorted.sort_by(f64::total_cmp);
            prop_assert_eq!(b.sorted(), sorted.as_slice());
        }
    }
}

// --- The NumPy fixture ------------------------------------------------------------------------

const FIXTURE: &str = include_str!("fixtures/numpy_quantiles.json");

#[test]
fn quantile_equals_numpy_bit_for_bit() {
    // serde_json parses floats exactly here: the workspace enables `float_roundtrip`.
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let mut compared = 0usize;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let capacity = case["capacity"].as_u64().unwrap() as usize;
        let stream = numbers(&case["stream"]);
        let betas = numbers(&case["betas"]);
        let expected = case["expected"].as_array().unwrap();
        assert_eq!(expected.len(), stream.len(), "{name}");
        let mut window = SlidingWindow::new(capacity).unwrap();
        for (i, (&v, row)) in stream.iter().zip(expected).enumerate() {
            window.push(v).unwrap();
            match row {
                Value::Null => {
                    for &beta in &betas {
                        assert_eq!(window.quantile(beta).unwrap(), None, "{name} #{i}");
                    }
                }
                row => {
                    let row = numbers(row);
                    assert_eq!(row.len(), betas.len(), "{name} #{i}");
                    for (&beta, &numpy) in betas.iter().zip(&row) {
                        let ours = window.quantile(beta).unwrap().unwrap();
                        assert!(
                            ours == numpy && ours.to_bits() == numpy.to_bits(),
                            "{name} after push #{i}, beta {beta}: ours {ours:?}, numpy {numpy:?}"
                        );
                        // The step-by-step reference agrees too.
                        let values: Vec<f64> = window.values().collect();
                        assert_eq!(naive_numpy_quantile(&values, beta), Some(numpy));
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} comparisons");
}
