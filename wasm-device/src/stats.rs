//! What the page's panel shows: per tier, how many requests reached it, how many it sent up
//! (its live offload rate), its last confidence and threshold; and the device's threshold right
//! now, from its own window and the policy (`offload` computes it). Counted from the hop
//! records, so the edge's and the cloud's numbers are what they reported.

use offload::policy::PolicyKind;
use offload::wire::{HopOutcome, LinkBytes, OffloadResponse};
use offload::{PolicySpec, TaskType, Tier, Windows};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TierStats {
    /// Requests this tier handled.
    pub seen: u64,
    /// Of those, sent up (offloaded after generating, or forwarded without).
    pub offloaded: u64,
    /// Of those, answered here (fallbacks included).
    pub answered: u64,
    pub last_confidence: Option<f64>,
    pub last_threshold: Option<f64>,
}

/// Counts since the page first ran (persisted with the windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub device: TierStats,
    pub edge: TierStats,
    pub cloud: TierStats,
    /// Body bytes on the device→edge link, all answers together.
    pub bytes: LinkBytes,
    /// Answers that fell back to the device because the tiers above failed.
    pub fallbacks: u64,
}

impl Stats {
    pub fn tier_mut(&mut self, tier: Tier) -> &mut TierStats {
        match tier {
            Tier::Device => &mut self.device,
            Tier::Edge => &mut self.edge,
            Tier::Cloud => &mut self.cloud,
        }
    }

    /// Counts one answer's hop records.
    pub fn record(&mut self, response: &OffloadResponse) {
        for hop in &response.hops {
            let t = self.tier_mut(hop.tier);
            t.seen += 1;
            match hop.outcome {
                HopOutcome::Offloaded | HopOutcome::Forwarded => t.offloaded += 1,
                HopOutcome::Answered => t.answered += 1,
                HopOutcome::Fallback => {
                    t.answered += 1;
                    self.fallbacks += 1;
                }
                HopOutcome::Failed => {}
            }
            let t = self.tier_mut(hop.tier);
            if hop.confidence.is_some() {
                t.last_confidence = hop.confidence;
            }
            if hop.threshold.is_some() {
                t.last_threshold = hop.threshold;
            }
            if hop.tier == Tier::Device
                && let Some(b) = hop.bytes
            {
                self.bytes.sent += b.sent;
                self.bytes.received += b.received;
            }
        }
    }
}

/// The threshold the device's next chat answer would be compared with: RecServe's β-quantile
/// of the device's window, CasServe's fixed value; `None` for other policies or a window with
/// fewer than two values.
pub fn device_threshold(policy: &PolicySpec, windows: &Windows) -> Option<f64> {
    match &policy.kind {
        PolicyKind::RecServe { beta, .. } => windows
            .get(Tier::Device, TaskType::Chat)?
            .quantile(beta.device)
            .ok()
            .flatten(),
        PolicyKind::CasServe { thresholds } => Some(thresholds.device),
        _ => None,
    }
}

/// The panel's snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub stats: Stats,
    /// Offload rate per tier (`offloaded / seen`), `None` before the first request.
    pub offload_rate: PerTierRate,
    /// The device's threshold now.
    pub device_threshold: Option<f64>,
    /// Confidences in the device's chat window.
    pub device_window_len: usize,
    pub policy: PolicySpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerTierRate {
    pub device: Option<f64>,
    pub edge: Option<f64>,
    pub cloud: Option<f64>,
}

fn rate(t: &TierStats) -> Option<f64> {
    (t.seen > 0).then(|| t.offloaded as f64 / t.seen as f64)
}

pub fn snapshot(stats: &Stats, policy: &PolicySpec, windows: &Windows) -> Snapshot {
    Snapshot {
        stats: stats.clone(),
        offload_rate: PerTierRate {
            device: rate(&stats.device),
            edge: rate(&stats.edge),
            cloud: rate(&stats.cloud),
        },
        device_threshold: device_threshold(policy, windows),
        device_window_len: windows
            .get(Tier::Device, TaskType::Chat)
            .map_or(0, |w| w.len()),
        policy: policy.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offload::policy::PerTier;
    use offload::wire::HopRecord;

    #[test]
    fn rates_come_from_the_hop_records() {
        let mut s = Stats::default();
        let mut dev = HopRecord::new(Tier::Device, "d", HopOutcome::Offloaded);
        dev.bytes = Some(LinkBytes {
            sent: 10,
            received: 90,
        });
        dev.threshold = Some(0.3);
        let edge = HopRecord::new(Tier::Edge, "e", HopOutcome::Answered);
        s.record(&OffloadResponse::new(Tier::Edge, vec![dev, edge]));
        s.record(&OffloadResponse::new(
            Tier::Device,
            vec![HopRecord::new(Tier::Device, "d", HopOutcome::Answered)],
        ));
        let snap = snapshot(&s, &PolicySpec::default(), &Windows::default());
        assert_eq!(snap.offload_rate.device, Some(0.5));
        assert_eq!(snap.offload_rate.edge, Some(0.0));
        assert_eq!(snap.offload_rate.cloud, None);
        assert_eq!(s.bytes.total(), 100);
        assert_eq!(s.device.last_threshold, Some(0.3));
    }

    #[test]
    fn the_device_threshold_is_the_policys() {
        let mut w = Windows::new(10).unwrap();
        let rec = PolicySpec::from(PolicyKind::RecServe {
            beta: PerTier::same(0.5),
            k: 10,
        });
        assert_eq!(device_threshold(&rec, &w), None);
        for c in [0.1, 0.3] {
            w.observe(Tier::Device, TaskType::Chat, c).unwrap();
        }
        let t = device_threshold(&rec, &w).unwrap();
        assert!((t - 0.2).abs() < 1e-12, "{t}");
        let cas = PolicySpec::from(PolicyKind::CasServe {
            thresholds: PerTier::same(0.25),
        });
        assert_eq!(device_threshold(&cas, &w), Some(0.25));
        assert_eq!(
            device_threshold(&PolicySpec::from(PolicyKind::EndServe), &w),
            None
        );
    }
}
