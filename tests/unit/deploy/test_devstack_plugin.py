"""devstack/settings and devstack/plugin.sh, run by bash against FAKE devstack functions.

fake_devstack_functions.sh stands in for devstack's functions (pip_install,
is_service_enabled, die...) and fake commands (cloudlet-configure, openstack,
python) stand in for programs; every call is recorded, and each test asserts
which commands a phase ran with which arguments. devstack itself is not run.
"""

import os
import shlex
import shutil
import subprocess
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FAKES = os.path.join(HERE, 'fake_devstack_functions.sh')
SETTINGS = os.path.join(REPO, 'devstack', 'settings')
PLUGIN = os.path.join(REPO, 'devstack', 'plugin.sh')

# A recording command: logs its name and arguments like the fake functions do.
FAKE_COMMAND = textwrap.dedent("""\
    #!/bin/bash
    source {fakes}
    fake_record "$(basename "$0")" "$@"
    {extra}
    """)


class FakeDevstack:
    """A tmp_path laid out like a devstack host, and a way to run plugin phases in it."""

    def __init__(self, root):
        self.root = root
        self.log = root / 'calls.log'
        self.bin = root / 'bin'
        self.site_packages = root / 'venv' / 'site-packages'
        self.env = {
            'PATH': '%s:/usr/bin:/bin' % self.bin,
            'HOME': str(root),
            'FAKE_DEVSTACK_LOG': str(self.log),
            'FAKE_BIN_DIR': str(self.bin),
            'FAKE_SITE_PACKAGES': str(self.site_packages),
            # What devstack has defined by the time plugins run (stackrc, lib/nova).
            'DEST': str(root / 'opt-stack'),
            'DATA_DIR': str(root / 'opt-stack' / 'data'),
            'NOVA_DIR': str(root / 'opt-stack' / 'nova'),
            'NOVA_INSTANCES_PATH': str(root / 'opt-stack' / 'data' / 'nova' / 'instances'),
            'NOVA_CONF': '/etc/nova/nova.conf',
            'NOVA_CONF_DIR': '/etc/nova',
            'KEYSTONE_SERVICE_URI': 'http://10.0.0.5/identity',
            'REGION_NAME': 'RegionOne',
            'HOST_IP': '10.0.0.5',
            'SERVICE_PASSWORD': 'service-secret',
            'SERVICE_DOMAIN_NAME': 'Default',
            'SERVICE_PROJECT_NAME': 'service',
            'NOVA_CPU_CONF': '/etc/nova/nova-cpu.conf',
            'NOVA_API_PASTE_INI': '/etc/nova/api-paste.ini',
            'GLANCE_API_CONF': '/etc/glance/glance-api.conf',
            'VIRT_DRIVER': 'libvirt',
            'LIBVIRT_TYPE': 'qemu',
            'PYTHON': str(self.bin / 'python3'),
            'ENABLED_SERVICES': 'key,n-api,n-cpu,n-cond,n-sch,placement-api,g-api',
        }
        self.bin.mkdir()
        self.site_packages.mkdir(parents=True)
        self._command('cloudlet-configure')
        self._command('openstack')
        self._command('python3', extra='echo "$FAKE_SITE_PACKAGES"')
        # devstack cloned this repository as $DEST/openstack-cloudlet: its shim is all we need of it.
        self.cloudlet_dir = root / 'opt-stack' / 'openstack-cloudlet'
        (self.cloudlet_dir / 'nova' / 'virt' / 'cloudlet').mkdir(parents=True)
        shutil.copy(os.path.join(REPO, 'nova', 'virt', 'cloudlet', '__init__.py'),
                    self.cloudlet_dir / 'nova' / 'virt' / 'cloudlet')

    def _command(self, name, extra=''):
        path = self.bin / name
        path.write_text(FAKE_COMMAND.format(fakes=FAKES, extra=extra))
        path.chmod(0o755)

    def editable_nova(self):
        """nova as devstack installs it: setup_develop, from the $NOVA_DIR checkout."""
        (self.root / 'opt-stack' / 'nova' / 'nova' / 'virt').mkdir(parents=True)
        (self.root / 'opt-stack' / 'nova' / 'nova' / '__init__.py').write_text('')

    def run(self, *phase, before_settings='', after_settings='', after_plugin=''):
        """Source the fakes, the settings (local.conf lines around them) and plugin.sh <phase>."""
        if self.log.exists():
            self.log.unlink()
        script = '\n'.join([
            'set -o errexit',          # as stack.sh runs
            'source %s' % shlex.quote(FAKES),
            before_settings,           # local.conf's localrc
            'source %s' % shlex.quote(SETTINGS),
            after_settings,
            'source %s %s' % (shlex.quote(PLUGIN), ' '.join(shlex.quote(p) for p in phase)),
            after_plugin,
        ])
        done = subprocess.run(['bash', '-c', script], env=self.env, capture_output=True, text=True,
                              cwd=self.root)
        return done.returncode, done.stdout + done.stderr

    def calls(self, name=None):
        if not self.log.exists():
            return []
        calls = [shlex.split(line) for line in self.log.read_text().splitlines()]
        return [c for c in calls if name is None or c[0] == name]


@pytest.fixture
def devstack(tmp_path):
    return FakeDevstack(tmp_path)


def run_ok(devstack, *phase, **kwargs):
    code, output = devstack.run(*phase, **kwargs)
    assert code == 0, output
    return output


# --------------------------------------------------------------------------- settings

def test_settings_define_the_plugin_and_enable_its_service(devstack):
    run_ok(devstack, 'stack', 'pre-install')
    assert ['define_plugin', 'openstack-cloudlet'] in devstack.calls()
    assert ['enable_service', 'cloudlet'] in devstack.calls()
    # pre-install: the Debian packages come from devstack/files/debs, nothing runs.
    assert devstack.calls('pip_install') == devstack.calls('cloudlet-configure') == []


def test_settings_defaults_and_local_conf_overrides(devstack):
    script = 'echo "$CLOUDLET_DIR|$CLOUDLET_STATE_DIR|$CLOUDLET_API_STATE_DIR|$CLOUDLET_BASE_IMPORT_CLOUD"'
    output = run_ok(devstack, 'stack', 'pre-install', after_settings=script)
    dest = devstack.env['DEST']
    assert '%s/openstack-cloudlet|%s/_cloudlet|%s/openstack-cloudlet/api|devstack' % (
        dest, devstack.env['NOVA_INSTANCES_PATH'], devstack.env['DATA_DIR']) in output
    output = run_ok(devstack, 'stack', 'pre-install', before_settings='CLOUDLET_STATE_DIR=/srv/cloudlet',
                    after_settings=script)
    assert '|/srv/cloudlet|' in output


def test_debian_packages(devstack):
    path = os.path.join(REPO, 'devstack', 'files', 'debs', 'openstack-cloudlet')   # named after the plugin
    packages = [line.split('#')[0].strip() for line in open(path)]
    assert packages == ['xdelta3', 'qemu-utils', 'zstd']


# --------------------------------------------------------------------------- stack install

def test_install_is_a_non_editable_pip_install_without_nova_pin(devstack):
    run_ok(devstack, 'stack', 'install')
    installs = devstack.calls('pip_install')
    assert installs == [['pip_install', '--no-deps', str(devstack.cloudlet_dir)],
                        ['pip_install', 'zstandard', 'zeroconf']]
    assert not any('-e' in call or '--editable' in call for call in installs)


def test_install_with_devstack_editable_nova_moves_the_shim_into_nova_checkout(devstack):
    devstack.editable_nova()
    run_ok(devstack, 'stack', 'install')
    link = devstack.root / 'opt-stack' / 'nova' / 'nova' / 'virt' / 'cloudlet'
    assert os.readlink(link) == str(devstack.cloudlet_dir / 'nova' / 'virt' / 'cloudlet')
    # pip's copy would make site-packages/nova a namespace package hiding nova: gone.
    assert not (devstack.site_packages / 'nova').exists()
    # Again (a re-stack): the same result.
    run_ok(devstack, 'stack', 'install')
    assert os.readlink(link) == str(devstack.cloudlet_dir / 'nova' / 'virt' / 'cloudlet')
    assert not (devstack.site_packages / 'nova').exists()


def test_install_with_nova_from_a_wheel_leaves_pip_s_shim(devstack):
    devstack.editable_nova()
    (devstack.site_packages / 'nova').mkdir()
    (devstack.site_packages / 'nova' / '__init__.py').write_text('')   # nova's own package is here
    run_ok(devstack, 'stack', 'install')
    assert (devstack.site_packages / 'nova' / 'virt' / 'cloudlet' / '__init__.py').exists()
    assert not os.path.lexists(devstack.root / 'opt-stack' / 'nova' / 'nova' / 'virt' / 'cloudlet')


# --------------------------------------------------------------------------- stack post-config

def test_post_config_configures_the_api_and_compute(devstack):
    run_ok(devstack, 'stack', 'post-config')
    env = devstack.env
    state_dir = '%s/_cloudlet' % env['NOVA_INSTANCES_PATH']
    api_state_dir = '%s/openstack-cloudlet/api' % env['DATA_DIR']
    assert devstack.calls('cloudlet-configure') == [
        ['cloudlet-configure', 'nova', '--role', 'api', '--config-file', '/etc/nova/nova.conf',
         '--api-paste', '/etc/nova/api-paste.ini', '--set', 'cloudlet.api_state_dir=%s' % api_state_dir,
         # No Barbican enabled: a handoff's credential travels in the RPC message.
         '--set', 'cloudlet_handoff.credential_store=rpc_message'],
        # NOVA_CONF for compute too: start_nova_compute copies it over NOVA_CPU_CONF after this phase.
        ['cloudlet-configure', 'nova', '--role', 'compute', '--config-file', '/etc/nova/nova.conf',
         '--virt-type', 'qemu', '--state-dir', state_dir, '--set', 'libvirt.mem_stats_period_seconds=0'],
    ]
    assert not any('/etc/nova/nova-cpu.conf' in call for call in devstack.calls())


def test_post_config_keeps_handoff_credentials_in_barbican_when_it_runs(devstack):
    run_ok(devstack, 'stack', 'post-config', before_settings='enable_service barbican')
    api, _compute = devstack.calls('cloudlet-configure')
    assert api[api.index('cloudlet_handoff.credential_store=key_manager') - 1] == '--set'


def test_post_config_keeps_nova_s_memory_balloon_when_asked(devstack):
    run_ok(devstack, 'stack', 'post-config', before_settings='CLOUDLET_MEMORY_BALLOON=True')
    _api, compute = devstack.calls('cloudlet-configure')
    assert not any('mem_stats_period_seconds' in arg for arg in compute)


def test_post_config_passes_allowed_hosts_and_kvm(devstack):
    run_ok(devstack, 'stack', 'post-config',
           before_settings='CLOUDLET_OVERLAY_ALLOWED_HOSTS=overlays.example,10.0.0.5\nLIBVIRT_TYPE=kvm')
    api, compute = devstack.calls('cloudlet-configure')
    assert api[-2:] == ['--set', 'cloudlet.overlay_url_allowed_hosts=overlays.example,10.0.0.5']
    assert compute[-2:] == ['--set', 'cloudlet.overlay_url_allowed_hosts=overlays.example,10.0.0.5']
    assert compute[compute.index('--virt-type') + 1] == 'kvm'


def test_post_config_passes_the_outbound_policy_only_when_set(devstack):
    run_ok(devstack, 'stack', 'post-config')
    assert not any('outbound' in arg for call in devstack.calls('cloudlet-configure') for arg in call)
    run_ok(devstack, 'stack', 'post-config',
           before_settings='CLOUDLET_OUTBOUND_ALLOWED_HOSTS=overlays.internal\n'
                           'CLOUDLET_OUTBOUND_ALLOWED_NETWORKS=10.20.0.7/32,fd00:1::/64')
    api, compute = devstack.calls('cloudlet-configure')[-2:]
    for call in (api, compute):
        assert call[-4:] == ['--set', 'cloudlet.outbound_allowed_hosts=overlays.internal',
                             '--set', 'cloudlet.outbound_allowed_networks=10.20.0.7/32,fd00:1::/64']


def test_post_config_on_a_compute_only_host(devstack):
    devstack.env['ENABLED_SERVICES'] = 'n-cpu,placement-client'
    run_ok(devstack, 'stack', 'post-config')
    [call] = devstack.calls('cloudlet-configure')
    assert call[1:4] == ['nova', '--role', 'compute']


def test_post_config_refuses_a_non_libvirt_compute(devstack):
    devstack.env['VIRT_DRIVER'] = 'fake'
    code, _ = devstack.run('stack', 'post-config')
    assert code != 0
    [die] = devstack.calls('die')
    assert 'VIRT_DRIVER=libvirt' in die[-1]


def test_a_failing_cloudlet_configure_stops_stack(devstack):
    (devstack.bin / 'cloudlet-configure').write_text('#!/bin/bash\nexit 2\n')
    code, _ = devstack.run('stack', 'post-config')
    assert code != 0
    assert 'cloudlet-configure failed for nova-api' in devstack.calls('die')[0][-1]


KEY_MANAGER = {'key_manager': {'backend': 'barbican'},
               'barbican': {'auth_endpoint': 'http://10.0.0.5/identity/v3'}}


def test_post_config_with_barbican_keeps_nova_s_and_glance_s_keys_there(devstack):
    devstack.env['ENABLED_SERVICES'] += ',barbican'
    run_ok(devstack, 'stack', 'post-config')
    files = _ini(devstack)
    assert files['/etc/nova/nova.conf'] == KEY_MANAGER
    assert files['/etc/glance/glance-api.conf'] == KEY_MANAGER
    assert not any('/etc/nova/nova-cpu.conf' in call for call in devstack.calls())


def test_post_config_with_barbican_on_a_compute_only_host(devstack):
    devstack.env['ENABLED_SERVICES'] = 'n-cpu,placement-client,barbican'
    run_ok(devstack, 'stack', 'post-config')
    files = _ini(devstack)
    assert files == {'/etc/nova/nova.conf': KEY_MANAGER}


def test_post_config_without_barbican_leaves_the_key_manager_alone(devstack):
    run_ok(devstack, 'stack', 'post-config')
    assert not any(call[2] in ('key_manager', 'barbican') for call in devstack.calls('iniset'))


# --------------------------------------------------------------------------- stack extra

def test_extra_imports_nothing_without_a_base_package(devstack):
    run_ok(devstack, 'stack', 'extra')
    assert devstack.calls('openstack') == []


def test_extra_imports_the_base_package_through_our_osc_plugin(devstack):
    run_ok(devstack, 'stack', 'extra', before_settings='CLOUDLET_BASE_PACKAGE=https://bases.example/demo.zip')
    assert devstack.calls('openstack') == [
        ['openstack', '--os-cloud', 'devstack', 'cloudlet', 'base', 'import', 'https://bases.example/demo.zip']]
    run_ok(devstack, 'stack', 'extra', before_settings='\n'.join([
        'CLOUDLET_BASE_PACKAGE="/srv/my base.zip"', 'CLOUDLET_BASE_IMPORT_CLOUD=devstack-admin',
        'CLOUDLET_BASE_IMPORT_ARGS="--name demo"']))
    assert devstack.calls('openstack') == [
        ['openstack', '--os-cloud', 'devstack-admin', 'cloudlet', 'base', 'import', '--name', 'demo',
         '/srv/my base.zip']]


def test_extra_imports_only_where_nova_api_runs(devstack):
    devstack.env['ENABLED_SERVICES'] = 'n-cpu'
    run_ok(devstack, 'stack', 'extra', before_settings='CLOUDLET_BASE_PACKAGE=/srv/base.zip')
    assert devstack.calls('openstack') == []


# --------------------------------------------------------------------------- cloudlet-advertise

def _ini(devstack):
    """The iniset calls, as {file: {section: {option: value}}}."""
    files = {}
    for _, path, section, option, value in devstack.calls('iniset'):
        files.setdefault(path, {}).setdefault(section, {})[option] = value
    return files


SERVICE_USER = {'auth_type': 'password', 'auth_url': 'http://10.0.0.5/identity', 'username': 'nova',
                'password': 'service-secret', 'user_domain_name': 'Default', 'project_name': 'service',
                'project_domain_name': 'Default'}


def test_post_config_writes_the_advertiser_s_and_the_reaper_s_files(devstack):
    run_ok(devstack, 'stack', 'post-config')
    assert _ini(devstack) == {
        '/etc/nova/cloudlet-advertise.conf': {'cloudlet_discovery': dict(
            SERVICE_USER, keystone_url='http://10.0.0.5/identity/v3', region='RegionOne',
            addresses='10.0.0.5', refresh_interval='10')},
        '/etc/nova/cloudlet-reaper.conf': {'cloudlet_lease': dict(SERVICE_USER, region_name='RegionOne')}}
    # Its own file: nothing of it in nova's.
    assert not any(call[1] == '/etc/nova/nova.conf' for call in devstack.calls('iniset'))


def test_advertiser_settings_from_local_conf(devstack):
    run_ok(devstack, 'stack', 'post-config', before_settings='\n'.join([
        'CLOUDLET_ADVERTISE_NAME=edge-7', 'CLOUDLET_ADVERTISE_ADDRESSES=', 'CLOUDLET_ADVERTISE_INTERVAL=3',
        'CLOUDLET_ADVERTISE_CONF=/etc/cloudlet/advertise.conf']))
    section = _ini(devstack)['/etc/cloudlet/advertise.conf']['cloudlet_discovery']
    # An empty address list (set, but empty): every address of the host.
    assert (section['instance_name'], section['addresses'], section['refresh_interval']) == ('edge-7', '', '3')


def test_extra_starts_the_advertiser_and_the_reaper_as_processes_of_their_own(devstack):
    run_ok(devstack, 'stack', 'extra')
    assert devstack.calls('run_process') == [
        ['run_process', 'cloudlet-advertise',
         '%s/cloudlet-advertise --config-file /etc/nova/cloudlet-advertise.conf' % devstack.bin],
        ['run_process', 'cloudlet-reaper',
         '%s/cloudlet-reaper --config-file /etc/nova/cloudlet-reaper.conf' % devstack.bin]]


@pytest.mark.parametrize('services, local_conf', [
    ('n-cpu,placement-client', ''),                      # a compute host
    # local.conf: enable_plugin ..., then disable_service cloudlet-advertise and cloudlet-reaper.
    (None, 'ENABLED_SERVICES=${ENABLED_SERVICES//,cloudlet-advertise/}\n'
           'ENABLED_SERVICES=${ENABLED_SERVICES//,cloudlet-reaper/}'),
])
def test_no_advertiser_nor_reaper_without_nova_api_or_when_disabled(devstack, services, local_conf):
    devstack.env['ENABLED_SERVICES'] = services or devstack.env['ENABLED_SERVICES']
    for phase in (('stack', 'post-config'), ('stack', 'extra'), ('unstack',)):
        run_ok(devstack, *phase, after_settings=local_conf)
        assert devstack.calls('iniset') == devstack.calls('run_process') == devstack.calls('stop_process') == []


def test_the_reaper_alone_can_be_disabled(devstack):
    for phase in (('stack', 'post-config'), ('stack', 'extra'), ('unstack',)):
        run_ok(devstack, *phase, after_settings='ENABLED_SERVICES=${ENABLED_SERVICES//,cloudlet-reaper/}')
        acted = str(devstack.calls('iniset') + devstack.calls('run_process') + devstack.calls('stop_process'))
        assert 'cloudlet-reaper' not in acted and 'cloudlet-advertise' in acted


def test_post_config_adds_the_panels_to_horizon_and_compresses_its_static_files_again(devstack):
    devstack.env.update(ENABLED_SERVICES=devstack.env['ENABLED_SERVICES'] + ',horizon',
                        HORIZON_DIR=str(devstack.root / 'opt-stack' / 'horizon'))
    devstack._command('cloudlet-dashboard-install')
    run_ok(devstack, 'stack', 'post-config')
    horizon = devstack.env['HORIZON_DIR']
    manage = [devstack.env['PYTHON'].rsplit('/', 1)[1], horizon + '/manage.py']
    ran = [call for call in devstack.calls() if call[0] in ('cloudlet-dashboard-install', 'python3')]
    assert ran == [['cloudlet-dashboard-install', '--horizon-dir', horizon + '/openstack_dashboard'],
                   manage + ['collectstatic', '--noinput', '--clear', '-v0'],
                   manage + ['compress', '--force', '-v0']]


def test_post_config_without_horizon_leaves_it_alone(devstack):
    devstack._command('cloudlet-dashboard-install')
    run_ok(devstack, 'stack', 'post-config')
    assert not devstack.calls('cloudlet-dashboard-install')


# --------------------------------------------------------------------------- unstack, clean, disabled

def test_test_config_sets_the_tempest_plugin_s_options_that_are_given(devstack):
    devstack.env.update(ENABLED_SERVICES=devstack.env['ENABLED_SERVICES'] + ',tempest',
                        TEMPEST_CONFIG='/opt/stack/tempest/etc/tempest.conf')
    run_ok(devstack, 'stack', 'test-config',
           before_settings='CLOUDLET_TEMPEST_OVERLAY_SERVE_ADDRESS=10.0.0.5')
    assert _ini(devstack) == {'/opt/stack/tempest/etc/tempest.conf': {
        'service_available': {'cloudlet': 'True'}, 'cloudlet': {'overlay_serve_address': '10.0.0.5'}}}


def test_test_config_without_tempest_writes_nothing(devstack):
    run_ok(devstack, 'stack', 'test-config')
    assert not devstack.calls('iniset')


def test_unstack_stops_only_the_advertiser_and_the_reaper(devstack):
    run_ok(devstack, 'unstack')
    assert [call[0] for call in devstack.calls()] == ['define_plugin', 'enable_service', 'enable_service',
                                                      'enable_service', 'stop_process', 'stop_process']
    assert devstack.calls('stop_process') == [['stop_process', 'cloudlet-advertise'],
                                              ['stop_process', 'cloudlet-reaper']]
    devstack.env['ENABLED_SERVICES'] = 'n-cpu'       # a compute host: neither runs there
    run_ok(devstack, 'unstack')
    assert devstack.calls('stop_process') == []


def test_clean_removes_the_state_dirs(devstack):
    state = devstack.root / 'state'
    api_state = devstack.root / 'api-state'
    for directory in (state, api_state):
        (directory / 'bases').mkdir(parents=True)
    run_ok(devstack, 'clean', before_settings='CLOUDLET_STATE_DIR=%s\nCLOUDLET_API_STATE_DIR=%s'
           % (state, api_state))
    assert devstack.calls('sudo') == [['sudo', 'rm', '-rf', str(state)], ['sudo', 'rm', '-rf', str(api_state)]]
    assert not state.exists() and not api_state.exists()


@pytest.mark.parametrize('phase', [('stack', 'install'), ('stack', 'post-config'), ('stack', 'extra'),
                                   ('clean',)])
def test_nothing_runs_with_the_service_disabled(devstack, phase):
    # local.conf: enable_plugin ... then disable_service cloudlet (after the settings enabled it).
    run_ok(devstack, *phase, before_settings='CLOUDLET_BASE_PACKAGE=/srv/base.zip',
           after_settings='ENABLED_SERVICES=${ENABLED_SERVICES//,cloudlet/}')
    assert [call[0] for call in devstack.calls()] == ['define_plugin', 'enable_service', 'enable_service',
                                                      'enable_service']


def test_the_plugin_restores_the_callers_xtrace(devstack):
    for setting, expected in (('set +o xtrace', 'off'), ('set -o xtrace', 'on')):
        output = run_ok(devstack, 'stack', 'test-config', after_settings=setting,
                        after_plugin='if [[ -o xtrace ]]; then echo XTRACE=on; else echo XTRACE=off; fi')
        assert 'XTRACE=%s' % expected in output


# --------------------------------------------------------------------------- static checks

def test_bash_syntax():
    for path in (SETTINGS, PLUGIN, FAKES):
        subprocess.run(['bash', '-n', path], check=True)


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='shellcheck is not installed')
def test_shellcheck():
    # settings and plugin.sh are sourced by devstack: their variables come from there (SC2154).
    subprocess.run(['shellcheck', '-s', 'bash', '-e', 'SC2154,SC1090,SC1091', SETTINGS, PLUGIN], check=True)
