"""Sessions beyond tempest's own clients: the Glance model's image service for a
tempest user (base packages are exported and deleted the way the `openstack
cloudlet` CLI does), and the handoff's destination cloud ([cloudlet] handoff_*).
"""

from keystoneauth1.identity import v3
from keystoneauth1 import session as ks_session
import openstack
from tempest import config

from cloudlet_glance import images as glance_images

CONF = config.CONF


def _verify():
    if CONF.identity.disable_ssl_certificate_validation:
        return False
    return CONF.identity.ca_certificates_file or True


def _interface(endpoint_type):
    """tempest's endpoint types ('publicURL', 'internal', ...) as keystoneauth's."""
    return endpoint_type[:-3] if endpoint_type.endswith('URL') else endpoint_type


def images_of(credentials):
    """The Glance model's image service (GlanceClientImages) as a tempest user."""
    auth = v3.Password(auth_url=CONF.identity.uri_v3, username=credentials.username,
                       password=credentials.password, user_domain_name=credentials.user_domain_name,
                       project_name=credentials.project_name,
                       project_domain_name=credentials.project_domain_name)
    return glance_images.GlanceClientImages(ks_session.Session(auth=auth, verify=_verify()),
                                            region_name=CONF.identity.region,
                                            interface=_interface(CONF.image.endpoint_type))


def destination():
    """An openstacksdk connection to the handoff's destination cloud, as its configured user."""
    group = CONF.cloudlet
    return openstack.connect(
        load_yaml_config=False, load_envvars=False, auth_type='password',
        auth={'auth_url': group.handoff_auth_url, 'username': group.handoff_username,
              'password': group.handoff_password, 'project_name': group.handoff_project_name,
              'user_domain_name': group.handoff_domain_name,
              'project_domain_name': group.handoff_domain_name},
        region_name=group.handoff_region_name, interface=group.handoff_endpoint_type,
        identity_api_version='3', verify=_verify())


def destination_images(conn):
    """The Glance model's image service of the destination cloud."""
    return glance_images.GlanceClientImages(conn.session, region_name=CONF.cloudlet.handoff_region_name,
                                            interface=CONF.cloudlet.handoff_endpoint_type)
