//! Names of well-known partition types, for the `part_type` filter.
//!
//! The report keeps the raw type (a GPT type GUID or an MBR type byte, as the
//! partition table holds it); people recognise "Linux LVM" faster than
//! `E6D6D379-F507-44C2-A23C-238F2A3DF928`.

/// (type as the report spells it, name). GPT GUIDs are upper case, MBR types are
/// `0x` + lower-case hex, as the partition layer writes them.
const KNOWN: &[(&str, &str)] = &[
    ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"),
    ("21686148-6449-6E6F-744E-656564454649", "BIOS boot"),
    ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved"),
    (
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "Microsoft basic data",
    ),
    ("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows recovery"),
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
    ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
    ("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
    ("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
    ("CA7D7CCB-63ED-4C53-861C-1742536059CC", "Linux LUKS"),
    (
        "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "Linux extended boot",
    ),
    (
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "Linux root (x86-64)",
    ),
    ("44479540-F297-41B2-9AF7-D131D5F0458A", "Linux root (x86)"),
    ("B921B045-1DF0-41C3-AF44-4C6F280D3FAE", "Linux root (ARM64)"),
    ("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"),
    (
        "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
        "Linux variable data",
    ),
    ("3B8F8425-20E0-4F3B-907F-1A25A76F98E8", "Linux server data"),
    ("516E7CB5-6ECF-11D6-8FF8-00022D09712B", "FreeBSD swap"),
    ("516E7CB6-6ECF-11D6-8FF8-00022D09712B", "FreeBSD UFS"),
    ("516E7CBA-6ECF-11D6-8FF8-00022D09712B", "FreeBSD ZFS"),
    ("0x1", "FAT12"),
    ("0x4", "FAT16 <32M"),
    ("0x5", "Extended"),
    ("0x6", "FAT16"),
    ("0x7", "HPFS/NTFS/exFAT"),
    ("0xb", "W95 FAT32"),
    ("0xc", "W95 FAT32 (LBA)"),
    ("0xe", "W95 FAT16 (LBA)"),
    ("0xf", "W95 extended (LBA)"),
    ("0x27", "Hidden NTFS WinRE"),
    ("0x82", "Linux swap"),
    ("0x83", "Linux"),
    ("0x85", "Linux extended"),
    ("0x8e", "Linux LVM"),
    ("0xa5", "FreeBSD"),
    ("0xee", "GPT protective"),
    ("0xef", "EFI System"),
    ("0xfd", "Linux RAID autodetect"),
];

/// The name of a partition type, if it is a well-known one.
pub fn name(part_type: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(part_type))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            name("E6D6D379-F507-44C2-A23C-238F2A3DF928"),
            Some("Linux LVM")
        );
        assert_eq!(
            name("e6d6d379-f507-44c2-a23c-238f2a3df928"),
            Some("Linux LVM")
        );
        assert_eq!(name("0x83"), Some("Linux"));
        assert_eq!(name("0x99"), None);
        // Every key is spelled as the partition layer writes it.
        for (t, _) in KNOWN {
            let gpt = t.len() == 36 && !t.chars().any(|c| c.is_ascii_lowercase());
            let mbr = t.starts_with("0x") && !t[2..].chars().any(|c| c.is_ascii_uppercase());
            assert!(gpt || mbr, "{t}");
        }
    }
}
