//! Child processes that can't outlive a test, and the binaries they run.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where `tests/run` (or `cargo build --workspace --bins`) put a workspace binary:
/// `$FLEET_BIN_DIR`, else the profile directory above this test executable
/// (`target/debug/deps/e2e-… → target/debug/`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("FLEET_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().context("locating the test executable")?;
            let mut dir = exe
                .parent()
                .context("test executable has no directory")?
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build the binaries first with `cargo build --workspace --bins` \
             (tests/run does this), or point FLEET_BIN_DIR at them",
            path.display()
        );
    }
    Ok(path)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(l.local_addr()?.port())
}

/// A running child that is killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves nothing behind. Its stdout and stderr go to a log file.
pub struct Guarded {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Guarded {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Guarded> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Guarded {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` if the process has already ended.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("{} was already stopped", self.name),
        }
    }

    /// SIGKILL, then reap: the power-cut stop.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            // An already-exited child makes kill fail; wait() still reaps it.
            let _ = c.kill();
            c.wait().with_context(|| format!("reaping {}", self.name))?;
        }
        Ok(())
    }

    /// The last `lines` lines of the child's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to completion (bounded by `timeout`) and returns its stdout;
/// a non-zero exit is an error that carries stderr.
pub fn run_output(mut cmd: Command, timeout: Duration) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let deadline = Instant::now() + timeout;
    // Drain the pipes on threads so a chatty child can't block on a full pipe.
    let mut so = child.stdout.take().context("stdout")?;
    let mut se = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).map(|_| s)
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out
        .join()
        .expect("stdout reader")
        .context("reading stdout")?;
    let stderr = err
        .join()
        .expect("stderr reader")
        .context("reading stderr")?;
    if !status.success() {
        // A checker script may state its verdict on stdout before failing.
        let lines: Vec<&str> = stdout.lines().collect();
        let said = lines[lines.len().saturating_sub(5)..].join("\n");
        bail!("{cmd:?} failed ({status}):\n{stderr}\nlast of stdout:\n{said}");
    }
    Ok(stdout)
}

/// Polls `check` every `every` until it yields a value or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_err.map_or(String::new(), |e| format!(" (last error: {e:#})"));
            bail!("timed out after {timeout:?} waiting for {what}{why}");
        }
        std::thread::sleep(every);
    }
}
