//! A handoff connection: `protocol::handoff` frames over a unix stream,
//! with fds passed beside them (SCM_RIGHTS).
//!
//! Frame reassembly is `protocol::handoff::FrameReader`, shared with
//! nydusctl's supervisor; only this socket loop is per binary.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

use nydus_protocol::handoff::{encode, FrameError, FrameReader, WorkerMsg};
use sendfd::{RecvWithFd, SendWithFd};

pub struct Conn {
    stream: UnixStream,
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

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends `msg`, with `fd` attached to its first byte when given.
    pub fn send(&self, msg: &WorkerMsg, fd: Option<RawFd>) -> io::Result<()> {
        self.send_fds(msg, fd.as_slice())
    }

    /// Sends `msg` with all of `fds` attached to its first byte.
    pub fn send_fds(&self, msg: &WorkerMsg, fds: &[RawFd]) -> io::Result<()> {
        let frame = encode(msg).map_err(proto_err)?;
        let mut sent = match fds {
            [] => 0,
            fds => self.stream.send_with_fd(&frame, fds)?,
        };
        if !fds.is_empty() && sent == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed"));
        }
        while sent < frame.len() {
            sent += (&self.stream).write(&frame[sent..])?;
        }
        Ok(())
    }

    /// Receives the next message and, for a message that carries one, its fd.
    /// EOF is `UnexpectedEof`; a read timeout set on the stream applies.
    pub fn recv(&mut self) -> io::Result<(WorkerMsg, Option<File>)> {
        let (msg, mut fds) = self.recv_fds()?;
        Ok((msg, fds.pop()))
    }

    /// Receives the next message with the fds it carries
    /// ([`WorkerMsg::fd_count`], or fewer if fewer came).
    pub fn recv_fds(&mut self) -> io::Result<(WorkerMsg, Vec<File>)> {
        loop {
            if let Some(msg) = self.frames.pop::<WorkerMsg>().map_err(proto_err)? {
                let want = msg.fd_count();
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
                // SAFETY: the kernel just installed this fd in our table
                // for us; nothing else owns it.
                let file = unsafe { File::from_raw_fd(fd) };
                set_cloexec(&file);
                self.fds.push_back(file);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the supervisor closed the connection",
                ));
            }
            self.frames.push(&chunk[..n]);
        }
    }
}

/// Received fds are not close-on-exec; a worker never passes them to a
/// child, so make sure of it.
fn set_cloexec(file: &File) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let _ = fcntl(file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

#[cfg(test)]
mod tests {
    use super::*;
    use nydus_protocol::handoff::WorkerState;
    use std::io::{Read, Seek};
    use std::os::unix::io::AsRawFd;

    #[test]
    fn restore_with_fd_then_activate() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"fuse").unwrap();
        let sup = Conn::new(a);
        let restore = WorkerMsg::Restore {
            state: WorkerState::default(),
            resend: true,
        };
        sup.send(&restore, Some(file.as_raw_fd())).unwrap();
        sup.send(&WorkerMsg::Activate, None).unwrap();
        let mut me = Conn::new(b);
        let (m, fd) = me.recv().unwrap();
        assert_eq!(m, restore);
        let mut f = fd.expect("fd with Restore");
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "fuse");
        assert_eq!(me.recv().unwrap().0, WorkerMsg::Activate);
        drop(sup);
        let e = me.recv().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_vhost_state_carries_all_its_fds_in_order() {
        use nydus_protocol::handoff::{VhostUserState, VringHandover};
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<File> = (0..3)
            .map(|i| {
                let mut f = tempfile::tempfile().unwrap();
                write!(f, "fd{i}").unwrap();
                f
            })
            .collect();
        let state = VhostUserState {
            connected: true,
            vrings: vec![VringHandover {
                kick: true,
                call: true,
                ..VringHandover::default()
            }],
            ..VhostUserState::default()
        };
        let msg = WorkerMsg::VhostState { state: Some(state) };
        let raw: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
        let sender = Conn::new(a);
        sender.send_fds(&msg, &raw).unwrap();
        sender.send(&WorkerMsg::Stop, None).unwrap();
        let mut me = Conn::new(b);
        let (got, fds) = me.recv_fds().unwrap();
        assert_eq!(got, msg);
        let texts: Vec<String> = fds
            .into_iter()
            .map(|mut f| {
                f.rewind().unwrap();
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            })
            .collect();
        assert_eq!(texts, ["fd0", "fd1", "fd2"]);
        let (next, fds) = me.recv_fds().unwrap();
        assert_eq!((next, fds.len()), (WorkerMsg::Stop, 0));
    }
}
