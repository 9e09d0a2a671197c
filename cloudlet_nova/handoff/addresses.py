"""The floating IPs of a server that moves: found here, released here after the switch.

A server reached at a floating IP before its handoff should be reachable
after it: the destination server gets one of its own (Destination.add_floating_ip),
and the source's, which nova would only disassociate when it deletes the
ports, are released with the source server. Neutron is asked with nova's own
service credentials, as nova's network API does on a compute host.
"""

from nova.network import neutron


def floating_ips(context, instance):
    """The ids of the floating IPs on the server's ports (from nova's network info cache)."""
    port_ids = [vif['id'] for vif in instance.get_network_info()]
    if not port_ids:
        return []
    client = neutron.get_client(context, admin=True)
    found = client.list_floatingips(port_id=port_ids, fields=['id'])['floatingips']
    return [floating_ip['id'] for floating_ip in found]


def release(context, floating_ip_ids):
    client = neutron.get_client(context, admin=True)
    for floating_ip_id in floating_ip_ids:
        client.delete_floatingip(floating_ip_id)
