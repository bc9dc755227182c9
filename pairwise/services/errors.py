"""The one error convention of the services: `ServiceError(field, message)`.

Every service's error class (`StudyError`, `AccessError`, `PlanError`, `InvalidJudgment`, ...)
is a subclass. `field` names the input that is wrong (None: the input as a whole) and `message`
says what was expected; `str()` is "field: message", which commands print as it is. Views turn
one into a 400 with `field_errors`, reading the two attributes: nothing parses the text back.
"""

from __future__ import annotations

NON_FIELD = "non_field_errors"  # DRF's key for an error that names no field


class ServiceError(ValueError):
    """Bad input for a service operation, naming the field (see the module docstring)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(field, message)  # args stay (field, message): the error pickles
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def field_errors(exc: Exception) -> dict[str, list[str]]:
    """The body of a 400 for a service error: {field: [message]}; an error that names no field
    (or is not a ServiceError) goes under `non_field_errors` with its whole text."""
    field = getattr(exc, "field", None) if isinstance(exc, ServiceError) else None
    if field:
        return {field: [exc.message]}
    return {NON_FIELD: [str(exc)]}
