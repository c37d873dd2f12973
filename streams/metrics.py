"""Prometheus metrics of the stream worker, served at ``/metrics`` on the worker's web port.

A tiny, dependency-free implementation of the Prometheus text exposition format (version
0.0.4): counters and histograms with labels, and gauges read through a callback at scrape time
(consumer lag, table sizes). Each app gets its own :class:`WorkerMetrics`, so tests can build
several apps in one process.

| metric | type | labels |
|---|---|---|
| ``atoguard_events_total`` | counter | ``topic`` (logical), ``kind`` |
| ``atoguard_duplicates_total`` | counter | ``topic`` |
| ``atoguard_dead_letters_total`` | counter | ``topic``, ``reason`` |
| ``atoguard_commands_total`` | counter | ``action`` |
| ``atoguard_alerts_total`` | counter | ``reason`` (every reason code of the alert) |
| ``atoguard_event_to_output_seconds`` | histogram | ``topic`` (output topic): event ``ts`` to output |
| ``atoguard_receive_to_output_seconds`` | histogram | ``topic``: message received by the consumer to output sent |
| ``atoguard_consumer_lag`` | gauge | ``topic``, ``partition``: high water mark minus the last offset read |
| ``atoguard_table_keys`` | gauge | ``table``: keys in the worker's local table partitions |
| ``atoguard_snapshots_total`` | counter | ``outcome`` (``saved``, ``loaded``, ``refused``, ``missing``) |
| ``atoguard_late_events_total`` | counter | ``topic``: processed although earlier than the partition's stream time minus the allowed lateness (Quix runtime) |

:class:`MetricsServer` serves ``/metrics`` and ``/healthz`` from a thread for a runtime that has
no web server of its own (the Quix runtime; Faust serves them through its own web app).

>>> m = WorkerMetrics()
>>> m.commands.inc(action="freeze")
>>> b'atoguard_commands_total{action="freeze"} 1.0' in m.render()
True
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Counter", "Gauge", "Histogram", "MetricsServer", "Registry", "WorkerMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4"

#: seconds; from 1 ms to 10 minutes, event-time latency can be large when replaying backlogs
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0, 600.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge(_Metric):
    """A value read at scrape time from ``collect() -> iterable of (label values, value)``."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 collect: Callable[[], Iterable[tuple[tuple[str, ...], float]]] | None = None) -> None:
        super().__init__(name, help, labels)
        self.collect = collect

    def lines(self) -> list[str]:
        if self.collect is None:
            return []
        try:
            rows = sorted(self.collect())
        except Exception:  # a scrape must never take the worker down
            return []
        return [f"{self.name}{_labels(self.label_names, tuple(k))} {_num(v)}" for k, v in rows]


class Histogram(_Metric):
    """Observations counted into cumulative buckets, per label set."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], list] = {}  # key -> [counts per bucket, sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [[0] * len(self.buckets), 0.0, 0]
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.buckets):
            series[0][i] += 1
        series[1] += value
        series[2] += 1

    def count(self, **labels: str) -> int:
        series = self.series.get(self._key(labels))
        return 0 if series is None else series[2]

    def lines(self) -> list[str]:
        out = []
        for key, (counts, total, n) in sorted(self.series.items()):
            running = 0
            for bound, c in zip(self.buckets, counts):
                running += c
                le = 'le="' + _num(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.label_names, key, inf)} {n}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {n}")
        return out


class Registry:
    """Metrics rendered together."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        for _ in range(5):  # another thread may add a label set while we read; read again
            try:
                return self._render()
            except RuntimeError:
                continue
        return self._render()

    def _render(self) -> bytes:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.header())
            lines.extend(m.lines())
        return ("\n".join(lines) + "\n").encode("utf-8")


class WorkerMetrics(Registry):
    """Every metric the worker exports (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.events = self.add(Counter("atoguard_events_total", "Input records accepted, by topic and kind.",
                                       ("topic", "kind")))
        self.duplicates = self.add(Counter("atoguard_duplicates_total",
                                           "Input records ignored as repeats of an applied event id.", ("topic",)))
        self.dead_letters = self.add(Counter("atoguard_dead_letters_total",
                                             "Inputs written to the dead-letter topic, by reason.",
                                             ("topic", "reason")))
        self.commands = self.add(Counter("atoguard_commands_total", "Commands issued, by action.", ("action",)))
        self.alerts = self.add(Counter("atoguard_alerts_total", "Alerts raised, counted once per reason code.",
                                       ("reason",)))
        self.event_latency = self.add(Histogram("atoguard_event_to_output_seconds",
                                                "From the triggering event's ts to the output being sent.",
                                                ("topic",)))
        self.receive_latency = self.add(Histogram("atoguard_receive_to_output_seconds",
                                                  "From the consumer receiving the message to the output being sent.",
                                                  ("topic",)))
        self.lag = self.add(Gauge("atoguard_consumer_lag",
                                  "High water mark minus the last offset read, per assigned input partition.",
                                  ("topic", "partition")))
        self.table_keys = self.add(Gauge("atoguard_table_keys", "Keys held in the worker's local tables.",
                                         ("table",)))
        self.snapshots = self.add(Counter("atoguard_snapshots_total",
                                          "Model snapshots saved, loaded, refused or missing at start.",
                                          ("outcome",)))
        self.late_events = self.add(Counter("atoguard_late_events_total",
                                            "Events processed although later than the allowed lateness "
                                            "(ts before the partition's stream time minus the lateness).",
                                            ("topic",)))

    def sent(self, outputs, received: float, event_ts: int | None) -> None:
        """Count outputs just sent: commands by action, alerts by reason, and their latency from
        receiving the input (``time.monotonic()`` then) and from its event time (ms)."""
        now_mono, now_wall = time.monotonic(), time.time()
        for o in outputs:
            if o.topic == "commands":
                self.commands.inc(action=o.value["action"])
            elif o.topic == "alerts":
                for reason in o.value["finding_info"]["types"]:
                    self.alerts.inc(reason=reason)
            self.receive_latency.observe(max(0.0, now_mono - received), topic=o.topic)
            if event_ts is not None:
                self.event_latency.observe(max(0.0, now_wall - event_ts / 1000.0), topic=o.topic)


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (JSON) on ``host:port``, served by a daemon
    thread. ``render()`` and ``health()`` are called on the server's thread.

    >>> server = MetricsServer("127.0.0.1", 0, lambda: b"m 1\\n", lambda: {"ok": True}).start()
    >>> import urllib.request
    >>> urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz").read()
    b'{"ok": true}'
    >>> server.stop()
    """

    def __init__(self, host: str, port: int, render: Callable[[], bytes], health: Callable[[], dict]) -> None:
        routes = {"/metrics": (CONTENT_TYPE, render),
                  "/healthz": ("application/json", lambda: json.dumps(health()).encode())}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    body = route[1]()
                except Exception as exc:  # a scrape must never take the worker down
                    self.send_error(500, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", route[0])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="atoguard-web", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
