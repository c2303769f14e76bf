"""Materials in the console (issue #21): a badge for the status, human sizes, the job as
a link, an error column, a read-only page without Save buttons, and a File link that
serves the file to those who may see the material."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from ingestion.models import Material

pytestmark = pytest.mark.django_db

LIST = "/admin/ingestion/material/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def material(owner, data: bytes = b"hello, materials\n" * 200, **fields) -> Material:
    made = Material(owner=owner, name="notes.txt", content_type="text/plain", size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), **fields)  # fmt: skip
    made.file.save("notes.txt", ContentFile(data), save=False)
    made.save()
    return made


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw-boss")


def test_the_list_has_badges_human_sizes_and_errors(superuser, alice):
    failed = material(alice, status=Material.Status.FAILED, error="This PDF is protected by a password; " + "y" * 80)
    ready = material(alice, data=b"z" * 3_500_000, status=Material.Status.READY)
    html = client_for(superuser).get(LIST).content.decode()
    assert '<span class="jd-material-status jd-material-failed">failed</span>' in html
    assert '<span class="jd-material-status jd-material-ready">ready</span>' in html
    assert "3.3\xa0MB" in html and "3.3\xa0KB" in html  # 3,500,000 and 3,400 bytes
    assert 'title="3,500,000 bytes"' in html
    shown = re.search(r'class="jd-material-error" title="This PDF is protected[^"]*">([^<]*)<', html).group(1)
    assert shown.endswith("…") and len(shown) <= 60
    assert "ingestion/materials.css" in html
    assert ready.pk and failed.pk


def test_the_page_is_read_only_and_its_file_link_downloads(superuser, alice):
    made = material(alice)
    client = client_for(superuser)
    html = client.get(f"{LIST}{made.pk}/change/").content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html and 'name="_addanother"' not in html
    link = re.search(r'<a href="([^"]+)" download>notes.txt</a> \(3.3\xa0KB\)', html)
    assert link and link.group(1) == f"{LIST}{made.pk}/file/"
    assert "/media/" not in html  # not the unserved MEDIA_URL
    download = client.get(link.group(1))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"hello, materials\n" * 200
    assert 'attachment; filename="notes.txt"' in download["Content-Disposition"]
    assert client.post(f"{LIST}{made.pk}/change/", {}).status_code == 405


def test_the_file_is_only_for_those_who_may_see_the_material(alice, bob, superuser):
    made = material(alice)
    bob.is_staff = True
    bob.save()
    assert client_for(bob).get(f"{LIST}{made.pk}/file/").status_code in (403, 404)
    assert Client().get(f"{LIST}{made.pk}/file/").status_code == 302  # to the login page
    made.file.delete(save=False)
    assert client_for(superuser).get(f"{LIST}{made.pk}/file/").status_code == 404


def test_an_action_on_a_selection_that_is_not_ids_changes_nothing_and_says_so(superuser):
    response = client_for(superuser).post(
        "/admin/ingestion/material/", {"action": "reprocess_materials", "_selected_action": ["x"]}, follow=True
    )
    assert response.status_code == 200 and "not a list of ids" in response.content.decode()
