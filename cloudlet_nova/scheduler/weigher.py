"""BaseWeigher: a synthesis or resume goes to a host that holds its base, when one has room.

A host without the base must first fetch it from Glance (disk and memory,
hundreds of MB), so a host holding it is worth more than the stock weighers'
spread of RAM or CPU: with the default [cloudlet] base_weight_multiplier
(10, against 1.0 for each stock weigher), it wins whenever Placement found it
room. When no host holds the base, this weigher gives every host the same
weight and the stock weighers choose; the chosen host fetches the base.

Which hosts hold it: each cloudlet compute host reports one
CUSTOM_CLOUDLET_IMAGE_<image id> trait per base disk image whose base it
holds (CloudletDriver.update_provider_tree), and nova's HostState carries no
traits, so the weigher asks Placement once per request for the providers
with that trait. Only requests for a base image ask: base disk images
require the CUSTOM_CLOUDLET_V1 trait, which nova keeps in the request's
image properties (every other image property of ours it drops).

Enable it beside the stock weighers:

    [filter_scheduler]
    weight_classes = nova.scheduler.weights.all_weighers,cloudlet_nova.scheduler.weigher.BaseWeigher

The multiplier can be set per aggregate, as for nova's own weighers, with the
aggregate metadata key cloudlet_base_weight_multiplier.
"""

from oslo_log import log as logging

import nova.conf
from nova.scheduler.client import report
from nova.scheduler import utils
from nova.scheduler import weights

from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

# GET /resource_providers?required=<trait>
PLACEMENT_VERSION = '1.18'
AGGREGATE_KEY = 'cloudlet_base_weight_multiplier'


def requested_base_image(spec_obj):
    """The id of the base disk image a request restores, or None for any other request."""
    image = spec_obj.image if spec_obj.obj_attr_is_set('image') else None
    if image is None or not image.obj_attr_is_set('id'):
        return None
    if props.TRAIT not in (image.properties.get('traits_required') or ()):
        return None
    return image.id


class BaseWeigher(weights.BaseHostWeigher):
    """Weight 1 for a host that holds the base of the requested base image, else 0."""

    def __init__(self):
        super().__init__()
        cloudlet_conf.register_opts(CONF)

    def weight_multiplier(self, host_state):
        return utils.get_weight_multiplier(host_state, AGGREGATE_KEY, CONF.cloudlet.base_weight_multiplier)

    def weigh_objects(self, weighed_obj_list, weight_properties):
        # One Placement query per request, not one per host.
        holding = self.hosts_holding(weight_properties)
        return [1.0 if weighed.obj.uuid in holding else 0.0 for weighed in weighed_obj_list]

    def _weigh_object(self, host_state, weight_properties):
        return 1.0 if host_state.uuid in self.hosts_holding(weight_properties) else 0.0

    @staticmethod
    def hosts_holding(spec_obj):
        """The resource provider uuids of the hosts holding the requested base (a set)."""
        image_id = requested_base_image(spec_obj)
        if image_id is None:
            return set()
        trait = props.cached_image_trait(image_id)
        try:
            answer = report.report_client_singleton().get(
                '/resource_providers?required=%s' % trait, version=PLACEMENT_VERSION)
        except Exception as exc:    # noqa: BLE001 - weighing goes on without the preference
            LOG.warning('cannot ask Placement which hosts hold the base of image %s: %s', image_id, exc)
            return set()
        if answer.status_code != 200:
            # 400 "No such trait": no host has ever held it.
            LOG.debug('no host holds the base of image %s (Placement: %s)', image_id, answer.status_code)
            return set()
        holding = {provider['uuid'] for provider in answer.json().get('resource_providers', [])}
        LOG.debug('%d host(s) hold the base of image %s', len(holding), image_id)
        return holding
