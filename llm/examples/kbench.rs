//! Kernel microbenchmark: one 2048×1024 product per weight type, one token and 128 tokens.
//! `kbench [THREADS] [TYPE] [REPS]`, e.g. `kbench 1 Q4K 15`; prints the best of REPS runs.
//! `KBENCH_SHAPE=lmhead` or `KBENCH_SHAPE=ROWSxCOLS` times another shape.
use llm::kernels::{self, Activations, Isa, Matrix, Pool, WeightType};
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let only = args.get(1).cloned();
    let outer: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let pool = Pool::new(threads);
    for ty in [
        WeightType::Q4_1,
        WeightType::Q5_0,
        WeightType::Q8_0,
        WeightType::Q4K,
        WeightType::Q6K,
    ] {
        if only
            .as_ref()
            .is_some_and(|o| o != &format!("{ty:?}") && o != "all")
        {
            continue;
        }
        let (rows, cols) = match std::env::var("KBENCH_SHAPE").ok().as_deref() {
            Some("lmhead") => (262_144, 640),
            // `ROWSxCOLS`, e.g. `640x2048` (Gemma's FFN down projection).
            Some(shape) => shape
                .split_once('x')
                .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
                .unwrap_or((2048, 1024)),
            None => (2048, 1024),
        };
        let bytes: Vec<u8> = (0..ty.row_bytes(cols) * rows)
            // Every byte 0x10..0x40: any f16 scale read from them is a normal number, as in real
            // models (subnormal scales would time the CPU's slow path for them instead).
            .map(|i| (i * 31 % 251) as u8 & 0x3f | 0x10)
            .collect();
        let w = Matrix::from_bytes(ty, rows, cols, bytes).expect("the matrix fits its bytes");
        for n in [1usize, 128] {
            let mut x = Activations::new(
                (0..n * cols)
                    .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                    .collect(),
                n,
                cols,
            );
            let mut out = vec![0.0; n * rows];
            kernels::matmul(&pool, Isa::detect(), &w, &mut x, &mut out);
            let reps = if n == 1 { 50 } else { 1 };
            let mut s = f64::MAX;
            for _ in 0..outer {
                let t = Instant::now();
                for _ in 0..reps {
                    kernels::matmul_many(
                        &pool,
                        Isa::detect(),
                        &mut [kernels::Product {
                            w: &w,
                            x: &x,
                            out: &mut out,
                        }],
                    );
                }
                s = s.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            println!(
                "{ty:?} n={n}: {:.3} ms, {:.1} GMAC/s, {:.1} GB/s of weights",
                s * 1e3,
                (rows * cols * n) as f64 / s / 1e9,
                (ty.row_bytes(cols) * rows) as f64 / s / 1e9
            );
        }
    }
}
