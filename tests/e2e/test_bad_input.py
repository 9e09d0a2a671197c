"""Bad overlays and URLs end in ERROR with a fault naming the cause, and leave nothing behind."""

import http.server
import os
import threading

import libvirt
import pytest

from cloudlet_box import cloud
from cloudlet_box import http_serve
from cloudlet_engine import basestore
from cloudlet_engine import format as overlay_format


def wrong_base_overlay(real_path, target):
    """A well-formed overlay whose header names another base."""
    with open(real_path, 'rb') as handle:
        meta = overlay_format.OverlayReader(handle).meta
    with open(target, 'wb') as out:
        writer = overlay_format.OverlayWriter(out, dict(meta, base_id='ab' * 32))
        writer.finish()


def damaged_copies(real_path, directory):
    data = real_path.read_bytes()
    flipped = bytearray(data)
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        flipped[offset] ^= 0xFF
    (directory / 'corrupt.clo').write_bytes(bytes(flipped))
    (directory / 'truncated.clo').write_bytes(data[:len(data) // 2])
    # A valid overlay and 8 KiB more: the format refuses what it did not write.
    (directory / 'trailing.clo').write_bytes(data + os.urandom(8192))
    wrong_base_overlay(real_path, directory / 'wrong-base.clo')


CASES = [
    ('corrupt.clo', 'checksum'),
    ('truncated.clo', 'truncated'),
    ('trailing.clo', 'trailing data after the overlay trailer'),
    ('wrong-base.clo', 'base'),
    ('missing.clo', 'HTTP 404'),
]


@pytest.fixture(scope='module')
def bad_overlays(app_overlay, tmp_path_factory):
    directory = tmp_path_factory.mktemp('bad-overlays')
    damaged_copies(app_overlay['path'], directory)
    with http_serve.serve(directory) as url:
        yield url


def state_dir_files(box):
    """Every compute host's base store and handoff records, but the bases complete in a store
    (a spawn fetches its base before it reads the overlay: a cached base, not a leftover)
    and the stores' lock files.
    """
    found = set()
    for state_dir in box.state_dirs:
        bases = state_dir / 'bases'
        complete = {p.parent for p in bases.glob('*/manifest.json') if not p.parent.name.startswith('.')}
        found |= {path for path in state_dir.rglob('*')
                  if not any(path == c or c in path.parents for c in complete)
                  and not path.name.startswith((basestore.FETCH_LOCK, basestore.LOCK))}
    return found


def assert_refused_without_residue(box, demo, base, metadata, expected, networks='auto',
                                   trusted_certificates=None):
    """ERROR with `expected` in the fault; no domain, no instance files, no port left."""
    files_before = state_dir_files(box)   # the compute hosts' base stores
    server_id = cloud.create_server(demo, 'e2e-bad-input', base['image_id'], metadata=metadata,
                                    networks=networks, trusted_certificates=trusted_certificates)
    try:
        server = cloud.wait_server(demo, server_id)
        assert server.status == 'ERROR'
        assert expected in server.fault['message'], server.fault
        # nova's failed build gives its ports back to Neutron.
        assert not list(demo.network.ports(device_id=server_id))
        for files in [box.host_files(None)] + [box.host_files(host.name) for host in box.compute_hosts]:
            conn = libvirt.open(files.libvirt_uri)
            try:
                with pytest.raises(libvirt.libvirtError):
                    conn.lookupByUUIDString(server_id)
            finally:
                conn.close()
            instance_dir = files.instances / server_id
            assert not instance_dir.exists() or not any(instance_dir.iterdir()), list(instance_dir.iterdir())
    finally:
        cloud.delete_server(demo, server_id)
    assert state_dir_files(box) == files_before


@pytest.mark.parametrize('name,expected', CASES)
def test_bad_overlay_is_an_instance_fault(box, demo, base, bad_overlays, name, expected):
    assert_refused_without_residue(box, demo, base, {'overlay_url': '%s/%s' % (bad_overlays, name)},
                                   expected)


@pytest.mark.parametrize('url,expected', [
    ('file:///etc/passwd', "scheme 'file' is not allowed"),
    ('http://%s:9/app.clo' % http_serve.ADDRESS, 'cannot reach'),     # allowed, nothing listens
    ('http://overlays.invalid/app.clo', 'is not allowed'),
])
def test_bad_url_is_an_instance_fault(box, demo, base, url, expected):
    assert_refused_without_residue(box, demo, base, {'overlay_url': url}, expected)


SECRET_ANSWER = 'e2e-what-the-address-answered'


@pytest.fixture
def loopback_server():
    """An HTTP server on 127.0.0.1 (where the box's APIs listen): every request it gets, recorded."""
    requests_seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            body = SECRET_ANSWER.encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1], requests_seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize('target', ['loopback', 'metadata'])
def test_outbound_policy_refuses_loopback_and_the_metadata_service(box, demo, base, loopback_server, target):
    """SSRF: the compute host does not fetch 127.0.0.1 nor 169.254.169.254 for a user (the
    box allows only http_serve.ADDRESS and box2); the fault says so and nothing of an answer.
    """
    root, requests_seen = loopback_server
    url = root + '/x' if target == 'loopback' else 'http://169.254.169.254/latest'
    server_id = cloud.create_server(demo, 'e2e-bad-input', base['image_id'], metadata={'overlay_url': url},
                                    networks='none')
    try:
        server = cloud.wait_server(demo, server_id)
        assert server.status == 'ERROR'
        fault = server.fault['message']
        assert 'refused by policy' in fault, server.fault
        assert 'outbound_allowed' in fault, server.fault
        for answer in (SECRET_ANSWER, 'instance-id', 'ami-id', 'meta-data', 'HTTP ', 'cannot reach'):
            assert answer not in fault, server.fault
    finally:
        cloud.delete_server(demo, server_id)
    assert requests_seen == []          # refused before any connection
