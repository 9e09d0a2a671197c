"""The library is importable on its own: no nova, no OSC, and of the Glance model only its property names
and how an image is signed (with that module's errors)."""

import subprocess
import sys

from tests.unit.test_layers import ROOT

MODULES = ('discovery', 'ranking', 'credentials', 'cloud', 'overlays', 'session', 'lease', 'reach', 'journey',
           'keys', 'errors')


def test_importing_every_module_loads_no_nova_and_no_osc():
    code = ('import sys\n'
            'import %s\n'
            'print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("nova", "cloudlet_nova", "api_extensions", "cloudlet_osc", "osc_lib", "openstackclient", '
            '"glanceclient", "cloudlet_cmd") or m.startswith("cloudlet_glance."))))\n'
            % ', '.join('cloudlet_client.' + m for m in MODULES))
    done = subprocess.run([sys.executable, '-c', code], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['cloudlet_glance.errors', 'cloudlet_glance.properties',
                                   'cloudlet_glance.signatures']
