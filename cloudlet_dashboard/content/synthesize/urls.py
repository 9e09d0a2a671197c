from django.urls import re_path

from cloudlet_dashboard.content.synthesize import views

urlpatterns = [
    re_path(r'^$', views.SynthesizeView.as_view(), name='index'),
]
