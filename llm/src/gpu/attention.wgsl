// Attention of one token's queries over the cached keys and values, one workgroup per query
// head, in the CPU path's arithmetic: each score a dot product in eight lanes summed in the
// canonical order, the softmax with the CPU's `exp` and its sum taken in position order, the
// output a sum over positions in order. Grouped-query heads share a key/value head.

struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    // Positions the cache holds (the scores scratch has this many per head).
    ctx: u32,
    scale: f32,
    // Sliding-window layers attend to this many latest positions; 0: all.
    window: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<storage, read> step: Step;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;
var<workgroup> inv_sum: f32;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let hd = p.head_dim;
    let kvd = p.n_kv_head * hd;
    let kvh = h / (p.n_head / p.n_kv_head);
    let len = step.pos + 1u;
    var first = 0u;
    if (p.window != 0u && len > p.window) {
        first = len - p.window;
    }
    let sb = h * p.ctx;
    var mx = bitcast<f32>(0xff7fffffu); // the lowest finite f32
    for (var t = first + tid; t < len; t += WG) {
        var l = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (var d = 0u; d < hd; d++) {
            l[d % 8u] = l[d % 8u] + rounded(q[h * hd + d] * k[t * kvd + kvh * hd + d], step.zero);
        }
        let s = lanes_total(l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]) * p.scale;
        scores[sb + t] = s;
        mx = max(mx, s);
    }
    red[tid] = mx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    for (var t = first + tid; t < len; t += WG) {
        scores[sb + t] = exp_cephes(scores[sb + t] - m, step.zero);
    }
    storageBarrier();
    workgroupBarrier();
    if (tid == 0u) {
        var sum = 0.0;
        for (var t = first; t < len; t++) {
            sum = sum + scores[sb + t];
        }
        inv_sum = div_exact(1.0, sum, step.zero);
    }
    workgroupBarrier();
    let inv = inv_sum;
    for (var d = tid; d < hd; d += WG) {
        var acc = 0.0;
        for (var t = first; t < len; t++) {
            acc = acc + rounded(rounded(scores[sb + t] * inv, step.zero) * v[t * kvd + kvh * hd + d], step.zero);
        }
        out[h * hd + d] = acc;
    }
}
