//! `strata`: the single binary. Each subcommand parses its flags and calls
//! into its library crate; no logic lives here (see ARCHITECTURE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

mod cmd_demo;
mod cmd_query;
mod cmd_sidecar;
mod cmd_tsdb;
mod grpc_tls;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and
/// `strata demo` send), so servers stop cleanly on either. If a handler
/// cannot be installed the future never resolves and the default action
/// (termination) stays in force.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Federated, multi-cluster, Prometheus-compatible metrics"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offline tools (promtool-like).
    Tools {
        #[command(subcommand)]
        cmd: ToolsCommand,
    },
    /// Ship TSDB blocks to object storage and serve the StoreAPI (like `thanos sidecar`).
    Sidecar(cmd_sidecar::SidecarArgs),
    /// Query many StoreAPI endpoints through one Prometheus API (like `thanos query`).
    Query(Box<cmd_query::QueryArgs>),
    /// Run a Prometheus-compatible TSDB server (scrape, remote write, HTTP API, remote read).
    Tsdb(cmd_tsdb::TsdbArgs),
    /// Run two simulated Kubernetes clusters (tsdb + sidecar each) and a querier on this machine.
    Demo(cmd_demo::DemoArgs),
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Inspect and create TSDB blocks (like `promtool tsdb`).
    Tsdb {
        #[command(subcommand)]
        cmd: TsdbCommand,
    },
    /// Run PromQL conformance files (Prometheus's promqltest format).
    Promqltest(PromqltestArgs),
}

#[derive(Args)]
struct PromqltestArgs {
    /// Test files, or directories whose `*.test` files are run (not recursive).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Exit with status 1 when fewer evals than this pass.
    #[arg(long)]
    floor: Option<usize>,
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Create blocks from an input file (backfill).
    CreateBlocksFrom {
        #[command(subcommand)]
        cmd: CreateBlocksFrom,
    },
    /// List the blocks of a data directory.
    List {
        /// Print human-readable times and sizes.
        #[arg(short = 'r', long = "human-readable")]
        human_readable: bool,
        #[arg(default_value = "data/")]
        db_path: PathBuf,
    },
    /// Print every sample: `{labels} value timestamp_ms`, as promtool does.
    Dump {
        #[arg(default_value = "data/")]
        db_path: PathBuf,
        /// Minimum timestamp to dump (ms).
        #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Maximum timestamp to dump (ms).
        #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
        /// Series selector.
        #[arg(long = "match", default_value = "{__name__=~'(?s:.*)'}")]
        matcher: String,
    },
    /// Cardinality analysis of a block (the newest by default).
    Analyze(AnalyzeArgs),
}

#[derive(Args)]
struct AnalyzeArgs {
    #[arg(default_value = "data/")]
    db_path: PathBuf,
    /// Block to analyze (default: newest).
    block_id: Option<String>,
    /// How many items to show in each list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Also print chunk fullness (compaction analysis).
    #[arg(long)]
    extended: bool,
}

#[derive(Subcommand)]
enum CreateBlocksFrom {
    /// From an OpenMetrics text file (timestamps in seconds, ends with `# EOF`).
    Openmetrics {
        input: PathBuf,
        #[arg(default_value = "data/")]
        output: PathBuf,
        /// Maximum duration of created blocks (e.g. 2h, 24h).
        #[arg(long = "max-block-duration", default_value = "0s")]
        max_block_duration: String,
        #[arg(short = 'r', long = "human-readable")]
        human_readable: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs collected from a pipe or a
        // container stay plain key=value text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Command::Tools {
            cmd: ToolsCommand::Tsdb { cmd },
        } => tsdb_tool(cmd).map(|()| ExitCode::SUCCESS),
        Command::Tools {
            cmd: ToolsCommand::Promqltest(args),
        } => promqltest_tool(args),
        Command::Sidecar(args) => cmd_sidecar::run(args).map(|()| ExitCode::SUCCESS),
        Command::Query(args) => cmd_query::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Tsdb(args) => cmd_tsdb::run(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => cmd_demo::run(args).map(|()| ExitCode::SUCCESS),
    }
}

/// Longest failure reason printed, in characters.
const MAX_REASON: usize = 300;

/// Reads the files, runs them, prints one line per failure, a table, and
/// last the line `N passed, M failed` (CI reads it). Failing evals do not
/// fail the command; only a broken `--floor` does.
fn promqltest_tool(args: PromqltestArgs) -> Result<ExitCode> {
    use strata_promql::promqltest;
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "test"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let opts = promqltest::harness_options();
    let mut reports = Vec::new();
    for f in &files {
        let content =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.display().to_string();
        let report = promqltest::run_test_file(&name, &content, &opts);
        for failure in &report.failures {
            println!("{}", promqltest::format_failure(&name, failure, MAX_REASON));
        }
        reports.push(report);
    }
    println!();
    print!("{}", promqltest::summary_table(&reports));
    let (passed, failed) = promqltest::totals(&reports);
    let broken = args.floor.filter(|floor| passed < *floor);
    if let Some(floor) = broken {
        eprintln!(
            "error: conformance floor broken: {passed} evals passed, the floor is {floor} (promql/conformance-floor.txt)"
        );
    }
    println!("{passed} passed, {failed} failed");
    Ok(if broken.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn tsdb_tool(cmd: TsdbCommand) -> Result<()> {
    use strata_tsdb::tools;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        TsdbCommand::List {
            human_readable,
            db_path,
        } => tools::list(&db_path, human_readable, &mut out)?,
        TsdbCommand::Dump {
            db_path,
            min_time,
            max_time,
            matcher,
        } => {
            let ms = tools::parse_selector(&matcher).context("invalid --match")?;
            tools::dump(&db_path, min_time, max_time, &ms, &mut out)?
        }
        TsdbCommand::Analyze(a) => tools::analyze(
            &a.db_path,
            a.block_id.as_deref(),
            a.limit,
            a.extended,
            &mut out,
        )?,
        TsdbCommand::CreateBlocksFrom {
            cmd:
                CreateBlocksFrom::Openmetrics {
                    input,
                    output,
                    max_block_duration,
                    human_readable,
                    quiet,
                },
        } => {
            let data =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let max = tools::parse_duration_ms(&max_block_duration)
                .with_context(|| format!("invalid --max-block-duration {max_block_duration:?}"))?;
            let mut first = true;
            let mut on_block = |m: &strata_tsdb::meta::BlockMeta| {
                if !quiet {
                    let mut o = std::io::stdout().lock();
                    let size = strata_tsdb::block::Block::open(&output.join(&m.ulid))
                        .map(|b| b.size())
                        .unwrap_or(0);
                    let _ = tools::print_block_line(m, size, first, human_readable, &mut o);
                    first = false;
                }
            };
            strata_tsdb::backfill::create_blocks_from_openmetrics(
                &data,
                &output,
                strata_tsdb::backfill::BackfillOptions {
                    max_block_duration: max,
                    max_samples_in_appender: strata_tsdb::backfill::DEFAULT_MAX_SAMPLES_IN_APPENDER,
                    on_block: &mut on_block,
                },
            )
            .context("backfill")?;
        }
    }
    Ok(())
}
