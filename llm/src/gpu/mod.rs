//! The forward pass on a GPU through WebGPU (`wgpu`): the browser's WebGPU on wasm32, Vulkan
//! natively. The project's own WGSL kernels ([`matvec.wgsl`](matvec.wgsl) and the others
//! beside this file) run the same decoder as [`crate::models`] one token at a time: quantised
//! mat-vecs straight on the GGUF blocks, RMS norms, rotary positions, attention over a KV cache
//! held in GPU buffers, SwiGLU or GeGLU. Only the token's embedding row (dequantised on the CPU) goes
//! up and only the last token's logits come back.
//!
//! The kernels do the CPU path's arithmetic, not only its maths: activations rounded to 8 bits
//! per block, exact integer products, floats summed in the canonical lane order, the CPU's
//! `exp`, division and square root corrected to the IEEE result (`common.wgsl`). On
//! SwiftShader the logits equal the CPU path's to the last bit; on lavapipe a last-bit
//! difference in a deep layer can flip an 8-bit rounding, so the tests there bound the gap and
//! allow differing picks only at near-ties.
//!
//! Covered: the llama, qwen2 and gemma3 families (Gemma's per-head and post norms, GeGLU,
//! per-layer rotary frequencies and sliding windows included) with every weight type the CPU
//! kernels have: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F32, F16 and BF16. A
//! matrix larger than the adapter binds in one buffer is split by rows. A final logit
//! soft-cap is refused with [`GpuError::Unsupported`]; callers fall back to the CPU.

use crate::error::Error;
use crate::kernels::formats::{bf16_at, f16_at, f32_at};
use crate::kernels::{Matrix, WeightType};
use crate::models::decoder::{Activation, RopeStyle, rope_angles};
use crate::{Architecture, Model};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Why the GPU path cannot run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter is available ({0})")]
    NoAdapter(String),
    #[error("the GPU refused a device: {0}")]
    Device(String),
    #[error("the GPU path does not run this model: {0}")]
    Unsupported(String),
    #[error("a GPU command failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Engine(#[from] Error),
}

pub type Result<T> = std::result::Result<T, GpuError>;

/// The kernels, one compute pipeline each.
struct Pipelines {
    matvec_layout: wgpu::BindGroupLayout,
    /// One per [`Packing`], in the order of [`Packing::ALL`].
    matvec: Vec<wgpu::ComputePipeline>,
    rmsnorm: (wgpu::BindGroupLayout, wgpu::ComputePipeline),
    /// Gemma's norms: of rows in place, and of a sublayer's output added to the residual.
    norm_rows: wgpu::ComputePipeline,
    norm_add: wgpu::ComputePipeline,
    quantize: (wgpu::BindGroupLayout, wgpu::ComputePipeline),
    quantize_k: wgpu::ComputePipeline,
    rope: (wgpu::BindGroupLayout, wgpu::ComputePipeline),
    attention: (wgpu::BindGroupLayout, wgpu::ComputePipeline),
    silu: (wgpu::BindGroupLayout, wgpu::ComputePipeline),
    gelu: wgpu::ComputePipeline,
}

#[derive(Clone, Copy)]
enum Slot {
    Read,
    ReadWrite,
    Uniform,
}

fn layout(device: &wgpu::Device, label: &str, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match slot {
                    Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    Slot::Uniform => wgpu::BufferBindingType::Uniform,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    layout: &wgpu::BindGroupLayout,
    entry: &str,
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    })
}

impl Pipelines {
    fn new(device: &wgpu::Device) -> Self {
        use Slot::{Read, ReadWrite, Uniform};
        let module = |label: &str, source: &'static str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let matvec = module(
            "matvec",
            concat!(include_str!("common.wgsl"), include_str!("matvec.wgsl")),
        );
        let matvec_layout = layout(
            device,
            "matvec",
            &[Read, Read, Read, Read, Read, Read, ReadWrite, Uniform, Read],
        );
        // A module's `main` with its layout, and its other entry points on the same layout.
        let single = |name: &str, source: &'static str, slots: &[Slot], more: &[&str]| {
            let m = module(name, source);
            let l = layout(device, name, slots);
            let p = pipeline(device, &m, &l, "main");
            let others: Vec<_> = more.iter().map(|e| pipeline(device, &m, &l, e)).collect();
            ((l, p), others)
        };
        let (rmsnorm, mut norms) = single(
            "rmsnorm",
            concat!(include_str!("common.wgsl"), include_str!("rmsnorm.wgsl")),
            &[Read, Read, ReadWrite, Uniform, Read],
            &["rows", "add_to"],
        );
        let (quantize, mut quantize_k) = single(
            "quantize",
            concat!(include_str!("common.wgsl"), include_str!("quantize.wgsl")),
            &[Read, ReadWrite, ReadWrite, Uniform, Read, ReadWrite],
            &["q8k"],
        );
        let (silu, mut gelu) = single(
            "silu",
            concat!(include_str!("common.wgsl"), include_str!("silu.wgsl")),
            &[ReadWrite, Read, Uniform, Read],
            &["gelu"],
        );
        Pipelines {
            matvec: Packing::ALL
                .iter()
                .map(|p| pipeline(device, &matvec, &matvec_layout, p.entry()))
                .collect(),
            matvec_layout,
            rmsnorm,
            norm_add: norms.remove(1),
            norm_rows: norms.remove(0),
            quantize,
            quantize_k: quantize_k.remove(0),
            silu,
            gelu: gelu.remove(0),
            rope: single(
                "rope",
                concat!(include_str!("common.wgsl"), include_str!("rope.wgsl")),
                &[ReadWrite, Read, Uniform, Read],
                &[],
            )
            .0,
            attention: single(
                "attention",
                concat!(include_str!("common.wgsl"), include_str!("attention.wgsl")),
                &[Read, Read, Read, ReadWrite, ReadWrite, Uniform, Read],
                &[],
            )
            .0,
        }
    }
}

/// How a matrix sits in GPU memory: the GGUF quants packed into `u32`s, block scales as `f32`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Packing {
    Q4_1,
    Q4_0,
    Q5_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    F32,
}

impl Packing {
    const ALL: [Packing; 9] = [
        Packing::Q4_1,
        Packing::Q4_0,
        Packing::Q5_1,
        Packing::Q5_0,
        Packing::Q8_0,
        Packing::Q4K,
        Packing::Q5K,
        Packing::Q6K,
        Packing::F32,
    ];

    /// The kernel's entry point in `matvec.wgsl`.
    fn entry(self) -> &'static str {
        match self {
            Packing::Q4_1 => "q4_1",
            Packing::Q4_0 => "q4_0",
            Packing::Q5_1 => "q5_1",
            Packing::Q5_0 => "q5_0",
            Packing::Q8_0 => "q8_0",
            Packing::Q4K => "q4_k",
            Packing::Q5K => "q5_k",
            Packing::Q6K => "q6_k",
            Packing::F32 => "f32w",
        }
    }

    /// The activations the kernel reads.
    fn input(self) -> Input {
        match self {
            Packing::F32 => Input::Float,
            Packing::Q4K | Packing::Q5K | Packing::Q6K => Input::Q8K,
            _ => Input::Q8,
        }
    }
}

/// What a product reads: the float vector, or it rounded to 8 bits in blocks of 32 or 256.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Input {
    Float,
    Q8,
    Q8K,
}

/// A matrix on the GPU: rows `first..first + rows` of it in each part (one part unless the
/// whole is larger than the adapter binds in one buffer).
struct GpuMatrix {
    packing: Packing,
    cols: usize,
    parts: Vec<Part>,
}

struct Part {
    first: usize,
    rows: usize,
    quants: wgpu::Buffer,
    scales: wgpu::Buffer,
}

struct GpuLayer {
    attn_norm: wgpu::Buffer,
    /// Gemma's per-head norms of queries and keys, and its norms after attention and the MLP.
    q_norm: Option<wgpu::Buffer>,
    k_norm: Option<wgpu::Buffer>,
    post_attn_norm: Option<wgpu::Buffer>,
    post_ffn_norm: Option<wgpu::Buffer>,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    wo: GpuMatrix,
    bias: [Option<wgpu::Buffer>; 3],
    ffn_norm: wgpu::Buffer,
    w_gate: GpuMatrix,
    w_up: GpuMatrix,
    w_down: GpuMatrix,
}

/// The model's weights on the GPU, with its kernels; shared by its sessions.
struct Shared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    /// The CPU model: the embedding rows and the configuration come from it.
    model: Model,
    layers: Vec<GpuLayer>,
    out_norm: wgpu::Buffer,
    output: GpuMatrix,
    /// A one-value buffer bound where a kernel's optional input is absent.
    empty: wgpu::Buffer,
    pipelines: Pipelines,
}

/// A model uploaded to a GPU. Cheap to clone; [`GpuModel::session`] opens a sequence.
#[derive(Clone)]
pub struct GpuModel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuModel")
            .field("adapter", &self.shared.adapter)
            .field("model", &self.shared.model.name())
            .finish()
    }
}

/// Why this model cannot run on the GPU path, if it cannot (checked before any GPU work).
pub fn unsupported_reason(model: &Model) -> Option<String> {
    let arch = model.architecture();
    if !matches!(
        arch,
        Architecture::Llama | Architecture::Qwen2 | Architecture::Gemma3
    ) {
        return Some(format!(
            "the {arch} family has no GPU kernels yet (llama, qwen2 and gemma3 have)"
        ));
    }
    if model.decoder().cfg.logit_softcap.is_some() {
        return Some("a final logit soft-cap has no GPU kernel yet".into());
    }
    None
}

fn packing(ty: WeightType) -> Packing {
    match ty {
        WeightType::Q4_1 => Packing::Q4_1,
        WeightType::Q4_0 => Packing::Q4_0,
        WeightType::Q5_1 => Packing::Q5_1,
        WeightType::Q5_0 => Packing::Q5_0,
        WeightType::Q8_0 => Packing::Q8_0,
        WeightType::Q4K => Packing::Q4K,
        WeightType::Q5K => Packing::Q5K,
        WeightType::Q6K => Packing::Q6K,
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => Packing::F32,
    }
}

/// A byte buffer padded to whole `u32`s.
fn words(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
    bytes
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    words(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// The larger of a row's quants and scales as [`pack`] uploads them, in bytes.
fn upload_row_bytes(m: &Matrix) -> usize {
    let ty = m.weight_type();
    if !ty.is_quantised() {
        return 4 * m.cols().max(1);
    }
    let blocks = m.cols() / ty.block_elems();
    let (scales, quants) = match ty {
        WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 => (1, ty.block_bytes() - 2),
        WeightType::Q6K => (1, 208),
        _ => (2, ty.block_bytes() - 4),
    };
    (blocks * quants.max(4 * scales)).max(1)
}

/// Splits rows `rows` of a matrix's GGUF rows into their quants and their scales, losslessly
/// (each block's bytes after its f16 scales, and those scales as `f32`).
fn pack(m: &Matrix, rows: std::ops::Range<usize>) -> (Vec<u8>, Vec<f32>) {
    let ty = m.weight_type();
    let (mut quants, mut scales) = (Vec::new(), Vec::new());
    for r in rows {
        let row = m.row(r);
        match ty {
            WeightType::F32 => {
                quants.extend((0..m.cols()).flat_map(|i| f32_at(row, 4 * i).to_le_bytes()))
            }
            WeightType::F16 => {
                quants.extend((0..m.cols()).flat_map(|i| f16_at(row, 2 * i).to_le_bytes()))
            }
            WeightType::BF16 => {
                quants.extend((0..m.cols()).flat_map(|i| bf16_at(row, 2 * i).to_le_bytes()))
            }
            _ => {
                // (offset of the scales, how many, offset of the quants) in a block.
                let (at, n, q) = match ty {
                    WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 => (0, 1, 2),
                    WeightType::Q6K => (208, 1, 0),
                    _ => (0, 2, 4),
                };
                let size = ty.block_bytes();
                for b in row.chunks_exact(size) {
                    scales.extend((0..n).map(|i| f16_at(b, at + 2 * i)));
                    quants.extend_from_slice(if ty == WeightType::Q6K {
                        &b[..208]
                    } else {
                        &b[q..]
                    });
                }
            }
        }
    }
    if scales.is_empty() {
        scales.push(0.0);
    }
    (words(quants), scales)
}

impl GpuModel {
    /// Uploads `model` to the first GPU adapter (high performance preferred).
    pub async fn new(model: &Model) -> Result<Self> {
        Self::upload(model, None).await
    }

    /// As [`GpuModel::new`], with matrices split into buffers of at most `max_binding` bytes
    /// when given (the tests split small models this way).
    async fn upload(model: &Model, max_binding: Option<u64>) -> Result<Self> {
        if let Some(reason) = unsupported_reason(model) {
            return Err(GpuError::Unsupported(reason));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let adapter_name = if info.name.is_empty() {
            format!("{:?} adapter", info.backend)
        } else {
            info.name.clone()
        };
        // Ask for what the adapter has: the output matrix of a large vocabulary is bigger
        // than WebGPU's default binding limit.
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("llm"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let limits = device.limits();
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(max_binding.unwrap_or(u64::MAX));

        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = |label: &str, bytes: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let matrix = |label: &str, m: &Matrix| -> Result<GpuMatrix> {
            // Rows per part: as many as one binding holds, in multiples of the kernels' four
            // rows per workgroup.
            let fit = (max_binding / upload_row_bytes(m) as u64) as usize;
            let per_part = if fit >= m.rows() {
                m.rows()
            } else {
                fit / 4 * 4
            };
            if per_part == 0 {
                return Err(GpuError::Unsupported(format!(
                    "a row of {label} needs {} bytes; this adapter binds at most {max_binding}",
                    upload_row_bytes(m)
                )));
            }
            let parts = (0..m.rows())
                .step_by(per_part)
                .map(|first| {
                    let rows = per_part.min(m.rows() - first);
                    let (quants, scales) = pack(m, first..first + rows);
                    Part {
                        first,
                        rows,
                        quants: buffer(label, &quants),
                        scales: buffer(label, &f32_bytes(&scales)),
                    }
                })
                .collect();
            Ok(GpuMatrix {
                packing: packing(m.weight_type()),
                cols: m.cols(),
                parts,
            })
        };
        let dec = model.decoder();
        let mut layers = Vec::with_capacity(dec.layers.len());
        for (i, l) in dec.layers.iter().enumerate() {
            let name = |s: &str| format!("blk.{i}.{s}");
            let bias =
                |b: &Option<Vec<f32>>, s: &str| b.as_ref().map(|b| buffer(&name(s), &f32_bytes(b)));
            layers.push(GpuLayer {
                attn_norm: buffer(&name("attn_norm"), &f32_bytes(&l.attn_norm)),
                q_norm: bias(&l.q_norm, "attn_q_norm"),
                k_norm: bias(&l.k_norm, "attn_k_norm"),
                post_attn_norm: bias(&l.post_attn_norm, "post_attention_norm"),
                post_ffn_norm: bias(&l.post_ffn_norm, "post_ffw_norm"),
                wq: matrix(&name("attn_q"), &l.wq)?,
                wk: matrix(&name("attn_k"), &l.wk)?,
                wv: matrix(&name("attn_v"), &l.wv)?,
                wo: matrix(&name("attn_output"), &l.wo)?,
                bias: [
                    bias(&l.bias_q, "attn_q.bias"),
                    bias(&l.bias_k, "attn_k.bias"),
                    bias(&l.bias_v, "attn_v.bias"),
                ],
                ffn_norm: buffer(&name("ffn_norm"), &f32_bytes(&l.ffn_norm)),
                w_gate: matrix(&name("ffn_gate"), &l.w_gate)?,
                w_up: matrix(&name("ffn_up"), &l.w_up)?,
                w_down: matrix(&name("ffn_down"), &l.w_down)?,
            });
        }
        let shared = Shared {
            out_norm: buffer("output_norm", &f32_bytes(&dec.out_norm)),
            output: matrix("output", &dec.output)?,
            empty: buffer("empty", &[0; 4]),
            pipelines: Pipelines::new(&device),
            layers,
            adapter: adapter_name,
            model: model.clone(),
            device,
            queue,
        };
        if let Some(e) = validation.pop().await {
            return Err(GpuError::Failed(e.to_string()));
        }
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Device(format!("out of GPU memory: {e}")));
        }
        // Natively `Shared` is Send + Sync; in the browser wgpu's handles are not, and the
        // module is single-threaded there anyway.
        #[allow(clippy::arc_with_non_send_sync)]
        let shared = Arc::new(shared);
        Ok(GpuModel { shared })
    }

    /// The adapter's name, as the GPU driver reports it.
    pub fn adapter(&self) -> &str {
        &self.shared.adapter
    }

    pub fn model(&self) -> &Model {
        &self.shared.model
    }

    /// A fresh sequence with a KV cache of `context` positions (at most the model's).
    pub async fn session(&self, context: usize) -> Result<GpuSession> {
        GpuSession::new(Arc::clone(&self.shared), context).await
    }
}

/// One recorded kernel launch: replayed for every token.
struct Launch {
    pipeline: Kernel,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
}

#[derive(Clone, Copy)]
enum Kernel {
    Matvec(Packing),
    RmsNorm,
    NormRows,
    NormAdd,
    Quantize,
    QuantizeK,
    Rope,
    Attention,
    Silu,
    Gelu,
}

/// The distinct rotary frequency sets of the layers, in order of first use (Gemma 3 has two:
/// the sliding-window layers' and the global ones').
fn frequency_sets(dec: &crate::models::decoder::Decoder) -> Vec<Vec<f32>> {
    let mut sets: Vec<Vec<f32>> = Vec::new();
    for l in &dec.layers {
        if !sets.contains(&l.inv_freq) {
            sets.push(l.inv_freq.clone());
        }
    }
    sets
}

/// One sequence on the GPU: its KV cache and activations in GPU buffers, and the launches of
/// a token's forward pass, recorded once.
pub struct GpuSession {
    shared: Arc<Shared>,
    tokens: Vec<u32>,
    context: usize,
    /// The layers' rotary frequency sets; set `i`'s angles start at `i · pairs` pairs.
    freqs: Vec<Vec<f32>>,
    pairs: usize,
    x: wgpu::Buffer,
    step: wgpu::Buffer,
    angles: wgpu::Buffer,
    logits: wgpu::Buffer,
    readback: wgpu::Buffer,
    layers: Vec<Launch>,
    head: Vec<Launch>,
}

/// Workgroups for one workgroup per row, in two dimensions past the per-dimension limit.
fn row_groups(rows: usize) -> (u32, u32) {
    let x = rows.clamp(1, 65_535);
    (x as u32, rows.div_ceil(x) as u32)
}

fn uniform(device: &wgpu::Device, values: &[u32]) -> wgpu::Buffer {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: &bytes,
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

impl GpuSession {
    async fn new(shared: Arc<Shared>, context: usize) -> Result<Self> {
        let dec = shared.model.decoder();
        let cfg = &dec.cfg;
        let context = context.clamp(1, shared.model.context_length());
        let device = &shared.device;
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let (qd, kvd) = (cfg.n_head * hd, cfg.n_kv_head * hd);
        let ff = dec.layers.first().map_or(0, |l| l.w_gate.rows());
        let freqs = frequency_sets(dec);
        let pairs = freqs.iter().map(Vec::len).max().unwrap_or(0);
        let vocab = dec.output.rows();
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let storage = |label: &str, floats: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (floats.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let x = storage("x", d);
        let h = storage("h", d);
        let o = storage("sublayer output", d);
        let q = storage("q", qd);
        let att = storage("attention", qd);
        let gate = storage("gate", ff);
        let up = storage("up", ff);
        let scores = storage("scores", cfg.n_head * context);
        let angles = storage("angles", 2 * pairs * freqs.len());
        let logits = storage("logits", vocab);
        // The 8-bit activations of the product being computed: quants (four to a word) and
        // each block's (scale, scale · Σq); for the K-quants, per 256 values, the quants, the
        // scale and the sums of 16.
        let widest = d.max(qd).max(ff);
        let xq = storage("activation quants", widest / 4);
        let xds = storage("activation scales", widest / 32 * 2);
        let xkq = storage("activation quants (K)", widest / 4);
        let xkd = storage("activation scales (K)", widest / 256 * 2);
        let xks = storage("activation sums (K)", widest / 16);
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (vocab * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let step = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let p = &shared.pipelines;
        let group = |layout: &wgpu::BindGroupLayout, buffers: &[wgpu::BindingResource<'_>]| {
            let entries: Vec<wgpu::BindGroupEntry> = buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.clone(),
                })
                .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout,
                entries: &entries,
            })
        };
        let launch = |pipeline: Kernel,
                      layout: &wgpu::BindGroupLayout,
                      buffers: &[&wgpu::Buffer],
                      groups: (u32, u32)| Launch {
            pipeline,
            bind_group: group(
                layout,
                &buffers
                    .iter()
                    .map(|b| b.as_entire_binding())
                    .collect::<Vec<_>>(),
            ),
            groups,
        };
        // x rounded to 8 bits, in blocks of 32 and/or of 256 as the products that follow
        // (`consumers`) read it.
        let quantize = |x: &wgpu::Buffer, n: usize, consumers: &[&GpuMatrix]| {
            let params = uniform(device, &[n as u32, 0, 0, 0]);
            let wants = |input: Input| consumers.iter().any(|m| m.packing.input() == input);
            let mut launches = Vec::new();
            if wants(Input::Q8) {
                launches.push(launch(
                    Kernel::Quantize,
                    &p.quantize.0,
                    &[x, &xq, &xds, &params, &step, &xks],
                    ((n / 32).div_ceil(64).max(1) as u32, 1),
                ));
            }
            if wants(Input::Q8K) {
                launches.push(launch(
                    Kernel::QuantizeK,
                    &p.quantize.0,
                    &[x, &xkq, &xkd, &params, &step, &xks],
                    ((n / 256).div_ceil(64).max(1) as u32, 1),
                ));
            }
            launches
        };
        // y[out_offset + pos·pos_stride + r] (+)= (W·x)[r] (+ bias[r]), with x as quantised
        // by the last `quantize` launches (or read as floats, for float weights); a launch
        // per part of the matrix.
        let matvec = |m: &GpuMatrix,
                      x: &wgpu::Buffer,
                      y: &wgpu::Buffer,
                      bias: Option<&wgpu::Buffer>,
                      pos_stride: usize,
                      accumulate: bool| {
            let (aq, ad, ax) = match m.packing.input() {
                Input::Q8K => (&xkq, &xkd, &xks),
                _ => (&xq, &xds, x),
            };
            m.parts
                .iter()
                .map(|part| {
                    let params = uniform(
                        device,
                        &[
                            part.rows as u32,
                            m.cols as u32,
                            part.first as u32,
                            pos_stride as u32,
                            u32::from(accumulate),
                            u32::from(bias.is_some()),
                            part.first as u32,
                            0,
                        ],
                    );
                    let bias = bias.unwrap_or(&shared.empty).as_entire_binding();
                    Launch {
                        pipeline: Kernel::Matvec(m.packing),
                        bind_group: group(
                            &p.matvec_layout,
                            &[
                                part.quants.as_entire_binding(),
                                part.scales.as_entire_binding(),
                                bias,
                                aq.as_entire_binding(),
                                ad.as_entire_binding(),
                                ax.as_entire_binding(),
                                y.as_entire_binding(),
                                params.as_entire_binding(),
                                step.as_entire_binding(),
                            ],
                        ),
                        groups: row_groups(part.rows.div_ceil(4)),
                    }
                })
                .collect::<Vec<_>>()
        };
        let eps = cfg.rms_eps.to_bits();
        let rmsnorm = |x: &wgpu::Buffer, w: &wgpu::Buffer, out: &wgpu::Buffer| {
            let params = uniform(device, &[d as u32, eps, 0, 0]);
            launch(
                Kernel::RmsNorm,
                &p.rmsnorm.0,
                &[x, w, out, &params, &step],
                (1, 1),
            )
        };
        // Rows `heads` of `head_dim` at `pos · pos_stride` of `v`, normed in place.
        let norm_rows = |v: &wgpu::Buffer, w: &wgpu::Buffer, heads: usize, pos_stride: usize| {
            let params = uniform(device, &[hd as u32, eps, pos_stride as u32, 0]);
            launch(
                Kernel::NormRows,
                &p.rmsnorm.0,
                &[&shared.empty, w, v, &params, &step],
                (heads as u32, 1),
            )
        };
        // x += norm(o)·w.
        let norm_add = |o: &wgpu::Buffer, w: &wgpu::Buffer, x: &wgpu::Buffer| {
            let params = uniform(device, &[d as u32, eps, 0, 0]);
            launch(
                Kernel::NormAdd,
                &p.rmsnorm.0,
                &[o, w, x, &params, &step],
                (1, 1),
            )
        };
        let rope = |v: &wgpu::Buffer, heads: usize, pos_stride: usize, freq: &[f32]| {
            let halves = u32::from(cfg.rope_style == RopeStyle::Halves);
            let set = freqs.iter().position(|f| f == freq).unwrap_or(0);
            let params = uniform(
                device,
                &[
                    heads as u32,
                    hd as u32,
                    freq.len() as u32,
                    halves,
                    0,
                    pos_stride as u32,
                    (set * pairs) as u32,
                    0,
                ],
            );
            launch(
                Kernel::Rope,
                &p.rope.0,
                &[v, &angles, &params, &step],
                (((heads * freq.len()).div_ceil(64)).max(1) as u32, 1),
            )
        };
        // A sublayer's output projection: added to the residual stream, through Gemma's
        // post norm where the layer has one.
        let project = |m: &GpuMatrix, input: &wgpu::Buffer, post: Option<&wgpu::Buffer>| match post
        {
            Some(w) => {
                let mut l = matvec(m, input, &o, None, 0, false);
                l.push(norm_add(&o, w, &x));
                l
            }
            None => matvec(m, input, &x, None, 0, true),
        };
        let mut layers = Vec::new();
        for (l, gl) in dec.layers.iter().zip(&shared.layers) {
            let k_cache = storage("k cache", context * kvd);
            let v_cache = storage("v cache", context * kvd);
            layers.push(rmsnorm(&x, &gl.attn_norm, &h));
            layers.extend(quantize(&h, d, &[&gl.wq, &gl.wk, &gl.wv]));
            layers.extend(matvec(&gl.wq, &h, &q, gl.bias[0].as_ref(), 0, false));
            layers.extend(matvec(
                &gl.wk,
                &h,
                &k_cache,
                gl.bias[1].as_ref(),
                kvd,
                false,
            ));
            layers.extend(matvec(
                &gl.wv,
                &h,
                &v_cache,
                gl.bias[2].as_ref(),
                kvd,
                false,
            ));
            if let Some(w) = &gl.q_norm {
                layers.push(norm_rows(&q, w, cfg.n_head, 0));
            }
            if let Some(w) = &gl.k_norm {
                layers.push(norm_rows(&k_cache, w, cfg.n_kv_head, kvd));
            }
            layers.push(rope(&q, cfg.n_head, 0, &l.inv_freq));
            layers.push(rope(&k_cache, cfg.n_kv_head, kvd, &l.inv_freq));
            let params = uniform(
                device,
                &[
                    cfg.n_head as u32,
                    cfg.n_kv_head as u32,
                    hd as u32,
                    context as u32,
                    cfg.attn_scale.to_bits(),
                    l.window.unwrap_or(0) as u32,
                    0,
                    0,
                ],
            );
            layers.push(launch(
                Kernel::Attention,
                &p.attention.0,
                &[&q, &k_cache, &v_cache, &scores, &att, &params, &step],
                (cfg.n_head as u32, 1),
            ));
            layers.extend(quantize(&att, qd, &[&gl.wo]));
            layers.extend(project(&gl.wo, &att, gl.post_attn_norm.as_ref()));
            layers.push(rmsnorm(&x, &gl.ffn_norm, &h));
            layers.extend(quantize(&h, d, &[&gl.w_gate, &gl.w_up]));
            layers.extend(matvec(&gl.w_gate, &h, &gate, None, 0, false));
            layers.extend(matvec(&gl.w_up, &h, &up, None, 0, false));
            let params = uniform(device, &[ff as u32, 0, 0, 0]);
            let act = match cfg.activation {
                Activation::Silu => Kernel::Silu,
                Activation::GeluTanh => Kernel::Gelu,
            };
            layers.push(launch(
                act,
                &p.silu.0,
                &[&gate, &up, &params, &step],
                (ff.div_ceil(64) as u32, 1),
            ));
            layers.extend(quantize(&gate, ff, &[&gl.w_down]));
            layers.extend(project(&gl.w_down, &gate, gl.post_ffn_norm.as_ref()));
        }
        let mut head = vec![rmsnorm(&x, &shared.out_norm, &h)];
        head.extend(quantize(&h, d, &[&shared.output]));
        head.extend(matvec(&shared.output, &h, &logits, None, 0, false));
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Device(format!("out of GPU memory: {e}")));
        }
        Ok(GpuSession {
            shared: Arc::clone(&shared),
            tokens: Vec::new(),
            context,
            freqs,
            pairs,
            x,
            step,
            angles,
            logits,
            readback,
            layers,
            head,
        })
    }

    /// Tokens fed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Positions this session's cache holds.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Forgets everything after the first `len` tokens (their cache entries are overwritten
    /// by what is fed next).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Feeds `tokens` after those already cached and returns the logits for the next token.
    /// On error the session is as it was, except that cache positions past its tokens may
    /// have been written (they are never read before being written again).
    pub async fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let sh = Arc::clone(&self.shared);
        let dec = sh.model.decoder();
        let vocab = dec.embed.rows();
        if tokens.is_empty() {
            return Err(Error::EmptyInput.into());
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange {
                id,
                vocab_size: vocab,
            }
            .into());
        }
        let needed = self.tokens.len() + tokens.len();
        if needed > self.context {
            return Err(Error::ContextFull {
                needed,
                context: self.context,
            }
            .into());
        }
        let cfg = &dec.cfg;
        let validation = sh.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut row = vec![0.0f32; cfg.n_embd];
        for (i, &t) in tokens.iter().enumerate() {
            let pos = self.tokens.len() + i;
            let last = i + 1 == tokens.len();
            dec.embed.dequantize_row(t as usize, &mut row);
            if let Some(scale) = cfg.embed_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
            sh.queue.write_buffer(&self.x, 0, &f32_bytes(&row));
            let step: Vec<u8> = [pos as u32, 0, 0, 0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            sh.queue.write_buffer(&self.step, 0, &step);
            let mut angles = vec![0.0f32; 2 * self.pairs * self.freqs.len()];
            for (set, freq) in self.freqs.iter().enumerate() {
                for (i, (sin, cos)) in rope_angles(freq, pos).into_iter().enumerate() {
                    angles[2 * (set * self.pairs + i)..][..2].copy_from_slice(&[sin, cos]);
                }
            }
            sh.queue.write_buffer(&self.angles, 0, &f32_bytes(&angles));
            let mut encoder = sh
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("token"),
                    timestamp_writes: None,
                });
                let launches = self
                    .layers
                    .iter()
                    .chain(if last { &self.head[..] } else { &[] });
                for launch in launches {
                    pass.set_pipeline(sh.pipelines.get(launch.pipeline));
                    pass.set_bind_group(0, &launch.bind_group, &[]);
                    pass.dispatch_workgroups(launch.groups.0, launch.groups.1, 1);
                }
            }
            if last {
                encoder.copy_buffer_to_buffer(&self.logits, 0, &self.readback, 0, None);
            }
            sh.queue.submit([encoder.finish()]);
        }
        let (send, receive) = futures_channel::oneshot::channel();
        self.readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = send.send(r);
            });
        // Natively this runs the queue; on the web the browser does, and this returns at once.
        let _ = sh.device.poll(wgpu::PollType::wait_indefinitely());
        let mapped = receive
            .await
            .map_err(|_| GpuError::Failed("the GPU device went away".into()))
            .and_then(|r| r.map_err(|e| GpuError::Failed(e.to_string())));
        if let Some(e) = validation.pop().await {
            if mapped.is_ok() {
                self.readback.unmap();
            }
            return Err(GpuError::Failed(e.to_string()));
        }
        mapped?;
        let logits = {
            let view = self
                .readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Failed(e.to_string()))?;
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        self.readback.unmap();
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}

impl Pipelines {
    fn get(&self, k: Kernel) -> &wgpu::ComputePipeline {
        match k {
            // `ALL` lists the variants in declaration order.
            Kernel::Matvec(packing) => &self.matvec[packing as usize],
            Kernel::RmsNorm => &self.rmsnorm.1,
            Kernel::NormRows => &self.norm_rows,
            Kernel::NormAdd => &self.norm_add,
            Kernel::Quantize => &self.quantize.1,
            Kernel::QuantizeK => &self.quantize_k,
            Kernel::Rope => &self.rope.1,
            Kernel::Attention => &self.attention.1,
            Kernel::Silu => &self.silu.1,
            Kernel::Gelu => &self.gelu,
        }
    }
}

#[cfg(test)]
mod tests;
