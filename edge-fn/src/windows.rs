//! The edge tier's sliding windows (RecServe's per-task confidence history), kept in the
//! key-value store so they outlive the instance that served one request: every request reads
//! its task's window, `offload::policy::decide` records the new confidence and decides, and
//! the window is written back with compare-and-swap, so two requests updating the same window
//! at once both count.

use crate::error::EdgeError;
use offload::policy::{Decision, decide};
use offload::{Confidence, PolicySpec, TaskType, Tier, TierSet, Windows};

/// Computes a key's new value (and a result) from its current one.
pub type Update<'a, T> = dyn FnMut(Option<&[u8]>) -> Result<(Vec<u8>, T), EdgeError> + 'a;

/// A key-value store with an atomic read-modify-write.
pub trait WindowStore {
    /// Reads `key`, lets `update` compute the new value (and a result) from the current one,
    /// and writes it back; when the value changed in between, runs `update` again on the new
    /// value.
    fn update<T>(&mut self, key: &str, update: &mut Update<'_, T>) -> Result<T, EdgeError>;
}

/// The key of one task's windows.
pub fn key(task: TaskType) -> String {
    format!("ladder/windows/edge/{task}")
}

/// Records `confidence` in the edge's window for `task` and asks `policy` what to do.
pub fn decide_and_record<S: WindowStore>(
    store: &mut S,
    policy: &PolicySpec,
    task: TaskType,
    confidence: Confidence,
    request_key: u64,
    reachable: TierSet,
) -> Result<Decision, EdgeError> {
    let built = policy.build()?;
    // A policy without windows (a CasServe cascade) still records its confidences, in a window
    // of the shared crate's default size, so switching to RecServe starts with a history.
    let capacity = policy
        .window_size()
        .unwrap_or_else(|| Windows::default().capacity());
    store.update(&key(task), &mut |stored| {
        let mut windows = match stored.map(serde_json::from_slice::<Windows>) {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                // A value this code did not write: start a new history rather than fail every
                // request from now on.
                eprintln!("edge windows for {task}: unreadable stored value ({e}); starting anew");
                Windows::new(capacity)?
            }
            None => Windows::new(capacity)?,
        };
        if windows.capacity() != capacity {
            windows.set_capacity(capacity)?;
        }
        let decision = decide(
            &*built,
            &mut windows,
            Tier::Edge,
            task,
            confidence,
            request_key,
            reachable,
        )?;
        let bytes = serde_json::to_vec(&windows)
            .map_err(|e| EdgeError::Store(format!("cannot encode the windows: {e}")))?;
        Ok((bytes, decision))
    })
}

/// An in-memory store (tests, and a fallback when no store is configured).
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub values: std::collections::BTreeMap<String, Vec<u8>>,
}

impl WindowStore for MemoryStore {
    fn update<T>(&mut self, key: &str, update: &mut Update<'_, T>) -> Result<T, EdgeError> {
        let (value, out) = update(self.values.get(key).map(Vec::as_slice))?;
        self.values.insert(key.to_string(), value);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offload::policy::{Action, PerTier, PolicyKind};

    fn recserve(k: usize) -> PolicySpec {
        PolicySpec::from(PolicyKind::RecServe {
            beta: PerTier::same(0.5),
            k,
        })
    }

    #[test]
    fn windows_persist_between_decisions() {
        let mut store = MemoryStore::default();
        let policy = recserve(10);
        let c = |v: f64| Confidence::new(v).unwrap();
        // The first confidence has no threshold yet: kept.
        let d = decide_and_record(&mut store, &policy, TaskType::Chat, c(0.5), 1, TierSet::ALL)
            .unwrap();
        assert!(!d.offloads());
        // Then the median of [0.5, 0.1] is 0.3 > 0.1: offloaded to the cloud.
        let d = decide_and_record(&mut store, &policy, TaskType::Chat, c(0.1), 2, TierSet::ALL)
            .unwrap();
        assert_eq!(d.action, Action::Offload { to: Tier::Cloud });
        // Another task has its own window.
        let d = decide_and_record(
            &mut store,
            &policy,
            TaskType::Translation,
            c(0.1),
            3,
            TierSet::ALL,
        )
        .unwrap();
        assert!(!d.offloads());
        let stored: Windows = serde_json::from_slice(&store.values[&key(TaskType::Chat)]).unwrap();
        assert_eq!(stored.get(Tier::Edge, TaskType::Chat).unwrap().len(), 2);
    }

    #[test]
    fn a_cloud_that_is_not_configured_keeps_the_answer() {
        let mut store = MemoryStore::default();
        let policy = recserve(10);
        let up = TierSet::ALL.without(Tier::Cloud);
        for v in [0.9, 0.1] {
            let d = decide_and_record(
                &mut store,
                &policy,
                TaskType::Chat,
                Confidence::new(v).unwrap(),
                0,
                up,
            )
            .unwrap();
            assert!(!d.offloads());
        }
    }

    #[test]
    fn an_unreadable_value_starts_a_new_window() {
        let mut store = MemoryStore::default();
        store
            .values
            .insert(key(TaskType::Chat), b"garbage".to_vec());
        let d = decide_and_record(
            &mut store,
            &recserve(4),
            TaskType::Chat,
            Confidence::new(0.2).unwrap(),
            0,
            TierSet::ALL,
        )
        .unwrap();
        assert!(!d.offloads());
    }
}
