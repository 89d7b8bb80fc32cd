#!/usr/bin/env bash
# Builds small seed inputs for the fuzz targets with the same real tools the tests use
# (never committed: generated into fuzz/corpus/<target>/). Each seed stays under 1 MiB,
# the targets' input cap.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus
mkdir -p "$out"/{qcow2,partition,probe,packages,image_formats,lvm_text,lvm_pv,xfs,btrfs,ntfs,hive,luks,md,initramfs}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# qcow2: plain, zlib- and zstd-compressed, extended L2, v2 (compat 0.10).
head -c 262144 /dev/urandom > "$work/data"
qemu-img create -q -f raw "$work/base.raw" 2M
dd if="$work/data" of="$work/base.raw" bs=64k seek=3 conv=notrunc status=none
qemu-img convert -q -O qcow2 "$work/base.raw" "$out/qcow2/plain.qcow2"
qemu-img convert -q -c -O qcow2 "$work/base.raw" "$out/qcow2/zlib.qcow2"
qemu-img convert -q -c -O qcow2 -o compression_type=zstd "$work/base.raw" "$out/qcow2/zstd.qcow2"
qemu-img convert -q -O qcow2 -o extended_l2=on,cluster_size=128k "$work/base.raw" "$out/qcow2/extl2.qcow2"
qemu-img convert -q -O qcow2 -o compat=0.10 "$work/base.raw" "$out/qcow2/v2.qcow2"

# image_formats: every subformat qemu-img writes of the same small disk. VHDX files are
# at least 3 MiB (MiB-aligned regions), so their seed is the first MiB: headers and
# region table, for the fuzzer to point at data it builds.
for spec in vmdk:subformat=monolithicSparse vmdk:subformat=streamOptimized vpc:subformat=dynamic \
            vdi:static=off vhdx:subformat=dynamic,block_size=1M; do
  fmt=${spec%%:*}; opts=${spec#*:}; name="${fmt}-${opts//[=,]/-}"
  qemu-img convert -q -f raw -O "$fmt" -o "$opts" "$work/base.raw" "$work/$name"
  head -c 1048576 "$work/$name" > "$out/image_formats/$name"
done
# Whole images of a 512 KiB disk: a fixed VHD keeps its footer, an empty dynamic VHD its
# footer, header and BAT (no block: one is 2 MiB), a VDI its map (one block is 1 MiB).
head -c 524288 "$work/base.raw" > "$work/small.raw"
truncate -s 524288 "$work/empty.raw"
qemu-img convert -q -f raw -O vpc -o subformat=fixed "$work/small.raw" "$out/image_formats/vpc-fixed"
qemu-img convert -q -f raw -O vpc -o subformat=dynamic "$work/empty.raw" "$out/image_formats/vpc-dynamic-empty"
qemu-img convert -q -f raw -O vdi "$work/empty.raw" "$out/image_formats/vdi-empty"

# partition tables on a 1 MiB disk: GPT and MBR with logical partitions.
truncate -s 1M "$work/gpt.img" "$work/mbr.img"
printf 'label: gpt\nstart=34, size=200, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI"\nstart=300, size=600, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n' | sfdisk -q "$work/gpt.img"
printf 'label: dos\nstart=40, size=100, type=83, bootable\nstart=200, size=1500, type=5\nstart=300, size=100, type=83\nstart=500, size=100, type=82\nstart=700, size=100, type=83\n' | sfdisk -q "$work/mbr.img"
cp "$work/gpt.img" "$work/mbr.img" "$out/partition/"

# filesystem superblocks: first MiB of small filesystems.
for fs in ext2 ext4; do
  truncate -s 4M "$work/$fs.img"; mkfs.$fs -q -F -L seed "$work/$fs.img"
  head -c 1M "$work/$fs.img" > "$out/probe/$fs.img"
done
truncate -s 2M "$work/vfat.img"; mkfs.vfat -n SEED "$work/vfat.img" >/dev/null
cp "$work/vfat.img" "$out/probe/"; truncate -s 1M "$out/probe/vfat.img"
truncate -s 1M "$work/swap.img"; mkswap -L seed "$work/swap.img" >/dev/null 2>&1; cp "$work/swap.img" "$out/probe/"
truncate -s 300M "$work/xfs.img"; mkfs.xfs -q -f -L seed "$work/xfs.img"; head -c 1M "$work/xfs.img" > "$out/probe/xfs.img"
truncate -s 120M "$work/btrfs.img"; mkfs.btrfs -q -f -L seed "$work/btrfs.img" >/dev/null 2>&1; head -c 1M "$work/btrfs.img" > "$out/probe/btrfs.img"

# LUKS: LUKS1 and LUKS2 headers (PBKDF2, Argon2id, 4 KiB sectors) written by cryptsetup on
# plain files; the first MiB holds the header, the LUKS2 JSON area and the key material.
luks_seed() { # name, luksFormat options
  truncate -s 24M "$work/$1.luks"
  printf seed | cryptsetup luksFormat -q $2 --key-file - "$work/$1.luks" >/dev/null 2>&1 &&
    head -c 1M "$work/$1.luks" > "$out/luks/$1.img" || true
}
luks_seed luks1 "--type luks1 --pbkdf-force-iterations 1000"
luks_seed luks2-pbkdf2 "--type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000"
luks_seed luks2-argon2id "--type luks2 --pbkdf argon2id --pbkdf-memory 8192 --pbkdf-force-iterations 4 --sector-size 4096"
if [ -e "$out/luks/luks1.img" ]; then cp "$out/luks/luks1.img" "$out/probe/luks1.img"; fi

# LVM2: two PVs on loop devices with linear (two segments) and striped LVs (metadata only:
# --driverloaded n needs no device-mapper); the first MiB of a PV and the VG's text.
truncate -s 16M "$work/pv0.img" "$work/pv1.img"
if loop0=$(losetup -f --show "$work/pv0.img" 2>/dev/null) && loop1=$(losetup -f --show "$work/pv1.img" 2>/dev/null); then
  cfg="devices { use_devicesfile=0 obtain_device_list_from_udev=0 filter=[\"a|^$loop0\$|\",\"a|^$loop1\$|\",\"r|.*|\"] } backup { backup=0 archive=0 } activation { udev_sync=0 udev_rules=0 }"
  vg=gkseed$$
  { pvcreate -y --config "$cfg" "$loop0" "$loop1" &&
    vgcreate -s 1m --config "$cfg" "$vg" "$loop0" "$loop1" &&
    lvcreate --driverloaded n -an -Zn -y --config "$cfg" -L 2m -n lin "$vg" &&
    lvcreate --driverloaded n -an -Zn -y --config "$cfg" --type striped -i 2 -I 16k -L 4m -n str "$vg" &&
    lvextend --driverloaded n -y --config "$cfg" -L 3m "$vg/lin" "$loop1" &&
    vgcfgbackup --config "$cfg" -f "$out/lvm_text/vg.txt" "$vg"; } >/dev/null 2>&1 || true
  losetup -d "$loop0" "$loop1"
  head -c 1M "$work/pv0.img" > "$out/lvm_pv/pv0.img"
  head -c 1M "$work/pv0.img" > "$out/probe/lvm2.img"
fi

# md: members of the arrays integration/fixtures/md-layouts.gf builds (mdadm cannot
# create an array here without the kernel's md driver), when that cached image exists:
# partition 1 holds 0.90 (raid1), 2 1.0 (raid0), 3 1.2 (raid5), 4 1.1 (raid5).
for d in "${GUESTKIT_FIXTURE_CACHE:-$HOME/.cache/guestkit-fixtures}"/guestfish/*/; do
  if [ -e "$d/arrays" ] && [ -e "$d/oracle.tar" ] && [ -e "$d/disk0.img" ]; then
    for p in 1 2 3 4; do
      dd if="$d/disk0.img" of="$out/md/member$p.img" bs=512 skip=$((2048 + (p - 1) * 10240)) count=10240 status=none
    done
    break
  fi
done

# xfs: the non-zero 4 KiB blocks (superblock, AG headers, inodes, directories, files,
# log head) of small protofile-made filesystems, v5 and v4 without ftype, as the
# target's sparse records (offset u64 BE, length u32 BE, bytes).
mkdir -p "$work/xfstree/d50" "$work/xfstree/a/b"
for i in $(seq 1 50); do echo "entry $i" > "$work/xfstree/d50/file_$i"; done
head -c 20000 /dev/urandom > "$work/xfstree/a/b/data"
ln -s ../d50/file_1 "$work/xfstree/a/link"
{ echo /dev/null; echo 0 0; echo 'd--755 0 0'
  echo 'd50 d--755 0 0'; for i in $(seq 1 50); do echo "file_$i ---644 0 0 $work/xfstree/d50/file_$i"; done; echo '$'
  echo 'a d--755 0 0'; echo 'link l--777 0 0 ../d50/file_1'; echo 'b d--750 1 1'
  echo "data ---600 0 0 $work/xfstree/a/b/data"; echo '$'; echo '$'; echo '$'; } > "$work/xfs.proto"
for v in v5:"" v4:"-m crc=0 -n ftype=0"; do
  name=${v%%:*}; opts=${v#*:}
  truncate -s 64M "$work/xfs-$name.img"
  # Below mkfs.xfs's 300 MB floor, which it lifts for the xfstests environment.
  TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f $opts -p "$work/xfs.proto" "$work/xfs-$name.img"
  python3 - "$work/xfs-$name.img" "$out/xfs/$name.seed" <<'PY'
import struct, sys
src, dst = open(sys.argv[1], "rb"), open(sys.argv[2], "wb")
offset, run = 0, b""
while True:
    block = src.read(4096)
    if not block:
        break
    if block.strip(b"\0"):
        if not run:
            start = offset
        run += block
    elif run:
        dst.write(struct.pack(">QI", start, len(run)) + run)
        run = b""
    offset += 4096
if run:
    dst.write(struct.pack(">QI", start, len(run)) + run)
PY
done

# btrfs: small trees under mkfs.btrfs --rootdir (single and DUP metadata, 4 KiB nodes
# so trees have several levels), as the fuzz target's sparse form: every non-zero 4 KiB
# block of the first 128 MiB as a u32 block number and its bytes.
mkdir -p "$work/btree/dir"
for i in $(seq 1 150); do printf 'file %s\n' "$i" > "$work/btree/dir/f$i"; done
head -c 20000 /dev/urandom > "$work/btree/blob"; ln -s dir/f1 "$work/btree/link"
sparse_blocks() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, 'rb') as f, open(dst, 'wb') as o:
    for n in range(128 * 256):
        b = f.read(4096)
        if not b:
            break
        if any(b):
            o.write(struct.pack('<I', n) + b)
PY
}
for m in single dup; do
  truncate -s 120M "$work/btrfs-$m.img"
  mkfs.btrfs -q -f -n 4096 -m $m --rootdir "$work/btree" "$work/btrfs-$m.img" >/dev/null 2>&1
  sparse_blocks "$work/btrfs-$m.img" "$out/btrfs/$m.blocks"
done

# package databases: a slice of this machine's dpkg status, an empty rpmdb.sqlite.
head -c 200000 /var/lib/dpkg/status > "$out/packages/dpkg-status"
mkdir -p "$work/rpmroot"
rpm --root "$work/rpmroot" --dbpath /var/lib/rpm --initdb 2>/dev/null || true
[ -f "$work/rpmroot/var/lib/rpm/rpmdb.sqlite" ] && cp "$work/rpmroot/var/lib/rpm/rpmdb.sqlite" "$out/packages/" || true
# rpm ndb Packages.db with one package, when rpm with ndb (fixtures/rpm-ndb.sh) is cached.
ndb_rpm=$(ls "${GUESTKIT_FIXTURE_CACHE:-$HOME/.cache/guestkit-fixtures}"/rpm-ndb/*/bin/rpm 2>/dev/null | head -n1 || true)
if [ -n "$ndb_rpm" ]; then
  printf 'Name: seed\nVersion: 1\nRelease: 1\nSummary: Seed\nLicense: MIT\nBuildArch: noarch\n%%description\nSeed.\n%%files\n' > "$work/seed.spec"
  rpmbuild --quiet --define "_topdir $work/rpmbuild" -bb "$work/seed.spec" >/dev/null 2>&1 || true
  "$ndb_rpm" --define '_db_backend ndb' --dbpath "$work/ndb" --initdb 2>/dev/null || true
  "$ndb_rpm" --define '_db_backend ndb' --dbpath "$work/ndb" -i --justdb --nodeps --noscripts "$work"/rpmbuild/RPMS/noarch/*.rpm 2>/dev/null || true
  [ -f "$work/ndb/Packages.db" ] && cp "$work/ndb/Packages.db" "$out/packages/" || true
fi
printf 'C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nT:the musl c library\n\n' > "$out/packages/apk-installed"
printf '%%NAME%%\nbash\n\n%%VERSION%%\n5.2.015-1\n\n%%DESC%%\nThe GNU Bourne Again shell\n\n%%ARCH%%\nx86_64\n' > "$out/packages/pacman-desc"
# ntfs: the smallest volume mkntfs makes, with a directory, files and a compressed file.
truncate -s 1100K "$work/ntfs.img"; mkntfs -F -Q -c 512 -L seed "$work/ntfs.img" >/dev/null 2>&1
cp "$work/ntfs.img" "$out/ntfs/empty.img"
if [ -e /dev/fuse ] && mkdir -p "$work/mnt" && ntfs-3g "$work/ntfs.img" "$work/mnt" 2>/dev/null; then
  mkdir -p "$work/mnt/Windows/System32/config" "$work/mnt/c"
  setfattr -h -v 0x00000800 -n system.ntfs_attrib_be "$work/mnt/c" || true
  seq 1 3000 > "$work/mnt/c/numbers.txt"; echo hello > "$work/mnt/Windows/System32/cmd.exe"
  for i in $(seq 1 40); do echo "$i" > "$work/mnt/Windows/System32/file_with_a_long_name_$i.dll"; done
  fusermount -u "$work/mnt"
  for i in $(seq 100); do fuser -s "$work/ntfs.img" 2>/dev/null || break; sleep 0.05; done
  cp "$work/ntfs.img" "$out/ntfs/files.img"
fi

# hive: a minimal REGF (root key with a subkey, a string and a DWORD value).
python3 - "$out/hive/minimal.hive" <<'PY'
import struct, sys
bins = bytearray(b"hbin" + struct.pack("<II", 0, 4096) + bytes(20))
def cell(data):
    off = len(bins); size = (4 + len(data) + 7) // 8 * 8
    bins.extend(struct.pack("<i", -size) + data + bytes(size - 4 - len(data))); return off
def nk(name, parent, subs, nsubs, vals, nvals, flags=0x20):
    return cell(b"nk" + struct.pack("<HQIIIIIIIIIIIIIIIHH", flags, 0, 0, parent, nsubs, 0, subs, 0xffffffff,
                nvals, vals, 0xffffffff, 0xffffffff, 0, 0, 0, 0, 0, len(name), 0) + name)
sz = "seed value\0".encode("utf-16-le")
data = cell(sz)
v1 = cell(b"vk" + struct.pack("<HIIIHH", 4, len(sz), data, 1, 1, 0) + b"Text")
v2 = cell(b"vk" + struct.pack("<HIIIHH", 5, 0x80000004, 7, 4, 1, 0) + b"Count")
vl = cell(struct.pack("<II", v1, v2))
child = nk(b"Child", 0, 0xffffffff, 0, vl, 2)
lh = cell(b"lh" + struct.pack("<HII", 1, child, 0))
root = nk(b"ROOT", 0, lh, 1, 0xffffffff, 0, 0x2c)
bins.extend(struct.pack("<i", 4096 - len(bins))); bins.extend(bytes(4096 - len(bins)))
base = bytearray(4096)
struct.pack_into("<4sIIQIIIIII", base, 0, b"regf", 1, 1, 0, 1, 5, 0, 1, root, len(bins))
struct.pack_into("<I", base, 44, 1)
x = 0
for i in range(127): x ^= struct.unpack_from("<I", base, i * 4)[0]
struct.pack_into("<I", base, 508, 0xfffffffe if x == 0xffffffff else (1 if x == 0 else x))
open(sys.argv[1], "wb").write(bytes(base) + bytes(bins))
PY
# initramfs: an early-microcode cpio then the main cpio compressed each way, as dracut
# and initramfs-tools write them.
mkdir -p "$work/ird/main/usr/lib/modules/6.1/kernel" "$work/ird/early/kernel/x86/microcode"
printf 'x' > "$work/ird/main/usr/lib/modules/6.1/kernel/virtio_blk.ko"
printf '#!/bin/sh\n' > "$work/ird/main/init"
printf 'u' > "$work/ird/early/kernel/x86/microcode/GenuineIntel.bin"
(cd "$work/ird/early" && find . -mindepth 1 -printf '%P\n' | cpio -o -H newc --quiet) > "$work/ird/early.cpio"
(cd "$work/ird/main" && find . -mindepth 1 -printf '%P\n' | cpio -o -H newc --quiet) > "$work/ird/main.cpio"
cp "$work/ird/main.cpio" "$out/initramfs/plain.cpio"
for c in "gzip -n" zstd xz lzma; do
  { cat "$work/ird/early.cpio"; $c -c < "$work/ird/main.cpio"; } > "$out/initramfs/early-${c%% *}.img"
done
echo "fuzz seeds in $out"
