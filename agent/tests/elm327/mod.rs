//! The ELM327 emulator (`elm327-emulator` from PyPI) serving a pseudo-terminal,
//! for the tests that talk to an emulated car (`mod elm327;`).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator process and the pty it serves; killed when dropped.
pub struct Emulator {
    child: Child,
    pub pty: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the emulator of python `py` in `dir`, runs `setup` (batch mode: one
/// emulator command or Python statement a line) and waits at most `limit` until
/// it serves.
pub fn start(py: &str, dir: &Path, setup: &str, limit: Duration) -> Emulator {
    let out = dir.join("elm.out");
    let child = Command::new(py)
        .args(["-m", "elm", "-s", "car", "-b"])
        .arg(&out)
        // The emulator writes its elm.log into the working directory.
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start elm327-emulator");
    // Owned by the guard at once, so a failing assertion below still kills it.
    let mut emulator = Emulator {
        child,
        pty: String::new(),
    };
    emulator
        .child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{setup}echo READY\n").as_bytes())
        .expect("write emulator setup");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().any(|l| l.trim() == "READY") {
            let pty = text.lines().next().unwrap_or_default().trim().to_owned();
            assert!(pty.starts_with("/dev/"), "emulator printed {text:?}");
            emulator.pty = pty;
            return emulator;
        }
        assert!(started.elapsed() < limit, "emulator not ready: {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
