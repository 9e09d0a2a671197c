"""cloudlet-dashboard-install: the enabled files and the policy file, where Horizon reads them."""

import yaml

from api_extensions import policies
from cloudlet_dashboard import install


def test_installs_the_enabled_files_and_nova_rules_into_a_horizon(tmp_path):
    written = install.install(tmp_path)
    names = sorted(path.name for path in (tmp_path / 'local' / 'enabled').iterdir())
    assert names[0] == '_1600_project_cloudlet_panel_group.py'
    assert '__init__.py' not in names and len(names) == 6
    rules = yaml.safe_load((tmp_path / 'conf' / 'nova_policy.d' / 'cloudlet.yaml').read_text())
    assert rules == {rule.name: rule.check_str for rule in policies.list_rules()}
    assert rules['cloudlet:handoff'].startswith('role:admin or (role:member')
    assert install.install(tmp_path) == written       # again: the same files, nothing else
