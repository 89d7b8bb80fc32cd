#!/usr/bin/env bash
# Makes a Debian machine ready for the worker and its tests: the disk tools the test
# fixtures are built with, and a RabbitMQ answering on 127.0.0.1:5672 (started only
# when none answers). Idempotent; needs root (or sudo) for apt-get.
set -euo pipefail

PACKAGES=(
  rabbitmq-server           # the broker, when the machine has none
  qemu-utils                # qemu-img: qcow2 fixtures and the reader oracle
  fdisk                     # sfdisk: partition tables and their --json oracle
  e2fsprogs dosfstools mtools xfsprogs btrfs-progs ntfs-3g xorriso
  cryptsetup-bin lvm2       # LUKS and LVM2 signatures for the probe oracle
  util-linux                # blkid: the probe oracle
  debootstrap               # a real Debian tree for the OS oracle
  rpm sqlite3 db5.3-util    # real rpmdb.sqlite and Berkeley DB Packages databases
  gcc make dpkg-dev pkgconf libpopt-dev liblua5.3-dev libgcrypt20-dev libmagic-dev zlib1g-dev
                            # rpm built with ndb from Debian's source (fixtures/rpm-ndb.sh)
  chromium cmark-gfm        # headless check of the html report; an independent markdown parser
  osinfo-db                 # libosinfo's own short ids: the osinfo oracle
  python3 python3-venv      # deploy-file validation, the pika publisher example
  curl ca-certificates
  nginx-light openssl       # the HTTP(S) server of the remote-image tests, and their CA
  libhivex-bin              # hivexget/hivexregedit: the independent registry-hive oracle
  attr psmisc fuse3         # setfattr (NTFS compression, reparse points), fuser, fusermount: NTFS fixtures
  stress-ng                 # load for the race hunt (issue 9: the suite under --cpu 2)
  cpio zstd xz-utils initramfs-tools-core  # initramfs fixtures, and lsinitramfs: their oracle
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# libguestfs (guestfish, virt-inspector): fixture builder and oracle for layouts only a
# kernel can write (LVM, MD, LUKS, btrfs subvolumes and compression). It refuses the
# newer qemu this image ships, so qemu-utils goes to bookworm's version (the candidate of
# qemu-system-x86, which libguestfs pulls in).
if ! command -v guestfish >/dev/null || ! command -v virt-inspector >/dev/null; then
  echo "installing libguestfs-tools"
  $SUDO apt-get update -qq
  qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --allow-downgrades \
    "qemu-utils=$qemu_version" libguestfs-tools >/dev/null
fi

broker_answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! broker_answers; then
  echo "starting RabbitMQ"
  $SUDO rabbitmq-server -detached
  for _ in $(seq 1 120); do
    broker_answers && $SUDO rabbitmqctl -q await_startup >/dev/null 2>&1 && break
    sleep 1
  done
  broker_answers || { echo "RabbitMQ did not start" >&2; exit 1; }
fi
echo "dependencies ready; RabbitMQ answers on 127.0.0.1:5672"
