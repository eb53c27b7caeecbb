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
    // The part's first row in the whole matrix (a matrix larger than one binding is split
    // by rows; `out_offset` places the part's outputs, this its bias).
    first_row: u32,
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
            v = v + bias[p.first_row + row];
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

// The four values of lane k of a 32-value block from its 16 bytes of nibbles (`word`, the
// block's word k mod 4): byte j holds value j (low nibble) and j + 16 (high nibble), so lane
// k < 4 takes the low nibbles of word k and lane k ≥ 4 the high nibbles of word k − 4. `high`
// holds the Q5 formats' fifth bits, already in place (bit 4 of each byte).
fn lane_values(word: u32, k: u32, high: u32, offset: i32) -> vec4<i32> {
    let shift = select(0u, 4u, k >= 4u);
    let v = ((word >> shift) & 0x0f0f0f0fu) | high;
    return vec4<i32>(
        i32(v & 0xffu) - offset, i32((v >> 8u) & 0xffu) - offset,
        i32((v >> 16u) & 0xffu) - offset, i32(v >> 24u) - offset,
    );
}

// The fifth bits of values 4k..4k+3 (bits 4k.. of the block's `qh`) at bit 4 of each byte.
fn fifth_bits(qh: u32, k: u32) -> u32 {
    let b = (qh >> (4u * k)) & 0xfu;
    return ((b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u)) << 4u;
}

// Q4_0, Q4_1 (four words a block) and Q5_0, Q5_1 (five: the fifth bits, then the nibbles).
fn q32(tid: u32, row: u32, offset: i32, has_min: bool, five: bool) {
    let lane_id = tid % 16u;
    let parity = lane_id / 8u;
    let k = lane_id % 8u;
    let nb = p.cols / 32u;
    let words = select(4u, 5u, five);
    let at = select(0u, 1u, five);
    var lane = 0.0;
    var min_sum = 0.0;
    if (row < p.rows) {
        for (var b = parity; b < nb; b += 2u) {
            let blk = row * nb + b;
            var high = 0u;
            if (five) {
                high = fifth_bits(quants[words * blk], k);
            }
            let w = lane_values(quants[words * blk + at + k % 4u], k, high, offset);
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
    q32(tid, row_of(wid, nwg, tid), 0, true, false);
}

@compute @workgroup_size(64)
fn q4_0(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    q32(tid, row_of(wid, nwg, tid), 8, false, false);
}

@compute @workgroup_size(64)
fn q5_1(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    q32(tid, row_of(wid, nwg, tid), 0, true, true);
}

@compute @workgroup_size(64)
fn q5_0(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    q32(tid, row_of(wid, nwg, tid), 16, false, true);
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

// The K-quants against activations rounded to 8 bits per 256 (`xq` their bytes, `xds[b].x`
// their scale, `x` their integer sums of 16): one exact integer per super-block with the
// sub-block scales applied (and one for the min term), super-block b into lane b mod 8,
// `lane = (lane + (d·d_x)·isum) − (dmin·d_x)·msum`, as `llm::kernels::scalar::k_lanes`. The
// first eight threads of a row hold the lanes; the other eight add zeros. Weights are
// uploaded as each super-block's bytes after its f16 scales (`scales`: d and dmin as f32).

// Byte i of the super-block whose first word is `base`.
fn kbyte(base: u32, i: u32) -> u32 {
    return (quants[base + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

// Scale and min of sub-block j of a Q4_K / Q5_K super-block (ggml's `get_scale_min_k4`).
fn scale_min_k4(base: u32, j: u32) -> vec2<i32> {
    if (j < 4u) {
        return vec2<i32>(i32(kbyte(base, j) & 63u), i32(kbyte(base, j + 4u) & 63u));
    }
    let s = (kbyte(base, j + 4u) & 0xfu) | ((kbyte(base, j - 4u) >> 6u) << 4u);
    let m = (kbyte(base, j + 4u) >> 4u) | ((kbyte(base, j) >> 6u) << 4u);
    return vec2<i32>(i32(s), i32(m));
}

fn sum16(b: u32, g: u32) -> i32 {
    return i32(x[16u * b + g]);
}

fn add_k(lane: f32, d: f32, dmin: f32, b: u32, isum: i32, msum: i32) -> f32 {
    let dy = xds[b].x;
    let l = lane + rounded((d * dy) * f32(isum), step.zero);
    return l - rounded((dmin * dy) * f32(msum), step.zero);
}

// Q4_K (35 words a super-block: 12 scale bytes, 128 of nibbles) and Q5_K (43: scales, 32
// bytes of fifth bits, nibbles).
fn k45(tid: u32, row: u32, five: bool) {
    let lane_id = tid % 16u;
    let nb = p.cols / 256u;
    let words = select(35u, 43u, five);
    let qs = select(12u, 44u, five);
    var lane = 0.0;
    if (row < p.rows && lane_id < 8u) {
        for (var b = lane_id; b < nb; b += 8u) {
            let blk = row * nb + b;
            let base = words * blk;
            var isum = 0i;
            var msum = 0i;
            for (var j = 0u; j < 8u; j++) {
                let sm = scale_min_k4(base, j);
                let shift = 4u * (j % 2u);
                var sub = 0i;
                for (var l = 0u; l < 32u; l += 4u) {
                    var v = (quants[base + (qs + 32u * (j / 2u) + l) / 4u] >> shift) & 0x0f0f0f0fu;
                    if (five) {
                        v |= ((quants[base + (12u + l) / 4u] >> j) & 0x01010101u) << 4u;
                    }
                    sub += dot4(
                        i32(v & 0xffu), i32((v >> 8u) & 0xffu), i32((v >> 16u) & 0xffu),
                        i32(v >> 24u), xq[64u * b + (32u * j + l) / 4u],
                    );
                }
                isum += sm.x * sub;
                msum += sm.y * (sum16(b, 2u * j) + sum16(b, 2u * j + 1u));
            }
            lane = add_k(lane, scales[2u * blk], scales[2u * blk + 1u], b, isum, msum);
        }
    }
    finish(row, tid, lane, 0.0);
}

@compute @workgroup_size(64)
fn q4_k(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    k45(tid, row_of(wid, nwg, tid), false);
}

@compute @workgroup_size(64)
fn q5_k(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    k45(tid, row_of(wid, nwg, tid), true);
}

// Q6_K (52 words a super-block: ql[128], qh[64], sixteen i8 scales; `scales`: d): value
// 128n + 32c + l is the nibble of ql[64n + 32(c mod 2) + l] (low for c < 2) with bits 2c of
// qh[32n + l] above it, less 32.
@compute @workgroup_size(64)
fn q6_k(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = row_of(wid, nwg, tid);
    let lane_id = tid % 16u;
    let nb = p.cols / 256u;
    var lane = 0.0;
    if (row < p.rows && lane_id < 8u) {
        for (var b = lane_id; b < nb; b += 8u) {
            let blk = row * nb + b;
            let base = 52u * blk;
            var isum = 0i;
            for (var g = 0u; g < 16u; g++) {
                // Group g of 16 values: half n, chunk c, offset l0 within the chunk.
                let n = g / 8u;
                let c = (g / 2u) % 4u;
                let l0 = 16u * (g % 2u);
                var sub = 0i;
                for (var l = l0; l < l0 + 16u; l += 4u) {
                    let lo = (quants[base + (64u * n + 32u * (c % 2u) + l) / 4u] >> (4u * (c / 2u)))
                        & 0x0f0f0f0fu;
                    let hi = (quants[base + (128u + 32u * n + l) / 4u] >> (2u * c)) & 0x03030303u;
                    let v = lo | (hi << 4u);
                    sub += dot4(
                        i32(v & 0xffu) - 32, i32((v >> 8u) & 0xffu) - 32,
                        i32((v >> 16u) & 0xffu) - 32, i32(v >> 24u) - 32,
                        xq[64u * b + (128u * n + 32u * c + l) / 4u],
                    );
                }
                let sc = (bitcast<i32>(kbyte(base, 192u + g)) << 24u) >> 24u;
                isum += sc * sub;
            }
            lane = add_k(lane, scales[blk], 0.0, b, isum, 0);
        }
    }
    finish(row, tid, lane, 0.0);
}
