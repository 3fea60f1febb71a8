//! Hot upgrade of a supervised virtio-fs worker under a live guest: a QEMU
//! guest (`shared/scripts/virtiofs-guest`, TCG) reads files in a loop and
//! checks every hash, while the host runs `nydusctl upgrade` of its worker
//! NYDUS_VFS_UPGRADE_ROUNDS times (default 20), then one `nydusctl
//! restart`. The live vhost-user device (socket, guest memory, eventfds,
//! vring indices) goes from each worker to its successor: the guest must
//! see no error and no wrong byte. Prints the longest stall between two
//! guest iterations, the slowest upgrade and the longest device relay.
//! Then kill -9 (best effort: the socket is served again) and umount.
//!
//! Needs root (QEMU). NYDUS_VFS_LOOP_SECS sets how long the guest reads
//! in all (default 45; the upgrades must fit in).

mod supervisor_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nydus_e2e::fixtures;
use nydus_e2e::source::Entry;
use nydus_e2e::virtiofs::{biggest_plain_files, guest};
use supervisor_support::Supervisor;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The guest script: every iteration drops the caches (so reads reach the
/// device), hashes every file, prints `BAD` on a mismatch or error and
/// `IT <uptime>` when done; for `secs` seconds.
fn script(files: &[Entry], secs: u64) -> String {
    let mut s = r#"[ -r /proc/uptime ] || mount -t proc proc /proc
up() { cut -d" " -f1 /proc/uptime; }
echo "IT $(up)"
end=$(( $(cut -d. -f1 /proc/uptime) + SECS ))
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
echo 3 > /proc/sys/vm/drop_caches
"#
    .replace("SECS", &secs.to_string());
    for f in files {
        let path = format!("/mnt/{}", f.name.trim_start_matches("./"));
        s.push_str(&format!(
            "got=$(sha256sum {path} | cut -d\" \" -f1); [ \"$got\" = \"{}\" ] || echo \"BAD {path} $got\"\n",
            f.field("sha256")
        ));
    }
    s.push_str("echo \"IT $(up)\"\ndone\necho END\n");
    s
}

/// Bytes the current worker has read for the guest.
fn data_read(sup: &Supervisor, id: &str) -> u64 {
    let out = sup.ctl(&["stats", id, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["metrics"]["data_read"].as_u64())
        .unwrap_or(0)
}

#[test]
fn guest_reads_through_upgrades() {
    let rounds = env_num("NYDUS_VFS_UPGRADE_ROUNDS", 20);
    let secs = env_num("NYDUS_VFS_LOOP_SECS", 45);
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture mini-v6-zstd-sha256");
    let files = biggest_plain_files(&fx.expected_manifest, 4);

    let mut sup = Supervisor::start();
    // An id must stay a plain file name (it names the worker's log).
    let bad = sup.ctl(&[
        "mount",
        "--bootstrap",
        fx.bootstrap.to_str().unwrap(),
        "--config",
        "/nonexistent.json",
        "--id",
        "../x",
        "--vhost-user-sock",
        "/tmp/x.sock",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--id"), "{err}");
    let (id, sock) = sup.mount_vhost(&fx, "vfs");
    let listed = sup.list();
    let m = listed
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in list: {listed:?}"));
    assert_eq!(m["vhost_user"], true, "{m}");
    assert_eq!(m["mountpoint"], sock.to_str().unwrap(), "{m}");
    let table = sup.ctl(&["list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&id) && table.contains("(virtio-fs)"),
        "list does not show the virtio-fs worker:\n{table}"
    );

    // The guest in its own thread. Its output only comes at the end, so
    // the worker's read counter says when it reads.
    let gdir = tempfile::tempdir().expect("tempdir");
    let done = Arc::new(AtomicBool::new(false));
    let guest_thread = {
        let (sock, dir, done) = (sock.clone(), gdir.path().to_path_buf(), done.clone());
        let script = script(&files, secs);
        std::thread::spawn(move || {
            let run = guest(&sock, &script, secs + 150, &dir);
            done.store(true, Ordering::SeqCst);
            run
        })
    };
    let boot = Instant::now();
    while data_read(&sup, &id) == 0 {
        assert!(!done.load(Ordering::SeqCst), "guest ended before reading");
        assert!(
            boot.elapsed() < Duration::from_secs(240),
            "guest never read"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("guest reading after {:?}", boot.elapsed());
    // A few iterations before the first upgrade, as a baseline.
    std::thread::sleep(Duration::from_secs(3));

    let mut slowest = Duration::ZERO;
    let mut pid = sup.pid_of(&id).expect("worker pid");
    for n in 1..=rounds {
        let t0 = Instant::now();
        let out = sup.ctl(&["upgrade", &id]);
        let took = t0.elapsed();
        slowest = slowest.max(took);
        assert!(
            out.status.success(),
            "upgrade {n} failed: {}\n{}\nworkers:\n{}",
            String::from_utf8_lossy(&out.stderr),
            sup.log(),
            std::fs::read_to_string(sup.state.join(format!("{id}.log"))).unwrap_or_default()
        );
        let now = sup.pid_of(&id).expect("worker pid after upgrade");
        assert_ne!(now, pid, "upgrade {n}: the worker pid did not change");
        pid = now;
        // Spread the handovers over the guest's loop, so they land at
        // different points of its requests.
        std::thread::sleep(Duration::from_millis(400));
        if done.load(Ordering::SeqCst) {
            let run = guest_thread.join().expect("guest thread");
            panic!(
                "the guest finished before upgrade {n} ended ({}); raise NYDUS_VFS_LOOP_SECS?\n{}\n{}\nworkers:\n{}",
                run.status,
                String::from_utf8_lossy(&run.stdout),
                run.stderr,
                std::fs::read_to_string(sup.state.join(format!("{id}.log"))).unwrap_or_default()
            );
        }
    }
    // `restart` takes the same path with the same binary.
    sup.ctl_ok(&["restart", &id], "restart");
    assert_ne!(sup.pid_of(&id), Some(pid), "restart kept the worker");
    assert!(
        !done.load(Ordering::SeqCst),
        "the guest finished before the restart"
    );
    let upgrades_done = Instant::now();
    let run = guest_thread.join().expect("guest thread");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let worker_log =
        std::fs::read_to_string(sup.state.join(format!("{id}.log"))).unwrap_or_default();
    assert!(
        run.status.success(),
        "guest failed ({}):\n{out}\n{}\nworker:\n{}\nsupervisor:\n{}",
        run.status,
        run.stderr,
        worker_log,
        sup.log()
    );
    assert!(
        !out.contains("BAD"),
        "guest saw errors or wrong bytes:\n{out}"
    );
    assert!(out.contains("END"), "guest loop did not finish:\n{out}");
    let stamps: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("IT ")?.trim().parse().ok())
        .collect();
    let gaps: Vec<f64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().cloned().fold(0.0, f64::max);
    let mut sorted = gaps.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    eprintln!(
        "{rounds} upgrades of a virtio-fs worker under a reading guest: {} guest iterations ({} files each), \
         longest gap between iterations {longest:.2} s (median {median:.2} s), slowest upgrade {slowest:?}; \
         guest ran {:?} past the last upgrade",
        stamps.len() - 1,
        files.len(),
        upgrades_done.elapsed()
    );
    let relays = relay_times(&sup.log());
    assert_eq!(
        relays.len() as u64,
        rounds + 1,
        "handovers relayed:\n{}",
        sup.log()
    );
    eprintln!(
        "device handover (Stop sent to the old worker .. its device relayed to the successor): longest {:?}",
        relays.iter().max().copied().unwrap_or_default()
    );

    // kill -9 (no handover) is best effort: the guest's connection dies
    // with the worker, but a successor serves the socket for the next VM.
    let pid = sup.pid_of(&id).expect("pid");
    // SAFETY: kill(2) on the worker pid the supervisor reports.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let next = sup.wait_new_pid(&id, pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "socket not served after kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "after kill -9 of {pid}: worker {next} serves {}",
        sock.display()
    );

    sup.ctl_ok(&["umount", &id], "umount");
    assert!(!sock.exists(), "the socket outlived umount");
    assert!(sup.list().iter().all(|m| m["id"] != id.as_str()));
}

/// The supervisor's "virtio-fs device relayed after <Duration:?>" lines.
fn relay_times(log: &str) -> Vec<Duration> {
    log.lines()
        .filter_map(|l| l.split("virtio-fs device relayed after ").nth(1))
        .filter_map(|t| {
            let t = t.trim();
            let (num, scale) = if let Some(v) = t.strip_suffix("µs") {
                (v, 1e-6)
            } else if let Some(v) = t.strip_suffix("ms") {
                (v, 1e-3)
            } else if let Some(v) = t.strip_suffix("ns") {
                (v, 1e-9)
            } else {
                (t.strip_suffix('s')?, 1.0)
            };
            Some(Duration::from_secs_f64(num.parse::<f64>().ok()? * scale))
        })
        .collect()
}
