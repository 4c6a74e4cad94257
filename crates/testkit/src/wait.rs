//! Waiting on a condition instead of sleeping for a guessed time: poll a
//! probe (counters, a socket, a process) until it says yes, within a
//! bound; a timeout says what was awaited and the last state seen.

use std::time::{Duration, Instant};

/// The condition did not hold within the bound.
#[derive(Debug)]
pub struct Elapsed {
    pub waited: Duration,
}

/// Polls `probe` until it returns `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T, Elapsed> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            return Err(Elapsed {
                waited: started.elapsed(),
            });
        }
        // Between probes, not instead of one: short at first, then at
        // most 20 ms.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Polls `probe` until it returns `Ok`, for at most `timeout`; panics with
/// `what` and the probe's last `Err` (its description of the state) if
/// that never happens.
pub fn until<T, E: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let mut last = None;
    match poll(timeout, || match probe() {
        Ok(value) => Some(value),
        Err(state) => {
            last = Some(state);
            None
        }
    }) {
        Ok(value) => value,
        Err(elapsed) => panic!(
            "{what}: not within {:?}; last seen: {last:#?}",
            elapsed.waited
        ),
    }
}
