from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.api import envelope, schema
from connectors.api.permissions import validated_body
from connectors.auth import SupabasePrincipal
from connectors.ids import strict_job_id
from extraction import selectors, services
from extraction.api.serializers import ExtractionJobSerializer, JobCreateSerializer

JobEnvelopeSerializer = schema.envelope(
    "JobEnvelope",
    data=ExtractionJobSerializer(),
    cached=serializers.BooleanField(required=False),
)


class ExtractionJobViewSet(viewsets.ViewSet):
    @extend_schema(
        operation_id="extraction_job",
        parameters=[schema.JOB_ID],
        responses=schema.responses(
            {
                200: JobEnvelopeSerializer,
                304: OpenApiResponse(description="Unchanged since the If-None-Match ETag."),
            }
        ),
    )
    def retrieve(self, request: Request, job_id: str) -> HttpResponse:
        principal = request.user
        assert isinstance(principal, SupabasePrincipal)
        owner = None if principal.is_service_role else principal.user_id
        result = selectors.extraction_job_for_user(job_id=strict_job_id(job_id), user_id=owner)
        return envelope.cached_read(request, result)

    @extend_schema(
        operation_id="extraction_job_create",
        request=JobCreateSerializer,
        responses=schema.responses(
            {
                201: JobEnvelopeSerializer,
                409: schema.error_response("The provider is not connected for this user."),
            }
        ),
    )
    def create(self, request: Request) -> Response:
        params, uid = validated_body(request, JobCreateSerializer)
        job = services.extraction_job_create(user_id=uid, provider=params["provider"])
        return envelope.success(
            ExtractionJobSerializer(job).data, status_code=status.HTTP_201_CREATED
        )
