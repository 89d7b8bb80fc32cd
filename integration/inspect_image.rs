//! The qcow2 reader oracle: images built by real `qemu-img`/`qemu-io`, every virtual byte
//! read through our reader compared (sha256) with `qemu-img convert -O raw` of the same
//! image. Plus the refusals: backing files outside the roots, format mismatches, loops,
//! truncated images.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestkit_worker::inspect::image::Qcow2;
use guestkit_worker::inspect::image::{self, ImageFormat, OpenedImage};
use guestkit_worker::inspect::source::ReadError;
use guestkit_worker::inspect::source::{MemSource, ReadAt};

use crate::common::{run, sh, sha256sum, tempdir};

/// Virtual size of the test disk: 64 MiB plus 3 KiB, so the last cluster is partial.
pub(crate) const DISK_SIZE: u64 = (64 << 20) + 3072;

/// Builds `dir/base.raw`: random data at scattered, unaligned offsets, a compressible text
/// region, zeros elsewhere, and data in the partial last cluster.
pub(crate) fn build_raw(dir: &Path) -> PathBuf {
    let raw = dir.join("base.raw");
    sh(&format!(
        r#"
        cd '{dir}'
        truncate -s {DISK_SIZE} base.raw
        put() {{ dd if=/dev/urandom of=base.raw bs=$2 count=1 seek=$1 oflag=seek_bytes conv=notrunc status=none; }}
        put 0 1048576
        put 1180160 307200
        put 5242880 66048
        put 17829888 4096
        put 34603520 2097152
        put 50331136 1024
        put $(({DISK_SIZE} - 5000)) 5000
        {{ yes 'guestkit compressible line of text' || true; }} | head -c 3145728 > text.bin
        dd if=text.bin of=base.raw bs=1M seek=40 conv=notrunc status=none
        rm text.bin
        "#,
        dir = dir.display()
    ));
    raw
}

pub(crate) fn qemu_img(args: &[&str]) {
    run(Command::new("qemu-img").args(args));
}

/// Runs qemu-io commands against a qcow2 image (creating real partial allocations).
fn qemu_io(image: &Path, cmds: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    let out = run(cmd.arg(image));
    // qemu-io reports command failures on stdout but still exits 0.
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("error") && !text.contains("failed"),
        "qemu-io on {}: {text}",
        image.display()
    );
}

/// The image's virtual disk according to qemu (the oracle), as a raw file in `tmp`.
pub(crate) fn qemu_raw(image: &Path, tmp: &Path) -> PathBuf {
    let out = tmp.join("oracle.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    out
}

/// Compares every virtual byte read through our reader with the oracle file, in chunks
/// that are deliberately not cluster aligned so reads span clusters and subclusters, then
/// at pseudo-random offsets and lengths. Returns the first difference or the sha256 of our
/// bytes, and the time spent in our reader for the sequential pass.
pub(crate) fn compare(src: &dyn ReadAt, oracle: &Path) -> (Result<String, String>, Duration) {
    let file = std::fs::File::open(oracle).unwrap();
    let size = file.metadata().unwrap().len();
    if src.size() != size {
        let e = format!("virtual size {} != qemu's {size}", src.size());
        return (Err(e), Duration::ZERO);
    }
    // Our bytes are hashed by coreutils too (fast in debug builds, and independent of us).
    let mut hasher = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    let mut cmp = Comparer {
        src,
        file,
        ours: vec![0u8; CHUNK],
        theirs: vec![0u8; CHUNK],
        hash_in: hasher.stdin.take(),
        reading: Duration::ZERO,
    };
    let result = cmp.all(size);
    let took = cmp.reading;
    drop(cmp);
    let out = hasher.wait_with_output().unwrap();
    let digest = String::from_utf8_lossy(&out.stdout);
    let digest = digest.split_whitespace().next().unwrap_or("").to_string();
    (result.map(|()| digest), took)
}

/// Sequential chunk size: not a multiple of any cluster size.
const CHUNK: usize = (1 << 20) + 4097;

/// Reads ranges through our reader and from the oracle file and compares them.
struct Comparer<'a> {
    src: &'a dyn ReadAt,
    file: std::fs::File,
    ours: Vec<u8>,
    theirs: Vec<u8>,
    /// Receives the sequential pass's bytes (sha256sum's stdin).
    hash_in: Option<std::process::ChildStdin>,
    /// Time spent in our reader during the sequential pass.
    reading: Duration,
}

impl Comparer<'_> {
    fn all(&mut self, size: u64) -> Result<(), String> {
        let mut off = 0;
        while off < size {
            let n = (CHUNK as u64).min(size - off) as usize;
            self.range(off, n, true)?;
            off += n as u64;
        }
        self.hash_in = None; // EOF for sha256sum
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (((seed >> 40) % (300 << 10)) + 1).min(size) as usize;
            let off = (seed >> 8) % (size - n as u64 + 1);
            self.range(off, n, false)?;
        }
        Ok(())
    }

    fn range(&mut self, off: u64, n: usize, sequential: bool) -> Result<(), String> {
        let start = Instant::now();
        self.src
            .read_exact_at(off, &mut self.ours[..n])
            .map_err(|e| format!("read of {n} at {off}: {e}"))?;
        if sequential {
            self.reading += start.elapsed();
            if let Some(h) = self.hash_in.as_mut() {
                h.write_all(&self.ours[..n]).unwrap();
            }
        }
        self.file.read_exact_at(&mut self.theirs[..n], off).unwrap();
        if self.ours[..n] == self.theirs[..n] {
            return Ok(());
        }
        let i = self.ours[..n]
            .iter()
            .zip(&self.theirs[..n])
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        Err(format!(
            "first difference at virtual offset {}",
            off + i as u64
        ))
    }
}

fn open(path: &Path, fmt: Option<&str>, root: &Path) -> Result<OpenedImage, ReadError> {
    image::open(path, fmt, &[root.to_path_buf()])
}

#[test]
fn qcow2_reader_matches_qemu_img() {
    let tmp = tempdir();
    let dir = tmp.path();
    let raw = build_raw(dir);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let convert = |name: &str, opts: &[&str]| {
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(opts);
        let (src, dst) = (p("base.raw"), p(name));
        args.push(&src);
        args.push(&dst);
        qemu_img(&args);
    };
    convert("plain.qcow2", &[]);
    convert("zlib.qcow2", &["-c"]);
    convert("zstd.qcow2", &["-c", "-o", "compression_type=zstd"]);
    convert("v2.qcow2", &["-o", "compat=0.10"]);
    convert("v2-zlib.qcow2", &["-c", "-o", "compat=0.10"]);
    convert("small-clusters.qcow2", &["-o", "cluster_size=512"]);
    convert(
        "big-clusters-zstd.qcow2",
        &["-c", "-o", "cluster_size=2M,compression_type=zstd"],
    );
    convert("extl2.qcow2", &["-o", "extended_l2=on,cluster_size=128k"]);
    convert(
        "extl2-zlib.qcow2",
        &["-c", "-o", "extended_l2=on,cluster_size=128k"],
    );

    // Subcluster allocation: an empty extended-L2 image written partially (data, zeroes)...
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on,cluster_size=128k",
        &p("extl2-sparse.qcow2"),
        "64M",
    ]);
    qemu_io(
        &dir.join("extl2-sparse.qcow2"),
        &[
            "write -P 0xab 4k 4k",
            "write -P 0xcd 130k 7k",
            "write -z 260k 8k",
            "write -P 0x01 1M 300k",
        ],
    );
    // ...and an extended-L2 overlay whose unallocated subclusters come from its backing file.
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "plain.qcow2",
        "-F",
        "qcow2",
        "-o",
        "extended_l2=on,cluster_size=64k",
        &p("extl2-overlay.qcow2"),
    ]);
    qemu_io(
        &dir.join("extl2-overlay.qcow2"),
        &[
            "write -P 0x22 6k 2k",
            "write -z 70k 4k",
            "write -P 0x33 1000k 100k",
            "write -z 5M 64k",
        ],
    );

    // A two-level chain with writes at each level (relative backing names).
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "zlib.qcow2",
        "-F",
        "qcow2",
        &p("mid.qcow2"),
    ]);
    qemu_io(
        &dir.join("mid.qcow2"),
        &[
            "write -P 0x44 0 64k",
            "write -P 0x55 2M 1M",
            "write -z 5M 512k",
            "discard 34M 1M",
        ],
    );
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        &p("top.qcow2"),
    ]);
    qemu_io(
        &dir.join("top.qcow2"),
        &[
            "write -P 0x66 32k 64k",
            "write -z 2M 64k",
            "write -P 0x77 63M 1M",
        ],
    );

    // A raw backing file smaller than its overlay: the rest reads as zeros.
    sh(&format!(
        "head -c 3000000 '{}' > '{}'",
        raw.display(),
        p("small.raw")
    ));
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "small.raw",
        "-F",
        "raw",
        &p("over-small.qcow2"),
        "80M",
    ]);
    qemu_io(&dir.join("over-small.qcow2"), &["write -P 0x99 1M 4k"]);

    let cases: &[(&str, ImageFormat, usize)] = &[
        ("base.raw", ImageFormat::Raw, 0),
        ("plain.qcow2", ImageFormat::Qcow2, 0),
        ("zlib.qcow2", ImageFormat::Qcow2, 0),
        ("zstd.qcow2", ImageFormat::Qcow2, 0),
        ("v2.qcow2", ImageFormat::Qcow2, 0),
        ("v2-zlib.qcow2", ImageFormat::Qcow2, 0),
        ("small-clusters.qcow2", ImageFormat::Qcow2, 0),
        ("big-clusters-zstd.qcow2", ImageFormat::Qcow2, 0),
        ("extl2.qcow2", ImageFormat::Qcow2, 0),
        ("extl2-zlib.qcow2", ImageFormat::Qcow2, 0),
        ("extl2-sparse.qcow2", ImageFormat::Qcow2, 0),
        ("extl2-overlay.qcow2", ImageFormat::Qcow2, 1),
        ("top.qcow2", ImageFormat::Qcow2, 2),
        ("over-small.qcow2", ImageFormat::Qcow2, 1),
    ];
    let mut failures = Vec::new();
    for &(name, format, chain_len) in cases {
        let path = dir.join(name);
        let oracle = qemu_raw(&path, dir);
        let img = open(&path, Some(format.as_str()), dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.format, format, "{name}");
        assert_eq!(
            img.backing_chain.len(),
            chain_len,
            "{name}: {:?}",
            img.backing_chain
        );
        let (result, took) = compare(img.source.as_ref(), &oracle);
        // The issue's oracle too: sha256 of our bytes equals coreutils' sha256 of qemu's.
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
            "{name:>24}: {} virtual bytes read in {:>7.1} ms ({:.0} MiB/s)",
            img.virtual_size,
            took.as_secs_f64() * 1e3,
            img.virtual_size as f64 / (1 << 20) as f64 / took.as_secs_f64()
        );
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));

    // The chain is reported nearest first, as canonical paths.
    let top = open(&dir.join("top.qcow2"), None, dir).unwrap();
    let canon = |n: &str| dir.join(n).canonicalize().unwrap();
    assert_eq!(
        top.backing_chain,
        vec![canon("mid.qcow2"), canon("zlib.qcow2")]
    );
}

#[test]
fn backing_outside_roots_is_refused() {
    let tmp = tempdir();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    sh(&format!("truncate -s 1M '{}/base.raw'", outside.display()));
    let create = |name: &str, backing: &str, fmt: &str| {
        let path = root.join(name);
        // -u: do not open the backing file (it may not even be readable).
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            backing,
            "-F",
            fmt,
            path.to_str().unwrap(),
            "1M",
        ]);
        path
    };
    let base_outside = outside.join("base.raw");
    std::os::unix::fs::symlink(&base_outside, root.join("link.raw")).unwrap();
    let cases = [
        create("shadow.qcow2", "/etc/shadow", "raw"),
        create("abs.qcow2", base_outside.to_str().unwrap(), "raw"),
        create("dotdot.qcow2", "../outside/base.raw", "raw"),
        create("symlink.qcow2", "link.raw", "raw"),
    ];
    for path in &cases {
        match open(path, Some("qcow2"), &root) {
            Err(ReadError::BackingOutsideRoots { .. }) => {}
            Err(e) => panic!("{}: wrong error {e}", path.display()),
            Ok(_) => panic!(
                "{}: opened a backing file outside the roots",
                path.display()
            ),
        }
    }
    // The same backing file is accepted once its directory is a root.
    let both = [root.clone(), outside.clone()];
    let img = image::open(&root.join("symlink.qcow2"), None, &both).unwrap();
    assert_eq!(
        img.backing_chain,
        vec![base_outside.canonicalize().unwrap()]
    );
    // No roots at all: no backing file may be opened.
    assert!(matches!(
        image::open(&root.join("symlink.qcow2"), None, &[]),
        Err(ReadError::BackingOutsideRoots { .. })
    ));
}

#[test]
fn format_assertions_and_backing_format() {
    let tmp = tempdir();
    let dir = tmp.path();
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    qemu_img(&["create", "-f", "raw", &d("disk.raw"), "1M"]);
    qemu_img(&["create", "-f", "qcow2", &d("disk.qcow2"), "1M"]);
    let mismatch = |path: &str, fmt: &str| match open(Path::new(path), Some(fmt), dir) {
        Err(ReadError::FormatMismatch { .. }) => {}
        Err(e) => panic!("{path} as {fmt}: wrong error {e}"),
        Ok(_) => panic!("{path} opened as {fmt}"),
    };
    mismatch(&d("disk.qcow2"), "raw");
    mismatch(&d("disk.raw"), "qcow2");
    mismatch(&d("disk.qcow2"), "vmdk");
    // The extension of the name is irrelevant: a qcow2 named .raw is qcow2.
    std::fs::copy(d("disk.qcow2"), d("named.raw")).unwrap();
    assert_eq!(
        open(Path::new(&d("named.raw")), None, dir).unwrap().format,
        ImageFormat::Qcow2
    );
    // An overlay declaring its qcow2 backing file as raw must not read qcow2 metadata as data.
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "disk.qcow2",
        "-F",
        "raw",
        &d("liar.qcow2"),
        "1M",
    ]);
    assert!(matches!(
        open(Path::new(&d("liar.qcow2")), None, dir),
        Err(ReadError::BackingFormatMismatch {
            detected: "qcow2",
            ..
        })
    ));
    // The other formats qemu writes are detected by magic and opened as themselves
    // (their contents are compared with qemu in inspect_formats.rs).
    qemu_img(&["create", "-f", "vdi", &d("disk.vdi"), "1M"]);
    qemu_img(&["create", "-f", "vpc", &d("disk.vhd"), "1M"]);
    qemu_img(&["create", "-f", "vhdx", &d("disk.vhdx"), "1M"]);
    qemu_img(&["create", "-f", "vmdk", &d("disk.vmdk"), "1M"]);
    for (name, fmt) in [
        ("disk.vdi", "vdi"),
        ("disk.vhd", "vpc"),
        ("disk.vhdx", "vhdx"),
        ("disk.vmdk", "vmdk"),
    ] {
        let img = open(Path::new(&d(name)), None, dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.format.as_str(), fmt, "{name}");
        mismatch(&d(name), "qcow2");
    }
}

#[test]
fn backing_loops_and_depth() {
    let tmp = tempdir();
    let dir = tmp.path();
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    qemu_img(&["create", "-f", "qcow2", &d("a.qcow2"), "1M"]);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        &d("b.qcow2"),
    ]);
    qemu_img(&[
        "rebase",
        "-u",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        &d("a.qcow2"),
    ]);
    assert!(matches!(
        open(Path::new(&d("a.qcow2")), None, dir),
        Err(ReadError::BackingLoop { .. })
    ));
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "self.qcow2",
        "-F",
        "qcow2",
        &d("self.qcow2"),
        "1M",
    ]);
    assert!(matches!(
        open(Path::new(&d("self.qcow2")), None, dir),
        Err(ReadError::BackingLoop { .. })
    ));

    qemu_img(&["create", "-f", "qcow2", &d("c0.qcow2"), "1M"]);
    for i in 1..=image::MAX_BACKING_DEPTH + 1 {
        let below = format!("c{}.qcow2", i - 1);
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            &below,
            "-F",
            "qcow2",
            &d(&format!("c{i}.qcow2")),
            "1M",
        ]);
    }
    let deepest_ok = format!("c{}.qcow2", image::MAX_BACKING_DEPTH);
    assert_eq!(
        open(Path::new(&d(&deepest_ok)), None, dir)
            .unwrap()
            .backing_chain
            .len(),
        image::MAX_BACKING_DEPTH
    );
    let too_deep = format!("c{}.qcow2", image::MAX_BACKING_DEPTH + 1);
    assert!(matches!(
        open(Path::new(&d(&too_deep)), None, dir),
        Err(ReadError::BackingChainTooDeep { .. })
    ));
}

#[test]
fn truncated_qcow2_is_a_typed_error() {
    let tmp = tempdir();
    let dir = tmp.path();
    build_raw(dir);
    let img = dir.join("t.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        dir.join("base.raw").to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    let full = std::fs::metadata(&img).unwrap().len();
    for cut in [full / 2, full - 65536, 4096, 100] {
        let cut_img = dir.join(format!("t-{cut}.qcow2"));
        std::fs::copy(&img, &cut_img).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&cut_img)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let result = open(&cut_img, Some("qcow2"), dir).and_then(|o| {
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < o.virtual_size {
                let n = (buf.len() as u64).min(o.virtual_size - off) as usize;
                o.source.read_exact_at(off, &mut buf[..n])?;
                off += n as u64;
            }
            Ok(())
        });
        match result {
            Err(ReadError::Corrupt {
                format: "qcow2",
                message,
                ..
            }) => {
                assert!(
                    message.contains("end of the file") || message.contains("too small"),
                    "cut {cut}: {message}"
                )
            }
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            Ok(()) => panic!("cut at {cut}: read the whole disk from a truncated image"),
        }
    }
}

/// Hostile metadata: random bytes of the header, L1 and L2 tables of real images are
/// changed a few hundred times; every open and read must end in bytes or a typed error.
#[test]
fn mutated_metadata_gives_bytes_or_typed_errors() {
    let tmp = tempdir();
    let dir = tmp.path();
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    sh(&format!(
        "cd '{}' && truncate -s 4M m.raw && dd if=/dev/urandom of=m.raw bs=64k count=3 seek=5 conv=notrunc status=none \
         && {{ yes 'some text' || true; }} | head -c 300000 | dd of=m.raw bs=64k seek=20 conv=notrunc status=none",
        dir.display()
    ));
    let variants: &[(&str, &[&str])] = &[
        ("m-plain.qcow2", &[]),
        ("m-zlib.qcow2", &["-c", "-o", "cluster_size=4k"]),
        ("m-zstd.qcow2", &["-c", "-o", "compression_type=zstd"]),
        ("m-v2.qcow2", &["-o", "compat=0.10,cluster_size=512"]),
        ("m-extl2.qcow2", &["-o", "extended_l2=on,cluster_size=16k"]),
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut opened, mut errors) = (0, 0);
    for (name, opts) in variants {
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(opts);
        let (src, dst) = (d("m.raw"), d(name));
        args.extend([src.as_str(), dst.as_str()]);
        qemu_img(&args);
        let pristine = std::fs::read(dir.join(name)).unwrap();
        let regions = metadata_regions(&pristine);
        for round in 0..300 {
            let mut bytes = pristine.clone();
            for _ in 0..1 + next() % 4 {
                let at = if round % 10 == 0 {
                    next() % bytes.len() as u64
                } else {
                    let (start, len) = regions[(next() % regions.len() as u64) as usize];
                    start + next() % len
                } as usize;
                bytes[at] = next() as u8;
            }
            match Qcow2::from_source(Arc::new(MemSource(bytes))) {
                Err(_) => errors += 1,
                Ok(q) => {
                    opened += 1;
                    let size = q.size();
                    let mut buf = vec![0u8; 1 << 20];
                    // At most 8 MiB from the start and 1 MiB at the end: a mutated size can
                    // be huge, and this checks robustness, not throughput.
                    let mut off = 0;
                    while off < size.min(8 << 20) {
                        let n = (buf.len() as u64).min(size - off) as usize;
                        if q.read_exact_at(off, &mut buf[..n]).is_err() {
                            errors += 1;
                        }
                        off += n as u64;
                    }
                    let n = (buf.len() as u64).min(size) as usize;
                    let _ = q.read_exact_at(size - n as u64, &mut buf[..n]);
                }
            }
        }
    }
    eprintln!("mutations: {opened} opened, {errors} typed errors");
    assert!(opened > 0 && errors > 0, "mutations exercised neither path");
}

/// (offset, length) of the header, the L1 table and every L2 table of a qcow2 file, read
/// with a few lines of independent parsing.
fn metadata_regions(img: &[u8]) -> Vec<(u64, u64)> {
    let be32 = |at: usize| u32::from_be_bytes(img[at..at + 4].try_into().unwrap()) as u64;
    let be64 = |at: usize| u64::from_be_bytes(img[at..at + 8].try_into().unwrap());
    let cluster = 1u64 << be32(20);
    let (l1_size, l1) = (be32(36), be64(40));
    let mut regions = vec![(0, 512), (l1, l1_size * 8)];
    for i in 0..l1_size {
        let l2 = be64((l1 + i * 8) as usize) & 0x00ff_ffff_ffff_fe00;
        if l2 != 0 {
            regions.push((l2, cluster));
        }
    }
    regions
}
