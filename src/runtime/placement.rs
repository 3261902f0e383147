//! Placement: session id → shard (stable hash, identical on every node) → owning core, and
//! shard → replica nodes (rendezvous hashing over the cluster's members, SPEC §4).
//!
//! The hash is xxh3-64 of the id bytes; it must never change, since a node's data dir
//! stores each shard's log on the core this mapping picks (the data dir records the shard
//! and core counts and refuses to start with different ones).
//!
//! Replicas are a pure function of (shard, member names): every node computes the same
//! set without talking to the others, and adding or removing one member moves only the
//! shards whose top three change (the property rendezvous hashing is chosen for).

use xxhash_rust::xxh3::xxh3_64;

pub fn shard_of(session_id: &str, shards: u32) -> u32 {
    assert!(shards > 0);
    (xxh3_64(session_id.as_bytes()) % shards as u64) as u32
}

pub fn owner_core(shard: u32, cores: usize) -> usize {
    assert!(cores > 0);
    shard as usize % cores
}

/// Replicas per shard (all members when fewer).
pub const REPLICAS_PER_SHARD: usize = 3;

/// Rendezvous score of `node` for `shard`: xxh3-64 over the shard (u32 LE) then the name.
fn score(shard: u32, node: &str) -> u64 {
    let mut key = Vec::with_capacity(4 + node.len());
    key.extend_from_slice(&shard.to_le_bytes());
    key.extend_from_slice(node.as_bytes());
    xxh3_64(&key)
}

/// The replica set of `shard`: the `REPLICAS_PER_SHARD` members with the highest
/// rendezvous score, highest first (ties, which need equal 64-bit hashes, by name). The
/// first one initializes the shard's Raft group. Identical on every node for the same
/// member names, whatever their order.
pub fn replicas(shard: u32, members: &[String]) -> Vec<&str> {
    let mut ranked: Vec<(u64, &str)> = members.iter().map(|m| (score(shard, m), m.as_str())).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(REPLICAS_PER_SHARD).map(|(_, m)| m).collect()
}

/// Raft node id for a node name: stable, non-zero.
pub fn node_id(node_name: &str) -> u64 {
    (xxh3_64(node_name.as_bytes()) >> 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_spread_over_shards_and_shards_over_cores() {
        let mut per_core = [0usize; 2];
        for i in 0..10_000 {
            let shard = shard_of(&format!("ses_{i}"), 256);
            assert!(shard < 256);
            per_core[owner_core(shard, 2)] += 1;
        }
        assert!(per_core[0] > 4_000 && per_core[1] > 4_000, "{per_core:?}");
        // Stability: the mapping is part of the on-disk contract.
        assert_eq!(shard_of("ses_abc", 256), shard_of("ses_abc", 256));
        assert_eq!(shard_of("a", 256), (xxh3_64(b"a") % 256) as u32);
    }

    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("starcite-{i}")).collect()
    }

    #[test]
    fn replicas_are_three_distinct_members_independent_of_member_order() {
        let five = members(5);
        let mut shuffled = five.clone();
        shuffled.reverse();
        shuffled.swap(1, 3);
        for shard in 0..256 {
            let r = replicas(shard, &five);
            assert_eq!(r.len(), 3);
            assert!(r[0] != r[1] && r[1] != r[2] && r[0] != r[2]);
            assert_eq!(r, replicas(shard, &shuffled), "shard {shard}");
        }
        assert_eq!(replicas(7, &members(2)).len(), 2, "all members when fewer than three");
        assert_eq!(replicas(7, &members(1)), vec!["starcite-1"]);
    }

    #[test]
    fn first_replicas_spread_over_the_five_node_cluster_and_one_more_node_moves_few_shards() {
        let five = members(5);
        let mut first = std::collections::HashMap::new();
        let mut hosted = std::collections::HashMap::new();
        for shard in 0..256 {
            let r = replicas(shard, &five);
            *first.entry(r[0]).or_insert(0) += 1;
            for m in r {
                *hosted.entry(m).or_insert(0) += 1;
            }
        }
        // 256 shards / 5 nodes ≈ 51 first replicas and ≈ 154 replicas each.
        for m in &five {
            let (f, h) = (first[m.as_str()], hosted[m.as_str()]);
            assert!((30..=75).contains(&f), "{m} initializes {f} shards");
            assert!((120..=190).contains(&h), "{m} hosts {h} shards");
        }
        // Adding a sixth member changes only the shards where the newcomer enters the top
        // three (expected 1 - C(5,3)/C(6,3) = half of them); no other shard moves.
        let six = members(6);
        let set = |s: u32, m: &[String]| replicas(s, m).into_iter().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
        let moved: Vec<u32> = (0..256).filter(|&s| set(s, &five) != set(s, &six)).collect();
        assert!(moved.iter().all(|&s| set(s, &six).contains("starcite-6")), "only the newcomer displaces a replica");
        let moved = moved.len();
        assert!(moved < 256 * 2 / 3, "{moved} shards moved");
    }
}
