"""Caller input to a service: a pydantic model already, or a mapping to validate into one.

Every channel (CLI, flow forms, HTTP, tests) may hand a service a plain mapping; a bad one is
the same InvalidInput naming the first bad field whichever channel sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aims_core.errors import from_validation_error

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: M | Mapping[str, Any]) -> M:
    """`data` itself if it is a `model`, else validated into one; a pydantic error becomes the
    InvalidInput naming its first field (not a raw ValidationError)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
