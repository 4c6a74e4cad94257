//! Several lastack instances behind one VIP, as a router spreads them with
//! ECMP: each instance in its own namespace, a Linux router namespace in
//! front (ECMP on the four-tuple, `fib_multipath_hash_policy = 3` with the
//! fields of policy 1), kernel clients
//! behind the router and shared kernel backends beside it.
//!
//! ```text
//!  clients ──┐            ┌── instance 1 (lastack, XDP on its veth) ──┐
//!            ├── router ──┼── instance 2                             ├── (via the router) backends
//!            │            └── instance 3                             │
//!            └──────────────────────────────────────────────────────┘
//! ```
//!
//! What holds: flows spread and churn runs without error; an instance taken
//! out of the route loses its own flows, reset at once by the others and
//! counted, and no other; one put back loses none; a handshake whose SYN
//! reached one instance completes on another (the cluster key), also while
//! the key is rotated.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lastack::runtime::{Runtime, Secrets};
use lastack::shard::ShardStats;
use lastack_testkit::netns::{address, veth};

/// Subnets of the test network `10.<net>.<subnet>.<host>` (and the IPv6
/// twin, see `address`).
const CLIENT_SUBNET: u8 = 0;
const BACKEND_SUBNET: u8 = 20;
const VIP_SUBNET: u8 = 99;
/// The router's host number on each of its links.
const ROUTER: u8 = 254;
const BACKENDS: [u8; 2] = [11, 12];
const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
/// Buckets of the router's resilient nexthop group.
const BUCKETS: u32 = 256;

/// `ip` as a host route: `/32` or `/128`.
fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// How [`Cluster::new`] starts the instances.
#[derive(Clone, Copy)]
struct Options<'a> {
    instances: usize,
    /// The `[tcp]` table's lines.
    tcp: &'a str,
    /// The pool's `balance`.
    balance: &'a str,
    /// As `lastack run` processes (no counters then) rather than runtimes
    /// in this process.
    processes: bool,
    /// Each instance forwards segments of flows it does not know to their
    /// owner (`[cluster] peers`).
    forwarding: bool,
    /// Rx queues (shards) per instance.
    queues: u32,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            instances: 3,
            tcp: "",
            balance: "round-robin",
            processes: false,
            forwarding: false,
            queues: 1,
        }
    }
}

/// One lastack instance: its namespace, its end of the router link, its
/// runtime (in-process, as `lastack run` builds it).
struct Instance {
    ns: Netns,
    ifname: String,
    /// Its address on the router link: the next hop towards the VIP.
    addr: IpAddr,
    runtime: Option<Runtime>,
    /// Or the `lastack run` process.
    process: Option<process::Guard>,
    config: PathBuf,
}

impl Instance {
    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("running")
    }

    fn stats(&self) -> Vec<ShardStats> {
        self.runtime().shard_stats()
    }

    /// Established connections, over its shards. (Not every open one: a
    /// client that gave up a connect under load, or whose SYN was
    /// retransmitted, can leave a half-open SYN-RECEIVED here that ends at
    /// its own bound, the SYN-ACK retries.)
    fn established(&self) -> usize {
        in_state(&self.stats(), "ESTABLISHED")
    }

    fn tcp(&self, counter: impl Fn(&lastack::tcp::Stats) -> u64) -> u64 {
        self.stats().iter().map(|s| counter(&s.tcp)).sum()
    }

    /// Reloads from its config file, as SIGHUP does, and waits until its
    /// shards run it.
    fn reload(&mut self) {
        let config = self.config.clone();
        let runtime = self.runtime.as_mut().expect("running");
        self.ns
            .enter(|| runtime.reload_from(&config))
            .unwrap_or_else(|e| panic!("reload: {e}"));
        let generation = self.runtime().generation();
        wait::until("the shards took the reload", Duration::from_secs(5), || {
            let stats = self.stats();
            if stats.iter().all(|s| s.config_generation == generation) {
                Ok(())
            } else {
                Err(stats
                    .iter()
                    .map(|s| s.config_generation)
                    .collect::<Vec<_>>())
            }
        });
    }
}

/// The whole test network.
struct Cluster {
    net: u8,
    family: Family,
    clients: Netns,
    router: Netns,
    backends: Netns,
    instances: Vec<Instance>,
    vip: IpAddr,
    dir: PathBuf,
    key_file: PathBuf,
}

impl Cluster {
    /// Builds the network for the instances and starts them, sharing the
    /// key file.
    fn new(net: u8, family: Family, options: Options) -> Self {
        let instances = options.instances;
        let dir = std::env::temp_dir().join(unique_name("lscl"));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("cluster.key");
        write_keys(&key_file, &[KEY_1]);
        let (clients, router, backends) = (Netns::new("lsk"), Netns::new("lsr"), Netns::new("lsq"));
        let at = |subnet: u8, host: u8| address(family, net, subnet, host);
        let prefix = |ip: IpAddr| match ip {
            IpAddr::V4(_) => format!("{ip}/24"),
            IpAddr::V6(_) => format!("{ip}/64"),
        };
        let v6 = family == Family::V6;
        let ip = |ns: &Netns, args: &[&str]| {
            let mut cmd = vec!["ip"];
            if v6 {
                cmd.push("-6");
            }
            cmd.extend_from_slice(args);
            ns.try_exec(&cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        };
        let vip = at(VIP_SUBNET, 10);
        let build = || -> std::io::Result<Vec<Instance>> {
            for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
                router.sysctl(key, "1")?;
            }
            // ECMP on the four-tuple, as a hardware router hashes it: policy
            // 3 with the fields of policy 1 (addresses, protocol, ports).
            // Policy 1 itself would reuse the hash the client's socket put
            // on the skb, which veth carries across namespaces; a client
            // rethinks that hash (IPv6: on a spurious retransmission, to
            // change its flow label), which would move flows at random.
            for family in ["ipv4", "ipv6"] {
                router.sysctl(&format!("net.{family}.fib_multipath_hash_policy"), "3")?;
                router.sysctl(&format!("net.{family}.fib_multipath_hash_fields"), "0x0037")?;
            }
            // Clients.
            let (client_if, router_client_if) = (unique_name("vka"), unique_name("vkb"));
            veth(&clients, &client_if, &router, &router_client_if, 1)?;
            clients.add_address(&client_if, &prefix(at(CLIENT_SUBNET, 1)))?;
            router.add_address(&router_client_if, &prefix(at(CLIENT_SUBNET, ROUTER)))?;
            for (ns, ifname) in [(&clients, &client_if), (&router, &router_client_if)] {
                ns.link_up(ifname)?;
                ns.offloads_off(ifname)?;
            }
            ip(
                &clients,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &at(CLIENT_SUBNET, ROUTER).to_string(),
                ],
            );
            clients.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
            // Backends.
            let (backend_if, router_backend_if) = (unique_name("vqa"), unique_name("vqb"));
            veth(&backends, &backend_if, &router, &router_backend_if, 1)?;
            for host in BACKENDS {
                backends.add_address(&backend_if, &prefix(at(BACKEND_SUBNET, host)))?;
            }
            router.add_address(&router_backend_if, &prefix(at(BACKEND_SUBNET, ROUTER)))?;
            backends.link_up(&backend_if)?;
            router.link_up(&router_backend_if)?;
            ip(
                &backends,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &at(BACKEND_SUBNET, ROUTER).to_string(),
                ],
            );
            // Instances.
            let mut built = Vec::new();
            for k in 1..=instances as u8 {
                let ns = Netns::new("lsi");
                let (ifname, router_if) = (unique_name("via"), unique_name("vib"));
                veth(&ns, &ifname, &router, &router_if, options.queues)?;
                let addr = at(k, 1);
                ns.add_address(&ifname, &prefix(addr))?;
                ns.add_address(&ifname, &host_prefix(vip))?;
                router.add_address(&router_if, &prefix(at(k, ROUTER)))?;
                ns.link_up(&ifname)?;
                router.link_up(&router_if)?;
                router.offloads_off(&router_if)?;
                ip(
                    &ns,
                    &["route", "add", "default", "via", &at(k, ROUTER).to_string()],
                );
                // The backend leg's TIME-WAITs are reused (deploy/README.md).
                ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
                ip(
                    &router,
                    &[
                        "nexthop",
                        "add",
                        "id",
                        &k.to_string(),
                        "via",
                        &addr.to_string(),
                        "dev",
                        &router_if,
                    ],
                );
                let config = dir.join(format!("instance-{k}.toml"));
                built.push(Instance {
                    ns,
                    ifname,
                    addr,
                    runtime: None,
                    process: None,
                    config,
                });
            }
            Ok(built)
        };
        let mut members = build().unwrap_or_else(|e| panic!("cluster network: {e}"));
        let mut cluster = Self {
            net,
            family,
            clients,
            router,
            backends,
            instances: Vec::new(),
            vip,
            dir,
            key_file,
        };
        let group: Vec<String> = (1..=members.len()).map(|k| k.to_string()).collect();
        cluster.set_group(&group.join("/"), true);
        let route = host_prefix(vip);
        ip(&cluster.router, &["route", "add", &route, "nhid", "100"]);
        for member in &mut members {
            let toml = cluster.config_text(member, options);
            std::fs::write(&member.config, &toml).unwrap();
            let config =
                lastack::config::load(&member.config).unwrap_or_else(|e| panic!("{e}\n{toml}"));
            if options.processes {
                member.process = Some(process::Guard::new(lastack_run(&member.ns, &member.config)));
                continue;
            }
            let runtime = member
                .ns
                .enter(|| Runtime::start(&config, Secrets::Random).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| panic!("instance did not start: {e}\n{toml}"));
            member.runtime = Some(runtime);
        }
        cluster.instances = members;
        cluster
    }

    /// The config of `member`: its interface, the VIP in front of the
    /// shared backends, the cluster key, `[tcp]` and `balance` as given.
    fn config_text(&self, member: &Instance, options: Options) -> String {
        let backends: String = self
            .backend_addrs()
            .iter()
            .map(|addr| format!("[[pools.backends]]\naddress = \"{addr}\"\n\n"))
            .collect();
        let (tcp, balance) = (options.tcp, options.balance);
        // Forwarding: ids 1..=n on the instances' router-link addresses;
        // the MSS leaves room for the outer header in the 1500-byte MTU.
        let (forwarding, mss) = if options.forwarding {
            let peers: String = (1..=options.instances as u8)
                .filter(|&j| self.at(j, 1) != member.addr)
                .map(|j| {
                    format!(
                        "[[cluster.peers]]\nid = {j}\naddress = \"{}\"\n",
                        self.at(j, 1)
                    )
                })
                .collect();
            let own = (1..=options.instances as u8)
                .find(|&j| self.at(j, 1) == member.addr)
                .expect("a member");
            let mss = if self.family == Family::V6 {
                1420
            } else {
                1440
            };
            (
                format!("instance = {own}\naddress = \"{}\"\n{peers}", member.addr),
                format!("mss = {mss}\n"),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            "[[interfaces]]\nname = \"{}\"\nqueues = {}\numem_frames = 4096\n\n\
             [[listeners]]\nname = \"web\"\nvip = \"{}\"\nport = {PORT}\npool = \"p\"\n\n\
             [[pools]]\nname = \"p\"\nbalance = \"{balance}\"\n\n[pools.health_check]\nenabled = false\n\n{backends}\
             [tcp]\n{tcp}\n{mss}\n[cluster]\nkey_file = \"{}\"\n{forwarding}\n[admin]\nenabled = false\n",
            member.ifname,
            options.queues,
            self.vip,
            self.key_file.display()
        )
    }

    fn at(&self, subnet: u8, host: u8) -> IpAddr {
        address(self.family, self.net, subnet, host)
    }

    /// The VIP as a host route (`/32`, `/128`).
    fn vip_route(&self) -> String {
        host_prefix(self.vip)
    }

    /// `ip -4|-6 ARGS` (the cluster's family) in the router's namespace.
    fn router_ip(&self, args: &[&str]) {
        let family = if self.family == Family::V6 {
            "-6"
        } else {
            "-4"
        };
        let cmd: Vec<&str> = ["ip", family]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.router
            .try_exec(&cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    }

    /// Makes the router's nexthop group (id 100) spread over `members`
    /// ("1/2/3"): a resilient group, so that a change moves only the
    /// buckets it must (a removed member's) and, when a member comes back,
    /// only buckets idle for a second.
    fn set_group(&self, members: &str, create: bool) {
        let verb = if create { "add" } else { "replace" };
        let buckets = BUCKETS.to_string();
        let mut args = vec![
            "ip",
            "nexthop",
            verb,
            "id",
            "100",
            "group",
            members,
            "type",
            "resilient",
        ];
        if create {
            args.extend(["buckets", &buckets]);
        }
        args.extend(["idle_timer", "1", "unbalanced_timer", "0"]);
        self.router
            .try_exec(&args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }

    /// Buckets of the router's group that point at `member` (1-based).
    fn buckets_of(&self, member: usize) -> usize {
        let out = self
            .router
            .exec(&["ip", "nexthop", "bucket", "show", "id", "100"]);
        let needle = format!("nhid {member} ");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle) || l.ends_with(&format!("nhid {member}")))
            .count()
    }

    fn vip(&self) -> SocketAddr {
        SocketAddr::new(self.vip, PORT)
    }

    /// The backends: each backend address on two ports.
    fn backend_addrs(&self) -> Vec<SocketAddr> {
        BACKENDS
            .iter()
            .flat_map(|&host| {
                [BACKEND_PORT, BACKEND_PORT + 1]
                    .map(|port| SocketAddr::new(self.at(BACKEND_SUBNET, host), port))
            })
            .collect()
    }

    /// Echo backends on every backend address.
    fn backends(&self) -> Vec<backend::Server> {
        self.backends_behaving(|_| backend::Behaviour::Echo)
    }

    /// Backend `i` behaving as `behaviour(i)`.
    fn backends_behaving(
        &self,
        behaviour: impl Fn(u8) -> backend::Behaviour,
    ) -> Vec<backend::Server> {
        self.backend_addrs()
            .into_iter()
            .enumerate()
            .map(|(i, addr)| backend::Server::start(&self.backends, addr, behaviour(i as u8)))
            .collect()
    }

    /// `total` exchanges of 64 B from the clients: the number that failed.
    fn churn(&self, total: usize) -> usize {
        let vip = self.vip();
        self.clients.enter(|| client::churn(vip, total, 8, 64, 64))
    }

    /// Rewrites the shared key file and reloads `which` instances, in order.
    fn rotate(&mut self, keys: &[[u8; 16]], which: &[usize]) {
        write_keys(&self.key_file, keys);
        for &i in which {
            self.instances[i].reload();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.instances {
            if let Some(runtime) = member.runtime.take() {
                let _ = runtime.stop();
            }
            if let Some(process) = member.process.take() {
                let _ = process.terminate();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const KEY_1: [u8; 16] = [0x5a; 16];
const KEY_2: [u8; 16] = [0xc3; 16];
const KEY_3: [u8; 16] = [0x0f; 16];

fn write_keys(path: &Path, keys: &[[u8; 16]]) {
    let text: String = keys
        .iter()
        .map(|key| key.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    // Written whole and renamed: a reload never reads half a file.
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The cluster with echo backends, once the VIP answers.
fn echo_cluster(net: u8, family: Family, options: Options) -> (Cluster, Vec<backend::Server>) {
    let cluster = Cluster::new(net, family, options);
    let backends = cluster.backends();
    let vip = cluster.vip();
    cluster.clients.enter(|| client::until_echoed(vip, b"up"));
    (cluster, backends)
}

/// `count` long-lived echo streams from the clients.
fn streams(cluster: &Cluster, count: usize) -> Vec<client::LongLived> {
    let vip = cluster.vip();
    cluster.clients.enter(|| {
        (0..count)
            .map(|_| {
                client::LongLived::start(vip, 64, Duration::from_millis(20))
                    .unwrap_or_else(|e| panic!("a stream: {e}"))
            })
            .collect()
    })
}

/// Waits until the instances hold exactly the `streams` long-lived
/// connections established (the churn's have closed); returns each one's
/// count.
/// What a stream that ended counts as in [`await_streams`].
#[derive(Clone, Copy, PartialEq)]
enum Ended {
    /// Done: it was reset, which the test allows.
    Done,
    /// Behind: every stream must go on.
    Behind,
}

/// Waits (10 s at most) until every stream has echoed five more 64-byte
/// messages than it had when called; one that ended counts as `ended`
/// says. Fails with the indices of the streams still behind.
fn await_streams(what: &str, streams: &[client::LongLived], ended: Ended) {
    let marks: Vec<u64> = streams.iter().map(client::LongLived::echoed).collect();
    wait::until(what, Duration::from_secs(10), || {
        let behind: Vec<usize> = streams
            .iter()
            .zip(&marks)
            .enumerate()
            .filter(|(_, (s, &mark))| {
                if s.ended() {
                    ended == Ended::Behind
                } else {
                    s.echoed() < mark + 5 * 64
                }
            })
            .map(|(i, _)| i)
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(behind)
        }
    });
}

fn settle(cluster: &Cluster, streams: usize) -> Vec<usize> {
    wait::until("only the streams are open", Duration::from_secs(10), || {
        let open: Vec<usize> = cluster
            .instances
            .iter()
            .map(Instance::established)
            .collect();
        if open.iter().sum::<usize>() == streams {
            Ok(open)
        } else {
            let states: Vec<Vec<(&str, usize)>> = cluster
                .instances
                .iter()
                .map(|i| i.stats().iter().flat_map(|s| s.states.clone()).collect())
                .collect();
            Err(format!("{open:?} {states:?}"))
        }
    })
}

#[test]
fn flows_spread_and_an_instance_that_leaves_loses_only_its_own_and_one_that_returns_loses_none() {
    if !privileged("cluster") {
        return;
    }
    let (cluster, _backends) = echo_cluster(71, Family::V4, Options::default());
    let mut streams = streams(&cluster, 50);
    assert_eq!(cluster.churn(1500), 0, "churn with every instance in");
    let open = settle(&cluster, 50);
    assert!(
        open.iter().all(|&n| n > 0),
        "ECMP spread the 50 streams over every instance: {open:?}"
    );

    // Instance 3 leaves the route: its flows now reach 1 and 2, which do
    // not know them and reset them at once; nobody else's move.
    eprintln!("open connections by instance: {open:?}");
    let leaving = open[2] as u64;
    let resets_before: u64 = cluster.instances[..2]
        .iter()
        .map(|i| i.tcp(|t| t.unknown_flow_resets))
        .sum();
    cluster.set_group("1/2", false);
    wait::until("instance 3's streams end", Duration::from_secs(10), || {
        let ended = streams.iter().filter(|s| s.ended()).count() as u64;
        if ended >= leaving {
            Ok(())
        } else {
            Err(ended)
        }
    });
    assert_eq!(cluster.churn(600), 0, "churn on the two that stay");
    let ended = streams.iter().filter(|s| s.ended()).count() as u64;
    assert_eq!(ended, leaving, "only instance 3's streams ended");
    let resets: u64 = cluster.instances[..2]
        .iter()
        .map(|i| i.tcp(|t| t.unknown_flow_resets))
        .sum();
    assert!(
        resets - resets_before >= leaving,
        "each moved flow reset and counted: {} for {leaving} streams",
        resets - resets_before
    );
    let (lost, kept): (Vec<_>, Vec<_>) = streams.drain(..).partition(|s| s.ended());
    for stream in lost {
        assert!(stream.finish().is_err(), "an ended stream saw an error");
    }
    let mut streams = kept;

    // Instance 3 comes back: buckets idle for a second move to it, the
    // busy ones (the streams) stay; it takes new flows and nobody's end.
    let opened_before = cluster.instances[2].tcp(|t| t.connections_opened);
    cluster.set_group("1/2/3", false);
    wait::until(
        "idle buckets moved to instance 3",
        Duration::from_secs(20),
        || {
            let buckets = cluster.buckets_of(3);
            if buckets >= BUCKETS as usize / 4 {
                Ok(())
            } else {
                Err(buckets)
            }
        },
    );
    assert_eq!(cluster.churn(1500), 0, "churn with instance 3 back");
    let opened = cluster.instances[2].tcp(|t| t.connections_opened) - opened_before;
    eprintln!(
        "instance 3 back: {} of {BUCKETS} buckets, {opened} new connections",
        cluster.buckets_of(3)
    );
    assert!(opened > 100, "instance 3 took new flows: {opened}");
    assert!(
        streams.iter().all(|s| !s.ended()),
        "no stream ended when instance 3 came back"
    );
    for stream in streams.drain(..) {
        let echoed = stream.finish().expect("a stream that stayed");
        assert!(echoed > 0);
    }
}

/// SYNs go to instance 1, everything else to instance 2 (policy routing on
/// the SYN flag): every connection's handshake ends on the instance that
/// did not begin it, through the cookie, with the cluster key.
fn split_handshakes(cluster: &Cluster) {
    for cmd in [
        &["nft", "add", "table", "inet", "split"][..],
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "split",
            "pre",
            "{ type filter hook prerouting priority -150; }",
        ],
        &[
            "nft", "add", "rule", "inet", "split", "pre", "tcp", "flags", "&", "(syn", "|", "ack)",
            "==", "syn", "meta", "mark", "set", "1",
        ],
    ] {
        cluster
            .router
            .try_exec(cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    }
    cluster.router_ip(&["rule", "add", "fwmark", "1", "table", "100"]);
    let route = cluster.vip_route();
    let (first, second) = (&cluster.instances[0].addr, &cluster.instances[1].addr);
    let (first, second) = (first.to_string(), second.to_string());
    cluster.router_ip(&["route", "add", &route, "via", &first, "table", "100"]);
    cluster.router_ip(&["route", "replace", &route, "via", &second]);
}

#[test]
fn handshakes_complete_on_another_instance_through_a_key_rotation_under_churn() {
    if !privileged("cluster") {
        return;
    }
    for family in [Family::V4, Family::V6] {
        handshakes_cross_instances(family);
    }
}

fn handshakes_cross_instances(family: Family) {
    let options = Options {
        instances: 2,
        tcp: "syn_cookies = \"always\"",
        ..Options::default()
    };
    let mut cluster = Cluster::new(72, family, options);
    let _backends = cluster.backends();
    // Before any SYN: every one must reach instance 1.
    split_handshakes(&cluster);
    let vip = cluster.vip();
    cluster.clients.enter(|| client::until_echoed(vip, b"up"));

    // Churn in the background while the key turns over in the documented
    // steps; each step waits for handshakes to complete under it.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let vip = cluster.vip();
    let churn = {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        let clients = cluster.clients.name.clone();
        std::thread::spawn(move || {
            lastack_testkit::netns::enter(&clients, || {
                std::thread::scope(|scope| {
                    for _ in 0..4 {
                        scope.spawn(|| {
                            while !stop.load(Ordering::Relaxed) {
                                match client::exchange(vip, 64, 64, false) {
                                    Ok(64) => done.fetch_add(1, Ordering::Relaxed),
                                    other => {
                                        eprintln!("exchange failed: {other:?}");
                                        failed.fetch_add(1, Ordering::Relaxed)
                                    }
                                };
                            }
                        });
                    }
                })
            })
        })
    };
    let progress = |what: &str| {
        let from = done.load(Ordering::Relaxed);
        wait::until(what, Duration::from_secs(20), || {
            let now = done.load(Ordering::Relaxed);
            if now >= from + 300 {
                Ok(())
            } else {
                Err(now - from)
            }
        });
    };
    progress("churn with key 1");
    // 1. Key 2 honoured everywhere (the minting instance last).
    cluster.rotate(&[KEY_1, KEY_2], &[1, 0]);
    progress("churn with key 2 honoured");
    // 2. Key 2 mints: the SYN side first, so for a moment it mints what
    //    only step 1 taught the other to honour.
    cluster.rotate(&[KEY_2, KEY_1], &[0]);
    progress("churn with key 2 minting on one instance");
    cluster.rotate(&[KEY_2, KEY_1], &[1]);
    // 3. Key 1 dropped everywhere (cookies it minted stay good 192 s).
    cluster.rotate(&[KEY_2], &[0, 1]);
    progress("churn with key 1 dropped");
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("the churn thread");

    let (first, second) = (&cluster.instances[0], &cluster.instances[1]);
    let completed = done.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed handshakes over {completed} ({family:?})"
    );
    // Instance 1 answered every SYN with a cookie, instance 2 completed
    // every handshake from one (as their counters publish).
    wait::until(
        "cookies minted on 1 and honoured on 2 for every exchange",
        Duration::from_secs(5),
        || {
            let minted = first.tcp(|t| t.syn_cookies_sent);
            let honoured = second.tcp(|t| t.syn_cookies_validated);
            if minted >= completed && honoured >= completed {
                Ok(())
            } else {
                Err((minted, honoured, completed))
            }
        },
    );
    assert_eq!(
        second.tcp(|t| t.syn_cookies_sent),
        0,
        "no SYN reached instance 2"
    );
    assert_eq!(second.tcp(|t| t.unknown_flow_resets), 0);

    // And the test can fail: a key instance 2 never had, minted by
    // instance 1, is reset by instance 2.
    write_keys(&cluster.key_file, &[KEY_3]);
    cluster.instances[0].reload();
    let vip = cluster.vip();
    let result = cluster
        .clients
        .enter(|| client::exchange(vip, 64, 64, false));
    assert!(result.is_err(), "a cookie from an unknown key: {result:?}");
    wait::until(
        "instance 2 counted the reset",
        Duration::from_secs(5),
        || match cluster.instances[1].tcp(|t| t.unknown_flow_resets) {
            0 => Err(0),
            resets => Ok(resets),
        },
    );
}

/// Routes the VIP through instance `k` (1-based) alone.
fn pin_route(cluster: &Cluster, k: usize) {
    let via = cluster.instances[k - 1].addr.to_string();
    cluster.router_ip(&["route", "replace", &cluster.vip_route(), "via", &via]);
}

/// The backend (its index) that serves a connection from `source`.
fn backend_for(vip: SocketAddr, source: IpAddr) -> std::io::Result<u8> {
    use nix::sys::socket::{
        bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    use std::io::Read;
    let family = match vip {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(SocketAddr::new(source, 0)),
    )?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(vip),
    )?;
    let mut stream = std::net::TcpStream::from(fd);
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut index = [0u8; 1];
    stream.read_exact(&mut index)?;
    Ok(index[0])
}

/// Maglev tables are the same in every process with the same pool: a
/// client reaches the same backend whichever instance its flow lands on.
#[test]
fn maglev_sends_a_client_to_the_same_backend_from_every_instance() {
    if !privileged("cluster maglev") {
        return;
    }
    let options = Options {
        instances: 2,
        balance: "maglev",
        processes: true,
        ..Options::default()
    };
    let cluster = Cluster::new(73, Family::V4, options);
    let _backends = cluster.backends_behaving(backend::Behaviour::Identify);
    // Sixteen client addresses: with four backends, two independent
    // tables would agree on all of them once in 4^16.
    let sources: Vec<IpAddr> = (1..=16)
        .map(|host| cluster.at(CLIENT_SUBNET, host))
        .collect();
    for source in &sources[1..] {
        cluster
            .clients
            .exec(&["ip", "addr", "add", &format!("{source}/32"), "dev", "lo"]);
    }
    let vip = cluster.vip();
    let mut chosen = Vec::new();
    for k in [1, 2] {
        pin_route(&cluster, k);
        let picks: Vec<u8> = cluster.clients.enter(|| {
            sources
                .iter()
                .map(|&source| {
                    wait::until(
                        &format!("{source} through instance {k}"),
                        Duration::from_secs(10),
                        || backend_for(vip, source),
                    )
                })
                .collect()
        });
        chosen.push(picks);
    }
    assert_eq!(
        chosen[0], chosen[1],
        "backend per client address, instance 1 then 2"
    );
    let mut distinct = chosen[0].clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 1,
        "the table spreads clients: {:?}",
        chosen[0]
    );
}

/// Replaces the router's route to the VIP by a plain multipath route over
/// `members` (1-based): hash-threshold ECMP, Linux's default.
fn set_multipath(cluster: &Cluster, members: &[usize]) {
    let route = cluster.vip_route();
    let vias: Vec<String> = members
        .iter()
        .map(|&k| cluster.instances[k - 1].addr.to_string())
        .collect();
    let mut args = vec!["route", "replace", &route];
    for via in &vias {
        args.extend(["nexthop", "via", via]);
    }
    cluster.router_ip(&args);
}

/// With hash-threshold ECMP a change moves flows of every instance, not
/// only the removed one's: each moved flow is reset at once and counted,
/// and none is left hanging.
#[test]
fn under_hash_threshold_ecmp_every_moved_flow_is_reset_at_once_and_none_hangs() {
    if !privileged("cluster hash-threshold") {
        return;
    }
    let (cluster, _backends) = echo_cluster(74, Family::V4, Options::default());
    set_multipath(&cluster, &[1, 2, 3]);
    let mut streams = streams(&cluster, 50);
    let open = settle(&cluster, 50);
    let resets = || -> u64 {
        cluster
            .instances
            .iter()
            .map(|i| i.tcp(|t| t.unknown_flow_resets))
            .sum()
    };
    let resets_before = resets();

    set_multipath(&cluster, &[1, 2]);
    // Each stream either ends (reset) or goes on flowing; none is stuck.
    await_streams("every stream ended or flowed on", &streams, Ended::Done);
    let ended = streams.iter().filter(|s| s.ended()).count();
    eprintln!(
        "hash-threshold, instance 3 taken out: {ended} of 50 streams reset (instance 3 held {})",
        open[2]
    );
    assert!(ended >= open[2], "at least instance 3's streams moved");
    wait::until("each moved flow counted", Duration::from_secs(5), || {
        let counted = resets() - resets_before;
        if counted >= ended as u64 {
            Ok(())
        } else {
            Err(counted)
        }
    });
    for stream in streams.drain(..) {
        let ended = stream.ended();
        let result = stream.finish();
        assert_eq!(ended, result.is_err(), "{result:?}");
    }
}

/// With forwarding, hash-threshold ECMP moves flows but loses none: a
/// segment that reaches an instance that does not know its flow goes on to
/// the owner its TSecr names. Instance 3 taken out of the route keeps
/// serving its flows through the others; put back, it takes new ones.
#[test]
fn with_forwarding_no_flow_is_lost_when_an_instance_leaves_or_returns() {
    if !privileged("cluster forwarding") {
        return;
    }
    for (family, queues) in [(Family::V4, 1), (Family::V6, 1), (Family::V4, 2)] {
        forwarding_keeps_every_flow(family, queues);
    }
}

fn forwarding_keeps_every_flow(family: Family, queues: u32) {
    let options = Options {
        forwarding: true,
        queues,
        ..Options::default()
    };
    let (cluster, _backends) = echo_cluster(75, family, options);
    set_multipath(&cluster, &[1, 2, 3]);
    let mut streams = streams(&cluster, 50);
    let open = settle(&cluster, 50);
    let counter = |f: fn(&lastack::tcp::Stats) -> u64| -> u64 {
        cluster.instances.iter().map(|i| i.tcp(f)).sum()
    };
    let forwarded = || -> u64 {
        cluster
            .instances
            .iter()
            .map(|i| i.stats().iter().map(|s| s.forwarded).sum::<u64>())
            .sum()
    };

    // Out: every stream goes on, through forwarding where its flow moved.
    set_multipath(&cluster, &[1, 2]);
    await_streams("every stream flowed on", &streams, Ended::Behind);
    assert!(
        streams.iter().all(|s| !s.ended()),
        "a stream ended ({family:?})"
    );
    assert!(forwarded() > 0, "segments were forwarded");
    assert_eq!(cluster.churn(600), 0, "churn on the two that stay");
    assert_eq!(
        open[2],
        cluster.instances[2].established(),
        "instance 3, out of the route, still holds its streams"
    );

    // Back: nothing lost either.
    set_multipath(&cluster, &[1, 2, 3]);
    await_streams("every stream flowed on", &streams, Ended::Behind);
    assert_eq!(cluster.churn(600), 0, "churn with instance 3 back");
    let relayed: u64 = cluster
        .instances
        .iter()
        .map(|i| i.stats().iter().map(|s| s.segment_relay_taken).sum::<u64>())
        .sum();
    eprintln!(
        "{family:?}, {queues} queue(s): forwarding kept 50 of 50 streams over an instance leaving and returning ({} segments forwarded, {relayed} taken from another shard, {} resets of unknown flows)",
        forwarded(),
        counter(|t| t.unknown_flow_resets)
    );
    if queues > 1 {
        assert!(
            relayed > 0,
            "the outer header's queue was the flow's every time"
        );
    }
    assert_eq!(counter(|t| t.unknown_flow_resets), 0);
    for stream in streams.drain(..) {
        stream.finish().expect("every stream ends cleanly");
    }
}
