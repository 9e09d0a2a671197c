"""The console scripts (as nova keeps its own in nova/cmd/).

- cloudlet.py   `cloudlet`: the engine on one host (bases, overlays, synthesis), no cloud needed;
- configure.py  `cloudlet-configure`: plugs openstack-cloudlet into an installed nova;
- advertise.py  `cloudlet-advertise`: announces the cloudlet by DNS-SD (cloudlet_nova/discovery);
- inifile.py    ini files edited in place (configure.py) or written whole (the box).
"""
