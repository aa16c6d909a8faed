//! Regenerates `src/gen/` from `proto/` and fails if the committed code differs.
//!
//! Runs only with the `codegen` feature (see `scripts/proto-codegen.sh`):
//!
//! ```text
//! cargo test -p strata-proto --features codegen --test codegen            # check
//! STRATA_PROTO_BLESS=1 cargo test -p strata-proto --features codegen --test codegen  # rewrite
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.proto` file we compile, relative to `proto/` (the include root).
const PROTOS: &[&str] = &[
    "store/labelpb/types.proto",
    "store/storepb/types.proto",
    "store/storepb/rpc.proto",
    "store/storepb/prompb/types.proto",
    "store/storepb/prompb/remote.proto",
    "store/hintspb/hints.proto",
    "info/infopb/rpc.proto",
    "metadata/metadatapb/rpc.proto",
    "api/query/querypb/query.proto",
    "prompb/types.proto",
    "prompb/remote.proto",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates Rust code for `PROTOS` into `out`.
fn generate(out: &Path) {
    let root = crate_dir().join("proto");
    let fds = protox::compile(PROTOS, [&root]).expect("compile .proto files");
    let mut config = tonic_prost_build::Config::new();
    // `impl prost::Name` for every message, so hints go in and out of
    // `google.protobuf.Any` with `Any::from_msg` / `Any::to_msg` under the type
    // URL Go uses, e.g. `type.googleapis.com/hintspb.SeriesRequestHints`.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(true)
        // Chunk payloads and the symbol table decode as `bytes::Bytes`: a
        // decode from a `Bytes` buffer then shares it instead of copying.
        .bytes(".")
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_fds_with_config(fds, config)
        .expect("generate Rust code");
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, fs::read_to_string(&path).expect("read file"));
        }
    }
    files
}

#[test]
fn generated_code_is_up_to_date() {
    let tmp = std::env::temp_dir().join(format!("strata-proto-codegen-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap();
    generate(&tmp);
    let fresh = read_dir(&tmp);
    fs::remove_dir_all(&tmp).unwrap();

    let gen_dir = crate_dir().join("src/gen");
    let committed = read_dir(&gen_dir);
    if fresh == committed {
        return;
    }
    if std::env::var_os("STRATA_PROTO_BLESS").is_some() {
        for name in committed.keys().filter(|n| !fresh.contains_key(*n)) {
            fs::remove_file(gen_dir.join(name)).unwrap();
        }
        for (name, text) in &fresh {
            fs::write(gen_dir.join(name), text).unwrap();
        }
        eprintln!("rewrote {}", gen_dir.display());
        return;
    }
    let mut stale: Vec<&String> = fresh
        .keys()
        .chain(committed.keys())
        .filter(|n| fresh.get(*n) != committed.get(*n))
        .collect();
    stale.dedup();
    panic!("src/gen is out of date with proto/ ({stale:?}); run scripts/proto-codegen.sh --bless");
}
