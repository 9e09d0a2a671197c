"""nova-scheduler plug-ins: `weigher.BaseWeigher` (hosts that hold the requested base first)."""
