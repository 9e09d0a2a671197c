"""Barbican in the box and in box2: secrets and certificates kept per project, read with the user's token.

castellan (what nova and glance use) stores a 256-bit AES key and an X.509 certificate as the
demo user and reads them back; the alt user (another project) is refused them. Glance verifies a
signed upload against the certificate in Barbican; nova's own configuration (nova-cpu.conf) reads a
secret with a RequestContext that carries the user's token, as nova-compute does.
"""

import base64
import datetime
import os
import subprocess
import textwrap

from castellan.common.credentials import keystone_token
from castellan.common import exception as castellan_exception
from castellan.common.objects import symmetric_key
from castellan.common.objects import x_509
from castellan import key_manager
from castellan import options as castellan_options
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import NameOID
from oslo_config import cfg
import pytest

from cloudlet_box import cloud
from cloudlet_box import layout


def castellan_for(conn):
    """(castellan key manager, context) acting as `conn`'s user, with that user's token.

    The endpoint is the one the connection uses (box2-wan-*: public, through the WAN path).
    """
    auth_url = conn.config.get_auth_args()['auth_url']
    context = keystone_token.KeystoneToken(token=conn.session.get_token(), auth_url=auth_url,
                                           project_id=conn.session.get_project_id())
    conf = cfg.ConfigOpts()
    castellan_options.set_defaults(conf, backend='barbican', auth_endpoint=auth_url,
                                   barbican_endpoint_type=conn.config.get_interface())
    return key_manager.API(conf), context


def self_signed(common_name):
    """(private key, DER certificate), valid from a minute ago for a day."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(params=['box', 'box2', 'box2-wan'])
def clouds(request):
    """(demo, alt) connections of box, of box2 (internal endpoints), of box2 through its WAN path."""
    request.getfixturevalue('box2' if request.param.startswith('box2') else 'box')
    return (cloud.connect('%s-demo' % request.param), cloud.connect('%s-alt' % request.param))


def test_castellan_keeps_keys_and_certificates_per_project(clouds):
    demo, alt = clouds
    demo_keys, demo_context = castellan_for(demo)
    alt_keys, alt_context = castellan_for(alt)
    aes = symmetric_key.SymmetricKey('AES', 256, os.urandom(32), name='e2e-aes')
    _, der = self_signed('e2e-barbican')
    stored = []
    try:
        for managed in (aes, x_509.X509(der, name='e2e-cert')):
            object_id = demo_keys.store(demo_context, managed)
            stored.append(object_id)
            read = demo_keys.get(demo_context, object_id)
            assert read.get_encoded() == managed.get_encoded() and read.format == managed.format
        assert demo_keys.get(demo_context, stored[0]).bit_length == 256
        for object_id in stored:
            # Barbican answers 403; castellan reports it as a KeyManagerError.
            with pytest.raises(castellan_exception.KeyManagerError, match='Forbidden'):
                alt_keys.get(alt_context, object_id)
    finally:
        for object_id in stored:
            demo_keys.delete(demo_context, object_id)


def test_the_cli_stores_and_gets_a_secret(demo_cli, alt_cli):
    href = demo_cli.json('secret', 'store', '--name', 'e2e-cli', '--payload', 'e2e-payload')['Secret href']
    try:
        got = demo_cli.run('secret', 'get', '--payload', href, '-f', 'value')
        assert got.returncode == 0 and got.stdout.strip() == 'e2e-payload', got.stderr
        refused = alt_cli.run('secret', 'get', '--payload', href)
        assert refused.returncode != 0 and 'Forbidden' in refused.stderr
    finally:
        demo_cli.run('secret', 'delete', href)


@pytest.mark.parametrize('cloud_name', ['box-demo', 'box2-wan-demo'])
def test_glance_verifies_signed_uploads_with_the_certificate_in_barbican(request, cloud_name):
    request.getfixturevalue('box2' if cloud_name.startswith('box2') else 'box')
    conn = cloud.connect(cloud_name)
    keys, context = castellan_for(conn)
    signer, der = self_signed('e2e-image-signer')
    cert_id = keys.store(context, x_509.X509(der, name='e2e-image-signer'))
    data = os.urandom(256 << 10)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    outcome = {}
    try:
        for label, signed in (('good', data), ('bad', data + b'!')):
            signature = base64.b64encode(signer.sign(signed, pss, hashes.SHA256())).decode()
            image = conn.image.create_image(
                name='e2e-signed-%s' % label, disk_format='raw', container_format='bare',
                img_signature=signature, img_signature_hash_method='SHA-256',
                img_signature_key_type='RSA-PSS', img_signature_certificate_uuid=cert_id)
            try:
                reply = conn.image.put('/images/%s/file' % image.id, data=data,
                                       headers={'Content-Type': 'application/octet-stream'})
                outcome[label] = (reply.status_code, conn.image.get_image(image.id).status)
            finally:
                conn.image.delete_image(image.id)
    finally:
        keys.delete(context, cert_id)
    assert outcome == {'good': (204, 'active'), 'bad': (400, 'queued')}


# nova-compute's way: nova's configuration file, a RequestContext with the user's token and
# the catalog keystonemiddleware hands nova-api (X-Service-Catalog), castellan from nova.crypto.
NOVA_READS_A_SECRET = textwrap.dedent('''
    import os, sys
    import openstack
    from castellan.common.objects import symmetric_key
    from keystonemiddleware.auth_token import _request
    from nova import config, context, crypto
    config.parse_args(['nova-compute', '--config-file', sys.argv[1]])
    conn = openstack.connect(cloud=sys.argv[2])
    access = conn.session.auth.get_access(conn.session)
    ctx = context.RequestContext(
        user_id=access.user_id, project_id=access.project_id, auth_token=access.auth_token,
        roles=access.role_names, service_catalog=_request._normalize_catalog(access.service_catalog.catalog))
    keys = crypto._get_key_manager()
    key_id = keys.store(ctx, symmetric_key.SymmetricKey('AES', 256, os.urandom(32)))
    try:
        assert keys.get(ctx, key_id).bit_length == 256
    finally:
        keys.delete(ctx, key_id)
    print(type(keys).__name__)
''')


@pytest.mark.parametrize('box_name', ['box', 'box2'])
def test_nova_reads_a_secret_with_the_user_s_token(request, box_name):
    box = request.getfixturevalue(box_name)
    conf = box.etc / 'nova' / 'nova-cpu.conf'
    done = subprocess.run([str(layout.VENV / 'bin' / 'python'), '-c', NOVA_READS_A_SECRET, str(conf),
                           '%s-demo' % box.name], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1'))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == 'BarbicanKeyManager'
