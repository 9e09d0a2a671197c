"""The dashboard (Horizon with cloudlet_dashboard) in a real headless Chromium, as a user clicks through it.

One journey, as the `alt` user (a member of the project `alt`, as `demo` is of
`demo`: demo's project holds the session's base, which a base import there
would answer with, and deleting that import would delete): import the
session's base package from a URL, resume it (Synthesize, base only), create
an overlay from the Instances table, synthesize a server from it on the
Overlays page and check its app has the state captured, and hand it off to
box2. Forms that must refuse do, with their messages. Screenshots of each
page go to dashboard_browser.ARTEFACTS/dashboard/.
"""

import time

import pytest

from cloudlet_box import cloud
from cloudlet_box import dashboard
from cloudlet_box import guest_app
from cloudlet_box import handoff_scene
from cloudlet_box import http_serve
from cloudlet_glance import properties as props
from tests.e2e import dashboard_browser

pytestmark = pytest.mark.skipif(not dashboard_browser.available(),
                                reason='needs chromium and chromium-driver (tools/setup.sh installs them)')

PREFIX = 'e2e-dash-'
RAM, DISK = 'e2e-dash-ram', 'e2e-dash-disk'


@pytest.fixture(scope='module')
def browser(box):
    made = dashboard_browser.Browser(dashboard.url(box), dashboard_browser.ARTEFACTS / 'dashboard')
    try:
        made.login('alt', box.secrets()['alt'])
        yield made
    finally:
        made.close()


@pytest.fixture(scope='module')
def made(alt, box2):
    """What the journey makes: servers (here and on box2), overlay images; base import records (by name)."""
    things = {'servers': [], 'box2_servers': [], 'images': []}
    yield things
    cloud.delete_servers(alt, things['servers'])
    if things['box2_servers']:
        cloud.delete_servers(cloud.connect('%s-alt' % box2.name), things['box2_servers'])
    for image_id in things['images']:
        alt.image.delete_image(image_id, ignore_missing=True)
    # Every import of ours, also one a failed run left: once it has ended, deleting it deletes its images.
    for record in _imports(alt):
        if record['status'] in ('queued', 'downloading', 'validating', 'uploading'):
            record = _until('import %s ended' % record['id'], lambda: _ended(alt, record['id']), 600)
        alt.compute.delete('/os-cloudlet/bases/%s' % record['id'], microversion=cloud.MICROVERSION)


def _imports(conn):
    return [r for r in conn.compute.get('/os-cloudlet/bases', microversion=cloud.MICROVERSION).json()['bases']
            if (r.get('name') or '').startswith(PREFIX)]


def _ended(conn, record_id):
    record = conn.compute.get('/os-cloudlet/bases/%s' % record_id, microversion=cloud.MICROVERSION).json()['base']
    return record if record['status'] in ('active', 'error') else None


def _wait_active(conn, server_id):
    server = cloud.wait_server(conn, server_id)
    assert server.status == 'ACTIVE', server.fault
    return server


def _server_id_from_url(browser):
    """The id of the server whose page the form's success opens."""
    return browser.wait_url('/project/instances/').rstrip('/').split('/')[-1]


def test_the_dashboard_journey(browser, alt, box2, wan, base, made, tmp_path):
    browser.go('/project/cloudlet_overview/')
    browser.wait_text('Cloudlet API')
    assert 'zstd' in browser.text()
    browser.shot('overview')

    # Import the session's base package from a URL: nova-api downloads it; the imports table follows.
    with http_serve.serve(base['package'].parent) as url:
        browser.go('/project/cloudlet_bases/')
        browser.table_action('bases', 'import')
        modal = browser.modal()
        browser.fill({'source': 'url', 'url': 'ftp://example.invalid/base.zip', 'name': PREFIX + 'base'}, modal)
        browser.submit(modal)
        browser.wait_text('Enter a valid URL')      # refused in the form, before the API
        browser.shot('import-refused')
        browser.fill({'url': '%s/%s' % (url, base['package'].name)}, browser.modal())
        browser.submit(browser.modal())
        browser.wait_text('Importing base VM package')
        assert [r for r in _imports(alt) if r['status'] != 'error'], 'no import record'
        browser.shot('import-started')
        browser.wait_row_text('imports', PREFIX + 'base', 'Active', timeout=600)
    browser.wait_row_text('bases', PREFIX + 'base', 'Active', timeout=120)
    browser.shot('bases')
    imported = next(i for i in alt.image.images() if i.name == PREFIX + 'base')
    assert imported.properties.get(props.BASE_ID) == base['base_id']

    # Resume it: the row's Resume opens Synthesize with the base chosen; the server's page follows.
    browser.row_action('bases', PREFIX + 'base', 'resume')
    browser.wait_for('#synthesize_form')
    browser.fill({'name': PREFIX + 'resumed'})
    browser.shot('synthesize-resume')
    browser.driver.find_element('css selector', '#synthesize_form [type=submit]').click()
    resumed = _server_id_from_url(browser)
    made['servers'].append(resumed)
    _wait_active(alt, resumed)
    state = guest_app.app_answers(alt, resumed, '/cgi-bin/set?ram=%s&disk=%s' % (RAM, DISK))
    assert state['ram'] == RAM, state
    browser.go('/project/instances/%s/' % resumed)
    browser.shot('resumed-instance')

    # Create an overlay from the Instances table; nova's task shows while it runs.
    browser.go('/project/instances/')
    assert {'cloudlet_create_overlay', 'cloudlet_create_base', 'cloudlet_handoff'} <= set(
        browser.row_actions('instances', PREFIX + 'resumed'))
    browser.row_action('instances', PREFIX + 'resumed', 'cloudlet_create_overlay')
    modal = browser.modal()
    browser.fill({'name': PREFIX + 'app'}, modal)
    browser.shot('create-overlay')
    browser.submit(modal)
    browser.wait_text('Creating overlay')
    browser.shot('instances-capturing')
    overlay = _wait_overlay(alt, PREFIX + 'app')
    made['images'].append(overlay.id)

    # Synthesize from it on the Overlays page: the new server has the state the overlay captured.
    browser.go('/project/cloudlet_overlays/')
    browser.row('overlays', PREFIX + 'app')
    browser.shot('overlays')
    browser.row_action('overlays', PREFIX + 'app', 'synthesize')
    browser.wait_for('#synthesize_form')
    browser.fill({'name': PREFIX + 'synth'})
    browser.driver.find_element('css selector', '#synthesize_form [type=submit]').click()
    synthesized = _server_id_from_url(browser)
    made['servers'].append(synthesized)
    _wait_active(alt, synthesized)
    assert guest_app.app_answers(alt, synthesized, '/cgi-bin/state')['ram'] == RAM
    browser.go('/project/instances/')
    browser.wait_text(PREFIX + 'synth')
    browser.shot('instances-synthesized')

    # Hand it off to box2: its base there first (as an operator or the CLI puts it there).
    box2_alt = cloud.connect('%s-alt' % box2.name)
    shared = handoff_scene.share_base(alt, box2_alt, tmp_path, handoff_scene.base_image(alt, imported.id))
    destination = handoff_scene.destination(box2_alt, wan)
    try:
        browser.go('/project/instances/')
        browser.row_action('instances', PREFIX + 'synth', 'cloudlet_handoff')
        modal = browser.modal()
        request = destination.request
        browser.fill({'kind': 'auth_url', 'auth_url': request['destination']['auth_url'],
                      'region_name': request['destination']['region_name'], 'server_name': PREFIX + 'moved',
                      'credential_id': request['credential']['application_credential']['id'],
                      'credential_secret': request['credential']['application_credential']['secret']}, modal)
        browser.shot('handoff')
        browser.submit(modal)
        browser.wait_text('Handing off server')
        browser.shot('instances-handing-off')
        moved = _wait_moved(alt, box2_alt, synthesized, PREFIX + 'moved')
        made['box2_servers'].append(moved.id)
        assert guest_app.app_answers(box2_alt, moved.id, '/cgi-bin/state')['ram'] == RAM
    finally:
        destination.cleanup()
        handoff_scene.forget_shared(box2_alt, shared)
    browser.go('/project/instances/')
    browser.shot('instances-after-handoff')
    assert PREFIX + 'synth' not in browser.text()


def test_the_synthesize_form_refuses_what_nova_would(browser, alt):
    """A URL without its base (the dashboard does not fetch URLs), and a source without its field."""
    browser.go('/project/cloudlet_synthesize/')
    browser.fill({'name': PREFIX + 'refused', 'source': 'url', 'overlay_url': 'http://192.0.2.1/app.clo'})
    browser.driver.find_element('css selector', '#synthesize_form [type=submit]').click()
    browser.wait_text("Choose the overlay's base")
    browser.shot('synthesize-refused')
    browser.fill({'source': 'file'})      # and no file chosen
    browser.driver.find_element('css selector', '#synthesize_form [type=submit]').click()
    browser.wait_text('This source needs this field')
    assert not [s for s in alt.compute.servers() if s.name == PREFIX + 'refused']


def _wait_overlay(conn, name, timeout=600):
    def active():
        for hidden in (False, True):
            for image in conn.image.images(is_hidden=hidden):
                if image.name == name and image.status == 'active':
                    return image
        return None
    return _until('overlay %s active' % name, active, timeout)


def _wait_moved(conn, dst_conn, source_id, name, timeout=600):
    def moved():
        there = [s for s in dst_conn.compute.servers() if s.name == name and s.status == 'ACTIVE']
        if there and conn.compute.find_server(source_id) is None:
            return there[0]
        return None
    return _until('server %s ACTIVE on box2, the source gone' % name, moved, timeout)


def _until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError('not within %d s: %s' % (timeout, what))
        time.sleep(1)
