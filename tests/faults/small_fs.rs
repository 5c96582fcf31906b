//! A genuinely small file system for one test: a tmpfs of a few megabytes,
//! mounted in a private mount namespace so nothing outside the test sees it and
//! it disappears with the process holding the namespace. Needs root (CI runs
//! `tests/run` as root) and util-linux's `unshare` and `nsenter`.
//!
//! Programs that must see the mount run through [`SmallFs::command`]
//! (`nsenter --mount`). The test itself reaches plain files through
//! [`SmallFs::outside`] (`/proc/PID/root/…`); not SQLite databases, though:
//! SQLite resolves symbolic links in a path, and `/proc/PID/root` is one, so it
//! would open the file under the mount point instead. Copy a database out first.

use crate::process::{wait_for, Guarded};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Marks the tmpfs once it is mounted, so a test never writes under the bare mount point.
const MARK: &str = ".small-fs";

pub struct SmallFs {
    holder: Guarded,
    at: PathBuf,
}

impl SmallFs {
    /// Why this machine cannot make one, if it cannot: not root, or no
    /// `unshare`/`nsenter`.
    pub fn unavailable() -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("not root: mounting a tmpfs needs root (CI runs as root)".into());
        }
        for tool in ["unshare", "nsenter"] {
            let found = Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Some(format!("{tool} (util-linux) is not installed"));
            }
        }
        None
    }

    /// Mounts a tmpfs of `size_bytes` at `at` (an existing empty directory) in a
    /// new mount namespace, held by a process that is killed when this drops.
    pub fn mount(at: &Path, size_bytes: u64, log: &Path) -> Result<SmallFs> {
        std::fs::create_dir_all(at)?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size_bytes},mode=0755 small-fs \"$0\" && touch \"$0/{MARK}\" && exec sleep 3600"
            ))
            .arg(at);
        let mut holder = Guarded::spawn("unshare (small file system)", cmd, log)?;
        let fs = {
            let pid = holder.id();
            let mark = PathBuf::from(format!("/proc/{pid}/root"))
                .join(strip_root(at)?)
                .join(MARK);
            wait_for(
                "the tmpfs to be mounted",
                Duration::from_secs(10),
                Duration::from_millis(20),
                || {
                    if let Some(status) = holder.exited()? {
                        anyhow::bail!("unshare exited ({status}): {}", holder.log_tail(10));
                    }
                    Ok(mark.exists().then_some(()))
                },
            )?;
            SmallFs {
                holder,
                at: at.to_owned(),
            }
        };
        Ok(fs)
    }

    /// Where the file system is mounted, as programs run by [`command`](Self::command) see it.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// `program` run inside the namespace, where the tmpfs is mounted.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--mount", "--"])
            .arg(program);
        cmd
    }

    /// `p` (a path inside the mount) as this process can reach it, for plain file I/O.
    pub fn outside(&self, p: &Path) -> Result<PathBuf> {
        Ok(PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(strip_root(p)?))
    }

    /// Writes a file at `p` (inside the mount) until the file system has no room
    /// left (ENOSPC); returns the bytes written.
    pub fn fill(&self, p: &Path) -> Result<u64> {
        let path = self.outside(p)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let chunk = vec![0x5au8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                    break
                }
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
        Ok(written)
    }

    /// Bytes still free on the file system.
    pub fn free_bytes(&self) -> Result<u64> {
        let s = rustix::fs::statvfs(&self.outside(&self.at)?)?;
        Ok(s.f_bavail * s.f_frsize)
    }
}

fn strip_root(p: &Path) -> Result<&Path> {
    p.strip_prefix("/")
        .with_context(|| format!("{} is not an absolute path", p.display()))
}
