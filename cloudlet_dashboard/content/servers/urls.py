from django.urls import re_path

from cloudlet_dashboard.content.servers import views

SERVER = r'^(?P<instance_id>[^/]+)/'

urlpatterns = [
    re_path(SERVER + r'create-overlay/$', views.CreateOverlayView.as_view(), name='create_overlay'),
    re_path(SERVER + r'create-base/$', views.CreateBaseView.as_view(), name='create_base'),
    re_path(SERVER + r'handoff/$', views.HandoffView.as_view(), name='handoff'),
]
