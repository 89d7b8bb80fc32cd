//! VirtualBox VDI, read-only: static and dynamic images (a block map of u32 entries:
//! allocated, unallocated or zero blocks) and differencing images, whose parent is the
//! VDI next to them whose creation UUID equals their link UUID.
//!
//! Layout (little endian): a 64-byte text banner, the signature 0xbeda107f at 0x40, the
//! header (v1.1) with the block map and data offsets, the disk size and block size, then
//! the block map and the blocks.

use std::path::Path;
use std::sync::Arc;

use super::read_map::{self, check_no_overlap, BlockMap, Parent, Run};
use super::{Chain, Identity, RawImage};
use crate::inspect::bytes::{array, le32, le64};
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};

const SIGNATURE: u32 = 0xbeda_107f;
const HEADER_LEN: u64 = 512;
/// Block map entries with a special meaning.
const UNALLOCATED: u32 = 0xffff_ffff;
const ZERO: u32 = 0xffff_fffe;
/// Image types.
const TYPE_DYNAMIC: u32 = 1;
const TYPE_STATIC: u32 = 2;
const TYPE_DIFF: u32 = 4;
/// 4 Mi entries (16 MiB of map): 4 PiB with the usual 1 MiB blocks.
const MAX_BLOCKS: u64 = 4 << 20;
/// Blocks between 512 bytes and 256 MiB (VirtualBox always uses 1 MiB).
const MIN_BLOCK: u32 = 512;
const MAX_BLOCK: u32 = 256 << 20;
/// Files in a directory looked at when searching for a parent by UUID.
const MAX_DIR_ENTRIES: usize = 4096;

fn corrupt(offset: u64, message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "vdi",
        offset,
        message: message.into(),
    }
}

/// The fields of the header the reader uses.
#[derive(Debug, Clone)]
pub struct VdiHeader {
    pub image_type: u32,
    pub offset_bmap: u64,
    pub offset_data: u64,
    pub disk_size: u64,
    pub block_size: u32,
    pub block_extra: u32,
    pub blocks: u32,
    pub uuid_create: [u8; 16],
    /// The parent's creation UUID, for a differencing image.
    pub uuid_link: [u8; 16],
}

impl VdiHeader {
    pub fn parse(b: &[u8]) -> Result<VdiHeader, ReadError> {
        if le32(b, 0x40) != SIGNATURE {
            return Err(corrupt(0x40, "no VDI signature"));
        }
        let version = le32(b, 0x44);
        if version >> 16 != 1 {
            return Err(ReadError::Unsupported {
                format: "vdi",
                message: format!("header version {version:#x}"),
            });
        }
        let h = VdiHeader {
            image_type: le32(b, 0x4c),
            offset_bmap: u64::from(le32(b, 0x154)),
            offset_data: u64::from(le32(b, 0x158)),
            disk_size: le64(b, 0x170),
            block_size: le32(b, 0x178),
            block_extra: le32(b, 0x17c),
            blocks: le32(b, 0x180),
            uuid_create: array(b, 0x188),
            uuid_link: array(b, 0x1a8),
        };
        if !matches!(h.image_type, TYPE_DYNAMIC | TYPE_STATIC | TYPE_DIFF) {
            return Err(ReadError::Unsupported {
                format: "vdi",
                message: format!("image type {}", h.image_type),
            });
        }
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&h.block_size) || !h.block_size.is_power_of_two() {
            return Err(corrupt(0x178, format!("block size {}", h.block_size)));
        }
        if h.block_extra > MAX_BLOCK || !h.block_extra.is_multiple_of(512) {
            return Err(corrupt(
                0x17c,
                format!("block extra data {}", h.block_extra),
            ));
        }
        let needed = h.disk_size.div_ceil(u64::from(h.block_size));
        if u64::from(h.blocks) < needed {
            return Err(corrupt(
                0x180,
                format!(
                    "{} blocks cannot hold a disk of {} bytes",
                    h.blocks, h.disk_size
                ),
            ));
        }
        if u64::from(h.blocks) > MAX_BLOCKS {
            return Err(ReadError::TooLarge {
                what: "vdi block map",
                size: u64::from(h.blocks) * 4,
                limit: MAX_BLOCKS * 4,
            });
        }
        if h.offset_bmap < HEADER_LEN || h.offset_data < h.offset_bmap + u64::from(h.blocks) * 4 {
            return Err(corrupt(
                0x154,
                "block map and data offsets overlap the header or each other",
            ));
        }
        Ok(h)
    }
}

/// An opened VDI image presenting the guest's disk.
pub struct Vdi {
    file: Arc<dyn ReadAt>,
    header: VdiHeader,
    map: Vec<u32>,
    parent: Parent,
}

impl Vdi {
    /// Parses the header and loads and checks the block map. A differencing image's
    /// parent is not opened here (see [`Vdi::attach_parent`]).
    pub fn from_source(file: Arc<dyn ReadAt>) -> Result<Vdi, ReadError> {
        let head = read_vec(file.as_ref(), 0, HEADER_LEN, HEADER_LEN)?;
        let header = VdiHeader::parse(&head)?;
        let len = u64::from(header.blocks) * 4;
        if header.offset_bmap + len > file.size() {
            return Err(corrupt(0x154, "block map runs past the end of the file"));
        }
        let raw = read_vec(file.as_ref(), header.offset_bmap, len, MAX_BLOCKS * 4)?;
        let map: Vec<u32> = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        let stride = u64::from(header.block_size) + u64::from(header.block_extra);
        let mut allocated = Vec::new();
        for (i, &e) in map.iter().enumerate() {
            if e == UNALLOCATED || e == ZERO {
                continue;
            }
            let host = header.offset_data + u64::from(e) * stride;
            if host + stride > file.size() {
                return Err(corrupt(
                    header.offset_bmap + i as u64 * 4,
                    format!("block {i} points to block {e}, past the end of the file"),
                ));
            }
            allocated.push((host, i as u64));
        }
        check_no_overlap("vdi", header.offset_bmap, allocated, stride, &[])?;
        let parent = if header.image_type == TYPE_DIFF {
            Parent::NotAttached(None)
        } else {
            Parent::None
        };
        Ok(Vdi {
            file,
            header,
            map,
            parent,
        })
    }

    pub fn header(&self) -> &VdiHeader {
        &self.header
    }

    pub fn is_differencing(&self) -> bool {
        self.header.image_type == TYPE_DIFF
    }

    pub fn attach_parent(&mut self, parent: Arc<dyn ReadAt>) {
        self.parent = Parent::Attached(parent);
    }
}

impl BlockMap for Vdi {
    type Cursor = ();
    const FORMAT: &'static str = "vdi";

    fn map(&self, guest: u64, _: &mut ()) -> Result<(Run, u64), ReadError> {
        let bs = u64::from(self.header.block_size);
        let index = (guest / bs) as usize;
        let within = guest % bs;
        let rest = bs - within;
        Ok(match self.map.get(index).copied().unwrap_or(UNALLOCATED) {
            UNALLOCATED => (Run::Parent, rest),
            ZERO => (Run::Zero, rest),
            e => {
                let stride = bs + u64::from(self.header.block_extra);
                let host = self.header.offset_data
                    + u64::from(e) * stride
                    + u64::from(self.header.block_extra)
                    + within;
                (Run::Host(host), rest)
            }
        })
    }
}

impl ReadAt for Vdi {
    fn size(&self) -> u64 {
        self.header.disk_size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        read_map::read(self, self.file.as_ref(), &self.parent, offset, buf)
    }
}

/// Opens the VDI at `path`; a differencing image's parent is searched by UUID among the
/// `.vdi` files of its directory (VirtualBox keeps the parent's path in its own registry,
/// not in the image), confined to the roots like any backing file.
pub(crate) fn open(
    chain: &mut Chain,
    path: &Path,
    file: RawImage,
    depth: usize,
) -> Result<(Arc<dyn ReadAt>, Identity), ReadError> {
    let mut vdi = Vdi::from_source(Arc::new(file))?;
    let identity = Identity::Vdi(vdi.header.uuid_create);
    if vdi.is_differencing() {
        let link = vdi.header.uuid_link;
        if chain.is_remote() {
            // The parent is found by listing the directory, which HTTP cannot do.
            return Err(ReadError::Unsupported {
                format: "vdi",
                message: "a differencing VDI over HTTP: its parent is found by UUID in a \
                          directory listing, which a URL does not give"
                    .into(),
            });
        }
        let name = find_by_uuid(chain, path, &link)?;
        let (parent, _) = chain.open_backing(
            path,
            "vdi",
            name.as_os_str().as_encoded_bytes(),
            Some("vdi"),
            depth + 1,
            Identity::Vdi(link),
        )?;
        vdi.attach_parent(parent);
    }
    Ok((Arc::new(vdi), identity))
}

/// The file name, in the directory of `child`, of the VDI whose creation UUID is `uuid`.
fn find_by_uuid(
    chain: &mut Chain,
    child: &Path,
    uuid: &[u8; 16],
) -> Result<std::ffi::OsString, ReadError> {
    let dir = child.parent().unwrap_or(Path::new("."));
    let not_found = || ReadError::Unsupported {
        format: "vdi",
        message: format!(
            "differencing image {}: no parent VDI with UUID {} in {}",
            child.display(),
            uuid_string(uuid),
            dir.display()
        ),
    };
    let entries = std::fs::read_dir(dir).map_err(|source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let own = child.file_name();
    for entry in entries.take(MAX_DIR_ENTRIES).flatten() {
        let name = entry.file_name();
        let is_vdi = Path::new(&name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("vdi"));
        if !is_vdi || Some(name.as_os_str()) == own {
            continue;
        }
        // Confined before even its header is read: a symlink out of the roots is skipped.
        let Ok(canonical) = chain.confine(child, "vdi", name.as_encoded_bytes(), |path| {
            ReadError::BackingOutsideRoots { path }
        }) else {
            continue;
        };
        let Ok(candidate) = RawImage::open(&canonical) else {
            continue;
        };
        let mut head = [0u8; HEADER_LEN as usize];
        if candidate.read_exact_at(0, &mut head).is_err() {
            continue;
        }
        if le32(&head, 0x40) == SIGNATURE && array::<16>(&head, 0x188) == *uuid {
            return Ok(name);
        }
    }
    Err(not_found())
}

fn uuid_string(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A dynamic image of 4 blocks of 1 KiB: block 0 allocated (host block 1), 1 zero,
    /// 2 unallocated, 3 allocated (host block 0).
    pub(crate) fn image(kind: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x400 + 2 * 1024];
        b[0x40..0x44].copy_from_slice(&SIGNATURE.to_le_bytes());
        b[0x44..0x48].copy_from_slice(&0x0001_0001u32.to_le_bytes());
        b[0x4c..0x50].copy_from_slice(&kind.to_le_bytes());
        b[0x154..0x158].copy_from_slice(&0x200u32.to_le_bytes());
        b[0x158..0x15c].copy_from_slice(&0x400u32.to_le_bytes());
        b[0x170..0x178].copy_from_slice(&4096u64.to_le_bytes());
        b[0x178..0x17c].copy_from_slice(&1024u32.to_le_bytes());
        b[0x180..0x184].copy_from_slice(&4u32.to_le_bytes());
        for (i, e) in [1u32, ZERO, UNALLOCATED, 0].iter().enumerate() {
            b[0x200 + i * 4..0x204 + i * 4].copy_from_slice(&e.to_le_bytes());
        }
        b[0x400..0x800].fill(0xbb);
        b[0x800..0xc00].fill(0xaa);
        b
    }

    #[test]
    fn blocks() {
        let v = Vdi::from_source(Arc::new(MemSource(image(TYPE_DYNAMIC)))).unwrap();
        let mut buf = vec![0u8; 4096];
        v.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..1024].iter().all(|&x| x == 0xaa));
        assert!(buf[1024..3072].iter().all(|&x| x == 0));
        assert!(buf[3072..].iter().all(|&x| x == 0xbb));
        let d = Vdi::from_source(Arc::new(MemSource(image(TYPE_DIFF)))).unwrap();
        assert!(d.read_exact_at(2048, &mut buf[..10]).is_err());
    }

    #[test]
    fn hostile_maps() {
        let mut b = image(TYPE_DYNAMIC);
        b[0x204..0x208].copy_from_slice(&1u32.to_le_bytes()); // two blocks share host block 1
        assert!(Vdi::from_source(Arc::new(MemSource(b))).is_err());
        let mut b = image(TYPE_DYNAMIC);
        b[0x200..0x204].copy_from_slice(&7u32.to_le_bytes());
        assert!(Vdi::from_source(Arc::new(MemSource(b))).is_err());
        let mut b = image(TYPE_DYNAMIC);
        b[0x170..0x178].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Vdi::from_source(Arc::new(MemSource(b))).is_err());
        let mut b = image(TYPE_DYNAMIC);
        b[0x180..0x184].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Vdi::from_source(Arc::new(MemSource(b))).is_err());
    }
}
