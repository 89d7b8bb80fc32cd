//! The NTFS oracle: an image made by `mkntfs` and filled through the ntfs-3g FUSE driver
//! (see `fixtures/ntfs-image.sh`: fragmented $MFT, three-level directory B-tree, LZNT1,
//! sparse, hard links, reparse points, ADS, DOS aliases, non-ASCII names) is walked
//! through our reader and compared with libntfs-3g's view of the same image (a
//! read-only ntfs-3g mount, `ntfscat`, `ntfsls`, `ntfsinfo`, `blkid`). Then hostile
//! variants: a torn record, an index B-tree cycle, random damage to the metadata.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use guestkit_worker::inspect::fs::ntfs::NtfsFs;
use guestkit_worker::inspect::fs::{FileKind, FileSystem, FsError};
use guestkit_worker::inspect::source::ReadError;
use guestkit_worker::inspect::source::{check_range, MemSource, ReadAt};

use crate::common::{fixture_cache, fixtures, run, sh, tempdir, Rng};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink,
}

type Tree = BTreeMap<String, Node>;

/// Held while a libntfs-3g tool or mount has the shared image open: ntfs-3g may open a
/// volume exclusively, so two tests must not run tools on it at once.
static NTFS_TOOLS: Mutex<()> = Mutex::new(());

fn tools() -> std::sync::MutexGuard<'static, ()> {
    NTFS_TOOLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fixture image, built once per content of its script and cached.
pub fn ntfs_image() -> PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        let script = fixtures().join("ntfs-image.sh");
        let hash = crate::common::sha256sum(&script);
        let path = fixture_cache().join(format!("ntfs-{}.img", &hash[..16]));
        if !path.exists() {
            let tmp = tempdir();
            let img = tmp.path().join("ntfs.img");
            let mnt = tmp.path().join("mnt");
            std::fs::create_dir(&mnt).unwrap();
            run(Command::new(&script).arg(&img).arg(&mnt));
            wait_released(&img);
            std::fs::rename(&img, &path)
                .or_else(|_| std::fs::copy(&img, &path).map(|_| ()))
                .unwrap();
        }
        path
    })
    .clone()
}

/// ntfs-3g finishes writing after `fusermount -u` returns; wait until it let go.
fn wait_released(img: &Path) {
    for _ in 0..200 {
        let busy = Command::new("fuser")
            .arg("-s")
            .arg(img)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !busy {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("ntfs-3g still holds {}", img.display());
}

fn open(path: &Path) -> NtfsFs {
    NtfsFs::open(Arc::new(MemSource(std::fs::read(path).unwrap()))).unwrap()
}

fn walk_ours(fs: &dyn FileSystem, dir: &str, out: &mut Tree) {
    for e in fs.read_dir(dir).unwrap() {
        let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
        assert_eq!(fs.metadata(&path).unwrap().kind, e.kind, "{path}");
        match e.kind {
            FileKind::Dir => {
                out.insert(path.clone(), Node::Dir);
                walk_ours(fs, &path, out);
            }
            FileKind::File => {
                let data = fs.read_file(&path, 1 << 30).unwrap();
                assert_eq!(
                    fs.metadata(&path).unwrap().size,
                    data.len() as u64,
                    "{path}"
                );
                out.insert(path, Node::File(data));
            }
            FileKind::Symlink => {
                out.insert(path, Node::Symlink);
            }
            FileKind::Other => panic!("{path}: other"),
        }
    }
}

fn walk_mount(root: &Path, rel: &str, out: &mut Tree) {
    for e in std::fs::read_dir(root.join(rel.trim_start_matches('/'))).unwrap() {
        let e = e.unwrap();
        let path = format!(
            "{}/{}",
            rel.trim_end_matches('/'),
            e.file_name().to_str().unwrap()
        );
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            out.insert(path, Node::Symlink);
        } else if t.is_dir() {
            out.insert(path.clone(), Node::Dir);
            walk_mount(root, &path, out);
        } else {
            assert!(t.is_file() && !t.is_fifo(), "{path}");
            out.insert(path, Node::File(std::fs::read(e.path()).unwrap()));
        }
    }
}

/// libntfs-3g's view through a read-only FUSE mount.
fn oracle_tree(img: &Path) -> Tree {
    let _tools = tools();
    let tmp = tempdir();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("ntfs-3g")
        .arg("-o")
        .arg("ro")
        .arg(img)
        .arg(&mnt));
    let mut tree = Tree::new();
    let walked = std::panic::catch_unwind(|| {
        let mut t = Tree::new();
        walk_mount(&mnt, "/", &mut t);
        t
    });
    run(Command::new("fusermount").arg("-u").arg(&mnt));
    wait_released(img);
    tree.append(&mut walked.unwrap());
    tree
}

#[test]
fn every_file_matches_ntfs_3g() {
    let img = ntfs_image();
    let fs = open(&img);
    let mut ours = Tree::new();
    let started = std::time::Instant::now();
    walk_ours(&fs, "/", &mut ours);
    let took = started.elapsed();
    let oracle = oracle_tree(&img);
    let only_ours: Vec<_> = ours.keys().filter(|k| !oracle.contains_key(*k)).collect();
    let only_oracle: Vec<_> = oracle.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_oracle.is_empty(),
        "only ours: {only_ours:?}\nonly ntfs-3g: {only_oracle:?}"
    );
    let mut bytes = 0;
    for (path, node) in &oracle {
        assert!(ours[path] == *node, "{path} differs");
        if let Node::File(d) = node {
            bytes += d.len();
        }
    }
    assert!(oracle.len() > 2500, "{} paths", oracle.len());
    eprintln!(
        "ntfs: {} paths, {bytes} file bytes equal to ntfs-3g's; our walk took {took:?}",
        oracle.len()
    );
}

#[test]
fn special_files_match_ntfscat_ntfsls_and_blkid() {
    let img = ntfs_image();
    let _tools = tools();
    let fs = open(&img);
    let i = img.display();
    // $MFT really is fragmented and big.txt really is LZNT1-compressed.
    let mft = String::from_utf8(sh(&format!("ntfsinfo -i 0 -v '{i}'"))).unwrap();
    let runs = mft
        .split("Dumping attribute $DATA")
        .nth(1)
        .unwrap()
        .split("Dumping attribute")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("0x"))
        .count();
    assert!(runs >= 4, "$MFT has {runs} runs");
    let big = String::from_utf8(sh(&format!("ntfsinfo -F /comp/big.txt '{i}'"))).unwrap();
    assert!(big.contains("Compression unit:\t 4"), "{big}");

    for path in [
        "/comp/big.txt",
        "/comp/random.bin",
        "/comp/mixed.bin",
        "/sparse.bin",
        "/fragmented.bin",
        "/Windows/hardlink.txt",
        "/ads.txt",
        "/Program Files/Ünïcödé 日本/readme – ü.txt",
        "/Windows/System32/cmd.exe",
    ] {
        let cat = run(Command::new("ntfscat").arg(&img).arg(path));
        assert_eq!(fs.read_file(path, 1 << 30).unwrap(), cat, "{path}");
    }
    assert_eq!(fs.read_file("/ads.txt", 100).unwrap(), b"main stream\n");

    // Root listing as ntfsls gives it (which hides the metafiles and DOS names too).
    let listed = String::from_utf8(run(Command::new("ntfsls").arg(&img))).unwrap();
    let mut theirs: Vec<&str> = listed.lines().collect();
    let root = fs.read_dir("/").unwrap();
    let mut mine: Vec<&str> = root.iter().map(|e| e.name.as_str()).collect();
    theirs.sort();
    mine.sort();
    assert_eq!(mine, theirs);
    assert!(!mine.contains(&"PROGRA~1") && !mine.contains(&"$MFT"));

    // Case-insensitive lookups by the volume's $UpCase (non-ASCII letters included).
    assert_eq!(
        fs.read_file("/WINDOWS/system32/CMD.EXE", 100).unwrap(),
        b"MZ fake cmd"
    );
    assert_eq!(
        fs.read_file("/program files/ÜNÏCÖDÉ 日本/README – Ü.TXT", 100)
            .unwrap(),
        "grüße\n".as_bytes()
    );

    // Reparse points: targets as written by the fixture, never resolved here.
    assert_eq!(
        fs.metadata("/link_to_windows").unwrap().kind,
        FileKind::Symlink
    );
    assert_eq!(fs.read_link("/link_to_windows").unwrap(), "../Windows");
    assert_eq!(fs.read_link("/junction").unwrap(), "C:/Windows");
    assert!(matches!(
        fs.read_link("/ads.txt"),
        Err(FsError::NotASymlink(_))
    ));

    // Serial and label as blkid prints them.
    let blkid = String::from_utf8(sh(&format!("blkid -p -o export '{i}'"))).unwrap();
    assert!(blkid.contains(&format!("UUID={}\n", fs.uuid())), "{blkid}");
    assert_eq!(fs.label(), Some("Wïn Lbl"));

    assert!(matches!(
        fs.read_file("/nope", 1),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_file("/comp", 1),
        Err(FsError::IsADirectory(_))
    ));
    assert!(matches!(
        fs.read_file("/comp/big.txt", 10),
        Err(FsError::TooLarge { size: 300000, .. })
    ));
    assert!(matches!(
        fs.read_dir("/ads.txt"),
        Err(FsError::NotADirectory(_))
    ));
}

/// An image with some bytes replaced, without copying its 32 MiB per variant.
struct Patched {
    base: Arc<Vec<u8>>,
    patches: Vec<(usize, u8)>,
}

impl ReadAt for Patched {
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.base[start..start + buf.len()]);
        for &(at, b) in &self.patches {
            if (start..start + buf.len()).contains(&at) {
                buf[at - start] = b;
            }
        }
        Ok(())
    }
}

/// Offsets of every `INDX` block and `FILE` record of the image.
fn structures(base: &[u8], magic: &[u8; 4]) -> Vec<usize> {
    (0..base.len())
        .step_by(512)
        .filter(|&o| &base[o..o + 4] == magic)
        .collect()
}

#[test]
fn hostile_volumes_give_typed_errors() {
    let base = Arc::new(std::fs::read(ntfs_image()).unwrap());
    let patched = |patches: Vec<(usize, u8)>| {
        NtfsFs::open(Arc::new(Patched {
            base: base.clone(),
            patches,
        }))
    };

    // A torn write in System32's index blocks: the first stride's check bytes differ.
    let indx = structures(&base, b"INDX");
    assert!(indx.len() > 60, "{} index blocks", indx.len());
    let fs = patched(
        indx.iter()
            .map(|&o| (o + 510, base[o + 510] ^ 0xff))
            .collect(),
    )
    .unwrap();
    let err = fs.read_dir("/Windows/System32").unwrap_err();
    assert!(
        err.to_string().contains("update sequence mismatch"),
        "{err}"
    );

    // Every non-leaf index block's children point back at the block itself: a cycle.
    let mut cycles = Vec::new();
    for &o in &indx {
        let node = o + 0x18;
        if base[node + 12] & 1 == 0 {
            continue;
        }
        let own_vcn = &base[o + 0x10..o + 0x18];
        let first = u32::from_le_bytes(base[node..node + 4].try_into().unwrap()) as usize;
        let mut at = node + first;
        loop {
            let len = u16::from_le_bytes([base[at + 8], base[at + 9]]) as usize;
            let flags = base[at + 12];
            if flags & 1 != 0 {
                for (k, &b) in own_vcn.iter().enumerate() {
                    cycles.push((at + len - 8 + k, b));
                }
            }
            if flags & 2 != 0 || len == 0 {
                break;
            }
            at += len;
        }
    }
    assert!(!cycles.is_empty(), "no non-leaf index block to loop");
    let fs = patched(cycles).unwrap();
    let err = fs.read_dir("/Windows/System32").unwrap_err();
    assert!(matches!(err, FsError::Corrupt { fs: "ntfs", .. }), "{err}");

    // Random damage over the metadata: a result or a typed error, never a panic or hang.
    let files = structures(&base, b"FILE");
    let targets: Vec<usize> = files.iter().chain(&indx).copied().collect();
    let mut rng = Rng(0x6e74_6673);
    let mut opened = 0;
    for round in 0..300 {
        let patches: Vec<(usize, u8)> = (0..1 + rng.below(6))
            .map(|_| {
                let at =
                    targets[rng.below(targets.len() as u64) as usize] + rng.below(1024) as usize;
                (at, rng.byte())
            })
            .collect();
        let Ok(fs) = patched(patches) else { continue };
        opened += 1;
        let _ = fs.read_dir("/");
        let _ = fs.read_dir("/Windows/System32");
        for p in [
            "/comp/big.txt",
            "/sparse.bin",
            "/fragmented.bin",
            "/Windows/System32/cmd.exe",
        ] {
            let _ = fs.read_file(p, 1 << 24);
        }
        let _ = fs.read_link("/junction");
        let _ = round;
    }
    assert!(opened > 100, "only {opened} mutated volumes opened");
}
