"""Handoff benchmark: a running server moves from box to box2 across an emulated WAN.

For each rate (5, 10, 25, 100 Mbps by default) with a one-way delay (20 ms
by default) on the WAN path in front of box2 (tools/cloudlet_box/wan.py: tc
tbf on a veth pair, a delaying relay in a network namespace):

1. resume the shared base on box as a new server, install the app (tens of
   MB on disk), put 8 MB in RAM, set RAM and disk state (not timed);
2. POST cloudlet-handoff to box2 (an application credential of box2's demo
   user, its Keystone reached through the WAN) and wait until the server is
   ACTIVE on box2 and gone from box: the *total* time;
3. check that the app on box2 answers with the state and the boot id it had;
4. read the WAN relay's byte counters (everything that crossed: Keystone,
   Glance, Nova and the residue) and the source compute's handoff record
   (residue bytes, codecs, downtime = VM paused on box until ACTIVE on box2,
   with its parts: the residue's last bytes after the pause, then the
   destination's activation);
5. meanwhile, from outside, probe the app every 0.1 s at both addresses at
   once: its floating IP on box, and the one it gets on box2 as soon as the
   handoff record names it; *unreachable* is the last answer on box to the
   first on box2.

`--first-use-rates` (25 by default) adds a handoff at those rates with the
base removed from box2's compute host first (a user arriving at a cloudlet
whose host never ran that base): the destination fetches it from its Glance
before the source's memory moves.

The transfer floor is the bytes that crossed the link ÷ the rate (the tbf
qdiscs shape the sum of both directions). The baseline, measured once on the
server that arrived first: CMU's whole-image residue, xdelta3 -9 of the disk
and of the memory image against the base's, then xz -9 (bench/baselines.py),
of the same VM (its memory saved on box2 after the run, its disk converted to
raw).

Needs box and box2 up (tools/box.sh up; CLOUDLET_BOX=box2
CLOUDLET_BOX_PORT_OFFSET=100 tools/box.sh up). Run as root:

    PYTHONPATH=.:tools /opt/openstack-cloudlet/venv/bin/python bench/handoff_bench.py [--rates 5,10,25,100]
        [--delay-ms 20] [--no-baseline] [--report FILE]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import libvirt

from bench import baselines
from cloudlet_box import cloud
from cloudlet_box import guest_app
from cloudlet_box import handoff_scene
from cloudlet_box import layout
from cloudlet_box import wan as wan_mod
from cloudlet_engine import basestore

RAM, DISK = 'bench-ram-state', 'bench-disk-state'


def log(message):
    print('[handoff-bench] %s' % message, file=sys.stderr, flush=True)


class OutsideProbe:
    """The app from outside, two probes at once: the last answer at the source's
    address, and the first at the destination's (read from the source's handoff
    record once it has it; the handoff gives it before the VM pauses when the
    NICs go along, after the switch when they are replaced).
    """

    def __init__(self, source_address, record_path, interval=0.1):
        self.source_address, self.record_path, self.interval = source_address, record_path, interval
        self.last_source = self.first_destination = None
        self._finish = threading.Event()
        self._threads = [threading.Thread(target=self._source, name='probe-source', daemon=True),
                         threading.Thread(target=self._destination, name='probe-destination', daemon=True)]

    def start(self):
        for thread in self._threads:
            thread.start()

    def _destination_address(self):
        path = self.record_path()
        if path is None:
            return None
        try:
            return json.loads(path.read_text()).get('destination_floating_ip')
        except ValueError:
            return None     # being written

    def _source(self):
        while not self._finish.is_set() and self.first_destination is None:
            if guest_app.answers(self.source_address, 0.3):
                self.last_source = time.monotonic()
            self._finish.wait(self.interval)

    def _destination(self):
        destination = None
        while not self._finish.is_set():
            destination = destination or self._destination_address()
            if destination is not None and guest_app.answers(destination, 0.3):
                self.first_destination = time.monotonic()
                return
            self._finish.wait(self.interval)

    def unreachable(self, timeout=60):
        """Seconds between the two, or None (never answered on one side within `timeout`)."""
        self._threads[1].join(timeout)
        self._finish.set()
        if self.last_source is None or self.first_destination is None:
            return None
        return self.first_destination - self.last_source


def evict_base(base_id):
    """Remove the base from box2's compute host (its Glance keeps it): the next spawn fetches it."""
    store = basestore.BaseStore(str(layout.named('box2').state_dir / 'bases'))
    path = store.path(base_id)
    if os.path.isdir(path):
        shutil.rmtree(path)
        log('  base %s removed from box2\'s compute host' % base_id[:12])


def one_handoff(src, dst, wan, base, rate_mbps, delay_ms, tag, first_use=False):
    """Run one handoff at `rate_mbps`; a row dict (and the destination server)."""
    server_id, state = handoff_scene.app_server(src, base, 'bench-ho-%s' % tag, RAM, DISK)
    source_address = guest_app.floating_ip(src, server_id)
    dest = handoff_scene.destination(dst, wan)
    if first_use:
        evict_base(base.base_id)
    try:
        with wan.shaped('%gmbit' % rate_mbps, delay_ms=delay_ms):
            wan.reset_counters()
            handoff_id = handoff_scene.start_handoff(src, server_id, dest, 'bench-ho-%s-moved' % tag)
            probe = OutsideProbe(source_address, lambda: handoff_scene.record_path(handoff_id))
            probe.start()
            outcome, moved, total = handoff_scene.wait_handoff(src, dst, server_id, handoff_id)
            counters = wan.stats()
            unreachable = probe.unreachable()
    finally:
        dest.cleanup()
    record = handoff_scene.record(handoff_id)
    if outcome != 'done':
        raise RuntimeError('handoff at %g Mbps failed: %s' % (rate_mbps, record.get('error')))
    arrived = handoff_scene.app_state(dst, moved.id)
    if (arrived['bootid'], arrived['ram'], arrived['disk'], arrived['app']) != \
            (state['bootid'], RAM, DISK, state['app']):
        raise RuntimeError('the server arrived without its state: %s vs %s' % (arrived, state))
    wire = counters['up'] + counters['down']
    floor = wire * 8 / (rate_mbps * 1e6)
    residue = record.get('residue') or {}
    downtime = record.get('downtime_seconds')
    final = residue.get('final_seconds')
    return {'rate': rate_mbps, 'first_use': first_use, 'total': total, 'wire': wire, 'up': counters['up'],
            'floor': floor, 'residue': record.get('bytes_sent') or record.get('residue_bytes'),
            'downtime': downtime, 'codecs': record.get('codecs'),
            'after_pause': residue.get('bytes_after_pause'), 'final': final,
            'activation': downtime - final if downtime is not None and final is not None else None,
            'ready_wait': residue.get('ready_wait_seconds'), 'unreachable': unreachable,
            'record': record}, moved


def baseline_of(dst_server_id, base_id, work):
    """CMU's whole-image residue (xdelta3 -9 + xz -9) of a server running on box2: bytes."""
    box2 = layout.named('box2')
    conn = libvirt.open(box2.libvirt_uri)
    domain = conn.lookupByUUIDString(dst_server_id)
    disk = subprocess.run(['virsh', '-c', box2.libvirt_uri, 'domblklist', domain.name()],
                          capture_output=True, text=True, check=True).stdout.split()[-1]
    memory = os.path.join(work, 'memory.save')
    raw = os.path.join(work, 'disk.raw')
    domain.save(memory)         # the server is deleted after this: its memory is in the file
    subprocess.run(['qemu-img', 'convert', '-U', '-O', 'raw', disk, raw], check=True)
    store = basestore.BaseStore(str(box2.state_dir / 'bases'))
    base = store.get(base_id)
    jobs, _window = baselines.cmu_jobs(work, base.disk_path, raw, base.memory_path, memory)
    baselines.run_jobs(jobs, log=log)
    return sum(job.size for job in jobs)


def table(rows, baseline, delay_ms):
    lines = ['Handoff box -> box2 through the WAN path (tbf, one-way delay %d ms), 256 MiB guest, '
             'app installed, 8 MB in RAM; %d cores' % (delay_ms, os.cpu_count()),
             '',
             '| rate Mbps | base on host | on the wire MB | residue MB | after pause KB | floor s | total s '
             '| total / floor | wait for ready s | downtime s | = last bytes s | + activation s '
             '| unreachable (outside) s | codecs (segments) | wire / CMU baseline |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']

    def seconds(value):
        return '%.2f' % value if value is not None else '?'
    for r in rows:
        lines.append('| %g | %s | %.1f | %s | %s | %.1f | %.1f | %.2f | %s | %s | %s | %s | %s | %s | %s |' % (
            r['rate'], 'no (first use)' if r['first_use'] else 'yes', r['wire'] / 1e6,
            '%.1f' % (r['residue'] / 1e6) if r['residue'] else '?',
            '%.0f' % (r['after_pause'] / 1e3) if r['after_pause'] is not None else '?',
            r['floor'], r['total'], r['total'] / r['floor'], seconds(r['ready_wait']),
            seconds(r['downtime']), seconds(r['final']), seconds(r['activation']), seconds(r['unreachable']),
            ', '.join('%s %s' % kv for kv in sorted((r['codecs'] or {}).items())),
            '%.2f' % (r['wire'] / baseline) if baseline else '-'))
    if baseline:
        lines.append('')
        lines.append('CMU baseline (whole-image xdelta3 -9 + xz -9 of disk and memory vs the base): %.1f MB'
                     % (baseline / 1e6))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rates', default='5,10,25,100', help='Mbps, comma-separated')
    parser.add_argument('--delay-ms', type=int, default=20, help='one-way delay of the WAN path')
    parser.add_argument('--first-use-rates', default='25',
                        help='Mbps, comma-separated: also hand off with the base not yet on box2\'s host '
                             '("" for none)')
    parser.add_argument('--no-baseline', action='store_true')
    parser.add_argument('--report', help='also write the table to this file')
    args = parser.parse_args(argv)
    runs = [(float(r), False) for r in args.rates.split(',') if r]
    runs += [(float(r), True) for r in args.first_use_rates.split(',') if r]

    src, dst = cloud.connect('box-demo'), cloud.connect('box2-demo')
    wan = wan_mod.WanPath(layout.named('box2'))
    wan.up()
    work = tempfile.mkdtemp(prefix='cloudlet-handoff-bench-', dir='/var/tmp')
    os.chmod(work, 0o755)
    rows, baseline, moved_servers = [], None, []
    try:
        base = handoff_scene.shared_base(src, dst, pathlib.Path(work), log=log)
        for rate, first_use in runs:
            log('handoff at %g Mbps, %d ms%s' % (rate, args.delay_ms, ', first use of the base' if first_use else ''))
            row, moved = one_handoff(src, dst, wan, base, rate, args.delay_ms,
                                     '%g%s' % (rate, '-first' if first_use else ''), first_use)
            moved_servers.append(moved.id)
            log('  total %.1f s, floor %.1f s, downtime %s s, unreachable from outside %s s'
                % (row['total'], row['floor'], row['downtime'], row['unreachable']))
            rows.append(row)
            if baseline is None and not args.no_baseline:
                log('CMU baseline on the server that arrived')
                baseline = baseline_of(moved.id, base.base_id, work)
            cloud.delete_server(dst, moved.id)
    finally:
        for server_id in moved_servers:
            cloud.delete_server(dst, server_id)
        shutil.rmtree(work, ignore_errors=True)
    report = table(rows, baseline, args.delay_ms)
    print(report)
    if args.report:
        pathlib.Path(args.report).write_text(report + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
