//! What to create, decided from ndctl's view of the regions alone (pure, no I/O).
//!
//! Each region's space is shared out by percentages of its *capacity* (size rounded down to
//! the region's alignment), not of its free space: the capacity never changes, so every
//! boot computes the same layout, and a re-run only creates what is missing. vglet's
//! namespaces are recognised by name (`vglet-<mode>-<region>`, `-<index>` when split by
//! --max-namespace-size); every other namespace is foreign: it only takes space.
//! Nothing is ever resized or destroyed.

use std::collections::BTreeSet;

use vglet_devices::format_size;
use vglet_ndctl::{CreateNamespace, Namespace, PmemMode, Region};

pub const NAME_PREFIX: &str = "vglet-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Percent of each region's capacity for fsdax namespaces.
    pub fsdax_percent: u8,
    /// Percent of each region's capacity for sector namespaces.
    pub sector_percent: u8,
    /// Split a mode's share into namespaces of at most this many bytes.
    pub max_namespace_size: Option<u64>,
    /// fsdax `--align` (ndctl's 2 MiB default when `None`).
    pub fsdax_align: Option<u64>,
}

impl Config {
    fn percent(&self, mode: PmemMode) -> u8 {
        match mode {
            PmemMode::Fsdax => self.fsdax_percent,
            PmemMode::Sector => self.sector_percent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warn,
    /// The operator must act (label-less region, impossible settings): exit 3.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub region: String,
    pub severity: Severity,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub creates: Vec<CreateNamespace>,
    pub notes: Vec<Note>,
}

impl Plan {
    pub fn refused(&self) -> bool {
        self.notes.iter().any(|n| n.severity == Severity::Refused)
    }

    fn note(&mut self, region: &str, severity: Severity, message: String) {
        self.notes.push(Note {
            region: region.to_string(),
            severity,
            message,
        });
    }
}

/// `vglet-fsdax-region0`, or `vglet-fsdax-region0-2` for the third of several.
pub fn own_name(mode: PmemMode, region: &str, index: Option<usize>) -> String {
    match index {
        None => format!("{NAME_PREFIX}{mode}-{region}"),
        Some(i) => format!("{NAME_PREFIX}{mode}-{region}-{i}"),
    }
}

/// A name of ours: (mode, region, index).
pub fn parse_own_name(name: &str) -> Option<(PmemMode, String, Option<usize>)> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (mode, rest) = rest.split_once('-')?;
    let mode = PmemMode::parse(mode)?;
    let (region, index) = match rest.split_once('-') {
        Some((region, index)) => {
            let digits = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
            (region, Some(digits.then(|| index.parse().ok()).flatten()?))
        }
        None => (rest, None),
    };
    let number = region.strip_prefix("region")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((mode, region.to_string(), index))
}

/// A namespace of ours in `region`: its name says so and names this region.
pub fn is_own(ns: &Namespace, region: &str) -> bool {
    ns.name
        .as_deref()
        .and_then(parse_own_name)
        .is_some_and(|(_, r, _)| r == region)
}

fn round_down(v: u64, align: u64) -> u64 {
    v - v % align
}

/// The namespaces a mode's share becomes: one, or several of at most `cap` bytes.
fn layout(mode: PmemMode, region: &str, target: u64, cap: Option<u64>) -> Vec<(String, u64)> {
    match cap {
        Some(cap) if target > cap => {
            let mut out = Vec::new();
            let mut left = target;
            while left > 0 {
                let size = left.min(cap);
                out.push((own_name(mode, region, Some(out.len())), size));
                left -= size;
            }
            out
        }
        _ => vec![(own_name(mode, region, None), target)],
    }
}

pub fn plan(regions: &[Region], config: &Config) -> Plan {
    let mut plan = Plan::default();
    for region in regions {
        plan_region(region, config, &mut plan);
    }
    plan
}

fn plan_region(region: &Region, config: &Config, plan: &mut Plan) {
    let dev = region.dev.as_str();
    if !region.is_pmem() {
        plan.note(
            dev,
            Severity::Info,
            format!(
                "{dev} is a {:?} region; only pmem regions are used",
                region.kind
            ),
        );
        return;
    }
    if !region.has_labels() {
        let held: Vec<String> = region
            .real_namespaces()
            .map(|n| format!("{} ({}, {})", n.dev, n.mode, format_size(n.size)))
            .collect();
        plan.note(
            dev,
            Severity::Refused,
            format!(
                "{dev} is label-less (its DIMMs have no namespace label index, or the platform \
                 does not support labels): it can only hold one namespace spanning the whole \
                 region{}. Run with --init-labels to write label index blocks (allowed only \
                 while that namespace is unused: it is destroyed)",
                if held.is_empty() {
                    String::new()
                } else {
                    format!(", now {}", held.join(", "))
                }
            ),
        );
        return;
    }
    let align = region.align();
    let capacity = round_down(region.size, align);
    let mut extent = round_down(region.max_extent(), align);
    let cap = match config.max_namespace_size {
        Some(cap) if cap < align => {
            plan.note(
                dev,
                Severity::Refused,
                format!(
                    "--max-namespace-size {} is smaller than {dev}'s alignment {}: no \
                     namespace can be that small",
                    format_size(cap),
                    format_size(align)
                ),
            );
            return;
        }
        Some(cap) => Some(round_down(cap, align)),
        None => None,
    };

    let mut planned_any = false;
    for mode in PmemMode::ALL {
        let percent = config.percent(mode);
        let existing: Vec<&Namespace> = region
            .real_namespaces()
            .filter(|n| {
                n.name
                    .as_deref()
                    .and_then(parse_own_name)
                    .is_some_and(|(m, r, _)| m == mode && r == dev)
            })
            .collect();
        for ns in &existing {
            if PmemMode::parse(&ns.mode) != Some(mode) && ns.is_enabled() {
                plan.note(
                    dev,
                    Severity::Warn,
                    format!(
                        "{} ({}) is named for {mode} mode but is in {} mode (changed by hand?); \
                         left as is",
                        ns.name.as_deref().unwrap_or_default(),
                        ns.dev,
                        ns.mode
                    ),
                );
            }
            if !ns.is_enabled() {
                plan.note(
                    dev,
                    Severity::Warn,
                    format!(
                        "{} ({}) is disabled: not offered; enable it with `ndctl \
                         enable-namespace {}`",
                        ns.name.as_deref().unwrap_or_default(),
                        ns.dev,
                        ns.dev
                    ),
                );
            }
        }
        if percent == 0 {
            continue;
        }
        let target = round_down(
            u64::try_from(u128::from(capacity) * u128::from(percent) / 100).unwrap_or(0),
            align,
        );
        if target == 0 {
            plan.note(
                dev,
                Severity::Warn,
                format!(
                    "{percent}% of {dev} ({} capacity) is less than its alignment {}: no \
                     {mode} namespace",
                    format_size(capacity),
                    format_size(align)
                ),
            );
            continue;
        }
        let wanted = layout(mode, dev, target, cap);
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
        let existing_names: BTreeSet<&str> =
            existing.iter().filter_map(|n| n.name.as_deref()).collect();
        if let Some(stray) = existing_names.difference(&wanted_names).next() {
            // Adding namespaces around a layout made with other settings could exceed the
            // share the operator asked for; and nothing is ever resized or destroyed.
            plan.note(
                dev,
                Severity::Warn,
                format!(
                    "{dev} already has {stray}, laid out with other --use-for-{mode} / \
                     --max-namespace-size settings; its {mode} namespaces are kept as they are \
                     and none is added (destroy them by hand to change the layout)"
                ),
            );
            continue;
        }
        for (name, size) in wanted {
            if existing_names.contains(name.as_str()) {
                continue;
            }
            if extent == 0 {
                plan.note(
                    dev,
                    Severity::Warn,
                    format!(
                        "{dev} is full: no room for {name} ({} planned); {} free, other \
                         namespaces: {}",
                        format_size(size),
                        format_size(region.available_size),
                        describe_others(region)
                    ),
                );
                continue;
            }
            let fit = size.min(extent);
            if fit < size {
                plan.note(
                    dev,
                    Severity::Warn,
                    format!(
                        "{name} gets {} instead of {}: that is all the free space left in \
                         {dev}",
                        format_size(fit),
                        format_size(size)
                    ),
                );
            }
            extent -= fit;
            planned_any = true;
            plan.creates.push(CreateNamespace {
                region: dev.to_string(),
                mode,
                name,
                size: fit,
                align: match mode {
                    PmemMode::Fsdax => config.fsdax_align,
                    PmemMode::Sector => None,
                },
            });
        }
    }
    for ns in region.real_namespaces().filter(|n| !is_own(n, dev)) {
        plan.note(
            dev,
            Severity::Info,
            format!("leaving foreign namespace {} alone", describe(ns)),
        );
    }
    if !planned_any {
        plan.note(dev, Severity::Info, format!("{dev}: nothing to create"));
    }
}

fn describe(ns: &Namespace) -> String {
    match &ns.name {
        Some(name) => format!(
            "{} ({name:?}, {}, {})",
            ns.dev,
            ns.mode,
            format_size(ns.size)
        ),
        None => format!("{} ({}, {})", ns.dev, ns.mode, format_size(ns.size)),
    }
}

fn describe_others(region: &Region) -> String {
    let all: Vec<String> = region.real_namespaces().map(describe).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
