//! A wall clock that jumps under a real process: libfaketime (Debian's
//! `faketime` package) preloaded into the program, reading its offset from a
//! file the test rewrites while the program runs (`FAKETIME_TIMESTAMP_FILE`
//! with `FAKETIME_NO_CACHE=1`). Only the wall clock is faked
//! (`DONT_FAKE_MONOTONIC=1`): a step of the wall clock leaves the monotonic and
//! boot-time clocks alone, as an NTP jump or an RTC-less boot does on a device.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian and a source build put the preload library (multi-threaded
/// variant: the agent calls the clock from many threads).
const LIB_NAME: &str = "libfaketimeMT.so.1";

pub struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
}

/// The preload library, if installed.
pub fn library() -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    dirs.into_iter()
        .map(|d| d.join(LIB_NAME))
        .find(|p| p.is_file())
}

impl FakeClock {
    /// Why a faked clock cannot be had here, if it cannot: no libfaketime, or
    /// one that does not move `date` to 1970.
    pub fn unavailable() -> Option<String> {
        let Some(lib) = library() else {
            return Some(format!(
                "libfaketime ({LIB_NAME}, Debian package `faketime`) is not installed"
            ));
        };
        let out = Command::new("date")
            .arg("-u")
            .arg("+%Y")
            .env("LD_PRELOAD", &lib)
            .env("FAKETIME", "@1970-01-01 00:00:00")
            .output();
        match out {
            Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "1970" => None,
            Ok(o) => Some(format!(
                "{} did not fake the clock of `date` (it printed {:?})",
                lib.display(),
                String::from_utf8_lossy(&o.stdout).trim()
            )),
            Err(e) => Some(format!("cannot run `date`: {e}")),
        }
    }

    /// A clock whose setting lives in `file`, starting at `spec` (libfaketime's
    /// syntax: `+0`, `-3h`, `+5h` for offsets from the real time, `@1970-01-01
    /// 00:00:00` for a clock that starts there and runs).
    pub fn new(file: &Path, spec: &str) -> Result<FakeClock> {
        let lib = library().context("libfaketime is not installed")?;
        let clock = FakeClock {
            lib,
            file: file.to_owned(),
        };
        clock.set(spec)?;
        Ok(clock)
    }

    /// Steps the clock of every process started with [`apply`](Self::apply),
    /// at once: the file is replaced whole, so a reader never sees half of it.
    pub fn set(&self, spec: &str) -> Result<()> {
        if spec.contains('\n') {
            bail!("a faketime setting is one line: {spec:?}");
        }
        let tmp = self.file.with_extension("next");
        std::fs::write(&tmp, format!("{spec}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("replacing {}", self.file.display()))?;
        Ok(())
    }

    /// Makes `cmd` run on this clock.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("LD_PRELOAD", &self.lib)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME");
    }
}
