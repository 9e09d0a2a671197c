"""Files served over HTTP to the cloud's compute hosts and nova-api ([cloudlet]
overlay_serve_address and overlay_serve_ports), for the overlay_url and base
package URL tests.
"""

import contextlib
import http.server
import threading


@contextlib.contextmanager
def serve(directory, address, ports):
    """Serve `directory` on the first free port of `ports` ('FIRST-LAST'); yield its URL."""
    first, _, last = ports.partition('-')

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            pass

    server = None
    for port in range(int(first), int(last or first) + 1):
        try:
            server = http.server.ThreadingHTTPServer((address, port), Handler)
            break
        except OSError:
            continue
    if server is None:
        raise OSError('no free port on %s in %s' % (address, ports))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://%s:%d' % (address, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
