"""The tempest plugin of openstack-cloudlet (entry point `tempest.test_plugins`).

`tempest run --regex '^cloudlet_tempest_plugin[.]'` against any cloud whose nova
loads the cloudlet extension; doc/tempest-plugin.md says what to configure.
"""

import os

from tempest import config
from tempest.test_discover import plugins

from cloudlet_tempest_plugin import config as cloudlet_config


class CloudletTempestPlugin(plugins.TempestPlugin):

    def load_tests(self):
        base_path = os.path.split(os.path.dirname(os.path.abspath(__file__)))[0]
        test_dir = 'cloudlet_tempest_plugin/tests'
        return os.path.join(base_path, test_dir), base_path

    def register_opts(self, conf):
        config.register_opt_group(conf, cloudlet_config.service_available_group,
                                  cloudlet_config.ServiceAvailableGroup)
        config.register_opt_group(conf, cloudlet_config.cloudlet_group, cloudlet_config.CloudletGroup)

    def get_opt_lists(self):
        return [(cloudlet_config.cloudlet_group.name, cloudlet_config.CloudletGroup),
                (cloudlet_config.service_available_group.name, cloudlet_config.ServiceAvailableGroup)]

    def get_service_clients(self):
        # The cloudlet API is part of nova's: the compute endpoint, and its settings.
        params = config.service_client_config('compute')
        params.update({'name': 'cloudlet_v1', 'service_version': 'cloudlet.v1',
                       'module_path': 'cloudlet_tempest_plugin.services',
                       'client_names': ['CloudletClient']})
        return [params]
