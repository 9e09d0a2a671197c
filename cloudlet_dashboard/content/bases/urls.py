from django.urls import re_path

from cloudlet_dashboard.content.bases import views

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
    re_path(r'^import/$', views.ImportView.as_view(), name='import'),
    re_path(r'^(?P<image_id>[^/]+)/export/$', views.ExportView.as_view(), name='export'),
]
