"""The `openstack cloudlet` CLI against the real box: bases, overlays, synthesis."""

from tests.e2e.conftest import app_get
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import RAM_STATE


def test_exported_and_imported_base_is_listed_and_shown(base, demo_cli):
    listed = demo_cli.json('cloudlet', 'base', 'list')
    assert base['base_id'] in [row['Base ID'] for row in listed]
    assert base['captured_id'] not in [row['ID'] for row in listed]   # deleted before the import
    shown = demo_cli.json('cloudlet', 'base', 'show', 'e2e-base')
    assert (shown['id'], shown['base_id'], shown['status']) == (base['image_id'], base['base_id'], 'active')


def test_resumed_base_kept_the_memory_of_the_captured_vm(base, app_overlay):
    # Same boot id: the server resumed the captured memory instead of booting.
    assert app_overlay['resumed_state']['bootid'] == base['bootid']


def test_overlay_is_listed_and_shown(base, app_overlay, demo_cli):
    shown = demo_cli.json('cloudlet', 'overlay', 'show', app_overlay['image_id'])
    assert (shown['base_id'], shown['status']) == (base['base_id'], 'active')
    assert shown['size'] == app_overlay['path'].stat().st_size
    listed = demo_cli.json('cloudlet', 'overlay', 'list', '--base', base['base_id'])
    assert app_overlay['image_id'] in [row['ID'] for row in listed]


def test_synthesize_from_overlay_image(base, app_overlay, demo, demo_cli, servers):
    server = demo_cli.json('cloudlet', 'server', 'synthesize', app_overlay['image_id'],
                           '--name', 'e2e-cli-synth', '--wait')
    servers.track(server['id'])
    assert server['status'] == 'ACTIVE', server
    state = app_get(demo, server['id'], '/cgi-bin/state')
    assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])


def test_synthesize_from_local_file_uploads_it(base, app_overlay, demo, demo_cli, servers):
    server = demo_cli.json('cloudlet', 'server', 'synthesize', app_overlay['path'],
                           '--name', 'e2e-cli-file', '--wait')
    servers.track(server['id'])
    assert server['status'] == 'ACTIVE', server
    state = app_get(demo, server['id'], '/cgi-bin/state')
    assert (state['ram'], state['disk']) == (RAM_STATE, DISK_STATE)


def test_synthesize_with_unknown_overlay_fails_cleanly(demo_cli):
    result = demo_cli.run('cloudlet', 'server', 'synthesize', 'no-such-overlay', '--name', 'x')
    assert result.returncode != 0
    assert 'no-such-overlay' in result.stderr and 'Traceback' not in result.stderr
