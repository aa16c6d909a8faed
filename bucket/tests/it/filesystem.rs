//! The FILESYSTEM provider, configured the way a user would.

use strata_bucket::{block, FetcherOptions, MetaFetcher, ObjstoreConfig};
use ulid::Ulid;

use crate::{fixture_block, read_tree, sidecar_meta, FIXTURE_ID};

#[tokio::test]
async fn filesystem_bucket_round_trip_and_cleanup() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("bucket");
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: tenant-a\n",
        root.display()
    );
    let bucket = ObjstoreConfig::parse(&yaml).unwrap().build().unwrap();
    let id: Ulid = FIXTURE_ID.parse().unwrap();

    block::upload_block(&bucket, &fixture_block(), sidecar_meta())
        .await
        .unwrap();
    // The layout on disk is Thanos': <dir>/<prefix>/<ULID>/...
    let on_disk: Vec<String> = read_tree(&root).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        on_disk,
        vec![
            format!("tenant-a/{FIXTURE_ID}/chunks/000001"),
            format!("tenant-a/{FIXTURE_ID}/index"),
            format!("tenant-a/{FIXTURE_ID}/meta.json"),
        ]
    );
    let meta_text =
        std::fs::read_to_string(root.join(format!("tenant-a/{FIXTURE_ID}/meta.json"))).unwrap();
    assert!(
        meta_text.contains("\t\"thanos\": {\n\t\t\"labels\": {\n\t\t\t\"cluster\": \"eu1\","),
        "{meta_text}"
    );

    let fetcher = MetaFetcher::new(bucket.clone(), FetcherOptions::default()).unwrap();
    let view = fetcher.fetch().await.unwrap();
    assert_eq!(view.metas.keys().copied().collect::<Vec<_>>(), vec![id]);
    assert_eq!(view.metas[&id].thanos.labels["cluster"], "eu1");

    let dst = d.path().join("local").join(FIXTURE_ID);
    block::download_block(&bucket, id, &dst).await.unwrap();
    let got = read_tree(&dst);
    let want: Vec<_> = read_tree(&fixture_block())
        .into_iter()
        .filter(|(p, _)| p != "tombstones" && p != "meta.json")
        .collect();
    assert_eq!(
        got.iter()
            .filter(|(p, _)| p != "meta.json")
            .cloned()
            .collect::<Vec<_>>(),
        want
    );

    block::mark_for_deletion(&bucket, id, "test").await.unwrap();
    block::delete_block(&bucket, id).await.unwrap();
    // Emptied directories are removed too, so the deleted block does not
    // come back as a "partial upload".
    let view = fetcher.fetch().await.unwrap();
    assert!(view.metas.is_empty() && view.partial.is_empty(), "{view:?}");
    assert!(block::list_block_ids(&bucket).await.unwrap().is_empty());
}
