//! The datapath end to end: the XDP program steers a VIP's port into an
//! AF_XDP socket, a shard runs the TCP engine on it, and Linux kernel
//! sockets in another namespace are the clients. Needs root.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lastack::config::{Service, XdpMode};
use lastack::link::xdp::Steering;
use lastack::link::xsk::{BindMode, XskSocket};
use lastack::shard::{ListenerSpec, Shard, ShardHandle, ShardStats};
use lastack::tcp::{Secret, TcpConfig};

const ECHO: u16 = 7;
const IDLE_ECHO: u16 = 8;

/// Client namespace `a` (kernel TCP), lastack namespace `b`: the VIP is b's
/// veth address, the kernel there answers ARP, the XDP program steers the
/// listeners' ports to one shard on queue 0.
struct Datapath {
    pair: common::VethPair,
    _steering: Steering,
    shard: Option<ShardHandle>,
}

impl Datapath {
    fn start(net: u8) -> Self {
        let pair = common::VethPair::new(net);
        let vip = pair.b_addr;
        let mut steering = Steering::load().unwrap();
        let listeners = [
            ListenerSpec {
                addr: SocketAddrV4::new(vip, ECHO),
                service: Service::Echo,
                idle_timeout: Duration::from_secs(300),
            },
            ListenerSpec {
                addr: SocketAddrV4::new(vip, IDLE_ECHO),
                service: Service::Echo,
                idle_timeout: Duration::from_millis(300),
            },
        ];
        for spec in &listeners {
            steering
                .add_listener(*spec.addr.ip(), spec.addr.port())
                .unwrap();
        }
        let ifindex = pair.b_ifindex();
        let b_if = pair.b_if.clone();
        let socket = pair.b.enter(|| {
            steering
                .attach(ifindex, XdpMode::Native)
                .expect("native XDP on veth");
            XskSocket::bind(&b_if, 0, NonZeroU32::new(4096).unwrap(), BindMode::Copy)
                .expect("AF_XDP socket")
        });
        steering.register_socket(0, socket.fd()).unwrap();
        let shard = Shard::new(
            socket,
            TcpConfig::default(),
            Secret([0x77; 16]),
            20_000,
            &listeners,
        );
        Self {
            pair,
            _steering: steering,
            shard: Some(shard.spawn(None)),
        }
    }

    fn vip(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.pair.b_addr, port)
    }

    /// Runs `f` in the client namespace.
    fn client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pair.a.enter(f)
    }

    /// Stops the shard once its connections are done (bounded wait).
    fn stop(&mut self) -> ShardStats {
        let handle = self.shard.take().expect("running");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if handle.stats.lock().unwrap().connections == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.stop.store(true, Ordering::Relaxed);
        handle.thread.join().expect("shard thread")
    }

    fn kernel_time_wait(&self) -> usize {
        let out = self.pair.a.exec(&["ss", "-Htan", "state", "time-wait"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

fn connect(addr: SocketAddrV4) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect to the VIP");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Writes `size` pattern bytes, half-closes, and checks the echo.
fn echo_exact(stream: TcpStream, size: usize) {
    let mut writer = stream.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = chunk.len().min(size - sent);
                for (k, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern(sent + k);
                }
                writer.write_all(&chunk[..n]).unwrap();
                sent += n;
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = stream;
        let (mut got, mut chunk) = (0, vec![0u8; 64 * 1024]);
        loop {
            let n = reader.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            for (k, &b) in chunk[..n].iter().enumerate() {
                assert_eq!(b, pattern(got + k), "byte {}", got + k);
            }
            got += n;
        }
        assert_eq!(got, size);
    });
}

#[test]
fn sequential_connections_echo_and_the_client_keeps_time_wait() {
    if !common::privileged("sequential_connections_echo") {
        return;
    }
    let mut dp = Datapath::start(81);
    let vip = dp.vip(ECHO);
    let started = std::time::Instant::now();
    dp.client(|| {
        for i in 0..1000u32 {
            let mut stream = connect(vip);
            let message = [i as u8; 64];
            stream.write_all(&message).unwrap();
            let mut back = [0u8; 64];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back, message, "connection {i}");
        }
    });
    let elapsed = started.elapsed();
    println!(
        "1000 sequential connections in {:.2}s: {:.0} connections/s",
        elapsed.as_secs_f64(),
        1000.0 / elapsed.as_secs_f64()
    );
    let stats = dp.stop();
    println!("{stats:?}");
    assert_eq!(stats.tcp.connections_opened, 1000);
    assert_eq!(
        stats.connections, 0,
        "every connection passed LAST-ACK -> CLOSED"
    );
    assert_eq!(
        stats.time_wait, 0,
        "lastack holds no TIME-WAIT when clients close first"
    );
    assert_eq!(dp.kernel_time_wait(), 1000, "the clients do");
    assert_eq!(stats.frames.held, 0);
    assert_eq!(
        stats.frames.free + stats.frames.fill + stats.frames.tx,
        stats.frames.total,
        "no frame leaked"
    );
}

#[test]
fn concurrent_connections_and_ten_mebibytes_with_half_close() {
    if !common::privileged("concurrent_connections") {
        return;
    }
    let mut dp = Datapath::start(82);
    let vip = dp.vip(ECHO);
    dp.client(|| {
        std::thread::scope(|scope| {
            for _ in 0..200 {
                scope.spawn(move || echo_exact(connect(vip), 64 * 1024));
            }
        });
    });
    let started = std::time::Instant::now();
    dp.client(|| echo_exact(connect(vip), 10 << 20));
    let elapsed = started.elapsed();
    println!(
        "10 MiB each way through the datapath in {:.2}s ({:.0} Mbit/s each way)",
        elapsed.as_secs_f64(),
        80.0 * 1.048576 / elapsed.as_secs_f64()
    );
    let stats = dp.stop();
    println!("{stats:?}");
    assert_eq!(stats.tcp.connections_opened, 201);
    assert_eq!(stats.connections, 0);
    assert_eq!(
        stats.drops.bad_checksum, 0,
        "the client's checksums are complete"
    );
}

#[test]
fn lastack_closing_first_holds_the_time_wait() {
    if !common::privileged("lastack_closing_first") {
        return;
    }
    let mut dp = Datapath::start(83);
    let vip = dp.vip(IDLE_ECHO);
    dp.client(|| {
        for _ in 0..20 {
            let mut stream = connect(vip);
            stream.write_all(b"hello").unwrap();
            let mut back = Vec::new();
            // The idle timeout closes our side first; the client sees EOF.
            stream.read_to_end(&mut back).unwrap();
            assert_eq!(back, b"hello");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let stats = dp.stop();
    assert_eq!(
        stats.time_wait, 20,
        "the side that closed first holds TIME-WAIT"
    );
    assert_eq!(dp.kernel_time_wait(), 0);
}

#[test]
fn other_ports_on_the_vip_still_reach_the_kernel() {
    if !common::privileged("other_ports_reach_the_kernel") {
        return;
    }
    let mut dp = Datapath::start(84);
    let kernel_port = dp.vip(5555);
    let listener = dp.pair.b.enter(|| TcpListener::bind(kernel_port).unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"from the kernel").unwrap();
    });
    let got = dp.client(|| {
        let mut stream = connect(kernel_port);
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got
    });
    server.join().unwrap();
    assert_eq!(got, b"from the kernel");
    let stats = dp.stop();
    assert_eq!(
        stats.tcp.segments_in, 0,
        "none of it went through our stack"
    );
}
