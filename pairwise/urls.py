from django.urls import path

from pairwise import converters, criteria_views, views  # noqa: F401 (registers <id:>)

urlpatterns = [
    path("", views.home, name="home"),
    path("study/<id:study_id>/guidelines/", views.guidelines, name="guidelines"),
    path("study/<id:study_id>/annotate/", views.annotate, name="annotate"),
    path("studies/", views.study_list, name="study-list"),
    path("studies/<id:study_id>/", views.study_detail, name="study-detail"),
    path("studies/<id:study_id>/requeue/", views.study_requeue, name="study-requeue"),
    path("studies/<id:study_id>/results/", views.study_results, name="study-results"),
    path("studies/<id:study_id>/items/", views.study_items, name="study-items"),
    path("studies/<id:study_id>/export/<str:fmt>/", views.study_export, name="study-export"),
    path("studies/<id:study_id>/members/", views.study_members, name="study-members"),
    path("studies/<id:study_id>/criteria/", criteria_views.study_criteria, name="study-criteria"),
    path("studies/<id:study_id>/invites/", views.study_invites, name="study-invites"),
    path(
        "studies/<id:study_id>/invites/<id:invite_id>/revoke/",
        views.invite_revoke,
        name="invite-revoke",
    ),
    path("join/<str:token>/", views.join, name="join"),
]
