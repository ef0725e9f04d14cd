"""Built-in level families (importing this package registers them) and their held-out suites."""

from ued.environments import (
    maze,  # noqa: F401
    suites,  # noqa: F401
)
