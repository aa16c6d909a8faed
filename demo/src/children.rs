//! Child processes: `strata tsdb`, `strata sidecar` and `strata query`
//! started from the demo's own executable.
//!
//! A [`Child`] owns the process, its log file (stdout and stderr appended
//! to `logs/<name>.log`, with a header per start) and its readiness URL.
//! Children run in their own process group, so a Ctrl-C in the terminal
//! reaches only the demo, which then stops them in order (querier first,
//! TSDBs last) with SIGTERM, and SIGKILL after a timeout.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Error;

/// Set by a second SIGINT/SIGTERM: [`stop_all`] stops waiting and kills.
pub static FORCE_KILL: AtomicBool = AtomicBool::new(false);

/// How many log lines [`Error::ChildDied`] and friends quote.
pub const TAIL_LINES: usize = 20;

/// Bytes read from the end of a log to find its last lines.
const TAIL_BYTES: u64 = 16 * 1024;

/// A running child process.
pub struct Child {
    pub name: String,
    pub log: PathBuf,
    /// `http://host:port/-/ready`.
    pub ready_url: String,
    proc: std::process::Child,
    exited: Option<ExitStatus>,
}

impl Child {
    /// Starts `exe args…` with output appended to `log`.
    pub fn spawn(
        name: &str,
        exe: &Path,
        args: &[String],
        log: &Path,
        ready_url: String,
    ) -> Result<Child, Error> {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(log, e))?;
        let _ = writeln!(
            f,
            "=== strata demo: starting {name} at {}: {} {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exe.display(),
            args.join(" ")
        );
        let err = f.try_clone().map_err(|e| Error::io(log, e))?;
        let proc = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(err)
            // Own process group: the terminal's Ctrl-C goes to the demo
            // only, which decides the order of shutdown.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(exe, e))?;
        Ok(Child {
            name: name.to_string(),
            log: log.to_path_buf(),
            ready_url,
            proc,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The exit status, once the process has ended (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.proc.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `sig` unless the process has been reaped already (its pid
    /// could belong to another process by then).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.exited().is_some() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.proc.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is
        // our own unreaped child, so it cannot have been recycled.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// The error describing this child's unexpected exit.
    pub fn died(&self, status: ExitStatus) -> Error {
        Error::ChildDied {
            name: self.name.clone(),
            status: status.to_string(),
            log: self.log.clone(),
            tail: log_tail(&self.log, TAIL_LINES),
        }
    }
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut buf = Vec::new();
    let _ = f.take(TAIL_BYTES).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// What a wait for readiness ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The demo was asked to stop meanwhile.
    Stopped,
}

/// Polls the child's `/-/ready` until it answers 200. Fails when the
/// child exits or `timeout` passes; returns [`Readiness::Stopped`] as soon
/// as `stop` turns true.
pub async fn wait_ready(
    child: &mut Child,
    http: &reqwest::Client,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Readiness, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if *stop.borrow() {
            return Ok(Readiness::Stopped);
        }
        if let Some(status) = child.exited() {
            return Err(child.died(status));
        }
        if let Ok(r) = http.get(&child.ready_url).send().await {
            if r.status().is_success() {
                return Ok(Readiness::Ready);
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                name: child.name.clone(),
                url: child.ready_url.clone(),
                secs: timeout.as_secs(),
                log: child.log.clone(),
                tail: log_tail(&child.log, TAIL_LINES),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Stops children: SIGTERM to all (last started first), then waits up to
/// `timeout` (or until [`FORCE_KILL`]) for them to exit, then SIGKILLs and
/// reaps the rest.
/// Returns the names of the children that had to be killed.
pub async fn stop_all(children: &mut [Child], timeout: Duration) -> Vec<String> {
    for c in children.iter_mut().rev() {
        c.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline
        && !FORCE_KILL.load(Ordering::Relaxed)
        && children.iter_mut().any(|c| c.exited().is_none())
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut killed = Vec::new();
    for c in children.iter_mut() {
        if c.exited().is_none() {
            c.signal(libc::SIGKILL);
            killed.push(c.name.clone());
            // SIGKILL cannot be ignored: the wait is short.
            let _ = c.proc.wait().map(|s| c.exited = Some(s));
        }
    }
    killed
}
