"""cloudlet-dashboard-install: put the plugin where an installed Horizon reads it.

Horizon finds plugins through files in `openstack_dashboard/local/enabled/`
and a service's policy in `openstack_dashboard/conf/<service>_policy.d/`
(settings POLICY_DIRS). This copies the plugin's enabled files there and
writes the cloudlet API's policy defaults (`api_extensions.policies`, the
rules nova enforces) as `nova_policy.d/cloudlet.yaml`, so the dashboard shows
each user only the actions nova would allow. An operator who overrides a
`cloudlet:` rule in nova overrides it in that file too, as for nova's own.
The box and the devstack plugin run it; it is idempotent.
"""

import argparse
import os
import pathlib
import shutil

import yaml

from api_extensions import policies

ENABLED = pathlib.Path(__file__).resolve().parent / 'enabled'
POLICY_FILE = 'cloudlet.yaml'
HEADER = ('# Written by cloudlet-dashboard-install: the cloudlet API\'s default policy (nova enforces it;\n'
          '# Horizon reads it to show only what the user may do). Override here what you override in nova.\n')


def horizon_root():
    import openstack_dashboard
    return pathlib.Path(openstack_dashboard.__file__).resolve().parent


def enabled_files():
    return sorted(ENABLED.glob('_[0-9]*.py'))


def policy_text():
    return HEADER + yaml.safe_dump({rule.name: rule.check_str for rule in policies.list_rules()},
                                   default_flow_style=False, sort_keys=True)


def install(root):
    """Copy the enabled files and write the policy file under Horizon's `root`; return what was written."""
    written = []
    enabled_dir = root / 'local' / 'enabled'
    enabled_dir.mkdir(parents=True, exist_ok=True)
    for source in enabled_files():
        target = enabled_dir / source.name
        shutil.copyfile(source, target)
        written.append(target)
    policy_dir = root / 'conf' / 'nova_policy.d'
    policy_dir.mkdir(parents=True, exist_ok=True)
    target = policy_dir / POLICY_FILE
    temporary = target.with_suffix('.tmp')
    temporary.write_text(policy_text())
    os.replace(temporary, target)
    written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog='cloudlet-dashboard-install', description=__doc__.split('\n')[0])
    parser.add_argument('--horizon-dir', type=pathlib.Path, default=None,
                        help='The openstack_dashboard package directory (default: the importable one)')
    args = parser.parse_args(argv)
    for path in install(args.horizon_dir or horizon_root()):
        print(path)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
