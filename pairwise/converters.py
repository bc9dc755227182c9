"""URL converters. A row id in a URL has at most 18 digits: a longer number cannot be a
PostgreSQL bigint, and without this bound it reached the database as an error (500) instead of
a plain 404."""

from __future__ import annotations

from django.urls import register_converter

ID_REGEX = "[0-9]{1,18}"


class IdConverter:
    regex = ID_REGEX

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


register_converter(IdConverter, "id")
