//! A copy of rootshift's own binary that lives in memory, to exec the guardian from.
//!
//! The guardian must not depend on `/` (it runs while `/` may be suspended), so it cannot run
//! from the installed binary. A copy in /run used to serve, but initramfs-tools mounts /run with
//! `noexec` and systemd keeps that mount, so exec from /run fails with EACCES on every Debian or
//! Ubuntu system booted by initramfs-tools. A sealed memfd (anonymous shmem, like tmpfs) has
//! neither problem: it is not on any mount, and nothing can change it once sealed.
//!
//! Exec'd as `/proc/<our pid>/fd/<n>`: the path works for a child that is itself exec'd through
//! another program (`systemd-run --scope` runs it), as long as we hold the fd, which we do until
//! the guardian reports ready. The fd is a read-only reopen: exec refuses a file open for writing.
//! Where `vm.memfd_noexec` is set, a memfd needs `MFD_EXEC` (Linux 6.3+); older kernels reject
//! that flag with EINVAL and allow exec without it.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// `MFD_EXEC` (include/uapi/linux/memfd.h; not in nix or libc yet).
const MFD_EXEC: MFdFlags = MFdFlags::from_bits_retain(0x0010);

/// rootshift's binary in a sealed, read-only memfd.
pub struct MemExe {
    file: File,
}

impl MemExe {
    /// Copy `/proc/self/exe` into a new sealed memfd named `name`.
    pub fn of_self(name: &std::ffi::CStr) -> Result<MemExe> {
        let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
        let fd: OwnedFd = match memfd_create(name, base | MFD_EXEC) {
            Err(nix::errno::Errno::EINVAL) => memfd_create(name, base),
            r => r,
        }
        .context("memfd_create for the guardian's copy of rootshift")?;
        let mut rw = File::from(fd);
        let mut exe = File::open("/proc/self/exe").context("opening /proc/self/exe")?;
        std::io::copy(&mut exe, &mut rw).context("copying rootshift into a memfd")?;
        fcntl(
            &rw,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SEAL
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_WRITE,
            ),
        )
        .context("sealing the memfd")?;
        let ro = format!("/proc/self/fd/{}", rw.as_raw_fd());
        let file = File::open(&ro).with_context(|| format!("reopening {ro} read-only"))?;
        drop(rw);
        Ok(MemExe { file })
    }

    /// The path to exec it by, valid for our children while `self` lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_ours_sealed_and_runs() {
        let m = MemExe::of_self(c"rootshift-test").unwrap();
        let p = m.path();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read("/proc/self/exe").unwrap()
        );
        // Sealed: not even root can write to it.
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(w.is_err());
        // It execs (the test binary lists its tests and exits 0).
        let out = std::process::Command::new(&p)
            .args(["--list", "--format", "terse"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}
