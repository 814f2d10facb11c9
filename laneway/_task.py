"""Tasks: registered functions or classes, and the options a call is enqueued with."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _constants as C
from ._checks import count, seconds
from ._errors import ConfigError
from ._names import check_key, check_lane, check_name
from ._records import OnDead

if TYPE_CHECKING:
    from ._app import App
    from ._codec import Call
    from ._job import Job

Hook = Callable[..., Any]
HOOK_NAMES = ("enqueue", "before", "after", "success", "error", "failure")
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Options:
    """How a call is enqueued. ``None`` means "the task's or app's default"."""

    queue: str | None = None
    lane: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: float | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    unique: str | None = None
    result_ttl: float | None = None
    on_dead: OnDead | None = None
    connection: Any = None

    def merge(self, **changes: Any) -> Options:
        """A copy with ``changes`` validated and applied (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; options are {sorted(known)}")
        return replace(self, **_validate(changes))


def call_pair(call: Any, index: int | None = None) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """``call`` if it is an ``(args, kwargs)`` pair (a list or tuple, and a mapping), else a
    ``TypeError`` naming it (``index``: its place in ``enqueue_many``'s list)."""
    if (
        isinstance(call, (tuple, list))
        and len(call) == 2
        and isinstance(call[0], (tuple, list))
        and isinstance(call[1], Mapping)
    ):
        return call[0], call[1]
    where = "a call" if index is None else f"call {index}"
    raise TypeError(f"{where} must be an (args, kwargs) pair such as ((1, 2), {{}}), not {call!r:.200}")


def _validate(opts: dict[str, Any]) -> dict[str, Any]:
    out = dict(opts)
    if out.get("queue") is not None:
        check_name(out["queue"], "queue")
    if "lane" in out:
        out["lane"] = check_lane(out["lane"])
    for key in ("delay", "timeout", "result_ttl"):
        if out.get(key) is not None:
            out[key] = seconds(out[key], key, positive=key == "timeout")
    run_at = out.get("run_at")
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ConfigError("run_at must be a timezone-aware datetime (naive times are ambiguous)")
        run_at = out["run_at"] = run_at.timestamp()
    if run_at is not None and (
        isinstance(run_at, bool) or not isinstance(run_at, (int, float)) or not 0 <= run_at <= C.MAX_EPOCH_S
    ):
        raise ConfigError(
            "run_at must be an aware datetime or epoch seconds (not milliseconds) from 1970 to 3000, "
            f"not {run_at!r}"
        )
    if out.get("max_attempts") is not None:
        count(out["max_attempts"], "max_attempts", most=C.MAX_ATTEMPTS_LIMIT)
    if out.get("unique") is not None:
        check_key(out["unique"], "unique", C.UNIQUE_MAX_LEN)
    if out.get("on_dead") is not None:
        try:
            out["on_dead"] = OnDead(out["on_dead"])
        except ValueError:
            raise ConfigError(f"on_dead must be 'skip' or 'block', not {out['on_dead']!r}") from None
    return out


@dataclass(frozen=True, slots=True)
class Hooks:
    """Lifecycle callbacks. Each takes the ``Job``; ``error`` also takes the exception."""

    enqueue: Hook | None = None
    before: Hook | None = None
    after: Hook | None = None
    success: Hook | None = None
    error: Hook | None = None
    failure: Hook | None = None

    def __post_init__(self) -> None:
        for name in HOOK_NAMES:
            check_hook(name, getattr(self, name))


def check_hook(name: str, hook: Any) -> None:
    """Refuse a hook that is not a plain callable: hooks are called, never awaited, so an
    ``async def`` hook would silently never run."""
    if hook is None:
        return
    if not callable(hook):
        raise ConfigError(f"the {name} hook must be callable(job), not {hook!r}")
    if inspect.iscoroutinefunction(hook):
        raise ConfigError(
            f"the {name} hook {getattr(hook, '__qualname__', hook)!r} is async def: hooks are called,"
            " not awaited, so it would never run; make it a plain def"
        )


class CallShape:
    """What calls a signature accepts, checked in well under a microsecond for the common
    cases (``Signature.bind`` takes 2-3 µs, a tenth of a bulk enqueue's cost per job); a
    call the quick checks doubt is bound for real, for Python's own error message."""

    __slots__ = ("keywords", "most", "names", "positional_only", "required", "signature")

    def __init__(self, signature: inspect.Signature) -> None:
        kinds = inspect.Parameter
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        self.signature = signature
        self.most = None if any(p.kind is kinds.VAR_POSITIONAL for p in params) else len(positional)
        self.names = [p.name for p in positional]
        named = {p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
        self.keywords = None if any(p.kind is kinds.VAR_KEYWORD for p in params) else frozenset(named)
        self.positional_only = frozenset(p.name for p in positional if p.kind is kinds.POSITIONAL_ONLY)
        self.required = [
            (positional.index(p) if p in positional else -1, p.name)
            for p in params
            if p.default is kinds.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
        ]

    def check(self, task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """``TypeError`` naming ``task`` if ``args`` and ``kwargs`` do not fit."""
        n = len(args)
        fits = self.most is None or n <= self.most
        for key in kwargs if fits else ():
            if (self.keywords is not None and key not in self.keywords) or key in self.names[:n]:
                fits = False
                break
        for pos, name in self.required if fits else ():
            if not (0 <= pos < n) and name not in kwargs:
                fits = False
                break
        if fits and not (
            self.positional_only and self.keywords is None and self.positional_only & kwargs.keys()
        ):
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"task {task}: {exc}; nothing was enqueued") from None


@dataclass(slots=True)
class Prepared:
    """One call ready to run: the callable to invoke and the hooks that go with it."""

    run: Callable[[], Any]
    hooks: Hooks


class _Enqueuer:
    """``enqueue``, ``enqueue_many`` and ``enqueue_async`` over a task and options."""

    task: Task
    opts: Options

    def options(self, **changes: Any) -> BoundTask:
        """A copy of this task bound to options (queue, lane, priority, delay, run_at,
        max_attempts, timeout, unique, result_ttl, on_dead, connection)."""
        return BoundTask(self.task, self.opts.merge(**changes))

    def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Enqueue one call; returns its ``Job`` (or the pending job with the same unique key).

        ``connection=`` here is taken as the transaction to enqueue in, unless the task
        itself has a parameter of that name (then use ``options(connection=...)``).
        """
        opts = self._pop_connection(kwargs)
        return self.task.app._enqueue(self.task, [(args, kwargs)], opts)[0]

    def enqueue_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[Job]:
        """Enqueue many ``(args, kwargs)`` calls in one round trip, all or none."""
        return self.task.app._enqueue(
            self.task, [call_pair(call, i) for i, call in enumerate(calls)], self.opts
        )

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> Job:
        """``enqueue`` for asyncio producers."""
        opts = self._pop_connection(kwargs)
        jobs = await self.task.app._enqueue_async(self.task, [(args, kwargs)], opts)
        return jobs[0]

    def _pop_connection(self, kwargs: dict[str, Any]) -> Options:
        if "connection" in kwargs and not self.task.takes_connection:
            return self.opts.merge(connection=kwargs.pop("connection"))
        return self.opts


class Task(_Enqueuer):
    """A registered task. Call it to run it here; ``enqueue`` it to run it on a worker."""

    def __init__(
        self,
        app: App,
        target: Callable[..., Any] | type,
        *,
        name: str,
        opts: Options,
        hooks: Hooks,
        backoff_s: float,
        backoff_max_s: float,
    ) -> None:
        self.app = app
        self.task = self
        self.target = target
        self.name = check_name(name, "task name")
        self.opts = opts
        self.hooks = hooks
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.transactional = False
        self.is_class = inspect.isclass(target)
        if self.is_class and not callable(getattr(target, "process", None)):
            raise ConfigError(f"class task {name!r} needs a process(self) method")
        func = getattr(target, "process", None) if self.is_class else target
        self.is_async = inspect.iscoroutinefunction(func)
        sig_target = target.__init__ if self.is_class else target  # type: ignore[misc]
        try:
            self.takes_connection = "connection" in inspect.signature(sig_target).parameters
        except (TypeError, ValueError):
            self.takes_connection = False
        self.shape: CallShape | None = None
        """Set by ``App.task``: enqueues are checked against it (see ``check_args``)."""
        self.own_enqueue_hook = self.is_class and callable(getattr(target, "enqueue", None))
        """A class task whose class defines ``enqueue``: the hook is a method of an instance."""
        if self.is_class:
            for hook in HOOK_NAMES:
                check_hook(hook, getattr(target, hook, None))

    def check_args(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` naming the task if a call with ``args`` and ``kwargs`` would
        not bind to its signature (as calling it would), so a bad call is refused at
        enqueue instead of failing every attempt on a worker. Tasks without one (``send_task``
        of a task registered elsewhere) are not checked; a decorated function is checked
        against its outermost signature (``functools.wraps`` is not followed)."""
        if self.shape is None:
            return
        if self.transactional and "connection" not in kwargs:
            kwargs = {**kwargs, "connection": None}  # the worker passes it
        self.shape.check(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.opts.queue}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now, without a queue."""
        return self.prepare_args(list(args), kwargs).run()

    def prepare(self, call: Call) -> Prepared:
        """Build what the worker runs for one decoded call."""
        return self.prepare_args(call.args, call.kwargs)

    def prepare_args(self, args: list[Any], kwargs: dict[str, Any]) -> Prepared:
        if not self.is_class:
            target = self.target
            return Prepared(lambda: target(*args, **kwargs), self.hooks)
        instance = self.target(*args, **kwargs)
        found = {h: getattr(instance, h, None) for h in HOOK_NAMES}
        process: Callable[[], Any] = instance.process
        # a hook the class does not define may be given as a keyword, as for a function task
        return Prepared(
            process, Hooks(**{h: v if callable(v) else getattr(self.hooks, h) for h, v in found.items()})
        )


class BoundTask(_Enqueuer):
    """A task with options applied; made by ``Task.options(...)``."""

    def __init__(self, task: Task, opts: Options) -> None:
        self.task = task
        self.opts = opts

    def __repr__(self) -> str:
        return f"<BoundTask {self.task.name} {self.opts}>"
