"""Materials in the console: chunks inline (read-only), filters, search, reprocess."""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages

from ingestion import uploads
from ingestion.models import Material, MaterialChunk

SHOWN_CHUNKS = 50


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
class MaterialAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "content_type", "size", "owner", "chunk_count", "job", "created_at"]
    list_filter = ["status", "content_type"]
    search_fields = ["name", "=sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "job"]
    show_full_result_count = False
    actions = [reprocess_materials]
    inlines = [MaterialChunkInline]
    readonly_fields = [
        "id", "owner", "name", "content_type", "size", "sha256", "file", "status", "job", "pages", "lines",
        "words", "characters", "chunk_count", "error", "created_at", "updated_at",
    ]  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False  # materials come in through the upload API
