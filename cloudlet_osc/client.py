"""The cloudlet client: nova's compute API over the OSC session, and the Glance model's image service.

Compute calls go through one keystoneauth Adapter (service type `compute`,
the caller's region and interface, one fixed microversion). The cloudlet API
adds no microversions of its own; the stock calls need one that accepts
`"networks": "none"`. Failed calls raise osc-lib's ClientException family
carrying nova's own message, so the commands can show it on one line.

Glance goes through `cloudlet_glance` (GlanceClientImages over the same
session): the commands hand `client.images` to `cloudlet_glance.model`.
"""

import functools
import urllib.parse
import uuid

from keystoneauth1 import adapter
from osc_lib import exceptions

from cloudlet_client import cloud

# >= 2.37 for "networks": "none"/"auto"; >= 2.47 embeds the flavor in a
# server (its name shows without another call). nova 34 serves 2.1 to 2.104.
COMPUTE_MICROVERSION = '2.96'
# POST /os-aggregates/{id}/images; GET /resource_providers/{uuid}/traits.
PRECACHE_MICROVERSION = '2.81'
PLACEMENT_MICROVERSION = '1.6'
OVERLAY_ACTION = 'cloudlet-create-overlay'
BASE_ACTION = 'cloudlet-create-base'
HEARTBEAT_ACTION = 'cloudlet-heartbeat'
HANDOFF_ACTION = 'cloudlet-handoff'
# nova answers every request with its id; instance actions are recorded under it.
REQUEST_ID_HEADERS = ('x-openstack-request-id', 'x-compute-request-id')

_HTTP_ERRORS = {cls.http_status: cls for cls in (
    exceptions.BadRequest, exceptions.Unauthorized, exceptions.Forbidden, exceptions.NotFound,
    exceptions.Conflict, exceptions.OverLimit, exceptions.HTTPNotImplemented)}


def http_error(response):
    """The osc-lib exception for a failed response, with the service's own message."""
    cls = _HTTP_ERRORS.get(response.status_code, exceptions.ClientException)
    return cls(response.status_code, cloud.message_of(response))


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _quote(value):
    return urllib.parse.quote(str(value), safe='')


def _next_marker(links):
    for link in links or ():
        if link.get('rel') == 'next':
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(link.get('href', '')).query)
            return (query.get('marker') or [None])[0]
    return None


class CloudletClient:
    """What `openstack cloudlet` calls: compute (stock and cloudlet API) and Glance."""

    def __init__(self, session, region_name=None, interface=None, microversion=COMPUTE_MICROVERSION):
        self.session = session
        self.region_name = region_name
        self.interface = interface
        self.compute = adapter.Adapter(session, service_type='compute', region_name=region_name,
                                       interface=interface, default_microversion=microversion,
                                       raise_exc=False)

    @functools.cached_property
    def images(self):
        """The cloudlet_glance image service (GlanceClientImages) for cloudlet_glance.model."""
        from cloudlet_glance import images
        return images.GlanceClientImages(self.session, region_name=self.region_name,
                                         interface=self.interface or 'public')

    # ------------------------------------------------------------ plumbing

    def _send(self, method, path, **kwargs):
        response = self.compute.request(path, method, **kwargs)
        if response.status_code >= 400:
            raise http_error(response)
        return response

    def _call(self, method, path, **kwargs):
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _list(self, path, key, params=None):
        """Every item of a paginated nova collection (follows `<key>_links` rel=next)."""
        params = dict(params or {})
        items = []
        while True:
            body = self._call('GET', path, params=params)
            items.extend(body[key])
            marker = _next_marker(body.get(key + '_links'))
            if not marker or not body[key]:
                return items
            params['marker'] = marker

    def _find(self, kind, ref, get, candidates):
        """By id first (GET), then by exact name; one clear error when missing or ambiguous."""
        try:
            return get(ref)
        except exceptions.NotFound:
            pass
        matches = [item for item in candidates() if item.get('name') == ref]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise exceptions.CommandError('more than one %s is named %r (%s); use an ID'
                                          % (kind, ref, ', '.join(m['id'] for m in matches)))
        raise exceptions.NotFound(404, 'no %s with a name or ID of %r exists' % (kind, ref))

    # ------------------------------------------------------------ discovery

    def discover(self):
        """GET /os-cloudlet: version, actions, metadata keys, codecs and limits of the cloudlet API."""
        return self._call('GET', '/os-cloudlet')['cloudlet']

    # ------------------------------------------------------------ servers

    def create_server(self, name, image_id, flavor_id, networks='auto', metadata=None,
                      trusted_certificates=None):
        """POST /servers; returns nova's (short) server record."""
        server = {'name': name, 'imageRef': image_id, 'flavorRef': flavor_id, 'networks': networks}
        if metadata:
            server['metadata'] = dict(metadata)
        if trusted_certificates:
            server['trusted_image_certificates'] = list(trusted_certificates)   # nova API >= 2.63
        return self._call('POST', '/servers', json={'server': server})['server']

    def get_server(self, server_id):
        return self._call('GET', '/servers/%s' % _quote(server_id))['server']

    def find_server(self, ref):
        def get(server_id):
            if not is_uuid(server_id):      # names never reach a URL path
                raise exceptions.NotFound(404)
            return self.get_server(server_id)
        # nova's name filter is a regular expression: filter exact names here.
        return self._find('server', ref, get,
                          lambda: self._list('/servers/detail', 'servers', {'name': ref}))

    def _capture(self, action, server_id, name, metadata=None, options=None):
        """A capture action (create-overlay, create-base); returns the Glance image id it fills."""
        entity = {'name': name}
        if metadata:
            entity['metadata'] = dict(metadata)
        if options:
            entity['options'] = dict(options)
        body = self._call('POST', '/servers/%s/action' % _quote(server_id), json={action: entity})
        return body['image_id']

    def create_overlay(self, server_id, name, metadata=None, codec=None, encryption_key_id=None):
        """The cloudlet-create-overlay action; returns the overlay's Glance image id."""
        options = {key: value for key, value in (('codec', codec), ('encryption_key_id', encryption_key_id))
                   if value}
        return self._capture(OVERLAY_ACTION, server_id, name, metadata, options or None)

    def create_base(self, server_id, name, metadata=None):
        """The cloudlet-create-base action; returns the base disk image's id (its companions come with it)."""
        return self._capture(BASE_ACTION, server_id, name, metadata)

    def heartbeat(self, server_id, seconds=None):
        """The cloudlet-heartbeat action (`seconds`: a new lease length); returns {"seconds", "expires_at"}."""
        entity = {} if seconds is None else {'seconds': int(seconds)}
        return self._call('POST', '/servers/%s/action' % _quote(server_id),
                          json={HEARTBEAT_ACTION: entity})['lease']

    def handoff(self, server_id, destination, credential, name=None, codec=None):
        """The cloudlet-handoff action; returns (handoff_id, the request id nova records the action under).

        The body carries a credential of the destination: it is sent with
        log=False, so that --debug never prints it.
        """
        entity = {'destination': dict(destination), 'credential': dict(credential)}
        if name:
            entity['name'] = name
        if codec:
            entity['options'] = {'codec': codec}
        response = self._send('POST', '/servers/%s/action' % _quote(server_id), json={HANDOFF_ACTION: entity},
                              log=False)
        request_id = next((response.headers[h] for h in REQUEST_ID_HEADERS if response.headers.get(h)), None)
        return response.json()['handoff_id'], request_id

    def list_servers(self, params=None):
        """GET /servers/detail with nova's filters (every page)."""
        return self._list('/servers/detail', 'servers', params)

    def list_instance_actions(self, server_id):
        """The server's instance actions, newest first (also of a deleted server)."""
        return self._call('GET', '/servers/%s/os-instance-actions' % _quote(server_id))['instanceActions']

    def get_instance_action(self, server_id, request_id):
        """One instance action with its events (their `details` since microversion 2.84)."""
        return self._call('GET', '/servers/%s/os-instance-actions/%s'
                          % (_quote(server_id), _quote(request_id)))['instanceAction']

    # ------------------------------------------------------------ flavors

    def list_flavors(self):
        """The flavors the caller may boot (nova's default listing: public and shared ones)."""
        return self._list('/flavors/detail', 'flavors')

    def find_flavor(self, ref):
        return self._find(
            'flavor', ref, lambda flavor_id: self._call('GET', '/flavors/%s' % _quote(flavor_id))['flavor'],
            lambda: self._list('/flavors/detail', 'flavors', {'is_public': 'None'}))

    # ------------------------------------------------------------ server-side base imports

    def import_base(self, url, name=None, visibility='private'):
        """POST /os-cloudlet/bases: nova-api downloads and imports a base package; returns the record."""
        base = {'url': url, 'visibility': visibility}
        if name:
            base['name'] = name
        return self._call('POST', '/os-cloudlet/bases', json={'base': base})['base']

    def get_base_import(self, import_id):
        return self._call('GET', '/os-cloudlet/bases/%s' % _quote(import_id))['base']

    def list_base_imports(self):
        return self._call('GET', '/os-cloudlet/bases')['bases']

    def delete_base_import(self, import_id):
        """DELETE /os-cloudlet/bases/{id}: the record, and the Glance images of an active import."""
        self._call('DELETE', '/os-cloudlet/bases/%s' % _quote(import_id))

    # ------------------------------------------------------------ pre-cache (admin)

    def find_aggregate(self, ref):
        """A host aggregate by id, uuid or name (nova answers 400, not 404, to a name where an id goes)."""
        aggregates = self._call('GET', '/os-aggregates')['aggregates']
        for key in ('id', 'uuid', 'name'):
            found = [a for a in aggregates if str(a.get(key)) == str(ref)]
            if len(found) == 1:
                return found[0]
            if found:
                raise exceptions.CommandError('more than one aggregate is named %r (%s); use an ID'
                                              % (ref, ', '.join(str(a['id']) for a in found)))
        raise exceptions.NotFound(404, 'no aggregate with a name or ID of %r exists' % ref)

    def cache_images(self, aggregate_id, image_ids):
        """POST /os-aggregates/{id}/images (microversion 2.81): nova pre-caches them on every host."""
        self._send('POST', '/os-aggregates/%s/images' % _quote(aggregate_id),
                   json={'cache': [{'id': image_id} for image_id in image_ids]},
                   microversion=PRECACHE_MICROVERSION)

    def compute_hosts(self):
        """{host: {'state': 'up'|'down', 'status': 'enabled'|'disabled', 'provider': uuid or None}}."""
        hosts = {s['host']: {'state': s['state'], 'status': s['status'], 'provider': None}
                 for s in self._call('GET', '/os-services', params={'binary': 'nova-compute'})['services']}
        for hypervisor in self._list('/os-hypervisors/detail', 'hypervisors'):
            host = (hypervisor.get('service') or {}).get('host')
            if host in hosts:
                hosts[host]['provider'] = hypervisor['id']     # 2.53+: the compute node's uuid
        return hosts

    @functools.cached_property
    def placement(self):
        return adapter.Adapter(self.session, service_type='placement', region_name=self.region_name,
                               interface=self.interface, default_microversion=PLACEMENT_MICROVERSION,
                               raise_exc=False)

    def placement_get(self, path):
        """GET a Placement path; its JSON body (http_error on a refusal)."""
        response = self.placement.get(path)
        if response.status_code >= 400:
            raise http_error(response)
        return response.json()

    def provider_traits(self, provider_id):
        return set(self.placement_get('/resource_providers/%s/traits' % _quote(provider_id))['traits'])
