"""``/api/materials/``: upload, list, inspect and reprocess documents. Thin:
the services in ``ingestion.uploads`` decide, this translates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, routers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from apikit.errors import Refusal
from apikit.filters import StrictFilterSet
from apikit.parsers import JSONParser, MultiPartParser
from apikit.serializers import RejectUnknownFields
from apikit.throttling import FailOpen
from apikit.views import Conventions
from ingestion import sets, uploads
from ingestion.models import Material, MaterialChunk
from jobs import Batch, BatchSerializer, JobSerializer, OwnedRows, estimate_page, visible

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class MaterialListSerializer(serializers.ListSerializer):
    """The jobs' ETAs for a whole page at once."""

    def to_representation(self, data):
        materials = list(data.all() if hasattr(data, "all") else data)
        # The stubs type the context as a read-only Mapping; it is the serializers' shared dict.
        estimate_page(self.context, [m.job for m in materials if m.job is not None])  # type: ignore[arg-type]
        self.context["in_list"] = True  # type: ignore[index]  # big job fields are summarised: a page stays small
        return super().to_representation(materials)


class StatisticsSerializer(serializers.Serializer):
    pages = serializers.IntegerField(allow_null=True, help_text="PDFs only")
    lines = serializers.IntegerField(allow_null=True)
    words = serializers.IntegerField(allow_null=True)
    characters = serializers.IntegerField(allow_null=True)
    chunks = serializers.IntegerField(allow_null=True)


class MaterialSerializer(serializers.ModelSerializer):
    owner: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    job = JobSerializer(read_only=True, allow_null=True, help_text="the job that processes it, with its ETA")
    statistics = serializers.SerializerMethodField()

    class Meta:
        model = Material
        fields = ["id", "name", "owner", "content_type", "size", "sha256", "status", "error", "statistics", "job",
                  "upload_set", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "upload_set": {"help_text": "the set it was uploaded with, if any (sent again later: still that one)"}
        }
        list_serializer_class = MaterialListSerializer

    @extend_schema_field(StatisticsSerializer)
    def get_statistics(self, material: Material) -> dict[str, int | None]:
        return {
            "pages": material.pages,
            "lines": material.lines,
            "words": material.words,
            "characters": material.characters,
            "chunks": material.chunk_count,
        }


class MaterialUploadSerializer(RejectUnknownFields, serializers.Serializer):
    # Empty files are taken and fail in processing with a message, like any unreadable one.
    file = serializers.FileField(allow_empty_file=True, help_text="text, Markdown, HTML, CSV, JSON or PDF")
    name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text="defaults to the file's name (also when empty)"
    )


class MaterialSetSerializer(serializers.Serializer):
    """Several ``file`` parts in one upload: one set, processed as one batch."""

    material_set = serializers.UUIDField()
    batch = BatchSerializer(help_text="the batch of the files' jobs (follow it on /ws/batches/<id>/)")
    materials = MaterialSerializer(many=True)


class MaterialChunkSerializer(serializers.ModelSerializer):
    class Meta:
        model = MaterialChunk
        fields = ["index", "text", "start", "end", "page"]
        read_only_fields = fields


class MaterialFilter(StrictFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Material.Status.choices, distinct=False)

    class Meta:
        model = Material
        fields = ["status"]


class UploadThrottle(FailOpen, UserRateThrottle):
    """Uploads per client (user, or address when anonymous), in the Redis cache."""

    scope = "uploads"

    def get_rate(self) -> str:
        return settings.UPLOAD_RATE


REFUSALS = {
    code: OpenApiResponse(description=text)
    for code, text in [
        (400, "several files: more than 20, or a field other than file"),
        (413, "larger than MAX_UPLOAD_BYTES"),
        (415, "not a supported type"),
        (429, "too many uploads: see Retry-After"),
        (503, "too many jobs waiting: see Retry-After"),
    ]
}


def _refusal(refused: uploads.UploadRefused) -> Refusal:
    return Refusal(refused.status, refused.code, refused.message, refused.hint, refused.retry_after)


@extend_schema_view(
    list=extend_schema(description="Your uploaded materials (an operator's: everyone's), newest first."),
    retrieve=extend_schema(description="One material: its processing job's status and ETA, and its statistics."),
)
class MaterialViewSet(Conventions, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = MaterialSerializer
    filterset_class = MaterialFilter
    permission_classes = [OwnedRows]
    parser_classes = [MultiPartParser, JSONParser]  # uploads; JSON for the actions
    access_model = Material

    def get_queryset(self) -> QuerySet[Material]:
        if getattr(self, "swagger_fake_view", False):
            return Material.objects.none()
        materials = Material.objects.select_related("owner", "job__owner").prefetch_related("job__depends_on")
        return visible(materials, self.request.user)

    def get_throttles(self):
        uploads_too = [UploadThrottle()] if self.action in ("create", "reprocess") else []
        return uploads_too + super().get_throttles()

    def initial(self, request: Request, *args, **kwargs) -> None:
        if self.action == "create":
            # Before anything reads the body (CSRF checks may): refuse an oversized one
            # from its declared length, and stop one that lied about it mid-stream.
            try:
                uploads.refuse_oversized_request(request.META.get("CONTENT_LENGTH"))
            except uploads.UploadRefused as refused:
                raise _refusal(refused) from None
            request._request.upload_handlers.insert(0, uploads.SizeLimitHandler(request._request))
        try:
            super().initial(request, *args, **kwargs)  # session auth's CSRF check reads the body
        except uploads.UploadRefused as refused:
            raise _refusal(refused) from None

    @extend_schema(
        request={"multipart/form-data": MaterialUploadSerializer},
        responses={
            201: PolymorphicProxySerializer(
                component_name="MaterialUploaded",
                serializers=[MaterialSerializer, MaterialSetSerializer],
                resource_type_field_name=None,
            ),
            200: OpenApiResponse(MaterialSerializer, "the same bytes: existing"),
            **REFUSALS,
        },  # fmt: skip
    )
    def create(self, request: Request) -> Response:
        """One file, or several ``file`` parts: then one set, processed as one batch."""
        try:
            if len(request.FILES.getlist("file")) > 1:  # reads the body: the size limit may refuse it
                return self._create_set(request)
            incoming = MaterialUploadSerializer(data=request.data)
            incoming.is_valid(raise_exception=True)
            result = uploads.upload(request.user, incoming.validated_data["file"], incoming.validated_data.get("name"))
        except uploads.UploadRefused as refused:
            raise _refusal(refused) from None
        material = self.get_queryset().get(pk=result.material.pk)
        return Response(
            MaterialSerializer(material, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    def _create_set(self, request: Request) -> Response:
        unknown = set(request.data) - {"file"}
        if unknown:
            raise Refusal(400, "invalid", f"Unknown field(s) with several files: {', '.join(sorted(unknown))}.",
                          "Send only file parts; each is named by its file name.")  # fmt: skip
        try:
            material_set, uploaded = sets.upload_many(request.user, request.FILES.getlist("file"))
        except uploads.UploadRefused as refused:
            raise _refusal(refused) from None
        materials = self.get_queryset().filter(pk__in=[u.material.pk for u in uploaded])
        by_id = {m.pk: m for m in materials}
        batch = Batch.objects.get(pk=str(material_set.batch_id))
        return Response(
            {
                "material_set": str(material_set.id),
                "batch": BatchSerializer(batch).data,
                "materials": MaterialSerializer(
                    [by_id[u.material.pk] for u in uploaded], many=True, context=self.get_serializer_context()
                ).data,
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(responses=MaterialChunkSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None)
    def chunks(self, request: Request, pk: str) -> Response:
        """The material's extracted text, in its chunks' order."""
        material = self.get_object()
        page = self.paginate_queryset(material.chunks.order_by("index"))
        return self.get_paginated_response(MaterialChunkSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: MaterialSerializer, 409: OpenApiResponse(description="busy"),
                                            503: REFUSALS[503]})  # fmt: skip
    @action(detail=True, methods=["post"], filterset_class=None)
    def reprocess(self, request: Request, pk: str) -> Response:
        """Process the stored file again (a new job); 409 while it is still being processed."""
        try:
            material = uploads.reprocess(self.get_object(), request.user)
        except uploads.UploadRefused as refused:
            raise _refusal(refused) from None
        return Response(MaterialSerializer(self.get_queryset().get(pk=material.pk)).data)


router = routers.SimpleRouter()
router.register("materials", MaterialViewSet, basename="material")
urlpatterns = router.urls
