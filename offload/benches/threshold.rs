//! RecServe threshold update + query on a full window: the incremental [`SlidingWindow`] (one
//! binary search and one memmove per update, O(1) quantile) against what the paper's reference
//! code does per request (append to a capped FIFO, copy it, sort the copy, interpolate).
//!
//! `cargo bench -p offload --bench threshold`; criterion writes
//! `target/criterion/threshold_update_query/{ours,naive_resort}/{k}/new/estimates.json`, which
//! `cargo xtask bench offload` reads to print the ratios.

#![allow(clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use offload::SlidingWindow;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const BETA: f64 = 0.3;
/// Length of the precomputed stream that the measured pushes cycle through (a power of two).
const STREAM: usize = 1 << 14;

/// A fixed pseudo-random sequence of confidences in `[0, 1)` (Knuth's MMIX LCG, top 53 bits), so
/// both contenders see the same data without a `rand` dependency.
fn confidences(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// NumPy's `np.quantile(sorted, beta)` (method "linear") on a sorted, non-empty slice.
fn interpolate(sorted: &[f64], beta: f64) -> f64 {
    offload::window::numpy_linear_quantile(sorted, beta)
}

/// The reference: a FIFO capped at `k`, copied and sorted on every request.
struct NaiveResort {
    k: usize,
    fifo: VecDeque<f64>,
    scratch: Vec<f64>,
}

impl NaiveResort {
    fn new(k: usize) -> Self {
        NaiveResort {
            k,
            fifo: VecDeque::with_capacity(k + 1),
            scratch: Vec::with_capacity(k),
        }
    }

    fn push(&mut self, value: f64) {
        self.fifo.push_back(value);
        if self.fifo.len() > self.k {
            self.fifo.pop_front();
        }
    }

    fn quantile(&mut self, beta: f64) -> Option<f64> {
        if self.fifo.len() < 2 {
            return None;
        }
        // The scratch buffer is reused, which flatters the reference slightly (the paper's
        // Python code allocates a new array per request).
        self.scratch.clear();
        self.scratch.extend(self.fifo.iter().copied());
        self.scratch.sort_unstable_by(f64::total_cmp);
        Some(interpolate(&self.scratch, beta))
    }
}

fn threshold_update_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("threshold_update_query");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    for k in SIZES {
        let prefill = confidences(k, 0x5eed_0000 + k as u64);
        let stream = confidences(STREAM, 0xda7a_0000 + k as u64);

        // Both start from the same full window and agree on every threshold.
        let mut ours = SlidingWindow::new(k).unwrap();
        let mut naive = NaiveResort::new(k);
        for &v in &prefill {
            ours.push(v).unwrap();
            naive.push(v);
        }
        for &v in stream.iter().take(64) {
            let mut a = ours.clone();
            a.push(v).unwrap();
            let mut b = NaiveResort::new(k);
            b.fifo = naive.fifo.clone();
            b.push(v);
            assert_eq!(a.quantile(BETA).unwrap(), b.quantile(BETA), "k = {k}");
        }

        group.bench_with_input(BenchmarkId::new("ours", k), &k, |bench, _| {
            let mut window = ours.clone();
            let mut i = 0usize;
            bench.iter(|| {
                let v = stream[i];
                i = (i + 1) & (STREAM - 1);
                window.push(black_box(v)).unwrap();
                black_box(window.quantile(BETA).unwrap())
            });
        });

        group.bench_with_input(BenchmarkId::new("naive_resort", k), &k, |bench, _| {
            let mut window = NaiveResort::new(k);
            window.fifo = naive.fifo.clone();
            let mut i = 0usize;
            bench.iter(|| {
                let v = stream[i];
                i = (i + 1) & (STREAM - 1);
                window.push(black_box(v));
                black_box(window.quantile(BETA))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, threshold_update_query);
criterion_main!(benches);
