"""Teachers by name: one name, one class (`ued train --teacher NAME`)."""

from __future__ import annotations

from ued.errors import UsageError
from ued.teachers.accel import ACCEL
from ued.teachers.base import Teacher
from ued.teachers.clutr import CLUTR
from ued.teachers.dr import DomainRandomization
from ued.teachers.paired import PAIRED
from ued.teachers.plr import PLR

TEACHERS: dict[str, type[Teacher]] = {
    "dr": DomainRandomization,
    "paired": PAIRED,
    "plr": PLR,
    "accel": ACCEL,
    "clutr": CLUTR,
}


def teacher_class(name: str) -> type[Teacher]:
    if name not in TEACHERS:
        raise UsageError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(TEACHERS))}")
    return TEACHERS[name]
