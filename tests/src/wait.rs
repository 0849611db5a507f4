//! Waiting for a condition with a deadline — the only way these tests wait.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Checks `condition` until it holds (returns `true`) or `timeout` passes (returns `false`).
///
/// ```ignore
/// assert!(wait_until(Duration::from_secs(10), || server.kubectl(&["get", "cm", "a"]).status.success()));
/// ```
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // A polling interval between checks of a condition, not a wait for something to happen.
        std::thread::sleep(POLL);
    }
}
