//! The device against a fake VMM: vhost's own `Frontend` on a real socket,
//! guest memory in a shared file, virtqueues written by hand. One FUSE
//! request is answered, the device is handed to a second service mid-
//! connection, and the next request (and the next vhost-user message) is
//! answered by the successor at the right ring positions.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse_backend_rs::api::{Vfs, VfsOptions};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;

const MEM: usize = 1 << 20;
/// The fake VMM's address of guest memory (vring addresses are given in it).
const UA: u64 = 0x10_0000_0000;
const QSIZE: u16 = 16;
/// Request queue 1's rings; queue 0 (hiprio) gets its own.
fn rings(q: u64) -> (u64, u64, u64) {
    let base = 0x1000 + q * 0x3000;
    (base, base + 0x1000, base + 0x2000)
}

struct Vm {
    fe: Frontend,
    mem: GuestMemoryMmap,
    kick: Vec<EventFd>,
    call: Vec<EventFd>,
    sent: u16,
}

impl Vm {
    fn boot(sock: &Path, file: &File) -> Vm {
        let mut fe = Frontend::connect(sock, 2).expect("connect");
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        let want = (1 << VIRTIO_F_VERSION_1) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        assert_eq!(features & want, want, "{features:#x}");
        fe.set_features(want).unwrap();
        let pf = fe.get_protocol_features().unwrap();
        fe.set_protocol_features(pf & VhostUserProtocolFeatures::MQ)
            .unwrap();
        assert_eq!(fe.get_queue_num().unwrap(), 2);
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: UA,
            mmap_offset: 0,
            mmap_handle: file.as_raw_fd(),
        }])
        .unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            MEM,
            Some(FileOffset::new(file.try_clone().unwrap(), 0)),
        )])
        .unwrap();
        let (mut kick, mut call) = (Vec::new(), Vec::new());
        for q in 0..2usize {
            let (desc, avail, used) = rings(q as u64);
            fe.set_vring_num(q, QSIZE).unwrap();
            let cfg = VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: UA + desc,
                used_ring_addr: UA + used,
                avail_ring_addr: UA + avail,
                log_addr: None,
            };
            fe.set_vring_addr(q, &cfg).unwrap();
            fe.set_vring_base(q, 0).unwrap();
            let (k, c) = (
                EventFd::new(EFD_NONBLOCK).unwrap(),
                EventFd::new(EFD_NONBLOCK).unwrap(),
            );
            fe.set_vring_call(q, &c).unwrap();
            fe.set_vring_kick(q, &k).unwrap();
            fe.set_vring_enable(q, true).unwrap();
            kick.push(k);
            call.push(c);
        }
        Vm {
            fe,
            mem,
            kick,
            call,
            sent: 0,
        }
    }

    /// Puts one FUSE request on queue 1, kicks, waits for the reply;
    /// returns (used index, reply bytes).
    fn request(&mut self, opcode: u32, nodeid: u64, body: &[u8]) -> (u16, Vec<u8>) {
        let n = self.sent;
        let (desc, avail, used) = rings(1);
        let (req, reply) = (
            0x10000 + u64::from(n) * 0x2000,
            0x11000 + u64::from(n) * 0x2000,
        );
        let mut msg = Vec::new();
        msg.extend_from_slice(&(40 + body.len() as u32).to_le_bytes());
        msg.extend_from_slice(&opcode.to_le_bytes());
        msg.extend_from_slice(&(100 + u64::from(n)).to_le_bytes()); // unique
        msg.extend_from_slice(&nodeid.to_le_bytes());
        msg.extend_from_slice(&[0u8; 16]); // uid gid pid extlen pad
        msg.extend_from_slice(body);
        self.mem.write_slice(&msg, GuestAddress(req)).unwrap();
        let (d0, d1) = (u64::from(2 * n % QSIZE), u64::from((2 * n + 1) % QSIZE));
        let put = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
            let at = desc + i * 16;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        };
        put(d0, req, msg.len() as u32, 1, d1 as u16); // NEXT
        put(d1, reply, 0x1000, 2, 0); // WRITE
        let slot = avail + 4 + 2 * u64::from(n % QSIZE);
        self.mem.write_obj(d0 as u16, GuestAddress(slot)).unwrap();
        self.sent = n + 1;
        self.mem
            .write_obj(self.sent, GuestAddress(avail + 2))
            .unwrap();
        self.kick[1].write(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            if idx == self.sent {
                break;
            }
            assert!(Instant::now() < deadline, "request {n} not answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(self.call[1].read().is_ok(), "no interrupt for request {n}");
        let elem = used + 4 + 8 * u64::from(n % QSIZE);
        let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
        assert_eq!(id as u64, d0, "used element of request {n}");
        let mut out = vec![0u8; len as usize];
        self.mem.read_slice(&mut out, GuestAddress(reply)).unwrap();
        (self.sent, out)
    }
}

/// fuse_out_header: len, error, unique.
fn header(reply: &[u8]) -> (u32, i32, u64) {
    let u32_at = |i: usize| u32::from_le_bytes(reply[i..i + 4].try_into().unwrap());
    let unique = u64::from_le_bytes(reply[8..16].try_into().unwrap());
    (u32_at(0), u32_at(4) as i32, unique)
}

fn service(
    sock: &Path,
    listener: UnixListener,
    vfs: &Arc<Vfs>,
    handover: Option<Handover>,
) -> (VirtiofsService, VhostHandle) {
    let (tx, _rx) = std::sync::mpsc::channel();
    // The receiver is dropped: a listener failure is then only returned.
    VirtiofsService::start(
        sock,
        listener,
        Arc::new(crate::daemon::VfsView::new(vfs.clone())),
        1,
        tx,
        Arc::new(InflightTable::default()),
        handover,
    )
    .expect("start")
}

#[test]
fn handover_mid_connection_keeps_ring_positions() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vfs.sock");
    let listener = bind(&sock).unwrap();
    let kept = listener.try_clone().unwrap();
    let file = tempfile::tempfile().unwrap();
    file.set_len(MEM as u64).unwrap();
    let vfs = Arc::new(Vfs::new(VfsOptions::default()));
    let (old, old_handle) = service(&sock, listener, &vfs, None);

    let mut vm = Vm::boot(&sock, &file);
    // FUSE_INIT 7.31.
    let init = [7u32, 31, 0x20000, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>();
    let (idx, reply) = vm.request(26, 0, &init);
    assert_eq!(idx, 1);
    let (len, err, unique) = header(&reply);
    assert_eq!((err, unique, len as usize), (0, 100, reply.len()));

    let (state, fds) = old_handle.freeze().expect("freeze");
    assert!(state.connected);
    assert_eq!(state.vrings.len(), 2);
    assert_eq!(
        (state.vrings[1].next_avail, state.vrings[1].next_used),
        (1, 1)
    );
    assert_eq!(fds.len(), state.fd_count());
    assert!(old_handle.freeze().is_err(), "a second freeze");
    // The old service leaves the socket file to its successor.
    assert_eq!(old.stop(Event::Exit), ExitCode::SUCCESS);
    assert!(sock.exists());

    // The successor gets a fresh Vfs with the old one's snapshot.
    let vfs2 = Arc::new(Vfs::new(VfsOptions::default()));
    let mut snap = vfs.save_to_bytes().unwrap();
    vfs2.restore_from_bytes(&mut snap).unwrap();
    let (_new, _h) = service(&sock, kept, &vfs2, Some((state, fds)));
    // GETATTR of the root: answered by the successor in the next slot.
    let (idx, reply) = vm.request(3, 1, &[0u8; 16]);
    assert_eq!(idx, 2);
    let (len, err, unique) = header(&reply);
    assert_eq!((err, unique), (0, 101), "{reply:?}");
    assert_eq!(len as usize, reply.len());
    // The successor reads the next vhost-user messages whole, and stops
    // the ring where it is (as QEMU does on a guest reset).
    assert_eq!(
        vm.fe.get_features().unwrap() & (1 << VIRTIO_F_VERSION_1),
        1 << VIRTIO_F_VERSION_1
    );
    assert_eq!(vm.fe.get_vring_base(1).unwrap(), 2);

    // A guest reset after the upgrade: the VMM sets the ring up again (its
    // features first, which the successor's request handler learns then)
    // and the ring resumes at the base it gives.
    let want = (1 << VIRTIO_F_VERSION_1) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    vm.fe.set_features(want).unwrap();
    vm.fe.set_vring_base(1, 2).unwrap();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    vm.fe.set_vring_kick(1, &kick).unwrap();
    vm.fe.set_vring_enable(1, true).unwrap();
    vm.kick[1] = kick;
    let (idx, reply) = vm.request(3, 1, &[0u8; 16]);
    assert_eq!(idx, 3);
    assert_eq!(header(&reply).1, 0);
}
