//! nginx as the P2P proxy in front of the registry (test-harness.md §5).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port_pair, run_timeout, wait_port};

/// nginx as a caching forward proxy (test-harness.md §5), with
/// `/server/ping` for health checks. Stopped on drop.
pub struct Nginx {
    dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path) -> Nginx {
        if Command::new("nginx").arg("-v").output().is_err() {
            let mut apt = Command::new("apt-get");
            apt.args(["install", "-y", "nginx-light"]);
            let out = run_timeout(&mut apt, 300);
            assert!(
                out.status.success(),
                "nginx is missing and `apt-get install -y nginx-light` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let n = Nginx {
            dir: dir.to_path_buf(),
            port: free_port_pair(),
        };
        for sub in [
            "tmp/body",
            "tmp/proxy",
            "tmp/fcgi",
            "tmp/uwsgi",
            "tmp/scgi",
            "cache",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("nginx dirs");
        }
        let d = dir.display();
        let conf = format!(
            r#"worker_processes 1;
daemon on;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fcgi;  uwsgi_temp_path {d}/tmp/uwsgi;  scgi_temp_path {d}/tmp/scgi;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=blobs:10m max_size=1g inactive=1d use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location = /server/ping {{ return 200 "ok\n"; }}
    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{{64}}$" {{
      slice 1m;
      proxy_cache blobs;
      proxy_cache_key $http_host$uri$slice_range;
      proxy_set_header Range $slice_range;
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_cache_valid 200 206 1d;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
      proxy_pass http://$http_host;
    }}
    location / {{ proxy_set_header Host $http_host; proxy_http_version 1.1; proxy_pass http://$http_host; }}
  }}
}}
"#,
            port = n.port
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        n.launch();
        n
    }

    fn launch(&self) {
        // nginx daemonizes; its output goes to error.log, so no pipes that
        // the daemon could hold open.
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().ok().flatten() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nginx did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        assert!(status.success(), "nginx failed ({status}):\n{log}");
        wait_port(self.port, 10);
    }

    /// Stops nginx (by its pid file) and waits until the port is closed.
    pub fn stop(&self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        // SAFETY: kill(2) of the master pid nginx wrote for this instance.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "nginx did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("nginx.pid"));
    }

    pub fn restart(&self) {
        self.launch();
    }

    /// Requests nginx has logged so far.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.dir.join("access.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
