"""A TCP relay that emulates a WAN path's delay and cuts, with byte counters.

    client --> LISTEN_HOST:port  ==relay==>  TARGET_HOST:port --> server

wan.py runs it inside a remote box's WAN network namespace, listening on the
namespace's address and forwarding to the box's APIs in the root namespace,
so every byte crosses the veth pair (and its `tc tbf` shaping) twice. It is
plain TCP: HTTP keeps its Host header, so answers name the WAN address.

One thread, one selector; each accepted connection is a pair of pipes:
`up` (client -> server, the direction a handoff uploads in) and `down`.

- Delay: every chunk read is forwarded at arrival + delay (one way, in both
  directions), so a request/answer round trip gains 2 x delay while the
  throughput stays what the path carries (data in flight is buffered, up to
  `buffer_limit` bytes per pipe; beyond it the relay stops reading, which is
  TCP backpressure towards the sender; its sockets' kernel buffers are kept
  small, so that they add no queue of their own). A close (EOF) is delayed like data.
  The TCP handshake with the relay itself is not delayed.
- Cut: nothing is read, written or accepted any more, but every socket stays
  open, as if the cable were pulled: senders stall once the socket buffers
  are full, readers wait. `restore` plugs the cable back: the stalled
  connections and the ones waiting in the listen backlog go on where they were.
  `cut_after N` cuts once N more bytes went up (exactly N reach the servers).
- Counters: bytes up and down (`up`, `down`, also as `up_bytes`,
  `down_bytes`; counted when written to the other side), connections
  accepted, connections open.

Control: a unix stream socket taking one JSON object per line, answered by
one JSON line: {"cmd": "stats"} | {"cmd": "set_delay", "ms": 20} | {"cmd":
"cut"} | {"cmd": "cut_after", "up_bytes": 1000000} | {"cmd": "restore"} |
{"cmd": "reset_counters"}; every answer has "ok" (and "error" when false)
plus the stats. `control()` below is the client.

    python -m cloudlet_box.relay --listen 10.254.88.2 --target 10.254.88.1 \
        --port 5100 --port 9392 --control /run/openstack-cloudlet/box2/wan-relay.sock

Standard library only.
"""

import argparse
import collections
import errno
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time

READ_SIZE = 256 * 1024
# Bytes in flight per pipe: delay x bandwidth fits (20 ms at 200 Mbps), and not much more, like a
# router's queue. A deep buffer here would hide the WAN's pace from the sender (its data would pile
# up in the middle of the path instead of in its own queue) and lengthen every drain.
BUFFER_LIMIT = 512 * 1024
# The relay's own sockets are a part of the path too. Left to the kernel's autotuning, their receive
# and send buffers grow to megabytes: a second, hidden queue behind BUFFER_LIMIT that no router has
# (seen: at 5 Mbps, ~3 s of a handoff's data still crossing after the source had sent its last byte).
# Kept small (the kernel doubles it), what is in flight is BUFFER_LIMIT and the tbf queue.
SOCKET_BUFFER = 64 * 1024
EOF = None                          # queue marker: the sender closed its side


def _log(message):
    print('%s relay: %s' % (time.strftime('%H:%M:%S'), message), flush=True)


class Pipe:
    """One direction of a connection: read from `src`, forward to `dst` when due."""

    def __init__(self, relay, src, dst, direction):
        self.relay, self.src, self.dst, self.direction = relay, src, dst, direction
        self.queue = collections.deque()   # (due time, memoryview or EOF)
        self.queued = 0
        self.eof = False       # src said EOF (or the pipe is finished)
        self.shut = False      # EOF delivered to dst
        self.blocked = False   # dst's send buffer is full: wait for writable

    def wants_read(self):
        return not self.eof and self.queued < self.relay.buffer_limit

    def read(self, now):
        """Read what src has; False when the connection broke."""
        try:
            data = self.src.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        due = now + self.relay.delay
        if not data:
            self.eof = True
            self.queue.append((due, EOF))
        else:
            self.queue.append((due, memoryview(data)))
            self.queued += len(data)
        return True

    def flush(self, now):
        """Forward every due chunk dst takes; return (ok, next due time or None)."""
        relay = self.relay
        while self.queue and not relay.is_cut:
            due, data = self.queue[0]
            if due > now:
                return True, due
            if data is EOF:
                self.queue.popleft()
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    return False, None
                self.shut = True
                return True, None
            allowed = len(data)
            if self.direction == 'up' and relay.up_budget is not None:
                allowed = min(allowed, relay.up_budget)
            try:
                sent = self.dst.send(data[:allowed])
            except (BlockingIOError, InterruptedError):
                self.blocked = True
                return True, None
            except OSError:
                return False, None
            relay.count(self.direction, sent)
            self.queued -= sent
            if sent < len(data):
                self.queue[0] = (due, data[sent:])
            else:
                self.queue.popleft()
        return True, None


def _small_buffers(sock):
    """SOCKET_BUFFER for `sock`'s receive and send buffers (before it connects or listens)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class Connection:
    def __init__(self, relay, client, target):
        self.relay = relay
        self.client = client
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if relay.small_buffers:
            _small_buffers(self.server)
        for sock in (client, self.server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connecting = True
        self.target, self.error = target, 0
        code = self.server.connect_ex(target)
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
        self.up = Pipe(relay, client, self.server, 'up')
        self.down = Pipe(relay, self.server, client, 'down')
        self.registered = {}      # socket -> events
        self.closed = False

    def finish_connect(self):
        self.error = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if self.error:
            return False
        self.connecting = False
        return True

    def interests(self):
        cut = self.relay.is_cut
        client = server = 0
        if not cut:
            if self.up.wants_read():
                client |= selectors.EVENT_READ
            if self.down.blocked:
                client |= selectors.EVENT_WRITE
            if self.connecting:
                server |= selectors.EVENT_WRITE
            else:
                if self.down.wants_read():
                    server |= selectors.EVENT_READ
                if self.up.blocked:
                    server |= selectors.EVENT_WRITE
        return {self.client: client, self.server: server}

    def done(self):
        return self.up.shut and self.down.shut

    def close(self, abort=False):
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.server):
            if sock in self.registered:
                self.relay.selector.unregister(sock)
            if abort:
                try:   # a reset, not a clean end, for the other side
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
                except OSError:
                    pass
            sock.close()
        self.registered = {}


class Relay:
    """Forward each listening (host, port) to its target (host, port)."""

    def __init__(self, routes, control_path=None, delay_ms=0, buffer_limit=BUFFER_LIMIT, small_buffers=True):
        """`routes`: [((listen host, port), (target host, port)), ...]; port 0 picks one.
        `small_buffers`: keep the sockets' kernel buffers small (a WAN path's queue is the relay's own).
        """
        self.selector = selectors.DefaultSelector()
        self.small_buffers = small_buffers
        self.buffer_limit = buffer_limit
        self.delay = delay_ms / 1000.0
        self.is_cut = False
        self.up_budget = None
        self.connections = set()
        self.up_bytes = self.down_bytes = self.accepted = 0
        self.listeners = {}
        self.listening = False
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ('wake', None))
        for listen, target in routes:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if small_buffers:
                _small_buffers(sock)      # accepted connections inherit them
            sock.bind(listen)
            sock.listen(128)
            sock.setblocking(False)
            self.listeners[sock] = target
        self._listen(True)
        self.control_path = control_path
        self.control = None
        self.control_clients = {}
        if control_path:
            try:
                os.unlink(control_path)
            except FileNotFoundError:
                pass
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.bind(control_path)
            os.chmod(control_path, 0o600)
            self.control.listen(16)
            self.control.setblocking(False)
            self.selector.register(self.control, selectors.EVENT_READ, ('control', None))

    @property
    def addresses(self):
        """[(listen address, target)] as bound (port 0 resolved)."""
        return [(sock.getsockname(), target) for sock, target in self.listeners.items()]

    def _listen(self, on):
        if on == self.listening:
            return
        for sock in self.listeners:
            if on:
                self.selector.register(sock, selectors.EVENT_READ, ('listen', sock))
            else:
                self.selector.unregister(sock)
        self.listening = on

    # State changes (the loop's thread; other threads go through the control socket).

    def count(self, direction, n):
        if direction == 'up':
            self.up_bytes += n
            if self.up_budget is not None:
                self.up_budget -= n
                if self.up_budget <= 0:
                    self.cut()
        else:
            self.down_bytes += n

    def cut(self):
        self.is_cut = True
        self.up_budget = None

    def restore(self):
        self.is_cut = False
        self.up_budget = None

    def stats(self):
        # 'up'/'down' and 'up_bytes'/'down_bytes' are the same counters.
        return {'up': self.up_bytes, 'down': self.down_bytes,
                'up_bytes': self.up_bytes, 'down_bytes': self.down_bytes,
                'connections': self.accepted, 'open_connections': len(self.connections),
                'delay_ms': round(self.delay * 1000.0, 3), 'cut': self.is_cut,
                'cut_after_remaining': self.up_budget,
                'queued_up': sum(c.up.queued for c in self.connections),
                'queued_down': sum(c.down.queued for c in self.connections)}

    def command(self, request):
        """Run one control request (a dict); return the answer (a dict)."""
        cmd = request.get('cmd')
        try:
            if cmd == 'stats':
                pass
            elif cmd == 'set_delay':
                ms = float(request['ms'])
                if not 0 <= ms <= 60000:
                    raise ValueError('ms must be between 0 and 60000')
                self.delay = ms / 1000.0
            elif cmd == 'cut':
                self.cut()
            elif cmd == 'cut_after':
                up_bytes = int(request['up_bytes'])
                if up_bytes < 0:
                    raise ValueError('up_bytes must be >= 0')
                self.is_cut = False
                self.up_budget = up_bytes
                if up_bytes == 0:
                    self.cut()
            elif cmd == 'restore':
                self.restore()
            elif cmd == 'reset_counters':
                self.up_bytes = self.down_bytes = self.accepted = 0
            else:
                raise ValueError('unknown command %r (stats, set_delay, cut, cut_after, restore, '
                                 'reset_counters)' % (cmd,))
        except (KeyError, TypeError, ValueError) as exc:
            message = 'missing argument %s' % exc if isinstance(exc, KeyError) else str(exc)
            return dict(self.stats(), ok=False, error=message)
        if cmd != 'stats':
            _log('%s -> delay %.1f ms, cut %s, cut_after %s' % (
                json.dumps(request), self.delay * 1000, self.is_cut, self.up_budget))
        return dict(self.stats(), ok=True)

    # The loop.

    def serve_forever(self):
        try:
            while not self._stop:
                timeout = self._pump(time.monotonic())
                for key, events in self.selector.select(timeout):
                    kind, obj = key.data
                    now = time.monotonic()
                    if kind == 'listen':
                        self._accept(obj)
                    elif kind == 'conn':
                        self._ready(obj, key.fileobj, events, now)
                    elif kind == 'control':
                        self._accept_control()
                    elif kind == 'control-client':
                        self._control_read(key.fileobj)
                    elif kind == 'wake':
                        try:
                            self._wake_r.recv(4096)
                        except BlockingIOError:
                            pass
        finally:
            self._shutdown()

    def stop(self):
        """Stop the loop (from any thread or a signal handler)."""
        self._stop = True
        try:
            self._wake_w.send(b'x')
        except OSError:
            pass

    def _shutdown(self):
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()
        for sock in list(self.listeners) + list(self.control_clients):
            sock.close()
        if self.control is not None:
            self.control.close()
            try:
                os.unlink(self.control_path)
            except OSError:
                pass
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log('accept failed: %s' % exc)
                return
            try:
                conn = Connection(self, client, self.listeners[listener])
            except OSError as exc:
                _log('cannot connect to %s:%d: %s' % (self.listeners[listener] + (exc,)))
                client.close()
                continue
            self.accepted += 1
            self.connections.add(conn)

    def _ready(self, conn, sock, events, now):
        if conn.closed:
            return
        ok = True
        if sock is conn.server and conn.connecting:
            if events & selectors.EVENT_WRITE and not conn.finish_connect():
                _log('cannot connect to %s:%d: %s' % (conn.target + (os.strerror(conn.error),)))
                conn.close(abort=True)
                return
        else:
            if events & selectors.EVENT_WRITE:
                (conn.up if sock is conn.server else conn.down).blocked = False
            if events & selectors.EVENT_READ:
                ok = (conn.up if sock is conn.client else conn.down).read(now)
        if not ok:
            conn.close(abort=True)

    def _pump(self, now):
        """Forward what is due, update every registration; return the select timeout."""
        self._listen(not self.is_cut)
        next_due = None
        for conn in list(self.connections):
            if conn.closed:
                self.connections.discard(conn)
                continue
            for pipe in (conn.up, conn.down):
                if conn.connecting and pipe is conn.up:
                    continue     # nowhere to write yet
                if pipe.blocked:
                    continue
                ok, due = pipe.flush(now)
                if not ok:
                    conn.close(abort=True)
                    break
                if due is not None and not self.is_cut:
                    next_due = due if next_due is None else min(next_due, due)
            if conn.closed or conn.done():
                conn.close()
                self.connections.discard(conn)
                continue
            for sock, events in conn.interests().items():
                old = conn.registered.get(sock, 0)
                if events == old:
                    continue
                if not events:
                    self.selector.unregister(sock)
                    del conn.registered[sock]
                elif not old:
                    self.selector.register(sock, events, ('conn', conn))
                    conn.registered[sock] = events
                else:
                    self.selector.modify(sock, events, ('conn', conn))
                    conn.registered[sock] = events
        if next_due is None:
            return None
        return max(0.0, next_due - time.monotonic())

    def _accept_control(self):
        try:
            client, _ = self.control.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(False)
        self.control_clients[client] = b''
        self.selector.register(client, selectors.EVENT_READ, ('control-client', None))

    def _control_read(self, client):
        try:
            data = client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b''
        if not data:
            self.selector.unregister(client)
            del self.control_clients[client]
            client.close()
            return
        buffer = self.control_clients[client] + data
        *lines, rest = buffer.split(b'\n')
        self.control_clients[client] = rest
        for line in lines:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError('not a JSON object')
            except ValueError as exc:
                answer = dict(self.stats(), ok=False, error='bad request: %s' % exc)
            else:
                answer = self.command(request)
            try:
                client.setblocking(True)
                client.sendall(json.dumps(answer).encode() + b'\n')
                client.setblocking(False)
            except OSError:
                pass


def control(path, cmd, timeout=5.0, **arguments):
    """Send one command to the relay listening on unix socket `path`; return its answer."""
    request = dict(arguments, cmd=cmd)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b'\n')
        data = b''
        while not data.endswith(b'\n'):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError('the relay closed the control connection')
            data += chunk
    return json.loads(data)


def run_in_thread(relay):
    """Serve `relay` from a daemon thread (tests); return the thread."""
    thread = threading.Thread(target=relay.serve_forever, name='relay', daemon=True)
    thread.start()
    return thread


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--listen', required=True, help='address to listen on')
    parser.add_argument('--target', required=True, help='address to forward to')
    parser.add_argument('--port', type=int, action='append', required=True,
                        help='a port to relay (same port on both sides); repeat')
    parser.add_argument('--control', help='unix socket for control commands')
    parser.add_argument('--delay-ms', type=float, default=0.0, help='one-way delay')
    args = parser.parse_args(argv)
    routes = [((args.listen, port), (args.target, port)) for port in args.port]
    relay = Relay(routes, control_path=args.control, delay_ms=args.delay_ms)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: relay.stop())
    _log('%s -> %s, ports %s, control %s' % (args.listen, args.target,
                                             ','.join(map(str, args.port)), args.control))
    relay.serve_forever()
    _log('stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
