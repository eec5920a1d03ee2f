//! The inventory as a table for a person at a terminal (the JSON is for vg-init).

use crate::inventory::{DeviceSource, Inventory};
use vglet_common::size::format_size;

/// Chosen devices first, then skipped ones with every reason.
pub fn render(inv: &Inventory) -> String {
    let mut out = String::new();
    let target = inv
        .target_vg
        .as_deref()
        .map(|vg| format!(" for VG {vg}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "Chosen{target}: {} device(s), {}\n",
        inv.devices.len(),
        format_size(inv.devices.iter().map(|d| d.size_bytes).sum())
    ));
    if !inv.devices.is_empty() {
        let rows: Vec<[String; 5]> = inv
            .devices
            .iter()
            .map(|d| {
                let ident = [d.model.as_deref(), d.serial.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" / ");
                let mut why = d.reason.clone();
                if d.source == DeviceSource::Pmem {
                    why = format!("[pmem] {why}");
                }
                [
                    d.path.clone(),
                    d.kernel_path.clone(),
                    format_size(d.size_bytes),
                    if ident.is_empty() { "-".into() } else { ident },
                    why,
                ]
            })
            .collect();
        out.push_str(&grid(
            &["PATH", "KERNEL", "SIZE", "MODEL / SERIAL", "WHY"],
            &rows,
        ));
    }
    out.push_str(&format!("Skipped: {} device(s)\n", inv.skipped.len()));
    if !inv.skipped.is_empty() {
        let rows: Vec<[String; 2]> = inv
            .skipped
            .iter()
            .map(|s| {
                let path = if s.path == s.kernel_path {
                    s.path.clone()
                } else {
                    format!("{} ({})", s.path, s.kernel_path)
                };
                [path, s.reasons.join("; ")]
            })
            .collect();
        out.push_str(&grid(&["PATH", "REASONS"], &rows));
    }
    out
}

fn grid<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                // The last column is free text; padding it only adds trailing blanks.
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Device, Skipped};

    #[test]
    fn lists_chosen_and_skipped() {
        let inv = Inventory {
            version: 1,
            generator: "t".into(),
            hostname: "h".into(),
            generated_unix: 0,
            target_vg: Some("vg0".into()),
            devices: vec![Device {
                path: "/dev/disk/by-id/virtio-d1".into(),
                kernel_path: "/dev/vdb".into(),
                size_bytes: 10 << 30,
                model: None,
                serial: Some("d1".into()),
                wwn: None,
                source: DeviceSource::Disk,
                pmem: None,
                existing_pv_of: None,
                reason: "matched glob /dev/vd*".into(),
            }],
            skipped: vec![Skipped {
                path: "/dev/vdc".into(),
                kernel_path: "/dev/vdc".into(),
                reasons: vec!["holds an ext4 filesystem".into(), "read-only".into()],
            }],
        };
        let t = render(&inv);
        assert!(t.contains("Chosen for VG vg0: 1 device(s), 10 GiB"), "{t}");
        assert!(
            t.contains("/dev/disk/by-id/virtio-d1  /dev/vdb  10 GiB  d1"),
            "{t}"
        );
        assert!(
            t.contains("/dev/vdc  holds an ext4 filesystem; read-only"),
            "{t}"
        );
    }
}
