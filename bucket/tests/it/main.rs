//! Integration tests of strata-bucket against real backends: the local
//! filesystem through `objstore.yml`, and a real S3 server (s3s-fs, started
//! on 127.0.0.1 by the tests; `scripts/test.sh` installs it).

mod filesystem;
mod s3;

use std::path::{Path, PathBuf};

use strata_bucket::ThanosMeta;

/// The promtool-written block shipped with the tsdb tests.
pub fn fixture_block() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tsdb/tests/fixtures/blocks/good/01M804EDBAFRRWFAHQM6D3Q9MW")
}

pub const FIXTURE_ID: &str = "01M804EDBAFRRWFAHQM6D3Q9MW";

pub fn sidecar_meta() -> ThanosMeta {
    ThanosMeta {
        labels: [
            ("cluster".to_string(), "eu1".to_string()),
            ("replica".to_string(), "a".to_string()),
        ]
        .into(),
        source: strata_bucket::meta::source::SIDECAR.into(),
        ..Default::default()
    }
}

/// Every regular file under `dir`, relative, sorted, with its bytes.
pub fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
