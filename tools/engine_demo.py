"""The main job: a demo synthesis on this machine, with the timing of each step.

Boots the test guest, captures it as a base VM, resumes the base as a new VM,
installs the guest's app, creates an overlay, destroys the VM, synthesizes a
new VM from the overlay served over HTTP, checks that the app answers with its
state, and prints a table. Everything it started is destroyed at the end; the
base stays cached under $CLOUDLET_STATE_DIR/bases.

Run through tools/engine-demo.sh (which sets the machine up first).
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid as uuidlib

from cloudlet_box import http_serve   # tools/ is this script's directory
from cloudlet_engine import basestore
from cloudlet_engine import capture
from cloudlet_engine import domainxml
from cloudlet_engine import hypervisor
from cloudlet_engine import outbound
from cloudlet_engine import synthesis

REPO = pathlib.Path(__file__).resolve().parents[1]
STATE_DIR = pathlib.Path(os.environ.get('CLOUDLET_STATE_DIR', '/var/lib/openstack-cloudlet'))
DEMO_DIR = STATE_DIR / 'demo'
NAMES = ('cloudlet-demo-boot', 'cloudlet-demo-resumed', 'cloudlet-demo-synth')


def step(rows, label):
    """Time a step and record it: `with step(rows, 'x') as note: ...; note['detail'] = '…'`."""
    @contextlib.contextmanager
    def timed():
        note = {}
        print('... %s' % label, flush=True)
        started = time.monotonic()
        yield note
        rows.append((label, time.monotonic() - started, note.get('detail', '')))
    return timed()


def guest_image():
    out = subprocess.run([str(REPO / 'tools' / 'build-guest.sh')], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def forwards():
    return {8080: hypervisor.free_tcp_port(), 7: hypervisor.free_tcp_port()}


def app(fwd, path, timeout=600):
    url = 'http://127.0.0.1:%d%s' % (fwd[8080], path)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return hypervisor.parse_state(response.read().decode())


def wait_app(fwd, timeout=180):
    url = 'http://127.0.0.1:%d/cgi-bin/state' % fwd[8080]
    return hypervisor.parse_state(hypervisor.wait_for_http(url, timeout, interval=0.1))


def run(conn, rows):
    image = guest_image()
    work = DEMO_DIR / 'run'
    shutil.rmtree(work, ignore_errors=True)
    (work / 'www').mkdir(parents=True)
    os.chmod(work, 0o755)
    store = basestore.BaseStore(str(STATE_DIR / 'bases'))

    with step(rows, 'cold boot of the test guest until its app answers') as note:
        disk = work / 'boot-disk.qcow2'
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image['disk'],
                        str(disk)], check=True)
        fwd = forwards()
        xml = domainxml.guest_domain_xml(NAMES[0], str(uuidlib.uuid4()), image['vmlinuz'], image['initrd'],
                                         str(disk), 'qcow2', port_forwards=fwd,
                                         console_log=str(work / 'boot-console.log'),
                                         virt_type=hypervisor.virt_type())
        hypervisor.start_domain(conn, xml)
        booted = wait_app(fwd)
        note['detail'] = 'bootid %s' % booted['bootid']

    with step(rows, 'capture base VM (save memory, copy disk, index)') as note:
        base = capture.capture_base(conn, NAMES[0], store, 'demo-base')
        note['detail'] = 'base %s…, memory %.1f MB, disk %d MiB' % (
            base.base_id[:12], base.memory_size / 1e6, base.disk_size >> 20)

    with step(rows, 'resume the base as a new VM (no boot) until its app answers') as note:
        fwd = forwards()
        resumed = synthesis.synthesize(base, None, str(work / NAMES[1]), NAMES[1], port_forwards=fwd,
                                       conn=conn)
        state = wait_app(fwd)
        assert state['bootid'] == booted['bootid'], 'the resumed VM rebooted'
        note['detail'] = 'restore %.2f s, same bootid' % resumed.timings['restore']

    with step(rows, 'install the app in the VM (disk) and change its RAM') as note:
        installed = app(fwd, '/cgi-bin/install')
        app(fwd, '/cgi-bin/fill?8')
        app(fwd, '/cgi-bin/set?ram=demo-ram-state&disk=demo-disk-state')
        note['detail'] = 'app sha256 %s…' % installed['app'][:12]

    overlay = work / 'www' / 'app.clo'
    with step(rows, 'create the overlay (zstd) from the running VM') as note:
        stats = capture.capture_overlay(conn, NAMES[1], base, str(overlay))
        hypervisor.destroy_domain(conn, NAMES[1])
        note['detail'] = '%.1f MB changed state -> %.1f MB overlay' % (stats.changed_bytes / 1e6,
                                                                      overlay.stat().st_size / 1e6)

    with http_serve.serve(work / 'www') as url:
        with step(rows, 'synthesize a new VM from the overlay over HTTP, until its app answers') as note:
            fwd = forwards()
            # A local demo fetching from its own server on 127.0.0.1: no outbound policy narrows it.
            result = synthesis.synthesize(base, url + '/app.clo', str(work / NAMES[2]), NAMES[2],
                                          port_forwards=fwd, conn=conn, policy=outbound.OPEN)
            state = wait_app(fwd)
            note['detail'] = 'fetch+apply %.2f s, restore %.2f s' % (result.timings['fetch_and_apply'],
                                                                    result.timings['restore'])
    assert state['ram'] == 'demo-ram-state' and state['disk'] == 'demo-disk-state', state
    assert state['app'] == installed['app'] and state['bootid'] == booted['bootid'], state
    print('\nThe synthesized VM answers with the state it had: ram=%s disk=%s app=%s… (bootid %s: '
          'resumed, never rebooted)' % (state['ram'], state['disk'], state['app'][:12], state['bootid']))


def main():
    conn = hypervisor.connect()
    rows = []
    try:
        run(conn, rows)
    finally:
        for name in NAMES:
            hypervisor.destroy_domain(conn, name)
        shutil.rmtree(DEMO_DIR / 'run', ignore_errors=True)
    width = max(len(label) for label, _, _ in rows)
    print('\n%-*s  %9s  %s' % (width, 'step', 'seconds', 'detail'))
    for label, seconds, detail in rows:
        print('%-*s  %9.2f  %s' % (width, label, seconds, detail))
    return 0


if __name__ == '__main__':
    sys.exit(main())
