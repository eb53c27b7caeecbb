//! The GPU forward pass on tiny generated models against the f64 reference transformer of
//! the CPU tests, plus its bookkeeping: token-by-token feeding, truncation, refusals and
//! typed errors. Natively the GPU is Vulkan (Mesa's lavapipe on a machine without one, which
//! `cargo xtask setup` installs); without an adapter the tests say so and pass, unless
//! `LADDER_REQUIRE_GPU` is set (the test command sets it), where a missing adapter fails.

use super::*;
use crate::models::ModelOptions;
use crate::models::tests::{Family, PROMPT, Shape, k_shape, max_rel_err, reference, shape, tiny};
use candle_core::quantized::GgmlDType;

fn load(bytes: &[u8]) -> Model {
    Model::from_bytes(bytes.to_vec(), "tiny", &ModelOptions::default()).expect("tiny model loads")
}

/// The GPU copy of `model`, or `None` (after saying why) where this machine has no adapter.
fn on_gpu(model: &Model) -> Option<GpuModel> {
    match pollster::block_on(GpuModel::new(model)) {
        Ok(g) => Some(g),
        Err(GpuError::NoAdapter(why)) if std::env::var_os("LADDER_REQUIRE_GPU").is_none() => {
            eprintln!("SKIP: no GPU adapter ({why}); set LADDER_REQUIRE_GPU=1 to fail instead");
            None
        }
        Err(e) => panic!("GPU model: {e}"),
    }
}

fn session(g: &GpuModel, context: usize) -> GpuSession {
    pollster::block_on(g.session(context)).expect("GPU session")
}

fn feed(s: &mut GpuSession, tokens: &[u32]) -> Result<Vec<f32>> {
    pollster::block_on(s.feed(tokens))
}

/// The largest difference between two logit vectors, relative to the largest logit.
fn rel_gap(a: &[f32], b: &[f32]) -> f32 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    diff / b.iter().map(|x| x.abs()).fold(f32::MIN_POSITIVE, f32::max)
}

#[test]
fn logits_follow_the_cpu_path() {
    // The kernels do the CPU path's arithmetic (8-bit activations, exact integer products,
    // floats summed in the canonical order, the same `exp`), so what is left is the GPU's
    // own rounding of division, square root and fused multiply-adds: far below the 8-bit
    // rounding both share against the f64 reference (`quantised_models_stay_close_to_the_
    // reference` allows 3 %).
    let k = k_shape;
    for (s, ty) in [
        (shape(Family::Llama), GgmlDType::Q4_1),
        (shape(Family::Llama), GgmlDType::Q4_0),
        (shape(Family::Llama), GgmlDType::Q8_0),
        (shape(Family::Llama), GgmlDType::F16),
        (shape(Family::Qwen2), GgmlDType::F32),
        (shape(Family::Qwen2), GgmlDType::Q4_1),
        (shape(Family::Qwen2), GgmlDType::Q5_0),
        (shape(Family::Llama), GgmlDType::Q5_1),
        (shape(Family::Gemma3), GgmlDType::Q8_0),
        (shape(Family::Gemma3), GgmlDType::Q5_0),
        (k(Family::Llama), GgmlDType::Q4K),
        (k(Family::Llama), GgmlDType::Q5K),
        (k(Family::Qwen2), GgmlDType::Q6K),
        (k(Family::Gemma3), GgmlDType::Q4K),
        (k(Family::Gemma3), GgmlDType::Q6K),
    ] {
        let family = s.family;
        let t = tiny(s, ty, 21);
        let cpu = load(&t.bytes);
        let Some(g) = on_gpu(&cpu) else {
            return;
        };
        let want = cpu.session().feed(&PROMPT).expect("cpu feed");
        let mut s = session(&g, 64);
        let ours = feed(&mut s, &PROMPT).expect("feed");
        let gap = rel_gap(&ours, &want);
        let err = max_rel_err(&ours, &reference(&t, &PROMPT));
        eprintln!(
            "{family:?} {ty:?} on {}: {gap:e} from the CPU path, {err:e} from the f64 reference",
            g.adapter()
        );
        assert!(gap < 1e-4, "{family:?} {ty:?}: {gap} from the CPU path");
        assert!(err < 0.03, "{family:?} {ty:?}: relative error {err}");
    }
}

#[test]
fn feeding_one_token_at_a_time_and_truncating_give_the_same_logits() {
    let t = tiny(shape(Family::Llama), GgmlDType::Q4_1, 22);
    let Some(g) = on_gpu(&load(&t.bytes)) else {
        return;
    };
    let mut whole = session(&g, 64);
    let want = feed(&mut whole, &PROMPT).expect("feed");
    let mut steps = session(&g, 64);
    let mut last = Vec::new();
    for &tok in &PROMPT {
        last = feed(&mut steps, &[tok]).expect("feed");
    }
    assert_eq!(last, want, "token by token");
    assert_eq!(steps.tokens(), &PROMPT);
    // Another continuation of the first four tokens, then back to the prompt's own.
    steps.truncate(4);
    feed(&mut steps, &[9, 9, 9]).expect("feed");
    steps.truncate(4);
    assert_eq!(
        feed(&mut steps, &PROMPT[4..]).expect("feed"),
        want,
        "after truncation"
    );
}

#[test]
fn bad_inputs_get_typed_errors_and_leave_the_session_unchanged() {
    let t = tiny(shape(Family::Llama), GgmlDType::Q8_0, 23);
    let Some(g) = on_gpu(&load(&t.bytes)) else {
        return;
    };
    let mut s = session(&g, 8);
    assert_eq!(s.context(), 8);
    let first = feed(&mut s, &PROMPT[..3]).expect("feed");
    assert!(matches!(
        feed(&mut s, &[]),
        Err(GpuError::Engine(Error::EmptyInput))
    ));
    assert!(matches!(
        feed(&mut s, &[1, 100_000]),
        Err(GpuError::Engine(Error::TokenOutOfRange { id: 100_000, .. }))
    ));
    assert!(matches!(
        feed(&mut s, &[1; 6]),
        Err(GpuError::Engine(Error::ContextFull {
            needed: 9,
            context: 8
        }))
    ));
    assert_eq!(s.tokens(), &PROMPT[..3]);
    s.truncate(2);
    assert_eq!(feed(&mut s, &PROMPT[2..3]).expect("feed"), first);
}

#[test]
fn gemma_decodes_token_by_token_past_its_sliding_window_as_the_cpu_does() {
    // The tiny Gemma's window is 4 positions on every other layer, with its own rotary base:
    // twenty tokens one at a time go well past it. Float weights, so that no 8-bit rounding
    // can amplify a last-bit difference (on lavapipe one such flip moved one token's logits
    // by 0.5 % with Q8_0): what is left checks the layers' structure, token by token.
    let t = tiny(shape(Family::Gemma3), GgmlDType::F32, 27);
    let cpu = load(&t.bytes);
    let Some(g) = on_gpu(&cpu) else {
        return;
    };
    let mut c = cpu.session();
    let mut s = session(&g, 64);
    for (i, tok) in PROMPT.iter().chain(&PROMPT).enumerate() {
        let want = c.feed(&[*tok]).expect("cpu feed");
        let ours = feed(&mut s, &[*tok]).expect("feed");
        let gap = rel_gap(&ours, &want);
        assert!(gap < 1e-5, "token {i}: {gap} from the CPU path");
    }
}

#[test]
fn matrices_split_across_buffers_give_the_same_logits() {
    // Buffers of at most 3 072 bytes: the Q4_1 rows of 64 values (32 bytes of quants) go 96
    // to a part, so the output matrix (270 rows) and the biased query projection (128 rows)
    // are split, the latter with its bias read from the part's first row.
    let s = Shape {
        heads: 8,
        ..shape(Family::Qwen2)
    };
    let t = tiny(s, GgmlDType::Q4_1, 28);
    let cpu = load(&t.bytes);
    let Some(whole) = on_gpu(&cpu) else {
        return;
    };
    let split = pollster::block_on(GpuModel::upload(&cpu, Some(3072))).expect("split upload");
    assert!(split.shared.output.parts.len() == 3, "output in 3 parts");
    assert!(
        split.shared.layers[0].wq.parts.len() == 2,
        "queries in 2 parts"
    );
    let want = feed(&mut session(&whole, 64), &PROMPT).expect("feed");
    let ours = feed(&mut session(&split, 64), &PROMPT).expect("feed");
    assert_eq!(ours, want);
    // A limit below one row is refused with the reason.
    let err = pollster::block_on(GpuModel::upload(&cpu, Some(16))).expect_err("refused");
    assert!(
        matches!(&err, GpuError::Unsupported(why) if why.contains("binds at most 16")),
        "{err}"
    );
}

#[test]
fn every_family_and_weight_type_runs_but_a_logit_softcap_is_refused() {
    let gemma = load(&tiny(shape(Family::Gemma3), GgmlDType::Q8_0, 24).bytes);
    assert_eq!(unsupported_reason(&gemma), None);
    let q6k = load(&tiny(k_shape(Family::Llama), GgmlDType::Q6K, 25).bytes);
    assert_eq!(unsupported_reason(&q6k), None);
    let capped = Shape {
        softcap: Some(30.0),
        ..shape(Family::Gemma3)
    };
    let capped = load(&tiny(capped, GgmlDType::Q8_0, 26).bytes);
    let why = unsupported_reason(&capped).expect("a soft-cap has no GPU kernel");
    assert!(why.contains("soft-cap"), "{why}");
    assert!(matches!(
        pollster::block_on(GpuModel::new(&capped)),
        Err(GpuError::Unsupported(_))
    ));
}

#[test]
fn packings_are_listed_in_declaration_order() {
    // `Pipelines::get` indexes the mat-vec pipelines by discriminant.
    for (i, p) in Packing::ALL.iter().enumerate() {
        assert_eq!(*p as usize, i, "{p:?}");
    }
}
