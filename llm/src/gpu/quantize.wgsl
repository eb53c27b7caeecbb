// Rounds activations to 8 bits in blocks of 32, as the CPU path does before every quantised
// product (`llm::kernels::formats::quantise_q8`): `q = round(x · 127 / max|x|)`, the scale
// `d = max|x| / 127` and `s = d · Σq`. One thread per block.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> xq: array<u32>;
@group(0) @binding(2) var<storage, read_write> xds: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= p.n / 32u) {
        return;
    }
    var amax = 0.0;
    for (var e = 0u; e < 32u; e++) {
        amax = max(amax, abs(x[32u * b + e]));
    }
    var inv = 0.0;
    if (amax > 0.0) {
        inv = div_exact(127.0, amax, step.zero);
    }
    var sum = 0i;
    for (var w = 0u; w < 8u; w++) {
        var word = 0u;
        for (var k = 0u; k < 4u; k++) {
            let q = i32(round(clamp(rounded(x[32u * b + 4u * w + k] * inv, step.zero), -127.0, 127.0)));
            sum += q;
            word |= (bitcast<u32>(q) & 0xffu) << (8u * k);
        }
        xq[8u * b + w] = word;
    }
    let d = div_exact(amax, 127.0, step.zero);
    xds[b] = vec2<f32>(d, d * f32(sum));
}
