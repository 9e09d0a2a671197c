"""The nova side: CloudletDriver (a LibvirtDriver) and the modules it delegates to."""
