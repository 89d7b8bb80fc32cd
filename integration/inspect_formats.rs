//! The VMDK, VHD (vpc), VHDX and VDI readers against qemu: images made by real `qemu-img`
//! (every subformat it writes) from a disk of random data and holes, every virtual byte
//! read through our reader compared with `qemu-img convert -O raw` (in chunks, at
//! pseudo-random offsets, and as a whole by sha256). Differencing images qemu cannot make
//! are patched here from qemu-made ones and checked against the composition of parent
//! and child computed by this file. Plus hostile descriptors and parents, and the Debian
//! fixture's OS report, identical in every format.

use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::image::{self, ImageFormat, OpenedImage};
use guestkit_worker::inspect::source::ReadAt;
use guestkit_worker::inspect::source::ReadError;

use crate::common::{run, sh, sha256sum, tempdir, Rng};
use crate::inspect_image::{build_raw, compare, qemu_img};

fn open(path: &Path, fmt: Option<&str>, root: &Path) -> Result<OpenedImage, ReadError> {
    image::open(path, fmt, &[root.to_path_buf()])
}

/// Compares `name` (opened as `format`, with `chain_len` parents) with qemu's raw view.
fn check_against_qemu(
    dir: &Path,
    name: &str,
    format: ImageFormat,
    chain_len: usize,
) -> Result<(), String> {
    let path = dir.join(name);
    // The format is given: qemu probes a fixed VHD (footer only) as raw.
    let oracle = dir.join("oracle.raw");
    qemu_img(&[
        "convert",
        "-f",
        format.as_str(),
        "-O",
        "raw",
        path.to_str().unwrap(),
        oracle.to_str().unwrap(),
    ]);
    let img = open(&path, Some(format.as_str()), dir).map_err(|e| format!("open: {e}"))?;
    if img.format != format || img.backing_chain.len() != chain_len {
        return Err(format!(
            "format {} chain {:?}",
            img.format, img.backing_chain
        ));
    }
    let (result, took) = compare(img.source.as_ref(), &oracle);
    let result = result.and_then(|ours| {
        let theirs = sha256sum(&oracle);
        if ours == theirs {
            Ok(())
        } else {
            Err(format!("sha256 {ours} != qemu-img's {theirs}"))
        }
    });
    std::fs::remove_file(&oracle).unwrap();
    eprintln!(
        "{name:>34}: {} virtual bytes in {:>7.1} ms",
        img.virtual_size,
        took.as_secs_f64() * 1e3
    );
    result
}

#[test]
fn every_qemu_subformat_matches_qemu_img() {
    let tmp = tempdir();
    let dir = tmp.path();
    let raw = build_raw(dir);
    let raw = raw.to_str().unwrap();
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let mut cases: Vec<(String, ImageFormat, usize)> = Vec::new();
    for sub in [
        "monolithicSparse",
        "streamOptimized",
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    ] {
        // Each in its own directory: extent files are named after the descriptor.
        std::fs::create_dir(dir.join(sub)).unwrap();
        let name = format!("{sub}/disk.vmdk");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            raw,
            &d(&name),
        ]);
        cases.push((name, ImageFormat::Vmdk, 0));
    }
    // VMDK delta disks: a child of a monolithicSparse parent, and a grandchild.
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "monolithicSparse/disk.vmdk",
        "-F",
        "vmdk",
        &d("delta.vmdk"),
    ]);
    qemu_io_vmdk(
        &dir.join("delta.vmdk"),
        &[
            "write -P 0x44 0 64k",
            "write -P 0x55 2M 1M",
            "write -P 0x5a 63M 3k",
        ],
    );
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "delta.vmdk",
        "-F",
        "vmdk",
        &d("delta2.vmdk"),
    ]);
    qemu_io_vmdk(
        &dir.join("delta2.vmdk"),
        &["write -P 0x66 32k 64k", "write -P 0x77 40M 100k"],
    );
    cases.push(("delta.vmdk".into(), ImageFormat::Vmdk, 1));
    cases.push(("delta2.vmdk".into(), ImageFormat::Vmdk, 2));
    for (name, fmt, opts) in [
        ("dynamic.vhd", "vpc", "subformat=dynamic"),
        ("fixed.vhd", "vpc", "subformat=fixed"),
        ("dynamic.vhdx", "vhdx", "subformat=dynamic"),
        ("dynamic-1m.vhdx", "vhdx", "subformat=dynamic,block_size=1M"),
        (
            "dynamic-8m-4k.vhdx",
            "vhdx",
            "subformat=dynamic,block_size=8M,log_size=1M",
        ),
        ("fixed.vhdx", "vhdx", "subformat=fixed"),
        ("dynamic.vdi", "vdi", "static=off"),
        ("static.vdi", "vdi", "static=on"),
    ] {
        qemu_img(&["convert", "-f", "raw", "-O", fmt, "-o", opts, raw, &d(name)]);
        cases.push((name.into(), ImageFormat::from_name(fmt).unwrap(), 0));
    }
    let mut failures = Vec::new();
    for (name, format, chain) in &cases {
        if let Err(e) = check_against_qemu(dir, name, *format, *chain) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));

    // The chain is reported nearest first, as canonical paths.
    let top = open(&dir.join("delta2.vmdk"), None, dir).unwrap();
    let canon = |n: &str| dir.join(n).canonicalize().unwrap();
    assert_eq!(
        top.backing_chain,
        vec![canon("delta.vmdk"), canon("monolithicSparse/disk.vmdk")]
    );
}

fn qemu_io_vmdk(image: &Path, cmds: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "vmdk"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    let out = String::from_utf8_lossy(&run(cmd.arg(image))).into_owned();
    assert!(!out.contains("error") && !out.contains("failed"), "{out}");
}

/// twoGbMaxExtent images of a 4.5 GiB disk have three extents; data is written across
/// both extent boundaries and compared with qemu at those places and at random offsets
/// (a whole pass would read 4.5 GiB).
#[test]
fn multi_extent_vmdk_matches_qemu_img() {
    let tmp = tempdir();
    let dir = tmp.path();
    let size: u64 = 4608 << 20;
    let marks = [0u64, (2048 << 20) - 3000, (4096 << 20) - 5000, size - 70000];
    let mut script = format!("cd '{}' && truncate -s {size} big.raw\n", dir.display());
    for m in marks {
        script += &format!(
            "head -c 70000 /dev/urandom | dd of=big.raw bs=1 seek={m} conv=notrunc status=none\n"
        );
    }
    sh(&script);
    for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
        let out = dir.join(sub).join("big.vmdk");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            dir.join("big.raw").to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        let extents = std::fs::read_dir(dir.join(sub)).unwrap().count() - 1;
        assert_eq!(extents, 3, "{sub}");
        let img = open(&out, Some("vmdk"), dir).unwrap();
        assert_eq!(img.virtual_size, size);
        let oracle = std::fs::File::open(dir.join("big.raw")).unwrap();
        let mut rng = Rng(0x51ed_270b_0a7f_93c1);
        let mut ranges: Vec<(u64, usize)> = marks.iter().map(|&m| (m, 70000)).collect();
        for _ in 0..200 {
            let n = rng.below(200_000) as usize + 1;
            ranges.push((rng.below(size - n as u64), n));
        }
        for (off, n) in ranges {
            let (mut ours, mut theirs) = (vec![0u8; n], vec![0u8; n]);
            img.source
                .read_exact_at(off, &mut ours)
                .unwrap_or_else(|e| panic!("{sub} at {off}: {e}"));
            std::os::unix::fs::FileExt::read_exact_at(&oracle, &mut theirs, off).unwrap();
            assert!(
                ours == theirs,
                "{sub}: {n} bytes at {off} differ from the source disk"
            );
        }
    }
}

/// The Debian fixture (GPT, ESP, ext4 root; see `fixtures/debian-disk.sh`) converted by
/// qemu-img to every format: the inspection report is identical to the qcow2 one apart
/// from the `image` section, which names the format.
#[test]
fn debian_report_is_identical_in_every_format() {
    use guestkit_worker::inspect::pipeline::{self, InspectOptions};
    let dir = tempdir();
    let d = dir.path();
    run(
        Command::new(crate::common::fixtures().join("debian-disk.sh"))
            .arg("bookworm")
            .arg(crate::common::fixture_cache())
            .arg(d),
    );
    let qcow2 = d.join("disk.qcow2");
    let inspect = |image: &Path| {
        let opts = InspectOptions {
            image_roots: vec![d.to_path_buf()],
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let (mut report, stats) = pipeline::inspect_with_stats(image, &opts)
            .unwrap_or_else(|e| panic!("inspect {}: {e}", image.display()));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let format = std::mem::take(&mut report.image.format);
        // `image` and `disks` name the file and its format: all the rest must be equal.
        report.image = Default::default();
        report.disks = Vec::new();
        (
            serde_json::to_value(&report).unwrap(),
            format,
            stats.bytes_read,
            ms,
        )
    };
    let (expected, _, qcow2_bytes, qcow2_ms) = inspect(&qcow2);
    assert!(
        expected["operating_systems"][0]["applications"]
            .as_array()
            .is_some_and(|a| a.len() > 50),
        "the fixture's report has its packages"
    );
    let src = qcow2.to_str().unwrap();
    for (name, fmt, opts) in [
        ("d-sparse.vmdk", "vmdk", "subformat=monolithicSparse"),
        ("d-stream.vmdk", "vmdk", "subformat=streamOptimized"),
        ("d-flat.vmdk", "vmdk", "subformat=monolithicFlat"),
        ("d.vhd", "vpc", "subformat=dynamic,force_size=on"),
        ("d.vhdx", "vhdx", "subformat=dynamic"),
        ("d.vdi", "vdi", "static=off"),
    ] {
        let out = d.join(name);
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            fmt,
            "-o",
            opts,
            src,
            out.to_str().unwrap(),
        ]);
        let (report, format, bytes, ms) = inspect(&out);
        assert_eq!(format, fmt, "{name}");
        // Printed, not asserted (debug build, shared machine): the bench has the numbers.
        eprintln!(
            "{name:>14}: {bytes} guest bytes read (qcow2: {qcow2_bytes}), {ms:.0} ms (qcow2: {qcow2_ms:.0} ms)"
        );
        assert!(
            report == expected,
            "{name}: report differs from qcow2's:\n{}\nvs\n{}",
            serde_json::to_string_pretty(&report).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        );
    }
}

/// Builds `parent.raw` (random data and holes) and `child.raw` (other data in a few
/// places, zeros elsewhere) of `size` bytes in `dir`.
fn parent_and_child(dir: &Path, size: u64) {
    sh(&format!(
        r#"cd '{}'
        truncate -s {size} parent.raw child.raw
        put() {{ head -c $3 /dev/urandom | dd of=$1 bs=64k iflag=fullblock oflag=seek_bytes seek=$2 conv=notrunc status=none; }}
        put parent.raw 0 3000000; put parent.raw 5000000 2500000; put parent.raw $(({size} - 4096)) 4096
        put child.raw 1048576 70000; put child.raw 4194304 2097152; put child.raw 9437184 512"#,
        dir.display()
    ));
}

/// The expected guest bytes of a differencing image: `child.raw` where `from_child`
/// says (per `unit`-byte unit), `parent.raw` elsewhere.
fn compose(dir: &Path, unit: u64, from_child: impl Fn(u64) -> bool) -> Vec<u8> {
    let parent = std::fs::read(dir.join("parent.raw")).unwrap();
    let child = std::fs::read(dir.join("child.raw")).unwrap();
    let mut out = parent.clone();
    for (i, chunk) in out.chunks_mut(unit as usize).enumerate() {
        if from_child(i as u64) {
            let at = i * unit as usize;
            chunk.copy_from_slice(&child[at..at + chunk.len()]);
        }
    }
    out
}

fn read_all(img: &OpenedImage) -> Vec<u8> {
    let mut buf = vec![0u8; img.virtual_size as usize];
    for (i, chunk) in buf.chunks_mut(1_000_003).enumerate() {
        img.source
            .read_exact_at(i as u64 * 1_000_003, chunk)
            .unwrap();
    }
    buf
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// One's-complement byte sum of a VHD footer or dynamic header.
fn vhd_checksum(b: &mut [u8], at: usize) {
    b[at..at + 4].fill(0);
    let sum = b.iter().fold(0u32, |a, &x| a.wrapping_add(u32::from(x)));
    b[at..at + 4].copy_from_slice(&(!sum).to_be_bytes());
}

/// A differencing VHD made from qemu's dynamic VHD of `child.raw`: footer type 4, the
/// parent's unique id and a relative W2ru locator in the dynamic header, and one block's
/// sector bitmap partly cleared (those sectors read from the parent).
#[test]
fn differencing_vhd_composes_parent_and_child() {
    let tmp = tempdir();
    let dir = tmp.path();
    let size = 12 << 20;
    parent_and_child(dir, size);
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for n in ["parent", "child"] {
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=dynamic,force_size=on",
            &d(&format!("{n}.raw")),
            &d(&format!("{n}.vhd")),
        ]);
    }
    let parent = std::fs::read(dir.join("parent.vhd")).unwrap();
    let parent_id: [u8; 16] = parent[68..84].try_into().unwrap();
    let mut c = std::fs::read(dir.join("child.vhd")).unwrap();
    let footer_at = c.len() - 512;
    let dyn_at = u64::from_be_bytes(c[16..24].try_into().unwrap()) as usize;
    let bat_at = u64::from_be_bytes(c[dyn_at + 16..dyn_at + 24].try_into().unwrap()) as usize;
    let block = be32(&c, dyn_at + 32) as u64;
    let entries = be32(&c, dyn_at + 28) as usize;
    let bat: Vec<u32> = (0..entries).map(|i| be32(&c, bat_at + 4 * i)).collect();
    // Clear the bitmap bits of sectors 8..16 of the first allocated block.
    let (first_block, first_sector) = bat
        .iter()
        .enumerate()
        .find(|(_, &e)| e != u32::MAX)
        .map(|(i, &e)| (i as u64, e as usize))
        .unwrap();
    c[first_sector * 512 + 1] = 0;
    // The locator's data goes where the footer was; the footer moves one sector on.
    let name: Vec<u8> = ".\\parent.vhd"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut footer = c[footer_at..].to_vec();
    c.truncate(footer_at);
    let mut loc = vec![0u8; 512];
    loc[..name.len()].copy_from_slice(&name);
    c.extend(&loc);
    let h = dyn_at;
    c[h + 40..h + 56].copy_from_slice(&parent_id);
    c[h + 576..h + 580].copy_from_slice(b"W2ru");
    c[h + 580..h + 584].copy_from_slice(&1u32.to_be_bytes());
    c[h + 584..h + 588].copy_from_slice(&(name.len() as u32).to_be_bytes());
    c[h + 592..h + 600].copy_from_slice(&(footer_at as u64).to_be_bytes());
    vhd_checksum(&mut c[h..h + 1024], 36);
    footer[60..64].copy_from_slice(&4u32.to_be_bytes());
    vhd_checksum(&mut footer, 64);
    c[..512].copy_from_slice(&footer);
    c.extend(&footer);
    std::fs::write(dir.join("diff.vhd"), &c).unwrap();

    let img = open(&dir.join("diff.vhd"), Some("vpc"), dir).unwrap();
    assert_eq!(
        img.backing_chain,
        vec![dir.join("parent.vhd").canonicalize().unwrap()]
    );
    let expected = compose(dir, 512, |s| {
        let b = s * 512 / block;
        bat[b as usize] != u32::MAX && !(b == first_block && (8..16).contains(&(s % (block / 512))))
    });
    assert!(
        read_all(&img) == expected,
        "differencing VHD differs from parent+child"
    );

    // A locator leading out of the roots (`..`) is refused before the file is opened.
    let mut escape = c.clone();
    let name: Vec<u8> = "..\\parent.vhd"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    escape[footer_at..footer_at + name.len()].copy_from_slice(&name);
    escape[h + 584..h + 588].copy_from_slice(&(name.len() as u32).to_be_bytes());
    vhd_checksum(&mut escape[h..h + 1024], 36);
    std::fs::write(dir.join("escape.vhd"), &escape).unwrap();
    match open(&dir.join("escape.vhd"), None, dir) {
        Err(ReadError::BackingOutsideRoots { .. }) => {}
        Err(e) => panic!("escape: wrong error {e}"),
        Ok(_) => panic!("escape: opened a parent outside the roots"),
    }

    // A parent with another unique id is refused, never silently mixed.
    let mut other = parent.clone();
    let n = other.len();
    let mut foot = other[n - 512..].to_vec();
    foot[68] ^= 1;
    vhd_checksum(&mut foot, 64);
    other[n - 512..].copy_from_slice(&foot);
    other[..512].copy_from_slice(&foot);
    std::fs::write(dir.join("parent.vhd"), &other).unwrap();
    match open(&dir.join("diff.vhd"), None, dir) {
        Err(ReadError::ParentMismatch { .. }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened with the wrong parent"),
    }
}

/// A differencing VDI made from qemu's dynamic VDI of `child.raw`: type 4 and the
/// parent's creation UUID as link UUID; the parent is found by UUID in the directory.
#[test]
fn differencing_vdi_composes_parent_and_child() {
    let tmp = tempdir();
    let dir = tmp.path();
    let size = 12 << 20;
    parent_and_child(dir, size);
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for n in ["parent", "child"] {
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vdi",
            &d(&format!("{n}.raw")),
            &d(&format!("{n}.vdi")),
        ]);
    }
    let parent = std::fs::read(dir.join("parent.vdi")).unwrap();
    let mut c = std::fs::read(dir.join("child.vdi")).unwrap();
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    c[0x4c..0x50].copy_from_slice(&4u32.to_le_bytes());
    c[0x1a8..0x1b8].copy_from_slice(&parent[0x188..0x198]);
    std::fs::write(dir.join("diff.vdi"), &c).unwrap();
    let (bmap, block) = (le32(&c, 0x154) as usize, le32(&c, 0x178) as u64);
    let img = open(&dir.join("diff.vdi"), Some("vdi"), dir).unwrap();
    assert_eq!(
        img.backing_chain,
        vec![dir.join("parent.vdi").canonicalize().unwrap()]
    );
    let expected = compose(dir, block, |b| {
        le32(&c, bmap + 4 * b as usize) < 0xffff_fffe
    });
    assert!(
        read_all(&img) == expected,
        "differencing VDI differs from parent+child"
    );
    // No VDI with the link UUID next to it: a typed error.
    std::fs::remove_file(dir.join("parent.vdi")).unwrap();
    match open(&dir.join("diff.vdi"), None, dir) {
        Err(ReadError::Unsupported {
            format: "vdi",
            message,
        }) => assert!(message.contains("no parent VDI"), "{message}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened without its parent"),
    }
}

/// Descriptors naming extents outside the roots (absolute, `..`, a symlink), ESXi-only
/// subformats, delta disks whose parent loops or has another CID, and a VHDX with an
/// active log: typed errors, and nothing outside the roots is opened.
#[test]
fn hostile_descriptors_and_parents_are_refused() {
    let tmp = tempdir();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.img"), vec![0x5eu8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.img"), root.join("link.img")).unwrap();
    let descriptor = |name: &str, extent: &str, kind: &str| {
        let text = format!(
            "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 {kind} \"{extent}\" 0\n"
        );
        std::fs::write(root.join(name), text).unwrap();
        root.join(name)
    };
    let secret = outside.join("secret.img");
    for (name, extent) in [
        ("abs.vmdk", secret.to_str().unwrap()),
        ("dotdot.vmdk", "../outside/secret.img"),
        ("link.vmdk", "link.img"),
        ("etc.vmdk", "/etc/passwd"),
    ] {
        match open(&descriptor(name, extent, "FLAT"), Some("vmdk"), &root) {
            Err(ReadError::ExtentOutsideRoots { .. }) => {}
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name}: read an extent outside the roots"),
        }
    }
    // Inside the roots the same kind of descriptor opens.
    std::fs::write(root.join("inside.img"), vec![0x11u8; 1 << 20]).unwrap();
    let ok = open(
        &descriptor("ok.vmdk", "inside.img", "FLAT"),
        Some("vmdk"),
        &root,
    )
    .unwrap();
    assert_eq!(ok.virtual_size, 1 << 20);
    for kind in ["SESPARSE", "VMFSSPARSE", "VMFSRDM"] {
        match open(&descriptor("esx.vmdk", "inside.img", kind), None, &root) {
            Err(ReadError::Unsupported {
                format: "vmdk",
                message,
            }) => assert!(message.contains(kind), "{message}"),
            Err(e) => panic!("{kind}: wrong error {e}"),
            Ok(_) => panic!("{kind}: opened"),
        }
    }

    // Delta disks: a loop (a -> b -> a) and a parent whose CID changed.
    let r = |n: &str| root.join(n).to_str().unwrap().to_string();
    qemu_img(&["create", "-f", "vmdk", &r("base.vmdk"), "1M"]);
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        &r("a.vmdk"),
    ]);
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "a.vmdk",
        "-F",
        "vmdk",
        &r("b.vmdk"),
    ]);
    assert_eq!(
        open(&root.join("b.vmdk"), None, &root)
            .unwrap()
            .backing_chain
            .len(),
        2
    );
    // The embedded descriptor is plain text: point a's parent at b (same length names).
    let mut a = std::fs::read(root.join("a.vmdk")).unwrap();
    let at = a
        .windows(25)
        .position(|w| w == b"parentFileNameHint=\"base.")
        .unwrap()
        + 20;
    a[at..at + 10].copy_from_slice(b"b.vmdk\"   ");
    let cid_b = String::from_utf8_lossy(&std::fs::read(root.join("b.vmdk")).unwrap())
        .split("CID=")
        .nth(1)
        .unwrap()[..8]
        .to_string();
    let pat = a.windows(10).position(|w| w == b"parentCID=").unwrap() + 10;
    a[pat..pat + 8].copy_from_slice(cid_b.as_bytes());
    std::fs::write(root.join("a.vmdk"), &a).unwrap();
    match open(&root.join("b.vmdk"), None, &root) {
        Err(ReadError::BackingLoop { .. }) => {}
        Err(e) => panic!("loop: wrong error {e}"),
        Ok(_) => panic!("opened a looping chain"),
    }
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        &r("c.vmdk"),
    ]);
    let mut c = std::fs::read(root.join("c.vmdk")).unwrap();
    let pat = c.windows(10).position(|w| w == b"parentCID=").unwrap() + 10;
    c[pat..pat + 8].copy_from_slice(b"0badc0de");
    std::fs::write(root.join("c.vmdk"), &c).unwrap();
    match open(&root.join("c.vmdk"), None, &root) {
        Err(ReadError::ParentMismatch { .. }) => {}
        Err(e) => panic!("CID: wrong error {e}"),
        Ok(_) => panic!("opened a delta disk over a changed parent"),
    }

    // VHDX whose log holds entries: refused, never read around the log.
    qemu_img(&["create", "-f", "vhdx", &r("log.vhdx"), "8M"]);
    let mut v = std::fs::read(root.join("log.vhdx")).unwrap();
    for h in [64 << 10, 128 << 10] {
        v[h + 48] = 0x42;
        v[h + 4..h + 8].fill(0);
        let crc = crc32c(&v[h..h + 4096]);
        v[h + 4..h + 8].copy_from_slice(&crc.to_le_bytes());
    }
    // A log GUID alone (no valid entry of it) is an empty log: qemu opens such a file.
    std::fs::write(root.join("log.vhdx"), &v).unwrap();
    assert_eq!(
        open(&root.join("log.vhdx"), None, &root)
            .unwrap()
            .virtual_size,
        8 << 20
    );
    // One valid entry of that GUID whose data descriptor has no data sector: it cannot
    // be replayed, so the image is refused.
    let h = 64 << 10;
    let log_at = u64::from_le_bytes(v[h + 72..h + 80].try_into().unwrap()) as usize;
    let mut entry = vec![0u8; 4096];
    entry[0..4].copy_from_slice(b"loge");
    entry[8..12].copy_from_slice(&4096u32.to_le_bytes());
    entry[16..24].copy_from_slice(&7u64.to_le_bytes());
    entry[24..28].copy_from_slice(&1u32.to_le_bytes());
    entry[32..48].copy_from_slice(&v[h + 48..h + 64]);
    entry[64..68].copy_from_slice(b"desc");
    entry[64 + 24..64 + 32].copy_from_slice(&7u64.to_le_bytes());
    let crc = crc32c(&entry);
    entry[4..8].copy_from_slice(&crc.to_le_bytes());
    v[log_at..log_at + 4096].copy_from_slice(&entry);
    std::fs::write(root.join("log.vhdx"), &v).unwrap();
    match open(&root.join("log.vhdx"), None, &root) {
        Err(ReadError::NeedsLogReplay { .. }) => {}
        Err(e) => panic!("vhdx log: wrong error {e}"),
        Ok(_) => panic!("opened a vhdx with an active log"),
    }
}

/// CRC-32C written out here (bitwise), independent of the reader's table.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Hostile metadata: bytes of the headers, tables and footers of real images of every
/// format are changed a few hundred times each; every open and read ends in bytes or a
/// typed error (no panic, bounded memory: the test process would die otherwise).
#[test]
fn mutated_metadata_gives_bytes_or_typed_errors() {
    use guestkit_worker::inspect::source::MemSource;
    use std::sync::Arc;
    let tmp = tempdir();
    let dir = tmp.path();
    sh(&format!(
        "cd '{}' && truncate -s 6M m.raw && head -c 300000 /dev/urandom | dd of=m.raw bs=64k seek=5 conv=notrunc status=none \
         && head -c 1100000 /dev/urandom | dd of=m.raw bs=64k seek=40 conv=notrunc status=none",
        dir.display()
    ));
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let variants = [
        ("m-sparse.vmdk", "vmdk", "subformat=monolithicSparse"),
        ("m-stream.vmdk", "vmdk", "subformat=streamOptimized"),
        ("m-dyn.vhd", "vpc", "subformat=dynamic"),
        ("m-fixed.vhd", "vpc", "subformat=fixed"),
        ("m.vhdx", "vhdx", "subformat=dynamic,block_size=1M"),
        ("m.vdi", "vdi", "static=off"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut opened, mut errors) = (0, 0);
    for (name, fmt, opts) in variants {
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            fmt,
            "-o",
            opts,
            &d("m.raw"),
            &d(name),
        ]);
        let pristine = std::fs::read(dir.join(name)).unwrap();
        let len = pristine.len() as u64;
        // Metadata lives in the first 64 KiB (headers, VMDK GD/GTs, VHD BAT, VDI map), at
        // the end (footers, streamOptimized GD/GTs), and for VHDX in its regions.
        let mut regions = vec![
            (0u64, 65536.min(len)),
            (len.saturating_sub(70000), 70000.min(len)),
        ];
        if fmt == "vhdx" {
            regions.extend([(64 << 10, 4096), (128 << 10, 4096), (192 << 10, 128)]);
            for i in 0..2 {
                let e = (192 << 10) + 16 + 32 * i;
                let at = u64::from_le_bytes(pristine[e + 16..e + 24].try_into().unwrap());
                regions.push((at, 1024));
                regions.push((at + 65536, 1024));
            }
        }
        for round in 0..300 {
            let mut bytes = pristine.clone();
            for _ in 0..1 + rng.below(4) {
                let (start, n) = regions[rng.below(regions.len() as u64) as usize];
                let at = if round % 10 == 0 {
                    rng.below(len)
                } else {
                    start + rng.below(n)
                };
                bytes[at as usize] = rng.byte();
            }
            match image::open_source(Arc::new(MemSource(bytes))) {
                Err(_) => errors += 1,
                Ok((_, img)) => {
                    opened += 1;
                    let size = img.size();
                    let mut buf = vec![0u8; 1 << 20];
                    let mut off = 0;
                    while off < size.min(8 << 20) {
                        let n = (buf.len() as u64).min(size - off) as usize;
                        if img.read_exact_at(off, &mut buf[..n]).is_err() {
                            errors += 1;
                        }
                        off += n as u64;
                    }
                    let n = (buf.len() as u64).min(size) as usize;
                    let _ = img.read_exact_at(size - n as u64, &mut buf[..n]);
                }
            }
        }
    }
    eprintln!("mutations: {opened} opened, {errors} typed errors");
    assert!(opened > 0 && errors > 0, "mutations exercised neither path");
}

/// GUID text (`{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`) of on-disk GUID bytes.
fn guid_text(g: &[u8]) -> String {
    let le = |r: std::ops::Range<usize>| {
        g[r].iter()
            .rev()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    };
    let be =
        |r: std::ops::Range<usize>| g[r].iter().map(|b| format!("{b:02X}")).collect::<String>();
    format!(
        "{{{}-{}-{}-{}-{}}}",
        le(0..4),
        le(4..6),
        le(6..8),
        be(8..10),
        be(10..16)
    )
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A differencing VHDX made from qemu's dynamic VHDX of `child.raw`: the has-parent flag,
/// a parent locator (linkage = the parent's data write GUID, relative path), and one
/// block turned partially present with a sector bitmap whose sectors 8..16 are clear.
#[test]
fn differencing_vhdx_composes_parent_and_child() {
    let tmp = tempdir();
    let dir = tmp.path();
    parent_and_child(dir, 12 << 20);
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for n in ["parent", "child"] {
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            "-o",
            "subformat=dynamic,block_size=1M",
            &d(&format!("{n}.raw")),
            &d(&format!("{n}.vhdx")),
        ]);
    }
    let parent = std::fs::read(dir.join("parent.vhdx")).unwrap();
    // The current header: the higher sequence number (both are valid in qemu's files).
    let h = [64usize << 10, 128 << 10]
        .into_iter()
        .max_by_key(|&h| le64(&parent, h + 8))
        .unwrap();
    let linkage = guid_text(&parent[h + 32..h + 48]);
    let mut c = std::fs::read(dir.join("child.vhdx")).unwrap();
    let region = |c: &[u8], first: u8| {
        (0..le32(c, (192 << 10) + 8) as usize)
            .map(|i| (192 << 10) + 16 + 32 * i)
            .find(|&e| c[e] == first)
            .map(|e| le64(c, e + 16) as usize)
            .unwrap()
    };
    let (bat, meta) = (region(&c, 0x66), region(&c, 0x06));
    // File parameters (CAA16737-...): set "has parent".
    let count = u16::from_le_bytes([c[meta + 10], c[meta + 11]]) as usize;
    let params = (0..count)
        .map(|i| meta + 32 + 32 * i)
        .find(|&e| c[e..e + 4] == [0x37, 0x67, 0xa1, 0xca])
        .unwrap();
    let params_at = meta + le32(&c, params + 16) as usize;
    c[params_at + 4] |= 2;
    // The parent locator item, at 512 KiB into the metadata region.
    let utf16 = |s: &str| {
        s.encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let pairs = [
        ("parent_linkage", linkage.clone()),
        ("relative_path", ".\\parent.vhdx".to_string()),
    ];
    let mut item = vec![
        0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59,
        0x13, 0, 0,
    ];
    item.extend((pairs.len() as u16).to_le_bytes());
    let mut strings: Vec<u8> = Vec::new();
    let base = item.len() + 12 * pairs.len();
    for (k, v) in &pairs {
        let (k, v) = (utf16(k), utf16(v));
        let ko = base + strings.len();
        strings.extend(&k);
        let vo = base + strings.len();
        strings.extend(&v);
        item.extend((ko as u32).to_le_bytes());
        item.extend((vo as u32).to_le_bytes());
        item.extend((k.len() as u16).to_le_bytes());
        item.extend((v.len() as u16).to_le_bytes());
    }
    item.extend(strings);
    let item_at = meta + (512 << 10);
    c[item_at..item_at + item.len()].copy_from_slice(&item);
    let e = meta + 32 + 32 * count;
    c[e..e + 16].copy_from_slice(&[
        0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab,
        0x0c,
    ]);
    c[e + 16..e + 20].copy_from_slice(&(512u32 << 10).to_le_bytes());
    c[e + 20..e + 24].copy_from_slice(&(item.len() as u32).to_le_bytes());
    c[e + 24..e + 28].copy_from_slice(&4u32.to_le_bytes()); // required
    c[meta + 10..meta + 12].copy_from_slice(&(count as u16 + 1).to_le_bytes());
    // Block states: the first present block becomes partially present; the chunk's
    // sector bitmap (BAT entry 4096 with 1 MiB blocks) is appended, MiB aligned.
    let blocks = 12;
    let state = |c: &[u8], b: usize| le64(c, bat + 8 * b) & 7;
    let partial = (0..blocks).find(|&b| state(&c, b) == 6).unwrap();
    let present: Vec<bool> = (0..blocks).map(|b| state(&c, b) == 6).collect();
    // qemu marks the blocks it skipped as zero (state 2); in a child they are the
    // parent's (state 0, not present).
    for b in 0..blocks {
        match state(&c, b) {
            2 => c[bat + 8 * b..bat + 8 * b + 8].fill(0),
            0 | 6 => {}
            s => panic!("block {b} in state {s}"),
        }
    }
    c[bat + 8 * partial] |= 7;
    let bitmap_at = c.len().div_ceil(1 << 20) * (1 << 20);
    c.resize(bitmap_at + (1 << 20), 0);
    for b in 0..blocks {
        c[bitmap_at + 256 * b..bitmap_at + 256 * (b + 1)].fill(0xff);
    }
    c[bitmap_at + 256 * partial + 1] = 0; // sectors 8..16
    c[bat + 8 * 4096..bat + 8 * 4097].copy_from_slice(&(bitmap_at as u64 | 6).to_le_bytes());
    std::fs::write(dir.join("diff.vhdx"), &c).unwrap();

    let img = open(&dir.join("diff.vhdx"), Some("vhdx"), dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        img.backing_chain,
        vec![dir.join("parent.vhdx").canonicalize().unwrap()]
    );
    let expected = compose(dir, 512, |s| {
        let b = (s / 2048) as usize;
        present[b] && !(b == partial && (8..16).contains(&(s % 2048)))
    });
    assert!(
        read_all(&img) == expected,
        "differencing VHDX differs from parent+child"
    );

    // Another parent_linkage: refused.
    let wrong = linkage.replace(
        &linkage[1..3],
        if &linkage[1..3] == "00" { "11" } else { "00" },
    );
    let lv = utf16(&linkage);
    let at = c.windows(lv.len()).position(|w| w == lv).unwrap();
    c[at..at + lv.len()].copy_from_slice(&utf16(&wrong));
    std::fs::write(dir.join("diff.vhdx"), &c).unwrap();
    match open(&dir.join("diff.vhdx"), None, dir) {
        Err(ReadError::ParentMismatch { .. }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened over another parent"),
    }
}

/// A VHDX left with a log entry that rewrites one 4 KiB sector of a data block: the
/// entry is replayed in memory (the file is not changed) and the guest sees the new
/// bytes; the same entry with a torn data sector is refused.
#[test]
fn vhdx_log_is_replayed_in_memory() {
    let tmp = tempdir();
    let dir = tmp.path();
    sh(&format!(
        "cd '{}' && head -c 8388608 /dev/urandom > l.raw",
        dir.display()
    ));
    let (raw, vhdx) = (dir.join("l.raw"), dir.join("l.vhdx"));
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "subformat=dynamic,block_size=1M",
        raw.to_str().unwrap(),
        vhdx.to_str().unwrap(),
    ]);
    let mut v = std::fs::read(&vhdx).unwrap();
    let guid = [0x42u8; 16];
    for h in [64usize << 10, 128 << 10] {
        v[h + 48..h + 64].copy_from_slice(&guid);
        v[h + 4..h + 8].fill(0);
        let crc = crc32c(&v[h..h + 4096]);
        v[h + 4..h + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let bat = (0..le32(&v, (192 << 10) + 8) as usize)
        .map(|i| (192 << 10) + 16 + 32 * i)
        .find(|&e| v[e] == 0x66)
        .map(|e| le64(&v, e + 16) as usize)
        .unwrap();
    let block = (0..8).find(|&b| le64(&v, bat + 8 * b) & 7 == 6).unwrap();
    let host = le64(&v, bat + 8 * block) >> 20 << 20;
    let new: Vec<u8> = (0..4096u32).map(|i| (i * 31 + 7) as u8).collect();
    let entry = |seq_low: u32| {
        let mut e = vec![0u8; 8192];
        e[0..4].copy_from_slice(b"loge");
        e[8..12].copy_from_slice(&8192u32.to_le_bytes());
        e[16..24].copy_from_slice(&5u64.to_le_bytes());
        e[24..28].copy_from_slice(&1u32.to_le_bytes());
        e[32..48].copy_from_slice(&guid);
        e[64..68].copy_from_slice(b"desc");
        e[68..72].copy_from_slice(&new[4092..]);
        e[72..80].copy_from_slice(&new[..8]);
        e[80..88].copy_from_slice(&host.to_le_bytes());
        e[88..96].copy_from_slice(&5u64.to_le_bytes());
        e[4096..4100].copy_from_slice(b"data");
        e[4104..8188].copy_from_slice(&new[8..4092]);
        e[8188..8192].copy_from_slice(&seq_low.to_le_bytes());
        let crc = crc32c(&e);
        e[4..8].copy_from_slice(&crc.to_le_bytes());
        e
    };
    let log_at = le64(&v, (64 << 10) + 72) as usize;
    v[log_at..log_at + 8192].copy_from_slice(&entry(5));
    std::fs::write(&vhdx, &v).unwrap();
    let before = sha256sum(&vhdx);
    let img = open(&vhdx, Some("vhdx"), dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        img.warnings.iter().any(|w| w.contains("replayed")),
        "{:?}",
        img.warnings
    );
    let mut expected = std::fs::read(&raw).unwrap();
    let g = block * (1 << 20);
    expected[g..g + 4096].copy_from_slice(&new);
    assert!(
        read_all(&img) == expected,
        "replayed VHDX differs from the source with the logged write"
    );
    assert_eq!(sha256sum(&vhdx), before, "the image file was modified");
    // A torn data sector (its sequence number differs from the entry's): refused.
    v[log_at..log_at + 8192].copy_from_slice(&entry(6));
    std::fs::write(&vhdx, &v).unwrap();
    match open(&vhdx, None, dir) {
        Err(ReadError::NeedsLogReplay { message, .. }) => {
            assert!(message.contains("torn"), "{message}")
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened with a torn log entry"),
    }
}
