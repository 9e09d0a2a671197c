"""Bad overlays and URLs end in ERROR with a fault naming the cause, and leave nothing behind."""

import libvirt
import pytest

from cloudlet_box import cloud
from cloudlet_box import http_serve
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
    wrong_base_overlay(real_path, directory / 'wrong-base.clo')


CASES = [
    ('corrupt.clo', 'checksum'),
    ('truncated.clo', 'truncated'),
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
    return set(box.state_dir.rglob('*'))


def assert_refused_without_residue(box, demo, base, metadata, expected, networks='auto'):
    """ERROR with `expected` in the fault; no domain, no instance files, no port left."""
    files_before = state_dir_files(box)   # the compute host's base store
    server_id = cloud.create_server(demo, 'e2e-bad-input', base['image_id'], metadata=metadata,
                                    networks=networks)
    try:
        server = cloud.wait_server(demo, server_id)
        assert server.status == 'ERROR'
        assert expected in server.fault['message'], server.fault
        # nova's failed build gives its ports back to Neutron.
        assert not list(demo.network.ports(device_id=server_id))
        conn = libvirt.open('qemu:///system')
        try:
            with pytest.raises(libvirt.libvirtError):
                conn.lookupByUUIDString(server_id)
        finally:
            conn.close()
        instance_dir = box.root / 'nova' / 'instances' / server_id
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
    ('http://127.0.0.1:9/app.clo', 'cannot reach'),
    ('http://overlays.invalid/app.clo', 'is not allowed'),
])
def test_bad_url_is_an_instance_fault(box, demo, base, url, expected):
    assert_refused_without_residue(box, demo, base, {'overlay_url': url}, expected)
