//! The python3 the peer tests drive (`FLEET_TEST_PYTHON`, else `python3`), checked
//! for the packages a test needs (`mod python_peer;`).

use std::process::{Command, Stdio};

/// The python3 that can `import {modules}`, or `None` (a skip, said on stderr).
/// Under `CI=true` a missing package fails `test` instead: `tests/run` installs
/// `tests/requirements.txt`.
pub fn with(modules: &str, what: &str, test: &str) -> Option<String> {
    let py = std::env::var("FLEET_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: python3 with {what} is required under CI=true (tests/requirements.txt)"
    );
    eprintln!(
        "SKIPPED {test}: python3 with {what} not found \
         (pip install -r tests/requirements.txt, or set FLEET_TEST_PYTHON)"
    );
    None
}
