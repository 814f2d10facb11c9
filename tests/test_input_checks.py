"""Bad settings and calls are refused where they are made, with an error naming them, and
nothing is enqueued; values at the edges of what is accepted round-trip on every backend
(``tests/conformance/test_robustness.py``)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

import laneway


@pytest.fixture
def app() -> Iterator[laneway.App]:
    a = laneway.App(f"memory://input-checks-{time.monotonic_ns()}")
    yield a


def _nothing_enqueued(app: laneway.App) -> None:
    assert app.backend.list_jobs() == []


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"run_at": time.time() * 1000}, "run_at"),  # milliseconds for seconds
        ({"run_at": -1e20}, "run_at"),
        ({"run_at": math.nan}, "run_at"),
        ({"run_at": math.inf}, "run_at"),
        ({"run_at": True}, "run_at"),
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": 1e13}, "delay"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"result_ttl": math.nan}, "result_ttl"),
        ({"max_attempts": 10**12}, "max_attempts"),
        ({"lane": "user:\udce9"}, "lane"),  # a lone surrogate: SQLite and PostgreSQL refuse it
        ({"unique": "k\udce9"}, "unique"),
        ({"unique": "k\x00"}, "unique"),
        ({"unique": "k" * 501}, "unique"),  # over PostgreSQL's index entry limit at 4 bytes a char
    ],
)
def test_an_option_out_of_range_is_refused_and_nothing_is_enqueued(
    app: laneway.App, options: dict[str, Any], named: str
) -> None:
    @app.task
    def t() -> None: ...

    with pytest.raises(laneway.ConfigError, match=named):
        t.options(**options).enqueue()
    _nothing_enqueued(app)


def test_delay_and_run_at_together_are_refused(app: laneway.App) -> None:
    @app.task
    def t() -> None: ...

    with pytest.raises(laneway.ConfigError, match="delay or run_at"):
        t.options(delay=3600, run_at=time.time()).enqueue()
    _nothing_enqueued(app)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"result_ttl": -1}, "result_ttl"),
        ({"lease_s": -5}, "lease_s"),
        ({"lease_s": 0}, "lease_s"),
        ({"lease_s": "60"}, "lease_s"),
        ({"backoff_s": "x"}, "backoff_s"),
        ({"backoff_max_s": -5}, "backoff_max_s"),
        ({"max_payload_bytes": "1MB"}, "max_payload_bytes"),
        ({"max_payload_bytes": -1}, "max_payload_bytes"),
        ({"priority_map": {1: 999}}, "priority_map"),
        ({"middleware": [5]}, r"middleware\[0\]"),
        ({"enqueue_middleware": [object()]}, r"enqueue_middleware\[0\]"),
        ({"exception_reporter": 5}, "exception_reporter"),
    ],
)
def test_an_app_setting_out_of_range_is_refused_when_the_app_is_made(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(laneway.ConfigError, match=named):
        laneway.App("memory://never-used", **settings)


def test_an_app_url_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(laneway.ConfigError, match="url"):
        laneway.App(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"backoff_s": "x"}, "backoff_s"),
        ({"backoff_max_s": -5}, "backoff_max_s"),
        ({"before": 5}, "before"),
        ({"success": "nope"}, "success"),
        ({"transactional": "no"}, "transactional"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_a_task_option_out_of_range_is_refused_when_the_task_is_registered(
    app: laneway.App, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(laneway.ConfigError, match=named):

        @app.task(**options)
        def t() -> None: ...


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"batch": 2.5}, "batch"),
        ({"batch": 0}, "batch"),
        ({"concurrency": "4"}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"lease_s": -1}, "lease_s"),
        ({"lease_s": 2, "heartbeat_s": 10}, "heartbeat_s"),
        ({"heartbeat_s": -1}, "heartbeat_s"),
        ({"idle_wait_s": "x"}, "idle_wait_s"),
        ({"sweep_s": 0}, "sweep_s"),
    ],
)
def test_a_worker_setting_out_of_range_is_refused_when_the_worker_is_made(
    app: laneway.App, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(laneway.ConfigError, match=named):
        app.worker(**settings)


def test_a_call_that_does_not_fit_the_task_is_refused_at_enqueue(app: laneway.App) -> None:
    @app.task(name="resize")
    def resize(x: int, width: int = 1) -> None: ...

    for args, kwargs in [((1, 2, 3), {}), ((), {}), ((1,), {"colour": "red"}), ((1,), {"delay": 60})]:
        with pytest.raises(TypeError, match="task resize"):
            resize.enqueue(*args, **kwargs)
    with pytest.raises(TypeError, match="task resize"):
        resize.enqueue_many([((1,), {}), ((1, 2, 3), {})])
    _nothing_enqueued(app)
    resize.enqueue(1, width=2)
    assert len(app.backend.list_jobs()) == 1


def test_a_class_task_is_checked_against_its_constructor(app: laneway.App) -> None:
    @app.task(name="report")
    class Report:
        def __init__(self, day: str) -> None:
            self.day = day

        def process(self) -> None: ...

    with pytest.raises(TypeError, match="task report"):
        Report.enqueue()
    Report.enqueue("monday")


def test_a_transactional_task_is_checked_without_the_connection_the_worker_passes(app: laneway.App) -> None:
    @app.task(name="tx", transactional=True)
    def tx(order: int, *, connection: Any) -> None: ...

    tx.enqueue(1)
    with pytest.raises(TypeError, match="task tx"):
        tx.enqueue()


def test_send_task_of_a_task_registered_elsewhere_is_not_checked(app: laneway.App) -> None:
    app.send_task("elsewhere.task", (1, 2, 3), {"any": "thing"})
    assert len(app.backend.list_jobs()) == 1


@pytest.mark.parametrize(
    ("schedule", "options", "error", "named"),
    [
        ({"cron": "0 0 31 2 *"}, {}, laneway.ConfigError, "never fires"),
        ({"every": math.nan}, {}, laneway.ConfigError, "every"),
        ({"every": math.inf}, {}, laneway.ConfigError, "every"),
        ({"every": 1}, {"priority": 999}, laneway.ConfigError, "priority"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_when_it_is_registered(
    app: laneway.App, schedule: dict[str, Any], options: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named):
        app.periodic(schedule.get("cron"), every=schedule.get("every"), **options)(lambda: None)
    assert app.schedules == {} and app.tasks == {}


def test_a_periodic_task_that_needs_arguments_is_refused_when_it_is_registered(app: laneway.App) -> None:
    def needs(x: int) -> None: ...

    with pytest.raises(TypeError, match="needs"):
        app.periodic(every=1, name="needs")(needs)
    assert app.schedules == {} and app.tasks == {}


def test_a_schedule_that_fails_to_enqueue_does_not_hold_up_the_others(
    app: laneway.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.periodic(every=1, name="a_first")(lambda: None)
    app.periodic(every=1, name="b_second")(lambda: None)
    real = app.backend.claim_tick

    def claim_tick(name: str, tick: float, job: Any) -> bool:
        if name == "a_first":
            raise RuntimeError("the backend refused this one")
        return real(name, tick, job)

    monkeypatch.setattr(app.backend, "claim_tick", claim_tick)
    app.worker()._tick_schedules()
    assert [j.task for j in app.backend.list_jobs()] == ["b_second"]


@pytest.mark.parametrize("bad", [3, [[1], [2]], [(1, {})], ((1,), [1])])
def test_a_malformed_call_in_enqueue_many_is_named_and_nothing_is_enqueued(
    app: laneway.App, bad: Any
) -> None:
    @app.task
    def t(x: int = 0) -> None: ...

    calls = [((1,), {}), ((2,), {}), bad]
    with pytest.raises(TypeError, match="call 2 must be an"):
        t.enqueue_many(calls)
    _nothing_enqueued(app)


@pytest.mark.parametrize(("args", "kwargs"), [("abc", {}), (5, {}), ((1,), [1])])
def test_send_task_refuses_args_that_are_not_a_list_and_kwargs_that_are_not_a_mapping(
    app: laneway.App, args: Any, kwargs: Any
) -> None:
    with pytest.raises(TypeError, match="args, kwargs"):
        app.send_task("elsewhere.task", args, kwargs)
    _nothing_enqueued(app)


def test_an_argument_nested_too_deeply_is_an_encode_error(app: laneway.App) -> None:
    @app.task
    def t(x: Any) -> None: ...

    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(laneway.EncodeError, match="nested too deeply"):
        t.enqueue(deep)
    _nothing_enqueued(app)


@pytest.mark.parametrize("target", [5, "name"])
def test_app_task_given_something_that_is_not_callable_says_so(app: laneway.App, target: Any) -> None:
    with pytest.raises(TypeError, match="function or a class"):
        app.task(target)


@pytest.mark.parametrize("name", ["laneway.message", "laneway.foo"])
def test_task_names_in_laneways_own_space_are_refused(app: laneway.App, name: str) -> None:
    with pytest.raises(laneway.ConfigError, match="laneway's own"):
        app.task(name=name)(lambda: None)
    with pytest.raises(laneway.ConfigError, match="laneway's own"):
        app.periodic(every=60, name=name)(lambda: None)


def test_an_empty_task_name_is_refused_not_replaced_by_the_default(app: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="task name"):
        app.task(name="")(lambda: None)


def test_a_task_priority_out_of_range_is_refused_when_the_task_is_registered(app: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="priority"):
        app.task(name="p", priority=999)(lambda: None)
    mapped = laneway.App("memory://mapped", priority_map={999: laneway.HIGH})
    mapped.task(name="p", priority=999)(lambda: None)  # a legacy number the map turns into a level


def test_get_job_with_an_id_that_is_not_a_string_is_a_type_error(app: laneway.App) -> None:
    with pytest.raises(TypeError, match="job ids are strings"):
        app.get_job(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "named"), [({"batch": 0}, "batch"), ({"batch": "2"}, "batch"), ({"lease_s": -1}, "lease_s")]
)
def test_a_low_level_claim_with_a_bad_batch_or_lease_is_refused(
    app: laneway.App, settings: dict[str, Any], named: str
) -> None:
    app.lane("l", queue="messages").send("hello")
    with pytest.raises(laneway.ConfigError, match=named):
        app.claim("messages", **settings)


def test_bus_and_result_durations_are_checked(app: laneway.App) -> None:
    @app.task
    def t() -> None: ...

    job = t.enqueue()
    with pytest.raises(laneway.ConfigError, match="timeout"):
        job.result(timeout="x")  # type: ignore[arg-type]
    with pytest.raises(laneway.ConfigError, match="registry_ttl_s"):
        app.configure_bus(registry_ttl_s=math.nan)
    with pytest.raises(laneway.ConfigError, match="delay"):
        app.publish("order.placed", {}, delay=math.inf)


def _sig_cases() -> list[Any]:
    def a(x, y=1): ...  # type: ignore[no-untyped-def]
    def b(x, /, y, *, z, w=2): ...  # type: ignore[no-untyped-def]
    def c(*args, **kwargs): ...  # type: ignore[no-untyped-def]
    def d(x, *args, k=1, **kw): ...  # type: ignore[no-untyped-def]
    def e(): ...  # type: ignore[no-untyped-def]
    def f(x, /, **kw): ...  # type: ignore[no-untyped-def]

    return [a, b, c, d, e, f]


@pytest.mark.parametrize("fn", _sig_cases())
def test_the_quick_call_check_agrees_with_signature_bind(fn: Any) -> None:
    import inspect
    import itertools

    from laneway._task import CallShape

    shape, sig = CallShape(inspect.signature(fn)), inspect.signature(fn)
    names = ["x", "y", "z", "w", "k", "other"]
    for n_args in range(4):
        for n_kw in range(3):
            for keys in itertools.combinations(names, n_kw):
                args, kwargs = tuple(range(n_args)), {k: 0 for k in keys}
                try:
                    sig.bind(*args, **kwargs)
                    expected = True
                except TypeError:
                    expected = False
                try:
                    shape.check("t", args, kwargs)
                    got = True
                except TypeError:
                    got = False
                assert got == expected, (fn.__name__, args, kwargs)


def test_a_decorated_task_is_checked_against_its_wrapper_not_the_wrapped_function(app: laneway.App) -> None:
    import functools

    def inject(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn("SESSION", *args, **kwargs)

        return wrapper

    @app.task(name="injected")
    @inject
    def injected(session: str, x: int) -> None: ...

    injected.enqueue(5)
    assert len(app.backend.list_jobs()) == 1


def test_a_connection_parameter_is_the_callers_argument_unless_the_task_is_transactional(
    app: laneway.App,
) -> None:
    @app.task(name="withconn")
    def withconn(host: str, connection: Any = None) -> None: ...

    withconn.enqueue("h", "conn-name")
    assert len(app.backend.list_jobs()) == 1


def test_registering_a_periodic_task_runs_no_enqueue_middleware() -> None:
    seen: list[str] = []

    def count(envelope: Any, call_next: Any) -> Any:
        seen.append(envelope.task.name)
        return call_next(envelope)

    app = laneway.App("memory://no-middleware-at-registration", enqueue_middleware=[count])
    app.periodic(every=60, name="tick")(lambda: None)
    assert seen == []


def test_the_low_level_lane_api_needs_a_lane_and_a_real_lease(app: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="lane id"):
        app.lane(None)  # type: ignore[arg-type]
    app.lane("L").send("m")
    with pytest.raises(laneway.ConfigError, match="lease_s"):
        app.claim("default", lease_s=0)  # used to mean the default lease
    batch = app.claim("default")
    assert batch is not None
    with pytest.raises(laneway.ConfigError, match="lease_s"):
        batch.extend(0)


def test_an_async_def_hook_is_refused_at_registration_not_silently_never_run(app: laneway.App) -> None:
    async def on_success(job: laneway.Job) -> None: ...

    with pytest.raises(laneway.ConfigError, match="success hook .* is async def"):

        @app.task(name="f", success=on_success)
        def f() -> None: ...

    with pytest.raises(laneway.ConfigError, match="after hook .*A.after.* is async def"):

        @app.task(name="c")
        class A:
            async def process(self) -> None: ...

            async def after(self, job: laneway.Job) -> None: ...

    assert "f" not in app.tasks and "c" not in app.tasks
