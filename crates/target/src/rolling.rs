//! Rolling-update arithmetic: given what runs now, which replicas to start and stop
//! next so that availability never drops below `desired - max_unavailable` and the
//! total never exceeds `desired + max_surge`.
//!
//! Pure and stateless: a target calls [`next_step`] with a fresh snapshot each time
//! something changes, which is also what makes a resumed rollout correct: the snapshot
//! after a crash is as good as any other.

/// How a replica is doing, as far as the rollout is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Started, not yet passed its health check.
    Starting,
    /// Serving.
    Healthy,
    /// Stopped, exited or failed: not serving.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub id: String,
    pub slot: u32,
    pub health: Health,
}

/// A snapshot of one app during a rollout.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub desired: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
    /// Replicas of the revision being rolled out.
    pub new: Vec<ReplicaView>,
    /// Replicas of any other revision.
    pub old: Vec<ReplicaView>,
}

/// What to do next. Stops come first: the starts assume they have completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub stop: Vec<String>,
    pub start: Vec<u32>,
    /// Every new replica is healthy, there are exactly `desired` of them and nothing
    /// else runs.
    pub done: bool,
}

pub fn next_step(snapshot: &Snapshot) -> Step {
    let desired = snapshot.desired as usize;
    let min_available = snapshot.desired.saturating_sub(snapshot.max_unavailable) as usize;
    let max_total = (snapshot.desired + snapshot.max_surge) as usize;

    let healthy = |replicas: &[ReplicaView]| replicas.iter().filter(|r| r.health == Health::Healthy).count();
    let new_healthy = healthy(&snapshot.new);
    if snapshot.old.is_empty() && snapshot.new.len() == desired && new_healthy == desired {
        return Step { done: true, ..Step::default() };
    }

    let mut step = Step::default();
    let mut available = new_healthy + healthy(&snapshot.old);
    let mut remaining = snapshot.new.len() + snapshot.old.len();

    // Replicas that serve nothing can go at once: old ones that are down or still
    // starting, and new ones that are down (a target restarts those by starting the slot
    // again).
    for replica in snapshot.old.iter().chain(&snapshot.new) {
        if replica.health != Health::Healthy && !is_new_and_starting(snapshot, replica) {
            step.stop.push(replica.id.clone());
            remaining -= 1;
        }
    }
    // New replicas beyond the desired count (a scale-down), highest slots first, then
    // healthy old ones, each only while availability stays at the minimum or above.
    let mut excess_new: Vec<&ReplicaView> =
        snapshot.new.iter().filter(|r| r.slot as usize >= desired && r.health != Health::Down).collect();
    excess_new.sort_by_key(|r| std::cmp::Reverse(r.slot));
    let healthy_old = snapshot.old.iter().filter(|r| r.health == Health::Healthy);
    for replica in excess_new.into_iter().chain(healthy_old) {
        let counts = replica.health == Health::Healthy;
        if counts && available <= min_available {
            // It is needed for availability; a later snapshot, with more new replicas
            // healthy, will let it go.
            continue;
        }
        if counts {
            available -= 1;
        }
        step.stop.push(replica.id.clone());
        remaining -= 1;
    }

    // Start the lowest free slots below `desired`, within the surge budget.
    let occupied: Vec<u32> = snapshot.new.iter().filter(|r| r.health != Health::Down).map(|r| r.slot).collect();
    let mut budget = max_total.saturating_sub(remaining);
    for slot in 0..snapshot.desired {
        if budget == 0 {
            break;
        }
        if !occupied.contains(&slot) {
            step.start.push(slot);
            budget -= 1;
        }
    }
    step
}

fn is_new_and_starting(snapshot: &Snapshot, replica: &ReplicaView) -> bool {
    replica.health == Health::Starting && snapshot.new.iter().any(|r| r.id == replica.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, slot: u32, health: Health) -> ReplicaView {
        ReplicaView { id: id.into(), slot, health }
    }

    #[test]
    fn surge_first_starts_one_new_replica_and_stops_nothing() {
        let snapshot = Snapshot {
            desired: 3,
            max_surge: 1,
            max_unavailable: 0,
            new: vec![],
            old: (0..3).map(|i| replica(&format!("old{i}"), i, Health::Healthy)).collect(),
        };
        assert_eq!(next_step(&snapshot), Step { stop: vec![], start: vec![0], done: false });
    }

    #[test]
    fn an_old_replica_goes_once_a_new_one_is_healthy() {
        let snapshot = Snapshot {
            desired: 3,
            max_surge: 1,
            max_unavailable: 0,
            new: vec![replica("new0", 0, Health::Healthy)],
            old: (0..3).map(|i| replica(&format!("old{i}"), i, Health::Healthy)).collect(),
        };
        assert_eq!(next_step(&snapshot), Step { stop: vec!["old0".into()], start: vec![1], done: false });
    }

    #[test]
    fn a_starting_replica_is_waited_for() {
        let snapshot = Snapshot {
            desired: 3,
            max_surge: 1,
            max_unavailable: 0,
            new: vec![replica("new0", 0, Health::Starting)],
            old: (0..3).map(|i| replica(&format!("old{i}"), i, Health::Healthy)).collect(),
        };
        assert_eq!(next_step(&snapshot), Step::default());
    }

    #[test]
    fn done_when_only_healthy_new_replicas_remain() {
        let snapshot = Snapshot {
            desired: 2,
            max_surge: 1,
            max_unavailable: 0,
            new: vec![replica("a", 0, Health::Healthy), replica("b", 1, Health::Healthy)],
            old: vec![],
        };
        assert!(next_step(&snapshot).done);
    }

    #[test]
    fn scaling_down_stops_the_highest_slots() {
        let snapshot = Snapshot {
            desired: 1,
            max_surge: 1,
            max_unavailable: 0,
            new: (0..3).map(|i| replica(&format!("r{i}"), i, Health::Healthy)).collect(),
            old: vec![],
        };
        assert_eq!(next_step(&snapshot).stop, vec!["r2".to_owned(), "r1".to_owned()]);
    }

    #[test]
    fn a_down_new_replica_is_removed_and_its_slot_started_again() {
        let snapshot = Snapshot {
            desired: 2,
            max_surge: 1,
            max_unavailable: 0,
            new: vec![replica("a", 0, Health::Healthy), replica("b", 1, Health::Down)],
            old: vec![],
        };
        assert_eq!(next_step(&snapshot), Step { stop: vec!["b".into()], start: vec![1], done: false });
    }

    /// Simulates whole rollouts for every small strategy, with replicas becoming healthy
    /// in every possible order, and checks the two invariants at every instant: never
    /// fewer than `desired - max_unavailable` healthy, never more than
    /// `desired + max_surge` running, and always finishing.
    #[test]
    fn rollouts_never_break_availability_or_surge_limits_and_always_finish() {
        for desired in 0..=6u32 {
            for max_surge in 0..=3u32 {
                for max_unavailable in 0..=3u32 {
                    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
                        continue; // refused by manifest validation
                    }
                    for seed in 0..20u64 {
                        simulate(desired, max_surge, max_unavailable, seed);
                    }
                }
            }
        }
    }

    fn simulate(desired: u32, max_surge: u32, max_unavailable: u32, seed: u64) {
        let min_available = desired.saturating_sub(max_unavailable) as usize;
        let max_total = (desired + max_surge) as usize;
        let mut rng = seed;
        let mut next_random = move || {
            // xorshift: deterministic orders of health changes per seed.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut old: Vec<ReplicaView> = (0..desired).map(|i| replica(&format!("old{i}"), i, Health::Healthy)).collect();
        let mut new: Vec<ReplicaView> = Vec::new();
        let mut created = 0;
        for _round in 0..1000 {
            let step = next_step(&Snapshot { desired, max_surge, max_unavailable, new: new.clone(), old: old.clone() });
            if step.done {
                assert_eq!(new.len(), desired as usize);
                return;
            }
            old.retain(|r| !step.stop.contains(&r.id));
            new.retain(|r| !step.stop.contains(&r.id));
            let healthy = old.iter().chain(&new).filter(|r| r.health == Health::Healthy).count();
            // Right after the stops: the worst moment.
            let initial_ok = old.len() + new.len() <= max_total;
            assert!(
                healthy >= min_available.min(desired as usize),
                "availability {healthy} < {min_available} (desired {desired}, surge {max_surge}, unavailable {max_unavailable})"
            );
            for slot in step.start {
                created += 1;
                new.push(replica(&format!("new{created}"), slot, Health::Starting));
            }
            assert!(
                initial_ok && old.len() + new.len() <= max_total,
                "{} running > {max_total} (desired {desired}, surge {max_surge}, unavailable {max_unavailable})",
                old.len() + new.len()
            );
            // One starting replica (chosen by the seed) becomes healthy.
            let starting: Vec<usize> = (0..new.len()).filter(|&i| new[i].health == Health::Starting).collect();
            if !starting.is_empty() {
                let pick = starting[(next_random() as usize) % starting.len()];
                new[pick].health = Health::Healthy;
            }
        }
        panic!("no progress: desired {desired}, surge {max_surge}, unavailable {max_unavailable}");
    }
}
