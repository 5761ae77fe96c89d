"""The guard: while a check runs the learner's function, the library's own answer fails.

Every exercise asks the learner to write something the library already has (lab 01's
distance is ``ll.distances.l2``...). A check compares the learner's function with the
library's, so an answer that just calls the library would pass without doing the
exercise. While a check calls the learner's function, the guard therefore swaps the
*code objects* of that exercise's forbidden functions for a stub that raises
:class:`LibraryCallForbidden` ("you called ``ll.…``; write it yourself"), and puts the
originals back afterwards (``try``/``finally``). Swapping the code, not the module
attribute, also catches aliases bound earlier (``from leakage_lab.distances import l2 as
mine``), ``functools.partial`` objects and closures built on them, and jitted functions
(their Python function is swapped and their compilation cache cleared, so they retrace).

Each check declares its exercise with :func:`exercise`: the ``forbidden`` functions (the
library's version of the answer and its building blocks) and the ``allowed`` lower-level
helpers the exercise may call (documentation for the learner, and tested: calling an
allowed helper never reaches a forbidden one). :data:`EXERCISES` holds every declaration.

The check's own reference values are computed outside the learner's calls, so the library
works normally for the check. What the guard does not stop: copying the library's source
into the answer, or rebuilding a function from a saved code object during the call. It
stops the one-line delegation that made every self-check pass.
"""

from __future__ import annotations

import functools
import gc
import importlib
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass

from leakage_lab.checks._common import CheckFailed

__all__ = ["EXERCISES", "Exercise", "LibraryCallForbidden", "exercise", "guarded"]


class LibraryCallForbidden(CheckFailed):
    """The learner's function called the library's own answer to the exercise."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check, what the answer may not call, and what it may.

    Attributes:
        check: the check's name in ``ll.checks``.
        forbidden: dotted names (``"leakage_lab.distances.l2"``) of the library functions
            the exercise asks the learner to write, and the helpers that compute it whole.
        allowed: dotted names of lower-level library helpers the answer may use.
    """

    check: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def hint(self, called: str) -> str:
        short = _short(called)
        allowed = ", ".join(f"`{_short(a)}`" for a in self.allowed)
        tail = (f" From the library you may use {allowed}." if allowed
                else " Use jax.numpy / numpy directly.")
        return (f"you called `{short}`, the library's own answer to this exercise; write it "
                f"yourself.{tail}")


EXERCISES: dict[str, Exercise] = {}
"""Every exercise's declaration, by check name (filled by :func:`exercise`)."""


def _short(dotted: str) -> str:
    return "ll." + dotted.removeprefix("leakage_lab.")


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _python_function(obj) -> tuple[types.FunctionType, list]:
    """The plain Python function under ``obj`` and the jitted wrappers met on the way."""
    jitted = []
    for _ in range(10):
        if isinstance(obj, types.FunctionType):
            return obj, jitted
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif hasattr(obj, "clear_cache") and hasattr(obj, "_fun"):  # jax.jit
            jitted.append(obj)
            obj = obj._fun
        elif hasattr(obj, "__wrapped__"):  # functools.wraps, lru_cache
            obj = obj.__wrapped__
        else:
            break
    raise TypeError(f"the guard cannot swap the code of {obj!r}")


def _stub_code(original: types.CodeType, called: str) -> types.CodeType:
    """A code object that raises LibraryCallForbidden, with ``original``'s free variables
    (so it fits the closures of functions made by a factory)."""
    free = [f"_free{i}" for i in range(len(original.co_freevars))]
    lines = ["def _factory():"]
    lines += [f"    {name} = None" for name in free]
    lines += ["    def stub(*args, **kwargs):"]
    if free:
        lines += [f"        ({', '.join(free)},)"]
    lines += ["        __import__('leakage_lab.checks._guard', fromlist=['_'])"
              f"._forbidden_call({called!r})",
              "    return stub"]
    namespace: dict = {}
    exec(compile("\n".join(lines), f"<forbidden {called}>", "exec"), namespace)  # noqa: S102
    code = namespace["_factory"]().__code__
    return code.replace(co_name=original.co_name, co_qualname=original.co_qualname)


class _State(threading.local):
    def __init__(self):
        self.active: Exercise | None = None
        self.called: str | None = None
        self.depth = 0


_STATE = _State()


def _forbidden_call(called: str) -> None:
    """Called by the stubs: remembers the call (an answer that catches the error still
    fails) and raises with the exercise's hint."""
    _STATE.called = _STATE.called or called
    spec = _STATE.active
    raise LibraryCallForbidden(spec.hint(called) if spec else f"you called `{_short(called)}`")


class _Swap:
    """The forbidden functions of one exercise, found once, swapped and restored per call."""

    def __init__(self, spec: Exercise):
        self.spec = spec
        self.targets: list[tuple[types.FunctionType, types.CodeType, types.CodeType]] = []
        self.jitted: list = []
        for dotted in spec.forbidden:
            function, jitted = _python_function(_resolve(dotted))
            self.jitted += jitted
            code = function.__code__
            stub = _stub_code(code, dotted)
            # Every live function running this code: the module's, aliases are the same
            # object, closures/partials made from it share the code.
            for ref in gc.get_referrers(code):
                if isinstance(ref, types.FunctionType) and ref.__code__ is code:
                    self.targets.append((ref, code, stub))
        for dotted in spec.allowed:  # declared helpers exist (a renamed one is a bug)
            _resolve(dotted)

    def __enter__(self):
        for fn, _, stub in self.targets:
            fn.__code__ = stub
        for jitted in self.jitted:
            jitted.clear_cache()
        return self

    def __exit__(self, *exc):
        for fn, code, _ in self.targets:
            fn.__code__ = code
        for jitted in self.jitted:  # nothing compiled from a stub stays cached
            jitted.clear_cache()
        return False


def guarded(fn: Callable, spec: Exercise) -> Callable:
    """``fn`` wrapped so that each call runs with ``spec``'s forbidden functions failing.

    A forbidden call fails the call with the hint even when the learner's code catches
    the error. A jitted ``fn`` has its compilation cache cleared first, so it retraces
    (a cached trace would skip the library call).
    """
    swap = _Swap(spec)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _STATE.depth:  # a recursive call: already guarded
            return fn(*args, **kwargs)
        if hasattr(fn, "clear_cache"):
            fn.clear_cache()
        _STATE.active, _STATE.called, _STATE.depth = spec, None, 1
        try:
            with swap:
                result = fn(*args, **kwargs)
            if _STATE.called:
                raise LibraryCallForbidden(spec.hint(_STATE.called))
            return result
        finally:
            _STATE.active, _STATE.depth = None, 0

    return call


def exercise(forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()):
    """Declares a check's exercise; the check then sees the learner's function guarded."""

    def decorate(check: Callable) -> Callable:
        spec = Exercise(check.__name__, tuple(forbidden), tuple(allowed))
        EXERCISES[spec.check] = spec

        @functools.wraps(check)
        def run(fn: Callable, *args, **kwargs):
            return check(guarded(fn, spec), *args, **kwargs)

        run.exercise = spec
        return run

    return decorate
