//! The assembled filesystem: its devices, the chunk map over them, and verified tree
//! blocks read through it (with a small cache), searched by key range.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::inspect::bytes::xor_into;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

use super::chunk::{ChunkMap, CHUNK_ITEM_KEY};
use super::corrupt;
use super::key::Key;
use super::node::{Node, MAX_LEVEL};
use super::superblock::{self, Superblock};

/// Bytes of tree blocks kept parsed (1024 blocks of the default 16 KiB).
const CACHE_BYTES: usize = 16 << 20;
/// Most tree blocks one search may visit: a hostile tree whose pointers all lead to the
/// same (cached) child must not make a search run for ever.
const MAX_VISITS: usize = 200_000;

/// What a search calls on each item (key, data); `Ok(false)` stops the search.
pub type ItemFn<'a> = dyn FnMut(Key, &[u8]) -> Result<bool, FsError> + 'a;

/// The root of one tree: its top block and that block's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub bytenr: u64,
    pub level: u8,
}

/// Devices, chunk map and node cache of one filesystem, shared by all its views.
pub struct Volume {
    pub sb: Superblock,
    devices: HashMap<u64, Arc<dyn ReadAt>>,
    chunks: ChunkMap,
    cache: Mutex<HashMap<u64, Arc<Node>>>,
}

impl Volume {
    /// Assembles the filesystem from its devices (one for most filesystems; every
    /// member for a multi-device one). Returns warnings about mirrors used and missing
    /// devices.
    pub fn open(devices: &[Arc<dyn ReadAt>]) -> Result<(Volume, Vec<String>), FsError> {
        let mut warnings = Vec::new();
        let mut found: Vec<(Superblock, Arc<dyn ReadAt>)> = Vec::new();
        for dev in devices {
            let (sb, warn) = superblock::read(dev.as_ref())?;
            warnings.extend(warn);
            found.push((sb, dev.clone()));
        }
        // The newest superblock speaks for the filesystem.
        let main = found
            .iter()
            .max_by_key(|(sb, _)| sb.generation)
            .map(|(sb, _)| sb.clone())
            .ok_or_else(|| corrupt("no device"))?;
        let mut by_id: HashMap<u64, Arc<dyn ReadAt>> = HashMap::new();
        for (sb, dev) in found {
            if sb.fsid != main.fsid {
                warnings.push("a device of another btrfs filesystem was left out".into());
                continue;
            }
            by_id.entry(sb.devid).or_insert(dev);
        }
        if (by_id.len() as u64) < main.num_devices {
            warnings.push(format!(
                "btrfs filesystem has {} devices, {} present: data on missing devices is read \
                 from other copies or rebuilt from parity where the profile allows",
                main.num_devices,
                by_id.len()
            ));
        }
        let chunks = ChunkMap::from_sys_array(&main.sys_chunk_array)?;
        let mut vol = Volume {
            sb: main,
            devices: by_id,
            chunks,
            cache: Mutex::new(HashMap::new()),
        };
        vol.read_chunk_tree()?;
        Ok((vol, warnings))
    }

    /// Completes the bootstrap chunk map from the chunk tree.
    fn read_chunk_tree(&mut self) -> Result<(), FsError> {
        let tree = Tree {
            bytenr: self.sb.chunk_root,
            level: self.sb.chunk_root_level,
        };
        let mut items = Vec::new();
        self.search(
            tree,
            Key::new(0, CHUNK_ITEM_KEY, 0),
            Key::new(u64::MAX, CHUNK_ITEM_KEY, u64::MAX),
            &mut |k, d| {
                if k.ty == CHUNK_ITEM_KEY {
                    items.push((k.offset, d.to_vec()));
                }
                Ok(true)
            },
        )?;
        for (start, data) in items {
            self.chunks.insert_item(start, &data)?;
        }
        // Nodes cached while only the system chunks were known stay valid.
        Ok(())
    }

    pub fn root_tree(&self) -> Tree {
        Tree {
            bytenr: self.sb.root,
            level: self.sb.root_level,
        }
    }

    /// Reads `buf.len()` bytes at logical `logical`, from any copy that can be read.
    pub fn read_logical(&self, mut logical: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let mut pos = 0;
        while pos < buf.len() {
            let (copies, contiguous) = self.chunks.map(logical)?;
            let n = (contiguous.min((buf.len() - pos) as u64)) as usize;
            self.read_copies(&copies, logical, &mut buf[pos..pos + n], |_| Ok(()))?;
            pos += n;
            logical += n as u64;
        }
        Ok(())
    }

    /// Reads one of `copies` into `buf`, accepting the first that reads and passes
    /// `check`. Budget exhaustion and cancellation stop at once.
    fn read_copies(
        &self,
        copies: &[super::chunk::Physical],
        logical: u64,
        buf: &mut [u8],
        mut check: impl FnMut(&[u8]) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let mut first_err = None;
        for p in copies {
            let Some(dev) = self.devices.get(&p.devid) else {
                first_err.get_or_insert(corrupt(format!(
                    "logical {logical:#x} is on device {} which is not present",
                    p.devid
                )));
                continue;
            };
            if p.offset
                .checked_add(buf.len() as u64)
                .is_none_or(|e| e > dev.size())
            {
                first_err.get_or_insert(corrupt(format!(
                    "logical {logical:#x} maps to {:#x} past the end of device {}",
                    p.offset, p.devid
                )));
                continue;
            }
            match dev.read_exact_at(p.offset, buf) {
                Ok(()) => match check(buf) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                },
                Err(e @ (ReadError::BudgetExceeded { .. } | ReadError::Cancelled)) => {
                    return Err(e.into())
                }
                Err(e) => {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        // RAID5/6: the row's P and other data stripes rebuild this one.
        if let Some(sources) = self.chunks.parity_sources(logical)? {
            if let Ok(()) = self.read_rebuilt(&sources, buf) {
                if check(buf).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(first_err.unwrap_or_else(|| corrupt(format!("no copy of logical {logical:#x}"))))
    }

    /// XOR of `buf.len()` bytes at each of `sources` (all must be present).
    fn read_rebuilt(
        &self,
        sources: &[super::chunk::Physical],
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let mut other = vec![0u8; buf.len()];
        buf.fill(0);
        for p in sources {
            let dev = self
                .devices
                .get(&p.devid)
                .ok_or_else(|| corrupt("a RAID5/6 row misses more than one device"))?;
            dev.read_exact_at(p.offset, &mut other)?;
            xor_into(buf, &other);
        }
        Ok(())
    }

    /// The verified tree block at `bytenr`, from the cache or any good copy.
    pub fn node(&self, bytenr: u64) -> Result<Arc<Node>, FsError> {
        if let Some(n) = self.lock_cache().get(&bytenr) {
            return Ok(n.clone());
        }
        let size = self.sb.nodesize as usize;
        let (copies, contiguous) = self.chunks.map(bytenr)?;
        if contiguous < size as u64 {
            return Err(corrupt(format!(
                "tree block {bytenr:#x} crosses a chunk or stripe boundary"
            )));
        }
        let mut buf = vec![0u8; size];
        let mut parsed = None;
        self.read_copies(&copies, bytenr, &mut buf, |b| {
            parsed = Some(Node::parse(
                b.to_vec(),
                bytenr,
                self.sb.csum_type,
                &self.sb.metadata_fsid,
            )?);
            Ok(())
        })?;
        let node = Arc::new(parsed.ok_or_else(|| corrupt("unreadable tree block"))?);
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_BYTES / size {
            cache.clear();
        }
        cache.insert(bytenr, node.clone());
        Ok(node)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Node>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `f` on every item of `tree` with `min <= key <= max`, in key order, until
    /// it returns `false`.
    pub fn search(
        &self,
        tree: Tree,
        min: Key,
        max: Key,
        f: &mut ItemFn<'_>,
    ) -> Result<(), FsError> {
        if tree.level > MAX_LEVEL {
            return Err(corrupt(format!("tree root at level {}", tree.level)));
        }
        let mut visits = 0;
        self.walk(tree.bytenr, tree.level, min, max, f, &mut visits)
            .map(|_| ())
    }

    /// One block of [`Volume::search`]; `Ok(false)` once `f` asked to stop.
    fn walk(
        &self,
        bytenr: u64,
        level: u8,
        min: Key,
        max: Key,
        f: &mut ItemFn<'_>,
        visits: &mut usize,
    ) -> Result<bool, FsError> {
        *visits += 1;
        if *visits > MAX_VISITS {
            return Err(corrupt(format!(
                "a tree search visited more than {MAX_VISITS} blocks (a loop?)"
            )));
        }
        let node = self.node(bytenr)?;
        // Levels strictly decrease on the way down, so no path can come back to a block.
        if node.level != level {
            return Err(corrupt(format!(
                "tree block {bytenr:#x} is at level {}, its parent expects {level}",
                node.level
            )));
        }
        if level == 0 {
            for (i, (k, _)) in node.items.iter().enumerate() {
                if *k > max {
                    return Ok(false);
                }
                if *k >= min && !f(*k, node.item_data(i))? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        for (i, (k, child)) in node.ptrs.iter().enumerate() {
            if *k > max {
                return Ok(false);
            }
            // Child i holds keys in [k, next key): skip it when all of them are < min.
            if node.ptrs.get(i + 1).is_some_and(|(next, _)| *next <= min) {
                continue;
            }
            if !self.walk(*child, level - 1, min, max, f, visits)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The data of the item with exactly `key`, if any.
    pub fn get(&self, tree: Tree, key: Key) -> Result<Option<Vec<u8>>, FsError> {
        let mut out = None;
        self.search(tree, key, key, &mut |_, d| {
            out = Some(d.to_vec());
            Ok(false)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::fs::btrfs::chunk::tests::{chunk_item, sys_entry};
    use crate::inspect::fs::btrfs::node::tests::{internal, leaf};
    use crate::inspect::fs::btrfs::superblock::tests::seal;
    use crate::inspect::source::MemSource;

    const NODE: usize = 16384;
    const FSID: [u8; 16] = [0x5a; 16];

    /// A 1 MiB device mapped 1:1 by one system chunk; chunk tree: an empty leaf at
    /// 0x20000; root tree at 0x30000 (level `root_level`), blocks placed by the caller.
    fn image(root_level: u8, blocks: &[(usize, Vec<u8>)]) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let sb = &mut d[0x10000..0x11000];
        sb[0x20..0x30].copy_from_slice(&FSID);
        sb[0x30..0x38].copy_from_slice(&0x10000u64.to_le_bytes());
        sb[0x40..0x48].copy_from_slice(b"_BHRfS_M");
        sb[0x50..0x58].copy_from_slice(&0x30000u64.to_le_bytes());
        sb[0x58..0x60].copy_from_slice(&0x20000u64.to_le_bytes());
        sb[0x88] = 1;
        sb[0x90..0x94].copy_from_slice(&4096u32.to_le_bytes());
        sb[0x94..0x98].copy_from_slice(&(NODE as u32).to_le_bytes());
        sb[0xc6] = root_level;
        sb[0xc9] = 1; // devid
        let arr = sys_entry(0, &chunk_item(1 << 20, 2, 0, &[(1, 0)]));
        sb[0xa0..0xa4].copy_from_slice(&(arr.len() as u32).to_le_bytes());
        sb[0x32b..0x32b + arr.len()].copy_from_slice(&arr);
        seal(sb);
        let chunk_leaf = leaf(0x20000, &FSID, NODE, &[]);
        d[0x20000..0x20000 + NODE].copy_from_slice(&chunk_leaf);
        for (at, b) in blocks {
            d[*at..*at + b.len()].copy_from_slice(b);
        }
        d
    }

    fn open(d: Vec<u8>) -> Volume {
        Volume::open(&[Arc::new(MemSource(d)) as Arc<dyn ReadAt>])
            .unwrap()
            .0
    }

    fn search_all(vol: &Volume) -> Result<usize, FsError> {
        let mut n = 0;
        vol.search(
            vol.root_tree(),
            Key::new(0, 0, 0),
            Key::new(u64::MAX, u8::MAX, u64::MAX),
            &mut |_, _| {
                n += 1;
                Ok(true)
            },
        )?;
        Ok(n)
    }

    #[test]
    fn a_two_level_tree_is_searched_in_order() {
        let k = |i| Key::new(i, 1, 0);
        let root = internal(
            0x30000,
            &FSID,
            NODE,
            1,
            &[(k(1), 0x40000), (k(10), 0x50000)],
        );
        let a = leaf(0x40000, &FSID, NODE, &[(k(1), vec![1]), (k(2), vec![2])]);
        let b = leaf(
            0x50000,
            &FSID,
            NODE,
            &[(k(10), vec![10]), (k(11), vec![11])],
        );
        let vol = open(image(1, &[(0x30000, root), (0x40000, a), (0x50000, b)]));
        assert_eq!(search_all(&vol).unwrap(), 4);
        assert_eq!(vol.get(vol.root_tree(), k(11)).unwrap(), Some(vec![11]));
        assert_eq!(vol.get(vol.root_tree(), k(3)).unwrap(), None);
        let mut seen = Vec::new();
        vol.search(vol.root_tree(), k(2), k(10), &mut |k, _| {
            seen.push(k.objectid);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![2, 10]);
    }

    #[test]
    fn a_node_pointing_to_itself_is_corrupt() {
        let root = internal(0x30000, &FSID, NODE, 1, &[(Key::new(1, 1, 0), 0x30000)]);
        let vol = open(image(1, &[(0x30000, root)]));
        let err = search_all(&vol).unwrap_err();
        assert!(err.to_string().contains("level"), "{err}");
        // An address outside every chunk.
        let root = internal(0x30000, &FSID, NODE, 1, &[(Key::new(1, 1, 0), 5 << 20)]);
        let err = search_all(&open(image(1, &[(0x30000, root)]))).unwrap_err();
        assert!(err.to_string().contains("in no chunk"), "{err}");
    }

    #[test]
    fn a_fan_out_onto_one_block_hits_the_visit_cap() {
        // Every pointer of two levels leads to the same blocks: 480 x 480 visits of a
        // cached leaf, which must stop at the cap instead of running for ages.
        let ptrs =
            |to: u64| -> Vec<(Key, u64)> { (0..480).map(|i| (Key::new(i, 1, 0), to)).collect() };
        let root = internal(0x30000, &FSID, NODE, 2, &ptrs(0x40000));
        let mid = internal(0x40000, &FSID, NODE, 1, &ptrs(0x50000));
        let l = leaf(0x50000, &FSID, NODE, &[(Key::new(0, 1, 0), vec![0])]);
        let vol = open(image(2, &[(0x30000, root), (0x40000, mid), (0x50000, l)]));
        let err = search_all(&vol).unwrap_err();
        assert!(err.to_string().contains("visited more than"), "{err}");
    }
}
