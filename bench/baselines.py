"""Overlay-size baselines, run with the stock command-line tools.

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
"""

import concurrent.futures
import dataclasses
import os
import subprocess
import time


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
