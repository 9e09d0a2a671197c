"""The Horizon plugin: a Cloudlet panel group in the project dashboard, and cloudlet actions on Instances.

    api         every call to the cloud (the CLI's client and Glance model, with the user's token)
    apps        the Django app; adds Create overlay, Create base and Hand off to the Instances table
    install     put the enabled files and the policy file where Horizon reads them
    enabled/    Horizon's pluggable-settings files (panel group and panels)
    content/    one package per panel: overview, bases, overlays, synthesize; servers holds
                the forms behind the Instances actions (a panel with no navigation entry)

doc/dashboard.md describes the pages and how the box and devstack install it.
"""
