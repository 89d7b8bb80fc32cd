//! Table b-trees: walking interior and leaf pages in rowid order and reassembling each
//! row's payload, following its overflow chain when the row is larger than a page.
//!
//! Page header (after the 100-byte file header on page 1): type (5 interior, 13 leaf),
//! first freeblock, cell count, content start, fragmented bytes, and for interior pages
//! the right-most child. Then the cell pointer array. An interior cell is a left child
//! page and a rowid; a leaf cell is payload size, rowid, the payload's local part and,
//! when the payload spills, the first overflow page.

use std::borrow::Cow;

use super::record::varint;
use super::{Database, Page};
use crate::inspect::os::packages::PackageError;

const INTERIOR_TABLE: u8 = 5;
const LEAF_TABLE: u8 = 13;

/// SQLite's own bound on b-tree depth (`BTCURSOR_MAX_DEPTH`); deeper means corrupt.
const MAX_DEPTH: usize = 20;

/// Receives each row: its rowid and its payload, or the per-row error that made the
/// payload unreadable (so the caller may skip that row, as `rpm -qa` does). Returning an
/// error aborts the walk.
pub type RowFn<'f, 'a> = dyn FnMut(i64, Payload<'a>) -> Result<(), PackageError> + 'f;

/// One row's payload: borrowed when it fits on its page, owned when reassembled from an
/// overflow chain; an error confined to this row otherwise.
pub type Payload<'a> = Result<Cow<'a, [u8]>, PackageError>;

/// Calls `row` for every row of the table b-tree rooted at `root`, in rowid order.
/// Damage to the tree itself (bad page type, cell pointer off the page, cycle) is an
/// error; damage confined to one row's payload is passed to `row`.
pub fn walk_table<'a>(
    db: &mut Database<'a>,
    root: u32,
    row: &mut RowFn<'_, 'a>,
) -> Result<(), PackageError> {
    walk(db, root, 0, row)
}

fn walk<'a>(
    db: &mut Database<'a>,
    number: u32,
    depth: usize,
    row: &mut RowFn<'_, 'a>,
) -> Result<(), PackageError> {
    if depth > MAX_DEPTH {
        return Err(super::corrupt(
            &format!("b-tree page {number}"),
            0,
            &format!("b-tree deeper than {MAX_DEPTH} levels"),
        ));
    }
    let page = db.page(number)?;
    let usable = &page.data[..db.header.usable_size];
    let hdr = if number == 1 { 100 } else { 0 };
    let kind = usable[hdr];
    let header_len = match kind {
        INTERIOR_TABLE => 12,
        LEAF_TABLE => 8,
        other => {
            return Err(page.corrupt(
                hdr,
                &format!("page type {other} is not a table b-tree page"),
            ))
        }
    };
    let cells = usize::from(be16(usable, hdr + 3));
    let array = hdr + header_len;
    let array_end = array + 2 * cells;
    if array_end > usable.len() {
        return Err(page.corrupt(
            hdr + 3,
            &format!("{cells} cell pointers do not fit in the page"),
        ));
    }
    for i in 0..cells {
        let at = usize::from(be16(usable, array + 2 * i));
        if at < array_end || at >= usable.len() {
            return Err(page.corrupt(
                array + 2 * i,
                &format!("cell {i} pointer {at} outside the cell content area"),
            ));
        }
        if kind == INTERIOR_TABLE {
            let child =
                be32(usable, at).ok_or_else(|| page.corrupt(at, "interior cell truncated"))?;
            // The rowid key is only needed for searching; check it is well-formed.
            varint(usable, at + 4)
                .ok_or_else(|| page.corrupt(at + 4, "interior cell key truncated"))?;
            walk(db, child, depth + 1, row)?;
        } else {
            let (rowid, payload) = leaf_cell(db, &page, usable, at)?;
            row(rowid, payload)?;
        }
    }
    if kind == INTERIOR_TABLE {
        // In range: the header length check above covered hdr + 12.
        let right = be32(usable, hdr + 8).unwrap_or(0);
        walk(db, right, depth + 1, row)?;
    }
    Ok(())
}

/// Parses the leaf cell at `at`: its rowid and its whole payload.
fn leaf_cell<'a>(
    db: &mut Database<'a>,
    page: &Page<'a>,
    usable: &'a [u8],
    at: usize,
) -> Result<(i64, Payload<'a>), PackageError> {
    let (size, n1) =
        varint(usable, at).ok_or_else(|| page.corrupt(at, "cell payload size truncated"))?;
    let (rowid, n2) =
        varint(usable, at + n1).ok_or_else(|| page.corrupt(at + n1, "cell rowid truncated"))?;
    let rowid = rowid as i64;
    let start = at + n1 + n2;
    let u = usable.len() as u64;
    // How much of the payload is stored on the page (SQLite's formula for table leaves).
    let max_local = u - 35;
    let min_local = (u - 12) * 32 / 255 - 23;
    let local = if size <= max_local {
        size
    } else {
        let k = min_local + (size - min_local) % (u - 4);
        if k <= max_local {
            k
        } else {
            min_local
        }
    } as usize;
    let Some(local_bytes) = usable.get(start..start + local) else {
        return Err(page.corrupt(
            at,
            &format!("local payload of {local} bytes overruns the page"),
        ));
    };
    if size == local as u64 {
        return Ok((rowid, Ok(Cow::Borrowed(local_bytes))));
    }
    let Some(first) = be32(usable, start + local) else {
        return Err(page.corrupt(start + local, "overflow page pointer overruns the page"));
    };
    Ok((
        rowid,
        overflow(db, size, local_bytes, first).map(Cow::Owned),
    ))
}

/// Reassembles a spilled payload: the local part, then the content of each overflow page
/// (4-byte next-page pointer, then `usable - 4` bytes) until `size` bytes are collected.
fn overflow(
    db: &mut Database<'_>,
    size: u64,
    local: &[u8],
    first: u32,
) -> Result<Vec<u8>, PackageError> {
    let limit = db.input_len() as u64;
    if size > limit {
        return Err(PackageError::TooLarge {
            database: "SQLite database",
            what: "row payload size",
            size,
            limit,
        });
    }
    // Bounded by the input length just above.
    let size = size as usize;
    let mut payload = Vec::with_capacity(size);
    payload.extend_from_slice(local);
    let mut next = first;
    // Each turn consumes a page never visited before, so the loop ends.
    while payload.len() < size {
        if next == 0 {
            return Err(super::corrupt(
                "overflow chain",
                0,
                &format!("chain ends after {} of {size} payload bytes", payload.len()),
            ));
        }
        let page = db.page(next)?;
        let usable = &page.data[..db.header.usable_size];
        let take = (size - payload.len()).min(usable.len() - 4);
        payload.extend_from_slice(&usable[4..4 + take]);
        next = be32(usable, 0).unwrap_or(0);
    }
    Ok(payload)
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::super::build::Builder;
    use super::*;

    /// Collects (rowid, payload or error text) of every row under `root`.
    type Row = (i64, Result<Vec<u8>, String>);

    fn rows(file: &[u8], root: u32) -> Result<Vec<Row>, PackageError> {
        let mut db = Database::open(file, None)?;
        let mut out = Vec::new();
        walk_table(&mut db, root, &mut |rowid, payload| {
            out.push((
                rowid,
                payload.map(|p| p.into_owned()).map_err(|e| e.to_string()),
            ));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn rows_come_in_rowid_order_with_overflow_reassembled() {
        let records: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; 100 + 300 * usize::from(i)])
            .collect();
        let file = Builder::single_table(1024, "t", &records, 1);
        let got = rows(&file, 2).unwrap();
        assert_eq!(got.len(), 10);
        for (i, (rowid, payload)) in got.into_iter().enumerate() {
            assert_eq!(rowid, i as i64 + 1);
            assert_eq!(payload.unwrap(), records[i]);
        }
    }

    #[test]
    fn depth_is_bounded() {
        // Interior pages with no cells, each pointing right at the next: a chain deeper
        // than SQLite allows.
        let mut b = Builder::new(512);
        b.alloc();
        for n in 2..=(MAX_DEPTH as u32 + 3) {
            b.alloc();
            b.write_page(n, INTERIOR_TABLE, &[], n + 1);
        }
        let last = b.alloc();
        b.write_page(last, LEAF_TABLE, &[], 0);
        let file = b.finish();
        let err = rows(&file, 2).unwrap_err().to_string();
        assert!(err.contains("deeper"), "{err}");
        // A shallower chain of the same kind is fine.
        assert!(rows(&file, 5).unwrap().is_empty());
    }

    #[test]
    fn bad_cells_and_chains() {
        let records = vec![vec![7u8; 3000]];
        let file = Builder::single_table(1024, "t", &records, 1);
        // Cell pointer of the leaf (page 3) aimed into its own header.
        let mut bad = file.clone();
        bad[2048 + 8..2048 + 10].copy_from_slice(&2u16.to_be_bytes());
        let err = rows(&bad, 2).unwrap_err().to_string();
        assert!(err.contains("page 3") && err.contains("cell 0"), "{err}");
        // Overflow chain cut short: the row fails, the walk does not.
        let mut cut = file.clone();
        cut[3 * 1024..3 * 1024 + 4].copy_from_slice(&0u32.to_be_bytes());
        let got = rows(&cut, 2).unwrap();
        assert!(
            got[0].1.as_ref().unwrap_err().contains("chain ends"),
            "{got:?}"
        );
        // Overflow chain pointing back at the tree: a revisit.
        let mut looped = file.clone();
        looped[3 * 1024..3 * 1024 + 4].copy_from_slice(&2u32.to_be_bytes());
        let got = rows(&looped, 2).unwrap();
        assert!(
            got[0].1.as_ref().unwrap_err().contains("reached twice"),
            "{got:?}"
        );
        // An index page where a table page belongs.
        let mut index = file;
        index[2048] = 10;
        assert!(rows(&index, 2).is_err());
    }
}
