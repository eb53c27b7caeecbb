// RMS norm of one vector, `out = x · (1 / sqrt(mean(x²) + eps)) · w`, summing the squares in
// order on one thread as the CPU path does (a tree sum would round differently). `rows` norms
// rows of `out` in place (Gemma's per-head norms of queries and keys, one workgroup a row);
// `add_to` adds the norm of `x` to `out` (Gemma's norms after attention and the MLP, before
// the residual add).

struct Params {
    n: u32,
    eps: f32,
    // `rows`: row r starts at `pos * pos_stride + r * n` of `out`.
    pos_stride: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> step: Step;

const WG: u32 = 256u;
var<workgroup> inv_rms: f32;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
    if (tid == 0u) {
        var s = 0.0;
        for (var i = 0u; i < p.n; i++) {
            s = s + rounded(x[i] * x[i], step.zero);
        }
        inv_rms = inverse_rms(s);
    }
    workgroupBarrier();
    let inv = inv_rms;
    for (var i = tid; i < p.n; i += WG) {
        out[i] = x[i] * inv * w[i];
    }
}

fn inverse_rms(s: f32) -> f32 {
    return div_exact(1.0, sqrt_exact(div_exact(s, f32(p.n), step.zero) + p.eps, step.zero), step.zero);
}

@compute @workgroup_size(256)
fn rows(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = step.pos * p.pos_stride + wid.x * p.n;
    if (tid == 0u) {
        var s = 0.0;
        for (var i = 0u; i < p.n; i++) {
            s = s + rounded(out[base + i] * out[base + i], step.zero);
        }
        inv_rms = inverse_rms(s);
    }
    workgroupBarrier();
    let inv = inv_rms;
    for (var i = tid; i < p.n; i += WG) {
        out[base + i] = out[base + i] * inv * w[i];
    }
}

@compute @workgroup_size(256)
fn add_to(@builtin(local_invocation_index) tid: u32) {
    if (tid == 0u) {
        var s = 0.0;
        for (var i = 0u; i < p.n; i++) {
            s = s + rounded(x[i] * x[i], step.zero);
        }
        inv_rms = inverse_rms(s);
    }
    workgroupBarrier();
    let inv = inv_rms;
    for (var i = tid; i < p.n; i += WG) {
        out[i] = out[i] + rounded(x[i] * inv * w[i], step.zero);
    }
}
