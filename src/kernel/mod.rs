//! Kernel interfaces: device-mapper, block devices, mounts, filesystems.
//!
//! Every `unsafe` block and raw ioctl of rootshift lives in [`ioctl`] (plus the devicemapper
//! crate for dm); the rest of the crate only sees the safe functions here.

pub mod blockdev;
pub mod devnum;
pub mod dm;
pub mod dmcrypt;
pub mod dmtable;
pub mod fs;
pub mod ioctl;
pub mod loopdev;
pub mod luks2;
pub mod md;
pub mod memexe;
pub mod memlock;
pub mod mounts;
pub mod overlay;
pub mod zram;
