//! Route planning: which holder runs each stage of a pipeline.

use std::{collections::BTreeSet, time::Duration};

use libp2p::PeerId;

use crate::{Error, Result, ShardRef};

/// A worker able to run a stage, as discovered (DHT, announcements) and measured (ping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The worker.
    pub peer: PeerId,
    /// The shard it serves.
    pub shard: ShardRef,
    /// Requests it has in flight.
    pub load: u32,
    /// Sessions it keeps at once.
    pub capacity: u32,
    /// Round trip of its ping, if measured.
    pub latency: Option<Duration>,
}

/// Preferences for [`plan_route`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOptions {
    /// Refuse routes where one worker runs every stage (it would see the whole middle of
    /// the model's computation); with one stage this is not enforced.
    pub distinct_holders: bool,
    /// Latency assumed for a candidate that was not measured.
    pub unmeasured_latency: Duration,
    /// Cost of a fully loaded worker, added to its latency in proportion to load/capacity.
    pub load_penalty: Duration,
}

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            distinct_holders: true,
            unmeasured_latency: Duration::from_millis(100),
            load_penalty: Duration::from_millis(50),
        }
    }
}

/// The holder chosen for each stage, with the others able to replace it, best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The stages in execution order.
    pub stages: Vec<RouteStage>,
}

/// One stage of a [`Route`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStage {
    /// The shard the stage runs.
    pub shard: ShardRef,
    /// The worker chosen.
    pub peer: PeerId,
    /// Other holders, best first.
    pub alternates: Vec<PeerId>,
}

impl RouteOptions {
    fn cost(&self, c: &Candidate) -> Duration {
        let latency = c.latency.unwrap_or(self.unmeasured_latency);
        let ratio = f64::from(c.load) / f64::from(c.capacity.max(1));
        latency + self.load_penalty.mul_f64(ratio.min(4.0))
    }
}

/// Chooses, for each shard of `stages`, the cheapest allowed candidate not in `exclude`
/// (latency plus a load penalty; ties broken by peer id, so planning is deterministic).
pub fn plan_route(
    model_id: &str,
    stages: &[ShardRef],
    candidates: &[Candidate],
    exclude: &BTreeSet<PeerId>,
    options: &RouteOptions,
) -> Result<Route> {
    let mut ranked: Vec<Vec<(Duration, PeerId)>> = Vec::with_capacity(stages.len());
    for shard in stages {
        let mut holders: Vec<(Duration, PeerId)> = candidates
            .iter()
            .filter(|c| c.shard == *shard && !exclude.contains(&c.peer))
            .map(|c| (options.cost(c), c.peer))
            .collect();
        holders.sort();
        holders.dedup_by_key(|(_, p)| *p);
        if holders.is_empty() {
            return Err(Error::NoRoute {
                model_id: model_id.to_string(),
                range: shard.range,
                reason: format!("no reachable holder of shard {shard}"),
            });
        }
        ranked.push(holders);
    }
    let mut choice = vec![0usize; stages.len()];
    if options.distinct_holders && stages.len() > 1 {
        let first = ranked[0][0].1;
        if ranked.iter().all(|h| h[0].1 == first) {
            // Swap the stage whose next-best holder costs the least extra.
            let swap = ranked
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    h.iter()
                        .position(|(_, p)| *p != first)
                        .map(|j| (h[j].0.saturating_sub(h[0].0), i, j))
                })
                .min();
            match swap {
                Some((_, i, j)) => choice[i] = j,
                None => {
                    return Err(Error::SingleHolder {
                        model_id: model_id.to_string(),
                        peer: first,
                    });
                }
            }
        }
    }
    let stages = stages
        .iter()
        .zip(ranked)
        .zip(choice)
        .map(|((shard, holders), j)| RouteStage {
            shard: *shard,
            peer: holders[j].1,
            alternates: holders
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != j)
                .map(|(_, (_, p))| *p)
                .collect(),
        })
        .collect();
    Ok(Route { stages })
}

#[cfg(test)]
mod tests {
    use vichain_inference::{Fingerprint, LayerRange};

    use super::*;

    fn shard(start: usize, end: usize) -> ShardRef {
        ShardRef {
            range: LayerRange::new(start, end),
            sha256: Fingerprint([start as u8; 32]),
        }
    }

    fn cand(peer: PeerId, s: ShardRef, load: u32, ms: u64) -> Candidate {
        Candidate {
            peer,
            shard: s,
            load,
            capacity: 4,
            latency: Some(Duration::from_millis(ms)),
        }
    }

    #[test]
    fn prefers_low_latency_and_load_and_keeps_alternates() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let s = [shard(0, 3), shard(3, 6)];
        let cands = [
            cand(a, s[0], 0, 5),
            cand(b, s[0], 4, 5),
            cand(b, s[1], 0, 1),
            cand(c, s[1], 0, 20),
        ];
        let r = plan_route("m", &s, &cands, &BTreeSet::new(), &RouteOptions::default()).unwrap();
        assert_eq!(r.stages[0].peer, a, "b is loaded");
        assert_eq!(r.stages[0].alternates, vec![b]);
        assert_eq!(r.stages[1].peer, b);
        assert_eq!(r.stages[1].alternates, vec![c]);
        let r = plan_route("m", &s, &cands, &[a].into(), &RouteOptions::default()).unwrap();
        assert_eq!(r.stages[0].peer, b);
    }

    #[test]
    fn privacy_avoids_one_holder_of_every_stage() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let s = [shard(0, 3), shard(3, 6)];
        let cands = [
            cand(a, s[0], 0, 1),
            cand(a, s[1], 0, 1),
            cand(b, s[1], 0, 9),
        ];
        let private = RouteOptions::default();
        let r = plan_route("m", &s, &cands, &BTreeSet::new(), &private).unwrap();
        assert_eq!((r.stages[0].peer, r.stages[1].peer), (a, b));
        let open = RouteOptions {
            distinct_holders: false,
            ..private.clone()
        };
        let r = plan_route("m", &s, &cands, &BTreeSet::new(), &open).unwrap();
        assert_eq!((r.stages[0].peer, r.stages[1].peer), (a, a));
        let only_a = &cands[..2];
        assert!(matches!(
            plan_route("m", &s, only_a, &BTreeSet::new(), &private),
            Err(Error::SingleHolder { .. })
        ));
        assert!(matches!(
            plan_route("m", &s, &cands[2..], &BTreeSet::new(), &private),
            Err(Error::NoRoute { .. })
        ));
    }
}
