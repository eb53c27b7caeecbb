//! The forward passes on tiny models the tests write themselves (GGUF through candle's
//! writer, random weights), against a plain f64 transformer written here from the papers'
//! equations; plus the properties the serving code relies on: a prefill equals feeding tokens
//! one by one, a batch equals its sequences run alone, forks and truncation, and clear errors.

use super::*;
use crate::kernels::Isa;
use crate::kernels::tests::Rng;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use gguf_file::Value;
use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Family {
    Llama,
    Qwen2,
    Gemma3,
}

#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) family: Family,
    pub(crate) d: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) ff: usize,
    pub(crate) layers: usize,
    /// Gemma: sliding window of the first layer of every two.
    pub(crate) window: usize,
    pub(crate) context: usize,
    /// Gemma: a final logit soft-cap in the metadata (the f64 reference ignores it).
    pub(crate) softcap: Option<f32>,
}

const VOCAB: usize = 270; // the test BPE vocabulary (crate::tokenizer::tests::bpe_meta)

pub(crate) fn shape(family: Family) -> Shape {
    Shape {
        family,
        d: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: if family == Family::Gemma3 { 32 } else { 16 },
        ff: 96,
        layers: 2,
        window: 4,
        context: 64,
        softcap: None,
    }
}

/// A tiny shape for the K-quants, whose rows hold whole 256-value super-blocks.
pub(crate) fn k_shape(family: Family) -> Shape {
    Shape {
        d: 256,
        ff: 512,
        head_dim: 64,
        ..shape(family)
    }
}

/// A tiny model: its GGUF bytes, and the f32 weights it was written from.
pub(crate) struct Tiny {
    shape: Shape,
    pub(crate) bytes: Vec<u8>,
    weights: HashMap<String, Vec<f32>>,
}

pub(crate) fn tiny(shape: Shape, ty: GgmlDType, seed: u64) -> Tiny {
    let mut rng = Rng::new(seed);
    let Shape {
        d,
        heads,
        kv_heads,
        head_dim,
        ff,
        ..
    } = shape;
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    let mut mats: Vec<(String, usize, usize)> = vec![("token_embd.weight".into(), VOCAB, d)];
    let mut vecs: Vec<(String, usize)> = vec![("output_norm.weight".into(), d)];
    for i in 0..shape.layers {
        let n = |s: &str| format!("blk.{i}.{s}");
        mats.extend([
            (n("attn_q.weight"), q, d),
            (n("attn_k.weight"), kv, d),
            (n("attn_v.weight"), kv, d),
            (n("attn_output.weight"), d, q),
            (n("ffn_gate.weight"), ff, d),
            (n("ffn_up.weight"), ff, d),
            (n("ffn_down.weight"), d, ff),
        ]);
        vecs.extend([(n("attn_norm.weight"), d), (n("ffn_norm.weight"), d)]);
        match shape.family {
            Family::Qwen2 => vecs.extend([
                (n("attn_q.bias"), q),
                (n("attn_k.bias"), kv),
                (n("attn_v.bias"), kv),
            ]),
            Family::Gemma3 => vecs.extend([
                (n("attn_q_norm.weight"), head_dim),
                (n("attn_k_norm.weight"), head_dim),
                (n("post_attention_norm.weight"), d),
                (n("post_ffw_norm.weight"), d),
            ]),
            Family::Llama => {}
        }
    }
    let mut weights = HashMap::new();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, rows, cols) in mats {
        // Uniform weights with about unit gain per layer, as trained models have.
        let scale = 1.7 / (cols as f32).sqrt();
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.float() * scale).collect();
        let t = Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).expect("tensor");
        let qt = if ty == GgmlDType::F32 {
            QTensor::quantize(&t, GgmlDType::F32)
        } else {
            QTensor::quantize(&t, ty)
        };
        let qt = qt.expect("quantise");
        // The reference multiplies what the file holds: the dequantised weights.
        let held = qt
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>());
        weights.insert(name.clone(), held.expect("dequantise"));
        tensors.push((name, qt));
    }
    for (name, len) in vecs {
        let v: Vec<f32> = (0..len).map(|_| 1.0 + rng.float() * 0.2).collect();
        let t = Tensor::from_vec(v.clone(), len, &Device::Cpu).expect("tensor");
        tensors.push((
            name.clone(),
            QTensor::quantize(&t, GgmlDType::F32).expect("f32"),
        ));
        weights.insert(name, v);
    }
    let arch = match shape.family {
        Family::Llama => "llama",
        Family::Qwen2 => "qwen2",
        Family::Gemma3 => "gemma3",
    };
    let mut meta: Vec<(String, Value)> = crate::tokenizer::tests::bpe_meta("smollm")
        .into_iter()
        .collect();
    let u = |v: usize| Value::U32(v as u32);
    meta.extend([
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        (format!("{arch}.embedding_length"), u(d)),
        (format!("{arch}.block_count"), u(shape.layers)),
        (format!("{arch}.context_length"), u(shape.context)),
        (format!("{arch}.attention.head_count"), u(heads)),
        (format!("{arch}.attention.head_count_kv"), u(kv_heads)),
        (format!("{arch}.attention.key_length"), u(head_dim)),
        (format!("{arch}.rope.freq_base"), Value::F32(10_000.0)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
    ]);
    if shape.family == Family::Gemma3 {
        meta.extend([
            (format!("{arch}.attention.sliding_window"), u(shape.window)),
            (format!("{arch}.attention.sliding_window_pattern"), u(2)),
            (format!("{arch}.rope.freq_base_swa"), Value::F32(1_000.0)),
        ]);
        if let Some(c) = shape.softcap {
            meta.push((format!("{arch}.final_logit_softcapping"), Value::F32(c)));
        }
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta_refs, &tensor_refs).expect("write gguf");
    Tiny {
        shape,
        bytes: buf.into_inner(),
        weights,
    }
}

fn load(t: &Tiny, kernels: Option<Isa>, threads: usize) -> Model {
    let opts = ModelOptions {
        threads: Some(threads),
        kernels,
        ..Default::default()
    };
    Model::from_bytes(t.bytes.clone(), "tiny", &opts).expect("tiny model loads")
}

// --- the reference: one sequence, f64, straight from the equations -------------------------

fn matvec(w: &[f32], rows: usize, x: &[f64]) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(&a, b)| f64::from(a) * b)
                .sum()
        })
        .collect()
}

fn rmsnorm(x: &[f64], w: &[f32]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + 1e-5).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, &g)| v * inv * f64::from(g))
        .collect()
}

fn rotate(head: &mut [f64], pos: usize, base: f64, halves: bool) {
    let n = head.len();
    for i in 0..n / 2 {
        let theta = pos as f64 * base.powf(-2.0 * i as f64 / n as f64);
        let (a, b) = if halves {
            (i, i + n / 2)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * theta.cos() - x1 * theta.sin();
        head[b] = x0 * theta.sin() + x1 * theta.cos();
    }
}

/// Logits after the last of `tokens`.
pub(crate) fn reference(t: &Tiny, tokens: &[u32]) -> Vec<f64> {
    let s = t.shape;
    let w = |n: &str| &t.weights[n];
    let gemma = s.family == Family::Gemma3;
    let hd = s.head_dim;
    let group = s.heads / s.kv_heads;
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| {
            let row = &w("token_embd.weight")[tok as usize * s.d..][..s.d];
            let scale = if gemma { (s.d as f64).sqrt() } else { 1.0 };
            row.iter().map(|&v| f64::from(v) * scale).collect()
        })
        .collect();
    for l in 0..s.layers {
        let n = |x: &str| format!("blk.{l}.{x}");
        let sliding = gemma && l % 2 == 0;
        let base = if sliding { 1_000.0 } else { 10_000.0 };
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for x in &xs {
            let h = rmsnorm(x, w(&n("attn_norm.weight")));
            let mut q = matvec(w(&n("attn_q.weight")), s.heads * hd, &h);
            let mut k = matvec(w(&n("attn_k.weight")), s.kv_heads * hd, &h);
            let mut v = matvec(w(&n("attn_v.weight")), s.kv_heads * hd, &h);
            if s.family == Family::Qwen2 {
                for (vec, b) in [
                    (&mut q, "attn_q.bias"),
                    (&mut k, "attn_k.bias"),
                    (&mut v, "attn_v.bias"),
                ] {
                    vec.iter_mut()
                        .zip(w(&n(b)))
                        .for_each(|(x, &b)| *x += f64::from(b));
                }
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for (pos, (q, k)) in qs.iter_mut().zip(ks.iter_mut()).enumerate() {
            for (vec, norm) in [(q, "attn_q_norm.weight"), (k, "attn_k_norm.weight")] {
                for head in vec.chunks_mut(hd) {
                    if gemma {
                        let normed = rmsnorm(head, w(&n(norm)));
                        head.copy_from_slice(&normed);
                    }
                    rotate(head, pos, base, s.family != Family::Llama);
                }
            }
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0.0; s.heads * hd];
            for h in 0..s.heads {
                let g = h / group;
                let q = &qs[pos][h * hd..][..hd];
                let first = if sliding {
                    (pos + 1).saturating_sub(s.window)
                } else {
                    0
                };
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][g * hd..][..hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, p) in (first..=pos).zip(&e) {
                    for i in 0..hd {
                        attn[h * hd + i] += p / z * vs[j][g * hd + i];
                    }
                }
            }
            let mut o = matvec(w(&n("attn_output.weight")), s.d, &attn);
            if gemma {
                o = rmsnorm(&o, w(&n("post_attention_norm.weight")));
            }
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rmsnorm(x, w(&n("ffn_norm.weight")));
            let gate = matvec(w(&n("ffn_gate.weight")), s.ff, &h);
            let up = matvec(w(&n("ffn_up.weight")), s.ff, &h);
            let a: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(&g, &u)| {
                    let act = if gemma {
                        0.5 * g
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (g + 0.044715 * g * g * g))
                                    .tanh())
                    } else {
                        g / (1.0 + (-g).exp())
                    };
                    act * u
                })
                .collect();
            let mut dn = matvec(w(&n("ffn_down.weight")), s.d, &a);
            if gemma {
                dn = rmsnorm(&dn, w(&n("post_ffw_norm.weight")));
            }
            x.iter_mut().zip(&dn).for_each(|(x, d)| *x += d);
        }
    }
    let last = rmsnorm(xs.last().expect("tokens"), w("output_norm.weight"));
    matvec(w("token_embd.weight"), VOCAB, &last)
}

pub(crate) fn max_rel_err(ours: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(want)
        .map(|(&a, b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max)
        / scale
}

pub(crate) const PROMPT: [u32; 10] = [5, 17, 200, 3, 99, 42, 42, 7, 260, 1];

#[test]
fn float_models_match_the_reference_transformer() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let t = tiny(shape(family), GgmlDType::F32, 11);
        for isa in Isa::available() {
            let model = load(&t, Some(isa), 2);
            // Prefill of the whole prompt, and prompt then one more token.
            let mut s = model.session();
            let ours = s.feed(&PROMPT).expect("feed");
            let err = max_rel_err(&ours, &reference(&t, &PROMPT));
            assert!(err < 1e-4, "{isa:?} prefill: relative error {err}");
            let ours = s.feed(&[123]).expect("feed");
            let mut longer = PROMPT.to_vec();
            longer.push(123);
            let err = max_rel_err(&ours, &reference(&t, &longer));
            assert!(err < 1e-4, "{isa:?} decode step: relative error {err}");
        }
    }
}

#[test]
fn quantised_models_stay_close_to_the_reference() {
    // The reference multiplies the same (dequantised) weights in f64, so what is left is the
    // 8-bit rounding of activations: one to three percent of the largest logit here. Every
    // instruction set gives the scalar reference's logits bit for bit.
    let k = k_shape;
    for (s, ty) in [
        (shape(Family::Llama), GgmlDType::Q4_1),
        (shape(Family::Llama), GgmlDType::Q8_0),
        (shape(Family::Qwen2), GgmlDType::Q5_0),
        (shape(Family::Gemma3), GgmlDType::Q5_1),
        (k(Family::Gemma3), GgmlDType::Q4K),
        (k(Family::Llama), GgmlDType::Q6K),
        (k(Family::Llama), GgmlDType::Q5K),
        (k(Family::Qwen2), GgmlDType::Q6K),
        (k(Family::Qwen2), GgmlDType::Q5K),
    ] {
        let t = tiny(s, ty, 12);
        for isa in Isa::available() {
            let ours = load(&t, Some(isa), 1)
                .session()
                .feed(&PROMPT)
                .expect("feed");
            let err = max_rel_err(&ours, &reference(&t, &PROMPT));
            eprintln!("{ty:?} {isa:?}: relative error {err}");
            assert!(err < 0.03, "{ty:?} {isa:?}: relative error {err}");
        }
    }
}

#[test]
fn prefill_token_by_token_and_batches_agree() {
    let t = tiny(shape(Family::Gemma3), GgmlDType::Q8_0, 13);
    let model = load(&t, None, 2);
    let whole = model.session().feed(&PROMPT).expect("prefill");
    let mut s = model.session();
    let mut last = Vec::new();
    for &tok in &PROMPT {
        last = s.feed(&[tok]).expect("step");
    }
    // Prefill tiles four tokens per pass and sums in another order: close, not identical.
    assert!(
        max_rel_err(
            &last,
            &whole.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
        ) < 1e-4
    );

    // Three sequences of different lengths in one pass equal each run alone.
    let prompts: [&[u32]; 3] = [&PROMPT[..3], &PROMPT[..], &[9]];
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| model.session().feed(p).expect("alone"))
        .collect();
    let mut sessions: Vec<Session> = (0..3).map(|_| model.session()).collect();
    let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
    let together = feed_batch(&mut refs, &prompts).expect("batch");
    assert_eq!(alone, together);
    // And the next decode step of all three, batched, equals each one's own next step.
    let next: [&[u32]; 3] = [&[4], &[5], &[6]];
    let stepped = feed_batch(&mut refs, &next).expect("batched step");
    for (i, p) in prompts.iter().enumerate() {
        let mut s = model.session();
        s.feed(p).expect("prompt");
        let own = s.feed(next[i]).expect("step");
        assert!(
            max_rel_err(
                &stepped[i],
                &own.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
            ) < 1e-4
        );
        assert_eq!(refs[i].tokens().len(), p.len() + 1);
    }
}

#[test]
fn forks_and_truncation_continue_from_the_shared_prefix() {
    let t = tiny(shape(Family::Llama), GgmlDType::F32, 14);
    let model = load(&t, None, 1);
    let mut base = model.session();
    base.feed(&PROMPT[..6]).expect("prefix");
    let mut fork = base.clone();
    let a = base.feed(&PROMPT[6..]).expect("rest");
    let b = fork.feed(&PROMPT[6..]).expect("rest on the fork");
    assert_eq!(a, b);
    base.truncate(4);
    assert_eq!(base.tokens(), &PROMPT[..4]);
    let c = base.feed(&[77]).expect("after truncation");
    let mut fresh = model.session();
    fresh.feed(&PROMPT[..4]).expect("prefix");
    let d = fresh.feed(&[77]).expect("step");
    assert_eq!(c, d);
    // A fork of a prefix copies only that prefix and continues like a fresh prefill.
    let mut long = model.session();
    long.feed(&PROMPT).expect("whole prompt");
    let mut short = long.fork(4);
    assert_eq!(short.tokens(), &PROMPT[..4]);
    assert_eq!(short.feed(&[77]).expect("after the fork"), d);
    assert_eq!(long.fork(usize::MAX).tokens(), &PROMPT[..]);
}

/// `n` deterministic stand-in tokens within the tiny vocabulary.
fn long_tokens(n: u32, mul: u32) -> Vec<u32> {
    (0..n).map(|i| (i * mul + 11) % VOCAB as u32).collect()
}

#[test]
fn sliding_window_layers_keep_a_bounded_ring_and_the_same_logits() {
    let sh = shape(Family::Gemma3);
    let t = tiny(sh, GgmlDType::F32, 16);
    let model = load(&t, None, 2);
    let slots = decoder::ring_slots(sh.window);
    let kvd = sh.kv_heads * sh.head_dim;
    let tokens = long_tokens(40, 37);
    let mut s = model.session();
    for (i, &tok) in tokens.iter().enumerate() {
        let ours = s.feed(&[tok]).expect("step");
        if i % 7 == 6 || i + 1 == tokens.len() {
            let err = max_rel_err(&ours, &reference(&t, &tokens[..=i]));
            assert!(err < 1e-4, "step {i}: relative error {err}");
        }
        // Layer 0 slides (at most `slots` positions), layer 1 keeps every one.
        let len = i + 1;
        assert_eq!(
            s.cache.floats(),
            2 * kvd * (len + len.min(slots)),
            "step {i}"
        );
    }
    // A prefill of more tokens than the ring has slots, into a ring that already wrapped.
    let mut b = model.session();
    b.feed(&tokens[..12]).expect("prefix");
    let ours = b.feed(&tokens[12..]).expect("rest");
    let err = max_rel_err(&ours, &reference(&t, &tokens));
    assert!(err < 1e-4, "long prefill: relative error {err}");
    assert_eq!(b.cache.floats(), 2 * kvd * (tokens.len() + slots));
}

#[test]
fn rewinds_past_a_sliding_window_feed_the_kept_tokens_again() {
    let sh = shape(Family::Gemma3);
    let t = tiny(sh, GgmlDType::Q8_0, 17);
    let model = load(&t, None, 1);
    let tokens = long_tokens(30, 53);
    let mut long = model.session();
    long.feed(&tokens).expect("prompt");
    let close = |ours: &[f32], want: &[f32]| {
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        max_rel_err(ours, &want) < 1e-4
    };

    // Back by less than the ring's spare slots: the cache still serves, nothing is fed again.
    let near = 30 - sh.window + 1;
    let mut fresh = model.session();
    fresh.feed(&tokens[..near]).expect("prefix");
    let want = fresh.feed(&[77]).expect("step");
    let mut forked = long.fork(near);
    assert_eq!(forked.cached(), near);
    assert!(close(&forked.feed(&[77]).expect("fork step"), &want));
    let mut cut = long.clone();
    cut.truncate(near);
    assert_eq!((cut.cached(), cut.tokens()), (near, &tokens[..near]));
    assert!(close(&cut.feed(&[77]).expect("step after the cut"), &want));

    // Further back, the sliding layer has lost positions the window needs: the cache is
    // dropped and the next feed computes the kept tokens and the new one in one pass, exactly
    // as a fresh session given them all at once.
    let far = 9;
    let mut once = [&tokens[..far], &[77][..]].concat();
    let want = model.session().feed(&once).expect("fresh");
    let mut forked = long.fork(far);
    assert_eq!((forked.cached(), forked.tokens()), (0, &tokens[..far]));
    assert_eq!(forked.feed(&[77]).expect("fork refeeds"), want);
    assert_eq!(forked.tokens(), &once[..]);
    let mut cut = long.clone();
    cut.truncate(far);
    assert_eq!(cut.cached(), 0);
    assert_eq!(cut.feed(&[77]).expect("cut refeeds"), want);
    assert_eq!(cut.cached(), far + 1);
    // The context limit still counts every token, and an empty feed is still an error.
    assert!(matches!(cut.feed(&[]), Err(Error::EmptyInput)));
    once.push(5);
    assert_eq!(
        cut.feed(&[5]).map(|l| l.len()).ok(),
        Some(model.logits_len())
    );
    assert_eq!(cut.tokens(), &once[..]);
}

#[test]
fn thread_counts_give_the_same_logits() {
    let t = tiny(shape(Family::Qwen2), GgmlDType::Q4_0, 15);
    let one = load(&t, None, 1).session().feed(&PROMPT).expect("1 thread");
    for threads in [2, 3] {
        // Each output is computed whole by one thread, so the split changes nothing.
        assert_eq!(
            load(&t, None, threads)
                .session()
                .feed(&PROMPT)
                .expect("n threads"),
            one
        );
    }
}

#[test]
fn bad_inputs_get_typed_errors_and_leave_sessions_unchanged() {
    let t = tiny(shape(Family::Llama), GgmlDType::F32, 16);
    let model = load(&t, None, 1);
    let mut s = model.session();
    s.feed(&[1, 2]).expect("ok");
    assert!(matches!(s.feed(&[]), Err(Error::EmptyInput)));
    assert!(
        matches!(s.feed(&[3, VOCAB as u32]), Err(Error::TokenOutOfRange { id, .. }) if id == VOCAB as u32)
    );
    let too_long = vec![1u32; t.shape.context - 1];
    assert!(
        matches!(s.feed(&too_long), Err(Error::ContextFull { needed, context: 64 }) if needed == 65)
    );
    assert_eq!(s.tokens(), &[1, 2], "failed feeds change nothing");
    let mut again = model.session();
    again.feed(&[1, 2]).expect("ok");
    assert_eq!(
        s.feed(&[3]).expect("still works"),
        again.feed(&[3]).expect("ok")
    );

    let other = load(&t, None, 1);
    let (mut a, mut b) = (model.session(), other.session());
    assert!(matches!(
        feed_batch(&mut [&mut a, &mut b], &[&[1], &[1]]),
        Err(Error::MixedModels)
    ));
    assert!(matches!(
        feed_batch(&mut [&mut a], &[&[1], &[1]]),
        Err(Error::BatchMismatch { .. })
    ));
    assert!(feed_batch(&mut [], &[]).expect("nothing to do").is_empty());
}

#[test]
fn damaged_files_are_refused_with_clear_errors() {
    let t = tiny(shape(Family::Gemma3), GgmlDType::Q8_0, 17);
    let opts = ModelOptions::default();
    // Cut off inside the tensor data.
    let cut = t.bytes[..t.bytes.len() - 100].to_vec();
    assert!(matches!(
        Model::from_bytes(cut, "cut", &opts),
        Err(Error::Truncated { .. })
    ));
    // A tensor missing: rename one in the header (same length, so offsets stay valid).
    let renamed = replace(&t.bytes, b"blk.1.ffn_up.weight", b"blk.1.ffn_XX.weight");
    let err = Model::from_bytes(renamed, "renamed", &opts).expect_err("missing tensor");
    assert!(
        matches!(err, Error::MissingTensor { ref name, .. } if name == "blk.1.ffn_up.weight"),
        "{err}"
    );
    // The metadata says 6 query heads, the tensors hold 4.
    let six = patch_u32(&t.bytes, b"gemma3.attention.head_count", 6);
    let err = Model::from_bytes(six, "six heads", &opts).expect_err("shape mismatch");
    assert!(
        matches!(err, Error::TensorShape { ref name, .. } if name == "blk.0.attn_q.weight"),
        "{err}"
    );
    // 3 query heads cannot share 2 key/value heads.
    let three = patch_u32(&t.bytes, b"gemma3.attention.head_count", 3);
    assert!(matches!(
        Model::from_bytes(three, "three", &opts),
        Err(Error::InvalidMetadata { .. })
    ));
    // Not a GGUF at all, and an empty file.
    assert!(matches!(
        Model::from_bytes(b"GGML nope".to_vec(), "x", &opts),
        Err(Error::NotGguf { .. } | Error::Truncated { .. })
    ));
    assert!(Model::from_bytes(Vec::new(), "empty", &opts).is_err());
}

/// Sets the u32 value of metadata key `key` (written right after the key: type, value).
fn patch_u32(bytes: &[u8], key: &[u8], value: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = bytes
        .windows(key.len() + 4)
        .position(|w| &w[..key.len()] == key && w[key.len()..] == 4u32.to_le_bytes())
        .expect("u32 key present")
        + key.len()
        + 4;
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    out
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}
