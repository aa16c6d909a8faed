//! Running the external tools with a time limit, and reading YAML.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (deploy/check/../..).
pub fn repo_root() -> PathBuf {
    strata_deploy_check::deploy_dir()
        .parent()
        .expect("deploy/ has a parent")
        .to_path_buf()
}

/// Finds a tool: first in the virtualenv that `deploy/install-tools.sh`
/// fills, then on PATH. A missing tool fails the test with the command
/// that installs it (CI runs that command in scripts/test.sh).
pub fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("STRATA_K8S_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("strata/k8s-tools"))
        });
    if let Some(v) = venv {
        let p = v.join("bin").join(name);
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{name} not found: run deploy/install-tools.sh (scripts/test.sh does) to install it");
}

/// What a finished command left.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd`, killing it after `limit`. Output goes through files, so a
/// large render cannot fill a pipe and stall the child.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for child") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        success: status.success(),
        stdout: std::fs::read_to_string(&out_path).expect("reading stdout"),
        stderr: std::fs::read_to_string(&err_path).expect("reading stderr"),
    }
}

/// `kubectl kustomize deploy/<overlay>`: the rendered YAML text.
pub fn render(overlay: &str) -> String {
    let dir = strata_deploy_check::deploy_dir().join(overlay);
    let mut cmd = Command::new(tool("kubectl"));
    cmd.arg("kustomize").arg(&dir);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.success,
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        out.stderr
    );
    out.stdout
}

/// Every YAML document of `text` as JSON values.
pub fn docs(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The one object of `kind` whose name is `name` or starts with `name-`
/// (kustomize's generated names carry a hash suffix).
pub fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    let hits: Vec<_> = docs
        .iter()
        .filter(|d| {
            d["kind"] == kind && generated_name_matches(d["metadata"]["name"].as_str(), name)
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one {kind} {name}, found {}",
        hits.len()
    );
    hits[0]
}

pub fn generated_name_matches(actual: Option<&str>, name: &str) -> bool {
    let Some(a) = actual else { return false };
    a == name
        || a.strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|h| h.len() == 10 && h.chars().all(|c| c.is_ascii_alphanumeric()))
}

pub fn str_of(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}
