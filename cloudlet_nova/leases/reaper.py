"""cloudlet-reaper: deletes the servers whose lease ran out, after the grace period.

A service of its own beside nova (not nova-compute: it must keep working when
a compute host is busy or gone), acting through nova's API with service
credentials that may list every project's servers. All it knows comes from
each server's metadata, so a crash or a restart loses no lease.

It deletes only what it can attribute to an expired lease: a server whose
lease it can read, that ran out more than `grace_seconds` ago, read again
just before the delete (a heartbeat may have come meanwhile), and with no
task running (a handoff holds task_state `migrating`). Each deletion is one
INFO log line naming the server, its project and the lease; nova records the
`delete` instance action with the reaper's user. When nova cannot be reached
it logs, deletes nothing, and tries again on the next pass.
"""

import logging

from keystoneauth1 import exceptions as ksa_exc

from cloudlet_glance import properties as props
from cloudlet_nova.leases import lease

LOG = logging.getLogger(__name__)
PAGE = 200
MAX_PAGES = 100            # 20000 servers per pass at the most


class Reaper:
    """One pass at a time over the leased servers of every project (`pass_once`)."""

    def __init__(self, compute, grace_seconds, clock=lease.now):
        self.compute = compute        # a keystoneauth Adapter for the compute API
        self.grace_seconds = grace_seconds
        self.clock = clock

    def _get(self, path, **params):
        response = self.compute.get(path, params=params, raise_exc=False)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ksa_exc.HttpError('GET %s: HTTP %d' % (path, response.status_code),
                                    http_status=response.status_code)
        return response.json()

    def leased_servers(self):
        """Every server (all projects) whose metadata names a lease."""
        found, marker = [], None
        for _ in range(MAX_PAGES):
            params = {'all_tenants': 1, 'limit': PAGE}
            if marker:
                params['marker'] = marker
            page = self._get('/servers/detail', **params)['servers']
            found += [s for s in page if props.META_LEASE_SECONDS in (s.get('metadata') or {})]
            if len(page) < PAGE:
                break
            marker = page[-1]['id']
        return found

    def _due(self, server, now):
        """Seconds past the grace period, when the server is to be reaped; else None."""
        if server.get('OS-EXT-STS:task_state') or server.get('status') == 'DELETED':
            return None
        late = lease.overdue(server.get('metadata'), self.grace_seconds, at=now)
        return late if late is not None and late > 0 else None

    def pass_once(self):
        """Reap what is due; the ids reaped. Nothing is deleted when nova cannot be read."""
        try:
            servers = self.leased_servers()
        except (ksa_exc.ClientException, ValueError, KeyError) as exc:
            LOG.warning('cloudlet-reaper: cannot list the servers (%s); nothing reaped, '
                        'trying again next pass', exc)
            return []
        reaped = []
        for listed in servers:
            if self._due(listed, self.clock()) is None:
                continue
            try:
                reaped += self._reap(listed['id'])
            except (ksa_exc.ClientException, ValueError, KeyError) as exc:
                LOG.warning('cloudlet-reaper: server %s not reaped this pass: %s', listed['id'], exc)
        return reaped

    def _reap(self, server_id):
        fresh = self._get('/servers/%s' % server_id)
        server = (fresh or {}).get('server')
        late = self._due(server, self.clock()) if server else None
        if late is None:              # gone, renewed, or busy since the listing
            return []
        response = self.compute.delete('/servers/%s' % server_id, raise_exc=False)
        if response.status_code not in (202, 204, 404):
            raise ksa_exc.HttpError('DELETE: HTTP %d' % response.status_code,
                                    http_status=response.status_code)
        metadata = server.get('metadata') or {}
        LOG.info('cloudlet-reaper: deleted server %s (%s) of project %s: its lease of %s s ran out '
                 'at %s and the %d s grace period passed %.0f s ago', server_id, server.get('name'),
                 server.get('tenant_id'), metadata.get(props.META_LEASE_SECONDS),
                 metadata.get(props.META_LEASE_EXPIRES_AT), self.grace_seconds, late)
        return [server_id]

    def run(self, stop, interval):
        """Pass every `interval` seconds until the threading.Event `stop` is set."""
        while not stop.is_set():
            self.pass_once()
            stop.wait(interval)
