"""Domain randomization: uniformly random levels from the family's `sample`."""

from __future__ import annotations

from ued.teachers.base import Proposal, Teacher


class DomainRandomization(Teacher):
    """Proposes fresh random levels every rollout and learns nothing."""

    def propose(self, n: int) -> Proposal:
        return Proposal([self.family.sample(self.rng) for _ in range(n)])
