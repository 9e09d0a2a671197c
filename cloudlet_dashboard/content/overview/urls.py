from django.urls import re_path

from cloudlet_dashboard.content.overview import views

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
]
