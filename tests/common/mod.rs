//! Shared helpers for the integration tests: privilege checks, uniquely named
//! network namespaces and veth pairs that are always torn down.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// True if this process can create namespaces and load BPF (root). When it
/// cannot: under CI (`CI=true`) the test fails, elsewhere it says why and the
/// caller returns early.
pub fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let netns = root
        && Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success());
    if netns {
        return true;
    }
    let why = if root {
        "`ip netns` does not work"
    } else {
        "not running as root"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root and network namespaces, and CI must run it: {why}");
    }
    eprintln!("SKIPPED {test}: {why} (run `sudo make test`)");
    false
}

/// A name no other test, thread or concurrent run uses: `prefix` + pid + n,
/// short enough for an interface name (15 bytes).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "interface name {name} too long");
    name
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &[&str]) -> Output {
    let output = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.join(" ")));
    assert!(
        output.status.success(),
        "{} failed: {}{}",
        cmd.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace deleted on drop (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Runs `f` on a new thread that has entered this namespace, so sockets
    /// and interface lookups it makes happen there. Other threads are untouched.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair, addressed `10.<net>.0.1/24` (the
/// client side, `a`) and `10.<net>.0.2/24` (the lastack side, `b`). Client-side
/// tx checksum offload, TSO and GSO are off so its frames carry complete
/// checksums (see DESIGN.md). Deleting the namespaces deletes the veths.
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
    pub a_if: String,
    pub b_if: String,
    pub a_addr: std::net::Ipv4Addr,
    pub b_addr: std::net::Ipv4Addr,
}

impl VethPair {
    pub fn new(net: u8) -> Self {
        Self::with_queues(net, 1)
    }

    /// A pair whose ends have `queues` rx and tx queues each: veth delivers
    /// a flow on the rx queue matching the sender's tx queue (chosen by the
    /// flow hash), so flows spread over the queues.
    pub fn with_queues(net: u8, queues: u32) -> Self {
        let (a, b) = (Netns::new("lsa"), Netns::new("lsb"));
        let (a_if, b_if) = (unique_name("vla"), unique_name("vlb"));
        let q = queues.to_string();
        run(&[
            "ip",
            "link",
            "add",
            &a_if,
            "netns",
            &a.name,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            &b.name,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        let a_addr = std::net::Ipv4Addr::new(10, net, 0, 1);
        let b_addr = std::net::Ipv4Addr::new(10, net, 0, 2);
        a.exec(&["ip", "addr", "add", &format!("{a_addr}/24"), "dev", &a_if]);
        b.exec(&["ip", "addr", "add", &format!("{b_addr}/24"), "dev", &b_if]);
        a.exec(&["ip", "link", "set", &a_if, "up"]);
        b.exec(&["ip", "link", "set", &b_if, "up"]);
        a.exec(&[
            "ethtool", "-K", &a_if, "tx", "off", "tso", "off", "gso", "off",
        ]);
        Self {
            a,
            b,
            a_if,
            b_if,
            a_addr,
            b_addr,
        }
    }

    /// MAC address of an interface in a namespace.
    pub fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
        let out = ns.exec(&["cat", &format!("/sys/class/net/{ifname}/address")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
            *byte = u8::from_str_radix(part, 16).expect("hex MAC");
        }
        mac
    }

    /// Interface index of the client-side veth, looked up in its namespace.
    pub fn a_ifindex(&self) -> u32 {
        let name = self.a_if.clone();
        self.a
            .enter(move || nix::net::if_::if_nametoindex(name.as_str()).expect("ifindex"))
    }

    /// Interface index of the lastack-side veth, looked up in its namespace.
    pub fn b_ifindex(&self) -> u32 {
        let name = self.b_if.clone();
        self.b
            .enter(move || nix::net::if_::if_nametoindex(name.as_str()).expect("ifindex"))
    }
}

/// The byte at offset `i` of the test streams.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends `size` pattern bytes on `stream` from one thread while reading the
/// echo back byte-checked on this one, half-closes once everything is
/// sent, and expects exactly `size` bytes and then the peer's FIN.
pub fn echo_exact(stream: std::net::TcpStream, size: usize) {
    use std::io::{Read, Write};
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
            writer.shutdown(std::net::Shutdown::Write).unwrap();
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
        assert_eq!(got, size, "everything echoed, then the peer's FIN");
    });
}

/// A kernel TCP connection to `addr` (5 s to connect), with `read_timeout`
/// on reads and Nagle off.
pub fn connect(
    addr: std::net::SocketAddrV4,
    read_timeout: std::time::Duration,
) -> std::net::TcpStream {
    let stream =
        std::net::TcpStream::connect_timeout(&addr.into(), std::time::Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Starts `lastack run -c config` inside `ns` (stderr captured).
pub fn lastack_run(ns: &Netns, config: &std::path::Path) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            env!("CARGO_BIN_EXE_lastack"),
            "run",
            "-c",
        ])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start lastack run")
}

/// Sends `payload` to `addr` and reads as many bytes back, retrying for
/// up to 10 s while the service comes up; returns what came back.
pub fn until_echoed(addr: std::net::SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let attempt = std::net::TcpStream::connect_timeout(
            &addr.into(),
            std::time::Duration::from_millis(300),
        )
        .and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            s.write_all(payload)?;
            let mut back = vec![0u8; payload.len()];
            s.read_exact(&mut back)?;
            Ok(back)
        });
        match attempt {
            Ok(back) => return back,
            Err(e) if std::time::Instant::now() > deadline => panic!("{addr} never served: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// SIGTERM to a child we started (by PID), then its output.
pub fn terminate(child: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal our child");
    child.wait_with_output().expect("wait for our child")
}
