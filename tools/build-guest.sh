#!/bin/bash
# Build the cloudlet test guest: a Debian kernel, a busybox initramfs running
# the app in guest/ (init + www), and a raw ext4 disk holding the app tarball.
#
#   tools/build-guest.sh            # outputs go to $CLOUDLET_GUEST_DIR
#                                   # (default /var/cache/openstack-cloudlet/guest)
#
# Outputs: vmlinuz, initrd.gz, disk.raw (128 MiB ext4, label cloudletdisk, with
# app.tar.gz and hello.txt).  Prints `name=path` lines on stdout at the end.
#
# Cached: a stamp holds a digest of every input (this script, guest/, the kernel
# package version, busybox, the app's source files); a rerun with the same
# inputs does nothing.  Needs only Debian packages; the kernel .deb is fetched
# with apt-get download once and kept in $CLOUDLET_GUEST_DIR/debs.
# Output is close to reproducible (fixed mtimes, fs UUID and hash seed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guest_src=$repo/guest
out=${CLOUDLET_GUEST_DIR:-/var/cache/openstack-cloudlet/guest}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
disk_uuid=c10d1e70-0000-4000-8000-000000000001
disk_hash_seed=c10d1e70-0000-4000-8000-000000000002
disk_size=128M
# Modules the guest needs (virtio disk and NIC, ext4); their dependencies are
# resolved from the kernel package.  crc32c_generic: ext4 asks the crypto API
# for crc32c at mount time, which no dependency line records.
modules=(virtio_pci virtio_net virtio_blk ext4 crc32c_generic)
# The app: tens of MB of ordinary files from Debian packages that every
# Debian 12 host has (python3.11 stdlib, perl modules).  Realistic, compressible,
# and not random, so that dedup and delta compression have something to do.
app_sources=(usr/lib/python3.11 usr/share/perl usr/lib/x86_64-linux-gnu/perl-base)

log() { echo "build-guest: $*" >&2; }

print_paths() {
    echo "guest_dir=$out"
    echo "vmlinuz=$out/vmlinuz"
    echo "initrd=$out/initrd.gz"
    echo "disk=$out/disk.raw"
}

ensure_tools() {
    local missing=() pair
    for pair in busybox:busybox-static depmod:kmod modprobe:kmod mkfs.ext4:e2fsprogs flock:util-linux; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ -x /bin/busybox ] && /bin/busybox --list | grep -qx httpd || missing+=(busybox-static)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# The kernel package linux-image-amd64 depends on today, and its version:
# prints e.g. "linux-image-6.1.0-56-amd64 6.1.192-2".  (apt-cache show gives
# both in one call; each apt-cache call costs ~2 s here, it has no pkgcache.)
kernel_package() {
    local line
    line=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | grep -m1 '^Depends:' || true)
    if [ -z "$line" ]; then
        apt-get update >&2
        line=$(apt-cache show --no-all-versions linux-image-amd64 | grep -m1 '^Depends:' || true)
    fi
    # "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
    # shellcheck disable=SC2046  # split on purpose: package, then version
    set -- $(echo "$line" | sed -n 's/.*\(linux-image-[0-9][^ ,]*\)\( (= \([^)]*\))\)\{0,1\}.*/\1 \3/p')
    [ $# -ge 1 ] || { log "cannot find the kernel package behind linux-image-amd64"; exit 1; }
    if [ $# -eq 1 ]; then   # not pinned: ask for the candidate version
        set -- "$1" "$(apt-cache show --no-all-versions "$1" | awk '/^Version:/ {print $2; exit}')"
    fi
    echo "$1 $2"
}

app_files() {
    local dir
    for dir in "${app_sources[@]}"; do
        [ -d "/$dir" ] || { log "app source /$dir is missing"; exit 1; }
    done
    # Regular files and directories only (symlinks here point outside the tree);
    # bytecode caches and the static libpython are left out.
    (cd / && find "${app_sources[@]}" \( -name __pycache__ -o -name 'config-3*' \) -prune \
        -o \( -type f -o -type d \) -print | LC_ALL=C sort)
}

inputs_digest() {
    {
        echo "script $(sha256sum < "${BASH_SOURCE[0]}")"
        (cd "$repo" && find guest -type f -printf '%m %p\n' | LC_ALL=C sort)
        (cd "$repo" && find guest -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        echo "kernel $kernel_pkg $kernel_version"
        echo "busybox $(sha256sum < /bin/busybox)"
        echo "epoch $epoch modules ${modules[*]}"
        (cd / && app_files | xargs -d '\n' stat -c '%n %s %Y')
    } | sha256sum | cut -d' ' -f1
}

fetch_kernel_deb() {
    local debs=$out/debs deb
    mkdir -p "$debs"
    deb=$(find "$debs" -maxdepth 1 -name "${kernel_pkg}_*.deb" | head -n1)
    if [ -z "$deb" ]; then
        log "downloading $kernel_pkg=$kernel_version"
        rm -f "$debs"/linux-image-*.deb   # an older ABI is of no further use
        # apt warns that its _apt sandbox user cannot write here; harmless.
        (cd "$debs" && apt-get download "$kernel_pkg=$kernel_version" >&2)
        deb=$(find "$debs" -maxdepth 1 -name "${kernel_pkg}_*.deb" | head -n1)
    fi
    echo "$deb"
}

# Unpack the kernel package into $work/kernel, copy out vmlinuz, and write the
# wanted modules, dependencies first, into $initramfs/lib/modules.
build_kernel_and_modules() {
    local deb=$1 root=$work/kernel moddir path name
    mkdir -p "$root"
    dpkg-deb -x "$deb" "$root"
    moddir=
    for path in "$root/lib/modules/$abi" "$root/usr/lib/modules/$abi"; do
        if [ -e "$path" ]; then moddir=$path; break; fi
    done
    [ -n "$moddir" ] || { log "no modules for $abi in $deb"; exit 1; }
    [ -e "$root/lib/modules" ] || ln -s usr/lib "$root/lib"   # merged-/usr packages
    depmod -b "$root" "$abi"
    mkdir -p "$initramfs/lib/modules"
    : > "$initramfs/lib/modules/load-order"
    for name in "${modules[@]}"; do
        modprobe -d "$root" -S "$abi" --show-depends "$name"
    done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r path; do
        name=$(basename "$path")
        case "$name" in   # busybox insmod wants plain .ko files
            *.ko.xz) name=${name%.xz}; xz -dc "$path" > "$initramfs/lib/modules/$name" ;;
            *.ko.zst) name=${name%.zst}; zstd -qdc "$path" > "$initramfs/lib/modules/$name" ;;
            *) cp "$path" "$initramfs/lib/modules/$name" ;;
        esac
        echo "$name" >> "$initramfs/lib/modules/load-order"
    done
    cp "$root/boot/vmlinuz-$abi" "$work/vmlinuz"
}

build_initramfs() {
    local dir
    for dir in bin sbin usr/bin usr/sbin proc sys dev tmp mnt/disk state etc/udhcpc; do
        mkdir -p "$initramfs/$dir"
    done
    cp /bin/busybox "$initramfs/bin/busybox"
    install -m 755 "$guest_src/init" "$initramfs/init"
    install -m 755 "$guest_src/etc/udhcpc.script" "$initramfs/etc/udhcpc/default.script"
    cp -r "$guest_src/www" "$initramfs/www"
    chmod 755 "$initramfs"/www/cgi-bin/*
    # The kernel opens /dev/console before /init runs and devtmpfs is not yet mounted.
    mknod -m 600 "$initramfs/dev/console" c 5 1
    mknod -m 666 "$initramfs/dev/null" c 1 3
    find "$initramfs" -exec touch -h -d "@$epoch" {} +
    (cd "$initramfs" && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) | gzip -n -9 > "$work/initrd.gz"
}

build_disk() {
    local root=$work/diskroot
    mkdir -p "$root"
    echo "hello-from-cloudlet-disk" > "$root/hello.txt"
    # GNU format: busybox tar in the guest does not read every pax header.
    (cd / && app_files | tar --no-recursion --format=gnu --owner=0 --group=0 --numeric-owner \
        --mtime="@$epoch" -T - -cf -) | gzip -n -6 > "$root/app.tar.gz"
    touch -d "@$epoch" "$root" "$root"/*
    truncate -s "$disk_size" "$work/disk.raw"
    # -b 4096 -T default: 4 KiB blocks as on real root disks (mkfs picks 1 KiB
    # for a small image), so file data in the page cache lines up with disk chunks.
    E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -b 4096 -T default -L cloudletdisk -U "$disk_uuid" \
        -E "hash_seed=$disk_hash_seed,root_owner=0:0" -d "$root" "$work/disk.raw"
    # mkfs -d stamps inodes with the real time in places; pin every timestamp
    # so that rebuilding gives a byte-identical disk.
    local path field
    for path in / /lost+found $(cd "$root" && printf '/%s ' *); do
        for field in atime ctime mtime crtime; do
            echo "sif $path $field @$epoch"
        done
    done > "$work/debugfs.cmds"
    E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/debugfs.cmds" "$work/disk.raw" >/dev/null 2>&1
}

# Move a new output into place unless an identical one is there already: a
# qcow2 overlay made on the old disk.raw stays valid, and running guests keep
# reading the file they opened.
install_output() {
    local name=$1
    if cmp -s "$work/$name" "$out/$name"; then
        return
    fi
    chmod 644 "$work/$name"
    mv -f "$work/$name" "$out/$name"
    log "updated $out/$name"
}

main() {
    ensure_tools
    mkdir -p "$out"
    exec 9> "$out/.lock"
    flock 9   # a concurrent build waits, then finds the stamp up to date

    read -r kernel_pkg kernel_version < <(kernel_package)
    abi=${kernel_pkg#linux-image-}
    local digest
    digest=$(inputs_digest)
    if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$digest" ] &&
        [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] && [ -f "$out/disk.raw" ]; then
        log "up to date"
        print_paths
        return
    fi

    local deb
    deb=$(fetch_kernel_deb)
    work=$(mktemp -d "$out/build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    initramfs=$work/initramfs
    log "kernel $kernel_pkg $kernel_version"
    build_kernel_and_modules "$deb"
    log "initramfs: $(wc -l < "$initramfs/lib/modules/load-order") modules"
    build_initramfs
    log "disk"
    build_disk
    rm -f "$out/stamp"
    install_output vmlinuz
    install_output initrd.gz
    install_output disk.raw
    echo "$digest" > "$out/stamp"
    log "built: vmlinuz $(du -h "$out/vmlinuz" | cut -f1), initrd.gz $(du -h "$out/initrd.gz" | cut -f1)," \
        "app.tar.gz $(du -h "$work/diskroot/app.tar.gz" | cut -f1) in disk.raw"
    print_paths
}

main "$@"
