"""`server synthesize`'s trust options: encrypt and sign an overlay file before it leaves
this machine, name the key of an encrypted overlay, require a signature (doc/trust.md).

    --encrypt                         a new AES-256 key in the project's key manager;
                                      the file is encrypted here, then uploaded
    --key-id <id>                     the overlay is already encrypted with this key
    --sign-key <pem> --signing-certificate <id>
                                      sign what is uploaded (img_signature* properties)
    --trusted-image-certificate <id>  nova's trusted_image_certificates: the compute host
                                      refuses an overlay not signed under one of them
"""

import contextlib
import os
import tempfile

from osc_lib import exceptions

from cloudlet_client import errors as client_errors
from cloudlet_client import keys
from cloudlet_client import overlays as client_overlays
from cloudlet_glance import properties as props
from cloudlet_glance import signatures


def add_key_arguments(parser, encrypt_help, key_id_help):
    """--encrypt (a new key) or --key-id (a key of the project's key manager)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--encrypt', action='store_true', help=encrypt_help)
    group.add_argument('--key-id', metavar='<key-id>', help=key_id_help)


def add_arguments(parser):
    add_key_arguments(parser, 'Encrypt the overlay file here (AES-256-GCM) with a new key kept in the '
                              "project's key manager (Barbican), then upload it",
                      'The overlay is encrypted with this key manager key (its ID)')
    parser.add_argument('--sign-key', metavar='<private-key.pem>',
                        help='Sign the uploaded overlay file with this private key (PEM: RSA, ECC or '
                             'DSA), as Glance images are signed; needs --signing-certificate')
    parser.add_argument('--signing-certificate', metavar='<certificate-id>',
                        help="The key manager ID of --sign-key's certificate")
    parser.add_argument('--trusted-image-certificate', metavar='<certificate-id>',
                        dest='trusted_certificates', action='append',
                        help='Require the overlay to be signed by a certificate this one issued '
                             "(nova's trusted_image_certificates; repeat for more)")


def check(parsed_args, is_file):
    """Refuse combinations that cannot work, before anything is created."""
    if bool(parsed_args.sign_key) != bool(parsed_args.signing_certificate):
        raise exceptions.CommandError('--sign-key and --signing-certificate go together')
    if not is_file and (parsed_args.encrypt or parsed_args.sign_key):
        raise exceptions.CommandError('--encrypt and --sign-key apply to a local overlay file, which this '
                                      'command uploads')
    if parsed_args.sign_key:
        try:
            with open(parsed_args.sign_key, 'rb') as f:
                return signatures.load_private_key(f.read())
        except OSError as exc:
            raise exceptions.CommandError('--sign-key %s: %s' % (parsed_args.sign_key, exc.strerror)) from None
    return None


@contextlib.contextmanager
def prepared_file(cloudlet, parsed_args, path, signing_key):
    """(path to upload, image properties): the file encrypted and signed as asked.

    The encrypted copy is removed on exit; a key created here is deleted
    again when the block fails (nothing would use it).
    """
    properties = {}
    new_key_id = None
    with tempfile.TemporaryDirectory(prefix='cloudlet-upload-') as tmp:
        try:
            if parsed_args.encrypt:
                manager = keys.KeyManager(cloudlet.session, cloudlet.region_name, cloudlet.interface)
                key, new_key_id = manager.new_key('overlay %s' % os.path.basename(path))
                encrypted = os.path.join(tmp, os.path.basename(path))
                client_overlays.encrypt_file(path, encrypted, key)
                del key
                path = encrypted
                properties[props.OVERLAY_KEY_ID] = new_key_id
            elif parsed_args.key_id:
                properties[props.OVERLAY_KEY_ID] = parsed_args.key_id
            if signing_key is not None:
                properties.update(signatures.sign_file(path, signing_key, parsed_args.signing_certificate))
            yield path, properties
        except client_errors.ClientError as exc:
            _forget(cloudlet, new_key_id)
            raise exceptions.CommandError(str(exc)) from None
        except BaseException:
            _forget(cloudlet, new_key_id)
            raise


def _forget(cloudlet, key_id):
    if key_id:
        # The command's own error is the one to show.
        with contextlib.suppress(client_errors.ClientError):
            keys.KeyManager(cloudlet.session, cloudlet.region_name, cloudlet.interface).delete(key_id)
