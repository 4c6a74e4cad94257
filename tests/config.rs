//! The config: the shipped files validate, every validation rule fires with
//! the file, line, column, key path and what was expected, the CLI's exit
//! status follows, and the generated reference matches the code.

use std::path::Path;
use std::process::Command;

use lastack::config::{self, ClosePolicy, ConfigErrors, ProxyProtocol};

/// A small valid config that the cases below break one key at a time.
const BASE: &str = r#"
[[interfaces]]
name = "eth0"
queues = 2

[[listeners]]
name = "web"
vip = "10.0.0.10"
port = 80
pool = "web"

[[pools]]
name = "web"

[[pools.backends]]
address = "10.0.1.1:8080"
weight = 2

[tcp]
min_rto = "200ms"
"#;

fn parse(source: &str) -> Result<config::Config, ConfigErrors> {
    config::parse(source, Path::new("test.toml"))
}

/// `BASE` with `from` replaced by `to` (which must occur exactly once).
fn base_with(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} must occur once in BASE"
    );
    BASE.replace(from, to)
}

/// The 1-based line of the first occurrence of `needle` in `source`.
fn line_of(source: &str, needle: &str) -> usize {
    source[..source.find(needle).expect("needle in source")]
        .matches('\n')
        .count()
        + 1
}

#[test]
fn shipped_configs_validate() {
    let example = config::load(Path::new("config/example.toml")).unwrap();
    assert_eq!(example.listeners.len(), 4);
    assert!(example.listeners[2].vip.is_ipv6(), "a dual-stack example");
    assert!(example.pools[1].backends[2].address.is_ipv6());
    assert_eq!(example.listeners[0].close_policy, ClosePolicy::ClientFirst);
    assert_eq!(example.pools[1].proxy_protocol, ProxyProtocol::V2);
    assert_eq!(example.interfaces[0].cores, [2, 3, 4, 5]);
    assert_eq!(*example.tcp.min_rto, std::time::Duration::from_millis(200));
    let demo = config::load(Path::new("config/demo.toml")).unwrap();
    assert_eq!(demo.listeners[1].close_policy, ClosePolicy::Immediate);
    assert!(parse(BASE).is_ok());
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = parse(BASE).unwrap();
    assert_eq!(config.tcp.syn_backlog, 4096);
    assert_eq!(*config.tcp.time_wait, std::time::Duration::from_secs(60));
    assert_eq!(config.listeners[0].close_policy, ClosePolicy::ClientFirst);
    assert_eq!(config.pools[0].health_check.fall, 3);
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9190");
}

/// Each case: (what to replace, replacement, key path in the error, text the
/// message must contain, text on the line the error points at).
const SEMANTIC_CASES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "port = 80",
        "port = 0",
        "listeners[0].port",
        "expected a port from 1 to 65535",
        "port = 0",
    ),
    (
        "pool = \"web\"",
        "pool = \"api\"",
        "listeners[0].pool",
        "unknown pool `api`; expected one of: web",
        "pool = \"api\"",
    ),
    (
        "pool = \"web\"\n",
        "\n",
        "listeners[0].pool",
        "expected the name of a [[pools]] entry",
        "[[listeners]]",
    ),
    (
        "vip = \"10.0.0.10\"",
        "vip = \"224.0.0.1\"",
        "listeners[0].vip",
        "expected a unicast IPv4 or IPv6 address, found 224.0.0.1 (a multicast address)",
        "224.0.0.1",
    ),
    (
        "vip = \"10.0.0.10\"",
        "vip = \"fe80::10\"",
        "listeners[0].vip",
        "found fe80::10 (a link-local address",
        "fe80::10",
    ),
    (
        "vip = \"10.0.0.10\"",
        "vip = \"ff02::1\"",
        "listeners[0].vip",
        "found ff02::1 (a multicast address)",
        "ff02::1",
    ),
    // A backend connection binds a source address of its backend's family.
    (
        "name = \"web\"\n\n[[pools.backends]]",
        "name = \"web\"\nsource_addresses = [\"10.0.1.100\"]\n\n[[pools.backends]]\naddress = \"[2001:db8::21]:8443\"\n\n[[pools.backends]]",
        "pools[0].backends[0].address",
        "[2001:db8::21]:8443 is an IPv6 backend, but source_addresses has no IPv6 address",
        "[2001:db8::21]:8443",
    ),
    (
        "name = \"web\"\n\n[[pools.backends]]",
        "name = \"web\"\nsource_addresses = [\"10.0.1.100\", \"2001:db8::100\"]\n\n[[pools.backends]]",
        "pools[0].source_addresses[1]",
        "2001:db8::100 is an IPv6 source address, but the pool has no IPv6 backend",
        "2001:db8::100",
    ),
    (
        "address = \"10.0.1.1:8080\"",
        "address = \"[::]:8080\"",
        "pools[0].backends[0].address",
        "expected a backend's unicast address, found :: (the unspecified address)",
        "[::]:8080",
    ),
    (
        "name = \"web\"\nvip",
        "name = \"web site\"\nvip",
        "listeners[0].name",
        "expected a name of 1 to 64 letters",
        "web site",
    ),
    (
        "weight = 2",
        "weight = 0",
        "pools[0].backends[0].weight",
        "expected a value from 1 to 1000, found 0",
        "weight = 0",
    ),
    (
        "address = \"10.0.1.1:8080\"",
        "address = \"10.0.1.1:0\"",
        "pools[0].backends[0].address",
        "expected a port",
        "10.0.1.1:0",
    ),
    (
        "[[pools.backends]]\naddress = \"10.0.1.1:8080\"\nweight = 2\n",
        "backends = []\n",
        "pools[0].backends",
        "pool `web` is empty: expected at least one backend",
        "backends = []",
    ),
    (
        "queues = 2",
        "queues = 0",
        "interfaces[0].queues",
        "expected a value from 1 to 64, found 0",
        "queues = 0",
    ),
    (
        "queues = 2",
        "queues = 2\ncores = [1]",
        "interfaces[0].cores",
        "expected one core per queue",
        "cores = [1]",
    ),
    (
        "queues = 2",
        "queues = 2\numem_frames = 1000",
        "interfaces[0].umem_frames",
        "expected a power of two",
        "umem_frames",
    ),
    (
        "queues = 2",
        "queues = 2\nframe_size = 1500",
        "interfaces[0].frame_size",
        "expected 2048 or 4096",
        "frame_size",
    ),
    (
        "name = \"eth0\"",
        "name = \"a-very-long-ifname\"",
        "interfaces[0].name",
        "1 to 15 bytes",
        "a-very-long-ifname",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\nsyn_backlog = 8",
        "tcp.syn_backlog",
        "expected a value from 16 to 1048576, found 8",
        "syn_backlog = 8",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\naccept_backlog = 2000000",
        "tcp.accept_backlog",
        "found 2000000",
        "accept_backlog",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\nmax_rto = \"100ms\"",
        "tcp.min_rto",
        "expected at most max_rto (100ms), found 200ms",
        "min_rto",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\nmss = 100",
        "tcp.mss",
        "expected a value from 536 to 8960",
        "mss = 100",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\nmss = 8000",
        "tcp.mss",
        "frames (a segment's headers take 98), found 8000",
        "mss = 8000",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\ntime_wait = \"10m\"",
        "tcp.time_wait",
        "expected a duration from 1s to 4m",
        "time_wait",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\ndelayed_ack = \"1s\"",
        "tcp.delayed_ack",
        "500ms",
        "delayed_ack",
    ),
    (
        "weight = 2",
        "weight = 2\n[pools.health_check]\ninterval = \"1s\"\ntimeout = \"2s\"",
        "pools[0].health_check.timeout",
        "expected at most the interval",
        "timeout = \"2s\"",
    ),
    (
        "weight = 2",
        "weight = 2\n[pools.health_check]\nrise = 0",
        "pools[0].health_check.rise",
        "from 1 to 100",
        "rise = 0",
    ),
    (
        "min_rto = \"200ms\"",
        "min_rto = \"200ms\"\n[logging]\nlevel = \"lastack=loud\"",
        "logging.level",
        "expected a filter",
        "level =",
    ),
];

#[test]
fn each_semantic_rule_names_line_key_and_expectation() {
    for &(from, to, key, message, line_text) in SEMANTIC_CASES {
        let source = base_with(from, to);
        let errors = parse(&source).expect_err(key).0;
        let error = errors
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no error for {key}: {errors:#?}"));
        assert!(
            error.message.contains(message),
            "{key}: {:?} lacks {message:?}",
            error.message
        );
        let (line, _) = error
            .position
            .unwrap_or_else(|| panic!("{key}: no position"));
        assert_eq!(line, line_of(&source, line_text), "{key}: wrong line");
        let shown = error.to_string();
        assert!(shown.starts_with(&format!("test.toml:{line}:")), "{shown}");
    }
}

#[test]
fn duplicates_point_at_the_second_one() {
    let second =
        "\n[[listeners]]\nname = \"web\"\nvip = \"10.0.0.10\"\nport = 80\npool = \"web\"\n\
                  \n[[pools]]\nname = \"web\"\nbackends = [{ address = \"10.0.1.2:80\" }]\n";
    let source = format!("{BASE}{second}");
    let errors = parse(&source).unwrap_err().0;
    let keys: Vec<_> = errors.iter().filter_map(|e| e.key.clone()).collect();
    assert!(keys.contains(&"listeners[1].name".to_owned()), "{keys:?}");
    assert!(keys.contains(&"listeners[1].port".to_owned()), "{keys:?}");
    assert!(keys.contains(&"pools[1].name".to_owned()), "{keys:?}");
    let listener = errors
        .iter()
        .find(|e| e.key.as_deref() == Some("listeners[1].port"))
        .unwrap();
    assert!(listener
        .message
        .contains("duplicate listener `10.0.0.10:80`: listeners[0]"));
    let base_lines = BASE.matches('\n').count();
    assert!(
        listener.position.unwrap().0 > base_lines,
        "points at the second listener"
    );
    // Errors come in file order.
    let positions: Vec<_> = errors.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "{positions:?}");
}

#[test]
fn type_errors_and_unknown_keys_name_line_and_key() {
    let cases = [
        (
            "port = 80",
            "prot = 80",
            "listeners[0].prot",
            "unknown field `prot`",
        ),
        (
            "vip = \"10.0.0.10\"",
            "vip = \"10.0.0\"",
            "listeners[0].vip",
            "expected an IPv4 or IPv6 address such as \"10.0.0.10\" or \"2001:db8::10\"",
        ),
        (
            "address = \"10.0.1.1:8080\"",
            "address = \"2001:db8::21:8080\"",
            "pools[0].backends[0].address",
            "or \"[2001:db8::21]:8443\", found `2001:db8::21:8080`",
        ),
        (
            "vip = \"10.0.0.10\"",
            "vip = \"10.0.0.300\"",
            "listeners[0].vip",
            "found `10.0.0.300`",
        ),
        ("port = 80", "port = 70000", "listeners[0].port", "70000"),
        (
            "min_rto = \"200ms\"",
            "min_rto = \"soon\"",
            "tcp.min_rto",
            "expected a duration with units",
        ),
        (
            "min_rto = \"200ms\"",
            "min_rto = \"200ms\"\nsyn_cookie = \"auto\"",
            "tcp.syn_cookie",
            "unknown field",
        ),
        (
            "queues = 2",
            "queues = 2\nxdp_mode = \"fast\"",
            "interfaces[0].xdp_mode",
            "unknown variant `fast`",
        ),
    ];
    for (from, to, key, message) in cases {
        let source = base_with(from, to);
        let errors = parse(&source).expect_err(key).0;
        assert_eq!(errors.len(), 1);
        let error = &errors[0];
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        assert!(
            error.message.contains(message),
            "{key}: {:?}",
            error.message
        );
        let wrong_line = to.lines().last().unwrap();
        assert_eq!(
            error.position.unwrap().0,
            line_of(&source, wrong_line),
            "{error}"
        );
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let source = base_with("[[pools]]", "[[pools]");
    let error = &parse(&source).unwrap_err().0[0];
    assert_eq!(error.position, Some((line_of(&source, "[[pools]"), 9)));
    assert!(
        error.to_string().contains("[[pools]\n"),
        "shows the line: {error}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let error = config::load(Path::new("config/does-not-exist.toml")).unwrap_err();
    assert!(error
        .to_string()
        .starts_with("config/does-not-exist.toml: cannot read"));
}

fn lastack(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lastack"))
        .args(args)
        .output()
        .expect("run lastack")
}

#[test]
fn check_command_exit_status_and_messages() {
    let ok = lastack(&["check", "-c", "config/example.toml"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("config/example.toml: OK"));

    let dir = std::env::temp_dir().join(format!("lastack-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let typo = base_with("port = 80", "prot = 80");
    let bad_vip = base_with("vip = \"10.0.0.10\"", "vip = \"10.0.0\"");
    let duplicate = format!(
        "{BASE}[[listeners]]\nname = \"web\"\nvip = \"10.0.0.10\"\nport = 80\npool = \"web\"\n"
    );
    let duplicate_line = duplicate[..duplicate.rfind("name = \"web\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let cases = [
        (
            "typo.toml",
            format!("typo.toml:{}:1: listeners[0].prot: unknown field `prot`", line_of(&typo, "prot")),
            typo,
        ),
        (
            "bad-vip.toml",
            format!("bad-vip.toml:{}:7: listeners[0].vip: expected an IPv4 or IPv6 address", line_of(&bad_vip, "10.0.0\"")),
            bad_vip,
        ),
        (
            "duplicate.toml",
            format!("duplicate.toml:{duplicate_line}:8: listeners[1].name: duplicate listener name `web`"),
            duplicate,
        ),
    ];
    for (name, expected, source) in cases {
        let path = dir.join(name);
        std::fs::write(&path, source).unwrap();
        let out = lastack(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expected), "{name}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let explain = lastack(&["check", "--explain"]);
    assert!(explain.status.success());
    assert_eq!(String::from_utf8_lossy(&explain.stdout), config::REFERENCE);
}

#[test]
fn docs_config_md_is_the_generated_reference() {
    let committed = std::fs::read_to_string("docs/config.md").unwrap_or_default();
    assert!(
        committed == config::REFERENCE,
        "docs/config.md is stale: run `make docs` (it writes `lastack check --explain`)"
    );
}

/// Where each reference section's fields live in the serialized BASE config.
const SECTIONS: &[(&str, &str)] = &[
    ("interface", "interfaces.0"),
    ("listener", "listeners.0"),
    ("pool", "pools.0"),
    ("healthcheck", "pools.0.health_check"),
    ("backend", "pools.0.backends.0"),
    ("tcp", "tcp"),
    ("admin", "admin"),
    ("drain", "drain"),
    ("logging", "logging"),
    ("cluster", "cluster"),
];

/// Every "Default: X." that the reference states is what the code does.
#[test]
fn documented_defaults_are_the_real_defaults() {
    // BASE without the three keys it sets to non-default values.
    let minimal = BASE
        .replace("queues = 2\n", "")
        .replace("weight = 2\n", "")
        .replace("min_rto = \"200ms\"\n", "");
    let config = toml::Value::try_from(parse(&minimal).unwrap()).unwrap();
    let mut section = "";
    let mut checked = 0;
    for line in config::REFERENCE.lines() {
        if let Some(id) = line
            .strip_prefix("<a id=\"")
            .and_then(|l| l.strip_suffix("\"></a>"))
        {
            section = id;
            continue;
        }
        let Some(documented) = line.rsplit_once("Default: ").map(|(_, d)| d) else {
            continue;
        };
        let key = line.split('`').nth(1).expect("a row starts with the key");
        let documented = documented
            .trim_end_matches(" |")
            .trim_end_matches('.')
            .replace('`', "");
        let expected: toml::Value = toml::from_str::<toml::Table>(&format!("v = {documented}"))
            .unwrap_or_else(|e| panic!("{section}.{key}: default {documented:?}: {e}"))["v"]
            .clone();
        let (_, base) = SECTIONS
            .iter()
            .find(|(s, _)| *s == section)
            .expect("known section");
        let mut actual = &config;
        for step in base.split('.').chain([key]) {
            actual = match step.parse::<usize>() {
                Ok(i) => &actual[i],
                Err(_) => actual
                    .get(step)
                    .unwrap_or_else(|| panic!("{section}.{key}: missing")),
            };
        }
        let same = match (&expected, actual) {
            (toml::Value::String(a), toml::Value::String(b)) => {
                a == b
                    || humantime::parse_duration(a).ok() == humantime::parse_duration(b).ok()
                        && humantime::parse_duration(a).is_ok()
            }
            (a, b) => a == b,
        };
        assert!(
            same,
            "{section}.{key}: documented {expected}, actual {actual}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} documented defaults found");
}

/// `[cluster] key_file`: a readable file of keys is taken; a bad one is
/// refused at the key, naming the file's line without echoing the secret.
#[test]
fn a_cluster_key_file_is_checked_line_by_line() {
    let dir = std::env::temp_dir().join(format!("lastack-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.key");
    std::fs::write(&good, "# current, then the one being rotated out\n00112233445566778899aabbccddeeff\nffeeddccbbaa99887766554433221100\n").unwrap();
    let bad = dir.join("bad.key");
    std::fs::write(&bad, "00112233445566778899aabbccddeeff\nnot-a-key-at-all\n").unwrap();
    let with = |path: &Path| {
        format!(
            "{BASE}\n[cluster]\nkey_file = {:?}\n",
            path.display().to_string()
        )
    };

    let config = parse(&with(&good)).expect("a good key file");
    assert_eq!(config.cluster.key_file, good.display().to_string());
    assert_eq!(config::read_cluster_keys(&good).unwrap().len(), 2);

    for (path, expected) in [
        (bad.clone(), "line 2: expected 32 hex digits"),
        (dir.join("missing.key"), "cannot read the key file"),
        (
            Path::new("relative.key").to_owned(),
            "expected an absolute path",
        ),
    ] {
        let source = with(&path);
        let errors = parse(&source).expect_err("a bad key file").0;
        let error = &errors[0];
        assert_eq!(
            error.key.as_deref(),
            Some("cluster.key_file"),
            "{errors:#?}"
        );
        assert!(error.message.contains(expected), "{}", error.message);
        assert!(
            !error.message.contains("not-a-key"),
            "echoed the secret: {}",
            error.message
        );
        let (line, _) = error.position.expect("a position");
        assert_eq!(line, line_of(&source, "key_file ="));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[cluster] peers`: forwarding needs this instance's id and address, and
/// peers with other, unique ids of the same family.
#[test]
fn cluster_peers_are_checked() {
    let with = |cluster: &str| format!("{BASE}\n[cluster]\n{cluster}");
    let ok = with(
        "instance = 1\naddress = \"10.0.2.1\"\n[[cluster.peers]]\nid = 2\naddress = \"10.0.2.2\"\n",
    );
    let config = parse(&ok).expect("a valid cluster");
    assert_eq!(config.cluster.peers.len(), 1);
    for (cluster, key, message) in [
        ("[[cluster.peers]]\nid = 2\naddress = \"10.0.2.2\"\n", "cluster.peers", "expected `instance`"),
        ("instance = 1\n[[cluster.peers]]\nid = 2\naddress = \"10.0.2.2\"\n", "cluster.peers", "expected `address`"),
        ("instance = 16\n", "cluster.instance", "expected a value from 0 to 15"),
        (
            "instance = 1\naddress = \"10.0.2.1\"\n[[cluster.peers]]\nid = 1\naddress = \"10.0.2.2\"\n",
            "cluster.peers[0].id",
            "this instance's own",
        ),
        (
            "instance = 1\naddress = \"10.0.2.1\"\n[[cluster.peers]]\nid = 2\naddress = \"10.0.2.2\"\n[[cluster.peers]]\nid = 2\naddress = \"10.0.2.3\"\n",
            "cluster.peers[1].id",
            "found 2 twice",
        ),
        (
            "instance = 1\naddress = \"10.0.2.1\"\n[[cluster.peers]]\nid = 2\naddress = \"fd00::2\"\n",
            "cluster.peers[0].address",
            "of the family of `address`",
        ),
    ] {
        let errors = parse(&with(cluster)).expect_err(key).0;
        let error = errors
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no error at {key}: {errors:#?}"));
        assert!(error.message.contains(message), "{key}: {}", error.message);
        assert!(error.position.is_some(), "{key}: placed in the file");
    }
}
