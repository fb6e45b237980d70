//! The `crypt` target's table parameters (drivers/md/dm-crypt.c, `crypt_ctr` and `crypt_status`
//! for STATUSTYPE_TABLE):
//!
//! `<cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>...]`
//!
//! `offset` is where the encrypted payload starts on `device`, in 512-byte sectors: for a LUKS
//! container opened by cryptsetup that is the header's data offset (16 MiB by default for LUKS2).
//! The key is the volume key in hex, `-` (no key), or a kernel keyring reference
//! (`:<size>:<type>:<description>`, what cryptsetup 2.x loads for LUKS2).

use std::fmt;
use std::str::FromStr;

use devicemapper::Sectors;

use super::devnum::DevNum;
use super::dmtable::{perr, ParseError, Words};

/// `crypt` target parameters. The kernel prints the device as `major:minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptParams {
    pub cipher: String,
    pub key: String,
    pub iv_offset: u64,
    pub dev: DevNum,
    /// Start of the payload on `dev`.
    pub offset: Sectors,
    /// The optional parameters after their count (`allow_discards`, `sector_size:4096`, ...).
    pub options: Vec<String>,
}

impl CryptParams {
    /// Whether the key is a kernel keyring reference rather than the key itself.
    pub fn key_in_keyring(&self) -> bool {
        self.key.starts_with(':')
    }
}

impl fmt::Display for CryptParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.cipher, self.key, self.iv_offset, self.dev, *self.offset
        )?;
        if !self.options.is_empty() {
            write!(f, " {}", self.options.len())?;
            for o in &self.options {
                write!(f, " {o}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for CryptParams {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "crypt table";
        let mut w = Words::new(WHAT, s);
        let cipher = w.word("cipher")?.to_string();
        let key = w.word("key")?.to_string();
        let iv_offset = w.num("iv_offset")?;
        let dev = w.dev("device")?;
        let offset = Sectors(w.num("offset")?);
        let mut options = vec![];
        if let Ok(n) = w.word("option count") {
            let n: usize = n
                .parse()
                .map_err(|_| perr(WHAT, s, format!("option count {n:?} is not a number")))?;
            for _ in 0..n {
                options.push(w.word("option")?.to_string());
            }
            if let Ok(extra) = w.word("end") {
                return Err(perr(WHAT, s, format!("unexpected {extra:?}")));
            }
        }
        Ok(CryptParams {
            cipher,
            key,
            iv_offset,
            dev,
            offset,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_luks2_table_line_round_trips() {
        // dmsetup table of a LUKS2 container cryptsetup 2.6 opened (keyring key, 16 MiB offset)
        let t = "aes-xts-plain64 :64:logon:cryptsetup:6f6c1a7e-1b0e-4c4e-9d1e-0f6d2f8a8f1b-d0 0 254:1 32768";
        let p: CryptParams = t.parse().unwrap();
        assert_eq!(p.dev, "254:1".parse().unwrap());
        assert_eq!(p.offset, Sectors(32768));
        assert!(p.key_in_keyring());
        assert!(p.options.is_empty());
        assert_eq!(p.to_string(), t);
    }

    #[test]
    fn options_and_a_hex_key() {
        let t = "aes-xts-plain64 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 0 8:2 4096 2 allow_discards sector_size:4096";
        let p: CryptParams = t.parse().unwrap();
        assert!(!p.key_in_keyring());
        assert_eq!(p.offset, Sectors(4096));
        assert_eq!(p.options, ["allow_discards", "sector_size:4096"]);
        assert_eq!(p.to_string(), t);
        let n: CryptParams = "cipher_null-ecb - 0 7:0 0".parse().unwrap();
        assert_eq!(n.key, "-");
        assert_eq!(n.offset, Sectors(0));
    }

    #[test]
    fn broken_lines_are_refused() {
        assert!("aes-xts-plain64 - 0 254:1".parse::<CryptParams>().is_err());
        assert!("aes-xts-plain64 - 0 /dev/vda 0"
            .parse::<CryptParams>()
            .is_err());
        assert!("aes-xts-plain64 - x 254:1 0"
            .parse::<CryptParams>()
            .is_err());
        assert!("aes-xts-plain64 - 0 254:1 0 2 allow_discards"
            .parse::<CryptParams>()
            .is_err());
        assert!("aes-xts-plain64 - 0 254:1 0 1 a b"
            .parse::<CryptParams>()
            .is_err());
    }
}
