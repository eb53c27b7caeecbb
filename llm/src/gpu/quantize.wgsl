// Rounds activations to 8 bits in blocks of 32, as the CPU path does before every quantised
// product (`llm::kernels::formats::quantise_q8`): `q = round(x · 127 / max|x|)`, the scale
// `d = max|x| / 127` and `s = d · Σq`. One thread per block. `q8k` rounds blocks of 256 for the
// K-quants (`quantise_q8k`): the values, `d` (in `xds[b].x`) and the integer sums of 16.

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
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;

// 127 / max|x| over `len` values from `at` (0 where they are all 0), and max|x|.
fn inverse_scale(at: u32, len: u32) -> vec2<f32> {
    var amax = 0.0;
    for (var e = 0u; e < len; e++) {
        amax = max(amax, abs(x[at + e]));
    }
    var inv = 0.0;
    if (amax > 0.0) {
        inv = div_exact(127.0, amax, step.zero);
    }
    return vec2<f32>(inv, amax);
}

// Values `at..at + 4` rounded to 8 bits (`q = round(x · inv)`), four bytes of a word, and
// their sum.
fn packed4(at: u32, inv: f32) -> vec2<i32> {
    var word = 0u;
    var sum = 0i;
    for (var k = 0u; k < 4u; k++) {
        let q = i32(round(clamp(rounded(x[at + k] * inv, step.zero), -127.0, 127.0)));
        sum += q;
        word |= (bitcast<u32>(q) & 0xffu) << (8u * k);
    }
    return vec2<i32>(bitcast<i32>(word), sum);
}

@compute @workgroup_size(64)
fn q8k(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= p.n / 256u) {
        return;
    }
    let s = inverse_scale(256u * b, 256u);
    for (var g = 0u; g < 16u; g++) {
        var sum = 0i;
        for (var w = 0u; w < 4u; w++) {
            let packed = packed4(256u * b + 16u * g + 4u * w, s.x);
            xq[64u * b + 4u * g + w] = bitcast<u32>(packed.x);
            sum += packed.y;
        }
        sums[16u * b + g] = f32(sum);
    }
    xds[b] = vec2<f32>(div_exact(s.y, 127.0, step.zero), 0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= p.n / 32u) {
        return;
    }
    let s = inverse_scale(32u * b, 32u);
    let inv = s.x;
    let amax = s.y;
    var sum = 0i;
    for (var w = 0u; w < 8u; w++) {
        let packed = packed4(32u * b + 4u * w, inv);
        xq[8u * b + w] = bitcast<u32>(packed.x);
        sum += packed.y;
    }
    let d = div_exact(amax, 127.0, step.zero);
    xds[b] = vec2<f32>(d, d * f32(sum));
}
