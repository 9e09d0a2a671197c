"""The OSC plugin contract (entry point group openstack.cli.extension).

OSC imports this module on every `openstack` run, so it imports nothing
heavy: the client module is loaded by make_client, when a cloudlet command
first asks for `client_manager.cloudlet`.
"""

import importlib

from osc_lib import exceptions
from osc_lib import utils

API_NAME = 'cloudlet'
API_VERSION_OPTION = 'os_cloudlet_api_version'
DEFAULT_API_VERSION = '1'
API_VERSIONS = {'1': 'cloudlet_osc.client.CloudletClient'}


def make_client(instance):
    """The cloudlet client of an OSC ClientManager (authenticated session, region, interface)."""
    version = instance._api_version.get(API_NAME, DEFAULT_API_VERSION)
    if version not in API_VERSIONS:
        raise exceptions.UnsupportedVersion('cloudlet API version %s is not supported (supported: %s)'
                                            % (version, ', '.join(sorted(API_VERSIONS))))
    module_name, _, class_name = API_VERSIONS[version].rpartition('.')
    client_class = getattr(importlib.import_module(module_name), class_name)
    return client_class(instance.session, region_name=instance.region_name,
                        interface=instance.interface)


def build_option_parser(parser):
    # The default must never be empty: OSC only loads the openstack.cloudlet.v<N>
    # command group for a non-empty version.
    parser.add_argument(
        '--os-cloudlet-api-version',
        metavar='<cloudlet-api-version>',
        default=utils.env('OS_CLOUDLET_API_VERSION', default=DEFAULT_API_VERSION),
        help='Cloudlet API version, default=%s (Env: OS_CLOUDLET_API_VERSION)' % DEFAULT_API_VERSION)
    return parser
