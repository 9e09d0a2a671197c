"""One cloud's HTTP API, as the library uses it: compute (stock and cloudlet calls), images, floating IPs.

Every call goes through keystoneauth Adapters on the caller's session (the
catalog's endpoints for the region and interface); compute calls carry one
fixed microversion. A failed call raises errors.HTTPError with the
service's own message (nova's fault text).
"""

import dataclasses
import logging
import urllib.parse

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ksa_exceptions

from cloudlet_client import errors

LOG = logging.getLogger(__name__)

COMPUTE_MICROVERSION = '2.96'     # >= 2.37: "networks": "auto"/"none"
NEGOTIATE_PATH = '/os-cloudlet/negotiate'
HEARTBEAT_ACTION = 'cloudlet-heartbeat'
HANDOFF_ACTION = 'cloudlet-handoff'
REQUEST_ID_HEADERS = ('x-openstack-request-id', 'x-compute-request-id')


def _quote(value):
    return urllib.parse.quote(str(value), safe='')


def message_of(response):
    """The service's message in an error response (nova's `{"<fault>": {"message": ...}}`), else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and len(body) == 1:
        fault = next(iter(body.values()))
        if isinstance(fault, dict) and fault.get('message'):
            return str(fault['message'])
    text = ' '.join((response.text or '').split())[:300]
    return text or response.reason or 'HTTP %d' % response.status_code


@dataclasses.dataclass(frozen=True)
class Negotiation:
    """A cloud's answer to POST /os-cloudlet/negotiate."""
    acceptable: bool
    reason: str = None
    base_id: str = None
    base_image_id: str = None
    flavor_id: str = None
    estimated_seconds: float = None
    format_version: int = None
    codec: str = None

    @classmethod
    def from_body(cls, body):
        answer = (body or {}).get('negotiation')
        if not isinstance(answer, dict) or not isinstance(answer.get('acceptable'), bool):
            raise errors.ClientError('negotiation answer without "acceptable": %.200r' % (body,))
        return cls(**{f.name: answer.get(f.name) for f in dataclasses.fields(cls)})


class Cloud:
    """A cloud (a cloudlet, or the fallback region) reached through one keystoneauth session.

    `name` is for messages; `keystone_url` is where this cloud's Keystone is
    (the advert's, or the clouds.yaml cloud's auth_url): a handoff tells the
    source cloud to go there.
    """

    def __init__(self, session, region_name=None, interface='public', name=None, keystone_url=None):
        self.session = session
        self.region_name = region_name
        self.interface = interface
        self.name = name or region_name or 'cloud'
        self.keystone_url = keystone_url
        common = dict(region_name=region_name, interface=interface, raise_exc=False)
        self.compute = adapter.Adapter(session, service_type='compute',
                                       default_microversion=COMPUTE_MICROVERSION, **common)
        self.image = adapter.Adapter(session, service_type='image', **common)
        self.network = adapter.Adapter(session, service_type='network', **common)

    def __repr__(self):
        return '<Cloud %s>' % self.name

    # ------------------------------------------------------------ plumbing

    def _send(self, service, method, path, **kwargs):
        try:
            response = service.request(path, method, **kwargs)
        except ksa_exceptions.ClientException as exc:
            raise errors.ClientError('%s: %s %s: %s' % (self.name, method, path, exc)) from exc
        if response.status_code >= 400:
            raise errors.HTTPError(response.status_code, message_of(response), method, path)
        return response

    def _call(self, service, method, path, **kwargs):
        response = self._send(service, method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def token(self):
        """This session's token (scoped as the session is)."""
        try:
            return self.session.get_token()
        except ksa_exceptions.ClientException as exc:
            raise errors.ClientError('%s: authentication failed: %s' % (self.name, exc)) from exc

    # ------------------------------------------------------------ the cloudlet API

    def negotiate(self, request):
        """POST /os-cloudlet/negotiate with `request` ({"overlay": {...}} or {"overlay_url": ...})."""
        return Negotiation.from_body(self._call(self.compute, 'POST', NEGOTIATE_PATH, json=request))

    def heartbeat(self, server_id, seconds=None):
        """The cloudlet-heartbeat action: {"seconds": N, "expires_at": "..."}."""
        entity = {} if seconds is None else {'seconds': int(seconds)}
        body = self._call(self.compute, 'POST', '/servers/%s/action' % _quote(server_id),
                          json={HEARTBEAT_ACTION: entity})
        return body['lease']

    def handoff(self, server_id, destination, credential, name=None, codec=None):
        """The cloudlet-handoff action: (handoff_id, request id). Sent with log=False: it holds a credential."""
        entity = {'destination': dict(destination), 'credential': dict(credential)}
        if name:
            entity['name'] = name
        if codec:
            entity['options'] = {'codec': codec}
        response = self._send(self.compute, 'POST', '/servers/%s/action' % _quote(server_id),
                              json={HANDOFF_ACTION: entity}, log=False)
        request_id = next((response.headers[h] for h in REQUEST_ID_HEADERS if response.headers.get(h)), None)
        return response.json()['handoff_id'], request_id

    # ------------------------------------------------------------ servers

    def create_server(self, name, image_id, flavor_id, networks='auto', metadata=None):
        server = {'name': name, 'imageRef': image_id, 'flavorRef': flavor_id, 'networks': networks}
        if metadata:
            server['metadata'] = {str(k): str(v) for k, v in metadata.items()}
        return self._call(self.compute, 'POST', '/servers', json={'server': server})['server']

    def get_server(self, server_id):
        return self._call(self.compute, 'GET', '/servers/%s' % _quote(server_id))['server']

    def delete_server(self, server_id):
        """DELETE /servers/{id}; False when it was already gone."""
        try:
            self._call(self.compute, 'DELETE', '/servers/%s' % _quote(server_id))
        except errors.HTTPError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_servers(self, params=None):
        return self._call(self.compute, 'GET', '/servers/detail', params=params or {})['servers']

    def instance_actions(self, server_id):
        return self._call(self.compute, 'GET', '/servers/%s/os-instance-actions'
                          % _quote(server_id))['instanceActions']

    def instance_action(self, server_id, request_id):
        return self._call(self.compute, 'GET', '/servers/%s/os-instance-actions/%s'
                          % (_quote(server_id), _quote(request_id)))['instanceAction']

    # ------------------------------------------------------------ images (Glance v2)

    def get_image(self, image_id):
        return self._call(self.image, 'GET', '/v2/images/%s' % _quote(image_id))

    def create_image(self, name, properties, visibility='private', hidden=True):
        body = {str(k): str(v) for k, v in properties.items()}
        body.update(name=name, disk_format='raw', container_format='bare', visibility=visibility,
                    os_hidden=bool(hidden))
        return self._call(self.image, 'POST', '/v2/images', json=body)['id']

    def upload_image(self, image_id, fileobj, size=None):
        headers = {'Content-Type': 'application/octet-stream'}
        if size is not None:
            headers['Content-Length'] = str(size)
        self._send(self.image, 'PUT', '/v2/images/%s/file' % _quote(image_id), data=fileobj,
                   headers=headers)

    def delete_image(self, image_id):
        try:
            self._call(self.image, 'DELETE', '/v2/images/%s' % _quote(image_id))
        except errors.HTTPError as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------ floating IPs (Neutron)

    def server_ports(self, server_id):
        return self._call(self.network, 'GET', '/v2.0/ports', params={'device_id': server_id})['ports']

    def floating_ips(self, port_id):
        return self._call(self.network, 'GET', '/v2.0/floatingips',
                          params={'port_id': port_id})['floatingips']

    def external_network(self):
        """The id of the first external network this project sees."""
        networks = self._call(self.network, 'GET', '/v2.0/networks',
                              params={'router:external': 'True'})['networks']
        if not networks:
            raise errors.ClientError('%s: no external network for a floating IP' % self.name)
        return sorted(networks, key=lambda n: (n.get('name') or '', n['id']))[0]['id']

    def create_floating_ip(self, network_id, port_id):
        return self._call(self.network, 'POST', '/v2.0/floatingips', json={'floatingip': {
            'floating_network_id': network_id, 'port_id': port_id}})['floatingip']

    def delete_floating_ip(self, floating_ip_id):
        try:
            self._call(self.network, 'DELETE', '/v2.0/floatingips/%s' % _quote(floating_ip_id))
        except errors.HTTPError as exc:
            if exc.status != 404:
                raise
