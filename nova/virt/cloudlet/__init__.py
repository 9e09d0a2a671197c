from cloudlet_nova.virt.driver import CloudletDriver  # noqa
