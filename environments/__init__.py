"""Built-in level families (importing this package registers them), their student networks and their
held-out suites."""

from ued.environments import (
    carracing,  # noqa: F401
    carracing_policy,  # noqa: F401
    maze,  # noqa: F401
    suites,  # noqa: F401
)
