//! The shipper without Prometheus: exactly-once uploads, restarts, and an
//! object-store failure that is retried instead of skipped.

use strata_sidecar::shipper::{read_meta_file, META_FILE_NAME};

use crate::{backfill, block_ids, fs_bucket, now_ms, shipper};

#[tokio::test]
async fn failure_is_retried_and_nothing_duplicates() {
    let tsdb = tempfile::tempdir().unwrap();
    let now = now_ms();
    backfill(tsdb.path(), now - 7 * 3600 * 1000, now - 3600 * 1000, 2);
    let mut ids = block_ids(tsdb.path());
    // Shipping order is minTime order.
    ids.sort_by_key(|id| {
        strata_tsdb::meta::BlockMeta::read(&tsdb.path().join(id))
            .unwrap()
            .min_time
    });
    assert!(ids.len() >= 3, "several 2h blocks: {ids:?}");

    // A bucket whose root is replaced by a file: every upload fails.
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("bucket");
    std::fs::create_dir(&root).unwrap();
    let s = shipper(tsdb.path(), fs_bucket(&root));
    std::fs::remove_dir(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let stats = s.sync().await.unwrap();
    assert_eq!(stats.failed, 1, "stops at the first failure");
    assert!(stats.uploaded.is_empty());
    assert_eq!(read_meta_file(tsdb.path()).unwrap().uploaded, vec![]);

    // The store recovers: everything is shipped, in time order.
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let stats = s.sync().await.unwrap();
    assert_eq!(stats.failed, 0);
    let shipped: Vec<String> = stats.uploaded.iter().map(|u| u.to_string()).collect();
    assert_eq!(shipped, ids, "uploaded in time order");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(block_ids(&root), sorted);

    // Again, and after a "restart" (new shipper): nothing more.
    assert!(s.sync().await.unwrap().uploaded.is_empty());
    let s2 = shipper(tsdb.path(), fs_bucket(&root));
    assert!(s2.sync().await.unwrap().uploaded.is_empty());

    // Lost meta file: blocks already in the bucket are only recorded.
    std::fs::remove_file(tsdb.path().join(META_FILE_NAME)).unwrap();
    let stats = s2.sync().await.unwrap();
    assert!(stats.uploaded.is_empty());
    assert_eq!(stats.recorded.len(), ids.len());
    let recorded: Vec<String> = read_meta_file(tsdb.path())
        .unwrap()
        .uploaded
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(recorded, ids);
    assert_eq!(s2.metrics().uploads(), 0);
    assert_eq!(s.metrics().uploads() as usize, ids.len());
    assert_eq!(s.metrics().upload_failures(), 1);
}
