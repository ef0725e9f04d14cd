"""A stand-in for wandb while timing a peer's example script: `log` appends each call's numeric values,
and the wall time once they are computed, to the JSON-lines file $PEER_LOG; nothing leaves the machine."""

import json
import os
import time

config: dict = {}


class _Run:
    def finish(self) -> None:
        pass


def init(config=None, **_kwargs):
    globals()["config"] = dict(config or {})
    return _Run()


def define_metric(*_args, **_kwargs) -> None:
    pass


class Video:
    def __init__(self, *_args, **_kwargs):
        pass


def log(values: dict, **_kwargs) -> None:
    row = {}
    for key, value in values.items():
        try:
            row[key] = float(value)  # waits for JAX's asynchronous results
        except (TypeError, ValueError):
            continue
    row["wall"] = time.time()
    with open(os.environ["PEER_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
