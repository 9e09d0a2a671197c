"""A throwaway HTTP server for a directory of overlays, on ADDRESS.

ADDRESS is a loopback address of its own, not 127.0.0.1 where the box's
APIs listen: the box's outbound policy allows exactly this address
(bringup.configure_cloudlet), so the demo and the tests can serve overlays
to nova while 127.0.0.1 stays refused like any address that is not public.
"""

import contextlib
import http.server
import threading

ADDRESS = '127.0.0.2'
# Its ports: a further compute host reaches them through its relay (compute_host.py).
PORTS = range(18100, 18140)


@contextlib.contextmanager
def serve(root):
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = None
    for port in PORTS:
        try:
            server = http.server.ThreadingHTTPServer((ADDRESS, port), QuietHandler)
            break
        except OSError:
            continue
    if server is None:
        raise OSError('no free port for an overlay server on %s in %d-%d' % (ADDRESS, PORTS[0], PORTS[-1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://%s:%d' % (ADDRESS, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
