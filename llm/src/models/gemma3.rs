//! Gemma 3 text models: the decoder with per-head Q/K norms, norms after attention and MLP,
//! GeGLU, embeddings scaled by `sqrt(n_embd)`, and sliding-window attention on five of every
//! six layers (those use a rope base of 10 000, the global layers the file's base).

use super::decoder::{Activation, Config, Decoder, Layer, RopeStyle, rope_frequencies};
use super::llama::linear_rope_scale;
use super::load::Tensors;
use crate::error::{Error, Result};
use crate::gguf::{self, Architecture};

pub(crate) fn load(t: &Tensors<'_>) -> Result<Decoder> {
    let n_embd = t.require("embedding_length")?;
    let n_layer = t.require("block_count")?;
    let n_head = t.require("attention.head_count")?;
    let n_kv_head = t.hparam("attention.head_count_kv")?.unwrap_or(n_head);
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
        return Err(Error::InvalidMetadata {
            key: "gemma3.attention.head_count_kv".into(),
            detail: format!("{n_kv_head} key/value heads for {n_head} query heads"),
        });
    }
    let head_dim = t.hparam("attention.key_length")?.unwrap_or(n_embd / n_head);
    let rope_dims = t
        .hparam("rope.dimension_count")?
        .unwrap_or(head_dim)
        .min(head_dim);
    let scale = linear_rope_scale(t, Architecture::Gemma3)?;
    let global = rope_frequencies(
        rope_dims,
        t.hparam_f32("rope.freq_base")?.unwrap_or(1_000_000.0),
        scale,
        None,
    );
    let local = rope_frequencies(
        rope_dims,
        t.hparam_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
        1.0,
        None,
    );
    let window = t.hparam("attention.sliding_window")?.filter(|w| *w > 0);
    let sliding = sliding_layers(t, n_layer)?;
    let rms_eps = t
        .hparam_f32("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-6);
    // Gemma's reference scales queries by 1/sqrt(head_dim), except the 27B model
    // (62 layers) by 1/sqrt(n_embd / n_head), as llama.cpp does.
    let attn_scale = if n_layer == 62 {
        1.0 / ((n_embd / n_head) as f32).sqrt()
    } else {
        1.0 / (head_dim as f32).sqrt()
    };

    let (vocab, _) = t.shape2("token_embd.weight")?;
    let embed = t.matrix("token_embd.weight", vocab, n_embd)?;
    let output = if t.has("output.weight") {
        t.matrix("output.weight", vocab, n_embd)?
    } else {
        embed.clone()
    };
    let (q_dim, kv_dim) = (n_head * head_dim, n_kv_head * head_dim);
    let mut layers = Vec::with_capacity(n_layer);
    for (i, &is_sliding) in sliding.iter().enumerate() {
        let name = |s: &str| format!("blk.{i}.{s}");
        let (ff, _) = t.shape2(&name("ffn_gate.weight"))?;
        let sliding_here = is_sliding && window.is_some();
        layers.push(Layer {
            attn_norm: t.vector(&name("attn_norm.weight"), n_embd)?,
            wq: t.matrix(&name("attn_q.weight"), q_dim, n_embd)?,
            wk: t.matrix(&name("attn_k.weight"), kv_dim, n_embd)?,
            wv: t.matrix(&name("attn_v.weight"), kv_dim, n_embd)?,
            wo: t.matrix(&name("attn_output.weight"), n_embd, q_dim)?,
            bias_q: None,
            bias_k: None,
            bias_v: None,
            q_norm: Some(t.vector(&name("attn_q_norm.weight"), head_dim)?),
            k_norm: Some(t.vector(&name("attn_k_norm.weight"), head_dim)?),
            post_attn_norm: Some(t.vector(&name("post_attention_norm.weight"), n_embd)?),
            ffn_norm: t.vector(&name("ffn_norm.weight"), n_embd)?,
            w_gate: t.matrix(&name("ffn_gate.weight"), ff, n_embd)?,
            w_up: t.matrix(&name("ffn_up.weight"), ff, n_embd)?,
            w_down: t.matrix(&name("ffn_down.weight"), n_embd, ff)?,
            post_ffn_norm: Some(t.vector(&name("post_ffw_norm.weight"), n_embd)?),
            inv_freq: if sliding_here {
                local.clone()
            } else {
                global.clone()
            },
            window: if sliding_here { window } else { None },
        });
    }
    Ok(Decoder {
        cfg: Config {
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            rms_eps,
            rope_style: RopeStyle::Halves,
            embed_scale: Some((n_embd as f32).sqrt()),
            activation: Activation::GeluTanh,
            attn_scale,
            logit_softcap: t
                .hparam_f32("final_logit_softcapping")?
                .filter(|c| *c > 0.0),
        },
        embed,
        layers,
        out_norm: t.vector("output_norm.weight", n_embd)?,
        output,
    })
}

/// Which layers use the sliding window: `attention.sliding_window_pattern` as a list of
/// booleans, or as a period `p` (every `p`-th layer global), 6 by default.
fn sliding_layers(t: &Tensors<'_>, n_layer: usize) -> Result<Vec<bool>> {
    let key = "gemma3.attention.sliding_window_pattern";
    if let Some(values) = gguf::get_array(t.gguf.metadata(), key).ok().flatten() {
        let flags: Option<Vec<bool>> = values.iter().map(|v| v.to_bool().ok()).collect();
        return match flags {
            Some(f) if f.len() == n_layer => Ok(f),
            _ => Err(Error::InvalidMetadata {
                key: key.into(),
                detail: format!("expected {n_layer} booleans"),
            }),
        };
    }
    let period = t.hparam("attention.sliding_window_pattern")?.unwrap_or(6);
    Ok((0..n_layer)
        .map(|i| period == 0 || i % period < period - 1)
        .collect())
}
