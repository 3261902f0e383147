//! openraft's own storage test suite against our log store and state machine, on real
//! files through glommio. openraft's `Suite::test_all` drives each case with a tokio
//! runtime's `block_on`, which cannot poll glommio I/O, so each public case is run here
//! inside a glommio executor instead (same cases, same order as `Suite::test_store`); a
//! tokio runtime context is entered so the cases that call `tokio::time::sleep` work.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use starcite::raft::log_store::open_core_log;
use starcite::raft::{LogStore, NodeId, StateMachine, TypeConfig};

const SHARD: u32 = 3;

struct Builder {
    base: PathBuf,
    counter: AtomicU64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<NodeId>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("store-{n}"));
        let (engine, mut shards) = open_core_log(&dir.join("log"), 4 * 1024 * 1024).await.expect("open log");
        let store = LogStore::new(SHARD, engine, shards.remove(&SHARD).unwrap_or_default());
        let sm = StateMachine::open(SHARD, 16, dir.join("snapshots"), store.clone()).expect("open sm");
        Ok(((), store, sm))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, ()>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
                let base = tmp.path().to_path_buf();
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
                let handle = rt.handle().clone();
                glommio::LocalExecutorBuilder::default().make().unwrap().run(async move {
                    let _ctx = handle.enter();
                    let builder = Builder { base, counter: AtomicU64::new(0) };
                    let ((), ls, sm) = builder.build().await.unwrap();
                    S::$name(ls, sm).await.unwrap();
                });
            }
        )*
    };
}

cases!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);

#[test]
fn transfer_snapshot() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = tmp.path().to_path_buf();
    glommio::LocalExecutorBuilder::default().make().unwrap().run(async move {
        let builder = Builder { base, counter: AtomicU64::new(0) };
        S::transfer_snapshot(&builder).await.unwrap();
    });
}
