//! rpm's Berkeley DB database, `/var/lib/rpm/Packages` (rpm < 4.16: RHEL/CentOS <= 8,
//! Fedora <= 32, SLES <= 15): a Berkeley DB *hash* file whose keys are package instance
//! numbers and whose values are rpm headers.
//!
//! Only what rpm's files use is read: page 0 is the hash metadata page (magic 0x061561,
//! page size, last page, `max_bucket`, the `spares` table that maps buckets to pages);
//! each bucket is a chain of hash pages (26-byte page header, then an array of 16-bit item
//! offsets, items alternating key and data); an item is stored on the page (`H_KEYDATA`)
//! or, when large (every real header), in a chain of overflow pages (`H_OFFPAGE`). The
//! file is in its creator's byte order, which the magic reveals.

use std::collections::HashSet;

use super::{parse_rpm_header, sort_applications, PackageError, PackageList, MAX_PACKAGES};

const DB: &str = "Berkeley DB rpmdb";

const HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER_LEN: usize = 26;

const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;

const H_KEYDATA: u8 = 1;
const H_DUPLICATE: u8 = 2;
const H_OFFPAGE: u8 = 3;
const H_OFFDUP: u8 = 4;

/// A Berkeley DB hash file opened over its bytes.
struct HashDb<'a> {
    bytes: &'a [u8],
    big_endian: bool,
    page_size: usize,
    /// Page header length: 26 bytes, or 32 when pages carry a checksum (2 unused bytes
    /// and a 4-byte checksum follow the header; not verified).
    header_len: usize,
    /// Number of pages actually present (bounded by the file length).
    pages: u32,
    visited: HashSet<u32>,
}

/// Lists the packages of a Berkeley DB `Packages` file, sorted by name then version.
///
/// A damaged file structure (metadata, bucket chains) is an error; a record whose header
/// or overflow chain is damaged is skipped with a warning naming its instance number,
/// as `rpm -qa` does. Encrypted databases are refused as unsupported (rpm never enabled
/// encryption); page checksums are skipped over, not verified.
pub fn parse_rpmdb_bdb(bytes: &[u8]) -> Result<PackageList, PackageError> {
    let mut db = HashDb::open(bytes)?;
    let meta = db.meta()?;
    let mut list = PackageList::default();
    for bucket in 0..=meta.max_bucket {
        let spare = *meta
            .spares
            .get(ceil_log2(u64::from(bucket) + 1))
            .ok_or_else(|| {
                corrupt(
                    "hash metadata",
                    96,
                    &format!("bucket {bucket} has no spares entry"),
                )
            })?;
        let mut next = bucket.checked_add(spare).ok_or_else(|| {
            corrupt(
                "hash metadata",
                96,
                &format!("bucket {bucket} maps past page 2^32"),
            )
        })?;
        // Each turn visits a page never visited before, so the chain ends.
        while next != 0 {
            let page = db.page(next)?;
            let kind = page[25];
            if kind != P_HASH && kind != P_HASH_UNSORTED {
                return Err(db.corrupt_page(
                    next,
                    25,
                    &format!("bucket {bucket} page has type {kind}, not a hash page"),
                ));
            }
            db.read_items(next, page, &mut list)?;
            next = db.u32_at(page, 16);
        }
    }
    sort_applications(&mut list.applications);
    Ok(list)
}

/// Berkeley DB's `__db_log2`: the smallest `i` with `2^i >= n`, which picks the `spares`
/// entry of a bucket.
fn ceil_log2(n: u64) -> usize {
    if n <= 1 {
        0
    } else {
        (64 - (n - 1).leading_zeros()) as usize
    }
}

/// The hash metadata fields we use.
struct Meta {
    max_bucket: u32,
    spares: Vec<u32>,
}

impl<'a> HashDb<'a> {
    fn open(bytes: &'a [u8]) -> Result<HashDb<'a>, PackageError> {
        let head = bytes
            .get(..512)
            .ok_or_else(|| corrupt("hash metadata", 0, "file shorter than a metadata page"))?;
        let magic = [head[12], head[13], head[14], head[15]];
        let big_endian = if u32::from_le_bytes(magic) == HASH_MAGIC {
            false
        } else if u32::from_be_bytes(magic) == HASH_MAGIC {
            true
        } else {
            return Err(
                if u32::from_le_bytes(magic) == 0x0005_3162
                    || u32::from_be_bytes(magic) == 0x0005_3162
                {
                    PackageError::Unsupported(
                        "Berkeley DB rpmdb is a btree, not a hash database".to_string(),
                    )
                } else {
                    corrupt(
                        "hash metadata",
                        12,
                        "not a Berkeley DB hash database (bad magic)",
                    )
                },
            );
        };
        let mut db = HashDb {
            bytes,
            big_endian,
            page_size: 512,
            header_len: PAGE_HEADER_LEN,
            pages: 1,
            visited: HashSet::new(),
        };
        let page_size = db.u32_at(head, 20) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(
                "hash metadata",
                20,
                &format!("invalid page size {page_size}"),
            ));
        }
        db.page_size = page_size;
        db.pages = u32::try_from(bytes.len() / page_size).unwrap_or(u32::MAX);
        Ok(db)
    }

    fn meta(&mut self) -> Result<Meta, PackageError> {
        let page = self.page(0)?;
        let version = self.u32_at(page, 16);
        if !(7..=10).contains(&version) {
            return Err(PackageError::Unsupported(format!(
                "Berkeley DB hash version {version}"
            )));
        }
        if page[24] != 0 {
            return Err(PackageError::Unsupported(
                "encrypted Berkeley DB rpmdb".to_string(),
            ));
        }
        if page[25] != P_HASHMETA {
            return Err(corrupt(
                "hash metadata",
                25,
                &format!("page 0 has type {}, not hash metadata", page[25]),
            ));
        }
        if page[26] & 0x01 != 0 {
            self.header_len = PAGE_HEADER_LEN + 6;
        }
        let max_bucket = self.u32_at(page, 72);
        // Every bucket needs a page of its own: more buckets than pages is corruption
        // (and would otherwise drive a 2^32-turn loop).
        if max_bucket >= self.pages {
            return Err(corrupt(
                "hash metadata",
                72,
                &format!(
                    "max bucket {max_bucket} but the file has {} pages",
                    self.pages
                ),
            ));
        }
        let spares = (0..32).map(|i| self.u32_at(page, 96 + 4 * i)).collect();
        Ok(Meta { max_bucket, spares })
    }

    /// Page `number`, refusing one already visited (a cycle or a page shared by two
    /// chains, both corruption).
    fn page(&mut self, number: u32) -> Result<&'a [u8], PackageError> {
        if number >= self.pages {
            return Err(corrupt(
                "page reference",
                0,
                &format!("page {number} is beyond the file's {} pages", self.pages),
            ));
        }
        if !self.visited.insert(number) {
            return Err(self.corrupt_page(number, 0, "page reached twice (cycle or shared page)"));
        }
        let start = number as usize * self.page_size;
        let page = &self.bytes[start..start + self.page_size];
        if number != 0 && self.u32_at(page, 8) != number {
            return Err(self.corrupt_page(
                number,
                8,
                &format!("page header says page {}", self.u32_at(page, 8)),
            ));
        }
        Ok(page)
    }

    /// Reads the key/data pairs of one hash page into `list`.
    fn read_items(
        &mut self,
        number: u32,
        page: &'a [u8],
        list: &mut PackageList,
    ) -> Result<(), PackageError> {
        let entries = usize::from(self.u16_at(page, 20));
        let items_start = self.header_len;
        if items_start + 2 * entries > self.page_size || entries % 2 != 0 {
            return Err(self.corrupt_page(
                number,
                20,
                &format!("{entries} items do not fit or are unpaired"),
            ));
        }
        let offsets: Vec<usize> = (0..entries)
            .map(|i| usize::from(self.u16_at(page, items_start + 2 * i)))
            .collect();
        // Items are packed downward from the end of the page: item i spans from its offset
        // to the previous item's offset (or the page end).
        let page_size = self.page_size;
        let item = |i: usize| -> Result<&'a [u8], PackageError> {
            let start = offsets[i];
            let end = if i == 0 { page_size } else { offsets[i - 1] };
            if start < items_start + 2 * entries || start >= end || end > page_size {
                return Err(page_error(
                    page_size,
                    number,
                    items_start + 2 * i,
                    &format!("item {i} spans {start}..{end}, outside the item area"),
                ));
            }
            Ok(&page[start..end])
        };
        for pair in 0..entries / 2 {
            let key = item(2 * pair)?;
            let data = item(2 * pair + 1)?;
            // rpm's keys are 4-byte instance numbers stored on the page; key 0 holds the
            // next free instance number, not a package.
            let instance = match key {
                [H_KEYDATA, k @ ..] if k.len() == 4 => self.u32_at(k, 0),
                _ => {
                    list.warn(format!(
                        "{DB}: page {number} item {}: key is not an instance number",
                        2 * pair
                    ));
                    continue;
                }
            };
            if instance == 0 {
                continue;
            }
            let header = match data.first() {
                Some(&H_KEYDATA) => Ok(std::borrow::Cow::Borrowed(&data[1..])),
                Some(&H_OFFPAGE) if data.len() >= 12 => {
                    let (first, len) = (self.u32_at(data, 4), self.u32_at(data, 8));
                    self.overflow(first, len).map(std::borrow::Cow::Owned)
                }
                Some(&t @ (H_DUPLICATE | H_OFFDUP)) => {
                    Err(format!("duplicate-data item type {t}, not an rpm header"))
                }
                other => Err(format!("unknown data item type {other:?}")),
            };
            match header.and_then(|h| parse_rpm_header(&h).map_err(|e| e.to_string())) {
                Ok(app) => {
                    if list.applications.len() >= MAX_PACKAGES {
                        return Err(PackageError::TooLarge {
                            database: DB,
                            what: "number of packages",
                            size: list.applications.len() as u64 + 1,
                            limit: MAX_PACKAGES as u64,
                        });
                    }
                    list.applications.push(app);
                }
                Err(e) => list.warn(format!("{DB}: package instance {instance} skipped: {e}")),
            }
        }
        Ok(())
    }

    /// Reassembles an overflow item of `len` bytes starting at page `first`. Errors are
    /// strings: they cost one record, not the database.
    fn overflow(&mut self, first: u32, len: u32) -> Result<Vec<u8>, String> {
        let len = len as usize;
        if len > self.bytes.len() {
            return Err(format!(
                "overflow item of {len} bytes is larger than the file"
            ));
        }
        let mut out = Vec::with_capacity(len);
        let mut next = first;
        // Each turn visits a new page, so the loop ends.
        while out.len() < len {
            if next == 0 {
                return Err(format!(
                    "overflow chain ends after {} of {len} bytes",
                    out.len()
                ));
            }
            let page = self.page(next).map_err(|e| e.to_string())?;
            if page[25] != P_OVERFLOW {
                return Err(format!("overflow page {next} has type {}", page[25]));
            }
            let used = usize::from(self.u16_at(page, 22));
            let chunk = page
                .get(self.header_len..self.header_len + used)
                .ok_or_else(|| format!("overflow page {next} claims {used} bytes"))?;
            let take = chunk.len().min(len - out.len());
            out.extend_from_slice(&chunk[..take]);
            next = self.u32_at(page, 16);
        }
        Ok(out)
    }

    fn u16_at(&self, bytes: &[u8], at: usize) -> u16 {
        let b = [bytes[at], bytes[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    /// A u32 in the file's byte order; callers pass offsets inside a header they checked.
    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn corrupt_page(&self, number: u32, offset: usize, message: &str) -> PackageError {
        page_error(self.page_size, number, offset, message)
    }
}

/// An error located in page `number` at `offset` within it.
fn page_error(page_size: usize, number: u32, offset: usize, message: &str) -> PackageError {
    corrupt(
        &format!("page {number}"),
        u64::from(number)
            .saturating_mul(page_size as u64)
            .saturating_add(offset as u64),
        message,
    )
}

fn corrupt(structure: &str, offset: u64, message: &str) -> PackageError {
    PackageError::Corrupt {
        database: DB,
        structure: structure.to_string(),
        offset,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpm_header::build::package;
    use super::*;

    /// Builds Berkeley DB hash files per the on-disk format, in either byte order, with
    /// or without page checksums (the integration tests use files made by `db5.3_load`).
    struct Builder {
        big_endian: bool,
        checksum: bool,
        pages: Vec<Vec<u8>>,
    }

    const PAGE: usize = 512;

    impl Builder {
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn header_len(&self) -> usize {
            if self.checksum {
                32
            } else {
                26
            }
        }

        fn alloc(&mut self, kind: u8, next: u32) -> u32 {
            let number = self.pages.len() as u32;
            let mut page = vec![0u8; PAGE];
            page[8..12].copy_from_slice(&self.u32(number));
            page[16..20].copy_from_slice(&self.u32(next));
            page[25] = kind;
            self.pages.push(page);
            number
        }

        /// A hash page holding `items` (alternating key, data), packed from the end.
        fn hash_page(&mut self, next: u32, items: &[Vec<u8>]) -> u32 {
            let number = self.alloc(P_HASH, next);
            let (count, hl) = (self.u16(items.len() as u16), self.header_len());
            let mut offsets = Vec::new();
            let mut end = PAGE;
            for item in items {
                end -= item.len();
                offsets.push(end);
            }
            let encoded: Vec<[u8; 2]> = offsets.iter().map(|&o| self.u16(o as u16)).collect();
            let page = &mut self.pages[number as usize];
            page[20..22].copy_from_slice(&count);
            for (i, item) in items.iter().enumerate() {
                page[offsets[i]..offsets[i] + item.len()].copy_from_slice(item);
                page[hl + 2 * i..hl + 2 * i + 2].copy_from_slice(&encoded[i]);
            }
            number
        }

        /// Stores `data` in a chain of overflow pages; returns the `H_OFFPAGE` item.
        fn offpage(&mut self, data: &[u8]) -> Vec<u8> {
            let hl = self.header_len();
            let chunks: Vec<&[u8]> = data.chunks(PAGE - hl).collect();
            let first = self.pages.len() as u32;
            for (i, chunk) in chunks.iter().enumerate() {
                let next = if i + 1 < chunks.len() {
                    first + i as u32 + 1
                } else {
                    0
                };
                let n = self.alloc(P_OVERFLOW, next) as usize;
                let used = self.u16(chunk.len() as u16);
                self.pages[n][22..24].copy_from_slice(&used);
                self.pages[n][hl..hl + chunk.len()].copy_from_slice(chunk);
            }
            let mut item = vec![H_OFFPAGE, 0, 0, 0];
            item.extend(self.u32(first));
            item.extend(self.u32(data.len() as u32));
            item
        }

        fn inline(bytes: &[u8]) -> Vec<u8> {
            let mut item = vec![H_KEYDATA];
            item.extend_from_slice(bytes);
            item
        }

        /// Two buckets (pages 1 and 2); bucket 0 continues on a third hash page; one
        /// header inline, two in overflow chains, plus rpm's key 0.
        fn rpmdb(big_endian: bool, checksum: bool) -> Vec<u8> {
            let mut b = Builder {
                big_endian,
                checksum,
                pages: Vec::new(),
            };
            b.alloc(P_HASHMETA, 0);
            b.alloc(P_HASH, 0);
            b.alloc(P_HASH, 0);
            let small = package("small", None, "1", "1");
            let big1 = package("big-one", Some(3), &"9".repeat(700), "2");
            let big2 = package("big-two", None, "2.0", &"r".repeat(1200));
            let key = |b: &Builder, n: u32| Builder::inline(&b.u32(n));
            let (off1, off2) = (b.offpage(&big1), b.offpage(&big2));
            let k0 = key(&b, 0);
            let max = Builder::inline(&b.u32(4));
            let (k1, k2, k3) = (key(&b, 1), key(&b, 2), key(&b, 3));
            let third = b.hash_page(0, &[k2, off1]);
            let page1 = b.hash_page(third, &[k0, max, k1, Builder::inline(&small)]);
            let page2 = b.hash_page(0, &[k3, off2]);
            // Move the bucket pages into slots 1 and 2, fixing their page numbers.
            for (from, to) in [(page1, 1usize), (page2, 2)] {
                let mut page = b.pages[from as usize].clone();
                page[8..12].copy_from_slice(&b.u32(to as u32));
                b.pages[to] = page;
            }
            let last = b.pages.len() as u32 - 1;
            let meta = &mut b.pages[0];
            let (magic, version, size, last, one) = (
                b_u32(big_endian, HASH_MAGIC),
                b_u32(big_endian, 9),
                b_u32(big_endian, PAGE as u32),
                b_u32(big_endian, last),
                b_u32(big_endian, 1),
            );
            meta[12..16].copy_from_slice(&magic);
            meta[16..20].copy_from_slice(&version);
            meta[20..24].copy_from_slice(&size);
            meta[26] = u8::from(checksum);
            meta[32..36].copy_from_slice(&last);
            meta[72..76].copy_from_slice(&one); // max_bucket
            meta[96..100].copy_from_slice(&one); // spares[0]: bucket 0 -> page 1
            meta[100..104].copy_from_slice(&one); // spares[1]: bucket 1 -> page 2
            b.pages.concat()
        }
    }

    fn b_u32(big_endian: bool, v: u32) -> [u8; 4] {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    #[test]
    fn reads_both_byte_orders_and_checksummed_pages() {
        for (big_endian, checksum) in [(false, false), (true, false), (false, true), (true, true)] {
            let file = Builder::rpmdb(big_endian, checksum);
            let list = parse_rpmdb_bdb(&file).unwrap();
            assert!(list.warnings.is_empty(), "{:?}", list.warnings);
            let names: Vec<_> = list.applications.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(
                names,
                ["big-one", "big-two", "small"],
                "be={big_endian} sum={checksum}"
            );
            assert_eq!(list.applications[0].version.len(), 700);
            assert_eq!(list.applications[0].epoch, Some(3));
            assert_eq!(
                list.applications[1].release.as_deref().map(str::len),
                Some(1200)
            );
        }
    }

    #[test]
    fn chains_and_bounds_are_checked() {
        let file = Builder::rpmdb(false, false);
        // Bucket 0's continuation page pointing back at bucket 0's first page.
        let third = (3..file.len() / PAGE)
            .find(|&n| file[n * PAGE + 25] == P_HASH && n > 2)
            .unwrap();
        let mut looped = file.clone();
        looped[third * PAGE + 16..third * PAGE + 20].copy_from_slice(&1u32.to_le_bytes());
        let err = parse_rpmdb_bdb(&looped).unwrap_err().to_string();
        assert!(err.contains("reached twice"), "{err}");
        // More buckets than pages.
        let mut buckets = file.clone();
        buckets[72..76].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse_rpmdb_bdb(&buckets).is_err());
        // An overflow chain cut short costs one package, with a warning.
        let first_overflow = (3..file.len() / PAGE)
            .find(|&n| file[n * PAGE + 25] == P_OVERFLOW)
            .unwrap();
        let mut cut = file.clone();
        cut[first_overflow * PAGE + 16..first_overflow * PAGE + 20]
            .copy_from_slice(&0u32.to_le_bytes());
        let list = parse_rpmdb_bdb(&cut).unwrap();
        assert_eq!(list.applications.len(), 2);
        assert!(
            list.warnings[0].contains("instance 2"),
            "{:?}",
            list.warnings
        );
        // Encrypted and btree databases are refused as unsupported.
        let mut encrypted = file.clone();
        encrypted[24] = 1;
        assert!(matches!(
            parse_rpmdb_bdb(&encrypted),
            Err(PackageError::Unsupported(_))
        ));
        let mut btree = file;
        btree[12..16].copy_from_slice(&0x0005_3162u32.to_le_bytes());
        assert!(matches!(
            parse_rpmdb_bdb(&btree),
            Err(PackageError::Unsupported(_))
        ));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_ok_or_error() {
        let file = Builder::rpmdb(true, false);
        for end in 0..file.len() {
            let _ = parse_rpmdb_bdb(&file[..end]);
        }
        for i in 0..file.len() {
            for v in [0x00, 0x01, 0x80, 0xff] {
                let mut b = file.clone();
                b[i] = v;
                let _ = parse_rpmdb_bdb(&b);
            }
        }
    }

    #[test]
    fn ceil_log2_matches_berkeley_db() {
        let got: Vec<usize> = (0..10).map(ceil_log2).collect();
        assert_eq!(got, [0, 0, 1, 2, 2, 3, 3, 3, 3, 4]);
    }
}
