//! The decoder-only transformer every supported family is an instance of: token embedding,
//! `n` blocks of (RMS-normed) grouped-query attention with rotary positions and a gated MLP,
//! a final norm and the vocabulary projection. The families differ only in [`Config`] and in
//! which optional weights a [`Layer`] has (`llama.rs`, `qwen2.rs`, `gemma3.rs` fill them in).
//!
//! A forward pass takes several sequences at once, each with its own KV cache and any number
//! of new tokens: a prompt prefill is one sequence with many tokens; a batched decode step is
//! many sequences with one token each. All their rows go through every weight matrix together,
//! so the weights are read once per step; attention is per row against its own sequence's cache.

use crate::error::{Error, Result};
use crate::kernels::{self, Activations, Isa, Matrix, Pool, Product};

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// `(x[2i], x[2i+1])`: llama.cpp's "normal" rope (llama GGUFs are permuted for it).
    Adjacent,
    /// `(x[i], x[i + d/2])`: GPT-NeoX style (Qwen2, Gemma).
    Halves,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// SwiGLU: `silu(gate) · up`.
    Silu,
    /// GeGLU with the tanh approximation of GELU.
    GeluTanh,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    /// Gemma multiplies embeddings by `sqrt(n_embd)`.
    pub embed_scale: Option<f32>,
    pub activation: Activation,
    /// Multiplies `q·k` before the softmax (usually `1/sqrt(head_dim)`).
    pub attn_scale: f32,
    /// `c·tanh(logits/c)` on the output, where a family asks for it.
    pub logit_softcap: Option<f32>,
}

impl Config {
    fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    /// Qwen2's projection biases.
    pub bias_q: Option<Vec<f32>>,
    pub bias_k: Option<Vec<f32>>,
    pub bias_v: Option<Vec<f32>>,
    /// Gemma's per-head RMS norms of queries and keys.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Gemma's norms on the attention and MLP outputs, before the residual add.
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Matrix,
    pub w_up: Matrix,
    pub w_down: Matrix,
    pub post_ffn_norm: Option<Vec<f32>>,
    /// Rotary frequencies, one per rotated pair: the leading `2·len` dimensions of each head
    /// rotate, the rest pass through.
    pub inv_freq: Vec<f32>,
    /// Sliding-window layers attend to this many most recent positions (the current included).
    pub window: Option<usize>,
}

pub(crate) struct Decoder {
    pub cfg: Config,
    pub embed: Matrix,
    pub layers: Vec<Layer>,
    pub out_norm: Vec<f32>,
    pub output: Matrix,
}

/// One sequence's keys and values, per layer, `[position][kv_head][head_dim]`.
///
/// A sliding-window layer keeps only its most recent positions, in a ring of
/// [`ring_slots`] (position `p` in slot `p mod slots`): it never attends further back than
/// its window, and for Gemma 3, whose layers are five in six sliding, a long context would
/// otherwise hold their keys for nothing. The slots beyond the window let a sequence rewind a
/// little (option scoring, a prompt that diverges near the end) without recomputing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache {
    layers: Vec<LayerKv>,
    len: usize,
}

#[derive(Clone, Debug, Default)]
struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
    ring: Option<Ring>,
}

#[derive(Clone, Copy, Debug)]
struct Ring {
    window: usize,
    slots: usize,
    /// The ring holds positions `oldest..len`.
    oldest: usize,
}

/// Ring slots of a sliding-window layer: its window, and as many again for rewinding.
pub(crate) fn ring_slots(window: usize) -> usize {
    2 * window.max(1)
}

impl LayerKv {
    fn slot(&self, pos: usize) -> usize {
        self.ring.map_or(pos, |r| pos % r.slots)
    }

    /// Stores the rows of positions `start..` (`kvd` floats each).
    fn store(&mut self, start: usize, k: &[f32], v: &[f32], kvd: usize) {
        let n = k.len() / kvd;
        // In a ring only the last `slots` positions survive the write.
        let skip = self.ring.map_or(0, |r| n.saturating_sub(r.slots));
        // A ring grows with the sequence until it has all its slots.
        let end = self.ring.map_or(start + n, |r| (start + n).min(r.slots)) * kvd;
        if self.k.len() < end {
            self.k.resize(end, 0.0);
            self.v.resize(end, 0.0);
        }
        for i in skip..n {
            let at = self.slot(start + i) * kvd;
            self.k[at..at + kvd].copy_from_slice(&k[i * kvd..(i + 1) * kvd]);
            self.v[at..at + kvd].copy_from_slice(&v[i * kvd..(i + 1) * kvd]);
        }
        if let Some(r) = &mut self.ring {
            r.oldest = r.oldest.max((start + n).saturating_sub(r.slots));
        }
    }

    /// Whether a sequence cut back to `len` positions still finds its window here.
    fn serves(&self, len: usize) -> bool {
        self.ring
            .is_none_or(|r| len.saturating_sub(r.window.saturating_sub(1)) >= r.oldest)
    }
}

impl Cache {
    pub fn new(layers: &[Layer]) -> Cache {
        Cache {
            layers: layers
                .iter()
                .map(|l| LayerKv {
                    ring: l.window.map(|window| Ring {
                        window,
                        slots: ring_slots(window),
                        oldest: 0,
                    }),
                    ..LayerKv::default()
                })
                .collect(),
            len: 0,
        }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Floats held for keys and values over every layer (what the rings bound).
    #[cfg(test)]
    pub fn floats(&self) -> usize {
        self.layers.iter().map(|l| l.k.len() + l.v.len()).sum()
    }

    /// Forgets everything after the first `len` positions. When a sliding-window layer has
    /// already dropped positions the shortened sequence needs, the whole cache is emptied
    /// instead (the caller feeds the tokens again) and the result is `false`.
    pub fn truncate(&mut self, len: usize, kv_dim: usize) -> bool {
        if len >= self.len {
            return true;
        }
        if !self.layers.iter().all(|l| l.serves(len)) {
            for l in &mut self.layers {
                l.k.clear();
                l.v.clear();
                if let Some(r) = &mut l.ring {
                    r.oldest = 0;
                }
            }
            self.len = 0;
            return false;
        }
        for l in &mut self.layers {
            // A ring that never wrapped is in position order like any other layer; one that
            // did keeps its slots (those past `len` are overwritten before being read).
            if l.ring.is_none_or(|r| self.len <= r.slots) {
                l.k.truncate(len * kv_dim);
                l.v.truncate(len * kv_dim);
            }
        }
        self.len = len;
        true
    }

    /// A copy of the first `len` positions (at most all of them), copying only their part of
    /// each layer; empty when a sliding-window layer no longer holds what they need (see
    /// [`Cache::truncate`]).
    pub fn prefix(&self, len: usize, kv_dim: usize) -> Cache {
        let len = len.min(self.len);
        let mut copy = Cache {
            layers: self
                .layers
                .iter()
                .map(|l| {
                    let keep = match l.ring {
                        Some(r) if self.len > r.slots => l.k.len(),
                        _ => len * kv_dim,
                    };
                    LayerKv {
                        k: l.k[..keep].to_vec(),
                        v: l.v[..keep].to_vec(),
                        ring: l.ring,
                    }
                })
                .collect(),
            len: self.len,
        };
        // Empties the copy when its rings cannot serve `len`.
        copy.truncate(len, kv_dim);
        copy
    }
}

/// This step's rows, as attention reads them.
struct Batch<'a> {
    /// (sequence, position) of every row.
    rows: &'a [(usize, usize)],
    /// The row of each sequence's first new token.
    first_row: &'a [usize],
    /// Every row's keys and values (after rotary embedding).
    k: &'a [f32],
    v: &'a [f32],
}

/// A sequence in a forward pass: its cache and the tokens that follow what it holds.
pub(crate) struct Seq<'a> {
    pub cache: &'a mut Cache,
    pub tokens: &'a [u32],
}

/// Inverse rotary frequencies `base^(-2i/d)` (divided by per-pair factors where a model has
/// them), times a linear position scale.
///
/// Transcendental functions (here and in the rotary angles) are evaluated in f64 and rounded
/// to f32: platform maths libraries differ in the last bit of an f32 result, and one such bit
/// can flip an 8-bit activation rounding downstream; an f64 result within one f64 ulp of an
/// f32 rounding boundary is rare enough that the browser, the edge component and the native
/// hosts all compute the same logits.
pub(crate) fn rope_frequencies(
    dims: usize,
    base: f32,
    scale: f32,
    factors: Option<&[f32]>,
) -> Vec<f32> {
    (0..dims / 2)
        .map(|i| {
            let f = f64::from(base).powf(-((2 * i) as f64) / dims as f64) * f64::from(scale);
            let factor = factors.and_then(|fs| fs.get(i)).copied().unwrap_or(1.0);
            (f / f64::from(factor)) as f32
        })
        .collect()
}

fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean + eps).sqrt()
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let inv = inverse_rms(x, eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

/// From how many rows on the per-row steps between the products (norms, rotary embedding)
/// are split over the pool's threads; below, a fork-join costs more than it saves.
const PARALLEL_ROWS: usize = 8;

/// `f(row, values)` for every row of `width` values of `out`, over the pool's threads when
/// there are [enough rows](PARALLEL_ROWS).
fn for_each_row(
    pool: &Pool,
    out: &mut [f32],
    width: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    if out.len() >= PARALLEL_ROWS * width {
        pool.for_each_chunk(out, width, f);
    } else {
        for (r, row) in out.chunks_exact_mut(width).enumerate() {
            f(r, row);
        }
    }
}

fn rms_norm_rows(pool: &Pool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for_each_row(pool, out, d, &|r, row| {
        rms_norm(&x[r * d..(r + 1) * d], w, eps, row)
    });
}

fn rms_norm_in_place(pool: &Pool, x: &mut [f32], w: &[f32], eps: f32) {
    for_each_row(pool, x, w.len(), &|_, row| {
        let inv = inverse_rms(row, eps);
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    });
}

/// `(sin, cos)` of every rotated pair at every row's position, pairs contiguous per row.
fn rope_table(inv_freq: &[f32], rows: &[(usize, usize)]) -> Vec<(f32, f32)> {
    rows.iter()
        .flat_map(|&(_, pos)| {
            inv_freq.iter().map(move |&f| {
                // In f64 and rounded, for the same result on every platform (see above).
                let (sin, cos) = (pos as f64 * f64::from(f)).sin_cos();
                (sin as f32, cos as f32)
            })
        })
        .collect()
}

/// `(sin, cos)` of every rotated pair at one position (the GPU path's table for a token).
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) fn rope_angles(inv_freq: &[f32], pos: usize) -> Vec<(f32, f32)> {
    rope_table(inv_freq, &[(0, pos)])
}

/// Rotates every head of `x` (one row, `heads × head_dim`) by that row's angles.
fn rope(x: &mut [f32], head_dim: usize, style: RopeStyle, angles: &[(f32, f32)]) {
    let pairs = angles.len();
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(sin, cos)) in angles.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::Halves => (i, i + pairs),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos - x1 * sin;
            head[b] = x0 * sin + x1 * cos;
        }
    }
}

impl Decoder {
    pub fn vocab_size(&self) -> usize {
        self.output.rows()
    }

    pub fn kv_dim(&self) -> usize {
        self.cfg.kv_dim()
    }

    pub fn new_cache(&self) -> Cache {
        Cache::new(&self.layers)
    }

    /// Runs the new tokens of every sequence and returns, per sequence, the logits that follow
    /// its last token. Caches grow by their sequence's tokens. A sequence with no tokens is an
    /// error; on any error no cache has changed.
    pub fn forward(&self, pool: &Pool, isa: Isa, seqs: &mut [Seq<'_>]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.cfg;
        let (d, qd, kvd, hd) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.head_dim);
        let vocab = self.embed.rows();
        // (sequence, position) of every row, sequences in order.
        let mut rows = Vec::new();
        for (s, seq) in seqs.iter().enumerate() {
            if seq.tokens.is_empty() {
                return Err(Error::EmptyInput);
            }
            for (i, &t) in seq.tokens.iter().enumerate() {
                if t as usize >= vocab {
                    return Err(Error::TokenOutOfRange {
                        id: t,
                        vocab_size: vocab,
                    });
                }
                rows.push((s, seq.cache.len + i));
            }
        }
        let n = rows.len();
        // The batch row of each sequence's first new token.
        let first_row: Vec<usize> = seqs
            .iter()
            .scan(0, |next, seq| {
                let at = *next;
                *next += seq.tokens.len();
                Some(at)
            })
            .collect();

        let mut x = vec![0.0f32; n * d];
        let tokens = seqs.iter().flat_map(|s| s.tokens.iter().copied());
        for (xr, t) in x.chunks_exact_mut(d).zip(tokens) {
            self.embed.dequantize_row(t as usize, xr);
            if let Some(scale) = cfg.embed_scale {
                xr.iter_mut().for_each(|v| *v *= scale);
            }
        }

        let mut h = Activations::default();
        let mut normed = vec![0.0f32; n * d];
        let (mut q, mut k, mut v) = (vec![0.0; n * qd], vec![0.0; n * kvd], vec![0.0; n * kvd]);
        let mut attn = vec![0.0f32; n * qd];
        let mut a = Activations::default();
        let mut o = vec![0.0f32; n * d];
        let (mut gate, mut up): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
        let last_rows: Vec<usize> = {
            let mut end = 0;
            seqs.iter()
                .map(|s| {
                    end += s.tokens.len();
                    end - 1
                })
                .collect()
        };
        // Rows that still matter: all of them until the last layer's attention, then only the
        // last row of each sequence (only its logits are returned).
        let mut live = n;
        // Rotary angles, recomputed only when a layer's frequencies differ from the last one's.
        let mut table = Vec::new();
        let mut table_freq: Option<&Vec<f32>> = None;

        for (li, layer) in self.layers.iter().enumerate() {
            // Attention.
            rms_norm_rows(pool, &x, &layer.attn_norm, cfg.rms_eps, &mut normed);
            h.set(&normed, n, d);
            for w in [&layer.wq, &layer.wk, &layer.wv] {
                kernels::prepare_on(pool, w, &mut h);
            }
            kernels::matmul_many(
                pool,
                isa,
                &mut [
                    Product {
                        w: &layer.wq,
                        x: &h,
                        out: &mut q,
                    },
                    Product {
                        w: &layer.wk,
                        x: &h,
                        out: &mut k,
                    },
                    Product {
                        w: &layer.wv,
                        x: &h,
                        out: &mut v,
                    },
                ],
            );
            for (buf, bias, dim) in [
                (&mut q, &layer.bias_q, qd),
                (&mut k, &layer.bias_k, kvd),
                (&mut v, &layer.bias_v, kvd),
            ] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(dim) {
                        row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                    }
                }
            }
            if let Some(w) = &layer.q_norm {
                rms_norm_in_place(pool, &mut q, w, cfg.rms_eps);
            }
            if let Some(w) = &layer.k_norm {
                rms_norm_in_place(pool, &mut k, w, cfg.rms_eps);
            }
            if table_freq != Some(&layer.inv_freq) {
                table = rope_table(&layer.inv_freq, &rows);
                table_freq = Some(&layer.inv_freq);
            }
            let pairs = layer.inv_freq.len();
            for (buf, width) in [(&mut q, qd), (&mut k, kvd)] {
                for_each_row(pool, buf, width, &|r, row| {
                    rope(row, hd, cfg.rope_style, &table[r * pairs..(r + 1) * pairs]);
                });
            }
            {
                let caches: Vec<&Cache> = seqs.iter().map(|s| &*s.cache).collect();
                let batch = Batch {
                    rows: &rows,
                    first_row: &first_row,
                    k: &k,
                    v: &v,
                };
                self.attention(pool, isa, layer, li, &caches, &batch, &q, &mut attn);
            }
            // Stored only now: a ring may have no room for every new position at once, and
            // the rows above read this step's keys from `k` and `v`.
            for (s, seq) in seqs.iter_mut().enumerate() {
                let (r0, n) = (first_row[s], seq.tokens.len());
                let start = seq.cache.len;
                seq.cache.layers[li].store(
                    start,
                    &k[r0 * kvd..(r0 + n) * kvd],
                    &v[r0 * kvd..(r0 + n) * kvd],
                    kvd,
                );
            }

            if li + 1 == self.layers.len() && live != last_rows.len() {
                // From here on only the rows whose logits are wanted.
                for (i, &r) in last_rows.iter().enumerate() {
                    x.copy_within(r * d..(r + 1) * d, i * d);
                    attn.copy_within(r * qd..(r + 1) * qd, i * qd);
                }
                live = last_rows.len();
                x.truncate(live * d);
            }

            a.set(&attn[..live * qd], live, qd);
            kernels::matmul(pool, isa, &layer.wo, &mut a, &mut o);
            if let Some(w) = &layer.post_attn_norm {
                rms_norm_in_place(pool, &mut o[..live * d], w, cfg.rms_eps);
            }
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

            // MLP.
            rms_norm_rows(
                pool,
                &x,
                &layer.ffn_norm,
                cfg.rms_eps,
                &mut normed[..live * d],
            );
            h.set(&normed[..live * d], live, d);
            let ff = layer.w_gate.rows();
            // Every value is written by the products below; the buffers are only resized.
            gate.resize(live * ff, 0.0);
            up.resize(live * ff, 0.0);
            kernels::prepare_on(pool, &layer.w_gate, &mut h);
            kernels::prepare_on(pool, &layer.w_up, &mut h);
            kernels::matmul_many(
                pool,
                isa,
                &mut [
                    Product {
                        w: &layer.w_gate,
                        x: &h,
                        out: &mut gate,
                    },
                    Product {
                        w: &layer.w_up,
                        x: &h,
                        out: &mut up,
                    },
                ],
            );
            let act = cfg.activation;
            // At least a few hundred values per piece, so short rows are not split needlessly.
            let piece = (live * ff).div_ceil(pool.threads()).max(512);
            pool.for_each_chunk(&mut gate, piece, &|item, g| {
                let start = item * piece;
                let u = &up[start..start + g.len()];
                match act {
                    Activation::Silu => isa.silu_mul(g, u),
                    Activation::GeluTanh => isa.gelu_mul(g, u),
                }
            });
            a.set(&gate, live, ff);
            kernels::matmul(pool, isa, &layer.w_down, &mut a, &mut o);
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm_in_place(pool, &mut o[..live * d], w, cfg.rms_eps);
            }
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
        }

        // Only the last row of each sequence is left in `x`.
        for seq in seqs.iter_mut() {
            seq.cache.len += seq.tokens.len();
        }
        let m = last_rows.len();
        rms_norm_rows(
            pool,
            &x[..m * d],
            &self.out_norm,
            cfg.rms_eps,
            &mut normed[..m * d],
        );
        h.set(&normed[..m * d], m, d);
        let vocab_out = self.output.rows();
        let mut logits = vec![0.0f32; m * vocab_out];
        kernels::matmul(pool, isa, &self.output, &mut h, &mut logits);
        if let Some(c) = cfg.logit_softcap {
            let c = f64::from(c);
            logits
                .iter_mut()
                .for_each(|l| *l = (c * (f64::from(*l) / c).tanh()) as f32);
        }
        Ok(logits
            .chunks_exact(vocab_out)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Causal (and, for sliding-window layers, windowed) attention of every row's queries over
    /// its own sequence's keys and values: the cached ones, then this step's (`batch`), one
    /// (row, head) pair per work item.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        pool: &Pool,
        isa: Isa,
        layer: &Layer,
        li: usize,
        caches: &[&Cache],
        batch: &Batch<'_>,
        q: &[f32],
        out: &mut [f32],
    ) {
        let cfg = &self.cfg;
        let (hd, kvd) = (cfg.head_dim, cfg.kv_dim());
        let group = cfg.n_head / cfg.n_kv_head;
        pool.for_each_chunk_interleaved(
            &mut out[..batch.rows.len() * cfg.q_dim()],
            hd,
            &|item, out| {
                let (r, head) = (item / cfg.n_head, item % cfg.n_head);
                let (s, pos) = batch.rows[r];
                let kv = head / group;
                let cached = &caches[s].layers[li];
                let old = caches[s].len;
                // Position `j`'s row in `keys`/`values`: the cache's slot, or this step's row.
                let at = |j: usize| -> (&[f32], &[f32], usize) {
                    if j < old {
                        (&cached.k, &cached.v, cached.slot(j) * kvd + kv * hd)
                    } else {
                        let row = batch.first_row[s] + (j - old);
                        (batch.k, batch.v, row * kvd + kv * hd)
                    }
                };
                let first = layer.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let qh = &q[(r * cfg.n_head + head) * hd..][..hd];
                let mut scores: Vec<f32> = (first..=pos)
                    .map(|j| {
                        let (keys, _, i) = at(j);
                        isa.dot_f32(qh, &keys[i..][..hd]) * cfg.attn_scale
                    })
                    .collect();
                isa.softmax(&mut scores);
                out.fill(0.0);
                for (j, &s) in (first..=pos).zip(&scores) {
                    let (_, values, i) = at(j);
                    isa.axpy(s, &values[i..][..hd], out);
                }
            },
        );
    }
}
