//! The TCP engine's work per connection lifecycle, counted rather than
//! timed. Run under callgrind by `benches/engine_count.sh` (`make
//! bench-engine-count`), which counts the instructions and the simulated
//! L1 data-cache misses of [`measured`] alone: the same from run to run on
//! a shared, noisy machine, so a change to the engine can be told from the
//! build before it to a fraction of a percent, where lifecycles/s
//! (`benches/tcp.rs`) wander by ±15 %.
//!
//! A lifecycle is `BackToBack::lifecycle`: handshake, 64 bytes each way,
//! the client closes first, both engines' work. The first 120,000 bring
//! the client's TIME-WAIT table to its steady state (1 s of virtual
//! TIME-WAIT at 10 µs a lifecycle: 100,000 entries); then [`measured`]
//! runs the count asked for.
//!
//! Usage: `engine_count 4|6 [lifecycles]` (IPv4 or IPv6; 10,000).

use std::hint::black_box;

use lastack_testkit::back_to_back::{BackToBack, SERVER, SERVER6};

/// Lifecycles run before counting starts.
const WARM_UP: u32 = 120_000;

/// The lifecycles counted: callgrind collects inside this function only
/// (`--toggle-collect`).
#[inline(never)]
fn measured(pair: &mut BackToBack, first: u32, count: u32) -> usize {
    (first..first + count).map(|n| pair.lifecycle(n)).sum()
}

fn main() {
    // `cargo bench` passes `--bench`: options are not ours.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let server = match args.next().as_deref() {
        Some("6") => SERVER6,
        Some("4") | None => SERVER,
        Some(other) => {
            eprintln!("engine_count: family {other:?}: expected 4 or 6");
            std::process::exit(2);
        }
    };
    let count = match args.next().map(|a| a.parse::<u32>()) {
        None => 10_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("engine_count: lifecycles: expected a number above 0");
            std::process::exit(2);
        }
    };
    let mut pair = BackToBack::serving(server);
    for n in 0..WARM_UP {
        black_box(pair.lifecycle(n));
    }
    let segments = measured(&mut pair, WARM_UP, count);
    println!("{count} lifecycles, {segments} segments");
}
