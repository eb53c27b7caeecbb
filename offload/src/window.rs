//! RecServe's sliding-window quantile threshold (DESIGN.md §1.1).
//!
//! CONTRACT (implementation in progress): the public API below is fixed; bodies are filled in.

use crate::error::Result;
use crate::tier::{TaskType, Tier};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// FIFO window of the last `capacity` confidences, kept sorted on the side so that a β-quantile
/// costs O(1) and an update costs one binary search plus one memmove.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    capacity: usize,
    fifo: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SlidingWindow {
    /// A window holding at most `capacity` values; `capacity` must be at least 1.
    pub fn new(capacity: usize) -> Result<Self> {
        todo!("{capacity}")
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
    /// Appends `value` (rejecting NaN/inf), evicting and returning the oldest when full.
    pub fn push(&mut self, value: f64) -> Result<Option<f64>> {
        todo!("{value}")
    }
    /// The β-quantile, linearly interpolated at `β·(n−1)` like NumPy's default percentile;
    /// `None` with fewer than two values. `beta` outside `[0, 1]` is an error.
    pub fn quantile(&self, beta: f64) -> Result<Option<f64>> {
        todo!("{beta}")
    }
    /// Shrinks or grows the window; shrinking drops the oldest values.
    pub fn set_capacity(&mut self, capacity: usize) -> Result<()> {
        todo!("{capacity}")
    }
    /// Values in arrival order, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.fifo.iter().copied()
    }
    /// Values in ascending order.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }
}

/// One window per (tier, task type), all with the same capacity `k`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Windows {
    capacity: usize,
    windows: std::collections::BTreeMap<(Tier, TaskType), SlidingWindow>,
}

impl Windows {
    pub fn new(capacity: usize) -> Result<Self> {
        todo!("{capacity}")
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
        todo!("{tier}{task}{confidence}")
    }
    pub fn get(&self, tier: Tier, task: TaskType) -> Option<&SlidingWindow> {
        self.windows.get(&(tier, task))
    }
    pub fn set_capacity(&mut self, capacity: usize) -> Result<()> {
        todo!("{capacity}")
    }
}

#[allow(dead_code)]
#[derive(Serialize, Deserialize)]
struct Placeholder;
