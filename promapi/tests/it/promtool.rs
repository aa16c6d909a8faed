//! Interop with the real client: `promtool query …` (Debian's Prometheus
//! 2.42 package) against the router served on 127.0.0.1.
//!
//! promtool POSTs queries as forms (falling back to GET), uses GET for series
//! and labels, and decodes the JSON with client_golang, so this checks the
//! wire format end to end. Skipped with a note when promtool is not
//! installed, unless `STRATA_REQUIRE_PROMTOOL` is set.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_promapi::ApiOptions;

use crate::backend;

const PROMTOOL: &str = "/usr/bin/promtool";

fn promtool_available() -> bool {
    if Path::new(PROMTOOL).exists() {
        return true;
    }
    if std::env::var_os("STRATA_REQUIRE_PROMTOOL").is_some() {
        panic!(
            "STRATA_REQUIRE_PROMTOOL is set but {PROMTOOL} is missing (apt-get install prometheus)"
        );
    }
    eprintln!("note: {PROMTOOL} not found; skipping the promtool interop test");
    false
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn promtool(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(PROMTOOL)
            .args(&args)
            .output()
            .expect("run promtool");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries() {
    if !promtool_available() {
        return;
    }
    let app = strata_promapi::router(backend(Duration::from_millis(10)), ApiOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Instant vector (POST form).
    let r = promtool(args(&["query", "instant", "--time=1700000030", &url, "up"])).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "up{instance=\"a:9090\", job=\"prom\"} => 0 @[1700000030]\n\
         up{instance=\"b:9100\", job=\"node\"} => 1 @[1700000030]\n"
    );

    // Scalar.
    let r = promtool(args(&["query", "instant", "--time=4", &url, "2"])).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, "scalar: 2 @[4]\n");

    // Special values and millisecond times survive the client's decoding.
    let r = promtool(args(&[
        "query",
        "instant",
        "--time=1700000000.25",
        &url,
        "weird",
    ]))
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "weird{kind=\"big\"} => 1000000000000000000000 @[1700000000.25]\n\
         weird{kind=\"inf\"} => +Inf @[1700000000.25]\n\
         weird{kind=\"nan\"} => NaN @[1700000000.25]\n\
         weird{kind=\"ninf\"} => -Inf @[1700000000.25]\n\
         weird{kind=\"tiny\"} => 0.0000001 @[1700000000.25]\n"
    );

    // Range query: always a matrix.
    let r = promtool(args(&[
        "query",
        "range",
        "--start=1700000000",
        "--end=1700000030",
        "--step=15s",
        &url,
        "up{job=\"prom\"}",
    ]))
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "up{instance=\"a:9090\", job=\"prom\"} =>\n1 @[1700000000]\n1 @[1700000015]\n0 @[1700000030]\n"
    );

    // Series (GET with match[]).
    let r = promtool(args(&[
        "query",
        "series",
        "--match=up",
        "--start=1699999000",
        "--end=1700001000",
        &url,
    ]))
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "{__name__=\"up\", instance=\"a:9090\", job=\"prom\"}\n\
         {__name__=\"up\", instance=\"b:9100\", job=\"node\"}\n"
    );

    // Label values ("labels <name>" prints the values of <name>).
    let r = promtool(args(&[
        "query",
        "labels",
        "--start=1699999000",
        "--end=1700001000",
        &url,
        "job",
    ]))
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, "node\nprom\n");

    // JSON output is client_golang's re-encoding of what we sent.
    let r = promtool(args(&[
        "query",
        "instant",
        "-o",
        "json",
        "--time=1700000030.5",
        &url,
        "up{job=\"node\"}",
    ]))
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim_end(),
        r#"[{"metric":{"__name__":"up","instance":"b:9100","job":"node"},"value":[1700000030.5,"1"]}]"#
    );

    // Errors: 400 bodies pass through as API errors.
    let r = promtool(args(&["query", "instant", &url, "up{"])).await;
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("query error: bad_data: invalid parameter \"query\": "),
        "{}",
        r.stderr
    );
    let r = promtool(args(&[
        "query",
        "range",
        "--start=1700000000",
        "--end=1700000030",
        "--step=15s",
        &url,
        "up[5m]",
    ]))
    .await;
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr.trim_end(),
        "query error: bad_data: invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );

    server.abort();
}
