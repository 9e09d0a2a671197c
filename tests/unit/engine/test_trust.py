"""Applying encrypted and signed overlays: keys, verifiers, fuzzing, the local CLI."""

import io
import json
import os
import subprocess
from unittest import mock

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import hashes
from cursive import verifiers
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from cloudlet_engine import apply
from cloudlet_engine import create
from cloudlet_engine import crypto
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from tests.fixtures import overlay_bytes
from tests.unit.engine.test_engine import qcow2_to_raw
from tests.unit.engine.test_engine import Scenario

KEY = bytes(range(100, 132))


@pytest.fixture(scope='module')
def scenario(tmp_path_factory):
    return Scenario(str(tmp_path_factory.mktemp('scenario')))


_BLOBS = {}


def blob_of(scenario, key=KEY, name='a'):
    """One encrypted overlay per (key, name); `name` tells two files made with the same key apart."""
    if (key, name) not in _BLOBS:
        out = io.BytesIO()
        # Small segments: several of them, to swap, drop and cut between.
        with mock.patch.object(create, 'SEGMENT_MAX_ITEMS', 6):
            create.create_overlay(scenario.base, scenario.disk_raw, scenario.memory, out, 'zstd',
                                  workdir=scenario.root, key=key)
        _BLOBS[key, name] = out.getvalue()
    return _BLOBS[key, name]


def plain_blob(scenario):
    return blob_of(scenario, key=None)


def assert_refused_and_nothing_left(scenario, blob, launch_dir, key=KEY, error=errors.OverlayError,
                                    verifier=None):
    with pytest.raises(error) as info:
        apply.apply_overlay(scenario.base, io.BytesIO(bytes(blob)), str(launch_dir), key=key, verifier=verifier)
    assert not launch_dir.exists() or os.listdir(launch_dir) == []
    return info.value


class FakeVerifier:
    """Collects what it is fed; verify() raises `error` if set."""

    def __init__(self, error=None):
        self.error, self.fed, self.verified = error, [], 0

    def update(self, data):
        self.fed.append(bytes(data))

    def verify(self):
        self.verified += 1
        if self.error is not None:
            raise self.error


# --- encrypted overlays --------------------------------------------------------------------


def test_encrypted_roundtrip_is_exact(scenario, tmp_path):
    blob = blob_of(scenario)
    assert fmt.OverlayReader(io.BytesIO(blob)).encrypted
    launch = apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'launch'), key=KEY)
    with open(launch.memory_path, 'rb') as f, open(scenario.memory, 'rb') as g:
        assert f.read() == g.read()
    assert qcow2_to_raw(launch.disk_path, str(tmp_path / 'disk.raw')) == scenario.expected_disk
    assert launch.overlay_bytes == len(blob)


def test_encryption_costs_little_space(scenario):
    encrypted, plain = blob_of(scenario), plain_blob(scenario)
    segments = len(overlay_bytes.walk(plain)[0])
    # Two tags per segment, the trailer's tag, the "encryption" metadata.
    assert len(encrypted) - len(plain) <= 32 * segments + 16 + 160


def test_encrypted_overlay_needs_its_key(scenario, tmp_path):
    error = assert_refused_and_nothing_left(scenario, blob_of(scenario), tmp_path / 'l', key=None,
                                            error=errors.KeyRequired)
    assert str(error) == 'the overlay is encrypted: a key is needed'


def test_key_for_a_plain_overlay_is_refused(scenario, tmp_path):
    assert_refused_and_nothing_left(scenario, plain_blob(scenario), tmp_path / 'l', error=errors.NotEncrypted)


def test_wrong_key(scenario, tmp_path):
    error = assert_refused_and_nothing_left(scenario, blob_of(scenario), tmp_path / 'l', key=crypto.new_key(),
                                            error=errors.DecryptionFailed)
    assert 'wrong key, or the overlay was altered' in str(error)


def test_plain_apply_unchanged_without_key_or_verifier(scenario, tmp_path):
    launch = apply.apply_overlay(scenario.base, io.BytesIO(plain_blob(scenario)), str(tmp_path / 'l'))
    assert launch.overlay_bytes == len(plain_blob(scenario))


# --- verifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize('key', [KEY, None], ids=['encrypted', 'plain'])
def test_verifier_is_fed_every_byte_then_asked(scenario, tmp_path, key):
    blob = blob_of(scenario, key=key)
    verifier = FakeVerifier()
    apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'l'), key=key, verifier=verifier)
    assert b''.join(verifier.fed) == blob and verifier.verified == 1


@pytest.mark.parametrize('raised,message', [
    (ValueError('bad certificate'), "signature does not verify: bad certificate"),
    (InvalidSignature(), 'signature does not verify (InvalidSignature)'),
    (errors.CorruptOverlay('the certificate expired'), 'the certificate expired'),
    (errors.SignatureInvalid('no such certificate'), 'no such certificate'),
])
def test_a_refusing_verifier_removes_the_launch_files(scenario, tmp_path, raised, message):
    error = assert_refused_and_nothing_left(scenario, blob_of(scenario), tmp_path / 'l',
                                            error=errors.SignatureInvalid, verifier=FakeVerifier(raised))
    assert str(error) == message or message in str(error)
    assert error is raised or error.__cause__ is raised


def test_verifier_failing_in_update_is_a_signature_error(scenario, tmp_path):
    class Broken(FakeVerifier):
        def update(self, data):
            raise RuntimeError('hash state lost')
    assert_refused_and_nothing_left(scenario, blob_of(scenario), tmp_path / 'l', error=errors.SignatureInvalid,
                                    verifier=Broken())


def test_verify_only_after_the_end_was_checked(scenario, tmp_path):
    verifier = FakeVerifier()
    assert_refused_and_nothing_left(scenario, blob_of(scenario) + b'tail', tmp_path / 'l',
                                    error=errors.CorruptOverlay, verifier=verifier)
    assert verifier.verified == 0


@pytest.fixture(scope='module')
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cursive_verifier(private_key, signed):
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    signature = private_key.sign(signed, pss, hashes.SHA256())
    return verifiers.RSAVerifier(signature, hashes.SHA256(), private_key.public_key(), pss)


def test_cursive_rsa_pss_verifier(scenario, tmp_path, rsa_key):
    blob = blob_of(scenario)
    apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'ok'), key=KEY,
                        verifier=_cursive_verifier(rsa_key, blob))
    other = _cursive_verifier(rsa_key, blob_of(scenario, name='b'))     # same key, another file
    assert_refused_and_nothing_left(scenario, blob, tmp_path / 'bad', error=errors.SignatureInvalid,
                                    verifier=other)


# --- fuzzing the encrypted reader -------------------------------------------------------------


def regions(blob):
    """(name, start, end) of every field of an overlay, front to back."""
    _, flags, meta_len, first = overlay_bytes.header(blob)
    found = [('magic', 0, 8), ('version', 8, 10), ('flags', 10, 12), ('meta_len', 12, 16),
             ('meta', 16, 16 + meta_len), ('meta_sha256', 16 + meta_len, first)]
    segments, trailer = overlay_bytes.walk(blob)
    for i, (start, length) in enumerate(segments):
        items_len = fmt._SEG_HEAD.unpack_from(blob, start)[6]
        body = start + fmt._SEG_HEAD.size + 32
        found += [('segment %d header' % i, start, start + fmt._SEG_HEAD.size),
                  ('segment %d sha256' % i, start + fmt._SEG_HEAD.size, body),
                  ('segment %d items' % i, body, body + items_len),
                  ('segment %d data' % i, body + items_len, start + length)]
    pos = trailer + 8 + 12 * len(segments)
    found += [('trailer tag', trailer, trailer + 4), ('trailer count', trailer + 4, trailer + 8),
              ('trailer index', trailer + 8, pos)]
    if flags & fmt.FLAG_ENCRYPTED:
        found.append(('trailer gcm tag', pos, pos + 16))
        pos += 16
    found += [('root', pos, pos + 32), ('trailer_len', pos + 32, pos + 36), ('end magic', pos + 36, pos + 44)]
    assert pos + 44 == len(blob)
    return found


def test_every_region_bit_flip_is_refused(scenario, tmp_path):
    blob = blob_of(scenario)
    cases = 0
    for name, start, end in regions(blob):
        for pos, bit in {(start, 0), ((start + end) // 2, 3), (end - 1, 7)}:
            damaged = bytearray(blob)
            damaged[pos] ^= 1 << bit
            launch_dir = tmp_path / ('flip-%d-%d' % (pos, bit))
            assert_refused_and_nothing_left(scenario, damaged, launch_dir)
            cases += 1
    assert cases > 40


# Fields a forger can change and then recompute every SHA-256 over (the layout stays walkable).
RECHECKSUMMABLE = ('version', 'flags', 'meta', 'meta_sha256', 'items', 'data', 'sha256', 'trailer index',
                   'gcm tag', 'root', 'trailer_len', 'end magic')


def test_payload_bit_flips_with_recomputed_checksums_fail_decryption(scenario, tmp_path):
    blob = blob_of(scenario)
    payloads = [(start, end) for name, start, end in regions(blob) if name.endswith(('items', 'data'))]
    assert len(payloads) >= 8
    for start, end in payloads:
        for pos in {start, (start + end) // 2, end - 1}:
            damaged = bytearray(blob)
            damaged[pos] ^= 0x20
            assert_refused_and_nothing_left(scenario, overlay_bytes.rechecksum(damaged), tmp_path / ('p%d' % pos),
                                            error=errors.DecryptionFailed)


def test_every_boundary_truncation_is_refused(scenario, tmp_path):
    blob = blob_of(scenario)
    cuts = sorted({cut for _, start, end in regions(blob) for cut in (start, start + 1, end - 1)} - {len(blob)})
    for cut in cuts:
        assert_refused_and_nothing_left(scenario, blob[:cut], tmp_path / ('cut-%d' % cut),
                                        error=errors.TruncatedOverlay)


@pytest.mark.parametrize('tail', [b'\0', os.urandom(8192)], ids=['one-byte', '8KiB'])
def test_appended_bytes_are_refused(scenario, tmp_path, tail):
    for key in (KEY, None):
        assert_refused_and_nothing_left(scenario, blob_of(scenario, key=key) + tail, tmp_path / 'l',
                                        key=key, error=errors.CorruptOverlay)


def test_segments_swapped_between_two_files_with_the_same_key(scenario, tmp_path):
    one, two = blob_of(scenario, name='a'), blob_of(scenario, name='b')
    segments_one, segments_two = overlay_bytes.walk(one)[0], overlay_bytes.walk(two)[0]
    assert len(segments_one) == len(segments_two) >= 2
    for i, ((o1, n1), (o2, n2)) in enumerate(zip(segments_one, segments_two)):
        forged = one[:o1] + two[o2:o2 + n2] + one[o1 + n1:]
        assert_refused_and_nothing_left(scenario, forged, tmp_path / ('raw-%d' % i))
        assert_refused_and_nothing_left(scenario, overlay_bytes.rechecksum(forged), tmp_path / ('re-%d' % i),
                                        error=errors.DecryptionFailed)
    # The whole body of one behind the header of the other.
    first_one, first_two = overlay_bytes.header(one)[3], overlay_bytes.header(two)[3]
    forged = overlay_bytes.rechecksum(one[:first_one] + two[first_two:])
    assert_refused_and_nothing_left(scenario, forged, tmp_path / 'body', error=errors.DecryptionFailed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_encrypted_overlays_fail_cleanly(scenario, tmp_path, data):
    """Flips, truncations, splices, tails, keys and forged checksums: an OverlayError, nothing left."""
    original = blob_of(scenario)
    blob = bytearray(original)
    key = KEY
    mode = data.draw(st.sampled_from(['flip', 'flip-rechecksum', 'truncate', 'splice', 'tail', 'key',
                                      'drop-segments']))
    if mode.startswith('flip'):
        name, start, end = data.draw(st.sampled_from(regions(original)))
        for _ in range(data.draw(st.integers(1, 3))):
            blob[data.draw(st.integers(start, end - 1))] ^= 1 << data.draw(st.integers(0, 7))
        if mode == 'flip-rechecksum' and name.endswith(RECHECKSUMMABLE):
            blob = bytearray(overlay_bytes.rechecksum(blob))
    elif mode == 'truncate':
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif mode == 'splice':
        start = data.draw(st.integers(0, len(blob) - 1))
        blob[start:start + data.draw(st.integers(1, 64))] = data.draw(st.binary(min_size=1, max_size=64))
    elif mode == 'tail':
        blob += data.draw(st.binary(min_size=1, max_size=64))
    elif mode == 'key':
        key = data.draw(st.sampled_from([None, crypto.new_key(), KEY[:-1] + bytes([KEY[-1] ^ 1])]))
    else:
        count = len(overlay_bytes.walk(original)[0])
        drop = data.draw(st.sets(st.integers(0, count - 1), min_size=1))
        blob = bytearray(overlay_bytes.without_segments(original, drop))
    launch_dir = tmp_path / ('launch-' + os.urandom(8).hex())
    try:
        apply.apply_overlay(scenario.base, io.BytesIO(bytes(blob)), str(launch_dir), key=key)
    except errors.OverlayError:
        assert not launch_dir.exists() or os.listdir(launch_dir) == []
    else:
        assert bytes(blob) == original and key == KEY     # only flips that cancel out
        subprocess.run(['rm', '-rf', str(launch_dir)], check=True)


# --- the local CLI ---------------------------------------------------------------------------


def _cli(capsys, *argv):
    from cloudlet_cmd import cloudlet as cli
    code = cli.main(['-q'] + list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else None), err


def test_cli_encrypted_overlay(scenario, tmp_path, capsys):
    key_file, overlay = tmp_path / 'overlay.key', tmp_path / 'o.clo'
    base = scenario.base.path
    code, created, err = _cli(capsys, 'overlay', 'create', '--base', base, '--disk', scenario.disk_raw,
                              '--memory', scenario.memory, '-o', str(overlay), '--new-key', str(key_file))
    assert code == 0, err
    assert created['encrypted'] and os.stat(key_file).st_mode & 0o777 == 0o600
    assert len(key_file.read_bytes()) == 32

    code, info, _ = _cli(capsys, 'overlay', 'info', str(overlay))
    assert code == 0 and info['encrypted'] and info['version'] == 2
    assert info['meta']['base_id'] == scenario.base.base_id

    code, verified, _ = _cli(capsys, 'overlay', 'verify', str(overlay), '--key-file', str(key_file))
    assert code == 0 and verified['verified'] is True and verified['items']
    code, sealed, _ = _cli(capsys, 'overlay', 'inspect', str(overlay))
    assert code == 0 and sealed['verified'] == 'checksums only: no key' and sealed['segments']

    code, _, err = _cli(capsys, 'overlay', 'apply', '--base', base, str(overlay), '--out', str(tmp_path / 'l1'))
    assert code == 1 and 'a key is needed' in err
    code, applied, err = _cli(capsys, 'overlay', 'apply', '--base', base, str(overlay), '--out',
                              str(tmp_path / 'l2'), '--key-file', str(key_file))
    assert code == 0, err
    assert applied['overlay_bytes'] == overlay.stat().st_size

    code, _, err = _cli(capsys, 'overlay', 'create', '--base', base, '--disk', scenario.disk_raw,
                        '--memory', scenario.memory, '-o', str(tmp_path / 'again.clo'), '--new-key', str(key_file))
    assert code == 1 and 'cannot create the key file' in err and not (tmp_path / 'again.clo').exists()
    assert key_file.read_bytes() == crypto.read_key_file(str(key_file))

    # A failed creation leaves no key behind.
    other_key = tmp_path / 'other.key'
    code, _, err = _cli(capsys, 'overlay', 'create', '--base', base, '--disk', scenario.disk_raw,
                        '--memory', scenario.disk_raw, '-o', str(tmp_path / 'x.clo'), '--new-key', str(other_key))
    assert code == 1 and not other_key.exists()


def test_cli_key_file_with_a_plain_overlay(scenario, tmp_path, capsys):
    overlay = tmp_path / 'plain.clo'
    overlay.write_bytes(plain_blob(scenario))
    key_file = tmp_path / 'k'
    key_file.write_bytes(KEY)
    code, _, err = _cli(capsys, 'overlay', 'inspect', str(overlay), '--key-file', str(key_file))
    assert code == 1 and 'not encrypted' in err
    key_file.write_bytes(KEY + b'\n')
    code, _, err = _cli(capsys, 'overlay', 'inspect', str(overlay), '--key-file', str(key_file))
    assert code == 1 and 'exactly 32 bytes' in err and KEY.hex() not in err
