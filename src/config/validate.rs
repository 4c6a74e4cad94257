//! Semantic checks of a parsed config. Each finds every problem it can (not
//! only the first) and says, for each, what was expected.

use std::collections::HashMap;
use std::fmt::Display;

use super::{Config, Issue, KeyPath, Service};

/// Largest number of rx queues the XDP program's socket map holds
/// (`MAX_QUEUES` in `bpf/steer.bpf.c`).
pub const MAX_QUEUES: u32 = 64;
/// Largest number of listeners the XDP program's map holds (`MAX_LISTENERS`).
pub const MAX_LISTENERS: usize = 1024;

/// Returns every semantic problem in `config`; empty means valid.
pub fn validate(config: &Config) -> Vec<Issue> {
    let mut v = Validator::default();
    v.interfaces(config);
    v.listeners(config);
    v.pools(config);
    v.tcp(config);
    v.drain(config);
    v.logging(config);
    v.cluster(config);
    v.issues
}

#[derive(Default)]
struct Validator {
    issues: Vec<Issue>,
}

fn root(key: &str) -> KeyPath {
    KeyPath::default().key(key)
}

impl Validator {
    fn issue(&mut self, path: KeyPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            message: message.into(),
        });
    }

    /// `value` must lie in `lo..=hi`.
    fn range<T: PartialOrd + Display>(&mut self, path: KeyPath, value: T, lo: T, hi: T) {
        if value < lo || value > hi {
            self.issue(
                path,
                format!("expected a value from {lo} to {hi}, found {value}"),
            );
        }
    }

    /// `name` must be a non-empty identifier of letters, digits, `-`, `_`.
    fn name(&mut self, path: KeyPath, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.issue(
                path,
                format!("expected a name of 1 to 64 letters, digits, '-' or '_', found {name:?}"),
            );
        }
    }

    /// Each element of `items` (named by `key`) must be unique.
    fn unique<'a, K: Eq + std::hash::Hash + Display + 'a>(
        &mut self,
        table: &str,
        field: &str,
        what: &str,
        keys: impl Iterator<Item = K>,
    ) {
        let mut first: HashMap<K, usize> = HashMap::new();
        for (index, key) in keys.enumerate() {
            if let Some(&earlier) = first.get(&key) {
                let path = root(table).index(index).key(field);
                let message = format!("duplicate {what} `{key}`: {table}[{earlier}] has it too");
                self.issue(path, message);
            } else {
                first.insert(key, index);
            }
        }
    }

    fn interfaces(&mut self, config: &Config) {
        for (i, interface) in config.interfaces.iter().enumerate() {
            let path = root("interfaces").index(i);
            let name = &interface.name;
            if name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c == '/' || c.is_whitespace())
            {
                self.issue(
                    path.key("name"),
                    format!("expected an interface name of 1 to 15 bytes without '/' or spaces, found {name:?}"),
                );
            }
            self.range(path.key("queues"), interface.queues, 1, MAX_QUEUES);
            if !interface.cores.is_empty() && interface.cores.len() != interface.queues as usize {
                self.issue(
                    path.key("cores"),
                    format!(
                        "expected one core per queue ({} cores) or none, found {}",
                        interface.queues,
                        interface.cores.len()
                    ),
                );
            }
            let frames = interface.umem_frames;
            if !frames.is_power_of_two() || !(64..=1 << 20).contains(&frames) {
                self.issue(
                    path.key("umem_frames"),
                    format!("expected a power of two from 64 to 1048576, found {frames}"),
                );
            }
            self.duration(path.key("busy_poll"), *interface.busy_poll, 0, 10);
            if ![2048, 4096].contains(&interface.frame_size) {
                self.issue(
                    path.key("frame_size"),
                    format!("expected 2048 or 4096, found {}", interface.frame_size),
                );
            }
        }
        self.unique(
            "interfaces",
            "name",
            "interface",
            config.interfaces.iter().map(|i| &i.name),
        );
    }

    fn listeners(&mut self, config: &Config) {
        if config.listeners.is_empty() {
            self.issue(root("listeners"), "expected at least one listener");
        }
        if config.listeners.len() > MAX_LISTENERS {
            self.issue(
                root("listeners"),
                format!(
                    "expected at most {MAX_LISTENERS} listeners, found {}",
                    config.listeners.len()
                ),
            );
        }
        let pool_names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        for (i, listener) in config.listeners.iter().enumerate() {
            let path = root("listeners").index(i);
            self.name(path.key("name"), &listener.name);
            if let Some(problem) = not_a_unicast_address(listener.vip.0) {
                self.issue(
                    path.key("vip"),
                    format!("expected a unicast IPv4 or IPv6 address, found {problem}"),
                );
            }
            if listener.port == 0 {
                self.issue(path.key("port"), "expected a port from 1 to 65535, found 0");
            }
            match (&listener.pool, listener.service) {
                (None, Service::Proxy) => self.issue(
                    path.key("pool"),
                    "expected the name of a [[pools]] entry (required when service = \"proxy\")",
                ),
                (Some(pool), _) if !pool_names.contains(&pool.as_str()) => {
                    let known = if pool_names.is_empty() {
                        "there are no [[pools]]".to_owned()
                    } else {
                        format!("expected one of: {}", pool_names.join(", "))
                    };
                    self.issue(path.key("pool"), format!("unknown pool `{pool}`; {known}"));
                }
                _ => {}
            }
            self.range(
                path.key("max_connections"),
                listener.max_connections,
                1,
                10_000_000,
            );
            self.duration(path.key("close_grace"), *listener.close_grace, 0, 3_600_000);
            self.duration(
                path.key("idle_timeout"),
                *listener.idle_timeout,
                1,
                7 * 86_400_000,
            );
            self.duration(
                path.key("fin_timeout"),
                *listener.fin_timeout,
                1,
                86_400_000,
            );
        }
        self.unique(
            "listeners",
            "name",
            "listener name",
            config.listeners.iter().map(|l| &l.name),
        );
        self.unique(
            "listeners",
            "port",
            "listener",
            config
                .listeners
                .iter()
                .map(|l| format!("{}:{}", l.vip, l.port)),
        );
    }

    /// A duration from `lo_ms` to `hi_ms` milliseconds.
    fn duration(&mut self, path: KeyPath, value: std::time::Duration, lo_ms: u64, hi_ms: u64) {
        let lo = std::time::Duration::from_millis(lo_ms);
        let hi = std::time::Duration::from_millis(hi_ms);
        if value < lo || value > hi {
            self.issue(
                path,
                format!(
                    "expected a duration from {} to {}, found {}",
                    humantime::format_duration(lo),
                    humantime::format_duration(hi),
                    humantime::format_duration(value)
                ),
            );
        }
    }

    fn pools(&mut self, config: &Config) {
        let shards: usize = config.interfaces.iter().map(|i| i.queues as usize).sum();
        for (i, pool) in config.pools.iter().enumerate() {
            let path = root("pools").index(i);
            self.name(path.key("name"), &pool.name);
            self.range(path.key("panic_threshold"), pool.panic_threshold, 0, 100);
            if pool.source_ports.len() < 64 * shards.max(1) {
                self.issue(
                    path.key("source_ports"),
                    format!(
                        "expected at least 64 ports per shard ({} for {} shard(s)), found {} ({})",
                        64 * shards.max(1),
                        shards.max(1),
                        pool.source_ports.len(),
                        pool.source_ports
                    ),
                );
            }
            if pool.backends.is_empty() {
                self.issue(
                    path.key("backends"),
                    format!(
                        "pool `{}` is empty: expected at least one backend",
                        pool.name
                    ),
                );
            }
            for (b, backend) in pool.backends.iter().enumerate() {
                let backend_path = path.key("backends").index(b);
                if backend.address.port() == 0 {
                    self.issue(
                        backend_path.key("address"),
                        "expected a port from 1 to 65535, found 0",
                    );
                }
                if let Some(problem) = not_a_unicast_address(backend.address.ip()) {
                    self.issue(
                        backend_path.key("address"),
                        format!("expected a backend's unicast address, found {problem}"),
                    );
                }
                self.range(backend_path.key("weight"), backend.weight, 1, 1000);
            }
            self.source_families(&path, pool);
            let mut seen: HashMap<_, usize> = HashMap::new();
            for (b, backend) in pool.backends.iter().enumerate() {
                if let Some(first) = seen.insert(backend.address, b) {
                    self.issue(
                        path.key("backends").index(b).key("address"),
                        format!(
                            "duplicate backend `{}`: backends[{first}] has it too",
                            backend.address
                        ),
                    );
                }
            }
            self.range(path.key("retries"), pool.retries, 0, 16);
            self.duration(
                path.key("connect_timeout"),
                *pool.connect_timeout,
                1,
                600_000,
            );
            let health = &pool.health_check;
            let health_path = path.key("health_check");
            self.range(health_path.key("rise"), health.rise, 1, 100);
            self.range(health_path.key("fall"), health.fall, 1, 100);
            self.duration(health_path.key("interval"), *health.interval, 10, 3_600_000);
            self.duration(health_path.key("timeout"), *health.timeout, 1, 600_000);
            if health.timeout > health.interval {
                self.issue(
                    health_path.key("timeout"),
                    format!(
                        "expected at most the interval ({}), found {}",
                        health.interval, health.timeout
                    ),
                );
            }
        }
        self.unique(
            "pools",
            "name",
            "pool name",
            config.pools.iter().map(|p| &p.name),
        );
    }

    /// A backend connection binds a source address of its backend's
    /// family: with `source_addresses` set, every backend family needs one,
    /// and an address of a family no backend has could never be used.
    fn source_families(&mut self, path: &KeyPath, pool: &super::schema::Pool) {
        if pool.source_addresses.is_empty() {
            return;
        }
        let family = |ip: &std::net::IpAddr| if ip.is_ipv6() { "IPv6" } else { "IPv4" };
        for (s, source) in pool.source_addresses.iter().enumerate() {
            let source_path = path.key("source_addresses").index(s);
            if let Some(problem) = not_a_unicast_address(source.0) {
                self.issue(
                    source_path,
                    format!("expected a unicast address configured on this host, found {problem}"),
                );
                continue;
            }
            let used = pool
                .backends
                .iter()
                .any(|b| b.address.is_ipv6() == source.0.is_ipv6());
            if !used && !pool.backends.is_empty() {
                self.issue(
                    source_path,
                    format!(
                        "{} is an {} source address, but the pool has no {} backend \
                         (a backend connection uses a source address of its backend's family)",
                        source.0,
                        family(&source.0),
                        family(&source.0)
                    ),
                );
            }
        }
        for (b, backend) in pool.backends.iter().enumerate() {
            let has_source = pool
                .source_addresses
                .iter()
                .any(|s| s.0.is_ipv6() == backend.address.is_ipv6());
            if !has_source {
                let wanted = family(&backend.address.ip());
                self.issue(
                    path.key("backends").index(b).key("address"),
                    format!(
                        "{} is an {wanted} backend, but source_addresses has no {wanted} \
                         address: add one, or remove source_addresses to let the kernel choose",
                        backend.address
                    ),
                );
            }
        }
    }

    fn drain(&mut self, config: &Config) {
        let path = root("drain");
        self.duration(path.key("timeout"), *config.drain.timeout, 1_000, 3_600_000);
        self.duration(
            path.key("close_grace"),
            *config.drain.close_grace,
            0,
            60_000,
        );
    }

    fn tcp(&mut self, config: &Config) {
        let tcp = &config.tcp;
        let path = root("tcp");
        self.range(path.key("syn_backlog"), tcp.syn_backlog, 16, 1 << 20);
        self.range(path.key("accept_backlog"), tcp.accept_backlog, 16, 1 << 20);
        self.range(path.key("mss"), tcp.mss, 536, 8960);
        for interface in &config.interfaces {
            let room = interface.frame_size as usize;
            if usize::from(tcp.mss) + super::FRAME_HEADER_ROOM > room {
                self.issue(
                    path.key("mss"),
                    format!(
                        "expected at most {} for interface {}'s {room}-byte frames (a segment's headers take {}), found {}",
                        room - super::FRAME_HEADER_ROOM,
                        interface.name,
                        super::FRAME_HEADER_ROOM,
                        tcp.mss
                    ),
                );
            }
        }
        self.duration(path.key("min_rto"), *tcp.min_rto, 1, 60_000);
        self.duration(path.key("max_rto"), *tcp.max_rto, 1, 600_000);
        self.duration(path.key("initial_rto"), *tcp.initial_rto, 1, 60_000);
        if tcp.min_rto > tcp.max_rto {
            self.issue(
                path.key("min_rto"),
                format!(
                    "expected at most max_rto ({}), found {}",
                    tcp.max_rto, tcp.min_rto
                ),
            );
        }
        if tcp.initial_rto < tcp.min_rto || tcp.initial_rto > tcp.max_rto {
            self.issue(
                path.key("initial_rto"),
                format!(
                    "expected a value between min_rto ({}) and max_rto ({}), found {}",
                    tcp.min_rto, tcp.max_rto, tcp.initial_rto
                ),
            );
        }
        self.range(
            path.key("max_retransmissions"),
            tcp.max_retransmissions,
            1,
            30,
        );
        self.range(path.key("synack_retries"), tcp.synack_retries, 0, 10);
        self.range(path.key("initial_window"), tcp.initial_window, 1, 64);
        self.duration(path.key("time_wait"), *tcp.time_wait, 1000, 240_000);
        self.range(path.key("max_time_wait"), tcp.max_time_wait, 0, 1 << 24);
        self.duration(
            path.key("fin_wait_2_timeout"),
            *tcp.fin_wait_2_timeout,
            1000,
            600_000,
        );
        self.duration(path.key("delayed_ack"), *tcp.delayed_ack, 1, 500);
        self.range(path.key("send_buffer"), tcp.send_buffer, 4096, 64 << 20);
        self.range(path.key("recv_buffer"), tcp.recv_buffer, 4096, 64 << 20);
        self.range(
            path.key("buffer_budget"),
            tcp.buffer_budget,
            1 << 20,
            1 << 40,
        );
        if let Some(keepalive) = tcp.keepalive {
            self.duration(path.key("keepalive"), *keepalive, 1000, 7 * 86_400_000);
        }
    }

    /// The key file must hold keys: read it now, so that `lastack check`
    /// and a reload find a bad one before it matters.
    fn cluster(&mut self, config: &Config) {
        let cluster = &config.cluster;
        let file = &cluster.key_file;
        if !file.is_empty() {
            if let Err(e) = super::read_cluster_keys(std::path::Path::new(file)) {
                self.issue(root("cluster").key("key_file"), e);
            }
        }
        let max = crate::tcp::keys::MAX_INSTANCES;
        if let Some(id) = cluster.instance {
            self.range(root("cluster").key("instance"), id, 0, max - 1);
        }
        if cluster.peers.is_empty() {
            return;
        }
        if cluster.instance.is_none() {
            self.issue(
                root("cluster").key("peers"),
                "expected `instance` (this instance's id, 0 to 15) with peers",
            );
        }
        let Some(own) = cluster.address.as_deref().copied() else {
            self.issue(
                root("cluster").key("peers"),
                "expected `address` (this instance's own address, which peers forward to) with peers",
            );
            return;
        };
        if let Some(why) = not_a_unicast_address(own) {
            self.issue(
                root("cluster").key("address"),
                format!("expected a unicast address, found {why}"),
            );
        }
        let mut seen = Vec::new();
        for (i, peer) in cluster.peers.iter().enumerate() {
            let path = root("cluster").key("peers").index(i);
            self.range(path.key("id"), peer.id, 0, max - 1);
            if Some(peer.id) == cluster.instance {
                self.issue(
                    path.key("id"),
                    format!(
                        "expected another instance's id, found this instance's own ({})",
                        peer.id
                    ),
                );
            } else if seen.contains(&peer.id) {
                self.issue(
                    path.key("id"),
                    format!("expected a unique id, found {} twice", peer.id),
                );
            }
            seen.push(peer.id);
            if peer.address.is_ipv4() != own.is_ipv4() {
                self.issue(
                    path.key("address"),
                    format!(
                        "expected an address of the family of `address` ({own}), found {}",
                        *peer.address
                    ),
                );
            }
        }
    }

    fn logging(&mut self, config: &Config) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.logging.level) {
            self.issue(
                root("logging").key("level"),
                format!("expected a filter such as \"info\" or \"lastack=debug,warn\": {e}"),
            );
        }
    }
}

/// Why `ip` cannot be a VIP, a backend or a source address: unspecified,
/// multicast, IPv4 broadcast, or IPv6 link-local (which needs a scope the
/// config has no way to give). `None` for a usable unicast address.
fn not_a_unicast_address(ip: std::net::IpAddr) -> Option<String> {
    use std::net::IpAddr;
    let problem = match ip {
        ip if ip.is_unspecified() => "the unspecified address",
        ip if ip.is_multicast() => "a multicast address",
        IpAddr::V4(v4) if v4.is_broadcast() => "the broadcast address",
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            "a link-local address (fe80::/10 needs an interface scope)"
        }
        _ => return None,
    };
    Some(format!("{ip} ({problem})"))
}
