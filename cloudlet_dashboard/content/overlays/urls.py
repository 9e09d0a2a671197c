from django.urls import re_path

from cloudlet_dashboard.content.overlays import views

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
    re_path(r'^(?P<image_id>[^/]+)/download/$', views.DownloadView.as_view(), name='download'),
]
