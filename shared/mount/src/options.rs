use nix::mount::MsFlags;

use crate::MountError;

/// What a CSI `mount_flags` list turns into: VFS flags for mount(2) plus the filesystem's own
/// option string (its `data` argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Comma-separated filesystem options, each one from the allow-list.
    pub data: String,
}

/// The only flags a plain (non-bind) mount may carry. Anything else (MS_BIND, MS_MOVE,
/// MS_REMOUNT, propagation changes) changes what mount(2) does, not how the result behaves,
/// so it must never arrive through options.
pub(crate) const VFS_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_SYNCHRONOUS)
    .union(MsFlags::MS_DIRSYNC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_LAZYTIME);

const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            data: String::new(),
        }
    }
}

impl MountOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn readonly(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }

    pub fn set_readonly(&mut self, readonly: bool) {
        self.flags.set(MsFlags::MS_RDONLY, readonly);
    }

    pub fn with_readonly(mut self, readonly: bool) -> Self {
        self.set_readonly(readonly);
        self
    }

    /// Adds one filesystem option (e.g. "nouuid" for an xfs snapshot), checked against the
    /// same allow-list as CSI mount flags.
    pub fn add_data_option(&mut self, option: &str) -> Result<(), MountError> {
        check_text(option)?;
        let (name, value) = split_option(option);
        if flag_effect(name).is_some() {
            return Err(invalid(option, "is a VFS flag, not a filesystem option"));
        }
        check_data_option(option, name, value)?;
        self.push_data(option);
        Ok(())
    }

    /// The filesystem options one by one; a quoted SELinux context stays whole.
    pub fn data_options(&self) -> Vec<String> {
        split_data(&self.data)
    }

    /// The options as mount(8) would print them, for logs and for comparing with what the
    /// mount table shows.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = vec![if self.readonly() { "ro" } else { "rw" }.to_string()];
        for (name, flag) in FLAG_NAMES {
            if self.flags.contains(*flag) {
                out.push((*name).to_string());
            }
        }
        out.extend(self.data_options());
        out
    }

    fn push_data(&mut self, option: &str) {
        if self.data_options().iter().any(|o| o == option) {
            return;
        }
        if !self.data.is_empty() {
            self.data.push(',');
        }
        self.data.push_str(option);
    }
}

const FLAG_NAMES: &[(&str, MsFlags)] = &[
    ("nosuid", MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS),
    ("dirsync", MsFlags::MS_DIRSYNC),
    ("noatime", MsFlags::MS_NOATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME),
    ("relatime", MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME),
    ("lazytime", MsFlags::MS_LAZYTIME),
];

/// (flags to clear, flags to set) for a VFS flag name.
fn flag_effect(name: &str) -> Option<(MsFlags, MsFlags)> {
    let none = MsFlags::empty();
    Some(match name {
        "defaults" => (none, none),
        "ro" => (none, MsFlags::MS_RDONLY),
        "rw" => (MsFlags::MS_RDONLY, none),
        "nosuid" => (none, MsFlags::MS_NOSUID),
        "suid" => (MsFlags::MS_NOSUID, none),
        "nodev" => (none, MsFlags::MS_NODEV),
        "dev" => (MsFlags::MS_NODEV, none),
        "noexec" => (none, MsFlags::MS_NOEXEC),
        "exec" => (MsFlags::MS_NOEXEC, none),
        "sync" => (none, MsFlags::MS_SYNCHRONOUS),
        "async" => (MsFlags::MS_SYNCHRONOUS, none),
        "dirsync" => (none, MsFlags::MS_DIRSYNC),
        "nodiratime" => (none, MsFlags::MS_NODIRATIME),
        "diratime" => (MsFlags::MS_NODIRATIME, none),
        "lazytime" => (none, MsFlags::MS_LAZYTIME),
        "nolazytime" => (MsFlags::MS_LAZYTIME, none),
        // The kernel reads the three atime modes with precedence rules of its own; clearing
        // the others makes the last one given win, as with mount(8).
        "noatime" => (ATIME_FLAGS, MsFlags::MS_NOATIME),
        "atime" => (MsFlags::MS_NOATIME, none),
        "relatime" => (ATIME_FLAGS, MsFlags::MS_RELATIME),
        "norelatime" => (MsFlags::MS_RELATIME, none),
        "strictatime" => (ATIME_FLAGS, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (MsFlags::MS_STRICTATIME, none),
        _ => return None,
    })
}

const BARE_DATA_OPTIONS: &[&str] = &[
    "discard",
    "nodiscard",
    "dax",
    "nouuid",
    "norecovery",
    "noload",
    "barrier",
    "nobarrier",
    "inode64",
    "inode32",
    "largeio",
    "nolargeio",
    "noquota",
    "quota",
    "usrquota",
    "grpquota",
    "prjquota",
    "uquota",
    "gquota",
    "pquota",
    "user_xattr",
    "acl",
    "noacl",
];

/// Options every mount of `fs` gets, whatever the capability says.
///
/// xfs: `nouuid`. A restored snapshot or a clone is a block copy of its source, xfs UUID
/// included, and xfs refuses to mount a second filesystem with a UUID already mounted
/// ("duplicate UUID"): without it a restore could not be used on the node where its origin
/// is. Regenerating the UUID (`xfs_admin -U generate`) instead would need a clean log,
/// which a snapshot of a busy filesystem does not promise. The driver never refers to
/// filesystems by UUID, so nothing else depends on them being unique.
pub fn implied_mount_flags(fs: &str) -> Vec<String> {
    match fs {
        "xfs" => vec!["nouuid".to_string()],
        _ => Vec::new(),
    }
}

/// Turns CSI `mount_flags` into [`MountOptions`]. Each entry must be exactly one option from
/// the allow-list: the strings come from users' StorageClasses and PVs, and the mount runs
/// as root on the node, so "bind", "remount", "uid=0", or "noatime,loop" smuggled into one
/// entry must be refused, not passed on.
pub fn parse_mount_flags(flags: &[String]) -> Result<MountOptions, MountError> {
    let mut opts = MountOptions::default();
    for option in flags {
        check_text(option)?;
        let (name, value) = split_option(option);
        if let Some((clear, set)) = flag_effect(name) {
            if value.is_some() {
                return Err(invalid(option, "this flag takes no value"));
            }
            opts.flags.remove(clear);
            opts.flags.insert(set);
            continue;
        }
        check_data_option(option, name, value)?;
        opts.push_data(option);
    }
    Ok(opts)
}

fn split_option(option: &str) -> (&str, Option<&str>) {
    match option.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (option, None),
    }
}

fn check_text(option: &str) -> Result<(), MountError> {
    if option.is_empty() {
        return Err(invalid(option, "empty option"));
    }
    if option.len() > 1024 {
        return Err(invalid(option, "longer than 1024 bytes"));
    }
    if option.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(option, "contains whitespace or control characters"));
    }
    Ok(())
}

fn check_data_option(option: &str, name: &str, value: Option<&str>) -> Result<(), MountError> {
    // Only a quoted SELinux context may carry a comma; everywhere else a comma would start a
    // second, unchecked option in the data string.
    if name != "context" && option.contains(',') {
        return Err(invalid(option, "one option per entry; ',' is not allowed"));
    }
    let Some(value) = value else {
        return if BARE_DATA_OPTIONS.contains(&name) {
            Ok(())
        } else if valued_option(name) {
            Err(invalid(option, "this option needs a value"))
        } else {
            Err(invalid(option, "not in the allow-list of mount options"))
        };
    };
    if BARE_DATA_OPTIONS.contains(&name) && !valued_option(name) {
        return Err(invalid(option, "this option takes no value"));
    }
    let ok = match name {
        "dax" => matches!(value, "always" | "never" | "inode"),
        "data" => matches!(value, "ordered" | "journal" | "writeback"),
        "errors" => matches!(value, "remount-ro" | "continue" | "panic"),
        "commit" | "logbufs" => is_number(value),
        "logbsize" => size_with_suffix(value, &['k', 'K']),
        "allocsize" => size_with_suffix(value, &['k', 'K', 'm', 'M', 'g', 'G']),
        "context" => is_selinux_context(value),
        _ => return Err(invalid(option, "not in the allow-list of mount options")),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(option, "invalid value"))
    }
}

fn valued_option(name: &str) -> bool {
    matches!(
        name,
        "dax" | "data" | "errors" | "commit" | "logbufs" | "logbsize" | "allocsize" | "context"
    )
}

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit())
}

fn size_with_suffix(v: &str, suffixes: &[char]) -> bool {
    let digits = v.strip_suffix(|c| suffixes.contains(&c)).unwrap_or(v);
    is_number(digits)
}

/// kubelet passes `context="system_u:object_r:container_file_t:s0:c1,c2"` when the driver
/// opts into SELinux mount labelling. Only label characters are allowed, and a label with a
/// category comma must be quoted so the kernel reads it as one option.
fn is_selinux_context(v: &str) -> bool {
    let (inner, quoted) = match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => (inner, true),
        None => (v, false),
    };
    !inner.is_empty()
        && inner.contains(':')
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-,".contains(&b))
        && (quoted || !inner.contains(','))
}

/// Splits a data string on commas outside double quotes.
fn split_data(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in data.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn invalid(option: &str, reason: &str) -> MountError {
    MountError::InvalidOption {
        option: option.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<MountOptions, MountError> {
        parse_mount_flags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn xfs_always_mounts_nouuid_once() {
        assert!(implied_mount_flags("ext4").is_empty());
        let mut flags = vec!["nouuid".to_string(), "noatime".to_string()];
        flags.extend(implied_mount_flags("xfs"));
        let o = parse_mount_flags(&flags).unwrap();
        assert_eq!(o.data, "nouuid");
        let o = parse_mount_flags(&implied_mount_flags("xfs")).unwrap();
        assert_eq!(o.data, "nouuid");
    }

    fn rejected(option: &str) -> String {
        match parse(&[option]) {
            Err(MountError::InvalidOption { option: o, reason }) => {
                assert_eq!(o, option);
                reason
            }
            other => panic!("{option:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn empty_list_is_default() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, MountOptions::default());
        assert!(!o.readonly());
        assert_eq!(o.data, "");
    }

    #[test]
    fn vfs_flags_become_msflags() {
        let o = parse(&["noatime", "nodev", "nosuid", "noexec", "ro", "lazytime"]).unwrap();
        assert!(o.readonly());
        assert_eq!(
            o.flags,
            MsFlags::MS_NOATIME
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RDONLY
                | MsFlags::MS_LAZYTIME
        );
        assert_eq!(o.data, "");
    }

    #[test]
    fn later_flags_override_earlier() {
        let o = parse(&["ro", "rw"]).unwrap();
        assert!(!o.readonly());
        let o = parse(&["relatime", "noatime"]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOATIME);
        let o = parse(&["noexec", "exec", "sync", "async"]).unwrap();
        assert_eq!(o.flags, MsFlags::empty());
        let o = parse(&["defaults"]).unwrap();
        assert_eq!(o, MountOptions::default());
    }

    #[test]
    fn data_options_are_joined_in_order_without_duplicates() {
        let o = parse(&[
            "discard",
            "noatime",
            "data=ordered",
            "commit=60",
            "discard",
            "errors=remount-ro",
        ])
        .unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOATIME);
        assert_eq!(o.data, "discard,data=ordered,commit=60,errors=remount-ro");
        assert_eq!(
            o.data_options(),
            vec!["discard", "data=ordered", "commit=60", "errors=remount-ro"]
        );
    }

    #[test]
    fn xfs_options_accepted() {
        let o = parse(&[
            "nouuid",
            "logbsize=256k",
            "logbufs=8",
            "allocsize=64m",
            "inode64",
            "largeio",
            "prjquota",
            "dax=always",
            "norecovery",
        ])
        .unwrap();
        assert_eq!(
            o.data,
            "nouuid,logbsize=256k,logbufs=8,allocsize=64m,inode64,largeio,prjquota,dax=always,norecovery"
        );
    }

    #[test]
    fn selinux_context_is_accepted_only_when_well_formed() {
        let o = parse(&["context=\"system_u:object_r:container_file_t:s0:c1,c2\""]).unwrap();
        assert_eq!(
            o.data_options(),
            vec!["context=\"system_u:object_r:container_file_t:s0:c1,c2\""]
        );
        parse(&["context=system_u:object_r:container_file_t:s0"]).unwrap();
        // Unquoted comma: the kernel would see "c2" as a second option.
        rejected("context=system_u:object_r:t:s0:c1,c2");
        rejected("context=\"a:b\",uid=0");
        rejected("context=\"a:b\"\"");
        rejected("context=");
    }

    #[test]
    fn unknown_and_dangerous_options_rejected() {
        for o in [
            "bind",
            "rbind",
            "remount",
            "move",
            "loop",
            "shared",
            "uid=0",
            "mode=777",
            "x-mount.mkdir",
            "RO",
            "mand",
            "nosymfollow",
            "journal_path=/dev/sda",
            "logdev=/dev/sdb",
        ] {
            let reason = rejected(o);
            assert!(reason.contains("allow-list"), "{o}: {reason}");
        }
    }

    #[test]
    fn comma_tricks_rejected() {
        assert!(rejected("noatime,bind").contains("one option per entry"));
        assert!(rejected("discard,uid=0").contains("one option per entry"));
        assert!(rejected("data=ordered,loop").contains("one option per entry"));
        rejected(",");
    }

    #[test]
    fn values_on_flags_and_bad_values_rejected() {
        assert!(rejected("ro=1").contains("takes no value"));
        assert!(rejected("noatime=").contains("takes no value"));
        assert!(rejected("discard=1").contains("takes no value"));
        assert!(rejected("nouuid=yes").contains("takes no value"));
        assert!(rejected("data=fast").contains("invalid value"));
        assert!(rejected("commit=").contains("invalid value"));
        assert!(rejected("commit=-1").contains("invalid value"));
        assert!(rejected("commit=60s").contains("invalid value"));
        assert!(rejected("logbsize=256x").contains("invalid value"));
        assert!(rejected("logbsize=k").contains("invalid value"));
        assert!(rejected("errors=ignore").contains("invalid value"));
        assert!(rejected("dax=sometimes").contains("invalid value"));
        assert!(rejected("commit").contains("needs a value"));
    }

    #[test]
    fn whitespace_control_and_empty_rejected() {
        rejected("");
        rejected(" noatime");
        rejected("noatime ");
        rejected("no\natime");
        rejected("dis\0card");
        rejected(&"a".repeat(2000));
    }

    #[test]
    fn readonly_helpers_and_to_strings() {
        let mut o = parse(&["noatime", "discard"]).unwrap().with_readonly(true);
        assert!(o.readonly());
        assert_eq!(o.to_strings(), vec!["ro", "noatime", "discard"]);
        o.set_readonly(false);
        assert_eq!(o.to_strings(), vec!["rw", "noatime", "discard"]);
    }

    #[test]
    fn add_data_option_uses_the_allow_list() {
        let mut o = MountOptions::new();
        o.add_data_option("nouuid").unwrap();
        o.add_data_option("nouuid").unwrap();
        assert_eq!(o.data, "nouuid");
        assert!(o.add_data_option("ro").is_err());
        assert!(o.add_data_option("uid=0").is_err());
        assert!(o.add_data_option("nouuid,bind").is_err());
    }
}
