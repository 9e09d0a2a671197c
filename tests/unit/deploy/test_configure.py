"""cloudlet_nova.configure (`cloudlet-configure nova`): the steps, the ini editor, the exit codes."""

import os
import stat
import sys
import types

from oslo_config import cfg
from oslo_policy import policy as oslo_policy
import pytest
import yaml

from api_extensions import policies
from cloudlet_cmd import configure
from cloudlet_cmd import inifile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REPO_PASTE = os.path.join(REPO, 'etc', 'nova', 'api-paste.ini')
REPO_POLICY_SAMPLE = os.path.join(REPO, 'etc', 'nova', 'policy.yaml.sample')
# nova's wheel installs its api-paste.ini under <venv>/etc/nova.
STOCK_PASTE = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')

# A nova.conf as operators have them: comments, a commented-out sample of an
# option, a multi-line value, a quoted value, a ':' delimiter, unrelated sections.
NOVA_CONF = """\
# nova.conf of compute-1 (managed by hand)
[DEFAULT]
# keep debug on for now
debug = True
compute_driver=libvirt.LibvirtDriver
my_ip: 192.0.2.10
transport_url = "rabbit://nova:secret@192.0.2.1:5672/"

[libvirt]
virt_type = kvm
cpu_mode = host-model

[cloudlet]
# Base VM cache and per-instance cloudlet state.
#state_dir = $instances_path/_cloudlet
#fetch_timeout = 30

[filter_scheduler]
enabled_filters = ComputeFilter,
  ImagePropertiesFilter
"""


@pytest.fixture
def etc(tmp_path):
    """An /etc/nova: nova.conf above and nova's stock api-paste.ini."""
    if not os.path.exists(STOCK_PASTE):
        pytest.skip('nova\'s stock api-paste.ini is not at %s' % STOCK_PASTE)
    (tmp_path / 'nova.conf').write_text(NOVA_CONF)
    (tmp_path / 'api-paste.ini').write_bytes(open(STOCK_PASTE, 'rb').read())
    return tmp_path


def run(capsys, *argv):
    code = configure.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def snapshot(directory):
    """Every file under `directory`: relative path -> bytes."""
    files = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, directory)] = open(path, 'rb').read()
    return files


def compute_args(etc):
    return ['nova', '--config-file', etc / 'nova.conf', '--role', 'compute',
            '--virt-type', 'qemu', '--state-dir', etc / 'state']


def api_args(etc):
    return ['nova', '--config-file', etc / 'nova.conf', '--role', 'api', '--api-paste', etc / 'api-paste.ini']


# --------------------------------------------------------------------------- roles

def test_compute_role_sets_the_driver_options_and_creates_the_state_dir(etc, capsys):
    code, out, err = run(capsys, *compute_args(etc),
                         '--set', 'cloudlet.overlay_url_allowed_hosts=127.0.0.1,localhost')
    conf = etc / 'nova.conf'
    assert (code, err) == (0, '')
    assert out == [
        'set [DEFAULT] compute_driver = cloudlet.CloudletDriver in %s' % conf,
        'set [compute] consecutive_build_service_disable_threshold = 0 in %s' % conf,
        'set [libvirt] virt_type = qemu in %s' % conf,
        'set [cloudlet] state_dir = %s in %s' % (etc / 'state', conf),
        'created directory %s ([cloudlet] state_dir)' % (etc / 'state'),
        'set [cloudlet] overlay_url_allowed_hosts = 127.0.0.1,localhost in %s' % conf,
    ]
    assert (etc / 'state').is_dir()
    # Only those lines changed; every comment and unrelated line is as it was.
    assert conf.read_text() == NOVA_CONF.replace(
        'compute_driver=libvirt.LibvirtDriver', 'compute_driver=cloudlet.CloudletDriver').replace(
        'virt_type = kvm', 'virt_type = qemu').replace(
        # after its commented-out sample; a new option after the section's last option
        '#state_dir = $instances_path/_cloudlet\n',
        '#state_dir = $instances_path/_cloudlet\nstate_dir = %s\n'
        'overlay_url_allowed_hosts = 127.0.0.1,localhost\n' % (etc / 'state')) + (
        # a section nova.conf did not have: appended
        '\n[compute]\nconsecutive_build_service_disable_threshold = 0\n')
    # The compute role touches neither api-paste.ini nor policy.
    assert open(etc / 'api-paste.ini', 'rb').read() == open(STOCK_PASTE, 'rb').read()
    assert not (etc / 'policy.d').exists()


def test_api_role_turns_the_stock_paste_file_into_ours_byte_for_byte(etc, capsys):
    code, out, err = run(capsys, *api_args(etc))
    assert (code, err) == (0, '')
    assert out == [
        'set [app:osapi_compute_app_v21] paste.app_factory = api_extensions.router:APIRouter.factory in '
        '%s (was nova.api.openstack.compute:APIRouterV21.factory)' % (etc / 'api-paste.ini'),
        'wrote %s (cloudlet:* policy rules, all commented out: override them there)'
        % (etc / 'policy.d' / 'cloudlet.yaml'),
        'added cloudlet_nova.scheduler.weigher.BaseWeigher to [filter_scheduler] weight_classes in %s'
        % (etc / 'nova.conf'),
    ]
    assert open(etc / 'api-paste.ini', 'rb').read() == open(REPO_PASTE, 'rb').read()
    # nova's default weighers (the option was unset) and ours.
    assert (etc / 'nova.conf').read_text() == NOVA_CONF + (
        'weight_classes = nova.scheduler.weights.all_weighers,cloudlet_nova.scheduler.weigher.BaseWeigher\n')


def test_the_weigher_joins_the_weighers_an_operator_chose(etc, capsys):
    conf = etc / 'nova.conf'
    conf.write_text(NOVA_CONF + 'weight_classes = nova.scheduler.weights.ram.RAMWeigher\n')
    assert run(capsys, *api_args(etc))[0] == 0
    loaded = cfg.ConfigOpts()
    loaded.register_opt(cfg.ListOpt('weight_classes'), group='filter_scheduler')
    loaded(['--config-file', str(conf)])
    assert loaded.filter_scheduler.weight_classes == [
        'nova.scheduler.weights.ram.RAMWeigher', 'cloudlet_nova.scheduler.weigher.BaseWeigher']
    assert run(capsys, *api_args(etc)) == (0, [], '')


def test_an_operator_s_build_failure_threshold_stays(etc, capsys):
    conf = etc / 'nova.conf'
    conf.write_text(NOVA_CONF + '\n[compute]\nconsecutive_build_service_disable_threshold = 3\n')
    code, out, _ = run(capsys, *compute_args(etc))
    assert code == 0 and not [line for line in out if 'consecutive_build' in line]
    assert 'consecutive_build_service_disable_threshold = 3\n' in conf.read_text()
    code, out, _ = run(capsys, *compute_args(etc), '--check')
    assert code == 0
    assert 'ok       [compute] consecutive_build_service_disable_threshold = 3 (the operator\'s) in %s' % conf in out


def test_the_api_paste_defaults_to_the_one_nova_api_loads(etc, capsys):
    (etc / 'nova.conf').write_text(NOVA_CONF + '\n[wsgi]\napi_paste_config = api-paste.ini\n')
    code, out, _ = run(capsys, 'nova', '--config-file', etc / 'nova.conf', '--role', 'api')
    assert code == 0
    assert open(etc / 'api-paste.ini', 'rb').read() == open(REPO_PASTE, 'rb').read()


def test_a_paste_file_nova_api_does_not_load_is_refused(etc, capsys):
    (etc / 'nova.conf').write_text(NOVA_CONF + '\n[wsgi]\napi_paste_config = /etc/elsewhere/api-paste.ini\n')
    before = snapshot(etc)
    code, out, err = run(capsys, *api_args(etc))
    assert code == 2 and out == []
    assert 'nova-api loads /etc/elsewhere/api-paste.ini' in err
    assert snapshot(etc) == before


def test_all_role_does_both(etc, capsys):
    code, out, _ = run(capsys, 'nova', '--config-file', etc / 'nova.conf', '--api-paste', etc / 'api-paste.ini',
                       '--virt-type', 'kvm')
    assert code == 0
    assert len(out) == 5    # compute_driver, build failures, paste, policy, weigher (virt_type is already kvm)
    assert (etc / 'policy.d' / 'cloudlet.yaml').exists()
    assert 'compute_driver=cloudlet.CloudletDriver' in (etc / 'nova.conf').read_text()


# --------------------------------------------------------------------------- idempotence

def test_a_second_run_changes_no_byte_and_prints_nothing(etc, capsys):
    argv = ['nova', '--config-file', etc / 'nova.conf', '--api-paste', etc / 'api-paste.ini',
            '--virt-type', 'qemu', '--state-dir', etc / 'state',
            '--set', 'cloudlet.overlay_url_allowed_hosts=a.example,b.example', 'cloudlet.fetch_timeout=60',
            '--set', 'DEFAULT.debug=False']
    assert run(capsys, *argv)[0] == 0
    first = snapshot(etc)
    mtimes = {name: os.stat(etc / name).st_mtime_ns for name in first}
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (0, [], '')
    assert snapshot(etc) == first
    assert {name: os.stat(etc / name).st_mtime_ns for name in first} == mtimes   # not even rewritten


def test_files_keep_their_mode_and_symlinks_stay(etc, capsys):
    real = etc / 'real-nova.conf'
    os.rename(etc / 'nova.conf', real)
    os.symlink(real, etc / 'nova.conf')
    os.chmod(real, 0o640)
    assert run(capsys, *compute_args(etc))[0] == 0
    assert os.path.islink(etc / 'nova.conf')
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    assert 'cloudlet.CloudletDriver' in real.read_text()
    assert not [n for n in os.listdir(etc) if n.endswith('.tmp')]


# --------------------------------------------------------------------------- api-paste.ini

def test_an_unknown_router_is_not_replaced_without_force(etc, capsys):
    paste = etc / 'api-paste.ini'
    third_party = paste.read_text().replace('nova.api.openstack.compute:APIRouterV21.factory',
                                            'vendor.api:Router.factory')
    paste.write_text(third_party)
    before = snapshot(etc)
    code, out, err = run(capsys, *api_args(etc))
    assert code == 2 and out == []
    assert 'vendor.api:Router.factory' in err and '--force' in err and 'nothing was changed' in err
    assert snapshot(etc) == before

    code, out, _ = run(capsys, *api_args(etc), '--force')
    assert code == 0
    assert out[0].endswith('(was vendor.api:Router.factory)')
    text = paste.read_text()
    assert 'paste.app_factory = api_extensions.router:APIRouter.factory' in text
    assert '# (was vendor.api:Router.factory).' in text
    assert '--force replaced' in text
    after_force = snapshot(etc)
    assert run(capsys, *api_args(etc), '--force')[:2] == (0, [])
    assert snapshot(etc) == after_force


def test_a_paste_file_without_nova_router_section_is_refused(etc, capsys):
    paste = etc / 'api-paste.ini'
    paste.write_text(paste.read_text().replace('[app:osapi_compute_app_v21]', '[app:something_else]'))
    code, _, err = run(capsys, *api_args(etc), '--force')
    assert code == 2
    assert 'has no [app:osapi_compute_app_v21] section' in err


def test_a_missing_paste_file_is_an_error(etc, capsys):
    code, _, err = run(capsys, 'nova', '--config-file', etc / 'nova.conf', '--role', 'api',
                       '--api-paste', etc / 'nope.ini')
    assert code == 2 and 'nope.ini does not exist' in err


def test_our_router_already_there_is_left_alone(etc, capsys):
    paste = etc / 'api-paste.ini'
    paste.write_text(paste.read_text().replace('nova.api.openstack.compute:APIRouterV21.factory',
                                               'api_extensions.router:APIRouter.factory'))
    before = paste.read_bytes()
    code, out, _ = run(capsys, *api_args(etc))
    assert code == 0 and len(out) == 2     # only the policy file and the weigher
    assert paste.read_bytes() == before


# --------------------------------------------------------------------------- policy

def test_the_policy_sample_is_the_generator_s_with_every_rule_commented(etc, capsys):
    assert run(capsys, *api_args(etc))[0] == 0
    text = (etc / 'policy.d' / 'cloudlet.yaml').read_text()
    assert text.startswith(configure.POLICY_HEADER)
    assert text[len(configure.POLICY_HEADER):] == open(REPO_POLICY_SAMPLE).read()
    assert yaml.safe_load(text) is None    # nothing but comments


def test_an_existing_policy_file_is_never_overwritten(etc, capsys):
    (etc / 'policy.d').mkdir()
    mine = '"cloudlet:discover": "role:admin"\n'
    (etc / 'policy.d' / 'cloudlet.yaml').write_text(mine)
    code, out, _ = run(capsys, *api_args(etc))
    assert code == 0 and not any('cloudlet.yaml' in line for line in out)
    assert (etc / 'policy.d' / 'cloudlet.yaml').read_text() == mine


def load_cloudlet_rules(nova_conf):
    """Our rules as an oslo.policy Enforcer on a nova-api started with --config-file nova_conf sees them."""
    conf = cfg.ConfigOpts()
    conf(['--config-file', str(nova_conf)], project='nova', default_config_files=[], default_config_dirs=[])
    enforcer = oslo_policy.Enforcer(conf)
    enforcer.register_defaults(policies.list_rules())
    enforcer.load_rules()
    return enforcer


def test_oslo_policy_reads_the_file_from_policy_d_next_to_nova_conf(etc, capsys):
    assert run(capsys, *api_args(etc))[0] == 0
    enforcer = load_cloudlet_rules(etc / 'nova.conf')
    assert str(enforcer.rules[policies.DISCOVER]) == '@'          # all commented: the defaults
    assert str(enforcer.rules[policies.BASE_IMPORT_PUBLIC]) == 'role:admin'
    # An operator uncomments a rule and edits it: that is what applies.
    sample = etc / 'policy.d' / 'cloudlet.yaml'
    sample.write_text(sample.read_text().replace('#"cloudlet:discover": "@"', '"cloudlet:discover": "role:reader"'))
    assert str(load_cloudlet_rules(etc / 'nova.conf').rules[policies.DISCOVER]) == 'role:reader'


# --------------------------------------------------------------------------- --check

def test_check_changes_nothing_and_exits_1_when_something_is_missing(etc, capsys):
    before = snapshot(etc)
    code, out, err = run(capsys, 'nova', '--config-file', etc / 'nova.conf', '--api-paste', etc / 'api-paste.ini',
                         '--state-dir', etc / 'state', '--check')
    assert code == 1 and err == ''
    assert snapshot(etc) == before and not (etc / 'state').exists()
    missing = [line for line in out if line.startswith('MISSING')]
    # compute_driver, build failures, state_dir option, the directory, router, policy file, weigher
    assert len(missing) == 7
    assert 'MISSING  [DEFAULT] compute_driver = cloudlet.CloudletDriver in %s (now: libvirt.LibvirtDriver)' \
        % (etc / 'nova.conf') in out
    assert any(line.startswith('ok       nova.virt.cloudlet.CloudletDriver importable') for line in out)


def test_check_exits_0_once_configured(etc, capsys):
    argv = ['nova', '--config-file', etc / 'nova.conf', '--api-paste', etc / 'api-paste.ini',
            '--virt-type', 'qemu', '--state-dir', etc / 'state']
    assert run(capsys, *argv)[0] == 0
    code, out, _ = run(capsys, *argv, '--check')
    assert code == 0
    assert out and all(line.startswith('ok ') for line in out)


def test_check_reports_a_router_it_would_refuse(etc, capsys):
    paste = etc / 'api-paste.ini'
    paste.write_text(paste.read_text().replace('nova.api.openstack.compute:APIRouterV21.factory',
                                               'vendor.api:Router.factory'))
    code, out, _ = run(capsys, *api_args(etc), '--check')
    assert code == 1
    assert any(line.startswith('MISSING  [app:osapi_compute_app_v21]') and '--force' in line for line in out)


# --------------------------------------------------------------------------- the driver shim

@pytest.fixture
def without_shim(monkeypatch):
    """`import nova.virt.cloudlet` fails as it does where the shim is not installed."""
    real_import = configure.import_module

    def fake_import(name):
        if name == configure.DRIVER_SHIM:
            raise ModuleNotFoundError("No module named 'nova.virt.cloudlet'", name=name)
        return real_import(name)

    monkeypatch.setattr(configure, 'import_module', fake_import)


def test_missing_shim_of_an_editable_install_names_the_fix(etc, capsys, monkeypatch, without_shim):
    monkeypatch.setattr(configure, '_editable', lambda dist: dist == 'openstack-cloudlet')
    before = snapshot(etc)
    code, out, err = run(capsys, *compute_args(etc))
    assert code == 2 and out == []
    assert 'nova/virt/cloudlet/ is missing from' in err
    assert 'openstack-cloudlet is installed editable' in err
    assert 'pip install --no-deps <openstack-cloudlet checkout> (without -e)' in err
    assert 'nothing was changed' in err
    assert snapshot(etc) == before      # compute_driver is not set to a driver nova cannot load


def test_missing_shim_with_an_editable_nova_says_where_to_link_it(etc, capsys, monkeypatch, without_shim):
    monkeypatch.setattr(configure, '_editable', lambda dist: dist == 'nova')
    code, _, err = run(capsys, *compute_args(etc))
    nova_virt_dir = os.path.dirname(configure.import_module('nova.virt.driver').__file__)
    assert code == 2
    assert 'nova is installed editable' in err
    assert 'ln -s <openstack-cloudlet checkout>/nova/virt/cloudlet %s/cloudlet' % nova_virt_dir in err


def test_missing_shim_otherwise_says_pip_install(etc, capsys, monkeypatch, without_shim):
    monkeypatch.setattr(configure, '_editable', lambda dist: False)
    code, out, _ = run(capsys, *compute_args(etc), '--check')
    assert code == 1
    [shim_line] = [line for line in out if 'nova.virt.cloudlet' in line]
    assert shim_line.startswith('MISSING')
    assert 'pip install the openstack-cloudlet package (not editable)' in shim_line


def test_a_shim_dir_shadowing_nova_is_reported(etc, capsys, monkeypatch):
    shadow = types.ModuleType('nova')
    shadow.__file__ = None
    shadow.__path__ = ['/venv/site-packages/nova']
    real_import = configure.import_module
    monkeypatch.setattr(configure, 'import_module', lambda name: shadow if name == 'nova' else real_import(name))
    code, _, err = run(capsys, *compute_args(etc))
    assert code == 2
    assert 'without __init__.py (/venv/site-packages/nova), which hide nova itself' in err


def test_the_real_shim_is_importable_here():
    # Run with the project installed non-editable (tools/setup.sh), as the box does.
    assert configure.driver_shim_problem() is None
    assert configure.router_problem() is None


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize('argv, message', [
    (['--role', 'api', '--virt-type', 'qemu'], 'compute options'),
    (['--role', 'compute', '--force'], 'api options'),
    (['--set', 'no_section=1'], 'is not SECTION.OPTION=VALUE'),
    (['--set', 'cloudlet.fetch_timeout'], 'is not SECTION.OPTION=VALUE'),
    (['--set', 'libvirt.virt_type=kvm'], 'use --virt-type'),
    (['--virt-type', 'lxc'], "invalid choice: 'lxc'"),
])
def test_usage_errors(etc, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        configure.main(['nova', '--config-file', str(etc / 'nova.conf')] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_nova_conf_is_an_error_not_a_new_file(tmp_path, capsys):
    code, _, err = run(capsys, 'nova', '--config-file', tmp_path / 'nova.conf', '--role', 'compute')
    assert code == 2 and 'nova.conf does not exist' in err
    assert not (tmp_path / 'nova.conf').exists()


# --------------------------------------------------------------------------- the ini editor

def edit(text, *settings):
    document = inifile.IniDocument('test.ini', text)
    changed = [document.set(*setting) for setting in settings]
    return document.text, changed


def test_ini_an_option_is_added_to_its_section_after_the_last_option():
    text = '[a]\nx = 1\n# about [b]\n\n[b]\ny = 2\n'
    assert edit(text, ('a', 'z', '3')) == ('[a]\nx = 1\nz = 3\n# about [b]\n\n[b]\ny = 2\n', [True])


def test_ini_a_missing_section_is_appended_after_a_blank_line():
    assert edit('[a]\nx = 1', ('b', 'y', '2'))[0] == '[a]\nx = 1\n\n[b]\ny = 2\n'
    assert edit('', ('DEFAULT', 'debug', 'True'))[0] == '[DEFAULT]\ndebug = True\n'


def test_ini_a_value_is_replaced_keeping_spacing_and_every_duplicate_follows():
    text = '[a]\nx=1\n[b]\nx = 1\n[a]\nx:  2\n'
    assert edit(text, ('a', 'x', '5')) == ('[a]\nx=5\n[b]\nx = 1\n[a]\nx:  5\n', [True])


def test_ini_an_equal_value_changes_nothing_quotes_included():
    text = '[a]\nx = "hello world"\n'
    assert edit(text, ('a', 'x', 'hello world')) == (text, [False])


def test_ini_continuation_lines_go_with_the_value_they_continued():
    text = '[a]\nlist = one,\n  two\n# after\ny = 1\n'
    assert edit(text, ('a', 'list', 'three'))[0] == '[a]\nlist = three\n# after\ny = 1\n'


def test_ini_commented_out_lines_are_not_options():
    text = '[a]\n#x = 1\n;y = 2\n'
    assert edit(text, ('a', 'x', '3'), ('a', 'y', '4'))[0] == '[a]\n#x = 1\nx = 3\n;y = 2\ny = 4\n'


def test_ini_crlf_and_a_missing_final_newline_are_kept_apart_from_new_lines():
    assert edit('[a]\r\nx = 1\r\n', ('a', 'x', '2'), ('a', 'y', '3'))[0] == '[a]\r\nx = 2\r\ny = 3\r\n'
    assert edit('[a]\nx = 1', ('a', 'x', '2'))[0] == '[a]\nx = 2\n'


def test_ini_an_empty_value():
    assert edit('[a]\nx = 1\n', ('a', 'x', ''), ('a', 'y', ''))[0] == '[a]\nx =\ny =\n'
    assert edit('[a]\nx =\n', ('a', 'x', 'v'))[0] == '[a]\nx = v\n'


def test_ini_get_reads_what_oslo_config_reads():
    document = inifile.IniDocument('t.ini', '[a]\nx = 1\n  more\n[a]\nx = 2\n')
    assert document.get('a', 'x') == '2'
    assert document.get('a', 'nope') is None and document.get('zzz', 'x') is None
