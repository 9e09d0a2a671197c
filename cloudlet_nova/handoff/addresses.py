"""The floating IPs of a server that moves: found here, released here after the switch.

A server reached at a floating IP before its handoff should be reachable
after it: the destination server gets one of its own (DestinationClient.add_floating_ip,
described `cloudlet-handoff-<handoff id>`), and the source's, which nova would
only disassociate when it deletes the ports, are released with the source
server. The destination's is released in turn when that server is deleted
(`release_handed_off`, from CloudletDriver.destroy): made for the server by
the handoff, it would otherwise stay allocated to the project, one more with
every handoff. Neutron is asked with nova's own service credentials, as
nova's network API does on a compute host.
"""

from cloudlet_glance import properties as props
from nova.network import neutron


def floating_ips(context, instance):
    """The ids of the floating IPs on the server's ports (from nova's network info cache)."""
    port_ids = [vif['id'] for vif in instance.get_network_info()]
    if not port_ids:
        return []
    client = neutron.get_client(context, admin=True)
    found = client.list_floatingips(port_id=port_ids, fields=['id'])['floatingips']
    return [floating_ip['id'] for floating_ip in found]


def handoff_description(handoff_id):
    """The description of the floating IP a handoff gives its destination server."""
    return 'cloudlet-handoff-%s' % handoff_id


def release_handed_off(context, instance, network_info):
    """Release the floating IPs the handoff that brought `instance` here made for its
    ports (`network_info`); their ids.
    """
    handoff_id = (instance.metadata or {}).get(props.HANDOFF_ID)
    port_ids = [vif['id'] for vif in network_info or ()]
    if not handoff_id or not port_ids:
        return []
    client = neutron.get_client(context, admin=True)
    found = client.list_floatingips(port_id=port_ids, description=handoff_description(handoff_id),
                                    fields=['id'])['floatingips']
    ids = [floating_ip['id'] for floating_ip in found]
    release(context, ids, client)
    return ids


def release(context, floating_ip_ids, client=None):
    """Delete these floating IPs (`client`: a Neutron client of the caller's, else one made here)."""
    client = client or neutron.get_client(context, admin=True)
    for floating_ip_id in floating_ip_ids:
        client.delete_floatingip(floating_ip_id)
