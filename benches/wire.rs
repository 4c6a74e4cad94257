//! Wire-layer costs per frame: full parse of a received data segment, emit of
//! a reply segment, and the checksum over a full-size payload.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lastack::wire::{self, checksum, TcpFlags, TcpOptions, TcpRepr, Timestamps};
use lastack_testkit::captured;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("data_segment_frame", |b| {
        b.iter(|| wire::parse_frame(black_box(&captured::TCP_DATA)).unwrap())
    });
    group.bench_function("data_segment_frame_ipv6", |b| {
        b.iter(|| wire::parse_frame(black_box(&captured::TCP6_DATA)).unwrap())
    });
    group.bench_function("syn_frame", |b| {
        b.iter(|| wire::parse_frame(black_box(&captured::TCP_SYN)).unwrap())
    });
    group.finish();
}

fn emit(c: &mut Criterion) {
    let payload = vec![0xa5u8; 1448];
    let repr = TcpRepr {
        src_port: 8080,
        dst_port: 49962,
        seq_number: 1,
        ack_number: 2,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window_len: 512,
        urgent_at: 0,
        options: TcpOptions {
            timestamps: Some(Timestamps { tsval: 3, tsecr: 4 }),
            ..Default::default()
        },
        payload: &payload,
    };
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    let mut out = vec![0u8; 1600];
    let mut group = c.benchmark_group("emit");
    group.throughput(Throughput::Bytes(repr.buffer_len() as u64));
    group.bench_function("tcp_1448_bytes_with_timestamps", |b| {
        b.iter(|| black_box(&repr).emit(&mut out, src, dst))
    });
    group.finish();

    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Bytes(1500));
    let data = vec![0x5au8; 1500];
    group.bench_function("1500_bytes", |b| {
        b.iter(|| checksum::data(black_box(&data)))
    });
    group.finish();
}

criterion_group!(benches, parse, emit);
criterion_main!(benches);
