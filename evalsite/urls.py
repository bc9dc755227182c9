from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from pairwise import auth, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=auth.LoginForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # invited accounts are sent here at first login (pairwise.middleware)
    path("accounts/password/", auth.PasswordChangeView.as_view(), name="password_change"),
    path("admin/", admin.site.urls),
    path("api/", include("pairwise.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's set-up script as a file (?script): no inline script,
    # so the Content-Security-Policy holds on the docs page too.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="pairwise/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("", include("pairwise.urls")),
]

# Plain pages for people, {"detail": ...} JSON under /api/ (evalsite/errors.py).
handler400 = "evalsite.errors.bad_request"
handler403 = "evalsite.errors.permission_denied"
handler404 = "evalsite.errors.page_not_found"
handler500 = "evalsite.errors.server_error"
