from cloudlet_tempest_plugin.services.cloudlet_client import CloudletClient

__all__ = ['CloudletClient']
