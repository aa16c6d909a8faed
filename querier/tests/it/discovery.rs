//! Endpoint discovery and health: file SD, dns+, the unhealthy timeout,
//! and gRPC client mutual TLS.

use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_proto::grpc::{ClientTls, ServerTls};

use crate::*;

fn up() -> Vec<TestSeries> {
    vec![ts(
        &[("__name__", "up"), ("job", "a")],
        samples(0, 600_000, 15_000, |_| 1.0),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_is_watched() {
    let s1 = start_store(&[("cluster", "c1")], up()).await;
    let s2 = start_store(&[("cluster", "c2")], up()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stores.yml");
    std::fs::write(&file, format!("- targets: ['{}']\n", s1.addr)).unwrap();
    let q = start_querier(&[], |c| c.endpoints.sd_files = vec![file.clone()]).await;
    q.wait_stores(1).await;

    // A changed file is picked up without waiting for --store.sd-interval.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        &file,
        format!("[{{\"targets\": [\"{}\", \"{}\"]}}]", s1.addr, s2.addr),
    )
    .unwrap();
    q.wait_stores(2).await;
    let (_, v) = q.query("up", 300.0, "").await;
    assert_eq!(result(&v).len(), 2, "{v}");

    // A broken file keeps the last good targets.
    std::fs::write(&file, "- targets: [not-an-address]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.wait_stores(2).await;

    std::fs::write(&file, format!("- targets: ['{}']\n", s2.addr)).unwrap();
    q.wait_stores(1).await;
    let (_, v) = q.get_json("/api/v1/stores").await;
    assert_eq!(v["data"]["sidecar"][0]["name"], s2.addr.as_str());
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_endpoints_resolve() {
    let s = start_store(&[("cluster", "c1")], up()).await;
    let port = s.addr.rsplit_once(':').unwrap().1;
    let q = start_querier(&[&format!("dns+localhost:{port}")], |_| {}).await;
    // localhost may also resolve to ::1, where nothing listens: that
    // endpoint never answers Info and never joins the active set.
    q.wait_stores(1).await;
    let (_, v) = q.get_json("/api/v1/stores").await;
    assert_eq!(v["data"]["sidecar"][0]["name"], format!("127.0.0.1:{port}"));
    q.q.shutdown().await.unwrap();
}

/// The names of the stores in `/api/v1/stores`, sorted.
async fn store_names(q: &TestQuerier) -> Vec<String> {
    let (_, v) = q.get_json("/api/v1/stores").await;
    let mut names: Vec<String> = v["data"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Waits until the querier's stores are exactly `want` (sorted).
async fn wait_store_names(q: &TestQuerier, want: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = store_names(q).await;
        if have == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected stores {want:?}, have {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnssrv_endpoints_follow_the_records() {
    let s1 = start_store(&[("cluster", "c1")], up()).await;
    let s2 = start_store(&[("cluster", "c2")], up()).await;
    let port = |a: &str| a.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    let dns = crate::dnsserver::start().await;
    {
        let mut z = dns.zone.lock();
        z.a.insert("a.stores.test".into(), vec![[127, 0, 0, 1].into()]);
        z.a.insert("b.stores.test".into(), vec![[127, 0, 0, 1].into()]);
        z.srv.insert(
            "_grpc._tcp.stores.test".into(),
            vec![(port(&s1.addr), "a.stores.test".into())],
        );
    }
    let q = start_querier(&["dnssrv+_grpc._tcp.stores.test"], |c| {
        c.endpoints.dns_resolver = Some(dns.addr);
        c.endpoints.dns_interval = Duration::from_millis(100);
    })
    .await;
    wait_store_names(&q, std::slice::from_ref(&s1.addr)).await;
    assert!(dns.queries.load(Ordering::Relaxed) >= 2, "SRV and A asked");
    let (_, v) = q.query("up", 300.0, "").await;
    assert_eq!(result(&v).len(), 1, "{v}");

    // A second SRV record: the endpoint appears.
    dns.zone.lock().srv.insert(
        "_grpc._tcp.stores.test".into(),
        vec![
            (port(&s1.addr), "a.stores.test".into()),
            (port(&s2.addr), "b.stores.test".into()),
        ],
    );
    let mut both = vec![s1.addr.clone(), s2.addr.clone()];
    both.sort();
    wait_store_names(&q, &both).await;
    let (_, v) = q.query("up", 300.0, "").await;
    assert_eq!(result(&v).len(), 2, "{v}");

    // The first record goes away: so does its endpoint.
    dns.zone.lock().srv.insert(
        "_grpc._tcp.stores.test".into(),
        vec![(port(&s2.addr), "b.stores.test".into())],
    );
    wait_store_names(&q, std::slice::from_ref(&s2.addr)).await;

    // The SRV target loses its address: no endpoints, as Thanos treats a
    // name that is not found (an empty answer, not an error).
    dns.zone.lock().a.remove("b.stores.test");
    wait_store_names(&q, &[]).await;
    // And the whole SRV name disappears (NXDOMAIN): still none, no panic.
    dns.zone.lock().srv.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store_names(&q).await.is_empty());
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_a_endpoints_follow_the_records() {
    let s1 = start_store(&[("cluster", "c1")], up()).await;
    let port = s1.addr.rsplit_once(':').unwrap().1;
    let dns = crate::dnsserver::start().await;
    dns.zone
        .lock()
        .a
        .insert("stores.test".into(), vec![[127, 0, 0, 1].into()]);
    let q = start_querier(&[&format!("dns+stores.test:{port}")], |c| {
        c.endpoints.dns_resolver = Some(dns.addr);
        c.endpoints.dns_interval = Duration::from_millis(100);
    })
    .await;
    wait_store_names(&q, std::slice::from_ref(&s1.addr)).await;
    // A second address where nothing listens: discovered, never active.
    dns.zone.lock().a.insert(
        "stores.test".into(),
        vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()],
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store_names(&q).await, vec![s1.addr.clone()]);
    // The name goes away: so does the endpoint.
    dns.zone.lock().a.clear();
    wait_store_names(&q, &[]).await;
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_endpoint_is_dropped_after_the_timeout_and_readded() {
    let good = start_store(&[("cluster", "c1")], up()).await;
    let flaky = start_store(&[("cluster", "c2")], up()).await;
    let q = start_querier(&[&good.addr, &flaky.addr], |c| {
        c.endpoints.unhealthy_timeout = Duration::from_millis(800);
    })
    .await;
    q.wait_stores(2).await;

    flaky.state.fail_info.store(true, Ordering::Relaxed);
    flaky.state.fail.store(true, Ordering::Relaxed);
    // Within the timeout it is still asked, and the failure is a warning.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, v) = q.query("up", 300.0, "").await;
    assert!(warnings(&v).iter().any(|w| w.contains(&flaky.addr)), "{v}");
    let (_, v) = q.get_json("/api/v1/stores").await;
    let entry = v["data"]["sidecar"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == flaky.addr.as_str())
        .cloned()
        .expect("still listed");
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("Info is failing"),
        "{entry}"
    );

    // After the timeout it is gone: no warning, no call.
    q.wait_stores(1).await;
    let calls = flaky.state.series_calls.load(Ordering::Relaxed);
    let (_, v) = q.query("up", 300.0, "").await;
    assert!(warnings(&v).is_empty(), "{v}");
    assert_eq!(result(&v).len(), 1);
    assert_eq!(flaky.state.series_calls.load(Ordering::Relaxed), calls);
    let (_, metrics) = q.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "strata_querier_endpoint_up{{component=\"sidecar\",endpoint=\"{}\"}} 0",
            flaky.addr
        )),
        "{metrics}"
    );

    // It answers again: re-added.
    flaky.state.fail_info.store(false, Ordering::Relaxed);
    flaky.state.fail.store(false, Ordering::Relaxed);
    q.wait_stores(2).await;
    let (_, v) = q.query("up", 300.0, "").await;
    assert_eq!(result(&v).len(), 2, "{v}");
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_store_becomes_a_warning() {
    let good = start_store(&[("cluster", "c1")], up()).await;
    let gone = start_store(&[("cluster", "c2")], up()).await;
    let gone_addr = gone.addr.clone();
    let q = start_querier(&[&good.addr, &gone.addr], |_| {}).await;
    q.wait_stores(2).await;
    gone.stop().await;
    let (status, v) = q.query("up", 300.0, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 1);
    assert!(warnings(&v).iter().any(|w| w.contains(&gone_addr)), "{v}");
    let (status, v) = q.query("up", 300.0, "&partial_response=false").await;
    assert_eq!(status, 422);
    assert!(v["error"].as_str().unwrap().contains(&gone_addr), "{v}");
    q.q.shutdown().await.unwrap();
}

/// CA, a server certificate for `strata.test`, and a client certificate,
/// all PEM.
pub(crate) fn certs() -> (String, String, String, String, String) {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "querier test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, usage| {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (srv_cert, srv_key) = leaf("strata.test", ServerAuth);
    let (cli_cert, cli_key) = leaf("querier", ClientAuth);
    (ca.pem(), srv_cert, srv_key, cli_cert, cli_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_endpoints() {
    let (ca, srv_cert, srv_key, cli_cert, cli_key) = certs();
    let tls = ServerTls::from_pem(srv_cert, srv_key).with_client_ca_pem(ca.clone());
    let s = start_store_with(&[("cluster", "c1")], up(), i64::MIN, i64::MAX, Some(tls)).await;

    // With the client certificate: connected.
    let client = ClientTls::new()
        .with_ca_pem(ca.clone())
        .with_identity_pem(cli_cert, cli_key)
        .with_server_name("strata.test");
    let q = start_querier(&[&s.addr], |c| c.endpoints.client.tls = Some(client)).await;
    q.wait_stores(1).await;
    let (_, v) = q.query("up", 300.0, "").await;
    assert_eq!(result(&v).len(), 1, "{v}");
    q.q.shutdown().await.unwrap();

    // Without one, the server refuses: the endpoint never becomes active.
    let q = start_querier(&[&s.addr], |c| {
        c.endpoints.client.tls = Some(
            ClientTls::new()
                .with_ca_pem(ca)
                .with_server_name("strata.test"),
        );
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    q.wait_stores(0).await;
    let (_, metrics) = q.get_text("/metrics").await;
    assert!(
        metrics.contains("strata_querier_endpoints{state=\"known\"} 1"),
        "{metrics}"
    );
    q.q.shutdown().await.unwrap();
}
