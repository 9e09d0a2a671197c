"""cloudlet-advertise's start-up refusals: a configuration it cannot act on is exit 2, at once."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]

AUTH = """auth_type = password
auth_url = http://127.0.0.1:9/v3
username = nova
password = secret
project_name = service
"""


@pytest.mark.parametrize('section, message', [
    ('keystone_url = http://127.0.0.1:5000/v3\naddresses = 127.0.0.1\n', 'no credentials: set auth_type'),
    (AUTH + 'instance_name = %s\nkeystone_url = http://k.test/v3\n' % ('x' * 70), '1 to 63 bytes'),
    (AUTH + 'keystone_url = http://k.test/v3\nregion = Region One\n', 'not a region name'),
    (AUTH + 'keystone_url = http://k.test/v3\naddresses = 10.0.0.300\n', '10.0.0.300'),
])
def test_a_configuration_it_cannot_act_on_is_exit_2(tmp_path, section, message):
    config = tmp_path / 'advertise.conf'
    config.write_text('[cloudlet_discovery]\n' + section)
    done = subprocess.run([sys.executable, '-m', 'cloudlet_cmd.advertise', '--config-file', str(config)],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=30)
    output = done.stdout + done.stderr          # oslo.log writes to stdout without a log file
    assert done.returncode == 2, output
    assert message in output and '[cloudlet_discovery]' in output
