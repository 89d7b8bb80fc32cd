//! Data runs: how a non-resident value's virtual clusters (VCNs) map to the volume's
//! logical clusters (LCNs). Each run is a header byte (sizes of the two fields), a
//! length and a signed offset from the previous run's LCN; no offset means sparse.

use super::corrupt;
use crate::inspect::fs::FsError;

/// One run of `len` clusters starting at virtual cluster `vcn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub vcn: u64,
    pub len: u64,
    /// First logical cluster, or `None` for a sparse (all-zero) run.
    pub lcn: Option<u64>,
}

/// Decodes the run list `b` of an extent starting at `start_vcn`, checking every run
/// lies inside the volume's `clusters` and no length or offset overflows.
pub(crate) fn decode(b: &[u8], start_vcn: u64, clusters: u64) -> Result<Vec<Run>, FsError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut vcn = start_vcn;
    let mut lcn: i64 = 0;
    while let Some(&head) = b.get(at) {
        if head == 0 {
            return Ok(out);
        }
        let (len_size, off_size) = (usize::from(head & 0x0f), usize::from(head >> 4));
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(corrupt(format!("run header {head:#04x}")));
        }
        let fields = b
            .get(at + 1..at + 1 + len_size + off_size)
            .ok_or_else(|| corrupt("run list runs past its attribute".into()))?;
        let len = le_uint(&fields[..len_size]);
        if len == 0 || len > clusters {
            return Err(corrupt(format!("run of {len} clusters")));
        }
        let run_lcn = if off_size == 0 {
            None
        } else {
            let delta = le_int(&fields[len_size..]);
            lcn = lcn
                .checked_add(delta)
                .ok_or_else(|| corrupt("run offset overflows".into()))?;
            let start = u64::try_from(lcn)
                .map_err(|_| corrupt(format!("run at negative cluster {lcn}")))?;
            if start.checked_add(len).is_none_or(|end| end > clusters) {
                return Err(corrupt(format!(
                    "run of {len} clusters at {start} is outside the volume of {clusters}"
                )));
            }
            Some(start)
        };
        out.push(Run {
            vcn,
            len,
            lcn: run_lcn,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| corrupt("run list length overflows".into()))?;
        at += 1 + len_size + off_size;
    }
    Err(corrupt("run list has no end marker".into()))
}

fn le_uint(b: &[u8]) -> u64 {
    b.iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn le_int(b: &[u8]) -> i64 {
    let u = le_uint(b);
    let bits = b.len() * 8;
    if bits < 64 && u & (1 << (bits - 1)) != 0 {
        (u | (!0u64 << bits)) as i64
    } else {
        u as i64
    }
}

/// The run covering `vcn`, in runs sorted by VCN.
pub(crate) fn find(runs: &[Run], vcn: u64) -> Option<&Run> {
    let i = runs.partition_point(|r| r.vcn + r.len <= vcn);
    runs.get(i).filter(|r| r.vcn <= vcn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_runs_sparse_and_negative_offsets() {
        // 4 clusters at 0x40, 2 sparse, 3 clusters 0x10 back (0x30).
        let b = [0x11, 4, 0x40, 0x01, 2, 0x11, 3, 0xf0, 0];
        let r = decode(&b, 0, 1000).unwrap();
        assert_eq!(
            r,
            [
                Run {
                    vcn: 0,
                    len: 4,
                    lcn: Some(0x40)
                },
                Run {
                    vcn: 4,
                    len: 2,
                    lcn: None
                },
                Run {
                    vcn: 6,
                    len: 3,
                    lcn: Some(0x30)
                }
            ]
        );
        assert_eq!(find(&r, 5).unwrap().vcn, 4);
        assert!(find(&r, 9).is_none());
    }

    #[test]
    fn hostile_runs_are_errors() {
        assert!(decode(&[0x11, 4, 0x40], 0, 1000).is_err(), "no end");
        assert!(decode(&[0x11, 4, 0xf0, 0], 0, 1000).is_err(), "negative");
        assert!(decode(&[0x11, 4, 0x7f, 0], 0, 100).is_err(), "outside");
        assert!(decode(&[0x19, 4, 0, 0], 0, 100).is_err(), "header");
        assert!(decode(&[0x10, 0], 0, 100).is_err(), "zero length size");
        let big = [
            0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(decode(&big, 0, u64::MAX).is_err() || decode(&big, 0, u64::MAX).is_ok());
        assert!(
            decode(&big, u64::MAX - 1, u64::MAX).is_err(),
            "vcn overflow"
        );
    }
}
