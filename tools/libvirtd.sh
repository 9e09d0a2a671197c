#!/bin/bash
# Run libvirtd and virtlogd by hand, on hosts without systemd (the build
# machines and CI): nothing starts them there.
#
#   tools/libvirtd.sh start    start whichever is not running, wait for the socket, warm
#   tools/libvirtd.sh stop     SIGTERM, bounded wait, then SIGKILL (guests keep running)
#   tools/libvirtd.sh status   what runs, and where the logs are
#   tools/libvirtd.sh warm     make libvirt probe QEMU's capabilities now
#
# Warming matters: the first domain start after libvirtd starts waits ~45 s
# while libvirt probes QEMU (then cached in /var/cache/libvirt/qemu); better
# spent here than inside a timed test.  All commands are idempotent.
#
# `start` also gives /dev/kvm the group and mode Debian's udev rule would
# (root:kvm 0660; no udev runs here).  Without it libvirt's capability cache
# never stays valid: libvirt probes QEMU with CAP_DAC_OVERRIDE, so the probe
# sees KVM, while its later check (access() as libvirt-qemu) does not, and every
# domain start, restore or domcapabilities call re-probes QEMU for 4-45 s
# (libvirtd debug log: "KVM was enabled when probing ..., but it is not
# available now").  Guests still run under TCG (<domain type='qemu'>).
set -euo pipefail

uri=qemu:///system
socket=/run/libvirt/libvirt-sock
socket_wait=30     # seconds
stop_wait=15       # seconds before SIGKILL
warm_timeout=300   # seconds; the probe takes ~45 s on an idle 2-core host

# The pid of daemon $1 from its pid file, if that process still is that daemon.
daemon_pid() {
    local name=$1 pid
    pid=$(cat "/run/$name.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name a recycled pid: check the program too.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    echo "$pid"
}

start_daemon() {
    local name=$1
    if daemon_pid "$name" >/dev/null; then
        return
    fi
    echo "starting $name"
    "/usr/sbin/$name" -d
}

# Wait until libvirtd answers (a socket file alone may be a stale one).
kvm_device_permissions() {
    [ -c /dev/kvm ] && getent group kvm >/dev/null || return 0
    if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
        echo "setting /dev/kvm to root:kvm 0660 (what udev would do)"
        chgrp kvm /dev/kvm
        chmod 0660 /dev/kvm
    fi
}

wait_for_socket() {
    local waited=0
    until [ -S "$socket" ] && virsh -c "$uri" uri >/dev/null 2>&1; do
        if [ "$waited" -ge $((socket_wait * 10)) ]; then
            echo "libvirtd: no answer on $socket after ${socket_wait} s; see /var/log/libvirt/libvirtd.log" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

warm() {
    local started=$SECONDS
    timeout "$warm_timeout" virsh -c "$uri" domcapabilities --virttype qemu >/dev/null
    echo "libvirt warm ($((SECONDS - started)) s)"
}

stop_daemon() {
    local name=$1 pid waited=0
    pid=$(daemon_pid "$name") || { echo "$name not running"; return; }
    echo "stopping $name ($pid)"
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge $((stop_wait * 10)) ]; then
            echo "$name did not stop in ${stop_wait} s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

status() {
    local name pid
    for name in virtlogd libvirtd; do
        if pid=$(daemon_pid "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
        fi
    done
    if [ -S "$socket" ]; then echo "socket: $socket"; else echo "socket: absent"; fi
    echo "logs: /var/log/libvirt/libvirtd.log, /var/log/libvirt/virtlogd.log," \
        "per-domain QEMU logs in /var/log/libvirt/qemu/<name>.log"
}

case "${1:-}" in
    start)
        kvm_device_permissions
        start_daemon virtlogd   # libvirtd hands console logs to virtlogd
        start_daemon libvirtd
        wait_for_socket
        warm
        ;;
    stop)
        stop_daemon libvirtd
        stop_daemon virtlogd
        ;;
    status)
        status
        ;;
    warm)
        wait_for_socket
        warm
        ;;
    *)
        echo "usage: $0 start|stop|status|warm" >&2
        exit 2
        ;;
esac
