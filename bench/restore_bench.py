#!/usr/bin/env python3
"""Restore time and host memory against guest RAM size: stock restore vs the base's RAM file.

Run as root on a host set up by tools/setup.sh (libvirtd, QEMU, the test guest):

    PYTHONPATH=.:tools /opt/openstack-cloudlet/venv/bin/python bench/restore_bench.py [--quick] [--sizes 256M,8G]
        [--repeat 3] [--no-density] [--keep]

For each guest RAM size it boots the test guest, fills ~40 % of its RAM with
random data (/cgi-bin/fill), captures a base, and resumes that base (no
overlay) with `synthesis.synthesize(..., ram_file=False)` (the stock path: a
full libvirt save image) and `ram_file=True` (guest RAM mapped copy-on-write
from the base's memory.ram, a sparse launch image), the base's files evicted
from the page cache before every run. Then 10 VMs from one 1 GiB base, each
path, for host memory. Prints the conditions and the tables; see bench/README.md.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

# Run as a script: the repository on sys.path, for bench.testbed (which adds tools/).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench import testbed                   # noqa: E402
from cloudlet_engine import apply           # noqa: E402
from cloudlet_engine import basestore       # noqa: E402
from cloudlet_engine import capture         # noqa: E402
from cloudlet_engine import hypervisor      # noqa: E402
from cloudlet_engine import outbound        # noqa: E402
from cloudlet_engine import ramfile         # noqa: E402
from cloudlet_engine import synthesis       # noqa: E402

PREFIX = 'rb'
WORK = '/var/tmp/restore-bench'
# label -> (guest RAM MiB, fill MiB: the guest's dd writes MiB)
SIZES = {'256M': (256, 90), '1G': (1024, 400), '2G': (2048, 900), '8G': (8192, 3600)}
QUICK = ('256M', '1G')
DENSITY_SIZE = '1G'
DENSITY_VMS = 10
RESUME_TIMEOUT = 600.0
MB = 1e6
MiB = 2 ** 20
GOALS = {
    'scaling': 1.2,     # RAM-file path: call -> app at 8 GiB <= 1.2 x at 256 MiB
    'density': 0.3,     # total PSS of 10 VMs, RAM-file / stock
}

log = testbed.Log('restore-bench', 7)


# -- host measures ----------------------------------------------------------------------

def evict(paths):
    """Drop the files' pages from the page cache (after writing back whatever is dirty)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident(path):
    """Bytes of `path` in the page cache (util-linux fincore)."""
    return int(testbed.run('fincore', '--bytes', '--noheadings', '--output', 'RES', path).strip() or 0)


def qemu_pid(name):
    out = subprocess.run(['pgrep', '-f', r'guest=%s,' % re.escape(name)], capture_output=True, text=True).stdout
    pids = out.split()
    if len(pids) != 1:
        raise RuntimeError('expected one QEMU process for %s, found %r' % (name, pids))
    return int(pids[0])


def rss_pss(pid):
    """(RSS, PSS) bytes of a process, from /proc/<pid>/smaps_rollup."""
    values = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('Rss', 'Pss'):
                values[key] = int(rest.split()[0]) * 1024
    return values['Rss'], values['Pss']


def mem_available():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no MemAvailable in /proc/meminfo')


def _block_device(path):
    st = os.stat(path)
    want = (os.major(st.st_dev), os.minor(st.st_dev))
    with open('/proc/diskstats') as f:
        for line in f:
            fields = line.split()
            if (int(fields[0]), int(fields[1])) == want:
                return fields[2]
    return None


class DiskReads:
    """Bytes read from the block device holding the work directory (/proc/diskstats, host-wide)."""

    def __init__(self, path):
        self.device = _block_device(path)

    def __call__(self):
        if self.device is None:
            return 0
        with open('/proc/diskstats') as f:
            for line in f:
                fields = line.split()
                if fields[2] == self.device:
                    return int(fields[5]) * 512
        return 0


# -- guests -----------------------------------------------------------------------------

def _watch_rss(name, stop, every=30.0):
    """Log the QEMU's RSS while a long fill runs (the fill is one HTTP call)."""
    started = time.monotonic()
    while not stop.wait(every):
        try:
            rss = rss_pss(qemu_pid(name))[0]
            log('  still filling %s: %.0f s, QEMU RSS %.0f MiB' % (name, time.monotonic() - started, rss / MiB))
        except Exception:   # noqa: BLE001 - progress only
            pass


def make_base(conn, guests, image, work, store, label):
    """Boot a guest of the size, fill its RAM, capture a base; returns (base, facts)."""
    memory_mib, fill_mib = SIZES[label]
    name = guests.name('origin-%s' % label.lower())
    fwd = testbed.forwards(echo=True)
    log('%s: booting the test guest with %d MiB RAM (TCG)' % (label, memory_mib))
    mark = time.monotonic()
    disk = testbed.boot_guest(conn, image, work, name, fwd, memory_mib)
    state = testbed.wait_for_state(fwd, 300 + memory_mib / 1024 * 120)
    boot = time.monotonic() - mark
    log('%s: up after %.1f s; fill?%d (%.0f %% of RAM)' % (label, boot, fill_mib, 100.0 * fill_mib / memory_mib))
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_rss, args=(name, stop), daemon=True)
    watcher.start()
    mark = time.monotonic()
    try:
        testbed.app_call(fwd, '/cgi-bin/fill?%d' % fill_mib, 600 + fill_mib * 2.0)
    finally:
        stop.set()
    fill = time.monotonic() - mark
    rss = rss_pss(qemu_pid(name))[0]
    log('%s: filled in %.1f s (%.1f MiB/s), QEMU RSS %.0f MiB; capturing the base'
        % (label, fill, fill_mib / fill, rss / MiB))
    mark = time.monotonic()
    base = capture.capture_base(conn, name, store, 'restore-bench-%s' % label.lower())
    captured = time.monotonic() - mark
    guests.destroy(name)
    os.unlink(disk)
    log('%s: base captured in %.1f s, memory.save %.1f MB; converting its RAM file'
        % (label, captured, base.memory_size / MB))
    mark = time.monotonic()
    ram = ramfile.convert(base, owner=hypervisor.qemu_owner(conn.getCapabilities(), hypervisor.virt_type()))
    converted = time.monotonic() - mark
    allocated = os.stat(ram.path).st_blocks * 512
    log('%s: memory.ram %.1f MB (%.1f MB allocated) in %.1f s' % (label, ram.size / MB, allocated / MB, converted))
    return base, {'label': label, 'memory_mib': memory_mib, 'fill_mib': fill_mib, 'bootid': state.get('bootid'),
                  'boot': boot, 'fill': fill, 'capture': captured, 'convert': converted,
                  'memory_save': base.memory_size, 'ram_size': ram.size, 'ram_allocated': allocated,
                  'index': os.path.getsize(os.path.join(base.path, ramfile.RAM_INDEX))}


def base_files(base):
    names = ('memory.save', 'disk.raw', ramfile.RAM_FILE, ramfile.RAM_INDEX)
    return [os.path.join(base.path, n) for n in names if os.path.exists(os.path.join(base.path, n))]


def resume(conn, base, name, work, ram_file, bootid):
    """One timed resume of `base` (cold page cache); returns the figures; the domain keeps running."""
    launch_dir = os.path.join(work, 'instances', name)
    fwd = testbed.forwards(echo=True)
    reads = DiskReads(work)
    read0 = reads()
    mark = time.monotonic()
    result = synthesis.synthesize(base, None, launch_dir, name, port_forwards=fwd, conn=conn,
                                  ram_file=ram_file, keep_memory_image=True, policy=outbound.OPEN)
    running = time.monotonic() - mark
    # Kept only to know its size; synthesize itself would unlink it here.
    launch_memory = os.path.join(launch_dir, apply.LAUNCH_MEMORY)
    launch_size = os.path.getsize(launch_memory)
    os.unlink(launch_memory)
    state = testbed.wait_for_state(fwd, RESUME_TIMEOUT)
    app = time.monotonic() - mark
    disk_read = reads() - read0
    if state.get('bootid') != bootid:
        raise RuntimeError('%s answered with boot id %r, not the base\'s %r: it rebooted'
                           % (name, state.get('bootid'), bootid))
    cached = {os.path.basename(p): resident(p) for p in base_files(base)}
    rss, pss = rss_pss(qemu_pid(name))
    if ram_file:
        read = launch_size + cached[ramfile.RAM_FILE]
    else:
        read = launch_size
    return {'running': running, 'app': app, 'restore': result.timings['restore'],
            'prepare': result.timings['fetch_and_apply'], 'launch': launch_size, 'read': read,
            'cached': cached, 'disk_read': disk_read, 'rss': rss, 'pss': pss, 'launch_dir': launch_dir}


def measure_size(conn, guests, work, base, facts, repeat):
    """`repeat` cold resumes each way; returns {'stock': [runs], 'ram': [runs]}."""
    label = facts['label']
    runs = {'stock': [], 'ram': []}
    for attempt in range(repeat):
        order = ('stock', 'ram') if attempt % 2 == 0 else ('ram', 'stock')
        for path in order:
            name = guests.name('%s-%s-%d' % (label.lower(), path, attempt + 1))
            evict(base_files(base))
            figures = resume(conn, base, name, work, path == 'ram', facts['bootid'])
            guests.destroy(name)
            shutil.rmtree(figures.pop('launch_dir'), ignore_errors=True)
            runs[path].append(figures)
            log('%s %-5s run %d: running %.2f s (restore %.2f s), app %.2f s; launch image %.1f MB, '
                'read %.1f MB, disk reads %.1f MB; RSS %.0f MiB, PSS %.0f MiB'
                % (label, path, attempt + 1, figures['running'], figures['restore'], figures['app'],
                   figures['launch'] / MB, figures['read'] / MB, figures['disk_read'] / MB,
                   figures['rss'] / MiB, figures['pss'] / MiB))
    return runs


def density(conn, guests, work, base, facts, count):
    """`count` VMs from one base, each path in turn; returns path -> figures."""
    results = {}
    for path in ('stock', 'ram'):
        evict(base_files(base))
        time.sleep(2)
        before = mem_available()
        names = []
        mark = time.monotonic()
        for i in range(count):
            name = guests.name('dens-%s-%d' % (path, i + 1))
            names.append(name)
            launch_dir = os.path.join(work, 'instances', name)
            fwd = testbed.forwards(echo=True)
            synthesis.synthesize(base, None, launch_dir, name, port_forwards=fwd, conn=conn,
                                 ram_file=path == 'ram', policy=outbound.OPEN)
            state = testbed.wait_for_state(fwd, RESUME_TIMEOUT)
            if state.get('bootid') != facts['bootid']:
                raise RuntimeError('%s rebooted instead of resuming' % name)
            log('density %s: %d/%d up (%.1f s), MemAvailable %.0f MiB'
                % (path, i + 1, count, time.monotonic() - mark, mem_available() / MiB))
        elapsed = time.monotonic() - mark
        time.sleep(5)
        after = mem_available()
        figures = [rss_pss(qemu_pid(name)) for name in names]
        cached = resident(os.path.join(base.path, ramfile.RAM_FILE))
        results[path] = {'rss': sum(r for r, _ in figures), 'pss': sum(p for _, p in figures),
                         'drop': before - after, 'elapsed': elapsed, 'ram_cached': cached}
        log('density %s: total PSS %.0f MiB, RSS %.0f MiB, MemAvailable drop %.0f MiB, memory.ram cached %.0f MiB'
            % (path, results[path]['pss'] / MiB, results[path]['rss'] / MiB, results[path]['drop'] / MiB,
               cached / MiB))
        for name in names:
            guests.destroy(name)
            shutil.rmtree(os.path.join(work, 'instances', name), ignore_errors=True)
        time.sleep(2)
    return results


# -- the report -------------------------------------------------------------------------

def best_median(values, fmt='%.2f'):
    return (fmt + ' / ' + fmt) % (min(values), statistics.median(values))


def conditions(args, facts, load_at_start, meminfo_at_start, others):
    lines = testbed.conditions_head(load_at_start, '; MemTotal %.1f GiB, MemAvailable at start %.1f GiB'
                                    % (meminfo_at_start[0] / 2**30, meminfo_at_start[1] / 2**30))
    fs = testbed.run('findmnt', '-n', '-o', 'SOURCE,FSTYPE', '-T', WORK).split()
    lines += [
        'storage     work dir %s on %s' % (WORK, ' '.join(fs)),
        'other VMs   running at start (not ours): %s' % (', '.join(others) or 'none'),
        'runs        %d cold resumes per size and path (order alternates), no overlay; before each, os.sync() and '
        'POSIX_FADV_DONTNEED on the base\'s memory.save, memory.ram, memory.ram.index, disk.raw' % args.repeat,
        'units       MB = 10^6 bytes, MiB = 2^20; times in s as best / median',
    ]
    for f in facts:
        lines.append('base %-6s %d MiB RAM, fill?%d (%.0f %%): boot %.0f s, fill %.0f s, capture %.0f s; '
                     'memory.save %.1f MB; memory.ram %.1f MB (%.1f MB allocated), index %.1f MB, made in %.1f s'
                     % (f['label'], f['memory_mib'], f['fill_mib'], 100.0 * f['fill_mib'] / f['memory_mib'],
                        f['boot'], f['fill'], f['capture'], f['memory_save'] / MB, f['ram_size'] / MB,
                        f['ram_allocated'] / MB, f['index'] / MB, f['convert']))
    return lines


def report(facts, runs, dens):
    mb = lambda n: '%.1f MB' % (n / MB)
    mib = lambda n: '%.0f MiB' % (n / MiB)
    med = lambda rs, key: statistics.median(r[key] for r in rs)
    header = ('RAM', 'path', 'call → running s', 'restore (libvirt) s', 'call → app s', 'read at restore',
              'disk reads (host)', 'QEMU RSS', 'QEMU PSS')
    rows = []
    for f in facts:
        label = f['label']
        for path, title in (('stock', 'stock'), ('ram', 'RAM file')):
            rs = runs[label][path]
            if path == 'stock':
                read = '%s (launch image)' % mb(med(rs, 'read'))
            else:
                read = '%s = %s sparse + %s memory.ram' % (
                    mb(med(rs, 'read')), mb(med(rs, 'launch')),
                    mb(statistics.median(r['cached'][ramfile.RAM_FILE] for r in rs)))
            rows.append((label, title, best_median([r['running'] for r in rs]),
                         best_median([r['restore'] for r in rs]), best_median([r['app'] for r in rs]),
                         read, mb(med(rs, 'disk_read')), mib(med(rs, 'rss')), mib(med(rs, 'pss'))))
        stock, ram = runs[label]['stock'], runs[label]['ram']
        ratio = lambda key, fmt='%.3f': fmt % (med(ram, key) / med(stock, key))
        rows.append((label, 'RAM file ÷ stock', ratio('running'), ratio('restore'), ratio('app'), ratio('read'),
                     ratio('disk_read') if med(stock, 'disk_read') else '', ratio('rss'), ratio('pss')))
    tables = [testbed.table(header, rows)]
    notes = [
        'call → running: synthesize() called until it returns (domain running); restore: its timings["restore"] '
        '(libvirt restore of the launch image); call → app: until /cgi-bin/state answers with the base\'s boot id.',
        'read at restore: stock = the launch memory image (a full copy of memory.save, read whole by the copy and '
        'by QEMU); RAM file = the sparse launch image + memory.ram bytes resident in the page cache after the app '
        'answered (fincore --bytes; evicted before the run, so this is what the restore and the guest read, '
        'readahead included). disk reads (host): sectors read on the work dir\'s device between the call and '
        'the app answering (/proc/diskstats, whole host). Sizes, RSS and PSS are medians; RSS/PSS from '
        '/proc/<pid>/smaps_rollup after the app answered. Ratios: of medians.',
    ]
    for f in facts:
        label = f['label']
        notes.append('%s: base files resident after the app answered (median, stock / RAM file): %s' % (
            label, '; '.join('%s %s / %s' % (
                name, mb(statistics.median(r['cached'].get(name, 0) for r in runs[label]['stock'])),
                mb(statistics.median(r['cached'].get(name, 0) for r in runs[label]['ram'])))
                for name in ('memory.save', ramfile.RAM_FILE, ramfile.RAM_INDEX, 'disk.raw'))))
    by_label = {f['label']: f for f in facts}
    if '256M' in runs and '8G' in runs:
        srows = []
        for path, title in (('stock', 'stock'), ('ram', 'RAM file')):
            small, big = runs['256M'][path], runs['8G'][path]
            app = med(big, 'app') / med(small, 'app')
            goal = path == 'ram'
            srows.append(('%s: call → app, 8 GiB ÷ 256 MiB' % title,
                          '%.3f%s' % (app, (' ' + testbed.verdict(app <= GOALS['scaling'])) if goal else ''),
                          'median %.2f s ÷ %.2f s (best %.2f ÷ %.2f)' % (
                              med(big, 'app'), med(small, 'app'), min(r['app'] for r in big),
                              min(r['app'] for r in small)),
                          '≤ %.1f' % GOALS['scaling'] if goal else ''))
            running = med(big, 'running') / med(small, 'running')
            srows.append(('%s: call → running, 8 GiB ÷ 256 MiB' % title, '%.3f' % running,
                          'median %.2f s ÷ %.2f s' % (med(big, 'running'), med(small, 'running')), ''))
        tables.append(testbed.table(('scaling with RAM size', 'ratio', 'reference (same run)', 'goal'), srows))
    if dens:
        s, r = dens['stock'], dens['ram']
        ratio = r['pss'] / s['pss']
        drop = r['drop'] / s['drop'] if s['drop'] else float('nan')
        drows = [
            ('total PSS of the %d QEMUs' % DENSITY_VMS, mib(s['pss']), mib(r['pss']),
             '%.3f %s' % (ratio, testbed.verdict(ratio <= GOALS['density'])), '≤ %.1f' % GOALS['density']),
            ('total RSS of the %d QEMUs' % DENSITY_VMS, mib(s['rss']), mib(r['rss']), '%.3f' % (r['rss'] / s['rss']),
             ''),
            ('host MemAvailable drop', mib(s['drop']), mib(r['drop']), '%.3f' % drop, ''),
            ('memory.ram in the page cache after', '', mib(r['ram_cached']), '', ''),
            ('resume all %d, one after the other (s)' % DENSITY_VMS, '%.1f' % s['elapsed'], '%.1f' % r['elapsed'],
             '%.3f' % (r['elapsed'] / s['elapsed']), ''),
        ]
        f = by_label.get(DENSITY_SIZE)
        tables.append(testbed.table(('density: %d VMs from one %s base%s' % (
            DENSITY_VMS, DENSITY_SIZE, ' (fill?%d)' % f['fill_mib'] if f else ''),
            'stock', 'RAM file', 'RAM file ÷ stock', 'goal'), drows))
        notes.append('density: measured 5 s after the last of the %d VMs answered; MemAvailable counts the '
                     'shared memory.ram pages in the page cache as available, PSS splits them among the VMs '
                     'mapping them.' % DENSITY_VMS)
    return tables, notes


# -- main -------------------------------------------------------------------------------

def parse_sizes(text):
    labels = [s.strip().upper() for s in text.split(',') if s.strip()]
    unknown = [s for s in labels if s not in SIZES]
    if unknown:
        raise argparse.ArgumentTypeError('unknown size(s) %s; choose from %s' % (unknown, ','.join(SIZES)))
    return labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=parse_sizes, default=list(SIZES),
                        help='guest RAM sizes, comma-separated, from %s (default: all)' % ','.join(SIZES))
    parser.add_argument('--quick', action='store_true', help='256M and 1G only')
    parser.add_argument('--repeat', type=int, default=3, help='cold resumes per size and path (default 3)')
    parser.add_argument('--no-density', action='store_true', help='skip the 10-VM density step')
    parser.add_argument('--keep', action='store_true', help='keep %s (bases, logs)' % WORK)
    parser.add_argument('--report', metavar='FILE', help='also write the conditions and tables to FILE')
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = list(QUICK)
    args.sizes = [label for label in SIZES if label in args.sizes]
    if os.geteuid() != 0:
        parser.error('run as root (libvirt qemu:///system, page cache eviction)')
    testbed.interrupt_on_sigterm()
    load_at_start = testbed.load_average()
    with open('/proc/meminfo') as f:
        info = {line.split(':')[0]: int(line.split()[1]) * 1024 for line in f}
    meminfo_at_start = (info['MemTotal'], info['MemAvailable'])

    testbed.start_libvirtd()
    image = testbed.guest_image()
    conn = hypervisor.connect()
    others = sorted(d.name() for d in conn.listAllDomains(1) if not d.name().startswith(PREFIX + '-'))
    if os.path.exists(WORK):
        shutil.rmtree(WORK)
    os.makedirs(os.path.join(WORK, 'instances'))
    os.makedirs(os.path.join(WORK, 'bases'))
    for path in (WORK, os.path.join(WORK, 'instances'), os.path.join(WORK, 'bases')):
        os.chmod(path, 0o755)   # QEMU runs as libvirt-qemu and must reach the files
    store = basestore.BaseStore(os.path.join(WORK, 'bases'))
    guests = testbed.Guests(conn, PREFIX, log, check_free=True)
    bases, facts, runs, dens = [], [], {}, None
    failed = True
    try:
        for label in args.sizes:
            base, f = make_base(conn, guests, image, WORK, store, label)
            bases.append(base)
            facts.append(f)
            runs[label] = measure_size(conn, guests, WORK, base, f, args.repeat)
        if not args.no_density:
            f = next((f for f in facts if f['label'] == DENSITY_SIZE), None)
            if f is None:
                base, f = make_base(conn, guests, image, WORK, store, DENSITY_SIZE)
                bases.append(base)
            else:
                base = bases[facts.index(f)]
            dens = density(conn, guests, WORK, base, f, DENSITY_VMS)
        log('verifying every base\'s RAM file (SHA-256)')
        for base in bases:
            ramfile.RamFile(base.path).verify()   # raises RamFileError if QEMU wrote to it
        lines = conditions(args, facts, load_at_start, meminfo_at_start, others)
        tables, notes = report(facts, runs, dens)
        text = '\n'.join(lines) + '\n\n' + '\n\n'.join(tables) + '\n\n' + '\n'.join(notes) + '\n'
        text += '\nRAM file unchanged: memory.ram of %d base(s) matches its SHA-256 after every run\n' % len(bases)
        text += 'bench run time %.0f s\n' % log.elapsed()
        print(text, end='')
        if args.report:
            with open(args.report, 'w') as out:
                out.write(text)
        failed = False
    finally:
        guests.destroy_all()
        if args.keep:
            log('kept %s' % WORK)
        else:
            shutil.rmtree(WORK, ignore_errors=True)
        if failed:
            log('FAILED (see the traceback)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
