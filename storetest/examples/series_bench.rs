//! Series streaming client for `bench/storeapi.sh`: runs `--concurrency`
//! identical Series calls at once against a StoreAPI server, `--repeat`
//! times, and prints one line per round:
//! `series=… samples=… bytes=… secs=… series_per_s=… samples_per_s=…`
//! (totals over the concurrent calls). Samples are counted from each XOR
//! chunk's header, so the client spends its time receiving, not decoding.
//!
//! usage: series_bench ADDR [--concurrency C] [--repeat N] [--regex RE]

use std::time::Instant;

use prost::Message;
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::{label_matcher::Type, series_response, LabelMatcher, SeriesRequest};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

async fn one_call(
    mut client: StoreClient<tonic::transport::Channel>,
    req: SeriesRequest,
) -> Result<(u64, u64, u64), tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let (mut series, mut samples, mut bytes) = (0u64, 0u64, 0u64);
    let mut count = |s: &strata_proto::thanos::Series| {
        series += 1;
        for c in &s.chunks {
            if let Some(raw) = &c.raw {
                if raw.data.len() >= 2 {
                    samples += u16::from_be_bytes([raw.data[0], raw.data[1]]) as u64;
                }
            }
        }
    };
    while let Some(frame) = stream.message().await? {
        bytes += frame.encoded_len() as u64;
        match &frame.result {
            Some(series_response::Result::Series(s)) => count(s),
            Some(series_response::Result::Batch(b)) => b.series.iter().for_each(&mut count),
            _ => {}
        }
    }
    Ok((series, samples, bytes))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args.get(1).filter(|a| !a.starts_with("--")) else {
        eprintln!("usage: series_bench ADDR [--concurrency C] [--repeat N] [--regex RE]");
        std::process::exit(2);
    };
    let concurrency: usize = arg(&args, "--concurrency", "1")
        .parse()
        .expect("--concurrency");
    let repeat: usize = arg(&args, "--repeat", "3").parse().expect("--repeat");
    let re = arg(&args, "--regex", ".+");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("address")
        .connect()
        .await
        .unwrap_or_else(|e| {
            eprintln!("connecting to {addr}: {e}");
            std::process::exit(1);
        });
    let client = StoreClient::new(channel)
        .max_decoding_message_size(i32::MAX as usize)
        .max_encoding_message_size(i32::MAX as usize);
    let req = SeriesRequest {
        min_time: i64::MIN / 2,
        max_time: i64::MAX / 2,
        matchers: vec![LabelMatcher {
            r#type: Type::Re as i32,
            name: "__name__".into(),
            value: re,
        }],
        ..Default::default()
    };
    for _ in 0..repeat {
        let t = Instant::now();
        let calls: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(one_call(client.clone(), req.clone())))
            .collect();
        let (mut series, mut samples, mut bytes) = (0, 0, 0);
        for c in calls {
            match c.await.expect("task") {
                Ok((a, b, c)) => {
                    series += a;
                    samples += b;
                    bytes += c;
                }
                Err(e) => {
                    eprintln!("Series failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "series={series} samples={samples} bytes={bytes} secs={secs:.3} series_per_s={:.0} samples_per_s={:.0}",
            series as f64 / secs,
            samples as f64 / secs
        );
    }
}
