"""Domain randomization: uniformly random levels from the family's `sample`."""

from __future__ import annotations

from typing import Any

from ued.teachers.base import Teacher


class DomainRandomization(Teacher):
    """Proposes fresh random levels every rollout and learns nothing."""

    def propose(self, n: int) -> list[Any]:
        return [self.family.sample(self.rng) for _ in range(n)]
