from __future__ import annotations

from django.urls import re_path

from extraction.api import views

job_view = views.ExtractionJobViewSet.as_view({"get": "retrieve", "delete": "destroy"})
jobs_view = views.ExtractionJobViewSet.as_view({"get": "list_jobs", "post": "create"})

urlpatterns = [
    re_path(r"^extraction/jobs/?$", jobs_view, name="extraction-jobs"),
    re_path(r"^extraction/jobs/(?P<job_id>[^/]+)/?$", job_view, name="extraction-job"),
]
