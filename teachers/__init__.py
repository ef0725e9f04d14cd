"""Teachers by name: one name, one class (`ued train --teacher NAME`)."""

from __future__ import annotations

from ued.errors import UsageError
from ued.teachers.base import Teacher
from ued.teachers.dr import DomainRandomization

TEACHERS: dict[str, type[Teacher]] = {
    "dr": DomainRandomization,
}


def teacher_class(name: str) -> type[Teacher]:
    if name not in TEACHERS:
        raise UsageError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(TEACHERS))}")
    return TEACHERS[name]
