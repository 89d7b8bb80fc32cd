//! A small registry hive (REGF) writer for tests, written from the format description
//! and independent of the reader under test: its output is checked by hivex
//! (`hivexget`), so a test's expected values are both what it wrote and what an
//! independent reader finds.
//!
//! One hive bin holds every cell; keys with more than 16 subkeys get an `ri` index of
//! alternating `lf`/`li` leaves, smaller ones an `lh`; values over 16344 bytes get a
//! big-data (`db`) chain.

pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BE: u32 = 5;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// A key to write: its name, values (name, type, raw data) and children.
#[derive(Debug, Clone, Default)]
pub struct Key {
    pub name: String,
    pub values: Vec<(String, u32, Vec<u8>)>,
    pub children: Vec<Key>,
}

pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

pub fn multi_sz(items: &[&str]) -> Vec<u8> {
    let mut out: Vec<u8> = items.iter().flat_map(|s| utf16z(s)).collect();
    out.extend([0, 0]);
    out
}

impl Key {
    pub fn new(name: &str) -> Key {
        Key {
            name: name.into(),
            ..Key::default()
        }
    }

    /// The child at `path` (backslash-separated), created on the way.
    pub fn at(&mut self, path: &str) -> &mut Key {
        let mut k = self;
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            let i = match k.children.iter().position(|c| c.name == part) {
                Some(i) => i,
                None => {
                    k.children.push(Key::new(part));
                    k.children.len() - 1
                }
            };
            k = &mut k.children[i];
        }
        k
    }

    pub fn set(&mut self, name: &str, kind: u32, data: Vec<u8>) -> &mut Key {
        self.values.retain(|v| v.0 != name);
        self.values.push((name.into(), kind, data));
        self
    }

    pub fn sz(&mut self, name: &str, s: &str) -> &mut Key {
        self.set(name, REG_SZ, utf16z(s))
    }

    pub fn dword(&mut self, name: &str, d: u32) -> &mut Key {
        self.set(name, REG_DWORD, d.to_le_bytes().to_vec())
    }
}

struct Writer {
    bins: Vec<u8>,
    sk: u32,
}

/// Name bytes and whether they are "compressed" (Latin-1; used for ASCII names).
fn name_bytes(name: &str) -> (Vec<u8>, bool) {
    if name.is_ascii() {
        (name.as_bytes().to_vec(), true)
    } else {
        (
            name.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            false,
        )
    }
}

fn lh_hash(name: &str) -> u32 {
    name.to_uppercase()
        .encode_utf16()
        .fold(0u32, |h, c| h.wrapping_mul(37).wrapping_add(u32::from(c)))
}

impl Writer {
    /// Appends an allocated cell with `data`, returning its offset.
    fn alloc(&mut self, data: &[u8]) -> u32 {
        let off = self.bins.len() as u32;
        let size = (4 + data.len()).div_ceil(8) * 8;
        self.bins.extend((-(size as i32)).to_le_bytes());
        self.bins.extend(data);
        self.bins.resize(off as usize + size, 0);
        off
    }

    fn patch32(&mut self, cell: u32, at: usize, v: u32) {
        let p = cell as usize + 4 + at;
        self.bins[p..p + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn key(&mut self, k: &Key, parent: u32, root: bool) -> u32 {
        let (name, comp) = name_bytes(&k.name);
        let mut nk = vec![0u8; 76];
        nk[..2].copy_from_slice(b"nk");
        let flags: u16 = if comp { 0x20 } else { 0 } | if root { 0x0c } else { 0 };
        nk[2..4].copy_from_slice(&flags.to_le_bytes());
        nk[16..20].copy_from_slice(&parent.to_le_bytes());
        nk[20..24].copy_from_slice(&(k.children.len() as u32).to_le_bytes());
        nk[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[36..40].copy_from_slice(&(k.values.len() as u32).to_le_bytes());
        nk[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[44..48].copy_from_slice(&self.sk.to_le_bytes());
        nk[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
        nk.extend(&name);
        let me = self.alloc(&nk);

        let mut children = k.children.clone();
        children.sort_by_key(|c| c.name.to_uppercase());
        let offs: Vec<(u32, String)> = children
            .iter()
            .map(|c| (self.key(c, me, false), c.name.clone()))
            .collect();
        if !offs.is_empty() {
            let list = if offs.len() <= 16 {
                self.leaf(b"lh", &offs)
            } else {
                let leaves: Vec<u32> = offs
                    .chunks(16)
                    .enumerate()
                    .map(|(i, c)| self.leaf(if i % 2 == 0 { b"lf" } else { b"li" }, c))
                    .collect();
                let mut ri = b"ri".to_vec();
                ri.extend((leaves.len() as u16).to_le_bytes());
                for l in leaves {
                    ri.extend(l.to_le_bytes());
                }
                self.alloc(&ri)
            };
            self.patch32(me, 28, list);
        }
        if !k.values.is_empty() {
            let vks: Vec<u32> = k.values.iter().map(|v| self.value(v)).collect();
            let list: Vec<u8> = vks.iter().flat_map(|o| o.to_le_bytes()).collect();
            let l = self.alloc(&list);
            self.patch32(me, 40, l);
        }
        me
    }

    fn leaf(&mut self, sig: &[u8; 2], offs: &[(u32, String)]) -> u32 {
        let mut b = sig.to_vec();
        b.extend((offs.len() as u16).to_le_bytes());
        for (o, name) in offs {
            b.extend(o.to_le_bytes());
            match sig {
                b"lh" => b.extend(lh_hash(name).to_le_bytes()),
                b"lf" => {
                    let mut hint = [0u8; 4];
                    for (i, c) in name.bytes().take(4).enumerate() {
                        hint[i] = c;
                    }
                    b.extend(hint);
                }
                _ => {}
            }
        }
        self.alloc(&b)
    }

    fn value(&mut self, (name, kind, data): &(String, u32, Vec<u8>)) -> u32 {
        let (nb, comp) = name_bytes(name);
        let mut vk = vec![0u8; 20];
        vk[..2].copy_from_slice(b"vk");
        vk[2..4].copy_from_slice(&(nb.len() as u16).to_le_bytes());
        vk[12..16].copy_from_slice(&kind.to_le_bytes());
        vk[16..18].copy_from_slice(&u16::from(comp).to_le_bytes());
        if data.len() <= 4 {
            vk[4..8].copy_from_slice(&(data.len() as u32 | 0x8000_0000).to_le_bytes());
            vk[8..8 + data.len()].copy_from_slice(data);
        } else {
            vk[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
            let at = if data.len() > 16344 {
                let segs: Vec<u32> = data.chunks(16344).map(|c| self.alloc(c)).collect();
                let list: Vec<u8> = segs.iter().flat_map(|o| o.to_le_bytes()).collect();
                let l = self.alloc(&list);
                let mut db = b"db".to_vec();
                db.extend((segs.len() as u16).to_le_bytes());
                db.extend(l.to_le_bytes());
                self.alloc(&db)
            } else {
                self.alloc(data)
            };
            vk[8..12].copy_from_slice(&at.to_le_bytes());
        }
        vk.extend(&nb);
        self.alloc(&vk)
    }
}

/// The base block's XOR checksum.
pub fn checksum(b: &[u8]) -> u32 {
    let x = (0..127).fold(0u32, |a, i| {
        a ^ u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
    });
    match x {
        0xffff_ffff => 0xffff_fffe,
        0 => 1,
        x => x,
    }
}

/// The whole hive file for `root`, with sequence numbers `seq` (equal: clean).
pub fn build(root: &Key, seq: (u32, u32)) -> Vec<u8> {
    let mut w = Writer {
        bins: vec![0u8; 32],
        sk: 0,
    };
    // One shared security descriptor (owner/group/ACLs absent), linked to itself.
    let mut sk = b"sk\0\0".to_vec();
    sk.extend([0u8; 12]);
    sk.extend(20u32.to_le_bytes());
    sk.extend([1, 0, 0x00, 0x80]);
    sk.extend([0u8; 16]);
    let sk_off = w.alloc(&sk);
    w.patch32(sk_off, 4, sk_off);
    w.patch32(sk_off, 8, sk_off);
    w.patch32(sk_off, 12, 1);
    w.sk = sk_off;
    let root_off = w.key(root, 0, true);
    // The rest of the bin is one free cell, so the bin is a whole chain of cells.
    let used = w.bins.len();
    let size = used.div_ceil(4096).max(1) * 4096;
    let size = if size - used < 8 { size + 4096 } else { size };
    let free = (size - used) as i32;
    w.bins.extend(free.to_le_bytes());
    w.bins.resize(size, 0);
    w.bins[..4].copy_from_slice(b"hbin");
    w.bins[8..12].copy_from_slice(&(size as u32).to_le_bytes());

    let mut base = vec![0u8; 4096];
    base[..4].copy_from_slice(b"regf");
    base[4..8].copy_from_slice(&seq.0.to_le_bytes());
    base[8..12].copy_from_slice(&seq.1.to_le_bytes());
    base[20..24].copy_from_slice(&1u32.to_le_bytes());
    base[24..28].copy_from_slice(&5u32.to_le_bytes());
    base[32..36].copy_from_slice(&1u32.to_le_bytes());
    base[36..40].copy_from_slice(&root_off.to_le_bytes());
    base[40..44].copy_from_slice(&(size as u32).to_le_bytes());
    base[44..48].copy_from_slice(&1u32.to_le_bytes());
    let c = checksum(&base);
    base[508..512].copy_from_slice(&c.to_le_bytes());
    base.extend(w.bins);
    base
}

/// Marvin32 with the registry's seed (for writing transaction log entries), as the
/// 64-bit value `p1:p0` stored in a log entry's hash fields.
pub fn marvin32(data: &[u8]) -> u64 {
    let (mut lo, mut hi) = (0x7A4E_55C5u32, 0x82EF_4D88u32);
    let mix = |lo: &mut u32, hi: &mut u32| {
        *hi ^= *lo;
        *lo = lo.rotate_left(20).wrapping_add(*hi);
        *hi = hi.rotate_left(9) ^ *lo;
        *lo = lo.rotate_left(27).wrapping_add(*hi);
        *hi = hi.rotate_left(19);
    };
    let mut i = 0;
    while i + 4 <= data.len() {
        lo = lo.wrapping_add(u32::from_le_bytes(data[i..i + 4].try_into().unwrap()));
        mix(&mut lo, &mut hi);
        i += 4;
    }
    let mut tail = [0u8; 4];
    let rest = &data[i..];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    lo = lo.wrapping_add(u32::from_le_bytes(tail));
    mix(&mut lo, &mut hi);
    mix(&mut lo, &mut hi);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// A new-format transaction log (`.LOG1`) holding one entry with sequence number `seq`
/// that turns the hive `old` into `new` (same size): the 4 KiB pages that differ.
pub fn log_for(old: &[u8], new: &[u8], seq: u32) -> Vec<u8> {
    let mut base = new[..4096].to_vec();
    base[4..8].copy_from_slice(&seq.to_le_bytes());
    base[8..12].copy_from_slice(&seq.to_le_bytes());
    base[28..32].copy_from_slice(&6u32.to_le_bytes()); // file type: transaction log
    let c = checksum(&base);
    base[508..512].copy_from_slice(&c.to_le_bytes());
    let mut log = base[..512].to_vec();
    let pages: Vec<usize> = (4096..new.len())
        .step_by(4096)
        .filter(|&p| old[p..p + 4096] != new[p..p + 4096])
        .collect();
    let mut body = Vec::new();
    for &p in &pages {
        body.extend(((p - 4096) as u32).to_le_bytes());
        body.extend(4096u32.to_le_bytes());
    }
    for &p in &pages {
        body.extend(&new[p..p + 4096]);
    }
    let size = (40 + body.len()).div_ceil(512) * 512;
    body.resize(size - 40, 0);
    let mut e = b"HvLE".to_vec();
    e.extend((size as u32).to_le_bytes());
    e.extend(0u32.to_le_bytes());
    e.extend(seq.to_le_bytes());
    e.extend(((new.len() - 4096) as u32).to_le_bytes());
    e.extend((pages.len() as u32).to_le_bytes());
    e.extend(marvin32(&body).to_le_bytes());
    let h2 = marvin32(&e[..32]);
    e.extend(h2.to_le_bytes());
    e.extend(body);
    log.extend(e);
    log
}
