//! Sidecars ship their TSDB's blocks to a real S3 server (s3s-fs): every
//! block is readable through the S3 API with a `meta.json` carrying the
//! Thanos section (the cluster's external labels, source `sidecar`). A
//! cluster taken down and brought back keeps shipping without uploading a
//! block twice, and the querier over both clusters answers again.

use std::collections::BTreeMap;
use std::path::Path;

use crate::federation::Federation;
use crate::harness::*;

/// Block directories (ULID names with a meta.json) of a data dir.
fn local_blocks(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data)
        .expect("read data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("meta.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn bucket(s3: &S3Server) -> strata_bucket::Bucket {
    strata_bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .expect("objstore config")
        .build()
        .expect("bucket")
}

/// Block ids in the bucket with their meta (read through S3).
fn bucket_metas(
    rt: &tokio::runtime::Runtime,
    b: &strata_bucket::Bucket,
) -> BTreeMap<String, strata_bucket::Meta> {
    rt.block_on(async {
        let mut out = BTreeMap::new();
        for id in strata_bucket::block::list_block_ids(b)
            .await
            .expect("list blocks")
        {
            let meta = strata_bucket::block::download_meta(b, id)
                .await
                .unwrap_or_else(|e| panic!("meta.json of {id}: {e}"));
            out.insert(id.to_string(), meta);
        }
        out
    })
}

#[test]
fn blocks_reach_s3_with_thanos_meta_and_survive_a_cluster_restart() {
    let s3_dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(s3_dir.path());
    let mut fed = Federation::start(2, false, Some(&s3.objstore_yaml()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let b = bucket(&s3);

    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (i, (tsdb, _)) in fed.clusters.iter().enumerate() {
        let blocks = local_blocks(&tsdb.data);
        assert!(!blocks.is_empty(), "cluster {i} has no blocks");
        for id in blocks {
            expected.insert(id, format!("cluster{}", i + 1));
        }
    }
    let mut metas = BTreeMap::new();
    fed.clusters[0]
        .1
        .proc
        .wait_until("all blocks uploaded", || {
            metas = bucket_metas(&rt, &b);
            expected.keys().all(|k| metas.contains_key(k))
        });
    for (id, cluster) in &expected {
        let m = &metas[id];
        let want: BTreeMap<String, String> = [("cluster".to_string(), cluster.clone())]
            .into_iter()
            .collect();
        assert_eq!(m.thanos.labels, want, "external labels of {id}");
        assert_eq!(m.thanos.source, "sidecar", "source of {id}");
        assert_eq!(m.block.ulid.to_string(), *id);
        assert!(m.block.stats.num_samples > 0, "{id} has no samples");
        // Every file of the block is there.
        let key = format!("{id}/index");
        assert!(
            rt.block_on(b.exists(&key)).expect("exists"),
            "{key} missing"
        );
    }
    let uploaded = metas.len();

    // cluster2 down (TSDB and sidecar), and back on the same ports and data.
    let q = fed.querier("querier", &[]);
    let (tsdb, sidecar) = &mut fed.clusters[1];
    sidecar.proc.kill();
    tsdb.proc.kill();
    let r = q.api.instant(
        "count by (cluster) (kube_pod_info)",
        fed.ds.qend as f64,
        &[],
    );
    assert_eq!(r.1["status"], "success", "{}", r.1);
    assert_eq!(
        result_len(&r.1),
        1,
        "only cluster1 while cluster2 is down: {}",
        r.1
    );
    tsdb.start_again();
    sidecar.restart();
    let mut q = q;
    q.wait_stores(2);
    let r = q.api.instant(
        "count by (cluster) (kube_pod_info)",
        fed.ds.qend as f64,
        &[],
    );
    assert_eq!(
        result_len(&r.1),
        2,
        "both clusters after the restart: {}",
        r.1
    );
    // No block uploaded twice (a block is a ULID directory: a second upload
    // would add a new id with the same time range and labels).
    let after = bucket_metas(&rt, &b);
    assert_eq!(
        after.len(),
        uploaded,
        "blocks in the bucket changed after the restart"
    );
    s3.proc.assert_running();
}
