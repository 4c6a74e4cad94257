//! Active health checks: a TCP connect to every backend of a pool each
//! `interval`, failed if not connected within `timeout` (a refused or
//! unanswered connect). One thread per pool with checks enabled; results
//! go to the shared [`HealthBoard`] with its rise/fall thresholds.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pool::HealthBoard;
use crate::config::Pool;

/// Starts the checkers; they end when `stop` is set.
pub fn spawn(
    board: &Arc<HealthBoard>,
    pools: &[Pool],
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    pools
        .iter()
        .enumerate()
        .filter(|(_, pool)| pool.health_check.enabled)
        .map(|(index, pool)| {
            let (board, stop) = (Arc::clone(board), Arc::clone(stop));
            let interval = *pool.health_check.interval;
            let timeout = *pool.health_check.timeout;
            std::thread::Builder::new()
                .name(format!("health-{}", pool.name))
                .spawn(move || run(&board, index, interval, timeout, &stop))
                .expect("spawn a health-check thread")
        })
        .collect()
}

fn run(board: &HealthBoard, pool: usize, interval: Duration, timeout: Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        for (backend, health) in board.backends(pool).iter().enumerate() {
            let ok = TcpStream::connect_timeout(&SocketAddr::V4(health.address), timeout).is_ok();
            board.record(pool, backend, ok);
        }
        // Sleep the rest of the interval in small steps, so stop is quick.
        while round.elapsed() < interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
}
