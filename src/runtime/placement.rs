//! Placement: session id → shard (stable hash, identical on every node) → owning core.
//!
//! The hash is xxh3-64 of the id bytes; it must never change, since a node's data dir
//! stores each shard's log on the core this mapping picks (the data dir records the shard
//! and core counts and refuses to start with different ones).

use xxhash_rust::xxh3::xxh3_64;

pub fn shard_of(session_id: &str, shards: u32) -> u32 {
    assert!(shards > 0);
    (xxh3_64(session_id.as_bytes()) % shards as u64) as u32
}

pub fn owner_core(shard: u32, cores: usize) -> usize {
    assert!(cores > 0);
    shard as usize % cores
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
}
