from django.urls import path
from rest_framework.routers import DefaultRouter

from pairwise import converters  # noqa: F401 (registers <id:>)
from pairwise.api import views

router = DefaultRouter()
router.register("studies", views.StudyViewSet, basename="study")
router.register("checkpoints", views.CheckpointViewSet, basename="checkpoint")

urlpatterns = [
    path("annotator/studies/", views.AnnotatorStudiesView.as_view(), name="api-annotator-studies"),
    path("annotator/studies/<id:study_id>/next/", views.NextItemView.as_view(), name="api-next"),
    path(
        "annotator/studies/<id:study_id>/judgments/", views.SubmitView.as_view(), name="api-submit"
    ),
    path(
        "annotator/studies/<id:study_id>/progress/",
        views.ProgressView.as_view(),
        name="api-progress",
    ),
    *router.urls,
]
