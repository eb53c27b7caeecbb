// Matrix × vector straight on the GGUF weights, in the CPU path's arithmetic
// (`llm::kernels::scalar`): the 32-value formats against activations rounded to 8 bits, with
// exact integer products per four values and the floats summed in the canonical order.
// Weights are uploaded as their quants, four bytes to a `u32` in block order, and their block
// scales (and minimums) as `f32`. Four rows per workgroup, sixteen threads per row: thread
// (set, k) is lane k of the even blocks (set 0) or of the odd ones (set 1), and walks its
// blocks in order, exactly as the CPU accumulates that lane.

struct Params {
    rows: u32,
    cols: u32,
    // Output row `r` goes to `out_offset + pos * pos_stride + r`: the key/value projections
    // write straight into the cache at the current position.
    out_offset: u32,
    pos_stride: u32,
    // 1: add to what the output holds (the residual stream).
    accumulate: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> quants: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> xds: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<storage, read> step: Step;

var<workgroup> lanes: array<f32, 64>;
var<workgroup> mins: array<f32, 64>;

// Lane sums of the workgroup's rows, combined and written by each row's first thread.
fn finish(row: u32, tid: u32, lane: f32, min_sum: f32) {
    lanes[tid] = lane;
    mins[tid] = min_sum;
    workgroupBarrier();
    if (tid % 16u == 0u && row < p.rows) {
        let b = tid;
        let total = lanes_total(
            lanes[b] + lanes[b + 8u], lanes[b + 1u] + lanes[b + 9u],
            lanes[b + 2u] + lanes[b + 10u], lanes[b + 3u] + lanes[b + 11u],
            lanes[b + 4u] + lanes[b + 12u], lanes[b + 5u] + lanes[b + 13u],
            lanes[b + 6u] + lanes[b + 14u], lanes[b + 7u] + lanes[b + 15u],
        );
        var v = total + (mins[b] + mins[b + 8u]);
        if (p.has_bias != 0u) {
            v = v + bias[row];
        }
        let o = p.out_offset + step.pos * p.pos_stride + row;
        if (p.accumulate != 0u) {
            v = y[o] + v;
        }
        y[o] = v;
    }
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, tid: u32) -> u32 {
    return 4u * (wid.x + wid.y * nwg.x) + tid / 16u;
}

// The exact sum of four products: signed bytes of `xw` against four weight values.
fn dot4(w0: i32, w1: i32, w2: i32, w3: i32, xw: u32) -> i32 {
    let x = bitcast<i32>(xw);
    return w0 * ((x << 24u) >> 24u) + w1 * ((x << 16u) >> 24u) + w2 * ((x << 8u) >> 24u)
        + w3 * (x >> 24u);
}

// Q4_0 and Q4_1: byte j of a block's 16 holds value j (low nibble) and j + 16 (high nibble),
// so lane k < 4 takes the low nibbles of word k and lane k ≥ 4 the high nibbles of word k − 4.
fn nibbles(word: u32, k: u32, offset: i32) -> vec4<i32> {
    let shift = select(0u, 4u, k >= 4u);
    let v = (word >> shift) & 0x0f0f0f0fu;
    return vec4<i32>(
        i32(v & 0xffu) - offset, i32((v >> 8u) & 0xffu) - offset,
        i32((v >> 16u) & 0xffu) - offset, i32(v >> 24u) - offset,
    );
}

fn q4(tid: u32, row: u32, offset: i32, has_min: bool) {
    let lane_id = tid % 16u;
    let parity = lane_id / 8u;
    let k = lane_id % 8u;
    let nb = p.cols / 32u;
    var lane = 0.0;
    var min_sum = 0.0;
    if (row < p.rows) {
        for (var b = parity; b < nb; b += 2u) {
            let blk = row * nb + b;
            let w = nibbles(quants[4u * blk + k % 4u], k, offset);
            let prod = dot4(w.x, w.y, w.z, w.w, xq[8u * b + k]);
            let xd = xds[b];
            if (has_min) {
                lane = lane + rounded((scales[2u * blk] * xd.x) * f32(prod), step.zero);
                if (k == 0u) {
                    min_sum = min_sum + rounded(scales[2u * blk + 1u] * xd.y, step.zero);
                }
            } else {
                lane = lane + rounded((scales[blk] * xd.x) * f32(prod), step.zero);
            }
        }
    }
    finish(row, tid, lane, min_sum);
}

@compute @workgroup_size(64)
fn q4_1(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    q4(tid, row_of(wid, nwg, tid), 0, true);
}

@compute @workgroup_size(64)
fn q4_0(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    q4(tid, row_of(wid, nwg, tid), 8, false);
}

// Q8_0: signed bytes in value order; lane k is word k of the block's eight.
@compute @workgroup_size(64)
fn q8_0(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = row_of(wid, nwg, tid);
    let lane_id = tid % 16u;
    let parity = lane_id / 8u;
    let k = lane_id % 8u;
    let nb = p.cols / 32u;
    var lane = 0.0;
    if (row < p.rows) {
        for (var b = parity; b < nb; b += 2u) {
            let blk = row * nb + b;
            let wb = bitcast<i32>(quants[8u * blk + k]);
            let prod = dot4(
                (wb << 24u) >> 24u, (wb << 16u) >> 24u, (wb << 8u) >> 24u, wb >> 24u,
                xq[8u * b + k],
            );
            lane = lane + rounded((scales[blk] * xds[b].x) * f32(prod), step.zero);
        }
    }
    finish(row, tid, lane, 0.0);
}

// Float weights (halves widened exactly when uploaded) against float activations: value i
// goes to lane i mod 8, in order. Only the even set's threads have values.
@compute @workgroup_size(64)
fn f32w(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = row_of(wid, nwg, tid);
    let lane_id = tid % 16u;
    var lane = 0.0;
    if (row < p.rows && lane_id < 8u) {
        for (var c = lane_id; c < p.cols; c += 8u) {
            lane = lane + rounded(bitcast<f32>(quants[row * p.cols + c]) * x[c], step.zero);
        }
    }
    finish(row, tid, lane, 0.0);
}
