"""Table pieces the panels share: rows that are dicts, deleting an image the project owns."""

from django.template import defaultfilters
from horizon import tables


def size(datum):
    return defaultfilters.filesizeformat(datum.get('size') or 0)


class DictRows:
    """Rows are dicts (the Glance model's images, nova's records), not API objects."""

    def get_object_id(self, datum):
        return datum['id']

    def get_object_display(self, datum):
        return datum.get('name') or datum['id']


class DeleteOwnedImage(tables.DeleteAction):
    """Delete images of the user's project (Glance's delete_image rule; not a shared or public one)."""
    policy_rules = (('image', 'delete_image'),)

    def get_policy_target(self, request, datum=None):
        return {'project_id': datum.get('owner')} if datum else {}

    def allowed(self, request, datum=None):
        return datum is None or datum.get('owner') == request.user.project_id
