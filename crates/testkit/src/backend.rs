//! Test backends: kernel TCP servers with a chosen behaviour ([`Server`])
//! and nginx ([`Nginx`]), each in a namespace and stopped on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{unique_name, Netns};
use crate::pattern;

/// What a test backend does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Echoes until EOF, then closes (so it closes second).
    Echo,
    /// Reads a request of this many bytes, answers with `response` bytes
    /// of the test stream and closes at once (the server closes first).
    Respond { request: usize, response: usize },
    /// Parses a PROXY v2 header and answers with the address it names
    /// ("a.b.c.d:port\n"), then echoes.
    ProxyV2Reporter,
    /// Reads `chunk` bytes every `pause` (a slow reader, receive buffer
    /// 128 KiB), counting them in [`Server::bytes`].
    Slow { chunk: usize, pause: Duration },
    /// Writes `bytes` bytes of the test stream as fast as the peer takes
    /// them (counted in [`Server::bytes`] as written), then closes.
    Stream { bytes: usize },
    /// Answers every connection with this backend's index (one byte),
    /// then echoes.
    Identify(u8),
    /// Reads what the first read brings, then resets the connection
    /// (close with `SO_LINGER` 0).
    Reset,
    /// Echoes; counts in [`Server::bytes`] the connections that ended with
    /// an error (a reset from the peer) rather than EOF.
    EchoCountingResets,
    /// Reads everything, up to and past the client's FIN (counted in
    /// [`Server::bytes`]), and never answers nor closes until the server
    /// is dropped: a backend that has gone quiet.
    Silent,
}

/// Sets `SO_RCVBUF` or `SO_SNDBUF` (which also stops the kernel's
/// autotuning), so the buffers between two ends are bounded and known.
pub fn set_receive_buffer(stream: &TcpStream, bytes: usize) {
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::RcvBuf, &bytes)
        .expect("SO_RCVBUF");
}

/// See [`set_receive_buffer`].
pub fn set_send_buffer(stream: &TcpStream, bytes: usize) {
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::SndBuf, &bytes)
        .expect("SO_SNDBUF");
}

/// A backend server on `addr` in a namespace, until stopped (then its
/// listening socket closes: the backend is "killed").
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    /// Bytes read (`Slow`) or written (`Stream`) by all connections.
    pub bytes: Arc<AtomicU64>,
}

impl Server {
    /// Listens on `addr` in `ns` (listening when this returns).
    pub fn start(ns: &Netns, addr: SocketAddr, behaviour: Behaviour) -> Self {
        Self::start_with_congestion(ns, addr, behaviour, None)
    }

    /// Like [`start`](Self::start), each accepted connection switched to
    /// the congestion control `congestion` (`TCP_CONGESTION`; root may pick
    /// any the kernel has, whatever the namespace's allowed list says).
    pub fn start_with_congestion(
        ns: &Netns,
        addr: SocketAddr,
        behaviour: Behaviour,
        congestion: Option<&'static str>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_accepted, thread_bytes) =
            (stop.clone(), accepted.clone(), bytes.clone());
        let path = format!("/var/run/netns/{}", ns.name);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread_accepted.fetch_add(1, Ordering::Relaxed);
                        stream.set_nonblocking(false).unwrap();
                        if let Some(name) = congestion {
                            nix::sys::socket::setsockopt(
                                &stream,
                                nix::sys::socket::sockopt::TcpCongestion,
                                &std::ffi::OsString::from(name),
                            )
                            .expect("TCP_CONGESTION");
                        }
                        let bytes = thread_bytes.clone();
                        let stop = thread_stop.clone();
                        std::thread::spawn(move || {
                            if behaviour == Behaviour::Silent {
                                silent(stream, &bytes, &stop);
                            } else {
                                serve(stream, behaviour, &bytes);
                            }
                        });
                    }
                    // The accept loop's own pace, not a test's wait.
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        });
        ready_rx.recv().expect("the backend thread started");
        Self {
            stop,
            thread: Some(thread),
            accepted,
            bytes,
        }
    }

    /// Closes the listening socket (connections in progress go on).
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// [`Behaviour::Silent`]: reads to EOF, then holds the socket open until
/// the server stops.
fn silent(mut stream: TcpStream, bytes: &AtomicU64, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    while !stop.load(Ordering::Relaxed) {
        // The holding's own pace, not a test's wait.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, bytes: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Echo => loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        },
        Behaviour::Respond { request, response } => {
            let mut got = 0;
            while got < request {
                match stream.read(&mut buf[..request - got]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
            let mut body = vec![0u8; response];
            pattern::fill(0, 0, &mut body);
            let _ = stream.write_all(&body);
        }
        Behaviour::ProxyV2Reporter => {
            let mut header = [0u8; 52];
            if stream.read_exact(&mut header[..16]).is_err() {
                return;
            }
            assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
            assert_eq!(header[12], 0x21, "version 2, PROXY");
            let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
            let (expected_len, address_len) = match header[13] {
                0x11 => (12, 4),  // TCP over IPv4
                0x21 => (36, 16), // TCP over IPv6
                other => panic!("family and protocol {other:#04x}"),
            };
            assert_eq!(len, expected_len);
            if stream.read_exact(&mut header[16..16 + len]).is_err() {
                return;
            }
            let src: SocketAddr = if address_len == 4 {
                let ip = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
                (ip, u16::from_be_bytes([header[24], header[25]])).into()
            } else {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&header[16..32]);
                (
                    Ipv6Addr::from(octets),
                    u16::from_be_bytes([header[48], header[49]]),
                )
                    .into()
            };
            let _ = stream.write_all(format!("{src}\n").as_bytes());
            serve(stream, Behaviour::Echo, bytes);
        }
        Behaviour::Slow { chunk, pause } => {
            set_receive_buffer(&stream, 128 * 1024);
            loop {
                match stream.read(&mut buf[..chunk]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                        // The slow reader's pace (what the test is about).
                        std::thread::sleep(pause);
                    }
                }
            }
        }
        Behaviour::Stream { bytes: total } => {
            let mut sent = 0;
            while sent < total {
                let n = buf.len().min(total - sent);
                pattern::fill(0, sent as u64, &mut buf[..n]);
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
                sent += n;
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        Behaviour::Identify(index) => {
            if stream.write_all(&[index]).is_ok() {
                serve(stream, Behaviour::Echo, bytes);
            }
        }
        Behaviour::Reset => {
            let _ = stream.read(&mut buf);
            let zero = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &zero)
                .expect("SO_LINGER");
        }
        Behaviour::EchoCountingResets => loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Err(_) => {
                    bytes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        bytes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        },
        Behaviour::Silent => unreachable!("served by `silent`"),
    }
}

/// nginx in a namespace, stopped (by PID) on drop. Serves `/` ("hello
/// from nginx\n") and `/big` (1 MiB of the test stream).
pub struct Nginx {
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `listen` in `ns`; returns once it accepts.
    pub fn start(ns: &Netns, listen: SocketAddr) -> Self {
        Self::start_with(ns, listen, "")
    }

    /// Starts nginx on `listen` expecting a PROXY protocol header (v1 or
    /// v2, nginx's own parser, `listen ... proxy_protocol`): `/` answers
    /// `<client address> <client port>\n` as nginx read them from the
    /// header (`$proxy_protocol_addr`, `$proxy_protocol_port`).
    pub fn start_reporting_proxy_protocol(ns: &Netns, listen: SocketAddr) -> Self {
        Self::start_with(ns, listen, " proxy_protocol")
    }

    fn start_with(ns: &Netns, listen: SocketAddr, listen_options: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name("lsngx"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut big = vec![0u8; 1 << 20];
        pattern::fill(0, 0, &mut big);
        std::fs::write(dir.join("big"), &big).unwrap();
        let d = dir.display();
        let root = if listen_options.contains("proxy_protocol") {
            "return 200 \"$proxy_protocol_addr $proxy_protocol_port\\n\";"
        } else {
            "return 200 \"hello from nginx\\n\";"
        };
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
             server {{\n  listen {listen}{listen_options};\n  location = / {{ {root} }}\n\
             location = /big {{ alias {d}/big; }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "nginx", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (make deps installs it)");
        let nginx = Self { child, dir };
        let up = crate::wait::poll(Duration::from_secs(5), || {
            ns.enter(|| TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_ok())
                .then_some(())
        });
        assert!(
            up.is_ok(),
            "nginx did not start: {:?}",
            std::fs::read_to_string(nginx.dir.join("error.log"))
        );
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        crate::process::terminate_quietly(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
