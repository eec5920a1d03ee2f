//! Scale fixtures: a thousand LVs in the VG and fifty unrelated block devices, made quickly.
//!
//! A thousand `lvcreate`s take a quarter of an hour in the emulated guest, so the LVs are
//! written into the VG's metadata in one `vgcfgrestore`: the same metadata lvm would have
//! after a thousand CreateVolume calls (inactive LVs with vglet's tags).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::floor::{output, run};

/// Grows the VG `vg` to `total` one-extent LVs named `pop-NNNN` on its first PV: from an
/// empty VG, or from one this function populated before (the 1,000 row, then 5,000).
pub fn pop_lvs(vg: &str, total: usize, driver: &str, work: &Path) -> Result<()> {
    let backup = work.join(format!("{vg}.vgcfg"));
    let backup_s = backup.to_str().context("path")?;
    run("vgcfgbackup", &["-q", "-f", backup_s, vg])?;
    let text = std::fs::read_to_string(&backup)?;
    let first = text.matches("vglet.name=pop-").count();
    ensure!(
        first <= total,
        "the VG has {first} pop LVs, more than {total}"
    );
    let extended = with_lvs(&text, first, total - first, driver)?;
    std::fs::write(&backup, extended)?;
    run("vgcfgrestore", &["-q", "-f", backup_s, vg])?;
    let n = output("lvs", &["--noheadings", "-o", "lv_name", vg])?
        .lines()
        .filter(|l| l.trim().starts_with("pop-"))
        .count();
    ensure!(n == total, "vgcfgrestore left {n} LVs, wanted {total}");
    Ok(())
}

/// The VG metadata text `text` (from vgcfgbackup) with `count` more LVs, `pop-<first>`
/// on: `first` is 0 for a VG without LVs, else the number of pop LVs it holds (and no
/// others: they take extents 0..first of pv0).
pub fn with_lvs(text: &str, first: usize, count: usize, driver: &str) -> Result<String> {
    let has_lvs = text.contains("logical_volumes {");
    if first == 0 && has_lvs {
        bail!("the VG already has LVs; the fixture needs an empty one");
    }
    if first > 0 && (!has_lvs || text.matches("segment1 {").count() != first) {
        bail!("the VG must hold exactly the {first} pop LVs before more are added");
    }
    let pe_count: usize = text
        .split("pv0 {")
        .nth(1)
        .and_then(|pv| pv.split("pe_count = ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("pv0's pe_count in the VG metadata")?;
    ensure!(
        pe_count >= first + count,
        "pv0 has {pe_count} extents, {} LVs need as many",
        first + count
    );
    let mut lvs = String::new();
    for i in first..first + count {
        let name = format!("pop-{i:04}");
        write!(
            lvs,
            "\n\t\t{name} {{\n\t\t\tid = \"{id}\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\t\t\ttags = [\"vglet.owner={driver}\", \"vglet.name={name}\", \"vglet.size=4194304\", \"vglet.fs=ext4\"]\n\t\t\tcreation_time = 1700000000\n\t\t\tcreation_host = \"bench\"\n\t\t\tsegment_count = 1\n\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = 1\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {i}\n\t\t\t\t]\n\t\t\t}}\n\t\t}}\n",
            id = lvm_id(i as u64)
        )?;
    }
    if has_lvs {
        let at =
            text.find("logical_volumes {\n").context("LV block")? + "logical_volumes {\n".len();
        return Ok(format!("{}{}{}", &text[..at], lvs, &text[at..]));
    }
    let end = text.rfind('}').context("VG block end")?;
    Ok(format!(
        "{}\n\tlogical_volumes {{\n{lvs}\t}}\n{}",
        &text[..end],
        &text[end..]
    ))
}

/// A deterministic LVM uuid: 32 characters of lvm's alphabet in its 6-4-4-4-4-4-6 groups.
fn lvm_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut chars = Vec::with_capacity(32);
    for _ in 0..32 {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chars.push(ALPHABET[(z % ALPHABET.len() as u64) as usize] as char);
    }
    let s: String = chars.into_iter().collect();
    [
        &s[0..6],
        &s[6..10],
        &s[10..14],
        &s[14..18],
        &s[18..22],
        &s[22..26],
        &s[26..32],
    ]
    .join("-")
}

/// Attaches `count` loop devices of 64 MiB over sparse files in `dir`, every other one
/// carrying an ext4 signature: devices lvm has to open and read when it scans.
pub fn unrelated_devices(dir: &Path, count: usize) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut devs = Vec::with_capacity(count);
    for i in 0..count {
        let img = dir.join(format!("unrelated-{i:02}.img"));
        std::fs::File::create(&img)?.set_len(64 << 20)?;
        let dev = output("losetup", &["-f", "--show", img.to_str().context("path")?])?;
        let dev = PathBuf::from(dev.trim());
        if i % 2 == 0 {
            run("mkfs.ext4", &["-q", "-F", dev.to_str().context("path")?])?;
        }
        devs.push(dev);
    }
    Ok(devs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_VG: &str = "contents = \"Text Format Volume Group\"\nversion = 1\n\nbenchvg {\n\tid = \"x\"\n\tseqno = 1\n\textent_size = 8192\n\n\tphysical_volumes {\n\n\t\tpv0 {\n\t\t\tid = \"y\"\n\t\t\tdevice = \"/dev/vdb\"\n\t\t\tpe_start = 2048\n\t\t\tpe_count = 2047\n\t\t}\n\t}\n\n}\n";

    #[test]
    fn lvs_go_inside_the_vg_block() {
        let t = with_lvs(EMPTY_VG, 0, 3, "lvm.vglet.io").unwrap();
        assert!(t.trim_end().ends_with('}'));
        let lvs_at = t.find("logical_volumes {").unwrap();
        assert!(lvs_at > t.find("physical_volumes").unwrap());
        assert_eq!(t.matches("segment1 {").count(), 3);
        assert!(t.contains("\"pv0\", 2"));
        assert!(t.contains("vglet.name=pop-0002"));
        // Braces balance: lvm's parser would reject the file otherwise.
        assert_eq!(t.matches('{').count(), t.matches('}').count());
        // Grown again: the new LVs join the block, after the first ones' extents.
        let more = with_lvs(&t, 3, 2, "lvm.vglet.io").unwrap();
        assert_eq!(more.matches("logical_volumes {").count(), 1);
        assert_eq!(more.matches("segment1 {").count(), 5);
        assert!(more.contains("vglet.name=pop-0004") && more.contains("\"pv0\", 4"));
        assert_eq!(more.matches('{').count(), more.matches('}').count());
        assert!(
            with_lvs(&t, 2, 1, "d").is_err(),
            "a count that is not the VG's"
        );
    }

    #[test]
    fn refuses_more_lvs_than_extents_and_a_used_vg() {
        assert!(with_lvs(EMPTY_VG, 0, 5000, "d").is_err());
        let used = EMPTY_VG.replace("\n}\n", "\tlogical_volumes {\n\t}\n}\n");
        assert!(with_lvs(&used, 0, 1, "d").is_err());
    }

    #[test]
    fn ids_are_lvm_shaped_and_distinct() {
        let a = lvm_id(1);
        assert_eq!(a.len(), 38);
        assert_eq!(
            a.split('-').map(str::len).collect::<Vec<_>>(),
            [6, 4, 4, 4, 4, 4, 6]
        );
        assert_ne!(a, lvm_id(2));
    }
}
