from django.urls import re_path
from django.urls import reverse_lazy
from django.views import generic

from cloudlet_dashboard.content.servers import views

SERVER = r'^(?P<instance_id>[^/]+)/'

urlpatterns = [
    # Horizon links every panel's index (breadcrumbs): this one's is the Instances page.
    re_path(r'^$', generic.RedirectView.as_view(url=reverse_lazy('horizon:project:instances:index')),
            name='index'),
    re_path(SERVER + r'create-overlay/$', views.CreateOverlayView.as_view(), name='create_overlay'),
    re_path(SERVER + r'create-base/$', views.CreateBaseView.as_view(), name='create_base'),
    re_path(SERVER + r'handoff/$', views.HandoffView.as_view(), name='handoff'),
]
