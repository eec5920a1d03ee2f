//! Which devices the operator asked for: include globs on every path of a device, regexes
//! on its name/model/serial/WWN, and exclude lists that win over everything.
//!
//! Different kinds of include criteria are combined with AND (every one given must match),
//! several globs with OR. Narrowing is the safe direction: a surprise narrower match leaves
//! a disk unused (and `--min-devices` catches it); a surprise wider one could take a disk.

use std::path::PathBuf;

use glob::{MatchOptions, Pattern};
use regex::Regex;

use crate::DevicesError;
use crate::sysfs::DeviceKind;

/// `*` and `?` do not cross `/`, so `/dev/*` never reaches into /dev/disk/by-id.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// The patterns as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SelectionSpec {
    pub globs: Vec<String>,
    pub name_regex: Option<String>,
    pub model_regex: Option<String>,
    pub serial_regex: Option<String>,
    pub wwn_regex: Option<String>,
    pub exclude_globs: Vec<String>,
    pub exclude_regexes: Vec<String>,
}

/// Compiled patterns.
#[derive(Debug, Clone)]
pub struct Selection {
    globs: Vec<Pattern>,
    name_regex: Option<Regex>,
    model_regex: Option<Regex>,
    serial_regex: Option<Regex>,
    wwn_regex: Option<Regex>,
    exclude_globs: Vec<Pattern>,
    exclude_regexes: Vec<Regex>,
}

/// What the selection says about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// With the patterns that matched, for the inventory's `reason`.
    Selected(String),
    Excluded(String),
    NotMatched(String),
}

/// The facts about a device that patterns look at.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub kind: DeviceKind,
    pub paths: &'a [PathBuf],
    /// For a partition: its disk's paths. A glob that matches the disk too does not name
    /// the partition explicitly.
    pub parent_paths: &'a [PathBuf],
    pub model: Option<&'a str>,
    pub serial: Option<&'a str>,
    pub wwn: Option<&'a str>,
}

pub const NOT_MATCHED: &str = "not matched by any include pattern";

impl Selection {
    pub fn new(spec: &SelectionSpec) -> Result<Selection, DevicesError> {
        let glob = |what: &'static str, g: &String| {
            if g.trim().is_empty() {
                return Err(DevicesError::invalid(what, g, "empty pattern"));
            }
            Pattern::new(g).map_err(|e| DevicesError::invalid(what, g, e.to_string()))
        };
        let regex = |what: &'static str, r: &String| {
            Regex::new(r).map_err(|e| DevicesError::invalid(what, r, e.to_string()))
        };
        let opt =
            |what: &'static str, r: &Option<String>| r.as_ref().map(|r| regex(what, r)).transpose();
        Ok(Selection {
            globs: spec
                .globs
                .iter()
                .map(|g| glob("--glob", g))
                .collect::<Result<_, _>>()?,
            name_regex: opt("--name-regex", &spec.name_regex)?,
            model_regex: opt("--model-regex", &spec.model_regex)?,
            serial_regex: opt("--serial-regex", &spec.serial_regex)?,
            wwn_regex: opt("--wwn-regex", &spec.wwn_regex)?,
            exclude_globs: spec
                .exclude_globs
                .iter()
                .map(|g| glob("--exclude-glob", g))
                .collect::<Result<_, _>>()?,
            exclude_regexes: spec
                .exclude_regexes
                .iter()
                .map(|r| regex("--exclude-regex", r))
                .collect::<Result<_, _>>()?,
        })
    }

    /// False when no include pattern was given: then nothing is selected from sysfs.
    pub fn has_includes(&self) -> bool {
        !self.globs.is_empty() || self.regexes().any(|(_, r, _)| r.is_some())
    }

    fn regexes<'s>(
        &'s self,
    ) -> impl Iterator<Item = (&'static str, Option<&'s Regex>, Field)> + 's {
        [
            ("--name-regex", self.name_regex.as_ref(), Field::Name),
            ("--model-regex", self.model_regex.as_ref(), Field::Model),
            ("--serial-regex", self.serial_regex.as_ref(), Field::Serial),
            ("--wwn-regex", self.wwn_regex.as_ref(), Field::Wwn),
        ]
        .into_iter()
    }

    /// The exclude pattern that matches, described for the operator.
    pub fn excluded(&self, c: &Candidate) -> Option<String> {
        for g in &self.exclude_globs {
            if let Some(p) = c.paths.iter().find(|p| g.matches_path_with(p, MATCH)) {
                return Some(format!(
                    "excluded by --exclude-glob {} (matches {})",
                    g.as_str(),
                    p.display()
                ));
            }
        }
        for r in &self.exclude_regexes {
            for field in [Field::Name, Field::Model, Field::Serial, Field::Wwn] {
                if let Some(v) = field.get(c).filter(|v| r.is_match(v)) {
                    return Some(format!(
                        "excluded by --exclude-regex {} ({} {v:?})",
                        r.as_str(),
                        field.label()
                    ));
                }
            }
        }
        None
    }

    pub fn decide(&self, c: &Candidate) -> Decision {
        if let Some(why) = self.excluded(c) {
            return Decision::Excluded(why);
        }
        if !self.has_includes() {
            return Decision::NotMatched(NOT_MATCHED.to_string());
        }
        let mut matched = Vec::new();
        if !self.globs.is_empty() {
            let hits: Vec<&Pattern> = self
                .globs
                .iter()
                .filter(|g| c.paths.iter().any(|p| g.matches_path_with(p, MATCH)))
                .collect();
            if hits.is_empty() {
                return Decision::NotMatched(NOT_MATCHED.to_string());
            }
            let glob = if c.kind.is_special() {
                match hits.iter().find(|g| names_explicitly(g, c)) {
                    Some(g) => g,
                    None => {
                        return Decision::NotMatched(format!(
                            "{NOT_MATCHED} naming this {} device explicitly ({} matches every device there; use e.g. {})",
                            c.kind.label(),
                            hits[0].as_str(),
                            c.paths[0].display()
                        ));
                    }
                }
            } else {
                hits[0]
            };
            matched.push(format!("matched glob {}", glob.as_str()));
        } else if c.kind.is_special() {
            return Decision::NotMatched(format!(
                "{NOT_MATCHED} ({} devices are only taken when a --glob names them)",
                c.kind.label()
            ));
        }
        for (flag, re, field) in self.regexes() {
            let Some(re) = re else { continue };
            match field.get(c) {
                Some(v) if re.is_match(v) => matched.push(format!(
                    "matched {flag} {} ({} {v:?})",
                    re.as_str(),
                    field.label()
                )),
                Some(v) => {
                    return Decision::NotMatched(format!(
                        "{NOT_MATCHED} ({} {v:?} does not match {flag} {})",
                        field.label(),
                        re.as_str()
                    ));
                }
                None => {
                    return Decision::NotMatched(format!(
                        "{NOT_MATCHED} (no {} for {flag} {})",
                        field.label(),
                        re.as_str()
                    ));
                }
            }
        }
        Decision::Selected(matched.join(", "))
    }
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Name,
    Model,
    Serial,
    Wwn,
}

impl Field {
    fn get<'a>(self, c: &Candidate<'a>) -> Option<&'a str> {
        match self {
            Field::Name => Some(c.name),
            Field::Model => c.model,
            Field::Serial => c.serial,
            Field::Wwn => c.wwn,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Model => "model",
            Field::Serial => "serial",
            Field::Wwn => "WWN",
        }
    }
}

/// A glob names a loop/dm/md/partition device explicitly when it is more than a bare
/// wildcard over a directory (`/dev/loop*`, `/dev/mapper/*` do; `/dev/*` does not) and, for
/// a partition, when it does not match its disk as well (`/dev/sdb*` and `by-id/wwn-*` do
/// not name `sdb1`; `/dev/sdb1` and `by-id/*-part1` do).
fn names_explicitly(g: &Pattern, c: &Candidate) -> bool {
    if c.kind == DeviceKind::Partition {
        return !c.parent_paths.iter().any(|p| g.matches_path_with(p, MATCH));
    }
    let s = g.as_str();
    let literal = &s[..s.find(['*', '?', '[']).unwrap_or(s.len())];
    // The part of the file name before the first wildcard: "loop" in /dev/loop*.
    let name_prefix = literal.rsplit('/').next().unwrap_or(literal);
    !name_prefix.is_empty() || literal.ends_with("/mapper/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(f: impl FnOnce(&mut SelectionSpec)) -> Selection {
        let mut spec = SelectionSpec::default();
        f(&mut spec);
        Selection::new(&spec).unwrap()
    }

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    fn cand<'a>(name: &'a str, kind: DeviceKind, p: &'a [PathBuf]) -> Candidate<'a> {
        Candidate {
            name,
            kind,
            paths: p,
            parent_paths: &[],
            model: Some("QEMU HARDDISK"),
            serial: Some("SER123"),
            wwn: Some("naa.5000c500aabbccdd"),
        }
    }

    #[test]
    fn globs_match_any_path_including_by_id() {
        let p = paths(&["/dev/sdb", "/dev/disk/by-id/wwn-0x5000c500aabbccdd"]);
        let s = sel(|s| s.globs = vec!["/dev/disk/by-id/wwn-0x5000c5*".into()]);
        assert_eq!(
            s.decide(&cand("sdb", DeviceKind::Disk, &p)),
            Decision::Selected("matched glob /dev/disk/by-id/wwn-0x5000c5*".into())
        );
        let s = sel(|s| s.globs = vec!["/dev/nvme*n1".into(), "/dev/sd?".into()]);
        assert!(matches!(
            s.decide(&cand("sdb", DeviceKind::Disk, &p)),
            Decision::Selected(_)
        ));
        // `*` stops at `/`.
        let s = sel(|s| s.globs = vec!["/dev/*wwn*".into()]);
        assert_eq!(
            s.decide(&cand("sdb", DeviceKind::Disk, &p)),
            Decision::NotMatched(NOT_MATCHED.into())
        );
    }

    #[test]
    fn regexes_are_anded_with_globs() {
        let p = paths(&["/dev/sdb"]);
        let c = cand("sdb", DeviceKind::Disk, &p);
        let s = sel(|s| {
            s.globs = vec!["/dev/sd*".into()];
            s.model_regex = Some("^QEMU".into());
        });
        let Decision::Selected(why) = s.decide(&c) else {
            panic!()
        };
        assert!(why.contains("--model-regex ^QEMU"), "{why}");
        let s = sel(|s| {
            s.globs = vec!["/dev/sd*".into()];
            s.serial_regex = Some("^XYZ".into());
        });
        let Decision::NotMatched(why) = s.decide(&c) else {
            panic!()
        };
        assert!(
            why.starts_with(NOT_MATCHED) && why.contains("SER123"),
            "{why}"
        );
        let s = sel(|s| s.wwn_regex = Some("5000c500".into()));
        assert!(matches!(s.decide(&c), Decision::Selected(_)));
        let s = sel(|s| s.name_regex = Some("^nvme".into()));
        assert!(matches!(s.decide(&c), Decision::NotMatched(_)));
        // Nothing asked for, nothing selected.
        assert_eq!(
            sel(|_| {}).decide(&c),
            Decision::NotMatched(NOT_MATCHED.into())
        );
    }

    #[test]
    fn excludes_win() {
        let p = paths(&["/dev/sdb", "/dev/disk/by-path/pci-0000:00:1f.2-ata-2"]);
        let c = cand("sdb", DeviceKind::Disk, &p);
        let s = sel(|s| {
            s.globs = vec!["/dev/sd*".into()];
            s.exclude_globs = vec!["/dev/disk/by-path/*ata-2".into()];
        });
        let Decision::Excluded(why) = s.decide(&c) else {
            panic!()
        };
        assert!(why.contains("--exclude-glob"), "{why}");
        let s = sel(|s| {
            s.globs = vec!["/dev/sd*".into()];
            s.exclude_regexes = vec!["HARDDISK".into()];
        });
        let Decision::Excluded(why) = s.decide(&c) else {
            panic!()
        };
        assert!(why.contains("model \"QEMU HARDDISK\""), "{why}");
    }

    #[test]
    fn special_kinds_need_an_explicit_glob() {
        let p = paths(&["/dev/loop3"]);
        let c = cand("loop3", DeviceKind::Loop, &p);
        assert!(matches!(
            sel(|s| s.globs = vec!["/dev/*".into()]).decide(&c),
            Decision::NotMatched(_)
        ));
        assert!(matches!(
            sel(|s| s.globs = vec!["/dev/loop*".into()]).decide(&c),
            Decision::Selected(_)
        ));
        assert!(matches!(
            sel(|s| s.globs = vec!["/dev/loop3".into()]).decide(&c),
            Decision::Selected(_)
        ));
        // A regex alone never takes a loop device.
        assert!(matches!(
            sel(|s| s.name_regex = Some("loop".into())).decide(&c),
            Decision::NotMatched(_)
        ));
        let part = paths(&["/dev/sdb1", "/dev/disk/by-id/wwn-0x5-part1"]);
        let disk = paths(&["/dev/sdb", "/dev/disk/by-id/wwn-0x5"]);
        let c = Candidate {
            parent_paths: &disk,
            ..cand("sdb1", DeviceKind::Partition, &part)
        };
        for broad in ["/dev/sdb*", "/dev/disk/by-id/wwn-*"] {
            assert!(
                matches!(
                    sel(|s| s.globs = vec![broad.into()]).decide(&c),
                    Decision::NotMatched(_)
                ),
                "{broad}"
            );
        }
        for explicit in ["/dev/sdb1", "/dev/disk/by-id/*-part1", "/dev/sd?[0-9]"] {
            assert!(
                matches!(
                    sel(|s| s.globs = vec![explicit.into()]).decide(&c),
                    Decision::Selected(_)
                ),
                "{explicit}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_usage_errors() {
        let e = Selection::new(&SelectionSpec {
            globs: vec!["/dev/[".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.is_usage());
        let e = Selection::new(&SelectionSpec {
            exclude_regexes: vec!["(".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.is_usage(), "{e}");
    }
}
