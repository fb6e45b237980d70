#!/usr/bin/python3
"""A tree with every kind of metadata a file-by-file copy must carry, and its facts (issue 19's proof).

  treefacts.py make DIR    build DIR deterministically: owners (a symlink's too), modes (setuid, sticky), times
                           with nanoseconds (directories set last), xattrs of the user, trusted and security
                           namespaces, a POSIX ACL, a file capability, inode flags (nodump, noatime), hard links,
                           a sparse file, a device node, a fifo, a socket, a name that is not UTF-8
  treefacts.py facts DIR [--no-flags]
                           one line per entry, sorted by name bytes: type, mode, owner, size, allocation (sparse or
                           not), link group, mtime_ns, rdev, symlink target, content hash, inode flags, every xattr
                           (hex) except overlayfs' own trusted.overlay.*

`make` prints `no-flags: …` when the filesystem refuses FS_IOC_SETFLAGS (overlayfs over some uppers); `facts
--no-flags` then leaves the flags out. Two `facts` outputs of the original and of the copy must be equal. Times of access and change, inode numbers and
the device are not facts of the tree.
"""
import errno, fcntl, hashlib, os, socket, stat, struct, sys

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
NODUMP, NOATIME = 0x40, 0x80
T = 1_600_000_000_123_456_789  # a fixed time with nanoseconds


def acl_blob(user_id, perm):
    e = lambda tag, p, i: struct.pack('<HHI', tag, p, i)
    u = 0xFFFFFFFF
    return struct.pack('<I', 2) + e(1, 6, u) + e(2, perm, user_id) + e(4, 4, u) + e(0x10, 6, u) + e(0x20, 4, u)


def make(d):
    d = os.fsencode(d)
    j = lambda *p: os.path.join(d, *p)
    os.makedirs(j(b'sub/deeper'))
    with open(j(b'plain'), 'wb') as f:
        f.write(b'hello\n' * 1000)
    with open(j(b'sparse'), 'wb') as f:  # 16 MiB with 8 KiB of data in the middle
        f.seek(8 << 20)
        f.write(b'x' * 8192)
        f.truncate(16 << 20)
    with open(j(b'sub/setuid'), 'wb') as f:
        f.write(b'#!/bin/sh\n')
    with open(j(b'odd-\xff\xfe name'), 'wb') as f:
        f.write(b'not utf-8\n')
    with open(j(b'sub/deeper/capped'), 'wb') as f:
        f.write(b'capability\n')
    os.link(j(b'plain'), j(b'sub/plain-link'))
    os.link(j(b'plain'), j(b'sub/deeper/plain-link2'))
    os.symlink(b'../plain', j(b'sub/symlink'))
    os.lchown(j(b'sub/symlink'), 1234, 2345)
    os.mknod(j(b'null'), stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.mkfifo(j(b'fifo'), 0o640)
    s = socket.socket(socket.AF_UNIX)
    s.bind(j(b'sock'))
    s.close()
    os.chown(j(b'plain'), 1000, 1000)
    os.chown(j(b'sub/setuid'), 0, 50)
    os.chmod(j(b'sub/setuid'), 0o4750)
    os.chmod(j(b'sub'), 0o1777)
    os.setxattr(j(b'plain'), 'user.comment', b'a user xattr')
    os.setxattr(j(b'plain'), 'trusted.rootshift', b'\x00\x01binary')
    os.setxattr(j(b'sub'), 'user.dir', b'on a directory')
    os.setxattr(j(b'sparse'), 'security.rootshift', b'security namespace')
    os.setxattr(j(b'sub/setuid'), 'system.posix_acl_access', acl_blob(1000, 5))
    os.setxattr(j(b'sub/deeper'), 'system.posix_acl_default', acl_blob(1001, 7))
    # CAP_NET_RAW (13), effective: vfs_cap_data revision 2
    os.setxattr(j(b'sub/deeper/capped'), 'security.capability', struct.pack('<IIIII', 0x02000001, 1 << 13, 0, 0, 0))
    fd = os.open(j(b'sparse'), os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack('i', NODUMP | NOATIME))
    except OSError as e:  # overlayfs passes FS_IOC_SETFLAGS on only for some upper filesystems
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTTY):
            raise
        print(f'no-flags: FS_IOC_SETFLAGS: {e.strerror}')
    os.close(fd)
    for n, p in enumerate([b'plain', b'sparse', b'sub/setuid', b'odd-\xff\xfe name', b'sub/deeper/capped', b'null',
                           b'fifo', b'sock']):
        os.utime(j(p), ns=(T + n, T + 1000 * n))
    os.utime(j(b'sub/symlink'), ns=(T, T + 77), follow_symlinks=False)
    for n, p in enumerate([b'sub/deeper', b'sub', b'']):  # directories last, deepest first
        os.utime(j(p), ns=(T, T + 5000 + n))


def facts(d, flags=True):
    d = os.fsencode(d)
    links, out = {}, []
    for top, dirs, files in os.walk(d):  # a link group is named by its smallest name (readdir order differs)
        for n in files:
            st = os.lstat(os.path.join(top, n))
            if stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(os.path.join(top, n), d).hex()
                k = (st.st_dev, st.st_ino)
                links[k] = min(links.get(k, rel), rel)
    for top, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(top, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, d)
            f = [rel.hex(), stat.filemode(st.st_mode), f'{st.st_uid}:{st.st_gid}', f'mtime={st.st_mtime_ns}']
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                with open(p, 'rb') as fh:
                    f.append('sha256=' + hashlib.sha256(fh.read()).hexdigest())
                f += [f'size={st.st_size}', f'nlink={st.st_nlink}', f'group={links[key]}',
                      'sparse' if st.st_blocks * 512 < st.st_size else 'dense']
                if flags:
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        fl = struct.unpack('i', fcntl.ioctl(fd, FS_IOC_GETFLAGS, b'\0' * 4))[0]
                    finally:
                        os.close(fd)
                    f.append(f'flags={fl & (NODUMP | NOATIME):#x}')
            elif stat.S_ISLNK(st.st_mode):
                f.append('-> ' + os.readlink(p).hex())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                f.append(f'rdev={os.major(st.st_rdev)}:{os.minor(st.st_rdev)}')
            if not stat.S_ISLNK(st.st_mode):
                for x in sorted(os.listxattr(p)):
                    if not x.startswith('trusted.overlay.'):
                        f.append(f'{x}={os.getxattr(p, x).hex()}')
            out.append(' '.join(f))
    print('\n'.join(sorted(out)))


if __name__ == '__main__':
    if sys.argv[1] == 'make':
        make(sys.argv[2])
    else:
        facts(sys.argv[2], flags='--no-flags' not in sys.argv[3:])
