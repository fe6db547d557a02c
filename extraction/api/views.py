from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.api import envelope, schema
from connectors.api.permissions import acting_user_id, validated_body
from connectors.auth import SupabasePrincipal
from connectors.ids import strict_job_id
from extraction import selectors, services
from extraction.api.serializers import (
    ExtractionJobSerializer,
    JobCreateSerializer,
    JobListQuerySerializer,
)

JobEnvelopeSerializer = schema.envelope(
    "JobEnvelope",
    data=ExtractionJobSerializer(),
    cached=serializers.BooleanField(required=False),
)
JobListEnvelopeSerializer = schema.envelope(
    "JobListEnvelope", data=ExtractionJobSerializer(many=True)
)
ActiveJobErrorSerializer = schema.error_envelope(
    "ConflictError",
    job_id=serializers.UUIDField(
        required=False, help_text="job_already_active: the queued or running job."
    ),
)


def _owner(request: Request) -> str | None:
    """The user whose jobs the caller may see; None for the service role (any user's)."""
    principal = request.user
    assert isinstance(principal, SupabasePrincipal)
    return None if principal.is_service_role else principal.user_id


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
        result = selectors.extraction_job_for_user(
            job_id=strict_job_id(job_id), user_id=_owner(request)
        )
        return envelope.cached_read(request, result)

    @extend_schema(
        operation_id="extraction_jobs",
        parameters=[JobListQuerySerializer],
        responses=schema.responses({200: JobListEnvelopeSerializer}),
    )
    def list_jobs(self, request: Request) -> Response:
        # Not named `list`: drf-spectacular would describe the envelope as an array of them.
        query = JobListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params: dict[str, Any] = query.validated_data
        user_id = _owner(request)
        if params.get("user_id") is not None:
            user_id = acting_user_id(request, str(params["user_id"]))
        jobs = selectors.extraction_jobs_list(
            user_id=user_id,
            provider=params.get("provider"),
            status=params.get("status"),
            limit=params["limit"],
        )
        return envelope.success(jobs)

    @extend_schema(
        operation_id="extraction_job_create",
        request=JobCreateSerializer,
        responses=schema.responses(
            {
                201: JobEnvelopeSerializer,
                409: OpenApiResponse(
                    ActiveJobErrorSerializer,
                    description="Not connected (not_connected), or a sync of this provider is "
                    "already queued or running (job_already_active, with its job_id).",
                ),
            }
        ),
    )
    def create(self, request: Request) -> Response:
        params, uid = validated_body(request, JobCreateSerializer)
        job = services.extraction_job_create(user_id=uid, provider=params["provider"])
        return envelope.success(
            ExtractionJobSerializer(job).data, status_code=status.HTTP_201_CREATED
        )

    @extend_schema(
        operation_id="extraction_job_cancel",
        parameters=[schema.JOB_ID],
        responses=schema.responses(
            {
                200: JobEnvelopeSerializer,
                409: schema.error_response("The job already finished (invalid_job_transition)."),
            }
        ),
    )
    def destroy(self, request: Request, job_id: str) -> Response:
        job = services.extraction_job_cancel(job_id=strict_job_id(job_id), user_id=_owner(request))
        return envelope.success(ExtractionJobSerializer(job).data)
