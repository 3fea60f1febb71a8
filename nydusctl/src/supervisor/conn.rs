//! `protocol::handoff` frames over a unix stream, fds beside them
//! (SCM_RIGHTS). Frame reassembly is `protocol::handoff::FrameReader`; only
//! this socket loop is per binary (nydusd has a twin typed to its messages).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

use nydus_protocol::handoff::{encode, FrameError, FrameReader};
use sendfd::{RecvWithFd, SendWithFd};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct Conn {
    pub stream: UnixStream,
    frames: FrameReader,
    fds: VecDeque<File>,
}

fn proto_err(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Conn {
    pub fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            frames: FrameReader::default(),
            fds: VecDeque::new(),
        }
    }

    pub fn send<T: Serialize>(&self, msg: &T, fd: Option<RawFd>) -> io::Result<()> {
        send_on(&self.stream, msg, fd)
    }

    /// The next message; `with_fd` says whether it carries an fd.
    pub fn recv<T: DeserializeOwned>(
        &mut self,
        with_fd: impl Fn(&T) -> bool,
    ) -> io::Result<(T, Option<File>)> {
        let (msg, mut fds) = self.recv_fds(|m: &T| usize::from(with_fd(m)))?;
        Ok((msg, fds.pop()))
    }

    /// The next message with the `count` fds it carries (fewer if fewer came).
    pub fn recv_fds<T: DeserializeOwned>(
        &mut self,
        count: impl Fn(&T) -> usize,
    ) -> io::Result<(T, Vec<File>)> {
        loop {
            if let Some(msg) = self.frames.pop::<T>().map_err(proto_err)? {
                let want = count(&msg);
                // Fewer than announced: the caller checks the count it
                // needs (a missing fd is its error to word).
                let want = want.min(self.fds.len());
                return Ok((msg, self.fds.drain(..want).collect()));
            }
            let mut chunk = vec![0u8; 64 * 1024];
            // Room for a vhost-user handover (socket, regions, 3 per vring).
            let mut fds = [-1 as RawFd; nydus_protocol::handoff::MAX_VHOST_FDS];
            let (n, nfds) = self.stream.recv_with_fd(&mut chunk, &mut fds)?;
            for &fd in &fds[..nfds] {
                // SAFETY: the kernel just installed this fd for us; we are
                // its only owner.
                let file = unsafe { File::from_raw_fd(fd) };
                // Never leak a kept /dev/fuse fd into a spawned worker.
                let _ = nix::fcntl::fcntl(
                    &file,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
                self.fds.push_back(file);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.frames.push(&chunk[..n]);
        }
    }
}

/// Sends one frame on `stream`, `fd` attached to its first byte.
pub fn send_on<T: Serialize>(stream: &UnixStream, msg: &T, fd: Option<RawFd>) -> io::Result<()> {
    send_fds_on(stream, msg, fd.as_slice())
}

/// Sends one frame on `stream`, all `fds` attached to its first byte.
pub fn send_fds_on<T: Serialize>(stream: &UnixStream, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let frame = encode(msg).map_err(proto_err)?;
    let mut sent = match fds {
        [] => 0,
        fds => stream.send_with_fd(&frame, fds)?,
    };
    if !fds.is_empty() && sent == 0 {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed"));
    }
    let mut w = stream;
    while sent < frame.len() {
        sent += w.write(&frame[sent..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nydus_protocol::handoff::{WorkerMsg, WorkerState};
    use std::io::{Read, Seek};
    use std::os::unix::io::AsRawFd;

    #[test]
    fn frames_and_fds_survive_split_writes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"kept").unwrap();
        let reg = WorkerMsg::Register {
            id: "m1".into(),
            pid: 1,
            version: "v".into(),
            state: WorkerState {
                mountpoint: "/m".repeat(40_000), // bigger than one read
                ..WorkerState::default()
            },
        };
        send_on(&a, &WorkerMsg::Stop, None).unwrap();
        let sender = std::thread::spawn(move || {
            send_on(&a, &reg, Some(file.as_raw_fd())).unwrap();
            // A frame written a byte at a time.
            let frame = nydus_protocol::handoff::encode(&WorkerMsg::Stopped).unwrap();
            for byte in frame {
                (&a).write_all(&[byte]).unwrap();
            }
            a
        });
        let mut conn = Conn::new(b);
        let (m, fd) = conn.recv::<WorkerMsg>(WorkerMsg::carries_fd).unwrap();
        assert_eq!((m, fd.is_none()), (WorkerMsg::Stop, true));
        let (m, fd) = conn.recv::<WorkerMsg>(WorkerMsg::carries_fd).unwrap();
        assert!(matches!(m, WorkerMsg::Register { .. }));
        let mut f = fd.expect("fd with the register");
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "kept");
        let (m, _) = conn.recv::<WorkerMsg>(WorkerMsg::carries_fd).unwrap();
        assert_eq!(m, WorkerMsg::Stopped);
        drop(sender.join().unwrap());
        let e = conn.recv::<WorkerMsg>(WorkerMsg::carries_fd).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_peer_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut conn = Conn::new(b);
        let e = conn.recv::<WorkerMsg>(|_| false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
