"""The negotiation request of each kind of overlay; a local file's comes from its header."""

import pytest

from cloudlet_client import errors
from cloudlet_client import overlays
from cloudlet_engine import format as overlay_format
from tests.unit.client.conftest import BASE_ID
from tests.unit.client.conftest import GLANCE
from tests.unit.client.conftest import write_overlay

IMAGE_ID = '0b5f2c1e-8d4a-4e0b-9c5e-2f7a1b3c4d5e'


def test_a_local_file_is_described_from_its_header(tmp_path):
    path = write_overlay(tmp_path / 'app.clo', padding=1000)
    overlay = overlays.Overlay.parse(path)
    assert overlay.kind == overlays.FILE and overlay.base_id() == BASE_ID
    size = (tmp_path / 'app.clo').stat().st_size
    assert overlay.negotiation_request() == {'overlay': {
        'base_id': BASE_ID, 'format_version': overlay_format.VERSION, 'codec': 'zstd', 'size_bytes': size}}


def test_a_header_without_a_codec_is_described_by_its_first_segment(tmp_path):
    path = tmp_path / 'old.clo'
    with open(path, 'wb') as f:
        writer = overlay_format.OverlayWriter(f, {'base_id': BASE_ID, 'disk_size': 4096, 'memory_size': 0})
        writer.add_segment(overlay_format.CODEC_XZ, overlay_format.DELTA_NONE, 0, 0, b'', 0, b'')
        writer.finish()
    assert overlays.describe_file(str(path))[0]['codec'] == 'xz'


def test_a_file_that_is_no_overlay(tmp_path):
    (tmp_path / 'junk').write_bytes(b'not an overlay at all, but long enough for a header')
    with pytest.raises(errors.ClientError, match='junk: not an openstack-cloudlet overlay'):
        overlays.Overlay.file(str(tmp_path / 'junk')).negotiation_request()
    with pytest.raises(errors.ClientError, match='missing.clo: No such file'):
        overlays.describe_file(str(tmp_path / 'missing.clo'))


def test_a_url_is_sent_as_is():
    assert overlays.Overlay.parse('https://o.example/app.clo').negotiation_request() == \
        {'overlay_url': 'https://o.example/app.clo'}
    with pytest.raises(errors.ClientError, match="http\\(s\\), not 'ftp://x'"):
        overlays.Overlay.url('ftp://x')


def test_an_image_is_described_from_its_properties(cloud, http):
    http.get(GLANCE + '/v2/images/' + IMAGE_ID, json={
        'id': IMAGE_ID, 'size': 12345, 'cloudlet_type': 'cloudlet_overlay', 'cloudlet_base_id': BASE_ID,
        'cloudlet_codec': 'xz',
        # copied by nova's snapshot from the base disk image: the base package's version
        'cloudlet_format_version': '2'})
    assert overlays.Overlay.parse(IMAGE_ID).negotiation_request(cloud) == {'overlay': {
        'base_id': BASE_ID, 'codec': 'xz', 'format_version': 1, 'size_bytes': 12345}}
    http.get(GLANCE + '/v2/images/' + IMAGE_ID, json={'id': IMAGE_ID, 'cloudlet_type': 'cloudlet_base_disk'})
    with pytest.raises(errors.ClientError, match='is not a cloudlet overlay'):
        overlays.Overlay.image(IMAGE_ID).negotiation_request(cloud)
