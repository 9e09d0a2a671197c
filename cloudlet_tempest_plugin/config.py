"""The plugin's options: [service_available] cloudlet and the [cloudlet] group."""

from oslo_config import cfg

service_available_group = cfg.OptGroup(name='service_available', title='Available OpenStack Services')
ServiceAvailableGroup = [
    cfg.BoolOpt('cloudlet', default=True,
                help='Whether nova loads the cloudlet extension (GET /os-cloudlet answers).'),
]

cloudlet_group = cfg.OptGroup(name='cloudlet', title='openstack-cloudlet options')
CloudletGroup = [
    cfg.StrOpt('guest_image_ref',
               help='An image of the cloudlet test guest (its HTTP app answers on app_port; '
                    'guest/ in openstack-cloudlet builds it). The scenario tests boot it and '
                    'capture a base VM from it. Default: [compute] image_ref.'),
    cfg.StrOpt('flavor_ref',
               help='The flavor the guest boots with, and the base VM therefore has: every '
                    'resume and synthesis of that base uses it. Default: [compute] flavor_ref.'),
    cfg.PortOpt('app_port', default=8080, help="The test guest's app port (TCP)."),
    cfg.IntOpt('app_timeout', default=300,
               help='Seconds to wait for the app to answer at a server\'s floating IP.'),
    cfg.StrOpt('overlay_serve_address',
               help='An address of the machine running tempest that the compute hosts may fetch '
                    'overlays and base packages from (nova\'s [cloudlet] overlay_url_allowed_hosts '
                    'and outbound policy allow it). The tests serve files there over HTTP. Unset: '
                    'the tests that need a URL are skipped.'),
    cfg.StrOpt('overlay_serve_ports', default='18100-18139',
               help='The TCP port range (FIRST-LAST) to serve on at overlay_serve_address.'),
    cfg.StrOpt('handoff_auth_url',
               help='Keystone v3 URL of a second cloud with the extension, the destination of the '
                    'handoff scenario (as the source\'s compute hosts reach it). Unset: skipped.'),
    cfg.StrOpt('handoff_region_name', default='RegionOne', help="The destination's region."),
    cfg.StrOpt('handoff_username', help='A user of the destination cloud (a member of its project).'),
    cfg.StrOpt('handoff_password', secret=True, help="That user's password."),
    cfg.StrOpt('handoff_project_name', help="The user's project on the destination cloud."),
    cfg.StrOpt('handoff_domain_name', default='Default',
               help="The user's and the project's domain on the destination cloud."),
    cfg.StrOpt('handoff_endpoint_type', default='public',
               help="The destination's endpoint interface that tempest itself uses."),
]
