"""How the library authenticates on a cloudlet it discovered, and on the fallback cloud.

A discovered cloudlet says where its Keystone is, but an mDNS answer comes
from anyone on the link: credentials go only where the caller said they may.
Two ways, usable together (the first that covers a cloudlet wins):

- a clouds.yaml cloud per region: ``Credentials(clouds={'edge-1': 'edge-1-app'})``.
  The cloud's entry holds everything (auth type, credentials, its own
  ``auth_url``); the cloudlet is used only if the Keystone URL it advertises
  is that ``auth_url`` (same scheme, host, port and path, ``/v3`` or not).
- keystoneauth auth options for every cloudlet whose Keystone host the caller
  trusts::

      Credentials(auth={'application_credential_id': '...', 'application_credential_secret': '...'},
                  auth_type='v3applicationcredential',      # the default
                  trusted_hosts=('*.edge.example', '10.20.0.0/16'))

  ``auth`` is what keystoneauth's loader for ``auth_type`` takes, without
  ``auth_url`` (the advert's is used): for ``password``, ``username``,
  ``password``, ``project_name``, ``user_domain_name``, ``project_domain_name``.
  ``trusted_hosts`` are host name patterns (fnmatch) and IP networks; ``'*'``
  trusts every cloudlet that answers (only on a link you control).

The fallback cloud (and any cloud named in clouds.yaml) is made by ``named_cloud(name)``.
"""

import fnmatch
import ipaddress
import logging
import urllib.parse

from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import loading
from keystoneauth1 import session as ksa_session

from cloudlet_client import cloud as cloud_mod
from cloudlet_client import errors

LOG = logging.getLogger(__name__)
APP_NAME = 'openstack-cloudlet-client'


def _normal_keystone(url):
    """scheme://host:port/path of a Keystone URL, without a trailing /v3 or slash."""
    parts = urllib.parse.urlsplit((url or '').strip())
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    path = parts.path.rstrip('/')
    if path.endswith('/v3'):
        path = path[:-3]
    return '%s://%s:%d%s' % (parts.scheme.lower(), (parts.hostname or '').lower(), port, path)


def same_keystone(one, other):
    return _normal_keystone(one) == _normal_keystone(other)


def host_trusted(url, patterns):
    """Does one of `patterns` (fnmatch host patterns, IP networks, '*') cover the host of `url`?"""
    host = (urllib.parse.urlsplit(url).hostname or '').lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for pattern in patterns or ():
        pattern = str(pattern).strip().lower()
        if address is not None and '/' in pattern:
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                continue
        elif fnmatch.fnmatchcase(host, pattern):
            return True
    return False


def _config():
    import openstack.config
    return openstack.config.OpenStackConfig(app_name=APP_NAME)


def clouds_yaml_cloud(name, region_name=None):
    """(keystoneauth Session, region, interface, auth_url) of a clouds.yaml cloud."""
    from openstack import exceptions as sdk_exceptions
    try:
        region = _config().get_one(cloud=name, region_name=region_name or '')
        session = region.get_session()
    except (sdk_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
        raise errors.ClientError('clouds.yaml cloud %s: %s' % (name, exc)) from exc
    auth_url = (region.config.get('auth') or {}).get('auth_url')
    return session, region.region_name or None, region.get_interface() or 'public', auth_url


def named_cloud(name, region_name=None):
    """The Cloud of a clouds.yaml cloud: the fallback region, or a handoff destination."""
    session, region, interface, auth_url = clouds_yaml_cloud(name, region_name)
    return cloud_mod.Cloud(session, region, interface, name=name, keystone_url=auth_url)


class Credentials:
    """What to authenticate with on which cloudlet (see the module doc)."""

    def __init__(self, auth=None, auth_type='v3applicationcredential', trusted_hosts=(), clouds=None,
                 verify=True, interface='public'):
        if auth is not None and 'auth_url' in auth:
            raise ValueError('auth: leave out auth_url (the cloudlet advertises its own)')
        self.auth = dict(auth) if auth is not None else None
        self.auth_type = auth_type
        self.trusted_hosts = tuple(trusted_hosts or ())
        self.clouds = dict(clouds or {})
        self.verify = verify
        self.interface = interface

    def cloud_for(self, cloudlet):
        """The Cloud of a discovered cloudlet (nothing is sent yet); errors.Untrusted when not covered."""
        keystone, region = cloudlet.keystone_url, cloudlet.region
        if region in self.clouds:
            session, _, interface, auth_url = clouds_yaml_cloud(self.clouds[region], region)
            if not auth_url or not same_keystone(auth_url, keystone):
                raise errors.Untrusted('cloudlet %s advertises keystone %s, but clouds.yaml cloud %s for '
                                       'region %s authenticates at %s' % (cloudlet.name, keystone,
                                                                          self.clouds[region], region,
                                                                          auth_url))
            return cloud_mod.Cloud(session, region, interface, name=cloudlet.name, keystone_url=keystone)
        if self.auth is None:
            raise errors.Untrusted('no credentials for region %s (cloudlet %s)' % (region, cloudlet.name))
        if not host_trusted(keystone, self.trusted_hosts):
            raise errors.Untrusted('keystone %s of cloudlet %s is not a trusted host (trusted_hosts: %s)'
                                   % (keystone, cloudlet.name, ', '.join(self.trusted_hosts) or 'none'))
        return cloud_mod.Cloud(self.session(keystone), region, self.interface, name=cloudlet.name,
                               keystone_url=keystone)

    def session(self, keystone_url):
        """A keystoneauth Session with `auth` at `keystone_url` (no request is made yet)."""
        try:
            plugin = loading.get_plugin_loader(self.auth_type).load_from_options(
                auth_url=keystone_url, **self.auth)
        except (ksa_exceptions.ClientException, TypeError) as exc:
            raise errors.ClientError('auth_type %s: %s' % (self.auth_type, exc)) from exc
        return ksa_session.Session(auth=plugin, verify=self.verify, app_name=APP_NAME)
