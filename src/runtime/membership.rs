//! Raft group membership on one core, for a cluster (a single node's one-member groups need
//! none of this):
//!
//! - **Bootstrap.** Each shard's group is initialized once, by the first node of its
//!   replica set (`placement::replicas`), with all its replicas as voters — and only when
//!   every other replica is reachable and says its own copy of the group is *not*
//!   initialized. So a first replica that lost its disk never starts a second history of a
//!   group that exists elsewhere: it waits to be re-added like any other replica.
//! - **Repair (the incarnation rule).** A node's Raft id is its data dir's incarnation (a
//!   random id written in the manifest at first start), not its name: a node that comes back
//!   with an empty data dir has a new id, so it cannot vote under the id whose votes it
//!   forgot (a member that votes twice in a term can elect two leaders and lose acknowledged
//!   writes). The links refuse to deliver anything addressed to the old id. Each leader
//!   compares its group's voters with the ids its replicas now prove in their handshakes;
//!   when a replica's id changed, it adds the new id as a learner, waits for it to catch up
//!   (openraft's blocking `add_learner`), then replaces the voter set (joint consensus),
//!   which removes the old id. Until then the group keeps its quorum among the other two.
//! - **Handoff.** On a graceful shutdown, a leader asks an up-to-date follower to campaign
//!   and waits (bounded) until it lost leadership, so writes move on without waiting for an
//!   election timeout.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use openraft::{AsyncRuntime, BasicNode, ServerState};

use super::core::Core;
use super::shard::Shard;
use crate::cluster::rpc::{Forward, Forwarded, Request, Response};
use crate::limits::{MEMBERSHIP_CHANGE_TIMEOUT_MS, MEMBERSHIP_CHECK_MS};
use crate::raft::runtime::GlommioRuntime;

/// Bootstrap and repair this core's groups until the node drains.
pub async fn maintain(core: Rc<Core>) {
    let busy: Rc<RefCell<HashSet<u32>>> = Rc::default();
    while !core.draining.is_set() {
        let shards: Vec<Rc<Shard>> = core.shards.borrow().values().cloned().collect();
        for shard in shards {
            // A damaged replica that caught up gets its elections back (shard.rs).
            shard.abstaining();
            // Most rounds find nothing to do: decide from the published metrics, without
            // a message to the group's Raft task.
            if !needs_attention(&core, &shard) || !busy.borrow_mut().insert(shard.id) {
                continue;
            }
            let (core, busy) = (core.clone(), busy.clone());
            glommio::spawn_local(async move {
                let id = shard.id;
                if let Err(why) = check(&core, &shard).await {
                    tracing::debug!(shard = id, "membership: {why}");
                }
                busy.borrow_mut().remove(&id);
            })
            .detach();
        }
        glommio::timer::sleep(Duration::from_millis(MEMBERSHIP_CHECK_MS)).await;
    }
}

/// Whether `shard` may need bootstrapping (no membership yet) or repair (it leads and a
/// voter is not a replica's current incarnation), from its metrics and the links alone.
fn needs_attention(core: &Core, shard: &Shard) -> bool {
    let no_voters = shard.raft.metrics().borrow().membership_config.membership().voter_ids().next().is_none();
    if no_voters {
        return core.replicas(shard.id).first() == Some(&core.config.node_name);
    }
    // A joint config left by a crashed leader needs finishing even when its voters happen
    // to be the wanted ones (`repair`).
    shard.under_replicated(core.wanted_voters(shard.id))
}

async fn check(core: &Core, shard: &Shard) -> Result<(), String> {
    let names = core.replicas(shard.id).to_vec();
    let initialized = shard.raft.is_initialized().await.map_err(|e| e.to_string())?;
    if !initialized {
        return bootstrap(core, shard, &names).await;
    }
    if shard.leader_check().is_err() {
        return Ok(());
    }
    repair(core, shard, &names).await
}

fn rpc_timeout() -> Duration {
    Duration::from_millis(MEMBERSHIP_CHECK_MS * 2)
}

/// Initialize the group if this node is its first replica and no replica has it yet.
async fn bootstrap(core: &Core, shard: &Shard, names: &[String]) -> Result<(), String> {
    if names.first() != Some(&core.config.node_name) {
        return Ok(());
    }
    let mut voters = BTreeMap::new();
    voters.insert(core.node_id, BasicNode::new(&core.config.node_name));
    for name in &names[1..] {
        match core.links.call(name, None, shard.id, &Request::Forward(Forward::GroupState), rpc_timeout()).await {
            Ok(Response::Forward(Forwarded::GroupState { initialized: false })) => {}
            Ok(Response::Forward(Forwarded::GroupState { initialized: true })) => {
                return Err(format!("shard {}: {name} already has the group; waiting to be added back", shard.id))
            }
            other => return Err(format!("shard {}: cannot bootstrap yet, {name}: {other:?}", shard.id)),
        }
        let id = core.links.peer_id(name).ok_or_else(|| format!("{name} has no proven node id"))?;
        voters.insert(id, BasicNode::new(name));
    }
    shard.raft.initialize(voters).await.map_err(|e| format!("initializing shard {}: {e}", shard.id))?;
    tracing::debug!(shard = shard.id, "initialized the group");
    Ok(())
}

/// As leader: make the voters the replicas' current incarnations.
async fn repair(core: &Core, shard: &Shard, names: &[String]) -> Result<(), String> {
    let metrics = shard.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    // A joint config here is a change its leader did not finish (openraft leaves the group
    // in joint consensus when the leader dies between the two steps): this leader finishes
    // it below, towards the replicas' current incarnations. Waiting for "the change in
    // progress" instead left such a group joint for good — a wiped replica's new incarnation
    // was never added, and the group lost a voter's worth of fault tolerance (found by the
    // fault campaign; test: tests/cluster.rs `a_membership_change_cut_short_by_a_leader_crash_is_finished`).
    let joint = super::shard::is_joint(&membership);
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut wanted = BTreeMap::new();
    for name in names {
        if core.links.peer_id(name).is_none() {
            let _ = core.links.connect(name).await;
        }
        let id = core.links.peer_id(name).ok_or_else(|| format!("{name}: node id not known yet"))?;
        wanted.insert(id, name.clone());
    }
    let wanted_ids: BTreeSet<u64> = wanted.keys().copied().collect();
    if wanted_ids == voters && !joint {
        return Ok(());
    }
    let limit = Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS);
    for (id, name) in &wanted {
        if membership.get_node(id).is_none() {
            tracing::info!(shard = shard.id, peer = %name, node_id = id, "adding a replica's new incarnation as a learner");
            let added = GlommioRuntime::timeout(limit, shard.raft.add_learner(*id, BasicNode::new(name), true)).await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("adding learner {id}: {e}")),
                Err(_) => return Err(format!("learner {id} did not catch up within {limit:?}")),
            }
        }
    }
    crash_in_joint_config_if_asked(shard);
    let changed = GlommioRuntime::timeout(limit, shard.raft.change_membership(wanted_ids.clone(), false)).await;
    match changed {
        Ok(Ok(_)) => {
            tracing::info!(shard = shard.id, old = ?voters, new = ?wanted_ids, "replaced the group's voters");
            Ok(())
        }
        Ok(Err(e)) => Err(format!("changing voters: {e}")),
        Err(_) => Err(format!("changing voters: not committed within {limit:?}")),
    }
}

/// Debug builds only, for tests: with `STARCITE_TEST_CRASH_IN_JOINT_CONFIG=1` the process
/// exits (status 86, as a crash would: nothing is flushed) as soon as this leader's group
/// enters the joint config of a change it started — the window between openraft's two
/// membership steps that a leader crash leaves behind. Release builds ignore the variable.
/// One watcher per shard and process (repair retries every round until it succeeds).
fn crash_in_joint_config_if_asked(shard: &Shard) {
    thread_local! {
        static ARMED: RefCell<HashSet<u32>> = RefCell::default();
    }
    if !cfg!(debug_assertions) || std::env::var("STARCITE_TEST_CRASH_IN_JOINT_CONFIG").as_deref() != Ok("1") {
        return;
    }
    if !ARMED.with(|armed| armed.borrow_mut().insert(shard.id)) {
        return;
    }
    let mut metrics = shard.raft.metrics();
    let id = shard.id;
    glommio::spawn_local(async move {
        loop {
            if super::shard::is_joint(metrics.borrow().membership_config.membership()) {
                eprintln!("starcite: STARCITE_TEST_CRASH_IN_JOINT_CONFIG: exiting in the joint config of shard {id}");
                std::process::exit(86);
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
    .detach();
}

/// Hand leadership of this core's groups to up-to-date followers, waiting at most
/// `within` for all of them to move. From the start, this core refuses new shard
/// operations as "not leader" (having done nothing), so callers go elsewhere; then each
/// led group waits until a follower has every entry (in-flight proposals commit), and that
/// follower is asked to campaign: its log is as long as any, so it wins at once.
pub async fn hand_off_leadership(core: &Core, within: Duration) {
    if core.members.len() <= 1 {
        return;
    }
    core.stopping.set(true);
    let deadline = Instant::now() + within;
    let shards: Vec<Rc<Shard>> = core.shards.borrow().values().cloned().collect();
    let mut handing = Vec::new();
    for shard in shards {
        if shard.raft.metrics().borrow().state == ServerState::Leader {
            let links = core.links.clone();
            let me = core.node_id;
            let task = glommio::spawn_local(async move {
                hand_off(&links, me, &shard, deadline).await;
            });
            handing.push(task);
        }
    }
    for task in handing {
        task.await;
    }
}

async fn hand_off(links: &crate::cluster::links::Links, me: u64, shard: &Shard, deadline: Instant) {
    let mut asked = None;
    while Instant::now() < deadline {
        let metrics = shard.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return;
        }
        if asked.is_none() {
            let last = metrics.last_log_index;
            let caught_up = metrics
                .replication
                .as_ref()
                .and_then(|r| r.iter().find(|(id, m)| **id != me && m.map(|l| l.index) == last).map(|(id, _)| *id));
            let name = caught_up.and_then(|id| metrics.membership_config.membership().get_node(&id).map(|n| (id, n.addr.clone())));
            if let Some((id, name)) = name {
                let _ = links.call(&name, Some(id), shard.id, &Request::Forward(Forward::Campaign), rpc_timeout()).await;
                asked = Some(id);
            }
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}
