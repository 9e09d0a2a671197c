#!/bin/bash
#
# openstack-cloudlet devstack plugin: CloudletDriver on n-cpu, the cloudlet API
# in n-api. devstack sources it as `plugin.sh <mode> [phase]` from stack.sh
# (stack pre-install|install|post-config|extra|test-config), unstack.sh
# (unstack) and clean.sh (clean); settings are in devstack/settings.
#
# The configuration itself is `cloudlet-configure nova` (cloudlet_nova/
# configure.py), the same command the single-node box runs.

# Save trace setting
_XTRACE_CLOUDLET=$(set +o | grep xtrace)
set -o xtrace


# Installs openstack-cloudlet into devstack's Python environment.
function install_cloudlet {
    # Not editable (devstack's setup_develop is pip install -e): nova loads
    # compute_driver = cloudlet.CloudletDriver by importing nova.virt.cloudlet,
    # so our shim package has to sit inside nova's own nova/virt/ directory. An
    # editable install only puts our checkout on the import path, where its
    # nova/ (no __init__.py) never wins over nova's package: no driver.
    # --no-deps: requirements.txt pins nova==34.0.0 for the box, which would
    # replace devstack's nova from git; the few packages nova does not bring are
    # in CLOUDLET_PIP_PACKAGES (pip_install applies upper-constraints).
    pip_install --no-deps "$CLOUDLET_DIR"
    # shellcheck disable=SC2086 # a word-split list of packages
    pip_install $CLOUDLET_PIP_PACKAGES
    _cloudlet_put_shim_into_editable_nova
}

# devstack installs nova itself editable (setup_develop $NOVA_DIR), so pip's
# copy of our shim, <site-packages>/nova/virt/cloudlet/ (a nova/ without
# __init__.py), is of no use: nova's package is in the checkout. Worse, when
# `import nova` goes through setuptools' editable finder, Python asks it only
# after its normal path search, which takes that nova/ for a namespace package
# and returns it first: nova itself would no longer import. So with an editable
# nova the shim goes into nova's checkout (a symlink to ours) and pip's copy
# is removed.
function _cloudlet_put_shim_into_editable_nova {
    if [[ ! -f $NOVA_DIR/nova/__init__.py ]]; then
        return 0    # no nova checkout: pip's copy sits in nova's package
    fi
    local site_packages
    site_packages=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if [[ -z $site_packages ]]; then
        die $LINENO "cannot tell where pip installs for $PYTHON"
    fi
    if [[ -f $site_packages/nova/__init__.py ]]; then
        return 0    # nova installed from a wheel after all: pip's copy is right
    fi
    rm -rf "$site_packages/nova/virt/cloudlet"
    # Only the directories pip made for the shim, and only if now empty.
    rmdir "$site_packages/nova/virt" "$site_packages/nova" 2>/dev/null || true
    local shim_link=$NOVA_DIR/nova/virt/cloudlet
    if [[ -L $shim_link || -e $shim_link ]]; then
        rm -rf "$shim_link"
    fi
    ln -s "$CLOUDLET_DIR/nova/virt/cloudlet" "$shim_link"
}

# Plugs the cloudlet API into nova-api and CloudletDriver into nova-compute.
function configure_cloudlet {
    local configure
    configure=$(get_python_exec_prefix)/cloudlet-configure
    local allowed_hosts=()
    if [[ -n $CLOUDLET_OVERLAY_ALLOWED_HOSTS ]]; then
        allowed_hosts=(--set "cloudlet.overlay_url_allowed_hosts=$CLOUDLET_OVERLAY_ALLOWED_HOSTS")
    fi
    if [[ -n $CLOUDLET_OUTBOUND_ALLOWED_HOSTS ]]; then
        allowed_hosts+=(--set "cloudlet.outbound_allowed_hosts=$CLOUDLET_OUTBOUND_ALLOWED_HOSTS")
    fi
    if [[ -n $CLOUDLET_OUTBOUND_ALLOWED_NETWORKS ]]; then
        allowed_hosts+=(--set "cloudlet.outbound_allowed_networks=$CLOUDLET_OUTBOUND_ALLOWED_NETWORKS")
    fi

    # A handoff's destination credential waits in Barbican when there is one
    # ([cloudlet_handoff] credential_store), else in the RPC message.
    local credential_store=rpc_message
    if is_service_enabled barbican; then
        credential_store=key_manager
    fi

    if is_service_enabled n-api; then
        "$configure" nova --role api --config-file "$NOVA_CONF" --api-paste "$NOVA_API_PASTE_INI" \
            --set "cloudlet.api_state_dir=$CLOUDLET_API_STATE_DIR" \
            --set "cloudlet_handoff.credential_store=$credential_store" "${allowed_hosts[@]}" \
            || die $LINENO "cloudlet-configure failed for nova-api"
        # A handoff's residue arrives as a chunked request body
        # (PUT /servers/{id}/cloudlet-residue), as Glance's image uploads do.
        if [[ -n ${NOVA_UWSGI_CONF:-} && -f $NOVA_UWSGI_CONF ]]; then
            iniset "$NOVA_UWSGI_CONF" uwsgi http-chunked-input true
            iniset "$NOVA_UWSGI_CONF" uwsgi http-raw-body true
            iniset "$NOVA_UWSGI_CONF" uwsgi chunked-input-limit 4096000
        fi
    fi

    if is_service_enabled n-cpu; then
        if [[ $VIRT_DRIVER != libvirt ]]; then
            die $LINENO "openstack-cloudlet needs VIRT_DRIVER=libvirt (CloudletDriver), not $VIRT_DRIVER"
        fi
        # $NOVA_CONF, not $NOVA_CPU_CONF: start_nova_compute (lib/nova) makes
        # $NOVA_CPU_CONF after this phase by copying $NOVA_CONF over it, so
        # what we wrote there now would be lost. devstack's own compute
        # settings (compute_driver, virt_type) are in $NOVA_CONF for the same
        # reason. LIBVIRT_TYPE is what configure_nova settled on (qemu when
        # /dev/kvm is missing).
        # No memory balloon in nova's domains: bases captured from them can
        # then restore over their RAM file ([cloudlet] memory_restore,
        # doc/nova-driver.md "Memory restore"); QEMU would punch holes in that
        # shared file when a balloon discards guest RAM.
        local balloon=()
        if [[ $(trueorfalse False CLOUDLET_MEMORY_BALLOON) != True ]]; then
            balloon=(--set libvirt.mem_stats_period_seconds=0)
        fi
        "$configure" nova --role compute --config-file "$NOVA_CONF" \
            --virt-type "$LIBVIRT_TYPE" --state-dir "$CLOUDLET_STATE_DIR" "${balloon[@]}" "${allowed_hosts[@]}" \
            || die $LINENO "cloudlet-configure failed for nova-compute"
    fi
}

# With Barbican enabled (enable_plugin barbican ...), nova and glance keep keys
# and certificates there: encrypted overlays' keys, and the certificates that
# signed overlays and images are verified against, are read with the token of
# the user whose request it is (castellan). devstack's lib/nova sets nova's
# [key_manager] backend to a fixed-key manager, and barbican's plugin changes it
# only where n-cpu runs; this sets it where n-api runs too, and names Keystone
# for glance, whose request context castellan authenticates at auth_endpoint
# (castellan's default, http://localhost/identity/v3, is only right on a single
# host with devstack's default SERVICE_HOST). Without Barbican nothing is
# written: encrypted and signed overlays then fail, as nova has no key manager.
function configure_cloudlet_key_manager {
    if is_service_enabled n-api || is_service_enabled n-cpu; then
        # $NOVA_CONF: start_nova_compute copies it over $NOVA_CPU_CONF later.
        iniset "$NOVA_CONF" key_manager backend barbican
        iniset "$NOVA_CONF" barbican auth_endpoint "$KEYSTONE_SERVICE_URI/v3"
    fi
    if is_service_enabled g-api; then
        iniset "$GLANCE_API_CONF" key_manager backend barbican
        iniset "$GLANCE_API_CONF" barbican auth_endpoint "$KEYSTONE_SERVICE_URI/v3"
    fi
}

# cloudlet-advertise runs where nova-api runs (one advert per cloud), when enabled.
function _cloudlet_advertises {
    is_service_enabled cloudlet-advertise && is_service_enabled n-api
}

# So does cloudlet-reaper (one per cloud: it reaps every project's leased servers).
function _cloudlet_reaps {
    is_service_enabled cloudlet-reaper && is_service_enabled n-api
}

# Writes nova's service user into section $2 of file $1: how our services
# reach the OpenStack APIs (keystoneauth options).
function _cloudlet_service_user {
    local conf=$1 section=$2
    iniset "$conf" "$section" auth_type password
    iniset "$conf" "$section" auth_url "$KEYSTONE_SERVICE_URI"
    iniset "$conf" "$section" username nova
    iniset "$conf" "$section" password "$SERVICE_PASSWORD"
    iniset "$conf" "$section" user_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$conf" "$section" project_name "$SERVICE_PROJECT_NAME"
    iniset "$conf" "$section" project_domain_name "$SERVICE_DOMAIN_NAME"
}

# Writes cloudlet-advertise's file: what it advertises, and nova's service user
# to read Placement (every resource provider), Glance and nova-api as.
function configure_cloudlet_advertise {
    local conf=$CLOUDLET_ADVERTISE_CONF section=cloudlet_discovery
    if [[ -n $CLOUDLET_ADVERTISE_NAME ]]; then
        iniset "$conf" $section instance_name "$CLOUDLET_ADVERTISE_NAME"
    fi
    iniset "$conf" $section keystone_url "$KEYSTONE_SERVICE_URI/v3"
    iniset "$conf" $section region "$REGION_NAME"
    iniset "$conf" $section addresses "$CLOUDLET_ADVERTISE_ADDRESSES"
    iniset "$conf" $section refresh_interval "$CLOUDLET_ADVERTISE_INTERVAL"
    _cloudlet_service_user "$conf" $section
}

# Writes cloudlet-reaper's file: nova's service user, which may list and delete
# every project's servers ([cloudlet_lease]; the lease bounds nova-api reads keep
# their defaults in nova.conf).
function configure_cloudlet_reaper {
    _cloudlet_service_user "$CLOUDLET_REAPER_CONF" cloudlet_lease
    iniset "$CLOUDLET_REAPER_CONF" cloudlet_lease region_name "$REGION_NAME"
}

# Starts cloudlet-advertise as a process of its own (Keystone, Placement, Glance
# and nova-api run by now); it withdraws the advert when stopped.
function start_cloudlet_advertise {
    run_process cloudlet-advertise \
        "$(get_python_exec_prefix)/cloudlet-advertise --config-file $CLOUDLET_ADVERTISE_CONF"
}

# Starts cloudlet-reaper as a process of its own (nova-api runs by now).
function start_cloudlet_reaper {
    run_process cloudlet-reaper \
        "$(get_python_exec_prefix)/cloudlet-reaper --config-file $CLOUDLET_REAPER_CONF"
}

# Imports CLOUDLET_BASE_PACKAGE through the cloudlet API (nova-api runs by now).
function import_cloudlet_base {
    if [[ -z $CLOUDLET_BASE_PACKAGE ]] || ! is_service_enabled n-api; then
        return 0
    fi
    echo_summary "Importing the cloudlet base VM package $CLOUDLET_BASE_PACKAGE"
    local extra_args=()
    read -r -a extra_args <<< "$CLOUDLET_BASE_IMPORT_ARGS"
    openstack --os-cloud "$CLOUDLET_BASE_IMPORT_CLOUD" cloudlet base import \
        "${extra_args[@]}" "$CLOUDLET_BASE_PACKAGE" \
        || die $LINENO "importing the base VM package $CLOUDLET_BASE_PACKAGE failed"
}

# The tempest plugin's options (doc/tempest-plugin.md) in devstack's tempest.conf;
# the plugin itself is installed into tempest's venv by devstack when
# TEMPEST_PLUGINS names this repository.
# The dashboard plugin into devstack's Horizon: its enabled files and the cloudlet API's policy
# (cloudlet-dashboard-install), then Horizon's static files again with ours. In post-config:
# devstack starts Horizon (apache) after it.
function configure_cloudlet_dashboard {
    "$(get_python_exec_prefix)/cloudlet-dashboard-install" --horizon-dir "$HORIZON_DIR/openstack_dashboard"
    "$PYTHON" "$HORIZON_DIR/manage.py" collectstatic --noinput --clear -v0
    "$PYTHON" "$HORIZON_DIR/manage.py" compress --force -v0
}

function configure_cloudlet_tempest {
    iniset "$TEMPEST_CONFIG" service_available cloudlet True
    local option
    for option in guest_image_ref flavor_ref overlay_serve_address; do
        local variable="CLOUDLET_TEMPEST_${option^^}"
        if [[ -n ${!variable} ]]; then
            iniset "$TEMPEST_CONFIG" cloudlet "$option" "${!variable}"
        fi
    done
}

# Removes the state the driver and nova-api kept (code and packages stay, as
# clean.sh leaves them).
function cleanup_cloudlet {
    local dir
    for dir in "$CLOUDLET_STATE_DIR" "$CLOUDLET_API_STATE_DIR"; do
        if [[ -n $dir && $dir != / ]]; then
            sudo rm -rf "$dir"
        fi
    done
}


if is_service_enabled cloudlet; then
    if [[ "$1" == "stack" && "$2" == "pre-install" ]]; then
        # Debian packages come from devstack/files/debs/openstack-cloudlet.
        :
    elif [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing openstack-cloudlet"
        install_cloudlet
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova for openstack-cloudlet"
        configure_cloudlet
        if is_service_enabled barbican; then
            configure_cloudlet_key_manager
        fi
        if _cloudlet_advertises; then
            configure_cloudlet_advertise
        fi
        if _cloudlet_reaps; then
            configure_cloudlet_reaper
        fi
        if is_service_enabled horizon; then
            echo_summary "Adding openstack-cloudlet's panels to Horizon"
            configure_cloudlet_dashboard
        fi
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        if _cloudlet_advertises; then
            start_cloudlet_advertise
        fi
        if _cloudlet_reaps; then
            start_cloudlet_reaper
        fi
        import_cloudlet_base
    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        if is_service_enabled tempest; then
            echo_summary "Configuring tempest for openstack-cloudlet's plugin"
            configure_cloudlet_tempest
        fi
    fi

    if [[ "$1" == "unstack" ]]; then
        # The driver lives in n-cpu, the API in n-api, which devstack stops;
        # cloudlet-advertise (it withdraws the advert) and cloudlet-reaper are ours to stop.
        if _cloudlet_advertises; then
            stop_process cloudlet-advertise
        fi
        if _cloudlet_reaps; then
            stop_process cloudlet-reaper
        fi
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_cloudlet
    fi
fi

# Restore xtrace
$_XTRACE_CLOUDLET
