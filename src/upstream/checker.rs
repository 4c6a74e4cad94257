//! Health checks, on one thread of their own running a single-threaded
//! tokio runtime: one task per backend, so every backend of every pool is
//! checked concurrently and a blackholed backend holds up nothing but its
//! own check.
//!
//! - **Active** (`health_check.enabled`): every `interval` (±10 % jitter,
//!   first check at a random offset so backends are not probed in step),
//!   connect within `timeout`; then, if configured, send `send` and expect
//!   an answer starting with `expect` within the same timeout. Results go to
//!   the shared [`HealthBoard`], whose rise/fall thresholds decide.
//! - **Passive only** (checks disabled): live traffic takes a backend down
//!   (`fall` connect failures in a row); its task then probes it with a
//!   connect after 1 s, doubling up to 30 s, until `rise` probes in a row
//!   succeed. Without this, a backend that failed once for a few seconds
//!   would stay out for good.
//!
//! Check sockets close with `SO_LINGER` 0 (RST): checks leave no
//! TIME-WAIT on this host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use super::pool::HealthBoard;
use super::socket::is_local_error;
use crate::config::Pool;

/// Passive-only probing: first delay, and the most it grows to.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(30);
/// How often a passive-only task looks whether its backend went down.
const DOWN_POLL: Duration = Duration::from_millis(200);

/// What one check does.
#[derive(Debug, Clone)]
struct Check {
    timeout: Duration,
    send: Vec<u8>,
    expect: Vec<u8>,
}

/// The running checks; stopped when dropped.
pub struct Checker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    /// Starts a task per backend of `pools` (as on `board`).
    pub fn start(board: &Arc<HealthBoard>, pools: &[Pool]) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        for (p, pool) in pools.iter().enumerate() {
            let hc = &pool.health_check;
            let check = Arc::new(Check {
                timeout: *hc.timeout,
                send: hc.send.as_bytes().to_vec(),
                expect: hc.expect.as_bytes().to_vec(),
            });
            for (b, backend) in pool.backends.iter().enumerate() {
                let board = Arc::clone(board);
                let check = Arc::clone(&check);
                let address = *backend.address;
                let mut jitter = Jitter::new(p, b);
                if hc.enabled {
                    let interval = *hc.interval;
                    runtime.spawn(async move {
                        tokio::time::sleep(jitter.up_to(interval)).await;
                        loop {
                            if let Some(ok) = check.run(address).await {
                                board.record(p, b, ok);
                            }
                            tokio::time::sleep(jitter.around(interval)).await;
                        }
                    });
                } else {
                    runtime.spawn(async move {
                        let mut delay = PROBE_FIRST;
                        loop {
                            if board.is_up(p, b) {
                                delay = PROBE_FIRST;
                                tokio::time::sleep(DOWN_POLL).await;
                                continue;
                            }
                            tokio::time::sleep(jitter.around(delay)).await;
                            let ok = check.run(address).await;
                            if let Some(ok) = ok {
                                board.record(p, b, ok);
                            }
                            delay = if ok == Some(true) {
                                PROBE_FIRST
                            } else {
                                (delay * 2).min(PROBE_MAX)
                            };
                        }
                    });
                }
            }
        }
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                // Runs the tasks until stopped; dropping the runtime ends them.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Ends every check and waits for the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Check {
    /// One check of `address`: connected, and the answer expected, within
    /// the timeout. `None` if this host could not run it (out of
    /// descriptors, ports, memory): that says nothing about the backend.
    async fn run(&self, address: SocketAddr) -> Option<bool> {
        match tokio::time::timeout(self.timeout, self.exchange(address)).await {
            Ok(Ok(ok)) => Some(ok),
            Ok(Err(e)) if e.raw_os_error().is_some_and(is_local_error) => None,
            Ok(Err(_)) | Err(_) => Some(false),
        }
    }

    async fn exchange(&self, address: SocketAddr) -> std::io::Result<bool> {
        let socket = match address {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // Closed with RST: no TIME-WAIT for a check.
        socket.set_zero_linger()?;
        let mut stream = socket.connect(address).await?;
        if !self.send.is_empty() {
            stream.write_all(&self.send).await?;
        }
        if self.expect.is_empty() {
            return Ok(true);
        }
        let mut answer = vec![0u8; self.expect.len()];
        let mut got = 0;
        while got < answer.len() {
            match stream.read(&mut answer[got..]).await? {
                0 => return Ok(false),
                n => got += n,
            }
        }
        Ok(answer == self.expect)
    }
}

/// Spreads checks in time: a xorshift generator seeded per backend.
struct Jitter(u64);

impl Jitter {
    fn new(pool: usize, backend: usize) -> Self {
        use std::hash::BuildHasher;
        Self(std::collections::hash_map::RandomState::new().hash_one((pool, backend)) | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, d)`.
    fn up_to(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.next())
    }

    /// Uniform in `[0.9 d, 1.1 d)`.
    fn around(&mut self, d: Duration) -> Duration {
        d.mul_f64(0.9 + 0.2 * self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn check(send: &str, expect: &str) -> Check {
        Check {
            timeout: Duration::from_secs(2),
            send: send.as_bytes().to_vec(),
            expect: expect.as_bytes().to_vec(),
        }
    }

    fn run(check: &Check, address: SocketAddr) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check.run(address))
            == Some(true)
    }

    /// A server on loopback answering each connection with `answer` after
    /// reading the request's first line.
    fn server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 256];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(answer);
            }
        });
        address
    }

    #[test]
    fn a_payload_check_wants_the_expected_prefix() {
        let ok = server(b"HTTP/1.1 200 OK\r\n\r\n");
        let bad = server(b"HTTP/1.1 503 Unavailable\r\n\r\n");
        let probe = check("GET /health HTTP/1.0\r\n\r\n", "HTTP/1.1 200");
        assert!(run(&probe, ok));
        assert!(!run(&probe, bad));
        assert!(run(&check("", ""), bad), "a connect is enough");
    }

    #[test]
    fn a_refused_connect_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(!run(&check("", ""), address));
    }

    #[test]
    fn jitter_stays_in_its_bounds() {
        let mut j = Jitter::new(0, 3);
        let d = Duration::from_secs(2);
        for _ in 0..1000 {
            assert!(j.up_to(d) < d);
            let a = j.around(d);
            assert!(a >= d.mul_f64(0.9) && a < d.mul_f64(1.1));
        }
    }
}
