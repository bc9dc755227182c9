"""The world the access tests share: two open studies, members of A only, one account per role
(test_access.py, test_access_invites.py)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from pairwise.models import StudyMember
from tests.factories import UserFactory, annotator, make_study, researcher


@pytest.fixture(name="world")
def world_fixture():
    """Two open studies; members of A only; the admin belongs to neither."""
    a, _, _ = make_study(n_contexts=2, k=1, public_title="Study Alpha")
    b, _, _ = make_study(n_contexts=2, k=1, public_title="Study Beta")
    users = {
        "annotator": annotator(a, username="ann-a"),
        "stranger_annotator": annotator(username="ann-none"),
        "owner": researcher(username="owner-a"),
        "collaborator": researcher(a, username="collab-a"),
        "stranger": researcher(username="res-none"),
        "admin": UserFactory(username="boss", role="admin"),
    }
    StudyMember.objects.create(study=a, user=users["owner"], role=StudyMember.Role.OWNER)
    return {"a": a, "b": b, "users": users}


def _page_client(world, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def _api_client(world, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["users"][role])
    return client
