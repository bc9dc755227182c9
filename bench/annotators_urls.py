"""The site's URLs plus two bare views, the baselines of bench/annotators.py (bench only)."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView


def bare(request: HttpRequest) -> JsonResponse:
    """No database, no authentication: the cost of a request through the same server stack."""
    return JsonResponse({"ok": True})


class BareAPI(APIView):
    """DRF with the annotator API's token authentication, and nothing else."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    # under /api/ so the login middleware lets them through, as it does the annotator API
    path("api/bench-bare/", bare),
    path("api/bench-bare-api/", BareAPI.as_view()),
    path("", include("evalsite.urls")),
]
