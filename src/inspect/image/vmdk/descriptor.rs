//! The VMDK text descriptor: `key=value` lines (`createType`, `CID`, `parentCID`,
//! `parentFileNameHint`) and extent lines (`RW 4192256 SPARSE "disk-s001.vmdk"`), either a
//! file of its own or embedded in a sparse extent.

use crate::inspect::source::ReadError;

/// Descriptors are a few hundred bytes; a twoGbMaxExtent descriptor of a huge disk lists
/// a few thousand extents. Anything larger is refused before it is read.
pub const MAX_DESCRIPTOR: u64 = 1 << 20;
/// Extents per descriptor (a 64 TiB disk in 2 GiB extents has 32 Ki; qemu's own images
/// stay far below).
pub const MAX_EXTENTS: usize = 32 << 10;
/// `parentCID` of an image without a parent.
pub const NO_PARENT: u32 = 0xffff_ffff;

/// How an extent stores its sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Sectors stored in order in the file, from a sector offset.
    Flat,
    /// A hosted sparse extent (grain directory and tables, header `KDMV`).
    Sparse,
    /// Reads as zeros, no file.
    Zero,
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    pub kind: ExtentKind,
    pub sectors: u64,
    pub file: Vec<u8>,
    /// Start in the file, in sectors (flat extents).
    pub offset: u64,
}

/// The parsed descriptor.
#[derive(Debug, Clone, Default)]
pub struct Descriptor {
    pub create_type: String,
    pub cid: Option<u32>,
    pub parent_cid: Option<u32>,
    pub parent_hint: Option<Vec<u8>>,
    pub extents: Vec<ExtentLine>,
}

fn bad(message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "vmdk",
        offset: 0,
        message: format!("descriptor: {}", message.into()),
    }
}

fn unsupported(message: impl Into<String>) -> ReadError {
    ReadError::Unsupported {
        format: "vmdk",
        message: message.into(),
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

impl Descriptor {
    /// Parses descriptor text (bytes after a NUL are padding of an embedded descriptor).
    pub fn parse(raw: &[u8]) -> Result<Descriptor, ReadError> {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = String::from_utf8_lossy(&raw[..end]);
        let mut d = Descriptor::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(extent) = Self::extent_line(line)? {
                if d.extents.len() >= MAX_EXTENTS {
                    return Err(ReadError::TooLarge {
                        what: "vmdk extent list",
                        size: d.extents.len() as u64 + 1,
                        limit: MAX_EXTENTS as u64,
                    });
                }
                d.extents.push(extent);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = unquote(value);
            let hex = |v: &str| {
                u32::from_str_radix(v, 16)
                    .map_err(|_| bad(format!("{} is not a hex CID", key.trim())))
            };
            match key.trim() {
                "createType" => d.create_type = value.to_string(),
                "CID" => d.cid = Some(hex(value)?),
                "parentCID" => d.parent_cid = Some(hex(value)?),
                "parentFileNameHint" => d.parent_hint = Some(value.as_bytes().to_vec()),
                _ => {}
            }
        }
        Ok(d)
    }

    /// An extent line `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`, or `None` for other lines.
    fn extent_line(line: &str) -> Result<Option<ExtentLine>, ReadError> {
        let mut parts = line.splitn(3, char::is_whitespace);
        let access = parts.next().unwrap_or("");
        if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
            return Ok(None);
        }
        let rest = parts.collect::<Vec<_>>();
        let (sectors, rest) = match rest.as_slice() {
            [s, r] => (*s, r.trim_start()),
            _ => return Err(bad(format!("extent line {line:?}"))),
        };
        let sectors: u64 = sectors
            .parse()
            .map_err(|_| bad(format!("extent size in {line:?}")))?;
        let (kind_word, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let kind = match kind_word {
            "FLAT" => ExtentKind::Flat,
            "SPARSE" => ExtentKind::Sparse,
            "ZERO" => ExtentKind::Zero,
            "VMFS" => ExtentKind::Flat,
            "SESPARSE" | "VMFSSPARSE" | "VMFSRDM" | "VMFSRAW" => {
                return Err(unsupported(format!(
                    "{kind_word} extents (ESXi-specific subformat) cannot be read"
                )))
            }
            other => return Err(bad(format!("unknown extent type {other:?}"))),
        };
        let rest = rest.trim();
        let (file, after) = if let Some(q) = rest.strip_prefix('"') {
            let close = q
                .find('"')
                .ok_or_else(|| bad(format!("unterminated file name in {line:?}")))?;
            (q.as_bytes()[..close].to_vec(), q[close + 1..].trim())
        } else if kind == ExtentKind::Zero {
            (Vec::new(), rest)
        } else {
            return Err(bad(format!("extent without a file name: {line:?}")));
        };
        let offset = if after.is_empty() {
            0
        } else {
            after
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .map_err(|_| bad(format!("extent offset in {line:?}")))?
        };
        Ok(Some(ExtentLine {
            kind,
            sectors,
            file,
            offset,
        }))
    }

    /// The parent's CID when the descriptor names a parent.
    pub fn parent(&self) -> Option<(&[u8], u32)> {
        match (self.parent_cid, &self.parent_hint) {
            (Some(cid), Some(hint)) if cid != NO_PARENT => Some((hint.as_slice(), cid)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_descriptor() {
        let text = b"# Disk DescriptorFile\nversion=1\nCID=52a2f1e3\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 4194304 FLAT \"d-f001.vmdk\" 0\nRW 100 FLAT \"d f002.vmdk\" 7\nRW 8 ZERO\n\nddb.virtualHWVersion = \"4\"\n\0\0\0";
        let d = Descriptor::parse(text).unwrap();
        assert_eq!(d.create_type, "twoGbMaxExtentFlat");
        assert_eq!(d.cid, Some(0x52a2_f1e3));
        assert_eq!(d.parent(), None);
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[1].file, b"d f002.vmdk");
        assert_eq!((d.extents[1].sectors, d.extents[1].offset), (100, 7));
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
    }

    #[test]
    fn delta_and_refusals() {
        let d = Descriptor::parse(b"CID=1\nparentCID=abcd\nparentFileNameHint=\"../base.vmdk\"\nRW 10 SPARSE \"x.vmdk\"\n").unwrap();
        assert_eq!(d.parent(), Some((&b"../base.vmdk"[..], 0xabcd)));
        let e = Descriptor::parse(b"RW 10 SESPARSE \"x.vmdk\"\n").unwrap_err();
        assert!(matches!(e, ReadError::Unsupported { .. }) && e.to_string().contains("SESPARSE"));
        assert!(Descriptor::parse(b"RW ten FLAT \"x\"\n").is_err());
        assert!(Descriptor::parse(b"RW 10 FLAT \"x\n").is_err());
        assert!(Descriptor::parse(b"RW 10 FLAT\n").is_err());
        assert!(Descriptor::parse(b"CID=zz\n").is_err());
    }
}
