//! VMDK, read-only: a disk made of extents laid end to end, each a sparse extent
//! (`vmdk/sparse.rs`: monolithicSparse, twoGbMaxExtentSparse, streamOptimized), a flat
//! file (monolithicFlat, twoGbMaxExtentFlat, vmfs) or zeros, described by a text
//! descriptor (`vmdk/descriptor.rs`) that is a file of its own or embedded in a sparse
//! extent. Delta disks name their parent (`parentFileNameHint`) and its content id
//! (`parentCID`): the parent is opened as a backing file, confined and loop-checked, and
//! its `CID` must match.
//!
//! Extent files are resolved relative to the descriptor and confined to the image roots
//! by the same code as backing files (`Chain::confine`).

mod descriptor;
mod sparse;

use std::path::Path;
use std::sync::Arc;

use super::read_map::Shifted;
use super::{Chain, Identity, RawImage};
use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, read_vec, ReadAt, Slice};
use descriptor::{Descriptor, ExtentKind, MAX_DESCRIPTOR};
use sparse::{corrupt, SparseExtent};

const SECTOR: u64 = 512;
/// Grain directories of all extents together (each is loaded whole).
const MAX_GD_TOTAL: u64 = 32 << 20;
/// createType values naming ESXi-only subformats we do not read.
const UNSUPPORTED_TYPES: &[&str] = &[
    "vmfsSparse",
    "seSparse",
    "vmfsRaw",
    "vmfsRawDeviceMap",
    "vmfsPassthroughRawDeviceMap",
    "fullDevice",
    "partitionedDevice",
    "custom",
];

/// Turns an extent file name into the opened (resolved and confined) file.
type OpenExtent<'a> = dyn FnMut(&[u8]) -> Result<Arc<dyn ReadAt>, ReadError> + 'a;

enum ExtentData {
    /// A flat file (or window of one).
    Flat(Slice),
    Zero,
    Sparse(Box<SparseExtent>),
}

struct Extent {
    /// First guest byte.
    start: u64,
    len: u64,
    data: ExtentData,
}

/// An opened VMDK presenting the guest's disk.
pub struct Vmdk {
    extents: Vec<Extent>,
    size: u64,
    descriptor: Descriptor,
    /// The parent of a delta disk, for [`ReadAt::inflated`].
    parent: Option<Arc<dyn ReadAt>>,
}

impl Vmdk {
    /// Opens the VMDK whose first file is `file` (a sparse extent with an embedded
    /// descriptor, or a descriptor file). `open_extent` turns an extent's file name into
    /// an opened file (the caller resolves and confines it).
    pub fn open(
        file: Arc<dyn ReadAt>,
        mut open_extent: impl FnMut(&[u8]) -> Result<Arc<dyn ReadAt>, ReadError>,
    ) -> Result<Vmdk, ReadError> {
        let mut magic = [0u8; 4];
        file.read_exact_at(0, &mut magic[..(file.size().min(4) as usize)])?;
        match &magic {
            b"KDMV" => {
                let sparse = SparseExtent::open(file, None)?;
                let descriptor = match sparse.embedded_descriptor(MAX_DESCRIPTOR)? {
                    Some(text) => Descriptor::parse(&text)?,
                    None => Descriptor::default(),
                };
                check_create_type(&descriptor)?;
                let size = sparse.size();
                Ok(Vmdk {
                    extents: vec![Extent {
                        start: 0,
                        len: size,
                        data: ExtentData::Sparse(Box::new(sparse)),
                    }],
                    size,
                    descriptor,
                    parent: None,
                })
            }
            b"COWD" => Err(ReadError::Unsupported {
                format: "vmdk",
                message: "ESX COWD sparse extents (vmfsSparse) cannot be read".into(),
            }),
            _ => {
                if file.size() > MAX_DESCRIPTOR {
                    return Err(ReadError::TooLarge {
                        what: "vmdk descriptor",
                        size: file.size(),
                        limit: MAX_DESCRIPTOR,
                    });
                }
                let text = read_vec(file.as_ref(), 0, file.size(), MAX_DESCRIPTOR)?;
                let descriptor = Descriptor::parse(&text)?;
                check_create_type(&descriptor)?;
                Self::from_descriptor(descriptor, &mut open_extent)
            }
        }
    }

    fn from_descriptor(
        descriptor: Descriptor,
        open_extent: &mut OpenExtent<'_>,
    ) -> Result<Vmdk, ReadError> {
        if descriptor.extents.is_empty() {
            return Err(corrupt(0, "descriptor lists no extents"));
        }
        let mut extents = Vec::with_capacity(descriptor.extents.len());
        let mut start = 0u64;
        let mut gd_total = 0u64;
        for line in &descriptor.extents {
            let len = line
                .sectors
                .checked_mul(SECTOR)
                .ok_or_else(|| corrupt(0, "extent size overflows"))?;
            let data = match line.kind {
                ExtentKind::Zero => ExtentData::Zero,
                ExtentKind::Flat => {
                    let f = open_extent(&line.file)?;
                    let at = line
                        .offset
                        .checked_mul(SECTOR)
                        .ok_or_else(|| corrupt(0, "flat extent offset overflows"))?;
                    let shown = String::from_utf8_lossy(&line.file).into_owned();
                    ExtentData::Flat(Slice::new(f, at, len).map_err(|_| {
                        corrupt(
                            0,
                            format!("flat extent {shown:?} is shorter than its {len} bytes"),
                        )
                    })?)
                }
                ExtentKind::Sparse => {
                    let f = open_extent(&line.file)?;
                    let extent = SparseExtent::open_shared(f, Some(len), descriptor.extents.len())?;
                    gd_total += extent.gd_bytes();
                    if gd_total > MAX_GD_TOTAL {
                        return Err(ReadError::TooLarge {
                            what: "vmdk grain directories",
                            size: gd_total,
                            limit: MAX_GD_TOTAL,
                        });
                    }
                    ExtentData::Sparse(Box::new(extent))
                }
            };
            extents.push(Extent { start, len, data });
            start = start
                .checked_add(len)
                .filter(|&s| s <= i64::MAX as u64)
                .ok_or_else(|| corrupt(0, "extents add up to an impossible size"))?;
        }
        Ok(Vmdk {
            extents,
            size: start,
            descriptor,
            parent: None,
        })
    }

    /// The descriptor (embedded or separate).
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// Sets the parent of a delta disk: unallocated grains of every sparse extent read it.
    pub fn attach_parent(&mut self, parent: Arc<dyn ReadAt>) {
        self.parent = Some(parent.clone());
        for e in &mut self.extents {
            if let ExtentData::Sparse(s) = &mut e.data {
                s.attach_parent(Arc::new(Shifted {
                    inner: parent.clone(),
                    start: e.start,
                }));
            }
        }
    }
}

fn check_create_type(d: &Descriptor) -> Result<(), ReadError> {
    if let Some(t) = UNSUPPORTED_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(&d.create_type))
    {
        return Err(ReadError::Unsupported {
            format: "vmdk",
            message: format!("subformat {t} cannot be read"),
        });
    }
    Ok(())
}

impl ReadAt for Vmdk {
    fn size(&self) -> u64 {
        self.size
    }

    fn inflated(&self) -> u64 {
        let parent = self.parent.as_ref().map_or(0, |p| p.inflated());
        self.extents
            .iter()
            .map(|e| match &e.data {
                ExtentData::Sparse(s) => s.inflated(),
                ExtentData::Flat(_) | ExtentData::Zero => 0,
            })
            .fold(parent, u64::saturating_add)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let guest = offset + done as u64;
            let i = self.extents.partition_point(|e| e.start + e.len <= guest);
            let Some(e) = self.extents.get(i) else {
                return Err(corrupt(guest, "no extent covers this offset"));
            };
            let within = guest - e.start;
            let n = (e.len - within).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + n];
            match &e.data {
                ExtentData::Flat(s) => s.read_exact_at(within, out)?,
                ExtentData::Zero => out.fill(0),
                ExtentData::Sparse(s) => s.read_exact_at(within, out)?,
            }
            done += n;
        }
        Ok(())
    }
}

/// Opens the VMDK at `path`: extent files confined to the roots, then the parent of a
/// delta disk with its CID checked.
pub(crate) fn open(
    chain: &mut Chain,
    path: &Path,
    file: RawImage,
    depth: usize,
) -> Result<(Arc<dyn ReadAt>, Identity), ReadError> {
    let mut opened: Vec<(std::path::PathBuf, Arc<dyn ReadAt>)> = Vec::new();
    let mut vmdk = Vmdk::open(Arc::new(file), |name| {
        let canonical = chain.confine(path, "vmdk", name, |p| ReadError::ExtentOutsideRoots {
            format: "vmdk",
            path: p,
        })?;
        // One handle per file, however many extents name it.
        if let Some((_, f)) = opened.iter().find(|(p, _)| *p == canonical) {
            return Ok(f.clone());
        }
        let f: Arc<dyn ReadAt> = Arc::new(chain.open_file(&canonical)?);
        opened.push((canonical, f.clone()));
        Ok(f)
    })?;
    let identity = match vmdk.descriptor.cid {
        Some(cid) => Identity::VmdkCid(cid),
        None => Identity::None,
    };
    if let Some((hint, parent_cid)) = vmdk.descriptor.parent() {
        let hint = hint.to_vec();
        let (parent, _) = chain.open_backing(
            path,
            "vmdk",
            &hint,
            Some("vmdk"),
            depth + 1,
            Identity::VmdkCid(parent_cid),
        )?;
        vmdk.attach_parent(parent);
    }
    Ok((Arc::new(vmdk), identity))
}
