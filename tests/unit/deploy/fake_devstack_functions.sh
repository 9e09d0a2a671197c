# FAKE devstack functions for tests/unit/deploy/test_devstack_plugin.py.
#
# Stand-ins for the devstack functions devstack/settings and devstack/plugin.sh
# call (real ones: openstack/devstack functions-common, inc/python). Each fake
# records its call as one shell-quoted line in $FAKE_DEVSTACK_LOG and does the
# least the plugin's next steps rely on. Nothing here is devstack's code.

function fake_record {
    local line
    line=$(printf '%q ' "$@")
    echo "${line% }" >> "$FAKE_DEVSTACK_LOG"
}

# functions-common
function define_plugin { fake_record define_plugin "$@"; }
function plugin_requires { fake_record plugin_requires "$@"; }
function echo_summary { fake_record echo_summary "$@"; }
function die {
    fake_record die "$@"
    exit 1
}
function enable_service {
    fake_record enable_service "$@"
    local service
    for service in "$@"; do
        ENABLED_SERVICES+=",$service"
    done
}
# The real one also knows catch-all names (nova, glance...); the plugin asks
# only about exact service names.
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ,${ENABLED_SERVICES}, =~ ,${service}, ]] && return 0
    done
    return 1
}

# functions-common: services run as processes of their own (systemd units in devstack).
function run_process { fake_record run_process "$@"; }
function stop_process { fake_record stop_process "$@"; }

# functions-common: True or False from a variable's value (the real one knows more spellings).
function trueorfalse {
    local default=$1 name=$2
    case ${!name:-$default} in
        True|true|1|yes) echo True ;;
        *) echo False ;;
    esac
}

# inc/ini-config
function iniset { fake_record iniset "$@"; }

# inc/python
function get_python_exec_prefix { echo "$FAKE_BIN_DIR"; }
# Like pip, installing a directory that holds nova/virt/cloudlet copies that
# shim into site-packages ($FAKE_SITE_PACKAGES).
function pip_install {
    fake_record pip_install "$@"
    local last=${!#}
    if [[ -d $last/nova/virt/cloudlet ]]; then
        mkdir -p "$FAKE_SITE_PACKAGES/nova/virt"
        cp -r "$last/nova/virt/cloudlet" "$FAKE_SITE_PACKAGES/nova/virt/"
    fi
}

# Runs the command, as root would.
function sudo {
    fake_record sudo "$@"
    "$@"
}
