"""The destination cloud of a VM handoff, as the source compute host sees it.

`DestinationClient` is everything the source compute host asks of the other cloud
(doc/handoff.md, "Flow"): authenticate with the credential of the request,
find the base disk image there, pick a flavor, create the server, wait
until its compute host is ready for the residue, stream the residue into it
(`PUT /servers/{id}/cloudlet-residue`, api_extensions.residue), wait for it
to be ACTIVE, and clean up. It authenticates with keystoneauth1 and calls
Glance, nova, Neutron and Barbican through openstacksdk's proxies on that
keystoneauth session (our residue calls, which the sdk does not know, through
its compute proxy as plain requests); the residue upload streams with
requests. No nova imports, so it runs and is tested on its own. Every
connection it opens (to the auth_url or compute_endpoint, the catalog's
endpoints, redirects, the upload) is checked by the outbound policy
(cloudlet_engine.outbound) and uses no proxy from the environment.

Errors are `HandoffDestinationError`; `refused` tells a destination that
answered and said no (4xx, no matching base, no fitting flavor, a build that
ended in ERROR, a host the outbound policy refuses) from one that could not
be reached, timed out or stalled.
Messages never hold the credential: every message built here goes through
`DestinationClient._redact`, and nothing here logs more than the Keystone URL and
ids. Every network call has a timeout (`connect_timeout` for connecting and
for each API call; the upload adds `stall_timeout`): nothing waits forever.
"""

import base64
import contextlib
import itertools
import logging
import re
import time
import urllib.parse

from keystoneauth1 import access
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.identity import access as access_plugin
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
from openstack import connection as sdk_connection
from openstack import exceptions as sdk_exc
from openstack.image.v2 import image as sdk_image
from openstack import resource as sdk_resource
import requests

from cloudlet_engine import outbound
from cloudlet_glance import properties as props
from cloudlet_nova.handoff import remote
from cloudlet_nova.handoff.remote import HandoffDestinationError
from cloudlet_nova.handoff.upload import Upload

LOG = logging.getLogger(__name__)


# >= 2.37: "networks": "none" | "auto". The lowest that works: destinations run
# other nova releases than ours.
COMPUTE_MICROVERSION = '2.37'
INTERFACES = ('public', 'internal', 'admin')
MAX_LIST_ITEMS = 5000       # bounds a paginated listing (Glance images, nova flavors)

_KEYSTONE_URI = re.compile(r'keystone\s+uri\s*=\s*"([^"]+)"', re.IGNORECASE)

# Module attributes so that tests can run time-based loops without waiting.
clock = time.monotonic
sleep = time.sleep


def _image_api_root(url):
    """Glance's catalog endpoint without a version (the image proxy's is it + /v2)."""
    url = url.rstrip('/')
    return re.sub(r'/v2(\.\d+)?$', '', url)


class _CloudletImage(sdk_image.Image):
    """Glance's image, listed by our properties: the sdk's Image drops filters it does not know."""

    _query_mapping = sdk_resource.QueryParameters(props.CLOUDLET_TYPE, props.BASE_ID)


def _as_json(resource):
    """An sdk resource as the service's JSON: its names, an image's properties at the top again."""
    body = resource.to_dict(headers=False, computed=False, original_names=True, ignore_none=True)
    body.update(body.pop('properties', None) or {})
    return body


def _quote(resource_id):
    """An id as one path segment: the sdk puts ids into URLs as they are."""
    return urllib.parse.quote(str(resource_id), safe='')


def _check_http_url(url, what):
    parts = urllib.parse.urlsplit(url or '')
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise HandoffDestinationError('%s %r is not an http(s) URL' % (what, url), refused=True)
    return url


class DestinationClient:
    """The destination cloud of one handoff (see the module doc)."""

    def __init__(self, destination, credential, *, known_clouds=None, ca_file=None, insecure=False,
                 connect_timeout=30, stall_timeout=60, policy=None):
        # Every connection (Keystone, the catalog's endpoints, redirects, the
        # upload) goes through this outbound.Policy; None: public addresses only.
        self._policy = outbound.Policy() if policy is None else policy
        destination = dict(destination or {})
        forms = [key for key in ('auth_url', 'compute_endpoint', 'cloud') if destination.get(key)]
        if len(forms) != 1:
            raise HandoffDestinationError('the destination needs exactly one of auth_url, compute_endpoint '
                                          'and cloud', refused=True)
        self._form = forms[0]
        self.region_name = destination.get('region_name') or None
        self.interface = destination.get('interface') or 'public'
        if self.interface not in INTERFACES:
            raise HandoffDestinationError('destination interface %r is not one of %s'
                                          % (self.interface, ', '.join(INTERFACES)), refused=True)
        self.flavor_id = destination.get('flavor') or None
        self.connect_timeout = float(connect_timeout)
        self.stall_timeout = float(stall_timeout)
        self._verify = False if insecure else (ca_file or True)
        self._secrets = []
        self._credential = self._parse_credential(credential)
        self.compute_endpoint = None
        self.auth_url = None
        if self._form == 'auth_url':
            self.auth_url = remote.keystone_v3_url(_check_http_url(destination['auth_url'], 'destination auth_url'))
        elif self._form == 'cloud':
            clouds = dict(known_clouds or {})
            name = destination['cloud']
            if name not in clouds:
                raise HandoffDestinationError(
                    'destination cloud %r is not configured here (known: %s)'
                    % (name, ', '.join(sorted(clouds)) or 'none'), refused=True)
            self.auth_url = remote.keystone_v3_url(_check_http_url(clouds[name], 'destination cloud %s' % name))
        else:
            self.compute_endpoint = _check_http_url(destination['compute_endpoint'].rstrip('/'),
                                                    'destination compute_endpoint')
        self.project_id = self.user_id = None
        self.image_url = self.compute_url = self.network_url = self.key_manager_url = None
        self.base_image = None
        self._session = None
        self._sdk = None

    def __repr__(self):
        return '<DestinationClient %s>' % (self.auth_url or self.compute_endpoint)

    # ------------------------------------------------------------ plumbing

    def _parse_credential(self, credential):
        credential = credential if isinstance(credential, dict) else {}
        kinds = [key for key in ('token', 'application_credential') if credential.get(key)]
        if len(kinds) != 1:
            raise HandoffDestinationError('the credential needs exactly one of token and '
                                          'application_credential', refused=True)
        if kinds[0] == 'token':
            token = credential['token']
            if not isinstance(token, str):
                raise HandoffDestinationError('the credential token must be a string', refused=True)
            self._secrets.append(token)
            return ('token', token)
        app = credential['application_credential']
        if not isinstance(app, dict) or not app.get('id') or not app.get('secret'):
            raise HandoffDestinationError('the application credential needs an id and a secret', refused=True)
        self._secrets.append(str(app['secret']))
        return ('application_credential', (str(app['id']), str(app['secret'])))

    def _redact(self, text):
        text = str(text)
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, '***')
        return text

    def _error(self, message, refused=False):
        return HandoffDestinationError(self._redact(message), refused=refused)

    def _unreachable(self, what, exc):
        return self._error('destination %s: %s failed: %s' % (self.auth_url or self.compute_endpoint, what,
                                                              exc or exc.__class__.__name__))

    def _refused(self, exc):
        """outbound.Refused: the policy refused a host before connecting to it."""
        return self._error('destination %s: %s' % (self.auth_url or self.compute_endpoint, exc), refused=True)

    def _check_policy(self, url, what=None):
        """Refuse an IP address literal the policy refuses now; names are checked when connecting."""
        try:
            self._policy.check_url(url, what, resolve=False)
        except outbound.Refused as exc:
            raise self._refused(exc) from None

    def _new_session(self, auth=None):
        return ksa_session.Session(auth=auth, session=self._policy.session(), verify=self._verify,
                                   timeout=self.connect_timeout, user_agent='openstack-cloudlet-handoff')

    @contextlib.contextmanager
    def _calling(self, what):
        """Around an API call (an sdk proxy's): its failures become HandoffDestinationError."""
        try:
            yield
        except ksa_exc.HttpError as exc:      # re-authentication refused
            raise self._error('destination %s: %s refused: %s' % (self.auth_url, what, exc),
                              refused=True) from None
        except outbound.Refused as exc:
            raise self._refused(exc) from None
        except (ksa_exc.ClientException, requests.exceptions.RequestException, sdk_exc.SDKException) as exc:
            if isinstance(exc, sdk_exc.HttpException) and exc.response is not None:
                raise self._http_error(exc.response, what) from None     # the sdk's check of an answer
            raise self._unreachable(what, exc) from None

    def _connected(self, proxy):
        if proxy is None:
            raise HandoffDestinationError('destination: connect() first')
        return proxy

    def _raw(self, proxy, method, path, what, **kwargs):
        """A plain request through an sdk proxy (a keystoneauth Adapter: its endpoint, microversion)."""
        proxy = self._connected(proxy)
        with self._calling(what):
            return proxy.request(path, method, raise_exc=False, **kwargs)

    def _http_error(self, response, what):
        """A failed answer: 4xx -> refused, anything else -> not."""
        refused = 400 <= response.status_code < 500
        return self._error('destination %s: %s: %s (HTTP %d)' % (self.auth_url, what, remote.response_message(response),
                                                                 response.status_code), refused=refused)

    def _check(self, response, what):
        """The response of a call that must succeed."""
        if response.status_code < 400:
            return response
        raise self._http_error(response, what)

    # ------------------------------------------------------------ connect

    def _discover_auth_url(self):
        """Keystone's URL from the WWW-Authenticate header the compute endpoint sends with its 401."""
        session = self._new_session()
        for url in (self.compute_endpoint, self.compute_endpoint + '/servers'):
            try:
                response = session.get(url, authenticated=False, raise_exc=False, log=False)
            except outbound.Refused as exc:
                raise self._refused(exc) from None
            except (ksa_exc.ClientException, requests.exceptions.RequestException) as exc:
                raise self._error('destination compute endpoint %s: cannot reach it: %s'
                                  % (self.compute_endpoint, exc)) from None
            match = _KEYSTONE_URI.search(response.headers.get('WWW-Authenticate') or '')
            if match:
                return remote.keystone_v3_url(_check_http_url(match.group(1), 'the Keystone URL the destination '
                                                                       'compute endpoint names'))
        raise self._error('destination compute endpoint %s does not name its Keystone (no WWW-Authenticate: '
                          'Keystone uri="..." header in its answer): give the destination auth_url'
                          % self.compute_endpoint, refused=True)

    def _token_auth(self):
        """Validate a token (GET /v3/auth/tokens on itself): its catalog and project, used as is."""
        token = self._credential[1]
        try:
            response = self._new_session().get(
                self.auth_url + '/auth/tokens', headers={'X-Auth-Token': token, 'X-Subject-Token': token},
                authenticated=False, raise_exc=False, log=False)
        except outbound.Refused as exc:
            raise self._refused(exc) from None
        except (ksa_exc.ClientException, requests.exceptions.RequestException) as exc:
            raise self._error('destination %s: cannot reach Keystone: %s' % (self.auth_url, exc)) from None
        if response.status_code in (401, 403, 404):
            raise self._error('destination %s refused the token: it is invalid or expired (HTTP %d)'
                              % (self.auth_url, response.status_code), refused=True)
        self._check(response, 'validating the token')
        try:
            auth_ref = access.create(body=response.json(), auth_token=token)
        except ValueError:
            raise self._error('destination %s: Keystone answered the token validation with no token'
                              % self.auth_url, refused=True) from None
        return access_plugin.AccessInfoPlugin(auth_ref, auth_url=self.auth_url)

    def connect(self):
        """Authenticate and resolve the image and compute endpoints from the catalog."""
        self._check_policy(self.auth_url or self.compute_endpoint)
        if self._form == 'compute_endpoint' and self.auth_url is None:
            self.auth_url = self._discover_auth_url()
        if self._credential[0] == 'token':
            auth = self._token_auth()
        else:
            app_id, secret = self._credential[1]
            auth = v3.ApplicationCredential(auth_url=self.auth_url, application_credential_id=app_id,
                                            application_credential_secret=secret)
        session = self._new_session(auth)
        try:
            auth_ref = auth.get_access(session)
        except ksa_exc.HttpError as exc:
            code = getattr(exc, 'http_status', None)
            if code and code >= 500:
                raise self._error('destination %s: Keystone failed to authenticate the credential (HTTP %s)'
                                  % (self.auth_url, code)) from None
            raise self._error('destination %s refused the credential%s'
                              % (self.auth_url, ' (HTTP %s)' % code if code else ''),
                              refused=True) from None
        except outbound.Refused as exc:
            raise self._refused(exc) from None
        except (ksa_exc.ClientException, requests.exceptions.RequestException) as exc:
            raise self._error('destination %s: cannot reach Keystone: %s' % (self.auth_url, exc)) from None
        if not auth_ref.project_id:
            raise self._error('destination %s: the credential is not scoped to a project' % self.auth_url,
                              refused=True)
        self.project_id, self.user_id = auth_ref.project_id, auth_ref.user_id
        catalog = auth_ref.service_catalog
        urls = {}
        for service_type, name in (('image', 'image (Glance)'), ('compute', 'compute (nova)')):
            try:
                urls[service_type] = catalog.url_for(service_type=service_type, interface=self.interface,
                                                     region_name=self.region_name)
            except ksa_exc.EndpointNotFound:
                urls[service_type] = None
            if not urls[service_type]:
                raise self._error('destination %s: no %s endpoint for interface %s%s in the catalog'
                                  % (self.auth_url, name, self.interface,
                                     ' in region %s' % self.region_name if self.region_name else ''),
                                  refused=True)
        self.image_url = _image_api_root(urls['image'])
        self.compute_url = urls['compute'].rstrip('/')
        try:   # optional: only a floating IP for the server needs it
            network_url = catalog.url_for(service_type='network', interface=self.interface,
                                          region_name=self.region_name)
        except ksa_exc.EndpointNotFound:
            network_url = None
        self.network_url = network_url.rstrip('/') if network_url else None
        try:   # optional: residues are encrypted when the destination has a key manager
            key_manager_url = catalog.url_for(service_type='key-manager', interface=self.interface,
                                              region_name=self.region_name)
        except ksa_exc.EndpointNotFound:
            key_manager_url = None
        self.key_manager_url = key_manager_url.rstrip('/').removesuffix('/v1') if key_manager_url else None
        for endpoint in (self.image_url, self.compute_url, self.network_url, self.key_manager_url):
            if endpoint:
                self._check_policy(endpoint, 'catalog endpoint')
        self._session = session
        self._make_proxies(session)
        LOG.info('handoff destination %s: project %s, image %s, compute %s', self.auth_url, self.project_id,
                 self.image_url, self.compute_url)
        return self

    def _make_proxies(self, session):
        """An openstacksdk Connection on the session, each service at its catalog endpoint."""
        config = {}
        for service, url, version in (('compute', self.compute_url, '2'),
                                      ('image', self.image_url and self.image_url + '/v2', '2'),
                                      ('network', self.network_url and self.network_url + '/v2.0', '2'),
                                      ('key_manager', self.key_manager_url and self.key_manager_url + '/v1', '1')):
            if url:
                config.update({service + '_endpoint_override': url, service + '_api_version': version})
        self._sdk = sdk_connection.Connection(session=session, region_name=self.region_name,
                                              interface=self.interface, **config)

    def _proxy(self, service):
        """The sdk's proxy of a service the catalog has (else None). Made at its first use, when
        the sdk reads the endpoint's version document: a round trip per service, at the first
        call of each branch of the destination checks, which run at once.
        """
        if self._sdk is None or not getattr(self, service + '_url'):
            return None
        with self._calling('reading its %s API version' % service.replace('_', '-')):
            proxy = getattr(self._sdk, service)
        if service == 'compute':
            proxy.default_microversion = COMPUTE_MICROVERSION
        return proxy

    # ------------------------------------------------------------ Glance

    def _list_images(self, filters):
        image = self._connected(self._proxy('image'))
        with self._calling('listing images'):
            return [_as_json(i) for i in itertools.islice(_CloudletImage.list(image, **filters), MAX_LIST_ITEMS)]

    def _get_image(self, image_id):
        image = self._connected(self._proxy('image'))
        with self._calling('getting image %s' % image_id):
            try:
                return _as_json(image.get_image(_quote(image_id)))
            except sdk_exc.NotFoundException:
                return None

    def _base_problem(self, image, base_id):
        """Why a base disk image cannot be restored there (a companion missing or not active), or None."""
        for kind in props.COMPANION_TYPES:
            companion_id = image.get(kind)     # the disk image names it under its type
            if not companion_id:
                return 'it does not name its %s image' % kind
            companion = self._get_image(companion_id)
            if companion is None:
                return 'its %s image %s is not visible' % (kind, companion_id)
            if companion.get(props.CLOUDLET_TYPE) != kind or companion.get(props.BASE_ID) != base_id:
                return 'image %s is not its %s' % (companion_id, kind)
            if companion.get('status') != 'active':
                return 'its %s image %s is %s' % (kind, companion_id, companion.get('status'))
        for key in (props.KERNEL_ID, props.RAMDISK_ID):
            boot_id = image.get(key)
            if boot_id and boot_id != props.NO_KERNEL:
                boot = self._get_image(boot_id)
                if boot is None or boot.get('status') != 'active':
                    return 'its %s %s is %s' % (key, boot_id, 'not visible' if boot is None
                                                else boot.get('status'))
        return None

    def find_base_image(self, base_id):
        """The destination's active, complete base disk image of this base, visible to the project."""
        candidates = self._list_images({props.CLOUDLET_TYPE: props.BASE_DISK, props.BASE_ID: base_id})
        problems = []
        for image in sorted(candidates, key=lambda i: (str(i.get('created_at') or ''), i['id'])):
            if image.get(props.CLOUDLET_TYPE) != props.BASE_DISK or image.get(props.BASE_ID) != base_id:
                continue        # a Glance that ignored the property filters
            if image.get('status') != 'active':
                problems.append('image %s is %s' % (image['id'], image.get('status')))
                continue
            problem = self._base_problem(image, base_id)
            if problem:
                problems.append('image %s: %s' % (image['id'], problem))
                continue
            self.base_image = image
            return image
        raise self._error('destination %s has no active base disk image of base %s visible to project %s%s: '
                          'import the base there first'
                          % (self.auth_url, base_id, self.project_id,
                             ' (%s)' % '; '.join(problems) if problems else ''), refused=True)

    def _residue_path(self, server_id):
        return '/servers/%s/cloudlet-residue' % _quote(server_id)

    def residue_status(self, server_id, handoff_id, timeout=None):
        """The destination inbox of the server: {'state', 'bytes_received', 'reason'}."""
        what = 'asking server %s whether it is ready for the residue' % server_id
        # Our own API extension: a plain request (the sdk has no resource for it).
        response = self._raw(self._proxy('compute'), 'GET', self._residue_path(server_id), what,
                             headers={remote.RESIDUE_HEADER: str(handoff_id)},
                             **({'timeout': timeout} if timeout else {}))
        return self._check(response, what).json()['residue']

    def _poll(self, ask, settled, timeout, poll, waiting_for, late):
        """ask(call_timeout) until settled(answer) returns a result (returned).

        settled() returns None to keep polling (a string in `self._last_problem`
        says why), or raises. A refused call ends it; one that cannot reach the
        destination is retried, for `stall_timeout` s without an answer at most
        (a cut link fails the handoff as a stalled upload does); `timeout` s in
        all (then the error says `late`).
        """
        deadline = clock() + timeout
        answered = clock()
        self._last_problem = None
        while True:
            remaining = deadline - clock()
            try:
                answer = ask(max(1.0, min(self.connect_timeout, remaining)))
                answered = clock()
            except HandoffDestinationError as exc:
                if exc.refused:
                    raise
                self._last_problem = str(exc)
                if clock() - answered >= self.stall_timeout:
                    raise self._error('destination %s: no answer for %d s while waiting for %s (%s)'
                                      % (self.auth_url, self.stall_timeout, waiting_for,
                                         self._last_problem)) from None
            else:
                result = settled(answer)
                if result is not None:
                    return result
            if clock() >= deadline:
                raise self._error('destination %s: %s after %d s (%s)'
                                  % (self.auth_url, late, timeout, self._last_problem))
            sleep(max(0.0, min(poll, deadline - clock())))

    def wait_ready(self, server_id, handoff_id, timeout, poll=0.2):
        """Poll until the server's compute host is ready for the residue (its base in place).

        A build that failed there is refused; see `_poll` for the rest.
        """
        def settled(status):
            if status.get('state') == 'failed':
                raise self._error('destination %s: server %s gave the residue up: %s'
                                  % (self.auth_url, server_id, status.get('reason')), refused=True)
            if status.get('state') != 'waiting':
                return status
            self._last_problem = 'its compute host is still preparing the base'
            return None
        return self._poll(lambda call_timeout: self.residue_status(server_id, handoff_id, timeout=call_timeout),
                          settled, timeout, poll, 'server %s to be ready' % server_id,
                          'server %s not ready for the residue' % server_id)

    def residue_upload(self, server_id, handoff_id):
        """The streaming upload of the residue into the server (`with d.residue_upload(...) as up`)."""
        if self._session is None:
            raise HandoffDestinationError('destination: connect() first')
        try:
            headers = dict(self._session.get_auth_headers() or {})
        except outbound.Refused as exc:
            raise self._refused(exc) from None
        except (ksa_exc.ClientException, requests.exceptions.RequestException) as exc:
            raise self._unreachable('authenticating for the upload', exc) from None
        headers['Content-Type'] = 'application/octet-stream'
        headers[remote.RESIDUE_HEADER] = str(handoff_id)
        url = self.compute_url + self._residue_path(server_id)
        return Upload(url, headers, verify=self._verify, connect_timeout=self.connect_timeout,
                      stall_timeout=self.stall_timeout,
                      describe='residue upload to server %s at %s' % (server_id, url),
                      redact=self._redact, policy=self._policy)

    # ------------------------------------------------------------ Barbican

    def store_key(self, key, name):
        """Store an AES-256 key in the destination's key manager (its project's secret); its id."""
        key_manager = self._proxy('key_manager')
        if key_manager is None:
            raise HandoffDestinationError('destination %s has no key manager in its catalog' % self.auth_url,
                                          refused=True)
        with self._calling('storing the residue key'):
            secret = key_manager.create_secret(
                name=name, secret_type='symmetric', algorithm='aes', bit_length=256, mode='gcm',
                payload=base64.b64encode(key).decode('ascii'), payload_content_type='application/octet-stream',
                payload_content_encoding='base64')
        key_id = str(secret.secret_ref or '').rstrip('/').rsplit('/', 1)[-1]
        if not key_id:
            raise self._error('destination %s: the key manager answered without a secret_ref' % self.auth_url)
        return key_id

    def delete_key(self, key_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly('key_manager', 'key %s' % key_id,
                                    lambda proxy: proxy.delete_secret(_quote(key_id)))

    # ------------------------------------------------------------ nova

    def pick_flavor(self, memory_mb, vcpus, flavor_id=None, *, min_disk_gb=None):
        """The flavor for the new server (nova's JSON of it).

        `flavor_id` (else the destination's `flavor`): it must have exactly
        this RAM and these vCPUs. Otherwise the enabled flavor with exactly
        these, a root disk of at least `min_disk_gb` (default: the min_disk of
        the base image find_base_image found), zero-disk flavors left out (nova
        lets only admins boot images on them), flavors with an ephemeral or
        swap disk last, then the smallest root disk, then the name.
        """
        memory_mb, vcpus = int(memory_mb), int(vcpus)
        flavor_id = flavor_id or self.flavor_id
        compute = self._connected(self._proxy('compute'))
        if flavor_id:
            with self._calling('getting flavor %s' % flavor_id):
                try:
                    flavor = compute.get_flavor(_quote(flavor_id))
                except sdk_exc.NotFoundException:
                    raise self._error('destination %s has no flavor %s' % (self.auth_url, flavor_id),
                                      refused=True) from None
            if flavor.ram != memory_mb or flavor.vcpus != vcpus:
                raise self._error('destination flavor %s has %s MB / %s vCPUs; the server needs %d MB / %d '
                                  'vCPUs' % (flavor.name or flavor_id, flavor.ram, flavor.vcpus, memory_mb, vcpus),
                                  refused=True)
            return _as_json(flavor)
        if min_disk_gb is None:
            min_disk_gb = int((self.base_image or {}).get(props.MIN_DISK) or 0)

        def extra_disks(flavor):
            return (flavor.ephemeral or 0) + (flavor.swap or 0)
        with self._calling('listing flavors'):
            # nova's default listing; the sdk would ask for is_public=None (all flavors, for an admin).
            flavors = list(itertools.islice(compute.flavors(details=True, is_public=True), MAX_LIST_ITEMS))
        fitting = [f for f in flavors if f.ram == memory_mb and f.vcpus == vcpus and f.disk
                   and f.disk >= min_disk_gb and not f.is_disabled]
        if not fitting:
            raise self._error('destination %s has no flavor with %d MB RAM, %d vCPUs and a root disk of at '
                              'least %d GB available to project %s'
                              % (self.auth_url, memory_mb, vcpus, max(min_disk_gb, 1), self.project_id),
                              refused=True)
        return _as_json(min(fitting, key=lambda f: (extra_disks(f) > 0, f.disk, extra_disks(f),
                                                    str(f.name), str(f.id))))

    def create_server(self, name, image_id, flavor_id, metadata, networks='none'):
        """POST /servers (microversion 2.37); the new server's id."""
        server = {'name': name, 'image_id': image_id, 'flavor_id': flavor_id, 'networks': networks}
        if metadata:
            server['metadata'] = {str(k): str(v) for k, v in metadata.items()}
        with self._calling('creating the server'):
            server_id = self._connected(self._proxy('compute')).create_server(**server).id
        LOG.info('destination %s: server %s created (image %s, flavor %s)', self.auth_url, server_id,
                 image_id, flavor_id)
        return server_id

    def get_server(self, server_id, timeout=None):
        """The server (nova's JSON), or None when the destination does not know it (404)."""
        what = 'getting server %s' % server_id
        # A plain request: nova's JSON as it is, and a timeout per poll (the sdk's get_server has none).
        response = self._raw(self._proxy('compute'), 'GET', '/servers/%s' % _quote(server_id), what,
                             **({'timeout': timeout} if timeout else {}))
        if response.status_code == 404:
            return None
        return self._check(response, what).json()['server']

    def wait_active(self, server_id, timeout, poll=0.1):
        """Poll the server until ACTIVE (returned); ERROR, disappearance or `timeout` s -> error.

        As wait_ready: a WAN hiccup is retried, `stall_timeout` s without an
        answer is a failure (the VM is paused at the source meanwhile: hence
        the short poll, a GET every 0.1 s for the second or two of activation).
        """
        def settled(server):
            if server is None:
                raise self._error('destination %s: server %s disappeared' % (self.auth_url, server_id),
                                  refused=True)
            status = server.get('status')
            if status == 'ACTIVE':
                return server
            if status in ('ERROR', 'DELETED', 'SOFT_DELETED'):
                fault = (server.get('fault') or {}).get('message')
                raise self._error('destination %s: server %s is %s: %s'
                                  % (self.auth_url, server_id, status, fault or 'nova recorded no fault'),
                                  refused=True)
            self._last_problem = 'it is %s' % status
            return None
        return self._poll(lambda call_timeout: self.get_server(server_id, timeout=call_timeout),
                          settled, timeout, poll, 'server %s to be ACTIVE' % server_id,
                          'server %s is not ACTIVE' % server_id)

    def wait_gone(self, server_id, timeout, poll=0.5):
        """Poll until the destination no longer knows the server (404): True. As wait_ready, a cut
        link fails after `stall_timeout` s without an answer, and `timeout` s bound it all.
        """
        def settled(server):
            if server is None or server.get('status') in ('DELETED', 'SOFT_DELETED'):
                return True
            self._last_problem = 'it is %s' % server.get('status')
            return None
        return self._poll(lambda call_timeout: self.get_server(server_id, timeout=call_timeout),
                          settled, timeout, poll, 'server %s to be deleted' % server_id,
                          'server %s is not deleted' % server_id)

    # ------------------------------------------------------------ Neutron

    def _neutron(self):
        network = self._proxy('network')
        if network is None:
            raise self._error('destination %s: no network (Neutron) endpoint in the catalog'
                              % self.auth_url, refused=True)
        return network

    def project_network(self):
        """The one network of the destination project its servers get with networks=auto, or None
        (none or several of its own; an external network is never it).
        """
        network = self._neutron()
        with self._calling('listing the project\'s networks'):
            # Two are enough to tell "several".
            networks = list(itertools.islice(network.networks(project_id=self.project_id,
                                                              is_router_external=False), 2))
        return networks[0].id if len(networks) == 1 else None

    def create_port(self, network_id, mac_address, name):
        """A port on `network_id` with this MAC (the VM's: doc/handoff.md, "NICs"); its id."""
        network = self._neutron()
        with self._calling('creating a port with MAC %s' % mac_address):
            port = network.create_port(network_id=network_id, mac_address=mac_address, name=name,
                                       description='made by cloudlet handoff for the NIC %s of the moving VM'
                                                   % mac_address)
        LOG.info('destination %s: port %s created with MAC %s', self.auth_url, port.id, mac_address)
        return port.id

    def delete_port(self, port_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly('network', 'port %s' % port_id,
                                    lambda proxy: proxy.delete_port(_quote(port_id)))

    def add_floating_ip(self, server_id=None, port_id=None, description=None):
        """A new floating IP from the destination's external network (the only one the
        project sees) on `port_id`, else on the server's first port: (its id, its address).
        """
        network = self._neutron()
        if port_id is None:
            with self._calling('listing the server\'s ports'):
                ports = list(itertools.islice(network.ports(device_id=server_id), 1))
            if not ports:
                raise self._error('destination %s: server %s has no port for a floating IP'
                                  % (self.auth_url, server_id), refused=True)
            port_id = ports[0].id
        with self._calling('listing external networks'):
            networks = list(network.networks(is_router_external=True))
        if len(networks) != 1:
            raise self._error('destination %s: %d external networks, cannot choose one for the '
                              'floating IP' % (self.auth_url, len(networks)), refused=True)
        attrs = {'floating_network_id': networks[0].id, 'port_id': port_id}
        if description:
            attrs['description'] = description
        with self._calling('creating a floating IP'):
            floating_ip = network.create_ip(**attrs)
        LOG.info('destination %s: port %s has floating IP %s', self.auth_url, port_id,
                 floating_ip.floating_ip_address)
        return floating_ip.id, floating_ip.floating_ip_address

    def delete_floating_ip(self, floating_ip_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly('network', 'floating IP %s' % floating_ip_id,
                                    lambda proxy: proxy.delete_ip(_quote(floating_ip_id)))

    def _delete_quietly(self, service, what, delete):
        """delete(the service's proxy), best effort: a failure is logged; True once it is gone (a
        404 too: the sdk's deletes ignore a missing resource).
        """
        try:
            proxy = self._proxy(service)
            if proxy is None:
                raise HandoffDestinationError('no endpoint in the catalog')
            with self._calling('deleting %s' % what):
                delete(proxy)
            return True
        except HandoffDestinationError as exc:       # says what it was doing already
            LOG.warning('%s', exc)
        except Exception as exc:      # best effort, by contract
            LOG.warning('destination %s: deleting %s failed: %s', self.auth_url, what, self._redact(exc))
        return False

    def delete_server(self, server_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly('compute', 'server %s' % server_id,
                                    lambda proxy: proxy.delete_server(_quote(server_id)))
