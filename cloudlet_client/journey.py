"""The journey's first half: find the cloudlets, rank them, negotiate with the best that accepts.

    overlay = overlays.Overlay.parse('./app.clo')
    ranked = journey.discover(overlay, timeout=2.0)            # [ranking.Ranked], best first
    session = journey.choose(overlay, ranked, credentials, fallback='central')
    session.synthesize(overlay, 'ar-app', lease_seconds=120) ...   (cloudlet_client.session)

choose() tries the ranked cloudlets in order, skipping those whose Keystone
did not answer, those the credentials do not cover (nothing is sent to
them), those that refuse the overlay and those that fail; when none is left
it negotiates with the fallback cloud (a clouds.yaml cloud name), and raises
errors.NoCloudlet, with every reason, when that says no too.
"""

import logging

from cloudlet_client import credentials as credentials_mod
from cloudlet_client import discovery
from cloudlet_client import errors
from cloudlet_client import ranking
from cloudlet_client import session as session_mod

LOG = logging.getLogger(__name__)


def discover(overlay=None, timeout=2.0, base_id=None, memory_mb=None, vcpus=None, probe=None):
    """Browse for `timeout` seconds and rank what answered for `overlay` (its base, when known here)."""
    if base_id is None and overlay is not None:
        base_id = overlay.base_id()
    return ranking.rank(discovery.browse(timeout), base_id=base_id, memory_mb=memory_mb, vcpus=vcpus,
                        probe=probe)


def choose(overlay, ranked, credentials=None, fallback=None, fallback_region=None):
    """A negotiated CloudletSession on the best cloudlet of `ranked` that accepts `overlay`,
    else on the `fallback` clouds.yaml cloud; errors.NoCloudlet otherwise.
    """
    tried = []
    for entry in ranked:
        cloudlet = entry.cloudlet
        if entry.rtt is None:
            tried.append((cloudlet.name, 'its Keystone %s did not answer' % cloudlet.keystone_url))
            continue
        if credentials is None:
            tried.append((cloudlet.name, 'no credentials given'))
            continue
        try:
            session = session_mod.CloudletSession(credentials.cloud_for(cloudlet), cloudlet)
            session.negotiate(overlay)
        except errors.ClientError as exc:
            LOG.info('not cloudlet %s: %s', cloudlet.name, exc)
            tried.append((cloudlet.name, str(exc)))
            continue
        return session
    if fallback:
        LOG.info('no cloudlet took %s: falling back to %s', overlay.describe(), fallback)
        try:
            session = session_mod.CloudletSession(
                credentials_mod.named_cloud(fallback, fallback_region), fallback=True)
            session.negotiate(overlay)
            return session
        except errors.ClientError as exc:
            tried.append((fallback, str(exc)))
    reasons = '; '.join('%s: %s' % item for item in tried) or 'no cloudlet answered and no fallback cloud'
    raise errors.NoCloudlet('nowhere to run %s (%s)' % (overlay.describe(), reasons), tried)
