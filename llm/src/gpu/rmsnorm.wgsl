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

// 1 / rms of `x` (`from_out`: of `out` from `base`), on the first thread, shared through
// `inv_rms`; every thread returns it.
fn inverse_rms(tid: u32, from_out: bool, base: u32) -> f32 {
    if (tid == 0u) {
        var s = 0.0;
        for (var i = 0u; i < p.n; i++) {
            var v: f32;
            if (from_out) {
                v = out[base + i];
            } else {
                v = x[i];
            }
            s = s + rounded(v * v, step.zero);
        }
        let mean = div_exact(s, f32(p.n), step.zero);
        inv_rms = div_exact(1.0, sqrt_exact(mean + p.eps, step.zero), step.zero);
    }
    workgroupBarrier();
    return inv_rms;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
    let inv = inverse_rms(tid, false, 0u);
    for (var i = tid; i < p.n; i += WG) {
        out[i] = x[i] * inv * w[i];
    }
}

@compute @workgroup_size(256)
fn rows(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = step.pos * p.pos_stride + wid.x * p.n;
    let inv = inverse_rms(tid, true, base);
    for (var i = tid; i < p.n; i += WG) {
        out[base + i] = out[base + i] * inv * w[i];
    }
}

@compute @workgroup_size(256)
fn add_to(@builtin(local_invocation_index) tid: u32) {
    let inv = inverse_rms(tid, false, 0u);
    for (var i = tid; i < p.n; i += WG) {
        out[i] = out[i] + rounded(x[i] * inv * w[i], step.zero);
    }
}
