//! Upgrade and failover under load: 8 readers check every byte of a
//! mounted fixture while the test runs N `nydusctl upgrade`, then N
//! `kill -9` of the worker, then kills and restarts the supervisor itself.
//! Zero read errors, zero wrong bytes, no read stalled longer than 1 s.
//! N is `NYDUS_HANDOFF_ROUNDS` (default 50, as the acceptance asks).

mod supervisor_support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_support::{snapshot, Supervisor};

const PHASES: [&str; 3] = ["upgrade", "kill -9", "supervisor restart"];

struct Load {
    stop: AtomicBool,
    phase: AtomicUsize,
    errors: AtomicU64,
    wrong: AtomicU64,
    reads: AtomicU64,
    /// Longest single file read per phase, microseconds.
    stall_us: [AtomicU64; 3],
}

#[test]
fn upgrades_and_kills_under_load() {
    let rounds: usize = std::env::var("NYDUS_HANDOFF_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let fx = nydus_e2e::fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture mini-v6-zstd-sha256");
    let mut sup = Supervisor::start();
    let (id, mp) = sup.mount(&fx, "a");
    let files = Arc::new(snapshot(&mp));
    assert!(files.len() > 5, "fixture has files");

    let load = Arc::new(Load {
        stop: AtomicBool::new(false),
        phase: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        stall_us: Default::default(),
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for r in 0..8 {
        let (files, load, done) = (files.clone(), load.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let mut i = r;
            while !load.stop.load(Ordering::Relaxed) {
                let (path, want) = &files[i % files.len()];
                i += 1;
                let phase = load.phase.load(Ordering::Relaxed);
                let t0 = Instant::now();
                match std::fs::read(path) {
                    Ok(got) if &got == want => {}
                    Ok(_) => {
                        load.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("read {}: {e}", path.display());
                        load.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let us = t0.elapsed().as_micros() as u64;
                load.stall_us[phase].fetch_max(us, Ordering::Relaxed);
                load.reads.fetch_add(1, Ordering::Relaxed);
            }
            let _ = done.send(());
        });
    }
    drop(done_tx);

    let t_up = Instant::now();
    for n in 0..rounds {
        sup.ctl_ok(&["upgrade", &id], &format!("upgrade {n}"));
    }
    let up_time = t_up.elapsed();
    load.phase.store(1, Ordering::Relaxed);
    let t_kill = Instant::now();
    for _ in 0..rounds {
        let pid = sup.pid_of(&id).expect("worker pid");
        // SAFETY: kill(2) on the worker pid the supervisor reports.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        sup.wait_new_pid(&id, pid);
        // Let the successor live long enough not to count as a crash loop.
        std::thread::sleep(Duration::from_millis(550));
    }
    let kill_time = t_kill.elapsed();
    load.phase.store(2, Ordering::Relaxed);
    sup.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sup
        .list()
        .first()
        .and_then(|m| m["status"].as_str().map(str::to_string))
        .as_deref()
        != Some("running")
    {
        assert!(
            Instant::now() < deadline,
            "mount not running after restart: {:?}\n{}",
            sup.list(),
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sup.list().len(), 1);
    sup.ctl_ok(&["upgrade", &id], "upgrade after restart");
    std::thread::sleep(Duration::from_millis(300));

    load.stop.store(true, Ordering::Relaxed);
    for _ in 0..8 {
        if done_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            // A wedged reader: the guard's umount -l in Drop unblocks it.
            panic!("a reader is blocked >10 s\n{}", sup.log());
        }
    }
    let stalls: Vec<Duration> = load
        .stall_us
        .iter()
        .map(|s| Duration::from_micros(s.load(Ordering::Relaxed)))
        .collect();
    println!(
        "{rounds} upgrades in {up_time:?}, {rounds} kill -9 in {kill_time:?}, {} reads",
        load.reads.load(Ordering::Relaxed)
    );
    for (p, s) in PHASES.iter().zip(&stalls) {
        println!("longest read during {p}: {s:?}");
    }
    let log = sup.log();
    println!(
        "failovers through a standby: {}, through a fresh successor: {}",
        log.matches("standby serving").count(),
        log.matches("successor serving").count()
    );
    assert_eq!(load.errors.load(Ordering::Relaxed), 0, "read errors");
    assert_eq!(load.wrong.load(Ordering::Relaxed), 0, "wrong bytes");
    for (p, s) in PHASES.iter().zip(&stalls) {
        assert!(
            *s < Duration::from_secs(1),
            "a read stalled {s:?} during {p}"
        );
    }
    sup.ctl_ok(&["umount", &id], "umount");
    assert!(
        !nydus_e2e::api::is_fuse_mounted(&mp),
        "still mounted after umount"
    );
}
