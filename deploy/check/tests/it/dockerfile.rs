//! The Dockerfile, read by a small parser of the Dockerfile syntax (no
//! Docker engine runs here): known instructions only, stages that exist,
//! a locked release build, a non-root runtime user and `strata` as the
//! exec-form entrypoint. `docker build` itself is not run (see HANDOFF.md).

use crate::util::{read, repo_root};

/// One instruction: the keyword (upper case) and its arguments, with
/// backslash-continued lines joined.
#[derive(Debug)]
struct Instr {
    line: usize,
    keyword: String,
    args: String,
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

fn parse(text: &str) -> Result<Vec<Instr>, String> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if pending.is_some() && line.starts_with('#') {
            continue; // comments inside a continued instruction are dropped
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(cont) = line.strip_suffix('\\') {
            acc.push_str(cont);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let (kw, args) = acc
            .split_once(char::is_whitespace)
            .unwrap_or((acc.as_str(), ""));
        let kw = kw.to_ascii_uppercase();
        if !KEYWORDS.contains(&kw.as_str()) {
            return Err(format!("line {start}: unknown instruction {kw}"));
        }
        out.push(Instr {
            line: start,
            keyword: kw,
            args: args.trim().to_string(),
        });
    }
    if let Some((start, _)) = pending {
        return Err(format!(
            "line {start}: continuation runs past the end of the file"
        ));
    }
    Ok(out)
}

/// `["a", "b"]` → the strings; None when it is not JSON exec form.
fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(args).ok()
}

#[test]
fn dockerfile_builds_strata_locked_and_runs_it_as_non_root() {
    let text = read(&repo_root().join("Dockerfile"));
    let ins = parse(&text).unwrap_or_else(|e| panic!("Dockerfile: {e}"));
    assert!(
        text.starts_with("# syntax=docker/dockerfile:1"),
        "BuildKit syntax directive (cache mounts)"
    );
    // Stages and their names.
    let mut stages: Vec<(Option<String>, String)> = Vec::new();
    for i in &ins {
        match i.keyword.as_str() {
            "FROM" => {
                let parts: Vec<_> = i.args.split_whitespace().collect();
                let name = match parts.as_slice() {
                    [_image] => None,
                    [_image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                        Some(name.to_string())
                    }
                    _ => panic!("line {}: FROM {}", i.line, i.args),
                };
                stages.push((name, parts[0].to_string()));
            }
            "COPY" => {
                if let Some(from) = i
                    .args
                    .split_whitespace()
                    .find_map(|a| a.strip_prefix("--from="))
                {
                    let earlier = stages[..stages.len() - 1]
                        .iter()
                        .any(|(n, _)| n.as_deref() == Some(from));
                    assert!(
                        earlier,
                        "line {}: COPY --from={from} names no earlier stage",
                        i.line
                    );
                }
            }
            _ => {}
        }
        assert!(
            !stages.is_empty(),
            "line {}: {} before FROM",
            i.line,
            i.keyword
        );
    }
    assert!(stages.len() >= 2, "multi-stage build");
    // The builder's Rust is at least the workspace's rust-version.
    let cargo = read(&repo_root().join("Cargo.toml"));
    let msrv = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in Cargo.toml");
    let builder = &stages[0].1;
    let tag = builder
        .strip_prefix("rust:")
        .expect("builder is a rust image");
    let ver: Vec<u32> = tag
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let min: Vec<u32> = msrv.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        ver >= min,
        "builder rust {tag} is older than rust-version {msrv}"
    );
    let runs: String = ins
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        runs.contains("cargo build --release --locked"),
        "locked release build"
    );
    // The runtime stage: everything after the last FROM.
    let last_from = ins.iter().rposition(|i| i.keyword == "FROM").unwrap();
    let runtime = &ins[last_from + 1..];
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "runtime user {user} is root"
    );
    // The uid the Kubernetes manifests run as.
    let sts = read(&strata_deploy_check::deploy_dir().join("base/statefulset.yaml"));
    assert!(
        sts.contains(&format!("runAsUser: {uid}")),
        "deploy/ runs as uid {uid} too"
    );
    let entry = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let entry = exec_form(&entry.args).expect("ENTRYPOINT in exec form (signals reach strata)");
    let bin = cargo
        .split("[[bin]]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("name = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("[[bin]] name");
    assert!(
        entry[0].ends_with(&format!("/{bin}")),
        "entrypoint {entry:?} is not the {bin} binary"
    );
    let copied = runtime
        .iter()
        .any(|i| i.keyword == "COPY" && i.args.contains("--from=") && i.args.ends_with(&entry[0]));
    assert!(
        copied,
        "the entrypoint binary is copied from the build stage"
    );
}

#[test]
fn dockerignore_keeps_build_output_and_vcs_out_of_the_context() {
    let text = read(&repo_root().join(".dockerignore"));
    let lines: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for must in [".git", "target"] {
        assert!(lines.contains(&must), ".dockerignore lacks {must}");
    }
    // Nothing the build needs is excluded.
    for needed in ["Cargo.toml", "Cargo.lock", "src", "proto"] {
        assert!(!lines.contains(&needed), ".dockerignore excludes {needed}");
    }
}

#[test]
fn the_parser_rejects_broken_dockerfiles() {
    assert!(parse("FROM x\nRUNN echo\n").unwrap_err().contains("RUNN"));
    assert!(parse("FROM x\nRUN a \\\n")
        .unwrap_err()
        .contains("continuation"));
    let ok = parse("FROM x AS b\nRUN a \\\n  # c\n  && d\n").unwrap();
    assert_eq!(ok[1].args, "a  && d");
}
