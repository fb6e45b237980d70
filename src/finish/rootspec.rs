//! How a boot entry (`root=` on a kernel command line) or an fstab line names the root
//! filesystem, as a typed value, and whether that name reaches a given device.
//!
//! rootshift gives the *filesystem* a home on a new device. A name that follows the filesystem
//! (`UUID=`, and `LABEL=` once the detached copy is relabelled) boots the target after the
//! migration; a name of the *old device* (`PARTUUID=`, `PARTLABEL=`, `/dev/sda2`) still points at
//! the stale source, and so does no `root=` at all (systemd's gpt-auto finds the root by the
//! partition type on the disk the boot loader came from).

use std::fmt;
use std::str::FromStr;

use crate::disk::DiskPart;

/// One `root=` value (or an fstab device field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    Uuid(String),
    PartUuid(String),
    Label(String),
    PartLabel(String),
    /// A device path: `/dev/vda2`, `/dev/disk/by-…/…`, `/dev/mapper/…`.
    Path(String),
    /// Anything else (`live:…`, `zfs:…`, `nfs:…`, `/dev/nfs`, a major:minor like `fe02`).
    Other(String),
}

impl FromStr for RootSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<RootSpec, String> {
        let s = s.trim().trim_matches('"');
        if s.is_empty() {
            return Err("an empty root= value".into());
        }
        let tagged = |tag: &str| {
            s.get(..tag.len())
                .filter(|p| p.eq_ignore_ascii_case(tag))
                .map(|_| s[tag.len()..].to_string())
        };
        Ok(if let Some(v) = tagged("UUID=") {
            RootSpec::Uuid(v)
        } else if let Some(v) = tagged("PARTUUID=") {
            RootSpec::PartUuid(v)
        } else if let Some(v) = tagged("LABEL=") {
            RootSpec::Label(v)
        } else if let Some(v) = tagged("PARTLABEL=") {
            RootSpec::PartLabel(v)
        } else if s.starts_with("/dev/") && s != "/dev/nfs" && s != "/dev/ram" {
            RootSpec::Path(s.to_string())
        } else {
            RootSpec::Other(s.to_string())
        })
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSpec::Uuid(v) => write!(f, "UUID={v}"),
            RootSpec::PartUuid(v) => write!(f, "PARTUUID={v}"),
            RootSpec::Label(v) => write!(f, "LABEL={v}"),
            RootSpec::PartLabel(v) => write!(f, "PARTLABEL={v}"),
            RootSpec::Path(v) | RootSpec::Other(v) => f.write_str(v),
        }
    }
}

/// What a device and its filesystem are known by: the names a `root=` may use for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootIds {
    pub fs_uuid: String,
    pub fs_label: Option<String>,
    pub partuuid: Option<String>,
    pub partlabel: Option<String>,
    /// Paths that resolve to the device (its /dev node and /dev/disk/by-* links).
    pub paths: Vec<String>,
}

impl RootSpec {
    /// Whether this name reaches the device `ids` describes.
    pub fn names(&self, ids: &RootIds) -> bool {
        let eq = |a: &str, b: &Option<String>| b.as_deref().is_some_and(|b| a == b);
        match self {
            RootSpec::Uuid(u) => u.eq_ignore_ascii_case(&ids.fs_uuid),
            RootSpec::PartUuid(p) => ids
                .partuuid
                .as_deref()
                .is_some_and(|q| p.eq_ignore_ascii_case(q)),
            RootSpec::Label(l) => eq(l, &ids.fs_label),
            RootSpec::PartLabel(l) => eq(l, &ids.partlabel),
            RootSpec::Path(p) => ids.paths.iter().any(|q| q == p),
            RootSpec::Other(_) => false,
        }
    }

    /// Whether the name moves with the filesystem when rootshift migrates it (the detached
    /// source gets a new UUID and a new label), rather than naming the old device.
    pub fn follows_filesystem(&self) -> bool {
        matches!(self, RootSpec::Uuid(_) | RootSpec::Label(_))
    }
}

/// The `root=` of every kernel a grub.cfg boots (`linux`/`linuxefi`/`linux16` lines), in order.
pub fn grub_cfg_roots(cfg: &str) -> Vec<RootSpec> {
    cfg.lines()
        .filter(|l| {
            matches!(
                l.split_whitespace().next(),
                Some("linux" | "linuxefi" | "linux16")
            )
        })
        .filter_map(|l| root_of_words(l.split_whitespace()))
        .collect()
}

/// The `root=` of a Boot Loader Specification entry's `options` lines.
pub fn loader_entry_roots(entry: &str) -> Vec<RootSpec> {
    entry
        .lines()
        .filter(|l| l.split_whitespace().next() == Some("options"))
        .filter_map(|l| root_of_words(l.split_whitespace()))
        .collect()
}

fn root_of_words<'a>(words: impl Iterator<Item = &'a str>) -> Option<RootSpec> {
    // the last root= wins, as in the kernel
    words
        .filter_map(|w| w.strip_prefix("root="))
        .last()
        .and_then(|v| v.parse().ok())
}

/// What the new root (`root_uuid`, on the `target` partition) is known by, for checking the `root=` the boot entries name: its
/// filesystem UUID and label, and the target partition's PARTUUID, PARTLABEL and paths.
pub fn ids_of(root_uuid: &str, target: Option<&DiskPart>) -> RootIds {
    let mut ids = RootIds {
        fs_uuid: root_uuid.to_string(),
        ..RootIds::default()
    };
    if let Some(dp) = target {
        let part = dp.part();
        ids.partuuid = part.guid.map(|g| g.to_string());
        ids.partlabel = Some(part.name.clone()).filter(|n| !n.is_empty());
        if let Some(dev) = crate::disk::part_dev(&dp.disk, dp.number) {
            let path = dev.path.display().to_string();
            ids.fs_label = crate::tools::run("blkid", &["-p", "-s", "LABEL", "-o", "value", &path])
                .ok()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty());
            ids.paths.push(path);
        }
    }
    for dir in [
        "by-uuid",
        "by-partuuid",
        "by-partlabel",
        "by-label",
        "by-id",
        "by-path",
    ] {
        if let Ok(rd) = std::fs::read_dir(std::path::Path::new("/dev/disk").join(dir)) {
            for e in rd.flatten() {
                if let (Ok(t), Some(first)) = (std::fs::canonicalize(e.path()), ids.paths.first()) {
                    if t.display().to_string() == *first {
                        ids.paths.push(e.path().display().to_string());
                    }
                }
            }
        }
    }
    ids
}

/// The check after writing a boot configuration: some entry's `root=` must name the new root
/// (by UUID, PARTUUID, LABEL, PARTLABEL or a path to it — Debian's `GRUB_DISABLE_LINUX_UUID=true`
/// writes `root=/dev/…` or `root=PARTUUID=…`).
pub fn entries_boot(roots: &[RootSpec], ids: &RootIds) -> bool {
    roots.iter().any(|r| r.names(ids))
}

/// Without the install step nothing rewrites how the system finds its root: a boot entry or an
/// fstab line that names the *old device* (PARTUUID=, PARTLABEL=, a /dev path) — or a kernel
/// command line with no `root=` (systemd's gpt-auto) — would boot the stale source after the
/// migration. The refusal text (problem and way out) when that is so, else None. `cmdline` is
/// `/proc/cmdline`; `fstab_root` the device field of fstab's `/` line, if any; `gpt_auto` whether
/// systemd's gpt-auto generator is there to find a root without `root=` (without it, and without
/// `root=`, the root was set up by something else — an initramfs of its own, a test init).
pub fn stale_after_migration(
    cmdline: &str,
    fstab_root: Option<&str>,
    gpt_auto: bool,
) -> Option<String> {
    let root = cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("root="))
        .map(|v| v.parse::<RootSpec>());
    let mut names = vec![];
    match root {
        None if gpt_auto => names.push(
            "the kernel command line has no root= (systemd's gpt-auto finds the root by partition type)"
                .to_string(),
        ),
        Some(Ok(r)) if !r.follows_filesystem() && !matches!(r, RootSpec::Other(_)) => {
            names.push(format!("the kernel command line names root={r}"))
        }
        _ => {}
    }
    if let Some(Ok(f)) = fstab_root.map(|f| f.parse::<RootSpec>()) {
        if !f.follows_filesystem() && !matches!(f, RootSpec::Other(_)) {
            names.push(format!("/etc/fstab mounts / from {f}"));
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "{}: that names the device the root is on now, so after the migration the next boot would \
         use the stale old copy",
        names.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> RootIds {
        RootIds {
            fs_uuid: "3e4fb094-2b7c-436c-8af5-ba861c002d33".into(),
            fs_label: Some("rootfs".into()),
            partuuid: Some("4B06888E-1111-2222-3333-444455556666".into()),
            partlabel: Some("root".into()),
            paths: vec!["/dev/vdb2".into(), "/dev/disk/by-partlabel/root".into()],
        }
    }

    #[test]
    fn parses_and_prints_every_form() {
        for (text, want) in [
            ("UUID=3e4f", RootSpec::Uuid("3e4f".into())),
            ("uuid=3e4f", RootSpec::Uuid("3e4f".into())),
            ("PARTUUID=4b06-01", RootSpec::PartUuid("4b06-01".into())),
            ("LABEL=rootfs", RootSpec::Label("rootfs".into())),
            ("PARTLABEL=root", RootSpec::PartLabel("root".into())),
            ("/dev/sda2", RootSpec::Path("/dev/sda2".into())),
            ("live:CDLABEL=X", RootSpec::Other("live:CDLABEL=X".into())),
            ("/dev/nfs", RootSpec::Other("/dev/nfs".into())),
        ] {
            let got: RootSpec = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            if !text.starts_with("uuid") {
                assert_eq!(got.to_string(), text);
            }
        }
        assert!("".parse::<RootSpec>().is_err());
    }

    #[test]
    fn names_the_device_by_any_of_its_ids() {
        let i = ids();
        assert!(RootSpec::Uuid("3E4FB094-2B7C-436C-8AF5-BA861C002D33".into()).names(&i));
        assert!(!RootSpec::Uuid("3e4fb094".into()).names(&i));
        assert!(RootSpec::PartUuid("4b06888e-1111-2222-3333-444455556666".into()).names(&i));
        assert!(!RootSpec::PartUuid("4b06888e-1111-2222-3333-444455550000".into()).names(&i));
        assert!(RootSpec::Label("rootfs".into()).names(&i));
        assert!(!RootSpec::Label("ROOTFS".into()).names(&i));
        assert!(RootSpec::PartLabel("root".into()).names(&i));
        assert!(RootSpec::Path("/dev/vdb2".into()).names(&i));
        assert!(!RootSpec::Path("/dev/vda2".into()).names(&i));
        assert!(!RootSpec::Other("live:LABEL=x".into()).names(&i));
    }

    #[test]
    fn only_uuid_and_label_follow_the_filesystem() {
        assert!(RootSpec::Uuid("x".into()).follows_filesystem());
        assert!(RootSpec::Label("x".into()).follows_filesystem());
        assert!(!RootSpec::PartUuid("x".into()).follows_filesystem());
        assert!(!RootSpec::PartLabel("x".into()).follows_filesystem());
        assert!(!RootSpec::Path("/dev/sda2".into()).follows_filesystem());
    }

    #[test]
    fn grub_cfg_roots_read_every_kernel_entry() {
        // Debian with GRUB_DISABLE_LINUX_UUID=true: the entry names the partition by its path
        let cfg = "menuentry 'Debian' {\n\tsearch --no-floppy --fs-uuid --set=root 3e4f\n\
                   \techo 'Loading Linux'\n\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/vdb2 ro quiet\n\
                   \tinitrd\t/boot/initrd.img-6.1.0-50-amd64\n}\n\
                   submenu 'Advanced' {\n  menuentry 'x' {\n    linux /boot/vmlinuz root=PARTUUID=4b06-02 ro single\n  }\n}\n";
        assert_eq!(
            grub_cfg_roots(cfg),
            vec![
                RootSpec::Path("/dev/vdb2".into()),
                RootSpec::PartUuid("4b06-02".into())
            ]
        );
        // the old check (a substring "root=UUID=<uuid>") would have refused this cfg although
        // its first entry boots the new root
        assert!(!cfg.contains("root=UUID=3e4fb094-2b7c-436c-8af5-ba861c002d33"));
        assert!(grub_cfg_roots(cfg)[0].names(&ids()));
        // echo lines and other commands mentioning root= are not kernel entries
        assert!(grub_cfg_roots("echo root=UUID=1\nset root=hd0,gpt2\n").is_empty());
    }

    #[test]
    fn loader_entries_last_root_wins() {
        let e = "title Debian\nlinux /x/linux\noptions root=UUID=1 rw root=PARTUUID=4b06-02\n";
        assert_eq!(
            loader_entry_roots(e),
            vec![RootSpec::PartUuid("4b06-02".into())]
        );
    }

    #[test]
    fn a_root_named_by_the_old_device_is_stale_after_a_migration() {
        assert_eq!(
            stale_after_migration(
                "BOOT_IMAGE=/vmlinuz root=UUID=3e4f ro quiet",
                Some("UUID=3e4f"),
                true
            ),
            None
        );
        assert_eq!(
            stale_after_migration("root=LABEL=rootfs ro", Some("LABEL=rootfs"), true),
            None
        );
        let m = stale_after_migration("root=PARTUUID=4b06-02 ro", Some("UUID=3e4f"), true).unwrap();
        assert!(m.contains("root=PARTUUID=4b06-02"), "{m}");
        let m = stale_after_migration("root=/dev/sda2 ro", Some("/dev/sda2"), false).unwrap();
        assert!(
            m.contains("root=/dev/sda2") && m.contains("/etc/fstab mounts / from /dev/sda2"),
            "{m}"
        );
        assert!(stale_after_migration("quiet splash", None, true)
            .unwrap()
            .contains("no root="));
        assert_eq!(stale_after_migration("console=ttyS0", None, false), None);
        // a live medium's or a network root is not the old device's name
        assert_eq!(
            stale_after_migration("root=live:CDLABEL=X rd.live.image", None, true),
            None
        );
    }
}
