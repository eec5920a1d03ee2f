//! What a host offers for shared (lvmlockd) VGs, read from tool output: which lock managers
//! this lvm was built for, lvm configuration values and the host's system ID. Pure parsing;
//! the commands are run by [`crate::Lvm`] (lockspaces: [`crate::lockspace`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An lvmlockd lock manager, as `vgcreate --locktype` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockType {
    Sanlock,
    Dlm,
    /// Seagate's in-drive mutex; few distributions build lvm with it (Debian 12 does not).
    Idm,
}

impl LockType {
    pub const ALL: [LockType; 3] = [LockType::Sanlock, LockType::Dlm, LockType::Idm];

    pub fn as_str(self) -> &'static str {
        match self {
            LockType::Sanlock => "sanlock",
            LockType::Dlm => "dlm",
            LockType::Idm => "idm",
        }
    }
}

impl fmt::Display for LockType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LockType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LockType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown lock type {s:?} (sanlock, dlm or idm)"))
    }
}

/// The lock managers this lvm was configured with, from the `Configuration:` line of
/// `lvm version` (`--enable-lvmlockd-sanlock` ...). An lvm built without one answers
/// `vgcreate --locktype` for it only after lvmlockd is running, and then vaguely ("lock
/// manager idm is not supported by lvmlockd"), so callers check this first.
pub fn supported_lock_types(version_output: &str) -> Vec<LockType> {
    let Some(config) = version_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Configuration:"))
    else {
        return Vec::new();
    };
    let flags: Vec<&str> = config.split_whitespace().collect();
    LockType::ALL
        .into_iter()
        .filter(|t| {
            let flag = format!("--enable-lvmlockd-{}", t.as_str());
            flags
                .iter()
                .any(|f| *f == flag || *f == format!("{flag}=yes"))
        })
        .collect()
}

/// `key=value` lines of `lvm config --typeconfig full a/b c/d`, values unquoted. Commented
/// lines (`# key=value`, how lvm prints defaults in some modes) count too.
pub fn parse_config_values(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('#').trim();
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// The host's system ID from `lvm systemid` (`  system ID: node1`); `None` when the host has
/// none (the line is there, empty).
pub fn parse_system_id(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("system ID:"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lvm version` of Debian 12's lvm2 2.03.16 (Configuration line shortened).
    const DEBIAN: &str = "  LVM version:     2.03.16(2) (2022-05-18)\n  Library version: 1.02.185 (2022-05-18)\n  Configuration:   ./configure --build=x86_64-linux-gnu --prefix=/usr --enable-dmeventd --enable-editline --enable-lvmlockd-dlm --enable-lvmlockd-sanlock --enable-lvmpolld --enable-notify-dbus\n";

    #[test]
    fn lock_types_from_the_configure_line() {
        assert_eq!(
            supported_lock_types(DEBIAN),
            vec![LockType::Sanlock, LockType::Dlm]
        );
        let all = DEBIAN.replace(
            "--enable-lvmpolld",
            "--enable-lvmlockd-idm --enable-lvmpolld",
        );
        assert_eq!(supported_lock_types(&all), LockType::ALL.to_vec());
        assert!(supported_lock_types("  LVM version: 2.03.16(2)\n").is_empty());
        // A prefix of a flag is not the flag.
        assert!(supported_lock_types("Configuration: --enable-lvmlockd-sanlockx").is_empty());
    }

    #[test]
    fn lock_type_names() {
        for t in LockType::ALL {
            assert_eq!(t.as_str().parse::<LockType>().unwrap(), t);
        }
        assert!("none".parse::<LockType>().is_err());
    }

    #[test]
    fn config_values_verbatim_from_2_03_16() {
        let out = "use_lvmlockd=0\nhost_id=0\nsystem_id_source=\"none\"\n# use_devicesfile=0\n";
        let v = parse_config_values(out);
        assert_eq!(v["use_lvmlockd"], "0");
        assert_eq!(v["host_id"], "0");
        assert_eq!(v["system_id_source"], "none");
        assert_eq!(v["use_devicesfile"], "0");
    }

    #[test]
    fn system_id() {
        assert_eq!(parse_system_id("  system ID: \n"), None);
        assert_eq!(
            parse_system_id("  system ID: node-1\n"),
            Some("node-1".to_string())
        );
        assert_eq!(parse_system_id(""), None);
    }
}
