//! The TCP engine in memory: two stacks joined back to back, every segment
//! written as bytes, parsed by `wire` and checksummed, both engines' work
//! counted. Reports full connection lifecycles per second, bulk data
//! segments per second, the bytes of state per connection, and what a
//! million idle established connections cost: memory each, and the time
//! for time to pass over them (next to a thousand). Lifecycles run over
//! IPv4 and IPv6 side by side.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lastack::tcp::{Event, Route, Stack, TcpConfig};
use lastack_testkit::back_to_back::{BackToBack, SERVER, SERVER6, TAG};

fn lifecycles(c: &mut Criterion) {
    println!(
        "connection state = {} bytes (buffers not included)",
        Stack::connection_state_size()
    );
    let mut group = c.benchmark_group("tcp");
    group.throughput(Throughput::Elements(1));
    for (name, server) in [
        ("connection_lifecycle", SERVER),
        ("connection_lifecycle_ipv6", SERVER6),
    ] {
        let mut pair = BackToBack::serving(server);
        let mut n = 0u32;
        let segments = pair.lifecycle(n);
        println!("{name}: one lifecycle = {segments} segments");
        group.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                black_box(pair.lifecycle(n))
            })
        });
        assert_eq!(pair.server.slots_in_use(), 0);
    }
    group.finish();
}

fn bulk(c: &mut Criterion) {
    let mut pair = BackToBack::new();
    let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 40000));
    let id = pair
        .client
        .connect(pair.now, client, SERVER, Route::default(), TAG)
        .unwrap();
    pair.exchange();
    let mut server_id = None;
    while let Some(event) = pair.server.poll_event() {
        if let Event::Acceptable(l) = event {
            server_id = pair.server.accept(l, TAG);
        }
    }
    let server_id = server_id.unwrap();
    let chunk = vec![0xabu8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let per_iter = 1 << 20;
    let data_segments = per_iter / 1460 + 1;
    let mut group = c.benchmark_group("tcp");
    group.throughput(Throughput::Elements(data_segments as u64));
    group.bench_function("bulk_1MiB_data_segments", |b| {
        b.iter(|| {
            let mut left = per_iter;
            while left > 0 {
                let n = pair
                    .client
                    .send(pair.now, id, &chunk[..left.min(chunk.len())])
                    .unwrap();
                left -= n;
                pair.exchange();
                while pair.server.recv(pair.now, server_id, &mut sink).unwrap() > 0 {}
                pair.exchange();
                pair.now = pair.now + Duration::from_micros(50);
                pair.client.handle_timeout(pair.now);
                pair.server.handle_timeout(pair.now);
            }
        })
    });
    group.finish();
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `count` connections established between the two stacks, each with a
/// keepalive deadline (two hours away) and nothing else to do.
fn idle_pair(count: u32) -> (BackToBack, Vec<lastack::tcp::ConnId>) {
    let mut pair = BackToBack::new();
    let config = TcpConfig {
        keepalive: Some(Duration::from_secs(7200)),
        ..pair.client.config().clone()
    };
    pair.client.set_config(config.clone());
    pair.server.set_config(config);
    let mut ids = Vec::with_capacity(count as usize);
    for n in 0..count {
        let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 | n), 40000));
        let id = pair
            .client
            .connect(pair.now, client, SERVER, Route::default(), TAG)
            .unwrap();
        pair.exchange();
        while let Some(event) = pair.server.poll_event() {
            if let Event::Acceptable(l) = event {
                while pair.server.accept(l, TAG).is_some() {}
            }
        }
        while pair.client.poll_event().is_some() {}
        ids.push(id);
    }
    (pair, ids)
}

fn idle(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle");
    for count in [1_000u32, 1_000_000] {
        let before = resident_bytes();
        let (mut pair, _ids) = idle_pair(count);
        let grown = resident_bytes().saturating_sub(before);
        assert_eq!(pair.server.connection_count(), count as usize);
        println!(
            "{count} idle established connections: {:.0} bytes each (resident memory grown / \
             connections on both stacks), buffer memory lent {} bytes",
            grown as f64 / (2.0 * f64::from(count)),
            pair.server.buffer_pool().lent_bytes() + pair.client.buffer_pool().lent_bytes()
        );
        // Time passing: a millisecond per iteration, every connection idle
        // with a deadline two hours away. The cost must not grow with the
        // count.
        group.bench_function(format!("advance_1ms_over_{count}_connections"), |b| {
            b.iter(|| {
                pair.now = pair.now + Duration::from_millis(1);
                pair.client.handle_timeout(pair.now);
                pair.server.handle_timeout(pair.now);
                black_box(pair.server.poll_timeout())
            })
        });
        group.bench_function(format!("state_counts_of_{count}_connections"), |b| {
            b.iter(|| black_box(pair.server.state_counts()))
        });
    }
    group.finish();
}

criterion_group!(benches, lifecycles, bulk, idle);
criterion_main!(benches);
