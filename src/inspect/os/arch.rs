//! The guest's CPU architecture, from the ELF header of a system binary.
//!
//! Like libguestfs we look at binaries every Linux has rather than trusting a config
//! file; unlike it we parse the header ourselves instead of running `file`.

use super::context::Ctx;

/// Binaries tried in order, links followed inside the guest (`/bin` is often a link to
/// `usr/bin`). Small ones first: the whole file is read.
const CANDIDATES: &[&str] = &[
    "/bin/sh",
    "/bin/ls",
    "/usr/bin/ls",
    "/bin/echo",
    "/bin/rm",
    "/bin/bash",
];

/// Cap on one candidate's size; a binary above it is skipped rather than read.
const BINARY_LIMIT: u64 = 16 * 1024 * 1024;

/// Architecture name as libguestfs reports it (`x86_64`, `i386`, `aarch64`, ...), from
/// the first candidate that is an ELF file.
pub fn detect(ctx: &mut Ctx) -> Option<String> {
    for path in CANDIDATES {
        // Only regular files (after links) are worth reading; probing with metadata
        // first keeps a missing candidate silent.
        let Ok(meta) = ctx.guest.metadata(path) else {
            continue;
        };
        if meta.kind != crate::inspect::fs::FileKind::File || meta.size < 20 {
            continue;
        }
        if meta.size > BINARY_LIMIT {
            ctx.warn(format_args!(
                "{path}: {} bytes, too large to read for its ELF header",
                meta.size
            ));
            continue;
        }
        let Some(bytes) = ctx.read_bytes(path, BINARY_LIMIT) else {
            continue;
        };
        if let Some(arch) = elf_arch(&bytes) {
            return Some(arch.to_string());
        }
    }
    None
}

/// Architecture of an ELF image from its identification bytes and `e_machine`; `None`
/// when `bytes` is not ELF or the machine is unknown.
pub fn elf_arch(bytes: &[u8]) -> Option<&'static str> {
    let ident = bytes.get(..20)?;
    if &ident[..4] != b"\x7fELF" {
        return None;
    }
    let is64 = match ident[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match ident[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let m = [ident[18], ident[19]];
    let machine = if little {
        u16::from_le_bytes(m)
    } else {
        u16::from_be_bytes(m)
    };
    Some(match (machine, is64) {
        (3, _) => "i386",
        (62, _) => "x86_64",
        (40, _) => "arm",
        (183, _) => "aarch64",
        (8, false) => "mips",
        (8, true) => "mips64",
        (20, _) => "ppc",
        (21, _) if little => "ppc64le",
        (21, _) => "ppc64",
        (22, false) => "s390",
        (22, true) => "s390x",
        (2, _) => "sparc",
        (43, _) => "sparc64",
        (50, _) => "ia64",
        (243, false) => "riscv32",
        (243, true) => "riscv64",
        (258, _) => "loongarch64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        let m = if data == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn machines() {
        assert_eq!(elf_arch(&header(2, 1, 62)), Some("x86_64"));
        assert_eq!(elf_arch(&header(1, 1, 3)), Some("i386"));
        assert_eq!(elf_arch(&header(2, 1, 183)), Some("aarch64"));
        assert_eq!(elf_arch(&header(2, 1, 21)), Some("ppc64le"));
        assert_eq!(elf_arch(&header(2, 2, 21)), Some("ppc64"));
        assert_eq!(elf_arch(&header(2, 2, 22)), Some("s390x"));
        assert_eq!(elf_arch(&header(2, 1, 243)), Some("riscv64"));
        assert_eq!(elf_arch(&header(2, 1, 9999)), None);
        assert_eq!(elf_arch(&header(3, 1, 62)), None);
        assert_eq!(elf_arch(b"#!/bin/sh\n"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }

    #[test]
    fn the_test_binary_itself() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let want = match std::env::consts::ARCH {
            "x86" => "i386",
            a => a,
        };
        assert_eq!(elf_arch(&me), Some(want));
    }
}
