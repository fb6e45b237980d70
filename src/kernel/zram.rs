//! zram devices through sysfs (Documentation/admin-guide/blockdev/zram.rst): `disksize`, `reset`,
//! and `/sys/class/zram-control/hot_remove`.

use std::fs;
use std::io;
use std::path::PathBuf;

/// The zram device number of a block device name (`zram3` → 3), if it is one.
pub fn zram_id(kname: &str) -> Option<u32> {
    kname.strip_prefix("zram")?.parse().ok()
}

fn attr(id: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/sys/block/zram{id}/{name}"))
}

/// Give a zram device's memory back: `reset` (EBUSY while anything has it open), then remove the
/// device where the kernel allows (zram-control; device 0 may stay, at size 0). Returns whether
/// the device itself is gone.
pub fn free(id: u32) -> io::Result<bool> {
    fs::write(attr(id, "reset"), "1")?;
    match fs::write("/sys/class/zram-control/hot_remove", id.to_string()) {
        Ok(()) => Ok(true),
        Err(_) => Ok(false),
    }
}

/// The size a zram device was given (0 after a reset).
pub fn disksize(id: u32) -> io::Result<u64> {
    fs::read_to_string(attr(id, "disksize"))?
        .trim()
        .parse()
        .map_err(|e| io::Error::other(format!("zram{id}/disksize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(zram_id("zram0"), Some(0));
        assert_eq!(zram_id("zram12"), Some(12));
        assert_eq!(zram_id("loop0"), None);
        assert_eq!(zram_id("zramx"), None);
    }
}
