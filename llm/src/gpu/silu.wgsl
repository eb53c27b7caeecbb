// SwiGLU, `gate = gate / (1 + exp(−gate)) · up`, and GeGLU (`gelu`), GELU's tanh form as
// the CPU path computes it, `x / (1 + exp(−2z)) · up` with `2z = c·x·(1 + 0.044715·x²)`, both
// with the CPU path's `exp`.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) {
        return;
    }
    let g = gate[i];
    gate[i] = div_exact(g, 1.0 + exp_cephes(-g, step.zero), step.zero) * up[i];
}

@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) {
        return;
    }
    let z = step.zero;
    let x = gate[i];
    let t = rounded(rounded(0.044715 * x, z) * x, z) + 1.0;
    let z2 = rounded(rounded(1.595769 * x, z) * t, z);
    gate[i] = div_exact(x, 1.0 + exp_cephes(-z2, z), z) * up[i];
}
