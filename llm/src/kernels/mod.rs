//! The project's own compute kernels: quantised matrix × activation products straight on
//! GGUF's block layouts, plus the few float helpers attention needs.
//!
//! Every weight type has one scalar implementation ([`scalar`]) that is the reference, and
//! SIMD versions for x86-64 AVX2 ([`avx2`], picked at run time; [`avx512`] with VNNI takes
//! a prefill's products where the CPU has it) and WebAssembly simd128 ([`simd128`], picked at
//! compile time) that are tested against it. Integer products are exact in every version and
//! floats are summed in one canonical order, so every version gives the same bits.
//!
//! Activations are quantised once per product to 8 bits in blocks of 32 with an `f32` scale
//! ([`Activations`]), for every quantised weight type alike: the K-quants then see a finer
//! activation scale than llama.cpp's 256-wide blocks give them, which costs one float multiply
//! per 32 weights and is never less accurate.
//!
//! [`matmul`] splits the weight rows across a [`Pool`]'s threads; a prefill feeds several
//! tokens at once, and each weight row is then multiplied with up to four tokens per pass so it
//! is unpacked once for all of them.

pub mod formats;
pub mod math;
pub mod pool;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    feature = "relaxed-simd"
))]
pub mod relaxed;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

pub use formats::WeightType;
pub use pool::Pool;
pub use scalar::Unpacked;

use std::sync::Arc;

/// How many activation rows one pass over a weight row serves.
pub const TILE: usize = 4;

/// Bytes a matrix reads its weights from: a memory map or an owned buffer, shared by every
/// matrix of a model.
#[derive(Clone)]
pub struct Storage(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl Storage {
    pub fn new(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Self {
        Storage(Arc::new(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} bytes)", self.bytes().len())
    }
}

/// A weight matrix of `rows × cols` in one of the [`WeightType`] layouts, row-major: each row
/// is `cols / block_elems` whole blocks.
#[derive(Clone, Debug)]
pub struct Matrix {
    ty: WeightType,
    rows: usize,
    cols: usize,
    storage: Storage,
    offset: usize,
}

/// Why bytes could not be read as a matrix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("a {ty:?} row holds whole blocks of {block} values, but the row has {cols}")]
    PartialBlock {
        ty: WeightType,
        block: usize,
        cols: usize,
    },
    #[error(
        "a {rows}×{cols} {ty:?} matrix needs {needed} bytes at offset {offset}, but only {available} are there"
    )]
    OutOfBounds {
        ty: WeightType,
        rows: usize,
        cols: usize,
        needed: usize,
        offset: usize,
        available: usize,
    },
}

impl Matrix {
    /// A matrix over `storage[offset..]`, checked to fit.
    pub fn new(
        ty: WeightType,
        rows: usize,
        cols: usize,
        storage: Storage,
        offset: usize,
    ) -> Result<Self, MatrixError> {
        if !cols.is_multiple_of(ty.block_elems()) {
            return Err(MatrixError::PartialBlock {
                ty,
                block: ty.block_elems(),
                cols,
            });
        }
        let needed = ty.row_bytes(cols).checked_mul(rows);
        let available = storage.bytes().len().saturating_sub(offset);
        match needed {
            Some(needed) if needed <= available && offset <= storage.bytes().len() => Ok(Matrix {
                ty,
                rows,
                cols,
                storage,
                offset,
            }),
            _ => Err(MatrixError::OutOfBounds {
                ty,
                rows,
                cols,
                needed: needed.unwrap_or(usize::MAX),
                offset,
                available,
            }),
        }
    }

    /// A matrix that owns `bytes`.
    pub fn from_bytes(
        ty: WeightType,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<Self, MatrixError> {
        Self::new(ty, rows, cols, Storage::new(bytes), 0)
    }

    /// An `f32` matrix from values (row-major).
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<Self, MatrixError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(WeightType::F32, rows, cols, bytes)
    }

    pub fn weight_type(&self) -> WeightType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols)
    }

    /// The raw blocks of rows `range`, contiguous.
    fn rows_bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        let len = self.row_bytes();
        let start = self.offset + range.start * len;
        &self.storage.bytes()[start..self.offset + range.end * len]
    }

    /// The raw blocks of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let len = self.row_bytes();
        let start = self.offset + r * len;
        &self.storage.bytes()[start..start + len]
    }

    /// Row `r` as floats (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        formats::dequantize_row(self.ty, self.row(r), &mut out[..self.cols]);
    }
}

/// Activation rows, kept as floats (for float weights) and, made on first use, quantised to
/// 8 bits in the layouts the quantised weight types read ([`formats::ActivationKind`]).
#[derive(Debug, Default, Clone)]
pub struct Activations {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
    q8: Option<Q8Rows>,
    q8k: Option<Q8KRows>,
}

/// [`formats::ActivationKind::Q8`]: per block of 32, `qs` with scale `d` and `s = d · Σ qs`
/// (the sum serves the weight types whose blocks carry a min).
#[derive(Debug, Default, Clone)]
pub struct Q8Rows {
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    /// `qs` widened to i16, where the kernels read them so ([`WIDE`]).
    pub wide: Vec<i16>,
    /// −128 × the sum of every four values, where the CPU runs the AVX-512 kernels
    /// ([`neg_sums_kept`], see `avx512::neg_sums`); else empty.
    pub neg_sums: Vec<i32>,
}

/// Whether the Q8 activations also keep [`Q8Rows::neg_sums`]: made once per product, they
/// spare every signed weight row a sign fix per block and token in the AVX-512 kernels.
fn neg_sums_kept() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::supported();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the activations also keep their 8-bit values widened to i16: simd128 has no byte
/// product that sums, so its kernels multiply i16 with `i32x4.dot_i16x8`, and widening each
/// activation once per product beats widening it once per weight row.
/// (The relaxed-SIMD build keeps the simd128 kernels for the signed formats.)
const WIDE: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// [`formats::ActivationKind::Q8K`]: per block of 256, `qs` with scale `d`, and the integer
/// sum of every 16 values.
#[derive(Debug, Default, Clone)]
pub struct Q8KRows {
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub sums: Vec<i16>,
    /// `qs` widened to i16, where the kernels read them so ([`WIDE`]).
    pub wide: Vec<i16>,
}

/// One activation row as the kernels see it (the quantised views are empty when not made).
#[derive(Clone, Copy, Debug)]
pub struct ActRow<'a> {
    pub values: &'a [f32],
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub kqs: &'a [i8],
    pub kd: &'a [f32],
    pub ksums: &'a [i16],
    /// `qs` and `kqs` widened to i16 (empty unless [`WIDE`]).
    pub qs16: &'a [i16],
    pub kqs16: &'a [i16],
    /// [`Q8Rows::neg_sums`] of this row (empty unless [`neg_sums_kept`]).
    pub neg_sums: &'a [i32],
}

impl Activations {
    /// `rows × cols` values, row-major.
    pub fn new(values: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(values.len(), rows * cols, "activation shape");
        Activations {
            rows,
            cols,
            values,
            q8: None,
            q8k: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Replaces the contents, keeping the buffers.
    pub fn set(&mut self, values: &[f32], rows: usize, cols: usize) {
        assert_eq!(values.len(), rows * cols, "activation shape");
        self.values.clear();
        self.values.extend_from_slice(values);
        self.rows = rows;
        self.cols = cols;
        // Stale now; `quantise` makes them again when a product needs them.
        if let Some(q) = &mut self.q8 {
            q.qs.clear();
        }
        if let Some(q) = &mut self.q8k {
            q.qs.clear();
        }
    }

    /// Whether the layout `kind` is there and current.
    fn has(&self, kind: formats::ActivationKind) -> bool {
        let n = self.rows * self.cols;
        match kind {
            formats::ActivationKind::Float => true,
            formats::ActivationKind::Q8 => self.q8.as_ref().is_some_and(|q| q.qs.len() == n),
            formats::ActivationKind::Q8K => self.q8k.as_ref().is_some_and(|q| q.qs.len() == n),
        }
    }

    /// Makes layout `kind` if it is not there (`cols` must be a multiple of its block).
    /// Quantises the rows for `kind`, split by rows over `pool`'s threads when there are
    /// [enough](QUANTISE_PARALLEL_ROWS) (each row's result is the same either way).
    fn quantise(&mut self, pool: Option<&Pool>, kind: formats::ActivationKind) {
        if self.has(kind) {
            return;
        }
        let (n, c) = (self.rows * self.cols, self.cols);
        let shares = match pool {
            Some(p) if self.rows >= QUANTISE_PARALLEL_ROWS => p.threads().min(self.rows),
            _ => 1,
        };
        // Whole rows per share.
        let rows_per = self.rows.div_ceil(shares).max(1);
        match kind {
            formats::ActivationKind::Float => {}
            formats::ActivationKind::Q8 => {
                let per = c / formats::Q8_BLOCK;
                let q = self.q8.get_or_insert_with(Q8Rows::default);
                q.qs.resize(n, 0);
                q.d.resize(n / formats::Q8_BLOCK, 0.0);
                q.s.resize(n / formats::Q8_BLOCK, 0.0);
                let parts = self
                    .values
                    .chunks(rows_per * c)
                    .zip(q.qs.chunks_mut(rows_per * c))
                    .zip(q.d.chunks_mut(rows_per * per))
                    .zip(q.s.chunks_mut(rows_per * per))
                    .map(|(((x, qs), d), s)| (x, qs, d, s));
                in_parts(pool, parts, &|(x, qs, d, s)| {
                    formats::quantise_q8(x, qs, d, s)
                });
                widen(WIDE, &q.qs, &mut q.wide);
                q.neg_sums.clear();
                #[cfg(target_arch = "x86_64")]
                if neg_sums_kept() {
                    q.neg_sums.resize(n / 4, 0);
                    avx512::neg_sums(&q.qs, &mut q.neg_sums);
                }
            }
            formats::ActivationKind::Q8K => {
                let per = c / formats::QK_K;
                let q = self.q8k.get_or_insert_with(Q8KRows::default);
                q.qs.resize(n, 0);
                q.d.resize(n / formats::QK_K, 0.0);
                q.sums.resize(n / formats::QK_K * 16, 0);
                let parts = self
                    .values
                    .chunks(rows_per * c)
                    .zip(q.qs.chunks_mut(rows_per * c))
                    .zip(q.d.chunks_mut(rows_per * per))
                    .zip(q.sums.chunks_mut(rows_per * per * 16))
                    .map(|(((x, qs), d), sums)| (x, qs, d, sums));
                in_parts(pool, parts, &|(x, qs, d, sums)| {
                    formats::quantise_q8k(x, qs, d, sums)
                });
                widen(WIDE, &q.qs, &mut q.wide);
            }
        }
    }

    fn row(&self, t: usize) -> ActRow<'_> {
        let c = self.cols;
        let values = &self.values[t * c..(t + 1) * c];
        let ((qs, d, s, qs16), neg_sums) = match &self.q8 {
            Some(q) if self.has(formats::ActivationKind::Q8) => {
                let b = c / formats::Q8_BLOCK;
                (
                    (
                        &q.qs[t * c..(t + 1) * c],
                        &q.d[t * b..(t + 1) * b],
                        &q.s[t * b..(t + 1) * b],
                        row_of(&q.wide, t, c),
                    ),
                    q.neg_sums.get(t * c / 4..(t + 1) * c / 4).unwrap_or(&[]),
                )
            }
            _ => ((&[][..], &[][..], &[][..], &[][..]), &[][..]),
        };
        let (kqs, kd, ksums, kqs16) = match &self.q8k {
            Some(q) if self.has(formats::ActivationKind::Q8K) => {
                let b = c / formats::QK_K;
                (
                    &q.qs[t * c..(t + 1) * c],
                    &q.d[t * b..(t + 1) * b],
                    &q.sums[t * b * 16..(t + 1) * b * 16],
                    row_of(&q.wide, t, c),
                )
            }
            _ => (&[][..], &[][..], &[][..], &[][..]),
        };
        ActRow {
            values,
            qs,
            d,
            s,
            kqs,
            kd,
            ksums,
            qs16,
            kqs16,
            neg_sums,
        }
    }
}

/// Row `t` of `cols` values of a buffer that may be empty (the widened values).
fn row_of(v: &[i16], t: usize, cols: usize) -> &[i16] {
    v.get(t * cols..(t + 1) * cols).unwrap_or(&[])
}

/// The order in which [`WIDE`] activations keep each 16 values (the simd128 kernels' weight
/// layout, see `simd128::Wide`).
pub const WIDE_ORDER: [usize; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15];

/// `out` = `qs` widened to i16, each 16 values in [`WIDE_ORDER`], when `on`; else empty.
fn widen(on: bool, qs: &[i8], out: &mut Vec<i16>) {
    out.clear();
    if on {
        for chunk in qs.chunks_exact(16) {
            out.extend(WIDE_ORDER.iter().map(|&i| i16::from(chunk[i])));
        }
    }
}

impl ActRow<'_> {
    /// Whether this row covers `cols` values in the layout `ty` reads (the SIMD kernels'
    /// pointer reads rely on it).
    pub fn covers(&self, ty: WeightType, cols: usize) -> bool {
        match ty.activation() {
            formats::ActivationKind::Float => self.values.len() >= cols,
            formats::ActivationKind::Q8 => {
                self.qs.len() >= cols
                    && self.d.len() >= cols / 32
                    && self.s.len() >= cols / 32
                    && (!WIDE || self.qs16.len() >= cols)
                    && (!neg_sums_kept() || self.neg_sums.len() >= cols / 4)
            }
            formats::ActivationKind::Q8K => {
                self.kqs.len() >= cols
                    && self.kd.len() >= cols / formats::QK_K
                    && self.ksums.len() >= cols / 16
                    && (!WIDE || self.kqs16.len() >= cols)
            }
        }
    }
}

/// Which instruction set the kernels use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 with VNNI for the products on unpacked rows (a prefill's), AVX2 for the rest.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Isa {
    /// The fastest set this machine runs. `LADDER_KERNELS` names another that it also runs
    /// (`scalar`, the reference, or `avx2` on an AVX-512 machine); an unknown or unavailable
    /// name keeps the fastest.
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            let wanted = std::env::var("LADDER_KERNELS").unwrap_or_default();
            Self::available()
                .into_iter()
                .find(|isa| isa.name() == wanted)
                .unwrap_or_else(Self::best)
        })
    }

    #[allow(unreachable_code)]
    fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if avx512::supported() {
            return Isa::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx2;
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Isa::Simd128;
        Isa::Scalar
    }

    /// The set's name as logs and pages show it: `scalar`, `avx2`, `simd128`, or
    /// `relaxed-simd` (the simd128 set of a build with the `relaxed-simd` feature).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 if cfg!(feature = "relaxed-simd") => "relaxed-simd",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => "simd128",
        }
    }

    /// Every set this machine can run, the reference first (for tests and benchmarks).
    pub fn available() -> Vec<Isa> {
        let mut all = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if Self::best() == Isa::Avx512 {
            all.push(Isa::Avx2);
        }
        if Self::best() != Isa::Scalar {
            all.push(Self::best());
        }
        all
    }

    /// `N` dot products of one weight row with `N` activation rows.
    pub fn dot_rows<const N: usize>(
        self,
        ty: WeightType,
        w: &[u8],
        x: [ActRow<'_>; N],
    ) -> [f32; N] {
        let cols = w.len() / ty.block_bytes() * ty.block_elems();
        assert!(
            x.iter().all(|r| r.covers(ty, cols)),
            "activations not prepared for {ty:?}"
        );
        // SAFETY: checked just above.
        unsafe { self.dot_rows_unchecked(ty, w, &x) }
    }

    /// Whether [`Isa::unpack_row`] takes rows of `ty`: the 32-value formats on every set, and
    /// Q4_K/Q5_K on AVX2.
    pub fn unpacks(self, ty: WeightType) -> bool {
        match self {
            // Q6_K's values and scales are cheap to decode per tile: unpacking it measured no
            // faster.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 if matches!(ty, WeightType::Q4K | WeightType::Q5K) => true,
            _ => ty.block_elems() == 32,
        }
    }

    /// Unpacks `row`, of a type this set [unpacks](Isa::unpacks), into `out` (see
    /// [`Unpacked`]); the 32-value formats give the same bytes on every set.
    pub fn unpack_row(self, ty: WeightType, row: &[u8], out: &mut Unpacked) {
        match self {
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::unpack_row(ty, row, out) },
            _ => scalar::unpack_row(ty, row, out),
        }
    }

    /// `N` dot products of an unpacked weight row (see [`Unpacked`]) with `N` rows; the same
    /// results as [`Isa::dot_rows`] on the packed row.
    ///
    /// # Safety
    /// Every row of `x` must cover the row's columns in the 8-bit layout.
    #[inline]
    unsafe fn dot_unpacked_unchecked<const N: usize>(
        self,
        u: &Unpacked,
        x: &[ActRow<'_>; N],
    ) -> [f32; N] {
        match self {
            Isa::Scalar => scalar::dot_unpacked(u, x),
            // SAFETY: as in `dot_rows_unchecked`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::dot_unpacked(u, x) },
            // SAFETY: `Avx512` is only chosen when `avx512::supported`; the rows cover `u`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::dot_unpacked(u, x) },
            // SAFETY: as in `dot_rows_unchecked`.
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => unsafe { simd128_dot_unpacked(u, x) },
        }
    }

    /// `out[i]` = row `i` of `rows` (rows of `row_bytes`) times `x`, with one dispatch for
    /// the run.
    ///
    /// # Safety
    /// `x` must [cover](ActRow::covers) each row's columns in `ty`'s layout.
    #[inline]
    unsafe fn dot_run_unchecked(
        self,
        ty: WeightType,
        rows: &[u8],
        row_bytes: usize,
        x: &ActRow<'_>,
        out: &mut [f32],
    ) {
        match self {
            // SAFETY: as in `dot_rows_unchecked`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::dot_run(ty, rows, row_bytes, x, out) },
            // SAFETY: as in `dot_rows_unchecked`; relaxed SIMD is part of a build with the
            // feature (see `simd128_dot_rows`).
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => unsafe {
                #[cfg(feature = "relaxed-simd")]
                relaxed::dot_run(ty, rows, row_bytes, x, out);
                #[cfg(not(feature = "relaxed-simd"))]
                simd128::dot_run(ty, rows, row_bytes, x, out);
            },
            Isa::Scalar => {
                let x = std::array::from_ref(x);
                scalar::each_row!(rows, row_bytes, out, |w| scalar::dot_rows::<1>(ty, w, x));
            }
        }
    }

    /// # Safety
    /// Every row of `x` must [cover](ActRow::covers) `w`'s columns in `ty`'s layout.
    #[inline]
    unsafe fn dot_rows_unchecked<const N: usize>(
        self,
        ty: WeightType,
        w: &[u8],
        x: &[ActRow<'_>; N],
    ) -> [f32; N] {
        match self {
            Isa::Scalar => scalar::dot_rows(ty, w, x),
            // SAFETY: `Avx2` is only chosen when the CPU reports AVX2, FMA and F16C; the
            // caller guarantees the rows cover `w`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::dot_rows(ty, w, x) },
            // SAFETY: the caller guarantees the rows cover `w`.
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => unsafe { simd128_dot_rows(ty, w, x) },
        }
    }
}

/// The simd128 kernels, or the relaxed-SIMD ones where the build has them.
///
/// # Safety
/// As [`simd128::dot_rows`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn simd128_dot_rows<const N: usize>(
    ty: WeightType,
    w: &[u8],
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    // SAFETY: the caller's contract; relaxed SIMD is part of this build (an engine without
    // it rejects the whole module, so these calls never run there).
    #[cfg(feature = "relaxed-simd")]
    return unsafe { relaxed::dot_rows(ty, w, x) };
    // SAFETY: the caller's contract.
    #[cfg(not(feature = "relaxed-simd"))]
    unsafe {
        simd128::dot_rows(ty, w, x)
    }
}

/// As [`simd128_dot_rows`], for an unpacked row.
///
/// # Safety
/// As [`simd128::dot_unpacked`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn simd128_dot_unpacked<const N: usize>(u: &Unpacked, x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: as in `simd128_dot_rows`.
    #[cfg(feature = "relaxed-simd")]
    return unsafe { relaxed::dot_unpacked(u, x) };
    // SAFETY: the caller's contract.
    #[cfg(not(feature = "relaxed-simd"))]
    unsafe {
        simd128::dot_unpacked(u, x)
    }
}

/// One product of a batch: `out[t·rows + r] = w.row(r) · x.row(t)`.
pub struct Product<'a> {
    pub w: &'a Matrix,
    pub x: &'a Activations,
    pub out: &'a mut [f32],
}

/// `out = x · wᵀ` for one matrix (see [`matmul_many`]).
pub fn matmul(pool: &Pool, isa: Isa, w: &Matrix, x: &mut Activations, out: &mut [f32]) {
    prepare_on(pool, w, x);
    matmul_many(pool, isa, &mut [Product { w, x, out }]);
}

/// Makes `x` ready for products with `w` (quantises it the way `w`'s type reads it).
pub fn prepare(w: &Matrix, x: &mut Activations) {
    assert_eq!(w.cols, x.cols, "matrix and activations disagree on width");
    x.quantise(None, w.ty.activation());
}

/// [`prepare`], the rows split over `pool`'s threads.
pub fn prepare_on(pool: &Pool, w: &Matrix, x: &mut Activations) {
    assert_eq!(w.cols, x.cols, "matrix and activations disagree on width");
    x.quantise(Some(pool), w.ty.activation());
}

/// From how many rows on [`prepare_on`] splits the quantisation over the threads.
const QUANTISE_PARALLEL_ROWS: usize = 8;

/// Runs `f` on every part, the parts spread over `pool`'s threads (one part per thread as
/// `Activations::quantise` cuts them; all on this thread without a pool).
fn in_parts<P: Send>(pool: Option<&Pool>, parts: impl Iterator<Item = P>, f: &(dyn Fn(P) + Sync)) {
    let parts: Vec<std::sync::Mutex<Option<P>>> =
        parts.map(|p| std::sync::Mutex::new(Some(p))).collect();
    let run = |share: usize, shares: usize| {
        for part in parts.iter().skip(share).step_by(shares.max(1)) {
            // A poisoned lock means `f` panicked on this part; the panic is already on its way.
            if let Some(p) = part.lock().ok().and_then(|mut p| p.take()) {
                f(p);
            }
        }
    };
    match pool {
        Some(pool) if parts.len() > 1 => pool.run(parts.len(), &run),
        _ => run(0, 1),
    }
}

/// Several products in one parallel region, their rows split evenly over the pool's threads
/// (one fork-join for, say, the Q, K and V projections together). Every `x` must have been
/// [`prepare`]d for its `w`.
pub fn matmul_many(pool: &Pool, isa: Isa, products: &mut [Product<'_>]) {
    let total: usize = products.iter().map(|p| p.w.rows).sum();
    for p in products.iter() {
        assert_eq!(
            p.w.cols, p.x.cols,
            "matrix and activations disagree on width"
        );
        assert!(p.out.len() >= p.x.rows * p.w.rows, "output too small");
        assert!(p.x.has(p.w.ty.activation()), "activations not prepared");
    }
    let outs: Vec<SendPtr> = products
        .iter_mut()
        .map(|p| SendPtr(p.out.as_mut_ptr()))
        .collect();
    let products = &*products;
    let threads = pool.threads().min(total.max(1));
    pool.run(threads, &|tid, n| {
        let (start, end) = split(total, tid, n);
        let mut base = 0;
        for (p, out) in products.iter().zip(&outs) {
            let (lo, hi) = (start.max(base), end.min(base + p.w.rows));
            if lo < hi {
                // SAFETY: rows [lo, hi) of this product are this thread's alone, and every
                // index written is below `x.rows · w.rows`, checked above.
                unsafe { rows_product(isa, p.w, p.x, out.0, lo - base, hi - base) };
            }
            base += p.w.rows;
        }
    });
}

/// A raw output pointer shared by the threads of one product (they write disjoint rows).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the threads of `matmul_many` write disjoint elements and are joined before the
// borrow of the output ends.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Thread `tid` of `n`'s share of `0..total`.
pub fn split(total: usize, tid: usize, n: usize) -> (usize, usize) {
    let per = total / n;
    let extra = total % n;
    let start = tid * per + tid.min(extra);
    (start, start + per + usize::from(tid < extra))
}

/// # Safety
/// `out` must be valid for `x.rows · w.rows` writes and rows `lo..hi` not written by anyone
/// else meanwhile.
unsafe fn rows_product(isa: Isa, w: &Matrix, x: &Activations, out: *mut f32, lo: usize, hi: usize) {
    let n = x.rows;
    let stride = w.rows;
    let acts: Vec<ActRow<'_>> = (0..n).map(|t| x.row(t)).collect();
    assert!(
        acts.iter().all(|a| a.covers(w.ty, w.cols)),
        "activations not prepared"
    );
    // The tiles are built once and lent to the kernels: an `ActRow` is seven slices, and
    // copying four of them for every row costs as much as a short row's products.
    let tiles: Vec<[ActRow<'_>; TILE]> = acts
        .chunks_exact(TILE)
        .map(|c| std::array::from_fn(|j| c[j]))
        .collect();
    // Cache blocking: a band of weight rows (a few tens of KB) meets every tile of tokens
    // while both stay in cache. With many tokens, the 32-value formats (and, on AVX2, Q4_K
    // and Q5_K) are unpacked to bytes once per row rather than once per tile of four tokens.
    let band = (BAND_BYTES / w.row_bytes().max(1)).max(1);
    let unpack = n >= UNPACK_FROM && isa.unpacks(w.ty);
    let mut unpacked: Vec<Unpacked> = Vec::new();
    let mut r0 = lo;
    while r0 < hi {
        let r1 = (r0 + band).min(hi);
        if unpack {
            unpacked.resize_with(r1 - r0, Unpacked::default);
            for (u, r) in unpacked.iter_mut().zip(r0..r1) {
                isa.unpack_row(w.ty, w.row(r), u);
            }
        }
        for (k, tile) in tiles.iter().enumerate() {
            for (i, r) in (r0..r1).enumerate() {
                // SAFETY: every row covers `w`, checked above; every index written is below
                // n · stride.
                unsafe {
                    let dots = if unpack {
                        isa.dot_unpacked_unchecked::<TILE>(&unpacked[i], tile)
                    } else {
                        isa.dot_rows_unchecked::<TILE>(w.ty, w.row(r), tile)
                    };
                    for (j, d) in dots.into_iter().enumerate() {
                        *out.add((TILE * k + j) * stride + r) = d;
                    }
                }
            }
        }
        for (t, act) in acts.iter().enumerate().skip(TILE * tiles.len()) {
            if !unpack {
                // The band's rows in one run (a decode step is one such token), written
                // straight to this token's outputs.
                // SAFETY: the row covers `w` (checked above); `out` holds `n · stride`
                // values, and token `t`'s rows `r0..r1` lie inside them.
                unsafe {
                    let run = std::slice::from_raw_parts_mut(out.add(t * stride + r0), r1 - r0);
                    isa.dot_run_unchecked(w.ty, w.rows_bytes(r0..r1), w.row_bytes(), act, run);
                }
                continue;
            }
            let one = std::array::from_ref(act);
            for (i, r) in (r0..r1).enumerate() {
                // SAFETY: as above.
                unsafe {
                    let [d] = isa.dot_unpacked_unchecked::<1>(&unpacked[i], one);
                    *out.add(t * stride + r) = d;
                }
            }
        }
        r0 = r1;
    }
}

/// From how many tokens on a product unpacks each row of a 32-value format once.
const UNPACK_FROM: usize = 8;

/// Bytes of weight rows per cache band in [`rows_product`].
const BAND_BYTES: usize = 16 << 10;

impl Isa {
    /// `Σ a·b` over two float slices of equal length.
    #[inline]
    pub fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        match self {
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::dot_f32(a, b) },
            _ => scalar::dot_f32(a, b),
        }
    }

    /// `y += a·x`.
    #[inline]
    pub fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        debug_assert_eq!(x.len(), y.len());
        match self {
            // SAFETY: as in `dot_f32`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::axpy(a, x, y) },
            _ => scalar::axpy(a, x, y),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
