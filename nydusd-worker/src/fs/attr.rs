//! Inode → `stat`, exactly as upstream nydusd presents it (format doc §7.3).

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64};
use nydus_protocol::rafs::Inode;

use super::RafsFs;

/// Reported block size (`st_blksize`, `f_bsize`).
pub const BLOCK_SIZE: u32 = 4096;

impl RafsFs {
    pub(super) fn stat(&self, inode: &Inode) -> stat64 {
        // SAFETY: stat64 is a plain C struct of integers; all-zero is valid.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_ino = inode.ino;
        st.st_mode = if inode.ino == self.root_ino {
            // Upstream forces the root's permission bits, keeping the type.
            (inode.mode & libc::S_IFMT) | 0o755
        } else {
            inode.mode
        };
        st.st_nlink = inode.nlink.into();
        if self.reader.super_info().explicit_uidgid {
            st.st_uid = inode.uid;
            st.st_gid = inode.gid;
        } else {
            st.st_uid = self.opts.uid;
            st.st_gid = self.opts.gid;
        }
        st.st_rdev = inode.rdev;
        st.st_size = inode.size as i64;
        st.st_blksize = BLOCK_SIZE.into();
        st.st_blocks = inode.size.div_ceil(512) as i64;
        if inode.mtime == 0 {
            // A stored mtime of 0 means "none": all three times become the
            // daemon's start time.
            st.st_mtime = self.opts.start_time;
            st.st_atime = self.opts.start_time;
            st.st_ctime = self.opts.start_time;
        } else {
            st.st_mtime = inode.mtime;
            st.st_mtime_nsec = inode.mtime_nsec.into();
        }
        st
    }

    pub(super) fn statfs_reply(&self) -> statvfs64 {
        let sb = self.reader.super_info();
        // SAFETY: statvfs64 is a plain C struct of integers; all-zero is valid.
        let mut st: statvfs64 = unsafe { std::mem::zeroed() };
        st.f_bsize = BLOCK_SIZE.into();
        st.f_frsize = BLOCK_SIZE.into();
        st.f_files = sb.inode_count;
        st.f_namemax = 255;
        st
    }
}
