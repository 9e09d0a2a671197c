"""The dashboard's Django app: on start, the cloudlet actions join the stock Instances table."""

from django import apps


class CloudletDashboardConfig(apps.AppConfig):
    name = 'cloudlet_dashboard'
    label = 'cloudlet_dashboard'
    verbose_name = 'Cloudlet'

    def ready(self):
        from cloudlet_dashboard.content.servers import actions
        actions.add_to_instances_table()
