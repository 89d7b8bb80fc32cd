//! Hostile images: metadata bytes of real fixtures (qcow2 header, L1 and L2 tables, MBR
//! and EBRs, GPT header and entries, ext4 superblock, group descriptors and directory
//! blocks, FAT boot sector, FAT and root directory) are mutated a few hundred times, and
//! every run of the real binary must end with a report or a typed error: no panic, no
//! abort, within a generous time and memory bound (a hang detector, not a speed test).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, sh, tempdir, Rng};

/// Bound per run: far above a normal inspection; only a hang or a runaway loop hits it.
const RUN_TIMEOUT_S: u64 = 60;
/// Address-space bound per run (KiB, for `ulimit -v`): an unbounded allocation aborts.
const RUN_MEMORY_KB: u64 = 2 * 1024 * 1024;

/// One fixture disk: a GPT disk with an ext4 root and a vfat ESP, as raw, and the byte
/// ranges of its metadata found with real tools (sfdisk, debugfs).
struct Fixture {
    _dir: tempfile::TempDir,
    raw: PathBuf,
    mbr: PathBuf,
    qcow2: PathBuf,
    ext4_start: u64,
    vfat_start: u64,
    ext4_dir_blocks: Vec<u64>,
    ext4_block: u64,
}

fn fixture() -> Fixture {
    let dir = tempdir();
    let d = dir.path();
    sh(&format!(
        r#"cd {d}; mkdir -p tree/etc/ssh tree/bin tree/var/lib/dpkg efi/EFI/BOOT
        printf 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' > tree/etc/os-release
        echo fuzz-host > tree/etc/hostname
        printf 'root:x:0:0:root:/root:/bin/bash\n' > tree/etc/passwd
        printf 'UUID=0f0e0d0c-0b0a-0908-0706-050403020100 / ext4 defaults 0 1\n' > tree/etc/fstab
        printf 'Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nArchitecture: amd64\nDescription: shell\n\n' > tree/var/lib/dpkg/status
        cp /bin/sh tree/bin/sh
        for i in $(seq 1 40); do echo "file $i" > tree/etc/f$i.conf; done
        echo boot > efi/EFI/BOOT/BOOTX64.EFI
        mkfs.ext4 -q -F -b 1024 -U 0f0e0d0c-0b0a-0908-0706-050403020100 -d tree root.ext4 8M
        truncate -s 4M esp.vfat; mkfs.vfat -n ESP esp.vfat >/dev/null; MTOOLS_SKIP_CHECK=1 mcopy -s -i esp.vfat efi/EFI ::/
        truncate -s 16M disk.raw
        printf 'label: gpt\nstart=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=10240, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q disk.raw
        dd if=esp.vfat of=disk.raw bs=512 seek=2048 conv=notrunc status=none
        dd if=root.ext4 of=disk.raw bs=512 seek=10240 conv=notrunc status=none
        cp disk.raw mbr.raw
        printf 'label: dos\nstart=2048, size=8192, type=ef\nstart=10240, size=20000, type=5\nstart=10241, size=16383, type=83\n' | sfdisk -q mbr.raw 2>/dev/null || \
        printf 'label: dos\nstart=2048, size=8192, type=ef\nstart=10240, size=16384, type=83\n' | sfdisk -q mbr.raw
        qemu-img convert -q -O qcow2 -o cluster_size=4096 disk.raw disk.qcow2"#,
        d = d.display()
    ));
    // Directory blocks of / and /etc, from debugfs (an oracle outside our code).
    let mut ext4_dir_blocks = Vec::new();
    for path in ["/", "/etc"] {
        let out = run(Command::new("debugfs")
            .args(["-R", &format!("blocks {path}")])
            .arg(d.join("root.ext4")));
        ext4_dir_blocks.extend(
            String::from_utf8_lossy(&out)
                .split_whitespace()
                .filter_map(|b| b.parse::<u64>().ok()),
        );
    }
    assert!(
        !ext4_dir_blocks.is_empty(),
        "debugfs found no directory blocks"
    );
    Fixture {
        raw: d.join("disk.raw"),
        mbr: d.join("mbr.raw"),
        qcow2: d.join("disk.qcow2"),
        ext4_start: 10240 * 512,
        vfat_start: 2048 * 512,
        ext4_dir_blocks,
        ext4_block: 1024,
        _dir: dir,
    }
}

fn be_u32(b: &[u8], off: usize) -> u64 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as u64
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// What one mutated run ended with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Report,
    TypedError,
}

fn inspect_mutated(bin: &str, path: &Path) -> Result<Outcome, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {RUN_MEMORY_KB}; exec timeout {RUN_TIMEOUT_S} \"$0\" --log-level error inspect \"$1\""
        ))
        .arg(bin)
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map_err(|e| format!("report is not JSON: {e}"))?;
            Ok(Outcome::Report)
        }
        Some(3 | 4) if !stderr.contains("panicked") && stderr.contains("guestkit-worker: ") => {
            Ok(Outcome::TypedError)
        }
        Some(124) => Err(format!("no answer within {RUN_TIMEOUT_S} s")),
        code => Err(format!(
            "exit {code:?}: {}",
            stderr.chars().take(600).collect::<String>()
        )),
    }
}

/// Mutates 1-4 bytes inside one of `ranges` of a copy of `base`, `runs` times.
fn mutate_runs(
    name: &str,
    base: &Path,
    ranges: &[(u64, u64)],
    runs: usize,
    seed: u64,
) -> (usize, usize) {
    let bin = env!("CARGO_BIN_EXE_guestkit-worker");
    let original = std::fs::read(base).unwrap();
    let work = tempdir();
    let target = work.path().join(base.file_name().unwrap());
    let mut rng = Rng(seed);
    let (mut reports, mut errors) = (0, 0);
    for i in 0..runs {
        let mut bytes = original.clone();
        let (start, len) = ranges[rng.below(ranges.len() as u64) as usize];
        let mut changed = Vec::new();
        for _ in 0..=rng.below(4) {
            let at = (start + rng.below(len)) as usize;
            if at < bytes.len() {
                bytes[at] = rng.byte();
                changed.push(at);
            }
        }
        std::fs::write(&target, &bytes).unwrap();
        match inspect_mutated(bin, &target) {
            Ok(Outcome::Report) => reports += 1,
            Ok(Outcome::TypedError) => errors += 1,
            Err(why) => panic!("{name} run {i} (seed {seed}, bytes {changed:?}): {why}"),
        }
    }
    eprintln!("{name}: {runs} mutations: {reports} reports, {errors} typed errors");
    (reports, errors)
}

#[test]
fn mutated_metadata_never_panics_hangs_or_exhausts_memory() {
    let f = fixture();
    // Untouched fixtures inspect fine (so a mutation run means something).
    let bin = env!("CARGO_BIN_EXE_guestkit-worker");
    for p in [&f.raw, &f.mbr, &f.qcow2] {
        assert_eq!(inspect_mutated(bin, p), Ok(Outcome::Report), "{p:?}");
    }

    // qcow2: header, L1 table, first L2 table (offsets read from the header).
    let q = std::fs::read(&f.qcow2).unwrap();
    let cluster = 1u64 << be_u32(&q, 20);
    let (l1_size, l1_off) = (be_u32(&q, 36), be_u64(&q, 40));
    let l2_off = be_u64(&q, l1_off as usize) & 0x00ff_ffff_ffff_fe00;
    let qcow2_ranges = [(0, 104), (l1_off, l1_size * 8), (l2_off, cluster)];
    mutate_runs("qcow2", &f.qcow2, &qcow2_ranges, 120, 0x9e37_79b9);

    // GPT header and entries, backup header.
    let size = std::fs::metadata(&f.raw).unwrap().len();
    mutate_runs(
        "gpt",
        &f.raw,
        &[(512, 92), (1024, 256), (size - 512, 92)],
        60,
        0x1234_5678,
    );
    // MBR and the EBR of the extended partition.
    mutate_runs(
        "mbr",
        &f.mbr,
        &[(446, 66), (10240 * 512 + 446, 66)],
        40,
        0x5151_5151,
    );

    // ext4: superblock, group descriptors, directory blocks of / and /etc.
    let b = f.ext4_block;
    let mut ext4_ranges = vec![(f.ext4_start + 1024, 1024), (f.ext4_start + 2 * b, b)];
    ext4_ranges.extend(
        f.ext4_dir_blocks
            .iter()
            .map(|blk| (f.ext4_start + blk * b, b)),
    );
    mutate_runs("ext4", &f.raw, &ext4_ranges, 100, 0xdead_beef);

    // vfat: boot sector, first FAT sectors, root directory region.
    let vfat_ranges = [
        (f.vfat_start, 512),
        (f.vfat_start + 512, 4096),
        (f.vfat_start + 8 * 512, 16 * 1024),
    ];
    mutate_runs("vfat", &f.raw, &vfat_ranges, 60, 0xfeed_f00d);
}
