//! What `deploy/` ships: the Kubernetes manifests pass the Kubernetes
//! schemas (offline, `kubernetes-validate`, which `make test` installs);
//! the config they carry validates and the Secret's placeholder is
//! refused; `lastack check --host` finds a host that is not set up (in a
//! namespace the test makes) and `deploy/setup-host.sh` sets it up.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The validator `make test` installs (`$KUBERNETES_VALIDATE`), or one on
/// the PATH; `None` (the test says it skipped) outside CI.
fn validator() -> Option<PathBuf> {
    let candidate = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubernetes-validate"));
    let works = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    let why = format!(
        "{} does not run (`make test` installs it)",
        candidate.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("kubernetes manifests: {why}");
    }
    eprintln!("SKIPPED kubernetes manifests: {why}");
    None
}

#[test]
fn the_kubernetes_manifests_pass_the_schema_check() {
    let Some(validator) = validator() else {
        return;
    };
    let files = manifests();
    for kind in [
        "daemonset",
        "configmap",
        "secret",
        "poddisruptionbudget",
        "namespace",
    ] {
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains(kind)),
            "deploy/k8s has a {kind}: {files:?}"
        );
    }
    let out = Command::new(&validator)
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert_eq!(report.matches(" passed ").count(), files.len(), "{report}");

    // And it can fail: an unknown field in a DaemonSet is refused.
    let broken = std::env::temp_dir()
        .join(unique_name("lsk8s"))
        .with_extension("yaml");
    let daemonset = std::fs::read_to_string(deploy("k8s/daemonset.yaml")).unwrap();
    std::fs::write(
        &broken,
        daemonset.replace(
            "hostNetwork: true",
            "hostNetwork: true\n      hostNetwrok: true",
        ),
    )
    .unwrap();
    let out = Command::new(&validator)
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    std::fs::remove_file(&broken).unwrap();
    assert!(!out.status.success(), "a misspelt field passed");
}

/// The TOML in the ConfigMap (the block under `lastack.toml: |`).
fn configmap_toml() -> String {
    let yaml = std::fs::read_to_string(deploy("k8s/configmap.yaml")).unwrap();
    let (_, block) = yaml
        .split_once("lastack.toml: |\n")
        .expect("a lastack.toml key");
    block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_kubernetes_config_validates_and_the_key_placeholder_is_refused() {
    let dir = std::env::temp_dir().join(unique_name("lsk8sc"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("cluster.key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff\n").unwrap();
    let toml = configmap_toml().replace("/etc/lastack/keys/cluster.key", key.to_str().unwrap());
    let config = lastack::config::parse(&toml, Path::new("configmap.yaml"))
        .unwrap_or_else(|e| panic!("the ConfigMap's config: {e}\n{toml}"));
    assert_eq!(config.cluster.key_file, key.to_str().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();

    let secret = std::fs::read_to_string(deploy("k8s/secret.example.yaml")).unwrap();
    let (_, placeholder) = secret.split_once("cluster.key: |\n").unwrap();
    let error = lastack::config::parse_cluster_keys(placeholder).expect_err("the placeholder");
    assert!(error.contains("line 1: expected 32 hex digits"), "{error}");
}

/// `lastack check --host` (and `--fixes`) in `ns`: exit status, stdout.
fn check_host(ns: &Netns, config: &Path, fixes: bool) -> (i32, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, LASTACK, "check", "--host", "-c"])
        .arg(config);
    if fixes {
        cmd.arg("--fixes");
    }
    let out = cmd.output().expect("lastack runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `deploy/setup-host.sh -c config` in `ns`, with this build's lastack.
fn setup_host(ns: &Netns, config: &Path) -> std::process::Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "env",
            &format!("LASTACK={LASTACK}"),
        ])
        .arg("sh")
        .arg(deploy("setup-host.sh"))
        .arg("-c")
        .arg(config)
        .output()
        .expect("setup-host.sh runs")
}

#[test]
fn check_host_finds_what_is_missing_and_setup_host_fixes_it() {
    if !privileged("check --host") {
        return;
    }
    // A host with a two-queue config on a one-channel veth, timestamps
    // off, the VIP and the source address missing, a key others can read.
    let (ns, peer) = (Netns::new("lsh"), Netns::new("lsh"));
    let (ifname, peer_if) = (unique_name("vha"), unique_name("vhb"));
    lastack_testkit::netns::veth(&ns, &ifname, &peer, &peer_if, 4).unwrap();
    ns.exec(&["ethtool", "-L", &ifname, "rx", "1", "tx", "1"]);
    ns.link_up(&ifname).unwrap();
    ns.sysctl("net.ipv4.tcp_timestamps", "0").unwrap();
    let dir = std::env::temp_dir().join(unique_name("lshost"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("cluster.key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.join("lastack.toml");
    std::fs::write(
        &config,
        format!(
            "[[interfaces]]\nname = \"{ifname}\"\nqueues = 2\n\n\
             [[listeners]]\nname = \"web\"\nvip = \"10.61.0.10\"\nport = 80\npool = \"p\"\n\n\
             [[listeners]]\nname = \"web6\"\nvip = \"fd00:61::10\"\nport = 80\npool = \"p\"\n\n\
             [[pools]]\nname = \"p\"\nsource_addresses = [\"10.61.1.5\"]\n\
             [[pools.backends]]\naddress = \"10.61.1.11:8080\"\n\n\
             [cluster]\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();

    let (status, report) = check_host(&ns, &config, false);
    assert_eq!(status, 2, "something is missing:\n{report}");
    for expected in [
        format!("MISSING {ifname} rx queues: 1, expected at least 2"),
        format!("fix: ethtool -L {ifname} rx 2 tx 2"),
        "MISSING net.ipv4.tcp_timestamps: 0, expected at least 1".to_string(),
        "fix: sysctl -w net.ipv4.tcp_timestamps=1".to_string(),
        format!("fix: ip addr add 10.61.0.10/32 dev {ifname}"),
        format!("fix: ip -6 addr add fd00:61::10/128 dev {ifname} nodad"),
        "fix: ip addr add 10.61.1.5/32 dev lo".to_string(),
        format!("fix: chmod 600 {}", key.display()),
        format!("ok      {ifname} MTU: 1500"),
    ] {
        assert!(report.contains(&expected), "{expected:?} not in:\n{report}");
    }
    let (status, script) = check_host(&ns, &config, true);
    assert_eq!(status, 0);
    assert!(script.starts_with("#!/bin/sh"), "{script}");

    // setup-host.sh runs the fixes, then checks again: ready.
    let out = setup_host(&ns, &config);
    let shown =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "setup-host.sh:\n{shown}");
    assert!(shown.contains("host: ready for this config"), "{shown}");
    let (status, report) = check_host(&ns, &config, false);
    assert_eq!(status, 0, "{report}");
    // Idempotent: a second run changes nothing.
    let out = setup_host(&ns, &config);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to change"));
    std::fs::remove_dir_all(&dir).unwrap();
}
