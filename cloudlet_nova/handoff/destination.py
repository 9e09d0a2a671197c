"""The destination cloud of a VM handoff, as the source compute host sees it.

`Destination` is everything the source compute host asks of the other cloud
(doc/handoff.md, "Flow"): authenticate with the credential of the request,
find the base disk image there, pick a flavor, create the server, wait
until its compute host is ready for the residue, stream the residue into it
(`PUT /servers/{id}/cloudlet-residue`, api_extensions.residue), wait for it
to be ACTIVE, and clean up. It talks HTTP only (keystoneauth1 sessions and requests): no nova
imports, so it runs and is tested on its own. Every connection it opens (to
the auth_url or compute_endpoint, the catalog's endpoints, redirects, the
upload) is checked by the outbound policy (cloudlet_engine.outbound) and
uses no proxy from the environment.

Errors are `HandoffDestinationError`; `refused` tells a destination that
answered and said no (4xx, no matching base, no fitting flavor, a build that
ended in ERROR, a host the outbound policy refuses) from one that could not
be reached, timed out or stalled.
Messages never hold the credential: every message built here goes through
`Destination._redact`, and nothing here logs more than the Keystone URL and
ids. Every network call has a timeout (`connect_timeout` for connecting and
for each API call; the upload adds `stall_timeout`): nothing waits forever.
"""

import base64
import logging
import re
import time
import urllib.parse

from keystoneauth1 import access
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.identity import access as access_plugin
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
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
MAX_LIST_PAGES = 50         # bounds a paginated listing (Glance images, nova flavors)

_KEYSTONE_URI = re.compile(r'keystone\s+uri\s*=\s*"([^"]+)"', re.IGNORECASE)

# Module attributes so that tests can run time-based loops without waiting.
clock = time.monotonic
sleep = time.sleep


def _image_api_root(url):
    """Glance's catalog endpoint without a version: /v2/images is appended to it."""
    url = url.rstrip('/')
    return re.sub(r'/v2(\.\d+)?$', '', url)


def _check_http_url(url, what):
    parts = urllib.parse.urlsplit(url or '')
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise HandoffDestinationError('%s %r is not an http(s) URL' % (what, url), refused=True)
    return url


class Destination:
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

    def __repr__(self):
        return '<Destination %s>' % (self.auth_url or self.compute_endpoint)

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

    def _request(self, method, url, what, **kwargs):
        """One authenticated API call; connection problems become HandoffDestinationError."""
        if self._session is None:
            raise HandoffDestinationError('destination: connect() first')
        kwargs.setdefault('raise_exc', False)
        try:
            return self._session.request(url, method, **kwargs)
        except ksa_exc.HttpError as exc:      # re-authentication refused
            raise self._error('destination %s: %s refused: %s' % (self.auth_url, what, exc),
                              refused=True) from None
        except outbound.Refused as exc:
            raise self._refused(exc) from None
        except (ksa_exc.ClientException, requests.exceptions.RequestException) as exc:
            raise self._unreachable(what, exc) from None

    def _compute(self, method, path, what, **kwargs):
        if self.compute_url is None:
            raise HandoffDestinationError('destination: connect() first')
        return self._request(method, self.compute_url + path, what, microversion=COMPUTE_MICROVERSION,
                             microversion_service_type='compute', **kwargs)

    def _image(self, method, path, what, **kwargs):
        if self.image_url is None:
            raise HandoffDestinationError('destination: connect() first')
        return self._request(method, self.image_url + path, what, **kwargs)

    def _check(self, response, what):
        """The response of a call that must succeed: 4xx -> refused, anything else -> not."""
        if response.status_code < 400:
            return response
        refused = 400 <= response.status_code < 500
        raise self._error('destination %s: %s: %s (HTTP %d)' % (self.auth_url, what, remote.response_message(response),
                                                                response.status_code), refused=refused)

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
        LOG.info('handoff destination %s: project %s, image %s, compute %s', self.auth_url, self.project_id,
                 self.image_url, self.compute_url)
        return self

    # ------------------------------------------------------------ Glance

    def _list_images(self, filters):
        params = dict(filters)
        path = '/v2/images'
        for _ in range(MAX_LIST_PAGES):
            body = self._check(self._image('GET', path, 'listing images', params=params),
                               'listing images').json()
            yield from body.get('images') or []
            following = body.get('next')
            if not following:
                return
            # Glance's next link is /v2/images?marker=...&<the same filters>
            parts = urllib.parse.urlsplit(following)
            path, params = parts.path, dict(urllib.parse.parse_qsl(parts.query))
            if path.startswith('/v2/'):
                path = path[path.index('/v2/'):]

    def _get_image(self, image_id):
        response = self._image('GET', '/v2/images/%s' % urllib.parse.quote(image_id, safe=''),
                               'getting image %s' % image_id)
        if response.status_code == 404:
            return None
        return self._check(response, 'getting image %s' % image_id).json()

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
        return '/servers/%s/cloudlet-residue' % urllib.parse.quote(server_id, safe='')

    def residue_status(self, server_id, handoff_id, timeout=None):
        """The destination inbox of the server: {'state', 'bytes_received', 'reason'}."""
        what = 'asking server %s whether it is ready for the residue' % server_id
        response = self._compute('GET', self._residue_path(server_id), what,
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
        if not self.key_manager_url:
            raise HandoffDestinationError('destination %s has no key manager in its catalog' % self.auth_url,
                                          refused=True)
        body = {'name': name, 'secret_type': 'symmetric', 'algorithm': 'aes', 'bit_length': 256,
                'mode': 'gcm', 'payload': base64.b64encode(key).decode('ascii'),
                'payload_content_type': 'application/octet-stream', 'payload_content_encoding': 'base64'}
        response = self._check(self._request('POST', self.key_manager_url + '/v1/secrets',
                                             'storing the residue key', json=body),
                               'storing the residue key')
        try:
            return response.json()['secret_ref'].rstrip('/').rsplit('/', 1)[-1]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._error('destination %s: the key manager answered without a secret_ref'
                              % self.auth_url) from None

    def delete_key(self, key_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly(self.key_manager_url, '/v1/secrets/%s' % urllib.parse.quote(key_id, safe=''),
                                    'key %s' % key_id)

    # ------------------------------------------------------------ nova

    def _list_flavors(self):
        path, params = '/flavors/detail', {}
        for _ in range(MAX_LIST_PAGES):
            body = self._check(self._compute('GET', path, 'listing flavors', params=params),
                               'listing flavors').json()
            flavors = body.get('flavors') or []
            yield from flavors
            marker = None
            for link in body.get('flavors_links') or ():
                if link.get('rel') == 'next':
                    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link.get('href', '')).query)
                    marker = (query.get('marker') or [None])[0]
            if not marker or not flavors:
                return
            params = {'marker': marker}

    def pick_flavor(self, memory_mb, vcpus, flavor_id=None, *, min_disk_gb=None):
        """The flavor for the new server.

        `flavor_id` (else the destination's `flavor`): it must have exactly
        this RAM and these vCPUs. Otherwise the enabled flavor with exactly
        these, a root disk of at least `min_disk_gb` (default: the min_disk of
        the base image find_base_image found), zero-disk flavors left out (nova
        lets only admins boot images on them), flavors with an ephemeral or
        swap disk last, then the smallest root disk, then the name.
        """
        memory_mb, vcpus = int(memory_mb), int(vcpus)
        flavor_id = flavor_id or self.flavor_id
        if flavor_id:
            response = self._compute('GET', '/flavors/%s' % urllib.parse.quote(str(flavor_id), safe=''),
                                     'getting flavor %s' % flavor_id)
            if response.status_code == 404:
                raise self._error('destination %s has no flavor %s' % (self.auth_url, flavor_id),
                                  refused=True)
            flavor = self._check(response, 'getting flavor %s' % flavor_id).json()['flavor']
            if flavor.get('ram') != memory_mb or flavor.get('vcpus') != vcpus:
                raise self._error('destination flavor %s has %s MB / %s vCPUs; the server needs %d MB / %d '
                                  'vCPUs' % (flavor.get('name') or flavor_id, flavor.get('ram'),
                                             flavor.get('vcpus'), memory_mb, vcpus), refused=True)
            return flavor
        if min_disk_gb is None:
            min_disk_gb = int((self.base_image or {}).get(props.MIN_DISK) or 0)

        def extra_disks(flavor):
            return int(flavor.get('OS-FLV-EXT-DATA:ephemeral') or 0) + int(flavor.get('swap') or 0)
        fitting = [f for f in self._list_flavors()
                   if f.get('ram') == memory_mb and f.get('vcpus') == vcpus and f.get('disk')
                   and f['disk'] >= min_disk_gb and not f.get('OS-FLV-DISABLED:disabled')]
        if not fitting:
            raise self._error('destination %s has no flavor with %d MB RAM, %d vCPUs and a root disk of at '
                              'least %d GB available to project %s'
                              % (self.auth_url, memory_mb, vcpus, max(min_disk_gb, 1), self.project_id),
                              refused=True)
        return min(fitting, key=lambda f: (extra_disks(f) > 0, f['disk'], extra_disks(f),
                                           str(f.get('name')), str(f['id'])))

    def create_server(self, name, image_id, flavor_id, metadata, networks='none'):
        """POST /servers (microversion 2.37); the new server's id."""
        server = {'name': name, 'imageRef': image_id, 'flavorRef': flavor_id, 'networks': networks}
        if metadata:
            server['metadata'] = {str(k): str(v) for k, v in metadata.items()}
        response = self._check(
            self._compute('POST', '/servers', 'creating the server', json={'server': server}),
            'creating the server')
        server_id = response.json()['server']['id']
        LOG.info('destination %s: server %s created (image %s, flavor %s)', self.auth_url, server_id,
                 image_id, flavor_id)
        return server_id

    def get_server(self, server_id, timeout=None):
        """The server, or None when the destination does not know it (404)."""
        path = '/servers/%s' % urllib.parse.quote(server_id, safe='')
        response = self._compute('GET', path, 'getting server %s' % server_id,
                                 **({'timeout': timeout} if timeout else {}))
        if response.status_code == 404:
            return None
        return self._check(response, 'getting server %s' % server_id).json()['server']

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

    def _network(self, method, path, what, **kwargs):
        if self.network_url is None:
            raise self._error('destination %s: no network (Neutron) endpoint in the catalog'
                              % self.auth_url, refused=True)
        return self._check(self._request(method, self.network_url + path, what, **kwargs), what)

    def project_network(self):
        """The one network of the destination project its servers get with networks=auto, or None
        (none or several of its own; an external network is never it).
        """
        networks = self._network('GET', '/v2.0/networks?' + urllib.parse.urlencode(
            {'project_id': self.project_id, 'router:external': 'False'}),
            'listing the project\'s networks').json()['networks']
        return networks[0]['id'] if len(networks) == 1 else None

    def create_port(self, network_id, mac_address, name):
        """A port on `network_id` with this MAC (the VM's: doc/handoff.md, "NICs"); its id."""
        body = {'port': {'network_id': network_id, 'mac_address': mac_address, 'name': name,
                         'description': 'made by cloudlet handoff for the NIC %s of the moving VM'
                                        % mac_address}}
        port = self._network('POST', '/v2.0/ports', 'creating a port with MAC %s' % mac_address,
                             json=body).json()['port']
        LOG.info('destination %s: port %s created with MAC %s', self.auth_url, port['id'], mac_address)
        return port['id']

    def delete_port(self, port_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly(self.network_url, '/v2.0/ports/%s' % urllib.parse.quote(port_id, safe=''),
                                    'port %s' % port_id)

    def add_floating_ip(self, server_id=None, port_id=None, description=None):
        """A new floating IP from the destination's external network (the only one the
        project sees) on `port_id`, else on the server's first port: (its id, its address).
        """
        if port_id is None:
            query = urllib.parse.urlencode({'device_id': server_id})
            ports = self._network('GET', '/v2.0/ports?' + query, 'listing the server\'s ports').json()['ports']
            if not ports:
                raise self._error('destination %s: server %s has no port for a floating IP'
                                  % (self.auth_url, server_id), refused=True)
            port_id = ports[0]['id']
        networks = self._network('GET', '/v2.0/networks?router:external=True',
                                 'listing external networks').json()['networks']
        if len(networks) != 1:
            raise self._error('destination %s: %d external networks, cannot choose one for the '
                              'floating IP' % (self.auth_url, len(networks)), refused=True)
        body = {'floatingip': {'floating_network_id': networks[0]['id'], 'port_id': port_id}}
        if description:
            body['floatingip']['description'] = description
        floating_ip = self._network('POST', '/v2.0/floatingips', 'creating a floating IP',
                                    json=body).json()['floatingip']
        LOG.info('destination %s: port %s has floating IP %s', self.auth_url, port_id,
                 floating_ip['floating_ip_address'])
        return floating_ip['id'], floating_ip['floating_ip_address']

    def delete_floating_ip(self, floating_ip_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly(self.network_url,
                                    '/v2.0/floatingips/%s' % urllib.parse.quote(floating_ip_id, safe=''),
                                    'floating IP %s' % floating_ip_id)

    def _delete_quietly(self, base_url, path, what):
        """DELETE base_url + path, best effort: a failure is logged; True once it is gone (a 404 too)."""
        try:
            if not base_url:
                raise HandoffDestinationError('no endpoint in the catalog')
            response = self._request('DELETE', base_url + path, 'deleting %s' % what)
            if response.status_code >= 400 and response.status_code != 404:
                LOG.warning('destination %s: deleting %s: HTTP %d', self.auth_url, what, response.status_code)
                return False
            return True
        except HandoffDestinationError as exc:       # says what it was doing already
            LOG.warning('%s', exc)
        except Exception as exc:      # best effort, by contract
            LOG.warning('destination %s: deleting %s failed: %s', self.auth_url, what, self._redact(exc))
        return False

    def delete_server(self, server_id):
        """Best effort: never raises; True once it is gone."""
        return self._delete_quietly(self.compute_url, '/servers/%s' % urllib.parse.quote(server_id, safe=''),
                                    'server %s' % server_id)
