"""Choosing each segment's codec from the measured bandwidth (handoff residues).

A segment of R raw bytes costs, with codec c, `max(R / speed_c, R * ratio_c / bandwidth)`
seconds to get across: the compressor and the network work in parallel (the
upload sends the previous segment while this one is compressed), so the slower
of the two sets the pace. Speed (raw bytes per CPU second) and ratio (stored
/ raw) are moving averages of what each codec did on this very stream; the
bandwidth comes from the upload. Slow links favour xz (smaller), fast links
zstd (10-30x faster here, LZMA compresses at only 7-17 MB/s).

A codec not used for a while is tried again on one segment, so its figures
follow the data as it changes (memory pages, then disk chunks).
"""

import threading

from cloudlet_engine import format as fmt

# Starting points before anything was measured on this stream (this host class).
INITIAL = {
    fmt.CODEC_ZSTD: {'speed': 150e6, 'ratio': 0.45},
    fmt.CODEC_XZ: {'speed': 10e6, 'ratio': 0.38},
}
SMOOTHING = 0.3          # weight of the newest observation
RETRY_EVERY = 16         # segments before an unused codec is measured again


class CodecChooser:
    """Thread-safe: `choose` and `observe` are called by the segment builder."""

    def __init__(self, bandwidth, codecs=(fmt.CODEC_ZSTD, fmt.CODEC_XZ)):
        """bandwidth: a callable returning the measured bits/s, or None while unknown."""
        self._bandwidth = bandwidth
        self._codecs = tuple(codecs)
        self._figures = {c: dict(INITIAL[c]) for c in self._codecs}
        self._since_used = {c: 0 for c in self._codecs}
        self._lock = threading.Lock()
        self.chosen = {fmt.CODEC_NAMES[c]: 0 for c in self._codecs}

    def predicted_seconds(self, codec, raw_bytes, bits_per_second):
        figures = self._figures[codec]
        compress = raw_bytes / figures['speed']
        send = raw_bytes * figures['ratio'] * 8 / bits_per_second
        return max(compress, send)

    def choose(self, raw_bytes):
        with self._lock:
            bits_per_second = self._bandwidth() if self._bandwidth else None
            if len(self._codecs) == 1 or not bits_per_second:
                codec = self._codecs[0]
            else:
                stale = [c for c in self._codecs if self._since_used[c] >= RETRY_EVERY]
                codec = stale[0] if stale else min(
                    self._codecs, key=lambda c: self.predicted_seconds(c, max(raw_bytes, 1), bits_per_second))
            for c in self._codecs:
                self._since_used[c] = 0 if c == codec else self._since_used[c] + 1
            self.chosen[fmt.CODEC_NAMES[codec]] += 1
            return codec

    def observe(self, codec, raw_bytes, stored_bytes, cpu_seconds):
        """What compressing one segment cost (small segments say little: skipped)."""
        if raw_bytes < 16384 or codec not in self._figures:
            return
        with self._lock:
            figures = self._figures[codec]
            speed = raw_bytes / max(cpu_seconds, 1e-6)
            ratio = stored_bytes / raw_bytes
            figures['speed'] += SMOOTHING * (speed - figures['speed'])
            figures['ratio'] += SMOOTHING * (ratio - figures['ratio'])

    def figures(self):
        with self._lock:
            return {fmt.CODEC_NAMES[c]: dict(f) for c, f in self._figures.items()}
