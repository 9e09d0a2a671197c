"""Baselines run with the stock command-line tools: overlay sizes, and speeds.

Each baseline is a list of jobs (one per file: the disk and the memory image);
a job is a short pipeline of commands whose last output file is what would
travel. Jobs are independent, so `run_jobs` runs them in parallel (one process
per core) with every tool single-threaded: the outputs are byte for byte what
the plain commands produce.

(a) CMU's baseline (Elijah, MobiSys'13): whole-image `xdelta3 -e -9 -S none -B
    <window>` of the changed raw disk against the base disk and of the changed
    memory image against the base memory image, then LZMA (`xz -9`).
(b) naive: the qcow2 top layer and the libvirt save file, each `xz` (-6).
(c) `zstd -19 --long=27 --patch-from=<base file>`: close to the information floor.

Speed baselines (`tool_cpu`): the Debian `zstd` and `xz` on the same bytes as
ours, timed in the same run, so that a speed is stated as a ratio that
carries over between days (this machine's speed varies by up to 2x):
- create vs `zstd -3` and `xz -6` of the changed state (`write_changed_state`);
- apply vs `zstd -d` and `xz -d` of the overlay's segment payloads
  (`write_segment_payloads`, `compress_payloads`).
"""

import concurrent.futures
import dataclasses
import lzma
import os
import subprocess
import tempfile
import time

from cloudlet_engine import chunks
from cloudlet_engine import codecs
from cloudlet_engine import create
from cloudlet_engine import format as fmt
from cloudlet_engine import migstream
from cloudlet_engine import savefile

ZSTD, XZ = '/usr/bin/zstd', '/usr/bin/xz'
# Compressors timed against create, on the changed state; single-threaded like create.
CREATE_TOOLS = {'zstd': [ZSTD, '-3', '-T1', '-q', '-c'], 'xz': [XZ, '-6', '-T1', '-c']}
# Decompressors timed against apply, each on its codec's payloads.
APPLY_TOOLS = {'zstd': [ZSTD, '-d', '-q', '-c'], 'xz': [XZ, '-d', '-T1', '-c']}


@dataclasses.dataclass
class Job:
    baseline: str          # 'a', 'b' or 'c'
    part: str              # 'disk' or 'memory'
    commands: list         # argv lists, run in order
    output: str            # the file whose size counts
    temporaries: list = dataclasses.field(default_factory=list)
    size: int = 0
    seconds: float = 0.0


def window_size(*paths):
    """A power of two ≥ every file: an xdelta3 -B that keeps the whole source in the window."""
    largest = max(os.path.getsize(p) for p in paths)
    return 1 << max(20, (largest - 1).bit_length())


def cmu_jobs(workdir, base_disk, changed_disk_raw, base_memory, changed_memory):
    window = window_size(base_disk, base_memory)
    jobs = []
    for part, source, target in (('disk', base_disk, changed_disk_raw),
                                 ('memory', base_memory, changed_memory)):
        vcdiff = os.path.join(workdir, 'a-%s.vcdiff' % part)
        jobs.append(Job('a', part, [
            ['xdelta3', '-e', '-9', '-S', 'none', '-B', str(window), '-f', '-s', source, target, vcdiff],
            ['xz', '-9', '-T1', '-k', '-f', vcdiff],
        ], vcdiff + '.xz', [vcdiff]))
    return jobs, window


def naive_jobs(workdir, changed_disk_qcow2, changed_memory):
    jobs = []
    for part, path in (('disk', changed_disk_qcow2), ('memory', changed_memory)):
        out = os.path.join(workdir, 'b-%s.xz' % part)
        jobs.append(Job('b', part, [['xz', '-6', '-T1', '-c', path]], out))
    return jobs


def patch_from_jobs(workdir, base_disk, changed_disk_raw, base_memory, changed_memory):
    jobs = []
    for part, source, target in (('disk', base_disk, changed_disk_raw),
                                 ('memory', base_memory, changed_memory)):
        out = os.path.join(workdir, 'c-%s.zst' % part)
        # zstd refuses a dictionary (the base) larger than its default memory limit.
        memory_limit = max(os.path.getsize(source), os.path.getsize(target))
        jobs.append(Job('c', part, [
            ['zstd', '-19', '--long=27', '-T1', '--memory=%d' % memory_limit,
             '--patch-from=%s' % source, '-q', '-f', target, '-o', out],
        ], out))
    return jobs


def _run_job(job):
    started = time.monotonic()
    for argv in job.commands:
        if '-c' in argv and argv[0] == 'xz':
            with open(job.output, 'wb') as out:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=False)
        else:
            proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode:
            raise RuntimeError('%s failed (%d): %s' % (' '.join(argv), proc.returncode,
                                                       proc.stderr.decode(errors='replace').strip()[:500]))
    job.size = os.path.getsize(job.output)
    job.seconds = time.monotonic() - started
    for path in job.temporaries:
        os.unlink(path)
    return job


def run_jobs(jobs, workers=2, log=None):
    """Run the jobs, `workers` at a time, longest first; return them with sizes."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_job, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            job = future.result()
            if log:
                log('baseline (%s) %s: %d bytes in %.1f s' % (job.baseline, job.part, job.size, job.seconds))
    return jobs


# -- speed baselines --------------------------------------------------------------------

def tool_cpu(argv, path):
    """CPU seconds (user + system) of `argv path`, its output discarded; that child's own
    rusage, so nothing else this process runs meanwhile counts.
    """
    with open(os.devnull, 'wb') as sink, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv) + [path], stdin=subprocess.DEVNULL, stdout=sink, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise RuntimeError('%s failed (%d): %s' % (' '.join(map(str, argv + [path])), proc.returncode,
                                                       err.read().decode(errors='replace').strip()[:500]))
    return usage.ru_utime + usage.ru_stime


def best_tool_cpu(argv, path, repeat, once_past=20.0):
    """The least CPU seconds of up to `repeat` runs of `argv path`. A run past `once_past`
    seconds is not repeated: it spans many scheduler periods, so its noise averages out,
    and repeating it (xz -6 of the changed state: ~40 s) would take minutes.
    """
    best = None
    for _ in range(repeat):
        cpu = tool_cpu(argv, path)
        best = cpu if best is None else min(best, cpu)
        if cpu > once_past:
            break
    return best


def tool_output_size(argv, path):
    """Bytes `argv path` writes: checks, outside any timing, what the tool was given."""
    proc = subprocess.run(list(argv) + [path], stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode:
        raise RuntimeError('%s failed: %s' % (' '.join(argv + [path]), proc.stderr.decode(errors='replace')))
    return len(proc.stdout)


def write_changed_state(base, disk_path, memory_path, out_path):
    """The changed state create encodes, as bytes: every RAM page of the save image
    that differs from the base page at its address (save-image order), then every
    disk chunk that differs from the base chunk at its offset (zeroed ones as
    zeros), the order create walks them. Returns (memory pages, disk chunks): what
    CreateStats.memory_pages_changed and disk_chunks_changed count.
    """
    by_key, _ = base.memory_index()
    image = savefile.read_save_image(memory_path)
    pages = disk = 0
    with open(out_path, 'wb') as out:
        with open(memory_path, 'rb') as f:
            for piece in migstream.scan_stream(f, image.stream_offset, image.file_size):
                if isinstance(piece, migstream.Opaque):
                    continue
                data = os.pread(f.fileno(), chunks.CHUNK, piece.file_offset)
                same_place = by_key.get(migstream.page_key(piece.block, piece.addr))
                if same_place is None or same_place[1] != chunks.digest(data):
                    out.write(data)
                    pages += 1
        for offset, data in create.iter_disk_chunks(base, disk_path):
            data = chunks.ZERO_CHUNK if data is None else data
            if chunks.digest(data) != base.disk_digest(offset):
                out.write(data)
                disk += 1
    return pages, disk


# Apply: `zstd -d` / `xz -d` of the overlay's segment payloads. The stored
# payloads cannot go to the CLI as they are: a zstd data area is usually a
# frame against a raw dictionary (the segment's counterparts, a different one
# per segment, and the CLI takes one per process: a process per segment would
# time start-up, not decoding), and an xz data area is often a VCDIFF only
# xdelta3 turns into data. So each payload is taken as the codec decodes it
# (the items table; the data area: raw data, or the VCDIFF of an xdelta3
# segment), compressed again by the tool in the overlay's format and level
# (zstd frames without a checksum, xz streams with CRC64, as ours), one frame
# or stream per payload as in the overlay, concatenated into one file: the
# tool decodes what our codec stage decodes, with the same framing, in one
# process. What it does not do is ours on top: dictionaries, xdelta3, items,
# copies from the base, writing the launch disk and memory image.

def write_segment_payloads(base, overlay_path, directory):
    """Each segment's payloads as its codec decodes them, one file each, in overlay
    order. Returns (codec name, level, [paths], total bytes).
    """
    paths, total, codec = [], 0, None
    with open(base.disk_path, 'rb') as disk, open(base.memory_path, 'rb') as memory, \
            open(overlay_path, 'rb') as f:
        for segment in fmt.OverlayReader(f).segments():
            if codec not in (None, segment.codec):
                raise RuntimeError('%s mixes codecs: no single tool decodes it' % overlay_path)
            codec = segment.codec
            what = 'segment %d' % segment.index
            items_raw = codecs.decompress(segment.codec, segment.items_stored, segment.items_raw_len, what)
            if segment.delta == fmt.DELTA_XDELTA3:
                if segment.codec != fmt.CODEC_XZ:
                    raise RuntimeError('%s: xdelta3 delta with codec %s'
                                       % (what, fmt.CODEC_NAMES[segment.codec]))
                data = lzma.decompress(segment.data_stored, format=lzma.FORMAT_XZ)
            else:
                parts = []
                for item in fmt.decode_items(items_raw, segment.item_count):
                    if item.kind == fmt.DISK_DATA:
                        parts.append(os.pread(disk.fileno(), chunks.CHUNK, item.offset))
                    elif item.kind == fmt.MEM_PAGE_DATA and item.source != fmt.NO_COUNTERPART:
                        parts.append(os.pread(memory.fileno(), chunks.CHUNK, item.source))
                data = codecs.decode_data(segment, b''.join(parts), what)
            for name, payload in (('items', items_raw), ('data', data)):
                if payload:
                    path = os.path.join(directory, '%06d.%s' % (segment.index, name))
                    with open(path, 'wb') as out:
                        out.write(payload)
                    paths.append(path)
                    total += len(payload)
    name = fmt.CODEC_NAMES[codec]
    if name not in APPLY_TOOLS:
        raise RuntimeError('%s: no tool for codec %s' % (overlay_path, name))
    return name, codecs.DEFAULT_LEVELS[codec], paths, total


def compress_payloads(codec_name, level, paths, out_path):
    """Compress each payload file with the tool, one process for all; concatenate the
    frames (streams) in order into `out_path`: `zstd -d` / `xz -d` decode it whole.
    """
    if codec_name == 'zstd':
        argv, suffix = [ZSTD, '-%d' % level, '--no-check', '-T1', '-q', '-f', '--rm'], '.zst'
    else:
        argv, suffix = [XZ, '-%d' % level, '-T1', '-f'], '.xz'
    for start in range(0, len(paths), 256):
        subprocess.run(argv + paths[start:start + 256], check=True, stdin=subprocess.DEVNULL)
    with open(out_path, 'wb') as out:
        for path in paths:
            with open(path + suffix, 'rb') as frame:
                out.write(frame.read())
            os.unlink(path + suffix)
    return os.path.getsize(out_path)
