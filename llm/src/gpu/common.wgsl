// Shared by the kernels: the CPU path's `exp` (Cephes' polynomial, `llm::kernels::math::exp`)
// and the canonical sum of eight lanes (`llm::kernels::scalar`), so the GPU rounds where the
// CPU does.
//
// `rounded(v, zero)` passes a product through an integer no-op (`zero` is `step.zero`, always
// 0 but read from a storage buffer, so no compiler can know it): shader compilers may fuse `a·b + c` into one
// multiply-add that rounds once, where the CPU rounds twice, and a last-bit difference can
// flip an 8-bit rounding downstream.

// What changes from token to token, bound to every kernel.
struct Step {
    // The token's position.
    pos: u32,
    // Always 0 (see `rounded`).
    zero: u32,
    _pad0: u32,
    _pad1: u32,
}

fn rounded(v: f32, zero: u32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ zero);
}

fn exp_cephes(x_in: f32, z: u32) -> f32 {
    let x = clamp(x_in, -87.33, 88.37);
    // round() is ties-to-even, like the CPU's magic-number rounding.
    let n = round(rounded(x * 1.4426950216293335, z));
    let r = x - rounded(n * 0.6933594, z) - rounded(n * -2.1219444e-4, z);
    var p = 1.9875691e-4;
    p = rounded(p * r, z) + 1.3981999e-3;
    p = rounded(p * r, z) + 8.333452e-3;
    p = rounded(p * r, z) + 4.1665796e-2;
    p = rounded(p * r, z) + 0.16666665;
    p = rounded(p * r, z) + 0.5;
    let e = rounded(rounded(p * r, z) * r, z) + r + 1.0;
    return rounded(e * bitcast<f32>(u32(i32(n) + 127) << 23u), z);
}

fn lanes_total(l0: f32, l1: f32, l2: f32, l3: f32, l4: f32, l5: f32, l6: f32, l7: f32) -> f32 {
    return ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7));
}

// Correctly rounded division and square root. Shader compilers may divide through an
// approximate reciprocal and take square roots to a few ulp; the CPU's IEEE results differ in
// the last bit, which flips 8-bit roundings downstream. The hardware result is corrected by
// trying its neighbours against the exact residual (Dekker's product, no fused multiply-add).

fn split_hi(a: f32, z: u32) -> f32 {
    let c = rounded(4097.0 * a, z);
    return c - (c - a);
}

// a·b − p exactly, for p = a·b rounded (Dekker's TwoProduct).
fn product_error(a: f32, b: f32, p: f32, z: u32) -> f32 {
    let ah = split_hi(a, z);
    let al = a - ah;
    let bh = split_hi(b, z);
    let bl = b - bh;
    return ((rounded(ah * bh, z) - p) + rounded(ah * bl, z) + rounded(al * bh, z))
        + rounded(al * bl, z);
}

// |a − q·b|, closely enough to rank neighbouring candidates q.
fn div_residual(a: f32, b: f32, q: f32, z: u32) -> f32 {
    let p = rounded(q * b, z);
    return abs((a - p) - product_error(q, b, p, z));
}

fn div_exact(a: f32, b: f32, z: u32) -> f32 {
    let q0 = a / b;
    let bits = bitcast<u32>(q0);
    if (q0 == 0.0 || (bits & 0x7f800000u) == 0x7f800000u) {
        return q0;
    }
    var best = q0;
    var best_r = div_residual(a, b, q0, z);
    let below = bitcast<f32>(bits - 1u);
    let r_below = div_residual(a, b, below, z);
    if (r_below < best_r) {
        best = below;
        best_r = r_below;
    }
    let above = bitcast<f32>(bits + 1u);
    if (div_residual(a, b, above, z) < best_r) {
        best = above;
    }
    return best;
}

// |v − s²|, to rank neighbouring candidates s.
fn sqrt_residual(v: f32, s: f32, z: u32) -> f32 {
    let p = rounded(s * s, z);
    return abs((v - p) - product_error(s, s, p, z));
}

fn sqrt_exact(v: f32, z: u32) -> f32 {
    let s0 = sqrt(v);
    let bits = bitcast<u32>(s0);
    if (!(s0 > 0.0) || (bits & 0x7f800000u) == 0x7f800000u) {
        return s0;
    }
    var best = s0;
    var best_r = sqrt_residual(v, s0, z);
    let below = bitcast<f32>(bits - 1u);
    let r_below = sqrt_residual(v, below, z);
    if (r_below < best_r) {
        best = below;
        best_r = r_below;
    }
    let above = bitcast<f32>(bits + 1u);
    if (sqrt_residual(v, above, z) < best_r) {
        best = above;
    }
    return best;
}
