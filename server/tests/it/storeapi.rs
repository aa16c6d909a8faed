//! `strata tsdb --grpc-address`: the TSDB's own StoreAPI (as Thanos Receive
//! serves one), through the StoreAPI acceptance suite run against every
//! implementation, plus its limits, TLS and metrics.

use std::path::Path;

use strata_proto::grpc::{ClientOptions, ClientTls, MessageLimits, ServerTls};
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::label_matcher::Type;
use strata_proto::thanos::metadata_client::MetadataClient;
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::{MetricMetadataRequest, SeriesRequest};
use strata_server::{Server, ServerOptions};
use strata_storetest::pki::{call_info, new_ca, new_leaf};
use strata_storetest::{m, run_acceptance, Dataset, Options, TWO_HOURS};
use tonic::transport::Channel;

const CONFIG: &str = "global:\n  external_labels:\n    cluster: acceptance\n    replica: r0\n";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The dataset in blocks (strata's backfill), its last hour remote-written
/// into the head; the server serves gRPC on a free port.
async fn loaded_server(work: &Path, f: impl FnOnce(&mut ServerOptions)) -> (Dataset, Server) {
    let start = (now_ms() - 7 * 3600 * 1000) / TWO_HOURS * TWO_HOURS;
    let d = Dataset::generate(start);
    let data = work.join("data");
    d.write_blocks(&data).expect("backfill");
    let config = work.join("prometheus.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut opts = ServerOptions {
        config_file: Some(config),
        storage_path: data,
        listen_address: "127.0.0.1:0".into(),
        enable_remote_write_receiver: true,
        retention_time: Some(std::time::Duration::from_secs(30 * 86400)),
        grpc_address: Some("127.0.0.1:0".into()),
        ..ServerOptions::default()
    };
    f(&mut opts);
    let server = Server::start(opts).await.expect("strata tsdb starts");
    let url = format!("http://{}", server.local_addr());
    d.remote_write(&reqwest::Client::new(), &url)
        .await
        .expect("remote write");
    (d, server)
}

async fn channel(server: &Server) -> Channel {
    let addr = server.grpc_addr().expect("gRPC is served");
    ClientOptions::default()
        .endpoint(&addr.to_string())
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsdb_storeapi_passes_the_acceptance_suite() {
    let work = tempfile::tempdir().unwrap();
    let (d, server) = loaded_server(work.path(), |_| {}).await;
    let ch = channel(&server).await;
    let max = strata_proto::grpc::MAX_MESSAGE_SIZE;
    let store = StoreClient::new(ch.clone()).with_message_limits(max);
    let info = InfoClient::new(ch.clone()).with_message_limits(max);
    let opts = Options {
        label_sets: vec![vec![
            ("cluster".into(), "acceptance".into()),
            ("replica".into(), "r0".into()),
        ]],
        replica_label: Some("replica".into()),
        expect_batches: true,
        series_limit: true,
        external_only_matchers_invalid: true,
    };
    let report = match run_acceptance(store, Some(info.clone()), &d, &opts).await {
        Ok(r) => r,
        Err(e) => panic!("strata tsdb StoreAPI:\n{e}"),
    };
    assert!(report.passed.len() > 100, "{}", report.passed.len());

    let i = info
        .clone()
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(i.component_type, "receive");
    let store_info = i.store.expect("StoreAPI advertised");
    assert_eq!(store_info.min_time, d.start(), "min time is the data's");
    assert!(i.metric_metadata.is_some(), "Metadata API advertised");

    // Metadata: what remote write brought, Prometheus' limit rule.
    use strata_proto::prometheus as pb;
    let md_req = pb::WriteRequest {
        metadata: vec![pb::MetricMetadata {
            r#type: pb::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "storeapi_test_total".into(),
            help: "A counter for the Metadata API test.".into(),
            unit: String::new(),
        }],
        ..Default::default()
    };
    use prost::Message;
    let body = snap::raw::Encoder::new()
        .compress_vec(&md_req.encode_to_vec())
        .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", server.local_addr()))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut md = MetadataClient::new(ch.clone());
    let all = md
        .metric_metadata(MetricMetadataRequest {
            limit: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one frame");
    let none = md
        .metric_metadata(MetricMetadataRequest {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one frame");
    use strata_proto::thanos::metric_metadata_response::Result as MdResult;
    let count = |r: Option<MdResult>| match r {
        Some(MdResult::Metadata(m)) => m.metadata.len(),
        other => panic!("unexpected frame {other:?}"),
    };
    match all.result {
        Some(MdResult::Metadata(m)) => {
            let e = &m.metadata["storeapi_test_total"].metas;
            assert_eq!(e.len(), 1, "{m:?}");
            assert_eq!(e[0].r#type, "counter");
            assert_eq!(e[0].help, "A counter for the Metadata API test.");
        }
        other => panic!("unexpected frame {other:?}"),
    }
    assert_eq!(count(none.result), 0);

    // Every call above is counted on /metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for method in [
        "Series",
        "LabelNames",
        "LabelValues",
        "Info",
        "MetricMetadata",
    ] {
        let line = format!(
            "strata_tsdb_storeapi_requests_total{{method=\"{method}\",result=\"success\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing in:\n{metrics}");
    }
    assert!(
        metrics
            .contains("strata_tsdb_storeapi_requests_total{method=\"Series\",result=\"failure\"}"),
        "the suite's invalid requests are counted as failures"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_over_the_sample_limit_is_resource_exhausted() {
    let work = tempfile::tempdir().unwrap();
    let (d, server) = loaded_server(work.path(), |o| o.remote_read_sample_limit = 100).await;
    let mut store = StoreClient::new(channel(&server).await);
    let req = |name: &str| SeriesRequest {
        min_time: d.start(),
        max_time: d.max_time(),
        matchers: vec![m(Type::Re, "__name__", name)],
        ..Default::default()
    };
    // Over the limit: refused before anything is sent.
    let Err(err) = store.series(req(".+")).await else {
        panic!("not refused at call time");
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("sample limit (100)"), "{err:?}");
    // Nothing selected is under any limit.
    let mut s = store
        .series(req("no_such_metric"))
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_none());
    // Bad input is InvalidArgument, not a panic.
    let bad = SeriesRequest {
        matchers: vec![m(Type::Re, "__name__", "(")],
        ..req("x")
    };
    let Err(err) = store.series(bad).await else {
        panic!("a bad regex is not refused");
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_of_the_ca() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca_pem, ca) = new_ca("tsdb test CA");
    let (_, rogue) = new_ca("rogue CA");
    let (server_cert, server_key) = new_leaf(&ca, &["tsdb.test"], ServerAuth);
    let (client_cert, client_key) = new_leaf(&ca, &["querier"], ClientAuth);
    let (rogue_cert, rogue_key) = new_leaf(&rogue, &["intruder"], ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    let tls = ServerTls::from_pem(server_cert, server_key).with_client_ca_pem(ca_pem.clone());
    let server = Server::start(ServerOptions {
        storage_path: dir.path().join("data"),
        listen_address: "127.0.0.1:0".into(),
        grpc_address: Some("127.0.0.1:0".into()),
        grpc_tls: Some(tls),
        ..ServerOptions::default()
    })
    .await
    .expect("starts");
    let addr = server.grpc_addr().unwrap().to_string();
    let call = |tls: Option<ClientTls>| call_info(&addr, tls);
    let base = || {
        ClientTls::new()
            .with_ca_pem(ca_pem.clone())
            .with_server_name("tsdb.test")
    };
    let info = call(Some(base().with_identity_pem(client_cert, client_key)))
        .await
        .expect("a client of the CA is served");
    assert_eq!(info.component_type, "receive");
    // An empty TSDB advertises every time, so no querier prunes it before
    // its first data.
    assert_eq!(info.store.unwrap().min_time, i64::MIN);
    call(Some(base())).await.expect_err("no client certificate");
    call(Some(base().with_identity_pem(rogue_cert, rogue_key)))
        .await
        .expect_err("a certificate of another CA");
    call(None).await.expect_err("plain text");
    server.shutdown().await.unwrap();
}

/// The Query API (`/thanos.Query/Query`, `QueryRange`): the server's engine
/// over its data with the external labels attached, so `by (cluster)`
/// groups as over the StoreAPI; answers agree with the HTTP API's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_evaluates_with_external_labels() {
    use strata_proto::thanos::query_client::QueryClient;
    use strata_proto::thanos::{query_range_response, query_response};
    use strata_proto::thanos::{QueryRangeRequest, QueryRequest};
    let work = tempfile::tempdir().unwrap();
    let (d, server) = loaded_server(work.path(), |_| {}).await;
    let mut q = QueryClient::new(channel(&server).await);
    let t = (d.max_time() / 1000) - 600;
    let instant = |query: &str| QueryRequest {
        query: query.into(),
        time_seconds: t,
        ..Default::default()
    };
    let series = |frames: Vec<query_response::Result>| -> Vec<(Vec<(String, String)>, f64)> {
        frames
            .into_iter()
            .filter_map(|f| match f {
                query_response::Result::Timeseries(ts) => Some((
                    ts.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    ts.samples[0].value,
                )),
                query_response::Result::Warnings(_) => None,
            })
            .collect()
    };
    let mut run = async |r: QueryRequest| -> Result<Vec<query_response::Result>, tonic::Status> {
        let mut s = q.query(r).await?.into_inner();
        let mut out = Vec::new();
        while let Some(f) = s.message().await? {
            out.extend(f.result);
        }
        Ok(out)
    };
    let grouped = series(
        run(instant("count by (cluster, replica) ({__name__=~\".+\"})"))
            .await
            .unwrap(),
    );
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert_eq!(
        grouped[0].0,
        vec![
            ("cluster".to_string(), "acceptance".to_string()),
            ("replica".to_string(), "r0".to_string())
        ]
    );
    // The HTTP API (no external labels) counts the same series.
    let http: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!(
            "http://{}/api/v1/query?query=count(%7B__name__%3D~%22.%2B%22%7D)&time={t}",
            server.local_addr()
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let want: f64 = http["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(want > 10.0, "{http}");
    assert_eq!(grouped[0].1, want);
    // A matcher on an external label is decided by its value.
    let other = series(
        run(instant("count({__name__=~\".+\", cluster=\"other\"})"))
            .await
            .unwrap(),
    );
    assert!(other.is_empty(), "{other:?}");
    let mine = series(
        run(instant("count({cluster=\"acceptance\"})"))
            .await
            .unwrap(),
    );
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].1, want);
    // Series carrying a replica label the querier deduplicates by are not
    // evaluated here: the querier must merge replicas itself.
    let err = run(QueryRequest {
        enable_dedup: true,
        replica_labels: vec!["__name__".into()],
        ..instant("count by (cluster) ({__name__=~\".+\"})")
    })
    .await
    .unwrap_err();
    assert!(err.message().contains("replica label"), "{err:?}");
    // Bad input is InvalidArgument.
    let err = run(instant("sum(")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // A range query: one point per step.
    let mut s = q
        .query_range(QueryRangeRequest {
            query: "count by (cluster) ({__name__=~\".+\"})".into(),
            start_time_seconds: t - 300,
            end_time_seconds: t,
            interval_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut points = 0;
    while let Some(f) = s.message().await.unwrap() {
        if let Some(query_range_response::Result::Timeseries(ts)) = f.result {
            assert_eq!(ts.labels[0].value, "acceptance");
            points += ts.samples.len();
        }
    }
    assert_eq!(points, 6);
    // More steps than the HTTP API allows: refused, not evaluated.
    let Err(err) = q
        .query_range(QueryRangeRequest {
            query: "up".into(),
            start_time_seconds: t - 5 * 3600,
            end_time_seconds: t,
            interval_seconds: 1,
            ..Default::default()
        })
        .await
    else {
        panic!("18,000 steps accepted");
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let info = InfoClient::new(channel(&server).await)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.query.is_some(), "the Query API is advertised");
    server.shutdown().await.unwrap();
}
