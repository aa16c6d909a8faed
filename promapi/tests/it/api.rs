//! Endpoint behaviour, byte for byte.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use strata_promapi::ApiOptions;

use crate::*;

const UP_VECTOR_30: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a:9090","job":"prom"},"value":[1700000030,"0"]},{"metric":{"__name__":"up","instance":"b:9100","job":"node"},"value":[1700000030,"1"]}]}}"#;

#[tokio::test]
async fn instant_vector() {
    let app = app();
    expect_json(&app, "/api/v1/query?query=up&time=1700000030", UP_VECTOR_30).await;
    // Millisecond times keep three fraction digits.
    expect_json(
        &app,
        &format!("/api/v1/query?query={}&time=1700000030.5", enc("up{job=\"prom\"}")),
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a:9090","job":"prom"},"value":[1700000030.500,"0"]}]}}"#,
    )
    .await;
    // `lookback_delta` applies to this query only.
    expect_json(
        &app,
        "/api/v1/query?query=up&time=1700000031&lookback_delta=0.5",
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query?query=up&time=1700000031&lookback_delta=2s",
        &UP_VECTOR_30.replace("1700000030,", "1700000031,"),
    )
    .await;
    expect_json(
        &app,
        &format!(
            "/api/v1/query?query=up&time={}",
            enc("2023-11-14T22:13:50.05Z")
        ),
        &UP_VECTOR_30.replace("1700000030,", "1700000030.050,"),
    )
    .await;
}

#[tokio::test]
async fn special_values_and_escaping() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/query?query=weird&time=1700000000",
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"weird","kind":"big"},"value":[1700000000,"1e+21"]},{"metric":{"__name__":"weird","kind":"inf"},"value":[1700000000,"+Inf"]},{"metric":{"__name__":"weird","kind":"nan"},"value":[1700000000,"NaN"]},{"metric":{"__name__":"weird","kind":"ninf"},"value":[1700000000,"-Inf"]},{"metric":{"__name__":"weird","kind":"tiny"},"value":[1700000000,"1e-07"]}]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query?query=html&time=1700000000",
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"html","v":"\u003ca\u0026b\u003e\"q\""},"value":[1700000000,"1.5"]}]}}"#,
    )
    .await;
}

#[tokio::test]
async fn matrix_results() {
    let app = app();
    // A range query always yields a matrix.
    expect_json(
        &app,
        &format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000030&step=15",
            enc("up{job=\"prom\"}")
        ),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"a:9090","job":"prom"},"values":[[1700000000,"1"],[1700000015,"1"],[1700000030,"0"]]}]}}"#,
    )
    .await;
    // Step as a duration, times with milliseconds.
    expect_json(
        &app,
        &format!(
            "/api/v1/query_range?query={}&start=1700000000.5&end=1700000016&step=15s",
            enc("up{job=\"node\"}")
        ),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"b:9100","job":"node"},"values":[[1700000000.500,"1"],[1700000015.500,"1"]]}]}}"#,
    )
    .await;
    // A range selector in an instant query.
    expect_json(
        &app,
        &format!("/api/v1/query?query={}&time=1700000030", enc("up{job=\"prom\"}[20s]")),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"a:9090","job":"prom"},"values":[[1700000015,"1"],[1700000030,"0"]]}]}}"#,
    )
    .await;
    // Scalars in a range query become a series without labels.
    expect_json(
        &app,
        "/api/v1/query_range?query=2&start=0&end=1&step=1",
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"2"],[1,"2"]]}]}}"#,
    )
    .await;
}

#[tokio::test]
async fn scalars_and_strings() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/query?query=2&time=4",
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query?query=2&time=1700000000.123",
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"2"]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query?query=1e21&time=4",
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"1000000000000000000000"]}}"#,
    )
    .await;
    for (q, v) in [
        ("NaN", "NaN"),
        ("Inf", "+Inf"),
        ("-Inf", "-Inf"),
        ("1e-7", "0.0000001"),
    ] {
        expect_json(
            &app,
            &format!("/api/v1/query?query={}&time=4", enc(q)),
            &format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[4,"{v}"]}}}}"#
            ),
        )
        .await;
    }
    expect_json(
        &app,
        &format!("/api/v1/query?query={}&time=4.5", enc("time()")),
        r#"{"status":"success","data":{"resultType":"scalar","result":[4.5,"4.5"]}}"#,
    )
    .await;
    expect_json(
        &app,
        &format!("/api/v1/query?query={}&time=4", enc("\"a<b\"")),
        r#"{"status":"success","data":{"resultType":"string","result":[4,"a\u003cb"]}}"#,
    )
    .await;
}

#[tokio::test]
async fn empty_results_and_default_time() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/query?query=nothing&time=1700000000",
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query_range?query=nothing&start=1700000000&end=1700000030&step=15",
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
    )
    .await;
    // Without `time` the query runs at "now": time() is within a few seconds.
    let r = send(&app, get("/api/v1/query?query=time()")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let t = v["data"]["result"][0].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - t).abs() < 10.0, "{t} vs {now}");
}

#[tokio::test]
async fn warnings_and_limit() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/query?query=warn&time=1700000000",
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"warn"},"value":[1700000000,"7"]}]},"warnings":["test warning"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/query?query=up&time=1700000030&limit=1",
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a:9090","job":"prom"},"value":[1700000030,"0"]}]},"warnings":["results truncated due to limit"]}"#,
    )
    .await;
    // A limit that is not exceeded changes nothing.
    expect_json(
        &app,
        "/api/v1/query?query=up&time=1700000030&limit=2",
        UP_VECTOR_30,
    )
    .await;
    let r = send(
        &app,
        get("/api/v1/query_range?query=up&start=1700000000&end=1700000030&step=15&limit=1"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["warnings"],
        serde_json::json!(["results truncated due to limit"])
    );
}

#[tokio::test]
async fn parameter_errors() {
    let app = app();
    let bad = |m: &str| (400u16, "bad_data", m.to_string());
    let cases: Vec<(String, (u16, &str, String))> = vec![
        (
            "/api/v1/query?query=up&time=x".into(),
            bad(r#"invalid parameter "time": invalid time value for 'time': cannot parse "x" to a valid timestamp"#),
        ),
        (
            "/api/v1/query?query=up&limit=-1".into(),
            bad(r#"invalid parameter "limit": limit must be non-negative"#),
        ),
        (
            "/api/v1/query?query=up&limit=x".into(),
            bad(r#"invalid parameter "limit": strconv.Atoi: parsing "x": invalid syntax"#),
        ),
        (
            "/api/v1/query?query=up&timeout=x".into(),
            bad(r#"invalid parameter "timeout": cannot parse "x" to a valid duration"#),
        ),
        (
            "/api/v1/query?query=up&lookback_delta=x".into(),
            bad(r#"error parsing lookback delta duration: cannot parse "x" to a valid duration"#),
        ),
        (
            "/api/v1/query_range?query=up&start=x&end=1&step=1".into(),
            bad(r#"invalid parameter "start": cannot parse "x" to a valid timestamp"#),
        ),
        (
            "/api/v1/query_range?query=up&start=1&step=1".into(),
            bad(r#"invalid parameter "end": cannot parse "" to a valid timestamp"#),
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=5&step=1".into(),
            bad(r#"invalid parameter "end": end timestamp must not be before start time"#),
        ),
        (
            "/api/v1/query_range?query=up&start=1&end=5&step=0".into(),
            bad(r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#),
        ),
        (
            "/api/v1/query_range?query=up&start=1&end=5&step=-15s".into(),
            bad(r#"invalid parameter "step": cannot parse "-15s" to a valid duration"#),
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=11001&step=1".into(),
            bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"),
        ),
        (
            format!(
                "/api/v1/query_range?query={}&start=0&end=10&step=1",
                enc("up[5m]")
            ),
            bad(r#"invalid parameter "query": invalid expression type "range vector" for range query, must be Scalar or instant Vector"#),
        ),
        (
            format!("/api/v1/query_range?query={}&start=0&end=10&step=1", enc("\"s\"")),
            bad(r#"invalid parameter "query": invalid expression type "string" for range query, must be Scalar or instant Vector"#),
        ),
    ];
    for (uri, (code, typ, msg)) in cases {
        expect_error(&app, &uri, code, typ, &msg).await;
    }
    // Exactly 11,000 steps is still allowed.
    let r = send(
        &app,
        get("/api/v1/query_range?query=2&start=0&end=11000&step=1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn query_errors() {
    let app = app();
    // A parse error is an invalid "query" parameter; the text after the
    // prefix is the parser's.
    let r = send(&app, get(&format!("/api/v1/query?query={}", enc("up{")))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{v}"
    );
    // An evaluation error (many-to-many matching) is "execution" / 422.
    let r = send(
        &app,
        get(&format!(
            "/api/v1/query?query={}&time=1700000000",
            enc("up + on() up")
        )),
    )
    .await;
    assert_eq!(r.status.as_u16(), 422);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errorType"], "execution");
    // A storage failure while selecting is "execution" / 422, as in
    // Prometheus (only `promql.ErrStorage` is `internal`, and selects never
    // produce it).
    expect_error(
        &app,
        "/api/v1/query?query=broken&time=1700000000",
        422,
        "execution",
        // Prometheus prefixes storage errors the same way.
        "expanding series: disk on fire",
    )
    .await;
}

#[tokio::test]
async fn timeouts() {
    let app = app();
    // The `timeout` parameter lowers the server's timeout.
    expect_error(
        &app,
        "/api/v1/query?query=slow&time=1700000000&timeout=0.05",
        503,
        "timeout",
        "query timed out in expression evaluation",
    )
    .await;
    // The server's timeout caps a larger parameter.
    let (app, _) = app_with(ApiOptions {
        query_timeout: Duration::from_millis(50),
        ..Default::default()
    });
    let started = Instant::now();
    expect_error(
        &app,
        "/api/v1/query?query=slow&time=1700000000&timeout=1h",
        503,
        "timeout",
        "query timed out in expression evaluation",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(290));
}

#[tokio::test]
async fn post_form_equals_get() {
    let app = app();
    let r = send(&app, post_form("/api/v1/query", "query=up&time=1700000030")).await;
    assert_eq!(r.text(), UP_VECTOR_30);
    // The body wins over the URL, like Go's FormValue.
    let r = send(
        &app,
        post_form(
            "/api/v1/query?query=nothing&time=1",
            "query=up&time=1700000030",
        ),
    )
    .await;
    assert_eq!(r.text(), UP_VECTOR_30);
    // URL values still count when the body lacks them.
    let r = send(&app, post_form("/api/v1/query?time=1700000030", "query=up")).await;
    assert_eq!(r.text(), UP_VECTOR_30);
    // Grafana's range query shape.
    let get_r = send(
        &app,
        get("/api/v1/query_range?query=up&start=1700000000&end=1700000030&step=15"),
    )
    .await;
    let post_r = send(
        &app,
        post_form(
            "/api/v1/query_range",
            "query=up&start=1700000000&end=1700000030&step=15",
        ),
    )
    .await;
    assert_eq!(get_r.status, StatusCode::OK);
    assert_eq!(get_r.body, post_r.body);
    // A body that is not a form is ignored: "query" is then missing.
    let req = Request::post("/api/v1/query")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("query=up"))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Series and labels accept POST too.
    let get_r = send(&app, get(&format!("/api/v1/series?match[]={}", enc("up")))).await;
    let post_r = send(
        &app,
        post_form("/api/v1/series", &format!("match%5B%5D={}", enc("up"))),
    )
    .await;
    assert_eq!(get_r.status, StatusCode::OK);
    assert_eq!(get_r.body, post_r.body);
    let get_r = send(&app, get("/api/v1/labels?match[]=up")).await;
    let post_r = send(&app, post_form("/api/v1/labels", "match[]=up")).await;
    assert_eq!(get_r.body, post_r.body);
}

#[tokio::test]
async fn body_limit() {
    let (app, _) = app_with(ApiOptions {
        max_body_bytes: 64,
        ..Default::default()
    });
    let body = format!("query={}", "x".repeat(100));
    let r = send(&app, post_form("/api/v1/query", &body)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.text(),
        r#"{"status":"error","errorType":"bad_data","error":"error parsing form values: http: request body too large"}"#
    );
}

#[tokio::test]
async fn query_length_limit() {
    let (app, _) = app_with(ApiOptions {
        max_query_length: 10,
        ..Default::default()
    });
    expect_error(
        &app,
        &format!("/api/v1/query?query={}", "a".repeat(11)),
        400,
        "bad_data",
        r#"invalid parameter "query": query is 11 bytes long, more than the limit of 10 bytes"#,
    )
    .await;
}

#[tokio::test]
async fn series_endpoint() {
    let app = app();
    let both = r#"{"status":"success","data":[{"__name__":"up","instance":"a:9090","job":"prom"},{"__name__":"up","instance":"b:9100","job":"node"}]}"#;
    expect_json(&app, "/api/v1/series?match[]=up", both).await;
    // Several selectors are unioned, duplicates dropped.
    expect_json(
        &app,
        &format!(
            "/api/v1/series?match[]={}&match[]={}&match[]=up",
            enc("up{job=\"node\"}"),
            enc("up{job=\"prom\"}")
        ),
        both,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/series?match[]=up&limit=1",
        r#"{"status":"success","data":[{"__name__":"up","instance":"a:9090","job":"prom"}],"warnings":["results truncated due to limit"]}"#,
    )
    .await;
    // Nothing matches: [] and not null.
    expect_json(
        &app,
        "/api/v1/series?match[]=nothing",
        r#"{"status":"success","data":[]}"#,
    )
    .await;
    expect_error(
        &app,
        "/api/v1/series",
        400,
        "bad_data",
        "no match[] parameter provided",
    )
    .await;
    expect_error(
        &app,
        &format!("/api/v1/series?match[]={}", enc("{job=~\".*\"}")),
        400,
        "bad_data",
        r#"invalid parameter "match[]": match[] must contain at least one non-empty matcher"#,
    )
    .await;
    expect_error(
        &app,
        "/api/v1/series?match[]=up&start=x",
        400,
        "bad_data",
        r#"invalid parameter "start": invalid time value for 'start': cannot parse "x" to a valid timestamp"#,
    )
    .await;
    let r = send(
        &app,
        get(&format!("/api/v1/series?match[]={}", enc("rate(up[5m])"))),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().contains(r#"invalid parameter \"match[]\": "#),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn label_endpoints() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/labels",
        r#"{"status":"success","data":["__name__","instance","job","kind","v"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/labels?match[]=up",
        r#"{"status":"success","data":["__name__","instance","job"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/labels?match[]=weird&match[]=html",
        r#"{"status":"success","data":["__name__","kind","v"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/labels?limit=2",
        r#"{"status":"success","data":["__name__","instance"],"warnings":["results truncated due to limit"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/label/job/values",
        r#"{"status":"success","data":["node","prom"]}"#,
    )
    .await;
    expect_json(
        &app,
        &format!(
            "/api/v1/label/job/values?match[]={}",
            enc("up{instance=\"a:9090\"}")
        ),
        r#"{"status":"success","data":["prom"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/label/job/values?limit=1",
        r#"{"status":"success","data":["node"],"warnings":["results truncated due to limit"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/label/__name__/values?start=1700000000&end=1700000001",
        r#"{"status":"success","data":["broken","html","slow","up","warn","weird"]}"#,
    )
    .await;
    // U__ escaping of label names in the path.
    expect_json(
        &app,
        "/api/v1/label/U__j_6f_b/values",
        r#"{"status":"success","data":["node","prom"]}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/label/nonexistent/values",
        r#"{"status":"success","data":[]}"#,
    )
    .await;
    // Labels report a bad selector without the parameter prefix, like
    // Prometheus.
    expect_error(
        &app,
        &format!("/api/v1/labels?match[]={}", enc("{job=\"\"}")),
        400,
        "bad_data",
        "match[] must contain at least one non-empty matcher",
    )
    .await;
    expect_error(
        &app,
        "/api/v1/label/job/values?end=x",
        400,
        "bad_data",
        r#"invalid parameter "end": invalid time value for 'end': cannot parse "x" to a valid timestamp"#,
    )
    .await;
    // Label values are GET only.
    let r = send(&app, post_form("/api/v1/label/job/values", "")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.text(), "Method Not Allowed\n");
    assert!(r.headers[header::ALLOW].to_str().unwrap().contains("GET"));
}

#[tokio::test]
async fn status_endpoints() {
    let app = app();
    expect_json(
        &app,
        "/api/v1/status/buildinfo",
        r#"{"status":"success","data":{"version":"0.1.0","revision":"abc123","branch":"main","buildUser":"ci","buildDate":"20240101-00:00:00","goVersion":"rustc 1.88"}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/status/flags",
        r#"{"status":"success","data":{"log.level":"info","query.timeout":"2m"}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/status/config",
        r#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 15s\n"}}"#,
    )
    .await;
    let r = send(&app, get("/api/v1/status/runtimeinfo")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "success");
    for k in [
        "startTime",
        "CWD",
        "serverTime",
        "storageRetention",
        "GOMAXPROCS",
    ] {
        assert!(v["data"].get(k).is_some(), "{k} in {v}");
    }
    assert!(v["data"]["startTime"].as_str().unwrap().ends_with('Z'));
    expect_error(
        &app,
        "/api/v1/status/tsdb",
        404,
        "not_found",
        "TSDB status is not available on this server",
    )
    .await;
    expect_error(
        &app,
        "/api/v1/status/tsdb?limit=0",
        400,
        "bad_data",
        "limit must be a positive number",
    )
    .await;
    expect_json(
        &app,
        "/api/v1/rules",
        r#"{"status":"success","data":{"groups":[]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/alerts",
        r#"{"status":"success","data":{"alerts":[]}}"#,
    )
    .await;
    expect_json(
        &app,
        "/api/v1/metadata",
        r#"{"status":"success","data":{}}"#,
    )
    .await;
    expect_error(
        &app,
        "/api/v1/metadata?limit=x",
        400,
        "bad_data",
        "limit must be a number",
    )
    .await;
    let r = send(&app, get("/api/v1/targets")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status":"success","data":{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}})
    );
}

#[tokio::test]
async fn format_parse_and_exemplars() {
    let app = app();
    expect_json(
        &app,
        &format!(
            "/api/v1/format_query?query={}",
            enc("sum(rate(x[5m]))by(job)")
        ),
        r#"{"status":"success","data":"sum by (job) (rate(x[5m]))"}"#,
    )
    .await;
    let r = send(&app, post_form("/api/v1/parse_query", "query=up")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["type"], "vectorSelector");
    assert_eq!(v["data"]["name"], "up");
    let r = send(
        &app,
        get(&format!("/api/v1/format_query?query={}", enc("sum("))),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Grafana's probe: milliseconds where seconds are expected still work.
    expect_json(
        &app,
        "/api/v1/query_exemplars?query=test&start=1700000000000&end=1700000060000",
        r#"{"status":"success","data":[]}"#,
    )
    .await;
    let r = send(&app, post_form("/api/v1/query_exemplars", "query=1")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    expect_error(
        &app,
        "/api/v1/query_exemplars?query=up&start=10&end=5",
        400,
        "bad_data",
        "end timestamp must not be before start timestamp",
    )
    .await;
}

#[tokio::test]
async fn cors_options_and_not_found() {
    let app = app();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/query")
        .header(header::ORIGIN, "https://grafana.example")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers["access-control-allow-methods"],
        "GET, POST, OPTIONS"
    );
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "Accept, Authorization, Content-Type, Origin"
    );
    assert_eq!(r.headers["access-control-expose-headers"], "Date");
    // OPTIONS on any API path.
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/anything/at/all")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(r.headers[header::VARY], "Origin");

    // Without an Origin header: only Vary.
    let r = send(&app, get("/api/v1/query?query=1")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(r
        .headers
        .get_all(header::VARY)
        .iter()
        .any(|v| v == "Origin"));

    // A restricted origin is echoed only when it matches.
    let (app2, _) = app_with(ApiOptions {
        cors_origin: ApiOptions::cors_origin_pattern(r"https://.*\.example").unwrap(),
        ..Default::default()
    });
    for (origin, allowed) in [("https://g.example", true), ("https://evil.test", false)] {
        let req = Request::get("/api/v1/query?query=1")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap();
        let r = send(&app2, req).await;
        assert_eq!(
            r.headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            allowed.then_some(origin),
            "{origin}"
        );
    }

    let r = send(&app, get("/api/v1/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.text(), "404 page not found\n");
    let r = send(&app, get("/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn gzip_when_asked() {
    let app = app();
    let req = Request::get("/api/v1/query?query=up&time=1700000030")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, UP_VECTOR_30);
    // Not asked: not compressed.
    let r = send(&app, get("/api/v1/query?query=up&time=1700000030")).await;
    assert!(r.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(r.text(), UP_VECTOR_30);
}

#[tokio::test]
async fn readiness() {
    let (app, backend) = app_with(ApiOptions::default());
    backend.ready.store(false, Ordering::SeqCst);
    for uri in ["/api/v1/query?query=1", "/api/v1/labels", "/-/ready"] {
        let r = send(&app, get(uri)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(r.text(), "Service Unavailable", "{uri}");
    }
    let r = send(&app, get("/-/healthy")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "Strata is Healthy.\n")
    );
    backend.ready.store(true, Ordering::SeqCst);
    let r = send(&app, get("/-/ready")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "Strata is Ready.\n")
    );
    let r = send(&app, get("/api/v1/query?query=1&time=1")).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queues() {
    let (app, backend) = app_with(ApiOptions {
        max_concurrency: 1,
        ..Default::default()
    });
    let uri = "/api/v1/query?query=slow&time=1700000000";
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        send(&app, get(uri)),
        send(&app, get(uri)),
        send(&app, get(uri))
    );
    // All three succeed: extra queries wait, they are not rejected...
    for r in [&a, &b, &c] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    // ...and they ran one at a time (3 × 300 ms).
    assert_eq!(backend.storage.max_running.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() >= Duration::from_millis(850));

    // A query that does not parse is rejected at once, without queueing.
    let (first, bad) = tokio::join!(send(&app, get(uri)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let r = send(&app, get(&format!("/api/v1/query?query={}", enc("up{")))).await;
        (r, t.elapsed())
    });
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(bad.0.status, StatusCode::BAD_REQUEST);
    assert!(bad.1 < Duration::from_millis(200), "{:?}", bad.1);

    // A query whose timeout runs out while queued fails as Prometheus does.
    let (first, second) = tokio::join!(send(&app, get(uri)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        send(&app, get(&format!("{uri}&timeout=0.1"))).await
    });
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        second.text(),
        r#"{"status":"error","errorType":"timeout","error":"query timed out in query queue"}"#
    );
}
