//! Builds SQLite files by hand for tests, following the file-format document (an
//! independent check of the reader; the integration tests use files made by SQLite).

/// Builds SQLite files page by page: b-tree pages with their cells, payloads that do not
/// fit spilled into overflow pages, all per the file format.
pub struct Builder {
    pub page_size: usize,
    pub pages: Vec<Vec<u8>>,
}

impl Builder {
    pub fn new(page_size: usize) -> Builder {
        Builder {
            page_size,
            pages: Vec::new(),
        }
    }

    pub fn alloc(&mut self) -> u32 {
        self.pages.push(vec![0; self.page_size]);
        self.pages.len() as u32
    }

    pub fn varint(v: u64) -> Vec<u8> {
        // Values used here stay below 2^28: 1 to 4 bytes.
        let mut groups = vec![(v & 0x7f) as u8];
        let mut v = v >> 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        groups.reverse();
        groups
    }

    /// A record with the given serial types and bodies.
    pub fn record(columns: &[(u64, &[u8])]) -> Vec<u8> {
        let types: Vec<u8> = columns.iter().flat_map(|(t, _)| Self::varint(*t)).collect();
        let mut out = Self::varint(types.len() as u64 + 1);
        assert_eq!(out.len(), 1);
        out[0] = types.len() as u8 + 1;
        out.extend(types);
        for (_, body) in columns {
            out.extend_from_slice(body);
        }
        out
    }

    /// Encodes one leaf cell, spilling into fresh overflow pages when needed.
    pub fn leaf_cell(&mut self, rowid: u64, payload: &[u8]) -> Vec<u8> {
        let u = self.page_size as u64;
        let p = payload.len() as u64;
        let (max_local, min_local) = (u - 35, (u - 12) * 32 / 255 - 23);
        let local = if p <= max_local {
            p
        } else {
            let k = min_local + (p - min_local) % (u - 4);
            if k <= max_local {
                k
            } else {
                min_local
            }
        } as usize;
        let mut cell = Self::varint(p);
        cell.extend(Self::varint(rowid));
        cell.extend_from_slice(&payload[..local]);
        if local < payload.len() {
            let chunks: Vec<&[u8]> = payload[local..].chunks(self.page_size - 4).collect();
            let numbers: Vec<u32> = chunks.iter().map(|_| self.alloc()).collect();
            cell.extend(numbers[0].to_be_bytes());
            for (i, chunk) in chunks.iter().enumerate() {
                let page = &mut self.pages[numbers[i] as usize - 1];
                let next = numbers.get(i + 1).copied().unwrap_or(0);
                page[..4].copy_from_slice(&next.to_be_bytes());
                page[4..4 + chunk.len()].copy_from_slice(chunk);
            }
        }
        cell
    }

    /// Writes a b-tree page with the given cells (packed from the end of the page).
    pub fn write_page(&mut self, number: u32, kind: u8, cells: &[Vec<u8>], right: u32) {
        let hdr = if number == 1 { 100 } else { 0 };
        let page = &mut self.pages[number as usize - 1];
        page[hdr] = kind;
        page[hdr + 3..hdr + 5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
        let header_len = if kind == 5 { 12 } else { 8 };
        if kind == 5 {
            page[hdr + 8..hdr + 12].copy_from_slice(&right.to_be_bytes());
        }
        let mut end = page.len();
        for (i, cell) in cells.iter().enumerate() {
            end = end.checked_sub(cell.len()).unwrap_or_else(|| {
                panic!(
                    "cells overflow page {number}: {:?}",
                    cells.iter().map(Vec::len).collect::<Vec<_>>()
                )
            });
            assert!(
                end >= hdr + header_len + 2 * cells.len(),
                "test cells overflow page {number}"
            );
            page[end..end + cell.len()].copy_from_slice(cell);
            let ptr = hdr + header_len + 2 * i;
            page[ptr..ptr + 2].copy_from_slice(&(end as u16).to_be_bytes());
        }
        page[hdr + 5..hdr + 7].copy_from_slice(&(end as u16).to_be_bytes());
    }

    /// A database with one table `name` holding `records` (rowids 1..), `per_leaf` rows
    /// per leaf page under an interior root on page 2.
    pub fn single_table(
        page_size: usize,
        name: &str,
        records: &[Vec<u8>],
        per_leaf: usize,
    ) -> Vec<u8> {
        let mut b = Builder::new(page_size);
        b.alloc();
        let root = b.alloc();
        let sql = format!(
            "CREATE TABLE '{name}' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)"
        );
        let text = |s: &str| 13 + 2 * s.len() as u64;
        let schema = Self::record(&[
            (text("table"), b"table"),
            (text(name), name.as_bytes()),
            (text(name), name.as_bytes()),
            (1, &[root as u8]),
            (text(&sql), sql.as_bytes()),
        ]);
        let cell = b.leaf_cell(1, &schema);
        b.write_page(1, 13, &[cell], 0);
        let mut interior = Vec::new();
        let mut last: u32 = 0;
        for (chunk_no, chunk) in records.chunks(per_leaf).enumerate() {
            let leaf = b.alloc();
            let cells: Vec<Vec<u8>> = chunk
                .iter()
                .enumerate()
                .map(|(i, rec)| b.leaf_cell((chunk_no * per_leaf + i + 1) as u64, rec))
                .collect();
            b.write_page(leaf, 13, &cells, 0);
            if last != 0 {
                let mut c = last.to_be_bytes().to_vec();
                c.extend(Self::varint((chunk_no * per_leaf) as u64));
                interior.push(c);
            }
            last = leaf;
        }
        b.write_page(root, 5, &interior, last);
        b.finish()
    }

    /// Writes the 100-byte file header (WAL mode, UTF-8) and returns the file.
    pub fn finish(mut self) -> Vec<u8> {
        let n = self.pages.len() as u32;
        let raw = if self.page_size == 65536 {
            1
        } else {
            self.page_size as u16
        };
        let p1 = &mut self.pages[0];
        p1[..16].copy_from_slice(b"SQLite format 3\0");
        p1[16..18].copy_from_slice(&raw.to_be_bytes());
        p1[18] = 2;
        p1[19] = 2;
        p1[21] = 64;
        p1[22] = 32;
        p1[23] = 32;
        p1[24..28].copy_from_slice(&1u32.to_be_bytes());
        p1[28..32].copy_from_slice(&n.to_be_bytes());
        p1[44..48].copy_from_slice(&4u32.to_be_bytes());
        p1[56..60].copy_from_slice(&1u32.to_be_bytes());
        p1[92..96].copy_from_slice(&1u32.to_be_bytes());
        self.pages.concat()
    }

    /// The record of an rpm Packages row: `hnum` as NULL (rowid alias), then the blob.
    pub fn packages_row(header: &[u8]) -> Vec<u8> {
        Self::record(&[(0, &[]), (12 + 2 * header.len() as u64, header)])
    }

    /// A whole rpmdb: `per_leaf` headers per leaf page.
    pub fn rpmdb(page_size: usize, headers: &[Vec<u8>], per_leaf: usize) -> Vec<u8> {
        let records: Vec<Vec<u8>> = headers.iter().map(|h| Self::packages_row(h)).collect();
        Self::single_table(page_size, "Packages", &records, per_leaf)
    }
}
