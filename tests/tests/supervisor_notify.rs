//! `Type=notify`: the supervisor sends READY=1 to $NOTIFY_SOCKET once it
//! serves, so systemd counts it started only then.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ready_is_sent_once_serving() {
    let dir = tempfile::Builder::new()
        .prefix("nydus-sup-notify-")
        .tempdir()
        .unwrap();
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sock = dir.path().join("sup.sock");
    let mut child = Command::new(nydus_e2e::nydusctl_bin())
        .args(["supervise", "--sock", sock.to_str().unwrap(), "--state-dir"])
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let got = listener.recv(&mut buf);
    let connected = UnixStream::connect(&sock).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let n = got.expect("no READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(connected, "READY=1 before the socket served");
}
