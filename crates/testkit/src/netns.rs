//! Network namespaces and veth pairs, always torn down: the building
//! blocks of every topology the tests, the demo and the benchmarks make.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Runs a command; an error carries its output.
pub fn try_run(cmd: &[&str]) -> io::Result<Output> {
    let output = Command::new(cmd[0]).args(&cmd[1..]).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output)
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &[&str]) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A network namespace deleted on drop (also when the test panics).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with a unique name starting with `prefix`, loopback up.
    pub fn new(prefix: &str) -> Self {
        Self::named(&unique_name(prefix)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A namespace called `name` (a leftover of that name is removed
    /// first), loopback up.
    pub fn named(name: &str) -> io::Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        try_run(&["ip", "netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.try_exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn try_exec(&self, cmd: &[&str]) -> io::Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        try_run(&full)
    }

    /// Runs a command inside the namespace, panicking if it fails.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.try_exec(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds `cidr` (e.g. `10.1.0.1/24`, or `fd01::1/64`) to interface
    /// `ifname`. An IPv6 address skips duplicate address detection
    /// (`nodad`): usable at once, not "tentative" for a second or two.
    pub fn add_address(&self, ifname: &str, cidr: &str) -> io::Result<()> {
        if cidr.contains(':') {
            self.try_exec(&["ip", "addr", "add", cidr, "dev", ifname, "nodad"])
        } else {
            self.try_exec(&["ip", "addr", "add", cidr, "dev", ifname])
        }
        .map(drop)
    }

    pub fn link_up(&self, ifname: &str) -> io::Result<()> {
        self.try_exec(&["ip", "link", "set", ifname, "up"])
            .map(drop)
    }

    /// Sets a sysctl in the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        self.try_exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Turns off tx checksum offload, TSO and GSO on `ifname`, so frames it
    /// sends over veth carry complete checksums (the stack verifies every
    /// checksum, as a real NIC delivers them; see DESIGN.md).
    pub fn offloads_off(&self, ifname: &str) -> io::Result<()> {
        self.try_exec(&[
            "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off",
        ])
        .map(drop)
    }

    /// Frames interface `ifname` has received so far (its kernel counter):
    /// on a veth end, every frame its peer sent.
    pub fn frames_received(&self, ifname: &str) -> u64 {
        let out = self.exec(&[
            "cat",
            &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a packet count")
    }

    /// The MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let out = self.exec(&["cat", &format!("/sys/class/net/{ifname}/address")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
            *byte = u8::from_str_radix(part, 16).expect("hex MAC");
        }
        mac
    }

    /// The interface index of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let name = ifname.to_string();
        self.enter(move || nix::net::if_::if_nametoindex(name.as_str()).expect("ifindex"))
    }

    /// Sockets in TIME-WAIT in this namespace (the kernel's own).
    pub fn kernel_time_wait(&self) -> usize {
        let out = self.exec(&["ss", "-Htan", "state", "time-wait"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// Local ports of this namespace's TIME-WAIT sockets toward `peer`.
    pub fn time_wait_ports_to(&self, peer: std::net::SocketAddr) -> Vec<u16> {
        let out = self.exec(&["ss", "-Htan", "state", "time-wait"]);
        let peer = peer.to_string();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut columns = line.split_whitespace().skip(2);
                let (local, remote) = (columns.next()?, columns.next()?);
                (remote == peer).then(|| local.rsplit_once(':')?.1.parse().ok())?
            })
            .collect()
    }

    /// Runs `f` on a new thread that has entered this namespace, so sockets
    /// and interface lookups it makes happen there (and threads it spawns
    /// stay there). Other threads are untouched.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        enter(&self.name, f)
    }
}

/// [`Netns::enter`] by the namespace's name (for a thread that must not
/// borrow the [`Netns`] itself).
pub fn enter<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> R {
    let path = format!("/var/run/netns/{name}");
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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a` (interface `a_if`) to `b` (`b_if`) with `queues`
/// rx and tx queues on each end: veth delivers a flow on the rx queue
/// matching the sender's tx queue (chosen by the flow hash), so flows
/// spread over the queues. Deleting either namespace deletes the pair.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: u32) -> io::Result<()> {
    let q = queues.to_string();
    try_run(&[
        "ip",
        "link",
        "add",
        a_if,
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
        b_if,
        "netns",
        &b.name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ])
    .map(drop)
}

/// What [`Topology::new`] builds.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Queues of the client veth (one shard each).
    pub queues: u32,
    /// Backend addresses; 0: no backend namespace.
    pub backends: usize,
    /// The family of [`Topology::vip`] and `client_addr` (every link
    /// carries both families; this picks the one a test uses).
    pub family: Family,
    /// The family of `backend_addrs`; `None`: the same as `family`.
    pub backend_family: Option<Family>,
}

/// An address family, for tests that run over either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            queues: 1,
            backends: 0,
            family: Family::V4,
            backend_family: None,
        }
    }
}

/// The address of `host` on the clients' link (`subnet` 0) or the
/// backends' link (`subnet` 1) of topology `net`: `10.<net>.<subnet>.<host>`
/// or `fd00:<net>:<subnet>::<host>` (hex digits written as the decimal
/// numbers, so `10.81.1.11` pairs with `fd00:81:1::11`).
pub fn address(family: Family, net: u8, subnet: u8, host: u8) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(10, net, subnet, host)),
        Family::V6 => {
            let hex = |n: u8| u16::from_str_radix(&n.to_string(), 16).expect("decimal digits");
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                hex(net),
                hex(subnet),
                0,
                0,
                0,
                0,
                hex(host),
            ))
        }
    }
}

/// `addr/prefix` for `ip addr add`: /24 for IPv4, /64 for IPv6.
fn cidr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}/24"),
        IpAddr::V6(_) => format!("{addr}/64"),
    }
}

/// The test topology: clients (`clients`, kernel TCP, `10.<net>.0.1`) and
/// lastack (`lastack`, `10.<net>.0.2`, the VIP) joined by a veth; with
/// backends, lastack and the backends (`backends`, kernel sockets,
/// `10.<net>.1.11…` on one veth) joined by another (`10.<net>.1.1` on
/// lastack's side). Every link is dual-stack: the same hosts have
/// `fd00:<net>:<subnet>::<host>` too ([`address`]), added without DAD;
/// `vip`, `client_addr` and `backend_addrs` are those of the shape's
/// family, [`Topology::vip_of`] gives either. Client-side offloads off;
/// clients get a wide port range; lastack's namespace reuses its
/// backend-leg TIME-WAITs (the deployment sysctl in deploy/README.md).
pub struct Topology {
    pub clients: Netns,
    pub lastack: Netns,
    pub backends: Option<Netns>,
    /// The backends' end of the backend veth (when there are backends).
    pub backend_if: Option<String>,
    /// The client end of the client veth, and lastack's end.
    pub client_if: String,
    pub lastack_if: String,
    pub client_addr: IpAddr,
    /// lastack's address on the client veth: the VIP.
    pub vip: IpAddr,
    pub backend_addrs: Vec<IpAddr>,
    pub net: u8,
    pub family: Family,
}

impl Topology {
    pub fn new(net: u8, shape: Shape) -> Self {
        let (clients, lastack) = (Netns::new("lsa"), Netns::new("lsb"));
        let (client_if, lastack_if) = (unique_name("vla"), unique_name("vlb"));
        let client_addr = address(shape.family, net, 0, 1);
        let vip = address(shape.family, net, 0, 2);
        let build = || -> io::Result<()> {
            veth(&clients, &client_if, &lastack, &lastack_if, shape.queues)?;
            for family in [Family::V4, Family::V6] {
                clients.add_address(&client_if, &cidr(address(family, net, 0, 1)))?;
                lastack.add_address(&lastack_if, &cidr(address(family, net, 0, 2)))?;
            }
            clients.link_up(&client_if)?;
            lastack.link_up(&lastack_if)?;
            clients.offloads_off(&client_if)?;
            clients.sysctl("net.ipv4.ip_local_port_range", "1024 65535")
        };
        build().unwrap_or_else(|e| panic!("topology: {e}"));
        let mut topology = Self {
            clients,
            lastack,
            backends: None,
            backend_if: None,
            client_if,
            lastack_if,
            client_addr,
            vip,
            backend_addrs: Vec::new(),
            net,
            family: shape.family,
        };
        if shape.backends > 0 {
            let family = shape.backend_family.unwrap_or(shape.family);
            topology
                .add_backends(net, shape.backends, family)
                .unwrap_or_else(|e| panic!("topology: {e}"));
        }
        topology
    }

    fn add_backends(&mut self, net: u8, count: usize, backend_family: Family) -> io::Result<()> {
        let ns = Netns::new("lsc");
        let (near, far) = (unique_name("vbb"), unique_name("vbc"));
        veth(&self.lastack, &near, &ns, &far, 1)?;
        for family in [Family::V4, Family::V6] {
            self.lastack
                .add_address(&near, &cidr(address(family, net, 1, 1)))?;
            for i in 0..count {
                ns.add_address(&far, &cidr(address(family, net, 1, 11 + i as u8)))?;
            }
        }
        self.lastack.link_up(&near)?;
        self.backend_addrs = (0..count)
            .map(|i| address(backend_family, net, 1, 11 + i as u8))
            .collect();
        ns.link_up(&far)?;
        self.lastack.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        self.backends = Some(ns);
        self.backend_if = Some(far);
        Ok(())
    }

    /// lastack's address on the client link in `family` (the VIP of a
    /// listener of that family).
    pub fn vip_of(&self, family: Family) -> IpAddr {
        address(family, self.net, 0, 2)
    }

    /// The backends' namespace (panics if the topology has none).
    pub fn backends(&self) -> &Netns {
        self.backends.as_ref().expect("a topology with backends")
    }

    /// Runs `f` in the clients' namespace.
    pub fn client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.clients.enter(f)
    }
}
