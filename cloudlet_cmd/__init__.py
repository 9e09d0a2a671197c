"""The console scripts (as nova keeps its own in nova/cmd/).

- cloudlet.py   `cloudlet`: the engine on one host (bases, overlays, synthesis), no cloud needed;
- configure.py  `cloudlet-configure`: plugs openstack-cloudlet into an installed nova;
- inifile.py    ini files edited in place (configure.py) or written whole (the box).
"""
