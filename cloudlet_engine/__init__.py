"""The VM synthesis engine: base VMs, overlays, synthesis.

Nothing in this package imports nova: it works on its own (the `cloudlet`
command) and is called by the nova driver. The overlay byte format is
specified in doc/overlay-format.md.
"""
