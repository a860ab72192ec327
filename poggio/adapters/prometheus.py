"""What Poggio uses of prometheus_client beyond its public API (``prometheus-client>=0.20,<1``).

prometheus_client picks the class of its metrics' values once, when ``prometheus_client.values`` is
imported, from the environment (``PROMETHEUS_MULTIPROC_DIR``); the MCP server knows its folder for
several workers' metrics only at start-up. :func:`use_multiprocess_values` makes the choice again:
``values.ValueClass``, ``values.MultiProcessValue()`` and the class's ``_multiprocess`` flag.
tests/test_workers.py shows the effect (several workers' counts added up); :func:`check` names what a
release changed.
"""

from __future__ import annotations

from prometheus_client import values


def use_multiprocess_values() -> None:
    """Metrics made from now on keep their values in the files of ``PROMETHEUS_MULTIPROC_DIR`` (set it first)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def check() -> None:
    """Raise ``RuntimeError`` naming what this module relies on and the installed prometheus_client lacks."""
    problems = [
        f"prometheus_client.values.{n} is gone" for n in ("ValueClass", "MultiProcessValue") if not hasattr(values, n)
    ]
    if not problems and getattr(values.MultiProcessValue(), "_multiprocess", None) is not True:
        problems.append("prometheus_client.values.MultiProcessValue() no longer marks its class _multiprocess")
    if problems:
        raise RuntimeError(
            "prometheus_client changed what poggio.adapters.prometheus relies on: " + "; ".join(problems)
        )
