//! RecServe's sliding-window quantile threshold (DESIGN.md §1.1).
//!
//! Each tier keeps, per task type, a FIFO window of its last `k` confidences. The threshold is the
//! β-quantile of that window, linearly interpolated at position `β·(n−1)` of the sorted window,
//! computed exactly as NumPy's default `np.quantile(a, β)` (method `"linear"`) computes it, down
//! to the last bit (see [`SlidingWindow::quantile`]).
//!
//! The window keeps a sorted copy of its values next to the FIFO. An update is two binary searches
//! and one `memmove` of the values that lie between the evicted and the inserted one; a query is
//! O(1). At the paper's `k = 10 000` that replaces a per-request sort of 10 000 values.

use crate::error::{OffloadError, Result, finite};
use crate::tier::{TaskType, Tier};
use serde::{Deserialize, Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

/// The window size used when none is given: the paper's `k = 10 000` (the same number as the
/// policy specification's default `k`).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// At most this many slots are reserved up front, so that a huge (but valid) capacity does not
/// allocate memory it may never use; the window grows on demand beyond that.
const MAX_PREALLOCATED: usize = 1 << 14;

fn capacity_error(capacity: usize) -> OffloadError {
    OffloadError::OutOfRange {
        what: "window size k",
        expected: "at least 1",
        value: capacity as f64,
    }
}

fn check_capacity(capacity: usize) -> Result<usize> {
    if capacity == 0 {
        Err(capacity_error(capacity))
    } else {
        Ok(capacity)
    }
}

/// NumPy's `np.quantile(sorted, beta)` with the default `method="linear"`, on an already sorted,
/// NaN-free slice of at least one value.
///
/// This replicates `numpy.lib._function_base_impl._quantile` and `_lerp` operation by operation,
/// so that the result is bit-for-bit the same:
///
/// ```text
/// virtual = (n - 1) * beta
/// lo, hi  = floor(virtual), floor(virtual) + 1      # both -1 (the last) if virtual >= n - 1
/// gamma   = virtual - lo                            # lo = -1 there, so gamma = virtual + 1
/// diff    = sorted[hi] - sorted[lo]
/// result  = sorted[hi] - diff * (1 - gamma)  if gamma >= 0.5
///           sorted[lo] + diff * gamma        otherwise
/// ```
///
/// Exposed so that tests and benchmarks can compare a naive re-sorting reference with the window.
pub fn numpy_linear_quantile(sorted: &[f64], beta: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let last = n - 1;
    let virtual_index = last as f64 * beta;
    let (lo_value, hi_value, gamma) = if virtual_index >= last as f64 {
        // NumPy points both neighbours at index -1 (the last value) and computes gamma against
        // that -1; the difference is then zero, but the branch taken still matters for the sign
        // of a zero result.
        (sorted[last], sorted[last], virtual_index - -1.0)
    } else {
        let floor = virtual_index.floor();
        // `floor` lies in `[0, n - 2]`, so the conversion and `lo + 1` are in bounds.
        let lo = floor as usize;
        (sorted[lo], sorted[lo + 1], virtual_index - floor)
    };
    let diff = hi_value - lo_value;
    if gamma >= 0.5 {
        hi_value - diff * (1.0 - gamma)
    } else {
        lo_value + diff * gamma
    }
}

/// Checks a β for [`SlidingWindow::quantile`]: finite and within `[0, 1]`.
fn check_beta(beta: f64) -> Result<f64> {
    let beta = finite("beta", beta)?;
    if (0.0..=1.0).contains(&beta) {
        Ok(beta)
    } else {
        Err(OffloadError::OutOfRange {
            what: "beta",
            expected: "between 0 and 1",
            value: beta,
        })
    }
}

/// FIFO window of the last `capacity` values, kept sorted on the side so that a β-quantile
/// costs O(1) and an update costs one binary search plus one memmove.
///
/// The sorted copy is ordered by [`f64::total_cmp`], so `-0.0` sorts before `0.0` and evicting a
/// value removes exactly that value's bits. Values are always finite.
///
/// Serialises as `{"capacity": k, "values": [oldest, …, newest]}`; deserialising checks that
/// `k ≥ 1`, that there are at most `k` values and that all are finite, and rebuilds the sorted
/// copy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WindowRepr")]
pub struct SlidingWindow {
    capacity: usize,
    fifo: VecDeque<f64>,
    sorted: Vec<f64>,
}

/// The index in `sorted` before which `value` goes: after every value equal to it.
fn upper_bound(sorted: &[f64], value: f64) -> usize {
    sorted.partition_point(|x| x.total_cmp(&value) != Ordering::Greater)
}

/// The index in `sorted` of the first value with exactly `value`'s bits, if any.
fn position_of(sorted: &[f64], value: f64) -> Option<usize> {
    let i = sorted.partition_point(|x| x.total_cmp(&value) == Ordering::Less);
    (sorted.get(i)?.to_bits() == value.to_bits()).then_some(i)
}

impl SlidingWindow {
    /// A window holding at most `capacity` values; `capacity` must be at least 1.
    pub fn new(capacity: usize) -> Result<Self> {
        let capacity = check_capacity(capacity)?;
        let reserve = capacity.min(MAX_PREALLOCATED);
        Ok(SlidingWindow {
            capacity,
            fifo: VecDeque::with_capacity(reserve),
            sorted: Vec::with_capacity(reserve),
        })
    }

    /// A window of `capacity` holding `values` (oldest first). Errors on a zero capacity, more
    /// values than fit, or a non-finite value.
    pub fn from_values(capacity: usize, values: impl IntoIterator<Item = f64>) -> Result<Self> {
        let capacity = check_capacity(capacity)?;
        let fifo = values
            .into_iter()
            .map(|v| finite("window value", v))
            .collect::<Result<VecDeque<f64>>>()?;
        if fifo.len() > capacity {
            return Err(OffloadError::Config(format!(
                "a window of capacity {capacity} cannot hold {} values; \
                 raise the capacity or drop the oldest values",
                fifo.len()
            )));
        }
        let mut window = SlidingWindow {
            capacity,
            fifo,
            sorted: Vec::new(),
        };
        window.rebuild_sorted();
        Ok(window)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn len(&self) -> usize {
        self.fifo.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }
    /// Whether the next push evicts the oldest value.
    pub fn is_full(&self) -> bool {
        self.fifo.len() >= self.capacity
    }

    /// Appends `value` (rejecting NaN/inf), evicting and returning the oldest when full.
    pub fn push(&mut self, value: f64) -> Result<Option<f64>> {
        let value = finite("window value", value)?;
        if !self.is_full() {
            self.fifo.push_back(value);
            let at = upper_bound(&self.sorted, value);
            self.sorted.insert(at, value);
            return Ok(None);
        }
        let Some(evicted) = self.fifo.pop_front() else {
            // Unreachable: a full window has capacity ≥ 1 values. Kept as a plain insert so that
            // no panic path exists.
            self.fifo.push_back(value);
            self.sorted.push(value);
            return Ok(None);
        };
        self.fifo.push_back(value);
        let removed = position_of(&self.sorted, evicted);
        debug_assert!(removed.is_some(), "sorted copy lost the value {evicted}");
        match removed {
            Some(removed) => {
                // One memmove of the values between the evicted slot and the new value's slot,
                // instead of a remove followed by an insert (two memmoves of the tails).
                let at = upper_bound(&self.sorted, value);
                if at > removed {
                    self.sorted.copy_within(removed + 1..at, removed);
                    self.sorted[at - 1] = value;
                } else {
                    self.sorted.copy_within(at..removed, at + 1);
                    self.sorted[at] = value;
                }
            }
            None => {
                // The sorted copy always mirrors the FIFO; should it not, restore the invariant
                // rather than return a wrong threshold.
                self.rebuild_sorted();
            }
        }
        Ok(Some(evicted))
    }

    /// The β-quantile, linearly interpolated at `β·(n−1)` like NumPy's default percentile;
    /// `None` with fewer than two values. `beta` outside `[0, 1]` is an error.
    ///
    /// The result is bit-for-bit `np.quantile(window, beta)` (NumPy's default
    /// `method="linear"`), including NumPy's switch to `b - (b - a)·(1 - γ)` for `γ ≥ 0.5`; see
    /// [`numpy_linear_quantile`]. (The one possible difference is the sign of a zero result when
    /// the window holds both `0.0` and `-0.0`, which compare equal and which NumPy may order
    /// either way.) Where NumPy's result would be inf or NaN, because the window's values span
    /// more than `f64::MAX`, this is an [`OffloadError::NotFinite`] error instead; confidences
    /// never get there.
    ///
    /// `np.percentile(window, 100·β)` can differ from this in the last bit: NumPy divides
    /// `100·β` by 100 again, which is not always exactly β (for 103 of the 1001 β on a 0.001
    /// grid over a 37-value window, the two NumPy calls disagree in the last bit).
    pub fn quantile(&self, beta: f64) -> Result<Option<f64>> {
        let beta = check_beta(beta)?;
        if self.sorted.len() < 2 {
            return Ok(None);
        }
        let threshold = numpy_linear_quantile(&self.sorted, beta);
        // Only a window whose values span more than `f64::MAX` overflows `b − a` (NumPy then
        // returns inf or NaN); report it instead of handing out a threshold no value can meet.
        finite("window quantile", threshold).map(Some)
    }

    /// Shrinks or grows the window; shrinking drops the oldest values.
    pub fn set_capacity(&mut self, capacity: usize) -> Result<()> {
        let capacity = check_capacity(capacity)?;
        self.capacity = capacity;
        let excess = self.fifo.len().saturating_sub(capacity);
        if excess > 0 {
            self.fifo.drain(..excess);
            self.rebuild_sorted();
            self.fifo.shrink_to(capacity.min(MAX_PREALLOCATED));
            self.sorted.shrink_to(capacity.min(MAX_PREALLOCATED));
        }
        Ok(())
    }

    /// Forgets every value; the capacity stays.
    pub fn clear(&mut self) {
        self.fifo.clear();
        self.sorted.clear();
    }

    /// Values in arrival order, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.fifo.iter().copied()
    }
    /// Values in ascending order.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    fn rebuild_sorted(&mut self) {
        self.sorted.clear();
        self.sorted.extend(self.fifo.iter().copied());
        self.sorted.sort_unstable_by(f64::total_cmp);
    }
}

/// The serialised form of a [`SlidingWindow`].
#[derive(Deserialize)]
struct WindowRepr {
    capacity: usize,
    values: Vec<f64>,
}

impl TryFrom<WindowRepr> for SlidingWindow {
    type Error = OffloadError;

    fn try_from(repr: WindowRepr) -> Result<Self> {
        SlidingWindow::from_values(repr.capacity, repr.values)
    }
}

/// Serialises without copying the values.
#[derive(Serialize)]
struct WindowRef<'a> {
    capacity: usize,
    values: &'a VecDeque<f64>,
}

impl Serialize for SlidingWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        WindowRef {
            capacity: self.capacity,
            values: &self.fifo,
        }
        .serialize(serializer)
    }
}

/// One window per (tier, task type), all with the same capacity `k`.
///
/// Serialises as `{"capacity": k, "windows": [{"tier": "device", "task": "chat", "values":
/// [oldest, …]}, …]}`, validated on the way in like [`SlidingWindow`] (and a (tier, task) pair
/// may appear only once). The default is empty with capacity [`DEFAULT_CAPACITY`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WindowsRepr")]
pub struct Windows {
    capacity: usize,
    windows: BTreeMap<(Tier, TaskType), SlidingWindow>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            capacity: DEFAULT_CAPACITY,
            windows: BTreeMap::new(),
        }
    }
}

impl Windows {
    pub fn new(capacity: usize) -> Result<Self> {
        Ok(Windows {
            capacity: check_capacity(capacity)?,
            windows: BTreeMap::new(),
        })
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Records `confidence` in the (tier, task) window and returns that window, which now
    /// includes it (RecServe takes the threshold over a window that holds the current value).
    pub fn observe(
        &mut self,
        tier: Tier,
        task: TaskType,
        confidence: f64,
    ) -> Result<&SlidingWindow> {
        let confidence = finite("confidence", confidence)?;
        let window = match self.windows.entry((tier, task)) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(SlidingWindow::new(self.capacity)?)
            }
        };
        window.push(confidence)?;
        Ok(window)
    }
    pub fn get(&self, tier: Tier, task: TaskType) -> Option<&SlidingWindow> {
        self.windows.get(&(tier, task))
    }
    /// Changes every window's capacity (and that of windows created later); shrinking drops the
    /// oldest values.
    pub fn set_capacity(&mut self, capacity: usize) -> Result<()> {
        let capacity = check_capacity(capacity)?;
        for window in self.windows.values_mut() {
            window.set_capacity(capacity)?;
        }
        self.capacity = capacity;
        Ok(())
    }
    /// Every window that has seen a value, in (tier, task) order.
    pub fn iter(&self) -> impl Iterator<Item = (Tier, TaskType, &SlidingWindow)> + '_ {
        self.windows
            .iter()
            .map(|(&(tier, task), window)| (tier, task, window))
    }
    /// Whether no window has seen a value yet.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// The serialised form of [`Windows`].
#[derive(Deserialize)]
struct WindowsRepr {
    capacity: usize,
    windows: Vec<WindowEntryRepr>,
}

#[derive(Deserialize)]
struct WindowEntryRepr {
    tier: Tier,
    task: TaskType,
    values: Vec<f64>,
}

impl TryFrom<WindowsRepr> for Windows {
    type Error = OffloadError;

    fn try_from(repr: WindowsRepr) -> Result<Self> {
        let mut windows = Windows::new(repr.capacity)?;
        for entry in repr.windows {
            let window = SlidingWindow::from_values(repr.capacity, entry.values)?;
            if windows
                .windows
                .insert((entry.tier, entry.task), window)
                .is_some()
            {
                return Err(OffloadError::Config(format!(
                    "the window of tier {} and task {} appears twice",
                    entry.tier, entry.task
                )));
            }
        }
        Ok(windows)
    }
}

#[derive(Serialize)]
struct WindowsRef<'a> {
    capacity: usize,
    windows: Vec<WindowEntryRef<'a>>,
}

#[derive(Serialize)]
struct WindowEntryRef<'a> {
    tier: Tier,
    task: TaskType,
    values: &'a VecDeque<f64>,
}

impl Serialize for Windows {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        WindowsRef {
            capacity: self.capacity,
            windows: self
                .windows
                .iter()
                .map(|(&(tier, task), window)| WindowEntryRef {
                    tier,
                    task,
                    values: &window.fifo,
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn window(capacity: usize, values: &[f64]) -> SlidingWindow {
        let mut w = SlidingWindow::new(capacity).unwrap();
        for &v in values {
            w.push(v).unwrap();
        }
        w
    }

    fn naive_sorted(w: &SlidingWindow) -> Vec<f64> {
        let mut v: Vec<f64> = w.values().collect();
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn capacity_zero_is_an_error() {
        assert!(matches!(
            SlidingWindow::new(0),
            Err(OffloadError::OutOfRange { .. })
        ));
        assert!(matches!(
            Windows::new(0),
            Err(OffloadError::OutOfRange { .. })
        ));
        let mut w = window(3, &[1.0]);
        assert!(w.set_capacity(0).is_err());
        assert_eq!(w.capacity(), 3);
        let mut ws = Windows::new(3).unwrap();
        assert!(ws.set_capacity(0).is_err());
        assert_eq!(ws.capacity(), 3);
    }

    #[test]
    fn non_finite_values_are_rejected_and_leave_the_window_alone() {
        let mut w = window(3, &[0.5]);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(w.push(bad), Err(OffloadError::NotFinite { .. })));
        }
        assert_eq!(w.values().collect::<Vec<_>>(), vec![0.5]);
        assert_eq!(w.sorted(), &[0.5]);
        let mut ws = Windows::new(3).unwrap();
        assert!(ws.observe(Tier::Device, TaskType::Chat, f64::NAN).is_err());
        assert!(ws.is_empty(), "a rejected value creates no window");
    }

    #[test]
    fn no_threshold_below_two_values() {
        let empty = SlidingWindow::new(5).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.quantile(0.3).unwrap(), None);
        assert_eq!(window(5, &[0.4]).quantile(0.3).unwrap(), None);
        assert_eq!(window(5, &[0.4, 0.6]).quantile(0.5).unwrap(), Some(0.5));
    }

    #[test]
    fn a_window_of_one_never_has_a_threshold() {
        let mut w = SlidingWindow::new(1).unwrap();
        assert_eq!(w.push(0.1).unwrap(), None);
        for (i, v) in [0.2, 0.3, 0.9].into_iter().enumerate() {
            let evicted = w.push(v).unwrap();
            assert_eq!(evicted, Some([0.1, 0.2, 0.3][i]));
            assert_eq!(w.len(), 1);
            assert_eq!(w.sorted(), &[v]);
            for beta in [0.0, 0.5, 1.0] {
                assert_eq!(w.quantile(beta).unwrap(), None);
            }
        }
    }

    #[test]
    fn beta_zero_is_the_minimum_and_one_the_maximum() {
        let w = window(10, &[0.7, -3.5, 0.2, 9.25, 0.2]);
        assert_eq!(w.quantile(0.0).unwrap(), Some(-3.5));
        assert_eq!(w.quantile(1.0).unwrap(), Some(9.25));
        assert_eq!(w.quantile(0.5).unwrap(), Some(0.2));
    }

    #[test]
    fn interpolates_like_numpy() {
        // np.quantile([1, 2, 3, 4], [0.3, 0.5, 0.9]) == [1.9, 2.5, 3.7]
        let w = window(4, &[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(w.quantile(0.3).unwrap(), Some(1.9));
        assert_eq!(w.quantile(0.5).unwrap(), Some(2.5));
        assert_eq!(w.quantile(0.9).unwrap(), Some(3.7));
        // γ ≥ 0.5 uses b − (b − a)(1 − γ), and NumPy's rounding shows:
        // repr(np.quantile([0.1, 0.7], 0.7)) == '0.5199999999999999'
        let w = window(2, &[0.7, 0.1]);
        assert_eq!(w.quantile(0.7).unwrap(), Some(0.519_999_999_999_999_9));
        assert_eq!(w.quantile(0.3).unwrap(), Some(0.28));
    }

    #[test]
    fn bad_beta_is_an_error() {
        let w = window(4, &[1.0, 2.0]);
        assert!(matches!(
            w.quantile(f64::NAN),
            Err(OffloadError::NotFinite { .. })
        ));
        for beta in [-0.1, 1.000_000_1, f64::INFINITY] {
            assert!(w.quantile(beta).is_err(), "{beta}");
        }
        // Checked even when there is no threshold yet.
        assert!(SlidingWindow::new(3).unwrap().quantile(2.0).is_err());
    }

    #[test]
    fn an_overflowing_interpolation_is_an_error_not_nan() {
        let w = window(3, &[-f64::MAX, f64::MAX]);
        // NumPy: np.quantile([-MAX, MAX], [0, 0.3, 1]) == [nan, inf, MAX] (with warnings).
        assert_eq!(w.quantile(1.0).unwrap(), Some(f64::MAX));
        for beta in [0.0, 0.3] {
            assert!(matches!(
                w.quantile(beta),
                Err(OffloadError::NotFinite { .. })
            ));
        }
    }

    #[test]
    fn duplicates_are_kept_and_evicted_one_at_a_time() {
        let mut w = window(4, &[0.5, 0.5, 0.2, 0.5]);
        assert_eq!(w.sorted(), &[0.2, 0.5, 0.5, 0.5]);
        assert_eq!(w.push(0.9).unwrap(), Some(0.5));
        assert_eq!(w.sorted(), &[0.2, 0.5, 0.5, 0.9]);
        assert_eq!(w.push(0.5).unwrap(), Some(0.5));
        assert_eq!(w.sorted(), &[0.2, 0.5, 0.5, 0.9]);
        assert_eq!(w.quantile(0.5).unwrap(), Some(0.5));
    }

    #[test]
    fn wraps_around_evicting_the_oldest() {
        let mut w = SlidingWindow::new(3).unwrap();
        let stream = [5.0, 1.0, 4.0, 2.0, 8.0, 0.0, 3.0, 3.0, 7.0, -1.0];
        for (i, &v) in stream.iter().enumerate() {
            let evicted = w.push(v).unwrap();
            assert_eq!(evicted, i.checked_sub(3).map(|j| stream[j]));
            let start = (i + 1).saturating_sub(3);
            assert_eq!(w.values().collect::<Vec<_>>(), stream[start..=i].to_vec());
            assert_eq!(w.sorted(), naive_sorted(&w).as_slice());
        }
        assert_eq!(w.sorted(), &[-1.0, 3.0, 7.0]);
    }

    #[test]
    fn signed_zeros_are_tracked_exactly() {
        let mut w = window(2, &[0.0, -0.0]);
        assert_eq!(w.sorted()[0].to_bits(), (-0.0f64).to_bits());
        w.push(1.0).unwrap(); // evicts +0.0
        assert_eq!(w.sorted()[0].to_bits(), (-0.0f64).to_bits());
        w.push(1.0).unwrap(); // evicts -0.0
        assert_eq!(w.sorted(), &[1.0, 1.0]);
    }

    #[test]
    fn set_capacity_shrinks_from_the_oldest_and_grows() {
        let mut w = window(5, &[1.0, 2.0, 3.0, 4.0, 5.0]);
        w.set_capacity(2).unwrap();
        assert_eq!(w.values().collect::<Vec<_>>(), vec![4.0, 5.0]);
        assert_eq!(w.sorted(), &[4.0, 5.0]);
        w.set_capacity(4).unwrap();
        for v in [0.0, 9.0] {
            assert_eq!(w.push(v).unwrap(), None);
        }
        assert_eq!(w.push(6.0).unwrap(), Some(4.0));
        assert_eq!(w.values().collect::<Vec<_>>(), vec![5.0, 0.0, 9.0, 6.0]);
        assert_eq!(w.sorted(), &[0.0, 5.0, 6.0, 9.0]);
        w.set_capacity(4).unwrap();
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn window_serde_round_trips_in_arrival_order() {
        let w = window(3, &[0.25, 0.75, 0.5, 0.125]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"capacity":3,"values":[0.75,0.5,0.125]}"#);
        let back: SlidingWindow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.sorted(), &[0.125, 0.5, 0.75]);
    }

    #[test]
    fn window_serde_rejects_bad_state() {
        for bad in [
            r#"{"capacity":2,"values":[0.1,0.2,0.3]}"#,
            r#"{"capacity":0,"values":[]}"#,
            r#"{"capacity":-1,"values":[]}"#,
            r#"{"capacity":2,"values":[0.1,null]}"#,
            r#"{"capacity":2,"values":[0.1,"0.2"]}"#,
            r#"{"capacity":2}"#,
            r#"{"values":[]}"#,
            r#"[2,[0.1]]x"#,
        ] {
            assert!(serde_json::from_str::<SlidingWindow>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<SlidingWindow>(r#"{"capacity":2,"values":[1,2,3]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("capacity 2"), "{err}");
        assert!(SlidingWindow::from_values(3, [0.1, f64::INFINITY]).is_err());
    }

    #[test]
    fn windows_observe_creates_and_returns_the_window_holding_the_value() {
        let mut ws = Windows::new(2).unwrap();
        assert!(ws.get(Tier::Device, TaskType::Chat).is_none());
        let w = ws.observe(Tier::Device, TaskType::Chat, 0.4).unwrap();
        assert_eq!(w.values().collect::<Vec<_>>(), vec![0.4]);
        ws.observe(Tier::Device, TaskType::Chat, 0.6).unwrap();
        let w = ws.observe(Tier::Device, TaskType::Chat, 0.1).unwrap();
        assert_eq!(w.values().collect::<Vec<_>>(), vec![0.6, 0.1]);
        assert_eq!(w.capacity(), 2);
        ws.observe(Tier::Edge, TaskType::Chat, 0.9).unwrap();
        assert_eq!(ws.get(Tier::Edge, TaskType::Chat).unwrap().len(), 1);
        assert!(ws.get(Tier::Edge, TaskType::Translation).is_none());
        assert_eq!(ws.iter().count(), 2);
    }

    #[test]
    fn windows_set_capacity_applies_to_all_and_to_new_windows() {
        let mut ws = Windows::new(4).unwrap();
        for v in [1.0, 2.0, 3.0, 4.0] {
            ws.observe(Tier::Device, TaskType::Chat, v).unwrap();
            ws.observe(Tier::Edge, TaskType::Classification, -v)
                .unwrap();
        }
        ws.set_capacity(2).unwrap();
        assert_eq!(ws.capacity(), 2);
        let device = ws.get(Tier::Device, TaskType::Chat).unwrap();
        assert_eq!(device.values().collect::<Vec<_>>(), vec![3.0, 4.0]);
        let edge = ws.get(Tier::Edge, TaskType::Classification).unwrap();
        assert_eq!(edge.sorted(), &[-4.0, -3.0]);
        let new = ws.observe(Tier::Cloud, TaskType::Chat, 0.0).unwrap();
        assert_eq!(new.capacity(), 2);
    }

    #[test]
    fn default_windows_are_usable() {
        let mut ws = Windows::default();
        assert_eq!(ws.capacity(), DEFAULT_CAPACITY);
        assert_eq!(
            crate::PolicySpec::default().window_size(),
            Some(DEFAULT_CAPACITY)
        );
        assert_eq!(
            ws.observe(Tier::Device, TaskType::Chat, 0.5).unwrap().len(),
            1
        );
    }

    #[test]
    fn windows_serde_round_trips() {
        let mut ws = Windows::new(3).unwrap();
        for v in [0.5, 0.25, 0.75, 1.0] {
            ws.observe(Tier::Edge, TaskType::MultipleChoice, v).unwrap();
        }
        ws.observe(Tier::Device, TaskType::Chat, 0.125).unwrap();
        let json = serde_json::to_string(&ws).unwrap();
        assert_eq!(
            json,
            r#"{"capacity":3,"windows":[{"tier":"device","task":"chat","values":[0.125]},{"tier":"edge","task":"multiple_choice","values":[0.25,0.75,1.0]}]}"#
        );
        let back: Windows = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ws);
        assert_eq!(
            back.get(Tier::Edge, TaskType::MultipleChoice)
                .unwrap()
                .sorted(),
            &[0.25, 0.75, 1.0]
        );
    }

    #[test]
    fn windows_serde_rejects_bad_state() {
        for bad in [
            r#"{"capacity":0,"windows":[]}"#,
            r#"{"capacity":1,"windows":[{"tier":"device","task":"chat","values":[0.1,0.2]}]}"#,
            r#"{"capacity":2,"windows":[{"tier":"device","task":"chat","values":[0.1,null]}]}"#,
            r#"{"capacity":2,"windows":[{"tier":"device","task":"chat","values":["x"]}]}"#,
            r#"{"capacity":2,"windows":[{"tier":"moon","task":"chat","values":[]}]}"#,
            r#"{"capacity":2,"windows":[{"tier":"edge","task":"chat","values":[]},{"tier":"edge","task":"chat","values":[0.5]}]}"#,
            r#"{"capacity":2}"#,
        ] {
            assert!(serde_json::from_str::<Windows>(bad).is_err(), "{bad}");
        }
    }
}
