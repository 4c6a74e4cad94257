//! Kernel TCP clients for the tests: connect, exchange, byte-checked echo,
//! and small churn loops.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pattern;

/// A kernel TCP connection to `addr` (5 s to connect), with `read_timeout`
/// on reads and Nagle off.
pub fn connect(addr: SocketAddr, read_timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `size` bytes of the test stream on `stream` from one thread while
/// reading the echo back byte-checked on this one, half-closes once
/// everything is sent, and expects exactly `size` bytes and then the
/// peer's FIN.
pub fn echo_exact(stream: TcpStream, size: usize) {
    let mut writer = stream.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = chunk.len().min(size - sent);
                pattern::fill(0, sent as u64, &mut chunk[..n]);
                writer.write_all(&chunk[..n]).unwrap();
                sent += n;
            }
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let got = read_checked(stream, 0);
        assert_eq!(got, size, "everything echoed, then the peer's FIN");
    });
}

/// Reads `stream` until EOF, checking every byte against the test stream
/// from offset `start`; returns the count.
pub fn read_checked(mut stream: TcpStream, start: usize) -> usize {
    let (mut got, mut chunk) = (start, vec![0u8; 64 * 1024]);
    loop {
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            return got - start;
        }
        if let Some(at) = pattern::mismatch(0, got as u64, &chunk[..n]) {
            panic!("byte {at} differs from the test stream");
        }
        got += n;
    }
}

/// Sends `payload` to `addr` and reads as many bytes back, retrying for
/// up to 10 s while the service comes up; returns what came back.
pub fn until_echoed(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    crate::wait::until(
        &format!("{addr} echoes"),
        Duration::from_secs(10),
        || -> io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(payload)?;
            let mut back = vec![0u8; payload.len()];
            s.read_exact(&mut back)?;
            Ok(back)
        },
    )
}

/// One short exchange: `request` bytes out, then read `response` bytes
/// (or until EOF if `until_eof`), then close. Returns the bytes read.
pub fn exchange(
    vip: SocketAddr,
    request: usize,
    response: usize,
    until_eof: bool,
) -> io::Result<usize> {
    let mut stream = TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut req = vec![0u8; request];
    pattern::fill(0, 0, &mut req);
    stream.write_all(&req)?;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        if !until_eof && got >= response {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// `total` exchanges over `concurrency` client threads; returns the
/// number that failed (the first few are printed).
pub fn churn(
    vip: SocketAddr,
    total: usize,
    concurrency: usize,
    request: usize,
    response: usize,
) -> usize {
    let failures = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                    match exchange(vip, request, response, false) {
                        Ok(n) if n == response => {}
                        other => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("exchange failed: {other:?}");
                            }
                        }
                    }
                }
            });
        }
    });
    failures.load(Ordering::Relaxed) as usize
}

/// What [`churn_for`] saw.
#[derive(Debug, Clone, Default)]
pub struct Sustained {
    /// Exchanges completed in each whole second since the start.
    pub per_second: Vec<u64>,
    pub completed: u64,
    pub failed: u64,
}

impl Sustained {
    /// The fewest exchanges completed in any whole second.
    pub fn slowest_second(&self) -> u64 {
        self.per_second.iter().copied().min().unwrap_or(0)
    }
}

/// Exchanges over `concurrency` client threads for `duration` (each
/// thread starting a new one as soon as its last ended): completions per
/// second, and failures (the first few printed).
pub fn churn_for(
    vip: SocketAddr,
    duration: Duration,
    concurrency: usize,
    request: usize,
    response: usize,
) -> Sustained {
    let seconds = duration.as_secs().max(1) as usize;
    let per_second: Vec<AtomicU64> = (0..seconds).map(|_| AtomicU64::new(0)).collect();
    let failed = AtomicU64::new(0);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while started.elapsed() < duration {
                    match exchange(vip, request, response, false) {
                        Ok(n) if n == response => {
                            let second = started.elapsed().as_secs() as usize;
                            if let Some(bucket) = per_second.get(second) {
                                bucket.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("exchange failed at {:?}: {other:?}", started.elapsed());
                            }
                        }
                    }
                }
            });
        }
    });
    let per_second: Vec<u64> = per_second
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    Sustained {
        completed: per_second.iter().sum(),
        per_second,
        failed: failed.load(Ordering::Relaxed),
    }
}

/// A long-lived connection to an echo service: a thread sends the test
/// stream in small chunks and checks every byte of the echo, until told
/// to finish; then it half-closes and expects the rest of the echo and
/// the peer's FIN.
pub struct LongLived {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes echoed and checked so far.
    echoed: std::sync::Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Result<u64, String>>,
}

impl LongLived {
    /// Connects to `addr` (in the calling thread's namespace) and starts
    /// exchanging `chunk` bytes at a time, `pause` between exchanges.
    pub fn start(addr: SocketAddr, chunk: usize, pause: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let echoed = std::sync::Arc::new(AtomicU64::new(0));
        let progress = echoed.clone();
        let thread =
            std::thread::spawn(move || exchange_until(stream, chunk, pause, &flag, &progress));
        Ok(Self {
            stop,
            echoed,
            thread,
        })
    }

    /// Stops sending, half-closes, and returns the bytes echoed (all of
    /// them checked), or what went wrong.
    pub fn finish(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the stream's thread panicked".into()))
    }

    /// True once the exchange ended on its own (an error).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Bytes echoed and checked so far (it grows while the stream flows).
    pub fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }
}

fn exchange_until(
    mut stream: TcpStream,
    chunk: usize,
    pause: Duration,
    stop: &std::sync::atomic::AtomicBool,
    progress: &AtomicU64,
) -> Result<u64, String> {
    let mut out = vec![0u8; chunk];
    let mut back = vec![0u8; chunk];
    let mut offset = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pattern::fill(1, offset, &mut out);
        stream
            .write_all(&out)
            .map_err(|e| format!("write at {offset}: {e}"))?;
        stream
            .read_exact(&mut back)
            .map_err(|e| format!("echo at {offset}: {e}"))?;
        if let Some(at) = pattern::mismatch(1, offset, &back) {
            return Err(format!("echo byte {at} differs"));
        }
        offset += chunk as u64;
        progress.store(offset, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| format!("after the half-close: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last echo", rest.len()));
    }
    Ok(offset)
}
