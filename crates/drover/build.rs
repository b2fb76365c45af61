//! Link settings of the `drover` binary.
//!
//! Every client command is a fresh process, so the dynamic loader's work is part of each
//! command's latency. drover is a position-independent executable with some 23,000 relative
//! relocations (vtables, string tables, clap's definitions); as a RELA table the loader spent
//! ~0.9 ms applying them at every start on the benchmark machine (`LD_DEBUG=statistics`). Packed
//! as RELR (`-z pack-relative-relocs`) the table shrinks from 560 KiB to 7 KiB and the loader's
//! whole start-up to ~0.1 ms; ASLR is unchanged.
//!
//! A RELR binary needs glibc 2.36 or later (it names the `GLIBC_ABI_DT_RELR` version), so the
//! flag is given only when building for the machine that builds, and only if that machine's C
//! library provides it: `cargo install` on an older system links the classic way.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target == host && target.ends_with("-linux-gnu") && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc defines the symbol version RELR binaries depend on.
fn glibc_has_relr() -> bool {
    const LIBCS: [&str; 6] = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
        "/lib/libc.so.6",
    ];
    LIBCS.iter().map(Path::new).any(|path| {
        std::fs::read(path).is_ok_and(|bytes| {
            bytes
                .windows(b"GLIBC_ABI_DT_RELR".len())
                .any(|w| w == b"GLIBC_ABI_DT_RELR")
        })
    })
}
