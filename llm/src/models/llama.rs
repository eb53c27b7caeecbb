//! Llama-family models (Llama 1–3, SmolLM2, TinyLlama, Mistral-style) and Qwen2, which is the
//! same network with biases on the Q/K/V projections and NeoX-style rotary pairs.

use super::decoder::{Activation, Config, Decoder, Layer, RopeStyle, rope_frequencies};
use super::load::Tensors;
use crate::error::{Error, Result};
use crate::gguf::{self, Architecture};

pub(crate) fn load(t: &Tensors<'_>, arch: Architecture) -> Result<Decoder> {
    let qwen2 = arch == Architecture::Qwen2;
    let n_embd = t.require("embedding_length")?;
    let n_layer = t.require("block_count")?;
    let n_head = t.require("attention.head_count")?;
    let n_kv_head = t.hparam("attention.head_count_kv")?.unwrap_or(n_head);
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
        return Err(Error::InvalidMetadata {
            key: format!("{arch}.attention.head_count_kv"),
            detail: format!("{n_kv_head} key/value heads for {n_head} query heads"),
        });
    }
    let head_dim = t.hparam("attention.key_length")?.unwrap_or(n_embd / n_head);
    let rope_dims = t
        .hparam("rope.dimension_count")?
        .unwrap_or(head_dim)
        .min(head_dim);
    let base = t.hparam_f32("rope.freq_base")?.unwrap_or(10_000.0);
    let scale = linear_rope_scale(t, arch)?;
    let factors = t.optional_vector("rope_freqs.weight", rope_dims / 2)?;
    let inv_freq = rope_frequencies(rope_dims, base, scale, factors.as_deref());
    let rms_eps = t
        .hparam_f32("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-5);

    let (vocab, embd_cols) = t.shape2("token_embd.weight")?;
    if embd_cols != n_embd {
        return Err(Error::TensorShape {
            name: "token_embd.weight".into(),
            expected: format!("{n_embd} columns"),
            found: format!("{embd_cols}"),
        });
    }
    let embed = t.matrix("token_embd.weight", vocab, n_embd)?;
    let output = if t.has("output.weight") {
        t.matrix("output.weight", vocab, n_embd)?
    } else {
        embed.clone()
    };
    let (q_dim, kv_dim) = (n_head * head_dim, n_kv_head * head_dim);
    let mut layers = Vec::with_capacity(n_layer);
    for i in 0..n_layer {
        let name = |s: &str| format!("blk.{i}.{s}");
        let (ff, _) = t.shape2(&name("ffn_gate.weight"))?;
        let bias = |s: &str, len| {
            if qwen2 {
                t.vector(&name(s), len).map(Some)
            } else {
                t.optional_vector(&name(s), len)
            }
        };
        layers.push(Layer {
            attn_norm: t.vector(&name("attn_norm.weight"), n_embd)?,
            wq: t.matrix(&name("attn_q.weight"), q_dim, n_embd)?,
            wk: t.matrix(&name("attn_k.weight"), kv_dim, n_embd)?,
            wv: t.matrix(&name("attn_v.weight"), kv_dim, n_embd)?,
            wo: t.matrix(&name("attn_output.weight"), n_embd, q_dim)?,
            bias_q: bias("attn_q.bias", q_dim)?,
            bias_k: bias("attn_k.bias", kv_dim)?,
            bias_v: bias("attn_v.bias", kv_dim)?,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            ffn_norm: t.vector(&name("ffn_norm.weight"), n_embd)?,
            w_gate: t.matrix(&name("ffn_gate.weight"), ff, n_embd)?,
            w_up: t.matrix(&name("ffn_up.weight"), ff, n_embd)?,
            w_down: t.matrix(&name("ffn_down.weight"), n_embd, ff)?,
            post_ffn_norm: None,
            inv_freq: inv_freq.clone(),
            window: None,
        });
    }
    Ok(Decoder {
        cfg: Config {
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            rms_eps,
            rope_style: if qwen2 {
                RopeStyle::Halves
            } else {
                RopeStyle::Adjacent
            },
            embed_scale: None,
            activation: Activation::Silu,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            logit_softcap: None,
        },
        embed,
        layers,
        out_norm: t.vector("output_norm.weight", n_embd)?,
        output,
    })
}

/// Linear rope scaling (`rope.scaling.type = linear`, or the older `rope.scale_linear`) as a
/// factor on positions; other scaling types are refused rather than silently ignored.
pub(crate) fn linear_rope_scale(t: &Tensors<'_>, arch: Architecture) -> Result<f32> {
    let meta = t.gguf.metadata();
    let kind = gguf::get_str(meta, &format!("{arch}.rope.scaling.type"))?;
    match kind {
        None | Some("none") => Ok(1.0
            / t.hparam_f32("rope.scale_linear")?
                .filter(|f| *f > 0.0)
                .unwrap_or(1.0)),
        Some("linear") => Ok(1.0
            / t.hparam_f32("rope.scaling.factor")?
                .filter(|f| *f > 0.0)
                .unwrap_or(1.0)),
        Some(other) => Err(Error::InvalidMetadata {
            key: format!("{arch}.rope.scaling.type"),
            detail: format!("rope scaling `{other}` is not implemented (linear and none are)"),
        }),
    }
}
