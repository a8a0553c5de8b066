"""Prometheus metrics: counters, gauges and histograms in text exposition format 0.0.4.

Stdlib only. Served at ``GET /metrics`` when ``IRONFLOW_METRICS_ENABLED=true``
(features.md §16). The format reference is Prometheus' "Exposition formats" page,
text format version 0.0.4.

Thread safety: every metric has a lock guarding its table of labelled children and every
child has its own lock guarding its value, so the asyncio thread and the journal writer
thread can update metrics concurrently. ``labels()`` caches children in a dict keyed by the
tuple of label values; the cache hit path takes no lock (a dict lookup is atomic in CPython).

Number formatting (consistent for sample values and ``le`` labels): integral values below
1e15 are written without a fraction (``3``, not ``3.0``); other finite values use Python's
shortest round-trip ``repr`` (``0.25``, ``1e-05``); infinities and NaN are ``+Inf``,
``-Inf`` and ``NaN`` as Prometheus spells them.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "ServerMetrics",
    "format_float",
    "standard_metrics",
]

#: Content-Type of ``Registry.render()`` output (text exposition format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request-latency buckets in seconds: 0.5 ms (an in-memory hit) up to 10 s (the push
#: timeout default); ``+Inf`` is always added.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

#: Group-commit batch sizes: powers of two from 1 to 512 logical writes per transaction.
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(10))

# Prometheus data model grammar: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
# [a-zA-Z_][a-zA-Z0-9_]* with the "__" prefix reserved for internal use.
_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_INF = math.inf


def format_float(value: float) -> str:
    """Format a sample value or bucket bound the way the exposition format expects."""
    v = float(value)
    if v != v:
        return "NaN"
    if v == _INF:
        return "+Inf"
    if v == -_INF:
        return "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))  # also folds -0.0 into "0"
    return repr(v)


def _escape_help(text: str) -> str:
    # 0.0.4: in HELP, backslash and line feed are escaped (double quotes are not).
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    # 0.0.4: in label values, backslash, double quote and line feed are escaped.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _check_metric_name(name: str) -> str:
    if not isinstance(name, str) or not _METRIC_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
    return name


def _check_labelnames(labelnames: Iterable[str], *, reserved: Sequence[str] = ()) -> tuple[str, ...]:
    if isinstance(labelnames, str):
        raise ValueError(f"labelnames must be a sequence of names, not the string {labelnames!r}")
    names = tuple(labelnames)
    for ln in names:
        if not isinstance(ln, str) or not _LABEL_NAME_RE.fullmatch(ln):
            raise ValueError(f"invalid label name {ln!r}: must match [a-zA-Z_][a-zA-Z0-9_]*")
        if ln.startswith("__"):
            raise ValueError(f"invalid label name {ln!r}: names starting with '__' are reserved")
        if ln in reserved:
            raise ValueError(f"invalid label name {ln!r}: reserved for this metric type")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate label names in {names!r}")
    return names


def _label_text(labelnames: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``a="x",b="y"`` (no braces); empty for an unlabelled metric."""
    return ",".join(f'{n}="{_escape_label_value(v)}"' for n, v in zip(labelnames, values))


# --------------------------------------------------------------------------- children


class _CounterChild:
    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0; a counter never goes down)."""
        # "not >=" also rejects NaN, which would poison the counter for good.
        if not amount >= 0:
            raise ValueError(f"counter increment must be >= 0, got {amount!r}")
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value


class _GaugeChild:
    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    @property
    def value(self) -> float:
        return self._value


class _HistogramChild:
    __slots__ = ("_lock", "_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds  # ascending, last is +Inf
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        v = float(value)
        # First bound >= v (buckets are "less than or equal"); NaN only fits +Inf.
        i = bisect.bisect_left(self._bounds, v) if v == v else len(self._bounds) - 1
        with self._lock:
            self._counts[i] += 1
            self._sum += v

    def snapshot(self) -> tuple[list[int], float]:
        """(cumulative bucket counts aligned with the bounds, sum)."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        acc = 0
        for i, c in enumerate(counts):
            acc += c
            counts[i] = acc
        return counts, total

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    @property
    def sum(self) -> float:
        return self._sum


# --------------------------------------------------------------------------- metrics


class _Metric:
    """Shared parts: name, help, label names and the cache of labelled children."""

    _type = ""

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], object] = {}
        self._unlabelled = None
        if not labelnames:
            self._unlabelled = self._children[()] = self._new_child()

    def _new_child(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def labels(self, *values: object, **kwvalues: object):
        """The child for these label values (positional in ``labelnames`` order, or by name).

        Values are converted with ``str``. A wrong number or set of labels raises ValueError.
        """
        if values and not kwvalues:
            try:
                child = self._children.get(values)  # type: ignore[arg-type]
            except TypeError:  # an unhashable value; str() below makes it usable
                child = None
            if child is not None:
                return child
        if not self.labelnames:
            raise ValueError(f"metric {self.name} has no labels; call its methods directly")
        if values and kwvalues:
            raise ValueError("pass label values either positionally or by name, not both")
        if kwvalues:
            if set(kwvalues) != set(self.labelnames):
                raise ValueError(
                    f"metric {self.name} expects labels {list(self.labelnames)}, got {sorted(kwvalues)}"
                )
            key = tuple(str(kwvalues[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"metric {self.name} expects {len(self.labelnames)} label values "
                    f"{list(self.labelnames)}, got {len(values)}"
                )
            key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self._new_child()
        return child

    def _only_child(self):
        if self._unlabelled is None:
            raise ValueError(f"metric {self.name} has labels {list(self.labelnames)}; use .labels(...)")
        return self._unlabelled

    def _sorted_children(self) -> list[tuple[tuple[str, ...], object]]:
        with self._lock:
            items = list(self._children.items())
        items.sort(key=lambda kv: kv[0])  # stable output whatever the order of first use
        return items

    def _header(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self._type}")

    def _render(self, out: list[str]) -> None:
        self._header(out)
        for key, child in self._sorted_children():
            labels = _label_text(self.labelnames, key)
            sel = f"{self.name}{{{labels}}}" if labels else self.name
            out.append(f"{sel} {format_float(child.value)}")  # type: ignore[attr-defined]


class Counter(_Metric):
    """A monotonically increasing count. Unlabelled counters take ``inc()`` directly."""

    _type = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def labels(self, *values: object, **kwvalues: object) -> _CounterChild:
        return super().labels(*values, **kwvalues)

    def inc(self, amount: float = 1.0) -> None:
        self._only_child().inc(amount)

    @property
    def value(self) -> float:
        return self._only_child().value


class Gauge(_Metric):
    """A value that goes up and down. Unlabelled gauges take set/inc/dec directly."""

    _type = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def labels(self, *values: object, **kwvalues: object) -> _GaugeChild:
        return super().labels(*values, **kwvalues)

    def set(self, value: float) -> None:
        self._only_child().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only_child().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only_child().dec(amount)

    @property
    def value(self) -> float:
        return self._only_child().value


class Histogram(_Metric):
    """Cumulative buckets plus ``_sum`` and ``_count``. Unlabelled: ``observe()`` directly."""

    _type = "histogram"

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...], buckets: Iterable[float]) -> None:
        bounds = [float(b) for b in buckets]
        if any(b != b for b in bounds):
            raise ValueError("histogram buckets must not be NaN")
        if any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"histogram buckets must be strictly increasing, got {bounds}")
        if not bounds or bounds[-1] != _INF:
            bounds.append(_INF)
        self.buckets: tuple[float, ...] = tuple(bounds)
        self._le = tuple(format_float(b) for b in self.buckets)
        super().__init__(name, help, labelnames)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.buckets)

    def labels(self, *values: object, **kwvalues: object) -> _HistogramChild:
        return super().labels(*values, **kwvalues)

    def observe(self, value: float) -> None:
        self._only_child().observe(value)

    def _render(self, out: list[str]) -> None:
        self._header(out)
        name = self.name
        for key, child in self._sorted_children():
            counts, total = child.snapshot()  # type: ignore[attr-defined]
            labels = _label_text(self.labelnames, key)
            prefix = labels + "," if labels else ""
            for le, c in zip(self._le, counts):
                out.append(f'{name}_bucket{{{prefix}le="{le}"}} {c}')
            sel = f"{{{labels}}}" if labels else ""
            out.append(f"{name}_sum{sel} {format_float(total)}")
            out.append(f"{name}_count{sel} {counts[-1]}")


class _CallbackGauge:
    """An unlabelled gauge whose value is computed when the registry is rendered."""

    _type = "gauge"

    def __init__(self, name: str, help: str, fn: Callable[[], float]) -> None:
        self.name = name
        self.help = help
        self._fn = fn

    def _render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} gauge")
        try:
            value = float(self._fn())
        except Exception:
            # A failing callback must not take /metrics down with it; NaN shows the gap.
            value = math.nan
        out.append(f"{self.name} {format_float(value)}")


# --------------------------------------------------------------------------- registry


class Registry:
    """A set of metrics rendered together, in registration order."""

    CONTENT_TYPE = CONTENT_TYPE

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: list[_Metric | _CallbackGauge] = []
        self._claimed: set[str] = set()  # every sample name in use, incl. histogram suffixes

    def _register(self, metric, sample_names: Sequence[str]):
        with self._lock:
            taken = [n for n in sample_names if n in self._claimed]
            if taken:
                raise ValueError(f"metric name {metric.name!r} is already registered (clashes with {taken[0]!r})")
            self._claimed.update(sample_names)
            self._metrics.append(metric)
        return metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        _check_metric_name(name)
        m = Counter(name, str(help), _check_labelnames(labelnames))
        return self._register(m, (name,))

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Gauge:
        _check_metric_name(name)
        m = Gauge(name, str(help), _check_labelnames(labelnames))
        return self._register(m, (name,))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Iterable[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        _check_metric_name(name)
        m = Histogram(name, str(help), _check_labelnames(labelnames, reserved=("le",)), buckets)
        return self._register(m, (name, name + "_bucket", name + "_sum", name + "_count"))

    def gauge_callback(self, name: str, help: str, fn: Callable[[], float]) -> None:
        """Register an unlabelled gauge whose value is ``fn()`` at render time.

        ``fn`` runs on the rendering thread; if it raises, the sample reads ``NaN``.
        """
        _check_metric_name(name)
        if not callable(fn):
            raise ValueError(f"gauge_callback {name!r}: fn must be callable")
        self._register(_CallbackGauge(name, str(help), fn), (name,))

    def render(self) -> str:
        """The full exposition text; ends with a newline ("" when nothing is registered)."""
        with self._lock:
            metrics = list(self._metrics)
        out: list[str] = []
        for m in metrics:
            m._render(out)
        if not out:
            return ""
        out.append("")
        return "\n".join(out)


# --------------------------------------------------------------------------- foundation set


@dataclass(frozen=True)
class ServerMetrics:
    """The metrics the server foundation records (names from features.md §16 where listed)."""

    registry: Registry
    http_requests_total: Counter  # labels: method, path (route template), status_code
    http_request_duration_seconds: Histogram  # labels: method, path
    journal_commit_seconds: Histogram  # one observation per group-commit transaction
    journal_batch_size: Histogram  # logical writes per group-commit transaction
    connections_open: Gauge  # open client connections (all transports)


def standard_metrics(registry: Registry) -> ServerMetrics:
    """Register the foundation's metrics on ``registry`` and return them."""
    return ServerMetrics(
        registry=registry,
        http_requests_total=registry.counter(
            "ironflow_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "path", "status_code"),
        ),
        http_request_duration_seconds=registry.histogram(
            "ironflow_http_request_duration_seconds",
            "HTTP request handling time in seconds, by method and route template.",
            ("method", "path"),
        ),
        journal_commit_seconds=registry.histogram(
            "ironflow_journal_commit_seconds",
            "Time to commit (and fsync) one journal group-commit transaction, in seconds.",
        ),
        journal_batch_size=registry.histogram(
            "ironflow_journal_batch_size",
            "Logical writes committed per journal group-commit transaction.",
            buckets=BATCH_SIZE_BUCKETS,
        ),
        connections_open=registry.gauge(
            "ironflow_connections_open",
            "Client connections currently open.",
        ),
    )
