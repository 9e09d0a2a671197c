"""The main job on a running box: VM synthesis through real OpenStack, timed.

1. boot the test guest the stock way (nova, Glance image) until its app answers;
2. capture it as a base VM (server action cloudlet-create-base, four linked images);
3. export the base as a package and import it again (what `openstack cloudlet
   base export/import` do), as an operator moving a base between clouds;
4. resume the base as a new server (POST /v2.1/servers with the base image);
5. change it: install the guest's app (tens of MB on disk) and set RAM and disk state;
6. create an overlay (server action cloudlet-create-overlay) and delete the server;
7. synthesize a server from the overlay served over HTTP (metadata.overlay_url);
8. synthesize another from the overlay's Glance image (metadata.cloudlet_overlay_id);
and check that both answer with the state, then print the timing of each step.
Run by tools/demo.sh after tools/box.sh up.
"""

import contextlib
import json
import os
import shutil
import sys
import time

from cloudlet_box import cloud
from cloudlet_box import dashboard
from cloudlet_box import guest_app
from cloudlet_box import http_serve
from cloudlet_box import layout
from cloudlet_box import resources
from cloudlet_box import services
from cloudlet_glance import images as glance_images
from cloudlet_glance import model

RAM_STATE, DISK_STATE = 'demo-ram-state', 'demo-disk-state'


class Table:
    def __init__(self):
        self.rows = []

    @contextlib.contextmanager
    def step(self, label, cli=None):
        print('... %s%s' % (label, '\n    (CLI: %s)' % cli if cli else ''), flush=True)
        note = {'started': time.monotonic()}
        started = note['started']
        yield note
        self.rows.append((label, time.monotonic() - started, note.get('detail', '')))

    def print(self):
        width = max(len(label) for label, _, _ in self.rows)
        print('\n%-*s  %8s  %s' % (width, 'step', 'seconds', 'detail'))
        for label, seconds, detail in self.rows:
            print('%-*s  %8.2f  %s' % (width, label, seconds, detail))


def active_then_app(conn, note, server_id):
    """Detail for a step that made a server: POST -> ACTIVE, ACTIVE -> the app
    answers at the server's floating IP (the floating IP is made while the
    server builds, as a back end would), and nova's wait for Neutron's
    network-vif-plugged events (from the driver's record).
    """
    address = guest_app.floating_ip(conn, server_id)
    server = cloud.wait_server(conn, server_id)
    assert server.status == 'ACTIVE', server.fault
    active = time.monotonic() - note['started']
    note['state'] = guest_app.get(address, '/cgi-bin/state')
    answered = time.monotonic() - note['started'] - active
    note['timings'] = (active, answered, vif_plugged_wait(server_id))
    return 'ACTIVE at %.1f s, app at floating IP %s %.2f s later; vif-plugged wait %s' % (
        active, address, answered, _seconds(note['timings'][2]))


def vif_plugged_wait(server_id):
    """nova's wait for Neutron's network-vif-plugged events after the restore, as the
    driver recorded it in the instance's cloudlet.json (on whichever of the box's hosts it runs).
    """
    box = layout.current()
    for instances in [box.instances_path] + [host.instances for host in box.compute_hosts]:
        try:
            record = json.loads((instances / server_id / 'cloudlet.json').read_text())
            return record['timings']['vif_plugged_wait_seconds']
        except (OSError, ValueError, KeyError):
            continue
    return None


def _seconds(value):
    return 'n/a' if value is None else '%.2f s' % value


def run(conn, work, table, created, timings):
    images = glance_images.GlanceClientImages(conn.session, region_name=layout.current().region)
    guest_image = conn.image.find_image(resources.GUEST_IMAGE, ignore_missing=False)

    with table.step('cold boot of the test guest (stock nova) until its app answers',
                    'openstack server create --image cloudlet-guest --flavor m1.tiny --nic auto') as note:
        booted_id = cloud.create_server(conn, 'demo-boot', guest_image.id)
        created.append(booted_id)
        cloud.wait_server(conn, booted_id)
        booted = guest_app.app_answers(conn, booted_id, '/cgi-bin/state')
        note['detail'] = 'bootid %s' % booted['bootid']

    with table.step('capture it as a base VM (cloudlet-create-base)') as note:
        base_image = cloud.capture(conn, booted_id, 'base', 'demo-base')
        cloud.delete_server(conn, booted_id)
        note['detail'] = 'disk image %s, %d MB' % (base_image.id, base_image.size // 10**6)

    package = work / 'demo-base.zip'
    with table.step('export the base as a package', 'openstack cloudlet base export demo-base '
                    'demo-base.zip') as note:
        model.export_base_package(images, base_image.id, str(package), workdir=str(work))
        model.delete_base(images, base_image.id)
        note['detail'] = '%.1f MB package' % (package.stat().st_size / 1e6)

    with table.step('import the package into Glance (four linked images)',
                    'openstack cloudlet base import demo-base.zip') as note:
        base = model.import_base_package(images, str(package), name='demo-base', workdir=str(work))
        note['detail'] = 'base %s…' % base.base_id[:12]

    with table.step('resume the base as a new server until its app answers (no boot)',
                    'openstack cloudlet server resume-base demo-base --name demo-resumed') as note:
        resumed_id = cloud.create_server(conn, 'demo-resumed', base.disk_id)
        created.append(resumed_id)
        note['detail'] = active_then_app(conn, note, resumed_id)
        timings.append(('resume', ) + note['timings'])
        assert note['state']['bootid'] == booted['bootid'], 'the resumed server booted anew'
        note['detail'] += '; same bootid'

    with table.step('install the app in it and set RAM and disk state') as note:
        state = guest_app.app_answers(conn, resumed_id, '/cgi-bin/install', '/cgi-bin/fill?8',
                                      '/cgi-bin/set?ram=%s&disk=%s' % (RAM_STATE, DISK_STATE))
        installed_app = state['app']
        note['detail'] = 'app sha256 %s…' % installed_app[:12]

    with table.step('create an overlay (cloudlet-create-overlay), delete the server',
                    'openstack cloudlet overlay create demo-resumed --name demo-app --wait') as note:
        overlay = cloud.capture(conn, resumed_id, 'overlay', 'demo-app')
        cloud.delete_server(conn, resumed_id)
        note['detail'] = 'overlay image %s, %.1f MB' % (overlay.id, overlay.size / 1e6)

    www = work / 'www'
    www.mkdir()
    with open(www / 'demo-app.clo', 'wb') as handle:
        model.download_overlay(images, overlay.id, handle)

    checks = []
    with http_serve.serve(www) as url:
        for kind, label, metadata in (
                ('synthesis (URL)', 'synthesize from metadata.overlay_url (HTTP) until the app answers',
                 {'overlay_url': url + '/demo-app.clo'}),
                ('synthesis (image)', 'synthesize from metadata.cloudlet_overlay_id until the app answers',
                 {'cloudlet_overlay_id': overlay.id})):
            with table.step(label, 'openstack cloudlet server synthesize demo-app --name ...') as note:
                server_id = cloud.create_server(conn, 'demo-synth', base.disk_id, metadata=metadata)
                created.append(server_id)
                note['detail'] = active_then_app(conn, note, server_id)
                timings.append((kind, ) + note['timings'])
            checks.append(note['state'])
            cloud.delete_server(conn, server_id)
    for state in checks:
        assert (state['ram'], state['disk'], state['app']) == (RAM_STATE, DISK_STATE, installed_app), state
        assert state['bootid'] == booted['bootid'], state
    print('\nBoth synthesized servers answered with the state they had: ram=%s disk=%s app=%s… '
          '(bootid %s: resumed, never rebooted)' % (RAM_STATE, DISK_STATE, installed_app[:12],
                                                      booted['bootid']))
    model.delete_base(images, base.disk_id)
    conn.image.delete_image(overlay.id)


def print_network_timings(rows):
    print('\n%-18s  %13s  %26s  %16s' % ('server', 'POST->ACTIVE', 'ACTIVE->app at floating IP',
                                         'vif-plugged wait'))
    for kind, active, answered, vif_wait in rows:
        print('%-18s  %11.2f s  %24.2f s  %16s' % (kind, active, answered, _seconds(vif_wait)))


def main():
    box = layout.current()
    conn = cloud.connect('%s-demo' % box.name)
    work = box.root / 'demo'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    table, created, timings = Table(), [], []
    try:
        run(conn, work, table, created, timings)
    finally:
        for server_id in created:
            cloud.delete_server(conn, server_id)
        shutil.rmtree(work, ignore_errors=True)
        if table.rows:
            table.print()
        if timings:
            print_network_timings(timings)
        print_dashboard(box)
    return 0


def print_dashboard(box):
    """Where to see the cloudlet in a browser, and as whom."""
    if not services.dashboard_services(box):
        return
    print('\nDashboard: %s  (user demo, password %s; admin: password %s; the Cloudlet panels are '
          'under Project)' % (dashboard.url(box), box.secrets()['demo'], box.secrets()['admin']))


if __name__ == '__main__':
    sys.exit(main())
