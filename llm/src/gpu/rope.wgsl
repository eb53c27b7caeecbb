// Rotary positions, in place, for every head of one row: the row starts at
// `offset + pos * pos_stride` (keys are rotated where the projection wrote them, in the cache).
// The (sin, cos) of each rotated pair at this position are computed on the CPU, in f64 and
// rounded, exactly as the CPU path does.

struct Params {
    heads: u32,
    head_dim: u32,
    pairs: u32,
    // 0: pairs (2i, 2i+1) (llama); 1: pairs (i, i + pairs) (GPT-NeoX style).
    halves: u32,
    offset: u32,
    pos_stride: u32,
    // This layer's angles start here (layers with different frequencies have their own).
    angles_at: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<storage, read> angles: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.heads * p.pairs) {
        return;
    }
    let h = t / p.pairs;
    let i = t % p.pairs;
    var a = 2u * i;
    var b = 2u * i + 1u;
    if (p.halves != 0u) {
        a = i;
        b = i + p.pairs;
    }
    let base = p.offset + step.pos * p.pos_stride + h * p.head_dim;
    let sc = angles[p.angles_at + i];
    let x0 = v[base + a];
    let x1 = v[base + b];
    v[base + a] = rounded(x0 * sc.y, step.zero) - rounded(x1 * sc.x, step.zero);
    v[base + b] = rounded(x0 * sc.x, step.zero) + rounded(x1 * sc.y, step.zero);
}
