#!/usr/bin/env python3
"""VM synthesis benchmark: overlay size, create/apply throughput, synthesis time.

Run as root on a host set up by tools/setup.sh (libvirtd, QEMU, the test guest):

    PYTHONPATH=. /opt/openstack-cloudlet/venv/bin/python bench/synthesis_bench.py [--keep] [--rate 25mbit]

Prints one table (ours next to the baselines, measured in this run) with the
conditions above it. See bench/README.md for what each row means.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives import hashes

# Run as a script: the repository on sys.path, for bench.testbed; that comes first
# because it puts tools/ there too (cloudlet_box, here and in bench.linkemu).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench import testbed                        # noqa: E402

from bench import baselines                      # noqa: E402
from bench import linkemu                        # noqa: E402
from cloudlet_box import netns_link              # noqa: E402
from cloudlet_engine import apply           # noqa: E402
from cloudlet_engine import basestore       # noqa: E402
from cloudlet_engine import basevm          # noqa: E402
from cloudlet_engine import capture         # noqa: E402
from cloudlet_engine import codecs          # noqa: E402
from cloudlet_engine import create          # noqa: E402
from cloudlet_engine import crypto          # noqa: E402
from cloudlet_engine import format as fmt   # noqa: E402
from cloudlet_engine import hypervisor      # noqa: E402
from cloudlet_engine import outbound        # noqa: E402
from cloudlet_engine import ramfile         # noqa: E402
from cloudlet_engine import synthesis       # noqa: E402

GUEST_MEMORY_MIB = 256
FILL_MB = 16
RAM_TOKEN = 'ram-bench-4711'
DISK_TOKEN = 'disk-bench-0815'
APP_TIMEOUT = 180.0
INSTALL_TIMEOUT = 600.0
MB = 1e6
PREPARED = 'prepared.json'

GOALS = {
    'vs_a': 0.25,            # ours <= 25 % of CMU's xdelta3 + LZMA baseline
    'vs_c': 1.05,            # ours <= 1.05 x zstd --patch-from
    'create_zstd': 100.0,    # MB/s per core of changed state
    'apply_zstd': 500.0,     # MB/s per core, uncompressed
    'apply_xz': 45.0,
    'link_ratio': 1.2,       # synthesis wall time / transfer floor
    'trust_ratio': 1.15,     # apply encrypted (or with a signature check) / apply plain, CPU
}

log = testbed.Log('bench', 6)


# -- measuring --------------------------------------------------------------------------

class CpuMeter:
    """Wall time and CPU seconds of this process plus its waited-for children."""

    def __enter__(self):
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._children = self._children_cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self._wall
        self.cpu = (time.process_time() - self._cpu) + (self._children_cpu() - self._children)

    @staticmethod
    def _children_cpu():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(8 << 20), b''):
            h.update(block)
    return h.hexdigest()


def fetch_discard(url, timeout=120):
    """Download `url` to nowhere; return (bytes, seconds)."""
    started = time.monotonic()
    count = 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while True:
            block = response.read(256 << 10)
            if not block:
                break
            count += len(block)
    return count, time.monotonic() - started


# -- guests -----------------------------------------------------------------------------

def _cpu_times():
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]           # idle + iowait
    return sum(fields[:8]), idle           # user .. steal


def host_busy(seconds=1.0):
    """Fraction of all cores busy over the next `seconds` (0.0 - 1.0)."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


class Neighbours:
    """Other activity on the host before each timed step: waits for quiet, records what it saw."""

    QUIET = 0.15    # at most this fraction of all cores busy (our process idles meanwhile)

    def __init__(self, conn, prefix, max_wait):
        self.conn, self.prefix, self.max_wait = conn, prefix, max_wait
        self.seen = {}

    def sample(self, step):
        deadline = time.monotonic() + self.max_wait
        busy = host_busy()
        if busy > self.QUIET and self.max_wait > 0:
            log('host busy (%.0f %% of the cores) before %s: waiting up to %d s for quiet'
                % (busy * 100, step, self.max_wait))
        while busy > self.QUIET and time.monotonic() < deadline:
            busy = host_busy(2.0)
        names = sorted(dom.name() for dom in self.conn.listAllDomains(1)   # 1: active
                       if not dom.name().startswith(self.prefix))
        self.seen[step] = (names, busy)
        if names or busy > self.QUIET:
            log('note: %s starts with %.0f %% of the cores busy; other guests: %s'
                % (step, busy * 100, ', '.join(names) or 'none'))

    def summary(self):
        return ('host activity before each timed step (other guests; share of all cores busy): %s'
                % '; '.join('%s: %s, %.0f %%' % (step, ', '.join(names) or 'none', busy * 100)
                            for step, (names, busy) in self.seen.items()))


def check_state(state, expected_app, where):
    wrong = {key: state.get(key) for key, want in
             (('ram', RAM_TOKEN), ('disk', DISK_TOKEN), ('app', expected_app)) if state.get(key) != want}
    if wrong:
        raise RuntimeError('%s: the app answered with the wrong state %s' % (where, wrong))


# -- the steps --------------------------------------------------------------------------

@dataclasses.dataclass
class Prepared:
    base: object
    disk_qcow2: str
    disk_raw: str
    memory_save: str
    app: str


def prepare(conn, guests, image, work):
    """Boot, capture a base, resume it, change it, save it (step 1)."""
    store = basestore.BaseStore(os.path.join(work, 'bases'))
    origin = guests.name('origin')
    fwd = testbed.forwards()
    log('booting the test guest (%d MiB, TCG)' % GUEST_MEMORY_MIB)
    testbed.boot_guest(conn, image, work, origin, fwd, GUEST_MEMORY_MIB)
    testbed.wait_for_state(fwd, APP_TIMEOUT)
    log('capturing the base')
    base = capture.capture_base(conn, origin, store, 'bench-base')
    guests.destroy(origin)

    changed = guests.name('changed')
    fwd = testbed.forwards()
    launch_dir = os.path.join(work, 'instances', changed)
    synthesis.synthesize(base, None, launch_dir, changed, port_forwards=fwd, conn=conn)
    testbed.wait_for_state(fwd, APP_TIMEOUT)
    log('resumed the base; installing the app in the guest')
    mark = time.monotonic()
    installed = testbed.app_call(fwd, '/cgi-bin/install', INSTALL_TIMEOUT)
    log('install took %.1f s; fill?%d' % (time.monotonic() - mark, FILL_MB))
    testbed.app_call(fwd, '/cgi-bin/fill?%d' % FILL_MB, INSTALL_TIMEOUT)
    state = testbed.app_call(fwd, '/cgi-bin/set?ram=%s&disk=%s' % (RAM_TOKEN, DISK_TOKEN), APP_TIMEOUT)
    check_state(state, installed['app'], 'after set')

    inputs = os.path.join(work, 'changed')
    os.makedirs(inputs)
    memory_save = os.path.join(inputs, 'memory.save')
    log('saving the changed VM')
    hypervisor.save_domain(hypervisor.lookup(conn, changed), memory_save)
    guests.destroy(changed)
    disk_qcow2 = os.path.join(inputs, 'disk.qcow2')
    shutil.move(os.path.join(launch_dir, apply.LAUNCH_DISK), disk_qcow2)
    shutil.rmtree(launch_dir)
    disk_raw = os.path.join(inputs, 'disk.raw')
    testbed.run('qemu-img', 'convert', '-O', 'raw', disk_qcow2, disk_raw)
    prep = Prepared(base, disk_qcow2, disk_raw, memory_save, installed['app'])
    with open(os.path.join(work, PREPARED), 'w') as f:
        json.dump({'base': base.path, 'disk_qcow2': disk_qcow2, 'disk_raw': disk_raw,
                   'memory_save': memory_save, 'app': installed['app']}, f, indent=1)
    return prep


def load_prepared(work):
    """The inputs a kept work directory holds (--reuse); everything else there is removed."""
    with open(os.path.join(work, PREPARED)) as f:
        data = json.load(f)
    for entry in os.listdir(work):
        if entry not in ('bases', 'changed', PREPARED):
            path = os.path.join(work, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    data['base'] = basevm.BaseVM(data['base'])
    return Prepared(**data)


@dataclasses.dataclass
class Runs:
    """Repeated runs of one measurement: the result and CPU/wall seconds of each."""
    result: object = None
    cpu: list = dataclasses.field(default_factory=list)
    wall: list = dataclasses.field(default_factory=list)

    def add(self, result, meter):
        if not self.cpu or meter.cpu < min(self.cpu):
            self.result = result
        self.cpu.append(meter.cpu)
        self.wall.append(meter.wall)

    @property
    def best_cpu(self):
        return min(self.cpu)

    def spread(self):
        return 'CPU %s s' % '/'.join('%.2f' % c for c in self.cpu)


def create_ours(prep, work, codec, repeat):
    """Create our overlay `repeat` times; keep the file and every run's times."""
    out = os.path.join(work, 'ours-%s.clo' % codec)
    scratch = os.path.join(work, 'scratch')
    os.makedirs(scratch, exist_ok=True)
    runs = Runs()
    for _ in range(repeat):
        base = basevm.BaseVM(prep.base.path)   # fresh: loading the indexes is part of creating
        with open(out + '.part', 'wb') as f, CpuMeter() as meter:
            stats = create.create_overlay(base, prep.disk_qcow2, prep.memory_save, f, codec=codec,
                                          workdir=scratch)
        runs.add(stats, meter)
    os.replace(out + '.part', out)
    log('ours %s: %d bytes; %.1f MB changed; %s; wall %.2f s'
        % (codec, os.path.getsize(out), runs.result.changed_bytes / MB, runs.spread(), min(runs.wall)))
    return out, runs


def apply_ours(prep, work, overlay, codec, repeat):
    """Apply `overlay` `repeat` times; check the result once; keep every run's times."""
    runs = Runs()
    for attempt in range(repeat):
        launch_dir = os.path.join(work, 'apply-%s' % codec)
        try:
            with open(overlay, 'rb') as f, CpuMeter() as meter:
                launch = apply.apply_overlay(prep.base, f, launch_dir)
            if attempt == 0:
                # Outside the measurement: the launch files must equal what was captured.
                if sha256_file(launch.memory_path) != sha256_file(prep.memory_save):
                    raise RuntimeError('applying the %s overlay gave a different memory image' % codec)
                testbed.run('qemu-img', 'compare', '-q', '-f', 'qcow2', '-F', 'raw', launch.disk_path, prep.disk_raw)
        finally:
            shutil.rmtree(launch_dir, ignore_errors=True)
        runs.add(launch, meter)
    log('apply %s: %.1f MB restored; %s' % (codec, runs.result.restored_bytes / MB, runs.spread()))
    return runs


class RsaPssVerifier:
    """What cursive's RSAVerifier does for an RSA-PSS/SHA-256 image signature (Glance's
    img_signature): hash every byte as it streams, one RSA verification at the end.
    """

    PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)

    def __init__(self, public_key, signature):
        self.public_key, self.signature = public_key, signature
        self.hasher = hashes.Hash(hashes.SHA256())

    def update(self, data):
        self.hasher.update(data)

    def verify(self):
        self.public_key.verify(self.signature, self.hasher.finalize(), self.PSS,
                               asym_utils.Prehashed(hashes.SHA256()))


def sign_file(private_key, path):
    """RSA-PSS/SHA-256 signature of the file's bytes (made outside any timing)."""
    digest = bytes.fromhex(sha256_file(path))
    return private_key.sign(digest, RsaPssVerifier.PSS, asym_utils.Prehashed(hashes.SHA256()))


APPLY_TRUST_RUNS = 15


def trust_costs(prep, work, repeat):
    """Encryption and signature checking, as ratios to the plain runs interleaved with them.

    create: zstd, plain and encrypted (AES-256-GCM) in turn; apply: the plain
    overlay, the encrypted one (the same content), and the plain one with an
    RSA-PSS/SHA-256 verifier (4096-bit key), in turn, the order reversed every
    other round. Best CPU of `repeat` each (at least APPLY_TRUST_RUNS for the
    applies: a few percent are measured, and an apply takes a fraction of a second).
    """
    key = crypto.new_key()
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    encrypted = os.path.join(work, 'trust-encrypted.clo')
    plain_overlay = os.path.join(work, 'trust-plain.clo')
    scratch = os.path.join(work, 'scratch')
    os.makedirs(scratch, exist_ok=True)
    created = {'plain': Runs(), 'encrypted': Runs()}
    for attempt in range(repeat):
        for kind in ('plain', 'encrypted')[::1 if attempt % 2 == 0 else -1]:
            out = encrypted if kind == 'encrypted' else plain_overlay
            base = basevm.BaseVM(prep.base.path)
            with open(out, 'wb') as f, CpuMeter() as meter:
                stats = create.create_overlay(base, prep.disk_qcow2, prep.memory_save, f, codec='zstd',
                                              workdir=scratch, key=key if kind == 'encrypted' else None)
            created[kind].add(stats, meter)
    signature = sign_file(private_key, plain_overlay)
    applied = {'plain': Runs(), 'encrypted': Runs(), 'signed': Runs()}
    for attempt in range(max(repeat, APPLY_TRUST_RUNS)):
        for kind in ('plain', 'encrypted', 'signed')[::1 if attempt % 2 == 0 else -1]:
            launch_dir = os.path.join(work, 'apply-trust-%s' % kind)
            verifier = RsaPssVerifier(private_key.public_key(), signature) if kind == 'signed' else None
            try:
                with open(encrypted if kind == 'encrypted' else plain_overlay, 'rb') as f, CpuMeter() as meter:
                    launch = apply.apply_overlay(prep.base, f, launch_dir, key=key if kind == 'encrypted' else None,
                                                 verifier=verifier)
                if attempt == 0 and sha256_file(launch.memory_path) != sha256_file(prep.memory_save):
                    raise RuntimeError('applying the %s overlay gave a different memory image' % kind)
            finally:
                shutil.rmtree(launch_dir, ignore_errors=True)
            applied[kind].add(launch, meter)
    result = {'created': created, 'applied': applied, 'bytes': {'plain': os.path.getsize(plain_overlay),
                                                                'encrypted': os.path.getsize(encrypted)},
              'alone': crypto_alone(plain_overlay, encrypted, key, private_key, signature,
                                    max(repeat, APPLY_TRUST_RUNS))}
    log('trust: create plain %s, encrypted %s; apply plain %s, encrypted %s, signed %s'
        % (created['plain'].spread(), created['encrypted'].spread(), applied['plain'].spread(),
           applied['encrypted'].spread(), applied['signed'].spread()))
    for path in (plain_overlay, encrypted):
        os.unlink(path)
    return result


def _best_cpu(function, repeat):
    best = None
    for _ in range(repeat):
        with CpuMeter() as meter:
            function()
        best = meter.cpu if best is None else min(best, meter.cpu)
    return best


def crypto_alone(plain_overlay, encrypted, key, private_key, signature, repeat):
    """CPU seconds of the added work by itself, less noisy than a ratio of two applies:
    encryption (rewriting the plain overlay's segments encrypted minus rewriting them plain),
    decryption (reading the encrypted overlay's segments minus reading the plain one's)
    and the signature check (SHA-256 of the file + one RSA-PSS verification).
    """
    def read(path, key=None):
        with open(path, 'rb') as f:
            for _ in fmt.OverlayReader(f, key=key).segments():
                pass

    def check():
        verifier = RsaPssVerifier(private_key.public_key(), signature)
        with open(plain_overlay, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                verifier.update(block)
        verifier.verify()

    def rewrite(key=None):
        with open(plain_overlay, 'rb') as src, open(os.devnull, 'wb') as out:
            reader = fmt.OverlayReader(src)
            writer = fmt.OverlayWriter(out, reader.meta, key=key)
            for seg in reader.segments():
                writer.add_segment(seg.codec, seg.delta, seg.item_count, seg.items_raw_len, seg.items_stored,
                                   seg.data_raw_len, seg.data_stored)
            writer.finish()

    read_plain = _best_cpu(lambda: read(plain_overlay), repeat)
    return {'encrypt': max(0.0, _best_cpu(lambda: rewrite(key), repeat) - _best_cpu(rewrite, repeat)),
            'decrypt': max(0.0, _best_cpu(lambda: read(encrypted, key), repeat) - read_plain),
            'verify': _best_cpu(check, repeat)}


def trust_rows(trust):
    """Table rows: the cost of encryption and of a signature check, as ratios."""
    created, applied = trust['created'], trust['applied']
    ratio = lambda runs, kind: runs[kind].best_cpu / runs['plain'].best_cpu
    goal = GOALS['trust_ratio']
    rows = [
        ('create encrypted (AES-256-GCM) ÷ plain, CPU', '%.3f' % ratio(created, 'encrypted'), '',
         'CPU %.2f s ÷ %.2f s (zstd); encryption alone %.1f ms = %.3f × plain create; +%d B on %d B' % (
             created['encrypted'].best_cpu, created['plain'].best_cpu, trust['alone']['encrypt'] * 1000,
             trust['alone']['encrypt'] / created['plain'].best_cpu,
             trust['bytes']['encrypted'] - trust['bytes']['plain'], trust['bytes']['plain']), ''),
    ]
    plain = applied['plain'].best_cpu
    for kind, label, alone, what in (
            ('encrypted', 'apply encrypted (AES-256-GCM) ÷ plain, CPU', trust['alone']['decrypt'], 'decryption'),
            ('signed', 'apply + RSA-PSS/SHA-256 check ÷ plain, CPU', trust['alone']['verify'],
             'SHA-256 + RSA verify')):
        r = ratio(applied, kind)
        rows.append((label, '%.3f %s' % (r, testbed.verdict(r <= goal)), '',
                     'CPU %.3f s ÷ %.3f s (zstd), runs interleaved; %s alone %.1f ms = %.3f × plain apply'
                     % (applied[kind].best_cpu, plain, what, alone * 1000, alone / plain),
                     '≤ %.2f' % goal))
    return rows


def create_vs_tools(prep, work, stats, repeat):
    """CPU seconds of `zstd -3` and `xz -6` on the changed state create encoded (best of `repeat`)."""
    path = os.path.join(work, 'changed-state.bin')
    try:
        counts = baselines.write_changed_state(prep.base, prep.disk_qcow2, prep.memory_save, path)
        if counts != (stats.memory_pages_changed, stats.disk_chunks_changed):
            raise RuntimeError('changed state: %d pages and %d disk chunks, create counted %d and %d'
                               % (counts + (stats.memory_pages_changed, stats.disk_chunks_changed)))
        result = {'bytes': os.path.getsize(path)}
        for tool, argv in baselines.CREATE_TOOLS.items():
            result[tool] = baselines.best_tool_cpu(argv, path, repeat)
            log('%s of the changed state (%.1f MB): CPU %.2f s' % (' '.join(argv[:2]), result['bytes'] / MB,
                                                                  result[tool]))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return result


def apply_vs_tool(prep, work, overlay, repeat):
    """CPU seconds of `zstd -d` / `xz -d` on `overlay`'s segment payloads (best of `repeat`)."""
    directory = tempfile.mkdtemp(prefix='payloads-', dir=work)
    packed = directory + '.packed'
    try:
        tool, level, paths, raw = baselines.write_segment_payloads(prep.base, overlay, directory)
        size = baselines.compress_payloads(tool, level, paths, packed)
        argv = baselines.APPLY_TOOLS[tool]
        if baselines.tool_output_size(argv, packed) != raw:
            raise RuntimeError('%s of the payloads does not give their %d bytes' % (' '.join(argv[:2]), raw))
        cpu = baselines.best_tool_cpu(argv, packed, repeat)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if os.path.exists(packed):
            os.unlink(packed)
    log('%s -d of the payloads (%.1f MB, %d files -%d: %.1f MB): CPU %.2f s'
        % (tool, raw / MB, len(paths), level, size / MB, cpu))
    return {'tool': tool, 'level': level, 'raw': raw, 'packed': size, 'cpu': cpu}


def overlay_split(path):
    """Stored bytes of an overlay's memory segments and disk segments (headers left out)."""
    split = {'memory': 0, 'disk': 0}
    with open(path, 'rb') as f:
        for segment in fmt.OverlayReader(f).segments():
            items = fmt.decode_items(codecs.decompress(segment.codec, segment.items_stored,
                                                       segment.items_raw_len, 'items'), segment.item_count)
            memory_items = sum(1 for item in items if item.kind >= fmt.MEM_BYTES)
            split['memory' if 2 * memory_items >= len(items) else 'disk'] += \
                len(segment.items_stored) + len(segment.data_stored)
    return split


def run_baselines(prep, work):
    out = os.path.join(work, 'baselines')
    os.makedirs(out)
    base = prep.base
    a_jobs, window = baselines.cmu_jobs(out, base.disk_path, prep.disk_raw, base.memory_path, prep.memory_save)
    b_jobs = baselines.naive_jobs(out, prep.disk_qcow2, prep.memory_save)
    c_jobs = baselines.patch_from_jobs(out, base.disk_path, prep.disk_raw, base.memory_path, prep.memory_save)
    by_part = {(j.baseline, j.part): j for j in a_jobs + b_jobs + c_jobs}
    # Longest first, so that the two workers finish together.
    order = [('b', 'memory'), ('c', 'memory'), ('a', 'memory'), ('c', 'disk'), ('a', 'disk'), ('b', 'disk')]
    log('baselines: %d jobs, 2 at a time, each single-threaded (xdelta3 -B %d)' % (len(order), window))
    baselines.run_jobs([by_part[key] for key in order], workers=2, log=log)
    sizes = {}
    for (name, part), job in by_part.items():
        sizes.setdefault(name, {})[part] = job.size
        os.unlink(job.output)
    return sizes, window


def synthesize_over_link(prep, conn, guests, work, overlay, rate):
    """Step 5: serve the overlay from a shaped namespace, synthesize from it."""
    www = os.path.join(work, 'www')
    os.makedirs(www)
    os.link(overlay, os.path.join(www, 'app.clo'))
    size = os.path.getsize(overlay)
    result = {'bytes': size}
    with linkemu.EmulatedLink(rate=rate) as link:
        result['qdisc'] = link.qdisc()
        base_url = link.serve_directory(www, log_path=os.path.join(work, 'httpd.log'))
        url = base_url + '/app.clo'
        log('link up: %s; plain download of %d bytes' % (result['qdisc'], size))
        got, result['download'] = fetch_discard(url)
        if got != size:
            raise RuntimeError('plain download got %d of %d bytes' % (got, size))
        for ram_file in (False, True):
            # Stock (a full launch memory image), then over the base's RAM file.
            name = guests.name('link-ram' if ram_file else 'link')
            fwd = testbed.forwards()
            if ram_file:
                # Once per base and host, like fetching the base: not part of the synthesis.
                made = time.monotonic()
                ramfile.convert(prep.base, owner=hypervisor.qemu_owner(conn.getCapabilities(),
                                                                        hypervisor.virt_type()))
                result['ram_file_made'] = time.monotonic() - made
            log('synthesis from %s%s' % (url, ' over the RAM file' if ram_file else ''))
            started = time.monotonic()
            # The emulated link's server is on a private address: the bench fetches for its own user.
            synthesized = synthesis.synthesize(prep.base, url, os.path.join(work, 'instances', name), name,
                                               port_forwards=fwd, conn=conn, policy=outbound.OPEN,
                                               ram_file=ram_file)
            run = {'synthesis': time.monotonic() - started}
            state = testbed.wait_for_state(fwd, APP_TIMEOUT)
            run['app'] = time.monotonic() - started
            check_state(state, prep.app, 'synthesis over the link')
            if synthesized.overlay_bytes != size:
                raise RuntimeError('synthesis read %d of %d overlay bytes' % (synthesized.overlay_bytes, size))
            run['timings'] = synthesized.timings
            if ram_file:
                result['ram_file'] = run
            else:
                result.update(run)
            guests.destroy(name)
            shutil.rmtree(os.path.join(work, 'instances', name))
    return result


def local_vs_cold_boot(prep, conn, guests, image, work, overlay):
    """Step 6: local-file synthesis -> app answers, vs cold boot -> app answers."""
    name = guests.name('local')
    fwd = testbed.forwards()
    started = time.monotonic()
    synthesized = synthesis.synthesize(prep.base, overlay, os.path.join(work, 'instances', name), name,
                                       port_forwards=fwd, conn=conn)
    restored = time.monotonic() - started
    state = testbed.wait_for_state(fwd, APP_TIMEOUT)
    local = time.monotonic() - started
    check_state(state, prep.app, 'local synthesis')
    guests.destroy(name)
    shutil.rmtree(synthesized.launch_dir)
    log('local synthesis: restored after %.2f s, app answered after %.2f s' % (restored, local))

    name = guests.name('cold')
    fwd = testbed.forwards()
    started = time.monotonic()
    testbed.boot_guest(conn, image, work, name, fwd, GUEST_MEMORY_MIB)
    state = testbed.wait_for_state(fwd, APP_TIMEOUT)
    cold = time.monotonic() - started
    guests.destroy(name)
    log('cold boot: app answered after %.2f s' % cold)
    return {'local_restore': restored, 'local_app': local, 'cold_boot': cold}


# -- the report -------------------------------------------------------------------------

def conditions(prep, rate, changed_bytes):
    base = prep.base
    lines = testbed.conditions_head(_load_at_start) + [
        'guest       %d MiB RAM, disk %.0f MiB (raw base), base memory image %.1f MB'
        % (GUEST_MEMORY_MIB, base.disk_size / 2**20, base.memory_size / MB),
        'changes     app installed (/cgi-bin/install) + fill?%d + ram/disk tokens; changed memory image '
        '%.1f MB, qcow2 top layer %.1f MB; changed state (create stats) %.1f MB'
        % (FILL_MB, os.path.getsize(prep.memory_save) / MB, os.path.getsize(prep.disk_qcow2) / MB,
           changed_bytes / MB),
        'link        veth to a private netns, tc tbf rate %s burst 32kbit latency 400ms (server -> client)'
        % rate,
        'units       MB = 10^6 bytes; "per core" = per CPU second (user + system, this process + children)',
    ]
    return lines


def render(rows):
    return testbed.table(('measure', 'ours zstd', 'ours xz', 'reference (same run)', 'goal'), rows)


def report(rate, sizes, window, ours, created, applied, tools, link, boot, trust):
    """The table, and notes under it; `created`/`applied`: codec -> Runs; `tools`: the
    speed baselines (create_vs_tools, and codec -> apply_vs_tool under 'apply'); `trust`:
    trust_costs().
    """
    size = {codec: os.path.getsize(path) for codec, path in ours.items()}
    total = {name: parts['disk'] + parts['memory'] for name, parts in sizes.items()}
    mbs = lambda n: '%.2f MB' % (n / MB)
    parts = lambda name: '%s = %d B (disk %s + memory %s)' % (
        mbs(total[name]), total[name], mbs(sizes[name]['disk']), mbs(sizes[name]['memory']))
    codecs_ = ('zstd', 'xz')

    def vs(name, goal=None):
        cells = []
        for codec in codecs_:
            r = size[codec] / total[name]
            cells.append('%.3f' % r + (' %s' % testbed.verdict(r <= goal) if goal else ''))
        return cells

    changed = created['zstd'].result.changed_bytes
    c_rate = {codec: created[codec].result.changed_bytes / MB / created[codec].best_cpu for codec in codecs_}
    c_tool = tools['create']
    a_tool = tools['apply']
    restored = applied['zstd'].result.restored_bytes
    a_rate = {codec: applied[codec].result.restored_bytes / MB / applied[codec].best_cpu for codec in codecs_}
    floor = link['bytes'] * 8 / netns_link.rate_bits(rate)
    link_ratio = link['synthesis'] / floor
    plain_mbps = link['bytes'] * 8 / link['download'] / 1e6
    rows = [
        ('overlay size', '%s (%d B)' % (mbs(size['zstd']), size['zstd']),
         '%s (%d B)' % (mbs(size['xz']), size['xz']), '', ''),
        ['  ÷ (a) CMU: xdelta3 -9 -S none -B %d, then xz -9' % window] + vs('a', GOALS['vs_a'])
        + [parts('a'), '≤ %.2f' % GOALS['vs_a']],
        ['  ÷ (b) naive: qcow2 top layer + save file, each xz -6'] + vs('b') + [parts('b'), ''],
        ['  ÷ (c) zstd -19 --long=27 --patch-from=base'] + vs('c', GOALS['vs_c'])
        + [parts('c'), '≤ %.2f' % GOALS['vs_c']],
        ('  (c) ÷ (a)', '', '', '%.3f' % (total['c'] / total['a']), ''),
        ('create, MB/s per core of changed state',
         '%.0f %s' % (c_rate['zstd'], testbed.verdict(c_rate['zstd'] >= GOALS['create_zstd'])), '%.1f' % c_rate['xz'],
         'stats.changed_bytes %s; CPU %.2f s (zstd), %.2f s (xz)'
         % (mbs(changed), created['zstd'].best_cpu, created['xz'].best_cpu),
         '≥ %.0f (zstd)' % GOALS['create_zstd']),
        ('  CPU ÷ zstd -3 (xz -6) of the changed state',
         '%.2f' % (created['zstd'].best_cpu / c_tool['zstd']), '%.2f' % (created['xz'].best_cpu / c_tool['xz']),
         'the same %s: CPU %.3f s (zstd -3), %.2f s (xz -6)' % (mbs(c_tool['bytes']), c_tool['zstd'], c_tool['xz']),
         ''),
        ('apply, MB/s per core (uncompressed)',
         '%.0f %s' % (a_rate['zstd'], testbed.verdict(a_rate['zstd'] >= GOALS['apply_zstd'])),
         '%.1f %s' % (a_rate['xz'], testbed.verdict(a_rate['xz'] >= GOALS['apply_xz'])),
         'launch.restored_bytes %s; CPU %.2f s (zstd), %.2f s (xz)'
         % (mbs(restored), applied['zstd'].best_cpu, applied['xz'].best_cpu),
         '≥ %.0f zstd, ≥ %.0f xz' % (GOALS['apply_zstd'], GOALS['apply_xz'])),
        ('  CPU ÷ zstd -d (xz -d) of the segment payloads',
         '%.2f' % (applied['zstd'].best_cpu / a_tool['zstd']['cpu']),
         '%.2f' % (applied['xz'].best_cpu / a_tool['xz']['cpu']),
         'payloads %s (zstd), %s (xz): CPU %.3f s (zstd -d), %.3f s (xz -d)'
         % (mbs(a_tool['zstd']['raw']), mbs(a_tool['xz']['raw']), a_tool['zstd']['cpu'], a_tool['xz']['cpu']),
         ''),
    ] + trust_rows(trust) + [
        ('synthesis over %s: call → restore done' % rate, '%.2f s' % link['synthesis'], '',
         'transfer floor %.2f s = %s × 8 / %s' % (floor, mbs(link['bytes']), rate), ''),
        ('  = fetch + apply, + restore (libvirt)', '%.2f s + %.2f s' % (link['timings']['fetch_and_apply'],
                                                                      link['timings']['restore']), '', '', ''),
        ('  ÷ transfer floor', '%.3f %s' % (link_ratio, testbed.verdict(link_ratio <= GOALS['link_ratio'])), '',
         '', '≤ %.1f' % GOALS['link_ratio']),
        ('  over the base\'s RAM file: call → restore done', '%.2f s' % link['ram_file']['synthesis'], '',
         'fetch + apply %.2f s, + restore %.2f s (the RAM file made before, in %.2f s)'
         % (link['ram_file']['timings']['fetch_and_apply'], link['ram_file']['timings']['restore'],
            link['ram_file_made']), ''),
        ('    ÷ transfer floor', '%.3f %s' % (link['ram_file']['synthesis'] / floor,
                                            testbed.verdict(link['ram_file']['synthesis'] / floor <= 1.1)), '', '',
         '≤ 1.1'),
        ('    call → app answers', '%.2f s' % link['ram_file']['app'], '', '', ''),
        ('  ÷ plain download of the overlay', '%.3f' % (link['synthesis'] / link['download']), '',
         'plain download %.2f s = %.2f Mbit/s goodput' % (link['download'], plain_mbps), ''),
        ('  call → app answers (right ram/disk/app)', '%.2f s' % link['app'], '', '', ''),
        ('local overlay file: call → restore done', '%.2f s' % boot['local_restore'], '', '', ''),
        ('  call → app answers (right ram/disk/app)', '%.2f s' % boot['local_app'], '',
         'cold boot: start → app answers %.2f s' % boot['cold_boot'], ''),
        ('  ÷ cold boot', '%.3f' % (boot['local_app'] / boot['cold_boot']), '', '', ''),
    ]
    stats = created['zstd'].result
    split = overlay_split(ours['zstd'])
    notes = [
        'ours zstd: memory segments %s, disk segments %s; RAM pages %d (stored as data %d), disk chunks changed '
        '%d (stored as data %d); copied from base memory %d, base disk %d, the overlay itself %d'
        % (mbs(split['memory']), mbs(split['disk']), stats.memory_pages, stats.memory_pages_data,
           stats.disk_chunks_changed, stats.disk_chunks_data, stats.from_base_memory, stats.from_base_disk,
           stats.from_self),
        'create/apply: best of %d runs by CPU time; every run: create %s (zstd), %s (xz); apply %s (zstd), %s (xz)'
        % (len(created['zstd'].cpu), created['zstd'].spread(), created['xz'].spread(),
           applied['zstd'].spread(), applied['xz'].spread()),
        'tools: Debian CLIs, single-threaded, output discarded, best of up to %d runs by CPU time (a run past '
        '20 s counts once), right after ours; "CPU ÷" = our CPU seconds ÷ the tool\'s on the same bytes; create: '
        'the changed state (%s: the RAM pages and disk chunks that differ from the base at their place); apply: '
        'each segment\'s items and data as our codec decodes them, recompressed by the tool at the overlay\'s '
        'level (zstd -%d: %s, xz -%d: %s), one frame per payload'
        % (len(created['zstd'].cpu), mbs(c_tool['bytes']), a_tool['zstd']['level'], mbs(a_tool['zstd']['packed']),
           a_tool['xz']['level'], mbs(a_tool['xz']['packed'])),
        'baselines: each tool single-threaded, disk and memory jobs 2 at a time; (a) whole raw disk and '
        'whole save image, (b) the files as they are, (c) raw disk and save image against the base files.',
    ]
    return render(rows) + '\n\n' + '\n'.join(notes)


# -- main -------------------------------------------------------------------------------

_load_at_start = ''


def main(argv=None):
    global _load_at_start
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    parser.add_argument('--rate', default='25mbit', help='emulated link rate, tc syntax (default 25mbit)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='create/apply runs per codec; the fastest counts (default 3)')
    parser.add_argument('--quiet-wait', type=float, default=30, metavar='SECONDS',
                        help='before each timed step, wait up to this long for the host to be idle (default 30)')
    parser.add_argument('--report', metavar='FILE', help='also write the conditions and table to FILE')
    parser.add_argument('--workdir-parent', default='/var/tmp')
    parser.add_argument('--trust-only', action='store_true',
                        help='after step 1, measure only the cost of encryption and of a signature check')
    parser.add_argument('--reuse', metavar='WORKDIR',
                        help='skip step 1: reuse the base and changed VM of a run kept with --keep '
                             '(for working on the later steps; the directory is kept)')
    args = parser.parse_args(argv)
    try:
        netns_link.rate_bits(args.rate)
    except netns_link.LinkError as exc:
        parser.error(str(exc))
    if os.geteuid() != 0:
        parser.error('run as root (libvirt qemu:///system, network namespaces)')
    testbed.interrupt_on_sigterm()
    _load_at_start = testbed.load_average()

    testbed.start_libvirtd()
    image = testbed.guest_image()
    conn = hypervisor.connect()
    if args.reuse:
        work = os.path.abspath(args.reuse)
        args.keep = True
    else:
        work = tempfile.mkdtemp(prefix='cloudlet-bench-', dir=args.workdir_parent)
        os.chmod(work, 0o755)   # QEMU runs as libvirt-qemu and must reach the files
    guests = testbed.Guests(conn, 'clbench-%d' % os.getpid(), log)
    neighbours = Neighbours(conn, guests.prefix, args.quiet_wait)
    log('work directory %s' % work)
    try:
        prep = load_prepared(work) if args.reuse else prepare(conn, guests, image, work)
        if args.trust_only:
            neighbours.sample('trust')
            trust = trust_costs(prep, work, args.repeat)
            text = '\n'.join(conditions(prep, args.rate, trust['created']['plain'].result.changed_bytes)
                             + [neighbours.summary()]) + '\n\n' + render(trust_rows(trust)) + '\n'
            print(text, end='')
            if args.report:
                with open(args.report, 'w') as f:
                    f.write(text)
            return 0
        ours, created, applied = {}, {}, {}
        neighbours.sample('create')
        for codec in ('zstd', 'xz'):
            ours[codec], created[codec] = create_ours(prep, work, codec, args.repeat)
        tools = {'create': create_vs_tools(prep, work, created['zstd'].result, args.repeat), 'apply': {}}
        neighbours.sample('apply')
        for codec in ('zstd', 'xz'):
            applied[codec] = apply_ours(prep, work, ours[codec], codec, args.repeat)
            tools['apply'][codec] = apply_vs_tool(prep, work, ours[codec], args.repeat)
        neighbours.sample('trust')
        trust = trust_costs(prep, work, args.repeat)
        sizes, window = run_baselines(prep, work)
        neighbours.sample('link')
        link = synthesize_over_link(prep, conn, guests, work, ours['zstd'], args.rate)
        log('over the link: restore done %.2f s, app %.2f s, plain download %.2f s'
            % (link['synthesis'], link['app'], link['download']))
        neighbours.sample('local/cold boot')
        boot = local_vs_cold_boot(prep, conn, guests, image, work, ours['zstd'])
        lines = conditions(prep, args.rate, created['zstd'].result.changed_bytes) + [neighbours.summary()]
        text = '\n'.join(lines) + '\n\n' + \
            report(args.rate, sizes, window, ours, created, applied, tools, link, boot, trust) + '\n'
        text += '\ntotal run time %.0f s\n' % log.elapsed()
        print(text, end='')
        if args.report:
            with open(args.report, 'w') as f:
                f.write(text)
        return 0
    finally:
        guests.destroy_all()
        conn.close()
        if args.keep:
            log('kept %s' % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
