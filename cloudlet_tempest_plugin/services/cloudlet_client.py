"""The cloudlet API's calls (api-ref/), on nova's compute endpoint.

Each method sends one request and returns the decoded answer (a
rest_client.ResponseBody); an unexpected code raises tempest's exception for it
(BadRequest, NotFound, Conflict, Forbidden, ...), as tempest's own clients do.
"""

import json

from tempest.lib.common import rest_client
from tempest.lib.services.compute import base_compute_client

HANDOFF_ID_HEADER = 'X-Cloudlet-Handoff-Id'


class CloudletClient(base_compute_client.BaseComputeClient):

    def _answer(self, resp, body, expected):
        self.expected_success(expected, resp.status)
        return rest_client.ResponseBody(resp, json.loads(body) if body else {})

    def _post(self, url, body, expected):
        resp, answer = self.post(url, json.dumps(body))
        return self._answer(resp, answer, expected)

    # -- discovery and negotiation (api-ref: cloudlet-discovery, cloudlet-negotiation) --

    def show_cloudlet(self):
        """GET /os-cloudlet: the version, actions, keys, codecs and limits."""
        resp, body = self.get('os-cloudlet')
        return self._answer(resp, body, 200)

    def negotiate(self, **request):
        """POST /os-cloudlet/negotiate with `overlay` (header fields) or `overlay_url`."""
        return self._post('os-cloudlet/negotiate', request, 200)

    # -- base package imports (cloudlet-bases) --

    def import_base(self, **base):
        """POST /os-cloudlet/bases: url, and name and visibility if given."""
        return self._post('os-cloudlet/bases', {'base': base}, 202)

    def list_base_imports(self):
        """The caller's project's imports (an admin's: every project's)."""
        resp, body = self.get('os-cloudlet/bases')
        return self._answer(resp, body, 200)

    def show_base_import(self, base_import_id):
        resp, body = self.get('os-cloudlet/bases/%s' % base_import_id)
        return self._answer(resp, body, 200)

    def delete_base_import(self, base_import_id):
        resp, body = self.delete('os-cloudlet/bases/%s' % base_import_id)
        return self._answer(resp, body, 204)

    # -- server actions (cloudlet-server-actions) --

    def server_action(self, server_id, action, body, expected=202):
        return self._post('servers/%s/action' % server_id, {action: body}, expected)

    def create_base(self, server_id, name):
        """cloudlet-create-base: {'image_id': the base disk image, active once captured}."""
        return self.server_action(server_id, 'cloudlet-create-base', {'name': name})

    def create_overlay(self, server_id, name, **options):
        """cloudlet-create-overlay: {'image_id': the overlay image}."""
        return self.server_action(server_id, 'cloudlet-create-overlay', dict(options, name=name))

    def handoff(self, server_id, destination, credential, **options):
        """cloudlet-handoff: {'handoff_id': ...}; the server then leaves for `destination`."""
        return self.server_action(server_id, 'cloudlet-handoff',
                                  dict(options, destination=destination, credential=credential))

    def heartbeat(self, server_id, seconds=None):
        """cloudlet-heartbeat: {'lease': {'seconds', 'expires_at'}}."""
        body = {} if seconds is None else {'seconds': seconds}
        return self.server_action(server_id, 'cloudlet-heartbeat', body, expected=200)

    # -- a handoff's receiving end (cloudlet-residue) --

    def show_residue(self, server_id, handoff_id):
        resp, body = self.get('servers/%s/cloudlet-residue' % server_id,
                              headers=self._handoff_headers(handoff_id))
        return self._answer(resp, body, 200)

    def put_residue(self, server_id, handoff_id, data):
        headers = self._handoff_headers(handoff_id)
        headers['Content-Type'] = 'application/octet-stream'
        resp, body = self.put('servers/%s/cloudlet-residue' % server_id, data, headers=headers)
        return self._answer(resp, body, 204)

    def _handoff_headers(self, handoff_id):
        headers = self.get_headers()
        headers[HANDOFF_ID_HEADER] = handoff_id
        return headers
