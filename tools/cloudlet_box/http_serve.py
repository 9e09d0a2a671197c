"""A throwaway HTTP server for a directory of overlays, on ADDRESS.

ADDRESS is a loopback address of its own, not 127.0.0.1 where the box's
APIs listen: the box's outbound policy allows exactly this address
(bringup.configure_cloudlet), so the demo and the tests can serve overlays
to nova while 127.0.0.1 stays refused like any address that is not public.
"""

from cloudlet_tempest_plugin.common import file_server

ADDRESS = '127.0.0.2'
# Its ports: a further compute host reaches them through its relay (compute_host.py).
PORTS = range(18100, 18140)


def serve(root):
    """A context manager serving directory `root`; it yields the URL."""
    return file_server.serve(root, ADDRESS, '%d-%d' % (PORTS[0], PORTS[-1]))
