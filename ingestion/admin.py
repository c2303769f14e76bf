"""Materials in the console: chunks inline (read-only), filters, search, reprocess.

The page is read-only (no Save buttons; materials change by reprocessing), the status is
a coloured badge, sizes are human (KB, MB), and the stored file is served by the console
itself to those who may see the material (``<id>/file/``, as a download)."""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from ingestion import uploads
from ingestion.models import Material, MaterialChunk
from jobs import InputChecked

SHOWN_CHUNKS = 50
ERROR_SHOWN = 60  # characters of the error in the list; all of it in the tooltip


class MaterialChunkInline(admin.TabularInline):
    model = MaterialChunk
    extra = 0
    can_delete = False
    fields = ["index", "page", "start", "end", "text"]
    readonly_fields = cast(list[str], fields)  # names only, no groups
    ordering = ["index"]
    show_change_link = False
    max_num = 0
    verbose_name_plural = f"chunks (the first {SHOWN_CHUNKS}; all of them: GET /api/materials/<id>/chunks/)"

    def get_queryset(self, request):
        # A 20 MB document has ~30k chunks: one page must not render them all.
        return super().get_queryset(request).filter(index__lt=SHOWN_CHUNKS)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.action(description="Reprocess selected materials", permissions=["change"])
def reprocess_materials(modeladmin, request, queryset):
    done = 0
    for material in queryset:
        try:
            uploads.reprocess(material, request.user)
            done += 1
        except uploads.UploadRefused as refused:
            modeladmin.message_user(request, f"{material.name}: {refused.message}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"Reprocessing {done} material(s).", messages.SUCCESS)


@admin.register(Material)
class MaterialAdmin(InputChecked, admin.ModelAdmin):
    list_display = ["name", "status_badge", "content_type", "size_shown", "owner", "chunk_count", "job_link",
                    "error_column", "created_at"]  # fmt: skip
    list_filter = ["status", "content_type"]
    search_fields = ["name", "=sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "job"]
    show_full_result_count = False
    actions = [reprocess_materials]
    inlines = [MaterialChunkInline]
    readonly_fields = [
        "id", "owner", "name", "content_type", "size_shown", "sha256", "file_shown", "status_badge", "job_link",
        "pages", "lines", "words", "characters", "chunk_count", "error", "created_at", "updated_at",
    ]  # fmt: skip
    fields = cast(list, readonly_fields)  # the page shows them all, in this order

    class Media:
        css = {"all": ["ingestion/materials.css"]}

    def has_add_permission(self, request) -> bool:
        return False  # materials come in through the upload API

    def get_urls(self):
        own = [
            path("<uuid:material_id>/file/", self.admin_site.admin_view(self.file_view), name="ingestion_material_file")
        ]
        return own + super().get_urls()

    def file_view(self, request, material_id):
        """The stored bytes, as a download, to whoever may see this material here."""
        material = get_object_or_404(Material, pk=material_id)
        if not self.has_view_permission(request, material):
            raise Http404
        try:
            handle = material.file.open("rb")
        except (FileNotFoundError, ValueError) as gone:  # removed by the cleanup, or never stored
            raise Http404("The file is no longer stored.") from gone
        return FileResponse(handle, as_attachment=True, filename=material.name)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Every field is read-only: no Save buttons, and no POST that would write a stale row.
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"], "Materials change by reprocessing, not through this form.")
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
                 "show_delete": False, **(extra_context or {})}  # fmt: skip
        return super().changeform_view(request, object_id, form_url, extra)

    # --- columns -----------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, material: Material) -> str:
        return format_html(
            '<span class="jd-material-status jd-material-{}">{}</span>', material.status, material.status
        )

    @admin.display(description="size", ordering="size")
    def size_shown(self, material: Material) -> str:
        return format_html('<span title="{} bytes">{}</span>', f"{material.size:,}", filesizeformat(material.size))

    @admin.display(description="job")
    def job_link(self, material: Material) -> str:
        if material.job_id is None:
            return "—"
        try:
            url = reverse("admin:jobs_job_change", args=[material.job_id])
        except NoReverseMatch:
            return str(material.job_id)[:8]
        return format_html('<a href="{}" title="{}">{}</a>', url, material.job_id, str(material.job_id)[:8])

    @admin.display(description="error")
    def error_column(self, material: Material) -> str:
        if not material.error:
            return "—"
        text = material.error
        shown = text if len(text) <= ERROR_SHOWN else text[: ERROR_SHOWN - 1].rstrip() + "…"
        return format_html('<span class="jd-material-error" title="{}">{}</span>', text, shown)

    @admin.display(description="file")
    def file_shown(self, material: Material) -> str:
        if not material.file:
            return "—"
        url = reverse("admin:ingestion_material_file", args=[material.pk])
        return format_html('<a href="{}" download>{}</a> ({})', url, material.name, filesizeformat(material.size))
