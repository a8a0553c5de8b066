"""Prometheus text exposition 0.0.4 rendering (features.md §16)."""

from __future__ import annotations

import math
import threading

import pytest

from ironflow_pkg.metrics import (
    BATCH_SIZE_BUCKETS,
    CONTENT_TYPE,
    DEFAULT_BUCKETS,
    Registry,
    ServerMetrics,
    format_float,
    standard_metrics,
)


def test_small_registry_renders_byte_exact():
    r = Registry()
    req = r.counter("app_requests_total", "Requests served.", ("method", "code"))
    temp = r.gauge("app_temperature", "Current temperature.")
    lat = r.histogram("app_latency_seconds", "Latency.", ("route",), buckets=(0.1, 0.5, 2))
    r.gauge_callback("app_open_connections", "Open connections.", lambda: 7)

    req.labels("POST", "500").inc()
    req.labels(method="GET", code=200).inc(2)
    req.labels("GET", "200").inc()
    temp.set(21.5)
    temp.dec(0.5)
    lat.labels("/a").observe(0.05)
    lat.labels("/a").observe(0.5)  # le is "less than or equal": lands in 0.5
    lat.labels("/a").observe(3)
    lat.labels(route="/b").observe(0.2)

    assert r.render() == (
        "# HELP app_requests_total Requests served.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{method="GET",code="200"} 3\n'
        'app_requests_total{method="POST",code="500"} 1\n'
        "# HELP app_temperature Current temperature.\n"
        "# TYPE app_temperature gauge\n"
        "app_temperature 21\n"
        "# HELP app_latency_seconds Latency.\n"
        "# TYPE app_latency_seconds histogram\n"
        'app_latency_seconds_bucket{route="/a",le="0.1"} 1\n'
        'app_latency_seconds_bucket{route="/a",le="0.5"} 2\n'
        'app_latency_seconds_bucket{route="/a",le="2"} 2\n'
        'app_latency_seconds_bucket{route="/a",le="+Inf"} 3\n'
        'app_latency_seconds_sum{route="/a"} 3.55\n'
        'app_latency_seconds_count{route="/a"} 3\n'
        'app_latency_seconds_bucket{route="/b",le="0.1"} 0\n'
        'app_latency_seconds_bucket{route="/b",le="0.5"} 1\n'
        'app_latency_seconds_bucket{route="/b",le="2"} 1\n'
        'app_latency_seconds_bucket{route="/b",le="+Inf"} 1\n'
        'app_latency_seconds_sum{route="/b"} 0.2\n'
        'app_latency_seconds_count{route="/b"} 1\n'
        "# HELP app_open_connections Open connections.\n"
        "# TYPE app_open_connections gauge\n"
        "app_open_connections 7\n"
    )
    assert Registry.CONTENT_TYPE == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_unlabelled_metrics_render_zero_before_use_and_labelled_ones_only_headers():
    r = Registry()
    r.counter("c_total", "c")
    r.counter("l_total", "l", ("x",))
    h = r.histogram("h", "h", buckets=(1,))
    assert r.render() == (
        "# HELP c_total c\n# TYPE c_total counter\nc_total 0\n"
        "# HELP l_total l\n# TYPE l_total counter\n"
        "# HELP h h\n# TYPE h histogram\n"
        'h_bucket{le="1"} 0\nh_bucket{le="+Inf"} 0\nh_sum 0\nh_count 0\n'
    )
    h.observe(1)
    assert 'h_bucket{le="1"} 1\n' in r.render()


def test_empty_registry_renders_empty():
    assert Registry().render() == ""


def test_escaping_of_help_and_label_values():
    r = Registry()
    c = r.counter("esc_total", 'Help with \\ backslash, "quotes"\nand a newline.', ("v",))
    c.labels('a\\b"c\nd').inc()
    assert r.render() == (
        '# HELP esc_total Help with \\\\ backslash, "quotes"\\nand a newline.\n'
        "# TYPE esc_total counter\n"
        'esc_total{v="a\\\\b\\"c\\nd"} 1\n'
    )


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (-0.0, "0"),
        (3.0, "3"),
        (42, "42"),
        (-2, "-2"),
        (0.25, "0.25"),
        (1e-05, "1e-05"),
        (1e20, "1e+20"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_format_float(value, text):
    assert format_float(value) == text


def test_special_values_in_samples():
    r = Registry()
    g = r.gauge("g", "g", ("k",))
    g.labels("a").set(math.inf)
    g.labels("b").set(-math.inf)
    g.labels("c").set(math.nan)
    g.labels("d").set(0.1)
    body = r.render()
    assert 'g{k="a"} +Inf\n' in body
    assert 'g{k="b"} -Inf\n' in body
    assert 'g{k="c"} NaN\n' in body
    assert 'g{k="d"} 0.1\n' in body


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a.b"])
def test_invalid_metric_names(name):
    r = Registry()
    with pytest.raises(ValueError):
        r.counter(name, "x")
    with pytest.raises(ValueError):
        r.gauge_callback(name, "x", lambda: 1)


def test_valid_metric_names_include_colons():
    r = Registry()
    r.counter("ns:sub_total", "x")
    r.gauge("_private", "x")


@pytest.mark.parametrize("labels", [("1a",), ("a-b",), ("__reserved",), ("a:b",), ("a", "a"), "method"])
def test_invalid_label_names(labels):
    with pytest.raises(ValueError):
        Registry().counter("c_total", "x", labels)


def test_histogram_le_label_reserved_and_bad_buckets():
    r = Registry()
    with pytest.raises(ValueError):
        r.histogram("h1", "x", ("le",))
    with pytest.raises(ValueError):
        r.histogram("h2", "x", buckets=(1, 0.5))
    with pytest.raises(ValueError):
        r.histogram("h3", "x", buckets=(1, 1))
    with pytest.raises(ValueError):
        r.histogram("h4", "x", buckets=(math.nan,))
    # An explicit +Inf is accepted and not doubled.
    h = r.histogram("h5", "x", buckets=(1, math.inf))
    assert h.buckets == (1.0, math.inf)


def test_duplicate_names_raise_including_histogram_suffixes():
    r = Registry()
    r.counter("dup_total", "x")
    with pytest.raises(ValueError):
        r.gauge("dup_total", "x")
    r.histogram("lat", "x")
    with pytest.raises(ValueError):
        r.counter("lat_count", "x")
    with pytest.raises(ValueError):
        r.gauge_callback("lat", "x", lambda: 0)
    r.counter("other_sum", "x")
    with pytest.raises(ValueError):
        r.histogram("other", "x")
    # A failed registration leaves nothing behind.
    assert "other" not in r.render().replace("other_sum", "")


def test_label_count_and_usage_errors():
    r = Registry()
    c = r.counter("c_total", "x", ("a", "b"))
    with pytest.raises(ValueError):
        c.labels("only-one")
    with pytest.raises(ValueError):
        c.labels("1", "2", "3")
    with pytest.raises(ValueError):
        c.labels()
    with pytest.raises(ValueError):
        c.labels(a="1")
    with pytest.raises(ValueError):
        c.labels(a="1", c="2")
    with pytest.raises(ValueError):
        c.labels("1", b="2")
    with pytest.raises(ValueError):
        c.inc()  # labelled metric used without labels
    plain = r.counter("p_total", "x")
    with pytest.raises(ValueError):
        plain.labels()
    with pytest.raises(ValueError):
        plain.labels("x")


def test_counter_rejects_negative_and_nan():
    r = Registry()
    c = r.counter("c_total", "x")
    with pytest.raises(ValueError):
        c.inc(-1)
    with pytest.raises(ValueError):
        c.inc(math.nan)
    c.inc(0)
    c.inc(2.5)
    assert c.value == 2.5


def test_labels_cache_returns_same_child_for_equal_values():
    r = Registry()
    c = r.counter("c_total", "x", ("method", "status_code"))
    a = c.labels("GET", 200)
    assert c.labels("GET", "200") is a
    assert c.labels(status_code="200", method="GET") is a
    assert c.labels("GET", 200) is a
    assert c.labels(["unhashable"], 1) is c.labels("['unhashable']", "1")


def test_gauge_and_histogram_children():
    r = Registry()
    g = r.gauge("g", "x")
    g.inc()
    g.inc(4)
    g.dec(2)
    assert g.value == 3
    g.set(-1.5)
    assert g.value == -1.5
    h = r.histogram("h", "x", buckets=(1, 2))
    h.observe(0.5)
    h.observe(2)
    h.observe(math.nan)  # only +Inf holds NaN; the sum becomes NaN, as in Prometheus
    body = r.render()
    assert 'h_bucket{le="1"} 1\nh_bucket{le="2"} 2\nh_bucket{le="+Inf"} 3\nh_sum NaN\nh_count 3\n' in body


def test_gauge_callback_is_evaluated_at_render_and_failure_reads_nan():
    r = Registry()
    box = {"v": 1}
    r.gauge_callback("cb", "x", lambda: box["v"])
    r.gauge_callback("bad", "x", lambda: 1 / 0)
    assert "cb 1\n" in r.render()
    box["v"] = 2.5
    body = r.render()
    assert "cb 2.5\n" in body
    assert "bad NaN\n" in body
    with pytest.raises(ValueError):
        r.gauge_callback("notfn", "x", 3)  # type: ignore[arg-type]


def test_thread_safety_exact_totals():
    r = Registry()
    c = r.counter("c_total", "x", ("worker",))
    plain = r.counter("p_total", "x")
    g = r.gauge("g", "x")
    h = r.histogram("h", "x", buckets=(1,))
    threads_n, per_thread = 8, 5000
    start = threading.Barrier(threads_n)

    def work(i: int) -> None:
        start.wait()
        for _ in range(per_thread):
            c.labels(str(i % 2)).inc()  # children created concurrently too
            plain.inc()
            g.inc()
            g.dec(0.5)
            h.observe(0.5)
        r.render()  # rendering while others write must not fail

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = threads_n * per_thread
    assert plain.value == total
    assert c.labels("0").value + c.labels("1").value == total
    assert g.value == total * 0.5
    body = r.render()
    assert f"h_count {total}\n" in body
    assert f'h_bucket{{le="1"}} {total}\n' in body


def test_standard_metrics():
    r = Registry()
    m = standard_metrics(r)
    assert isinstance(m, ServerMetrics)
    assert m.registry is r
    assert m.http_requests_total.name == "ironflow_http_requests_total"
    assert m.http_requests_total.labelnames == ("method", "path", "status_code")
    assert m.http_request_duration_seconds.name == "ironflow_http_request_duration_seconds"
    assert m.http_request_duration_seconds.labelnames == ("method", "path")
    assert m.http_request_duration_seconds.buckets == DEFAULT_BUCKETS + (math.inf,)
    assert m.journal_commit_seconds.name == "ironflow_journal_commit_seconds"
    assert m.journal_batch_size.name == "ironflow_journal_batch_size"
    assert m.journal_batch_size.buckets == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, math.inf)
    assert BATCH_SIZE_BUCKETS[-1] == 512
    assert m.connections_open.name == "ironflow_connections_open"
    assert DEFAULT_BUCKETS[0] == 0.0005 and DEFAULT_BUCKETS[-1] == 10
    m.http_requests_total.labels("GET", "/api/v1/runs", 200).inc()
    m.connections_open.inc()
    body = r.render()
    assert 'ironflow_http_requests_total{method="GET",path="/api/v1/runs",status_code="200"} 1\n' in body
    assert "# TYPE ironflow_journal_batch_size histogram\n" in body
    assert "ironflow_connections_open 1\n" in body
    with pytest.raises(ValueError):
        standard_metrics(r)  # once per registry
