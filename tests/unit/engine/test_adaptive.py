"""The per-segment codec choice from the measured bandwidth."""

from cloudlet_engine import adaptive
from cloudlet_engine import format as fmt


def _chooser(bits_per_second):
    return adaptive.CodecChooser(lambda: bits_per_second)


def test_unknown_bandwidth_uses_the_fast_codec():
    assert _chooser(None).choose(1 << 20) == fmt.CODEC_ZSTD


def test_slow_link_prefers_xz_fast_link_zstd():
    assert _chooser(5e6).choose(1 << 20) == fmt.CODEC_XZ       # 5 Mbps: the wire is the bottleneck
    assert _chooser(1e9).choose(1 << 20) == fmt.CODEC_ZSTD     # 1 Gbps: xz would be


def test_measurements_move_the_choice():
    chooser = _chooser(25e6)
    # Data xz cannot shrink better than zstd, and xz is slow on it: zstd wins at 25 Mbps.
    for _ in range(5):
        chooser.observe(fmt.CODEC_XZ, 1 << 20, 600 << 10, 0.5)
        chooser.observe(fmt.CODEC_ZSTD, 1 << 20, 600 << 10, 0.005)
    assert chooser.choose(1 << 20) == fmt.CODEC_ZSTD
    assert chooser.figures()['xz']['speed'] < 10e6


def test_an_unused_codec_is_measured_again():
    chooser = _chooser(1e9)
    picks = [chooser.choose(1 << 20) for _ in range(adaptive.RETRY_EVERY + 2)]
    assert picks.count(fmt.CODEC_XZ) == 1 and picks[-1] == fmt.CODEC_ZSTD
    assert chooser.chosen == {'zstd': adaptive.RETRY_EVERY + 1, 'xz': 1}


def test_forced_single_codec():
    chooser = adaptive.CodecChooser(lambda: 5e6, codecs=(fmt.CODEC_ZSTD,))
    assert {chooser.choose(1 << 20) for _ in range(40)} == {fmt.CODEC_ZSTD}
