//! `nydusd`: serves RAFS images over FUSE or virtio-fs (vhost-user-fs).
//!
//! `main` only dispatches: the flow is in `run`, the filesystem in `fs`,
//! the pseudo-mount table in `daemon`, the data path in `storage`.

mod api;
mod bootstrap;
mod cli;
mod daemon;
mod fs;
mod fuse_service;
mod instance;
mod logging;
mod metrics;
mod prefetch;
mod run;
mod storage;
mod supervised;
mod virtiofs;

fn main() -> std::process::ExitCode {
    return_big_buffers_on_free();
    run::main()
}

/// Buffers of 256 KiB and more come from, and go back to, the kernel.
///
/// glibc otherwise raises its threshold to the largest buffer freed so far
/// (a 1 MiB chunk here), and from then on serves such buffers from each
/// thread's arena, which keeps the freed space: after a `tar` of a big tree
/// the four FUSE threads' arenas held 7 MB that nothing used, a third of
/// the daemon's resident memory. Buffers that are reused (a thread's reply
/// and request buffers) are allocated once and are not affected.
fn return_big_buffers_on_free() {
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
