//! MD RAID arrays: members grouped by array UUID (the newest event count wins, stale
//! members are left out), and the array read as md maps it: raid0 stripes, raid1
//! copies, raid10 near copies, raid4/5/6 data chunks where md's layout algorithm puts
//! them (the array itself is a [`RaidSource`], shared with LVM's raid segments); a member
//! missing where the level allows is rebuilt there.

pub mod superblock;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::raid::{algo, Kind, RaidSource};
use super::BlockDevice;
use crate::inspect::report::MdArrayInfo;
use crate::inspect::source::{ReadAt, Slice};
use superblock::{MdSuperblock, MAX_CHUNK, MAX_MEMBERS};

/// What assembling the md members of one round produced.
#[derive(Default)]
pub struct MdAssembled {
    pub devices: Vec<BlockDevice>,
    pub arrays: Vec<MdArrayInfo>,
    pub warnings: Vec<String>,
}

/// Splits `members` into those carrying an md superblock (with it) and the others.
pub fn split(members: &[BlockDevice]) -> (Vec<(BlockDevice, MdSuperblock)>, Vec<BlockDevice>) {
    let mut md = Vec::new();
    let mut rest = Vec::new();
    for m in members {
        match superblock::detect(m.src.as_ref()) {
            Ok(Some(sb)) => md.push((m.clone(), sb)),
            _ => rest.push(m.clone()),
        }
    }
    (md, rest)
}

/// Assembles every array whose members are in `members`. `next_minor` hands out
/// `/dev/md127` downwards to arrays with no number of their own.
pub fn assemble(members: &[(BlockDevice, MdSuperblock)]) -> MdAssembled {
    let mut out = MdAssembled::default();
    let mut groups: BTreeMap<[u8; 16], Vec<&(BlockDevice, MdSuperblock)>> = BTreeMap::new();
    for m in members {
        groups.entry(m.1.uuid_raw).or_default().push(m);
    }
    // Arrays in the order of their first member's device, as the guest scans them.
    let mut ordered: Vec<Vec<&(BlockDevice, MdSuperblock)>> = groups.into_values().collect();
    ordered.sort_by(|a, b| a[0].0.name.cmp(&b[0].0.name));
    let mut next_minor = 127u32;
    let mut used: Vec<u32> = ordered.iter().filter_map(|g| own_minor(&g[0].1)).collect();
    for group in ordered {
        let minor = own_minor(&group[0].1).unwrap_or_else(|| {
            while used.contains(&next_minor) && next_minor > 0 {
                next_minor -= 1;
            }
            used.push(next_minor);
            next_minor
        });
        assemble_one(&group, format!("/dev/md{minor}"), &mut out);
    }
    out
}

/// The array's own number: 0.90's preferred minor, or a 1.x name `host:N` / `N`.
fn own_minor(sb: &MdSuperblock) -> Option<u32> {
    if let Some(m) = sb.preferred_minor {
        return (m < 1 << 20).then_some(m);
    }
    let name = sb.name.as_deref()?;
    let short = name.rsplit_once(':').map_or(name, |(_, n)| n);
    short.parse::<u32>().ok().filter(|n| *n < 1 << 20)
}

fn assemble_one(group: &[&(BlockDevice, MdSuperblock)], device: String, out: &mut MdAssembled) {
    let newest = group.iter().map(|m| m.1.events).max().unwrap_or(0);
    let fresh: Vec<&(BlockDevice, MdSuperblock)> = group
        .iter()
        .copied()
        .filter(|m| {
            // The kernel accepts a member one event behind (a clean shutdown race).
            m.1.events.saturating_add(1) >= newest
        })
        .collect();
    for m in group
        .iter()
        .filter(|m| m.1.events.saturating_add(1) < newest)
    {
        out.warnings.push(format!(
            "{device}: member {} is stale (events {} < {newest}) and left out",
            m.0.name, m.1.events
        ));
    }
    let sb = &fresh
        .iter()
        .max_by_key(|m| m.1.events)
        .expect("a group has members")
        .1;
    let mut info = MdArrayInfo {
        device: device.clone(),
        name: sb.name.clone(),
        uuid: sb.uuid_mdadm(),
        level: sb.level_name(),
        members: fresh.iter().map(|m| m.0.name.clone()).collect(),
        state: "unreadable".into(),
    };
    match open(sb, &fresh) {
        Ok((src, missing)) => {
            if missing.is_empty() {
                info.state = "clean".into();
            } else {
                info.state = "degraded".into();
                out.warnings.push(format!(
                    "{device}: array is degraded (member slot(s) {} missing); read from the remaining members",
                    missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
            out.devices.push(BlockDevice { name: device, src });
        }
        Err(e) => out.warnings.push(format!("{device}: array not read: {e}")),
    }
    out.arrays.push(info);
}

/// Why an array cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("invalid md superblock: {0}")]
    Invalid(String),
    #[error("{0} is not read")]
    Unsupported(String),
    #[error("{level} with {present} of {total} members cannot be read")]
    TooDegraded {
        level: String,
        present: usize,
        total: u32,
    },
}

/// Opens the array from its fresh members; returns the source and the missing slots.
fn open(
    sb: &MdSuperblock,
    members: &[&(BlockDevice, MdSuperblock)],
) -> Result<(Arc<dyn ReadAt>, Vec<u32>), MdError> {
    if sb.reshaping {
        return Err(MdError::Unsupported("an array being reshaped".into()));
    }
    let n = sb.raid_disks;
    if n == 0 || n > MAX_MEMBERS {
        return Err(MdError::Invalid(format!("{n} members")));
    }
    let chunked = matches!(sb.level, 0 | 4 | 5 | 6 | 10);
    if chunked && (sb.chunk < 512 || sb.chunk > MAX_CHUNK || !sb.chunk.is_power_of_two()) {
        return Err(MdError::Invalid(format!("chunk size {}", sb.chunk)));
    }
    let mut slots: Vec<Option<Arc<dyn ReadAt>>> = vec![None; n as usize];
    let mut sizes = Vec::new();
    for (dev, msb) in members {
        let Some(role) = msb.role.filter(|r| *r < n) else {
            continue;
        };
        if slots[role as usize].is_some() {
            continue;
        }
        let end = dev.src.size();
        let len = if msb.data_size > 0 {
            msb.data_size
        } else {
            end.saturating_sub(msb.data_offset)
        };
        let src = Slice::new(dev.src.clone(), msb.data_offset, len).map_err(|_| {
            MdError::Invalid(format!(
                "{}: data offset {} + size {len} past the member's end {end}",
                dev.name, msb.data_offset
            ))
        })?;
        sizes.push(len);
        slots[role as usize] = Some(Arc::new(src));
    }
    let present = slots.iter().flatten().count();
    let too_degraded = || MdError::TooDegraded {
        level: sb.level_name(),
        present,
        total: n,
    };
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    // Each member's share of the array: the superblock's component size, or (raid0,
    // which records none) the data size rounded down to whole chunks.
    let per = if sb.component_size > 0 && sb.level != 0 {
        sb.component_size
    } else if chunked {
        smallest / sb.chunk * sb.chunk
    } else {
        smallest
    };
    if per > smallest {
        return Err(MdError::Invalid(format!(
            "component size {per} exceeds a member's data area ({smallest})"
        )));
    }
    let n64 = u64::from(n);
    let (kind, size) = match sb.level {
        1 => (Kind::Mirror, per),
        0 => (Kind::Stripe, per * n64),
        10 => {
            let near = u64::from(sb.layout & 0xff);
            let far = (sb.layout >> 8) & 0xff;
            if far != 1 || sb.layout >> 16 != 0 || near == 0 || near > n64 {
                return Err(MdError::Unsupported(format!(
                    "raid10 layout {:#x} (only near copies are read)",
                    sb.layout
                )));
            }
            let size = per / sb.chunk * n64 / near * sb.chunk;
            (Kind::Near(near), size)
        }
        4..=6 => {
            let q = sb.level == 6;
            let parity = if q { 2 } else { 1 };
            if n64 <= parity {
                return Err(MdError::Invalid(format!(
                    "raid{} with {n} members",
                    sb.level
                )));
            }
            // md's raid4 is parity on the last member.
            let algo = if sb.level == 4 {
                algo::PARITY_N
            } else {
                sb.layout
            };
            if !algo::known(algo, q) {
                return Err(MdError::Unsupported(format!(
                    "raid{} layout {algo}",
                    sb.level
                )));
            }
            (Kind::Parity { algo, q }, per * (n64 - parity))
        }
        -1 => return Err(MdError::Unsupported("linear array".into())),
        l => return Err(MdError::Unsupported(format!("md level {l}"))),
    };
    let src = RaidSource::new(slots, sb.chunk, size, kind).ok_or_else(too_degraded)?;
    let missing = src.missing();
    Ok((Arc::new(src), missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inspect::source::MemSource;

    fn sb(role: u32, events: u64, level: i32, n: u32) -> MdSuperblock {
        MdSuperblock {
            version: superblock::SbVersion::V12,
            uuid_raw: [7; 16],
            name: Some("h:data".into()),
            preferred_minor: None,
            level,
            layout: 2,
            chunk: 512,
            raid_disks: n,
            component_size: 4096,
            data_offset: 0,
            data_size: 4096,
            events,
            role: Some(role),
            checksum_ok: true,
            reshaping: false,
        }
    }

    fn member(name: &str, data: Vec<u8>, s: MdSuperblock) -> (BlockDevice, MdSuperblock) {
        let src: Arc<dyn ReadAt> = Arc::new(MemSource(data));
        (
            BlockDevice {
                name: name.into(),
                src,
            },
            s,
        )
    }

    #[test]
    fn stale_members_are_left_out() {
        let a = assemble(&[
            member("/dev/sda1", vec![1; 4096], sb(0, 10, 1, 2)),
            member("/dev/sdb1", vec![2; 4096], sb(1, 5, 1, 2)),
        ]);
        assert_eq!(a.arrays[0].device, "/dev/md127");
        assert_eq!(a.arrays[0].members, vec!["/dev/sda1"]);
        assert_eq!(a.arrays[0].state, "degraded");
        assert!(
            a.warnings[0].contains("/dev/sdb1 is stale"),
            "{:?}",
            a.warnings
        );
        let mut buf = [0u8; 4];
        a.devices[0].src.read_exact_at(4000, &mut buf).unwrap();
        assert_eq!(buf, [1; 4]);
    }

    #[test]
    fn raid5_missing_member_is_rebuilt_by_xor() {
        // 3 members, left-symmetric, 512-byte chunks: lay out 16 data chunks of known
        // bytes with their parity, then drop each member in turn.
        let (n, chunk) = (3u64, 512usize);
        let data: Vec<u8> = (0..16 * chunk).map(|i| (i * 7 % 253) as u8).collect();
        let mut disks = vec![vec![0u8; 4096]; 3];
        for c in 0..16u64 {
            let (row, d) = (c / 2, c % 2);
            let (dd, pd, _) = crate::inspect::volume::raid::parity_row(2, false, n, row, d);
            let at = row as usize * chunk;
            let bytes = &data[c as usize * chunk..(c as usize + 1) * chunk];
            disks[dd as usize][at..at + chunk].copy_from_slice(bytes);
            for (p, b) in disks[pd as usize][at..at + chunk].iter_mut().zip(bytes) {
                *p ^= b;
            }
        }
        for dropped in 0..3 {
            let members: Vec<_> = (0..3u32)
                .filter(|i| *i != dropped)
                .map(|i| {
                    member(
                        &format!("/dev/sd{i}"),
                        disks[i as usize].clone(),
                        sb(i, 1, 5, 3),
                    )
                })
                .collect();
            let a = assemble(&members);
            assert_eq!(a.arrays[0].state, "degraded");
            let src = &a.devices[0].src;
            assert_eq!(src.size(), 8192);
            let mut got = vec![0u8; 8192];
            src.read_exact_at(0, &mut got).unwrap();
            assert_eq!(got, data, "member {dropped} missing");
        }
        // Two missing: not readable, said so.
        let a = assemble(&[member("/dev/sd0", disks[0].clone(), sb(0, 1, 5, 3))]);
        assert_eq!(a.arrays[0].state, "unreadable");
        assert!(a.devices.is_empty());
    }
}
