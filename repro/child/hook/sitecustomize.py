"""repro's hook inside every Python process of a run: seeds, deterministic kernels, a probe.

Python imports this file as `sitecustomize` because `repro run` prepends its directory to
PYTHONPATH (design §3). It owns: seeding `random`, numpy, torch and TensorFlow right after the
program first imports each (for `random` that is the same as seeding at start-up, since no draw
can come before its import, without its milliseconds of import for programs that never use
it); turning on deterministic kernels at `warn`/`strict`; recording the
seeds the program sets itself and what the hook did, as JSON files in REPRO_HOOK_OUT (read by
repro/child/hookprobe.py); then loading the `sitecustomize` it shadows. It must: use the standard
library only; never import torch, numpy or TensorFlow itself (it reacts to the program importing
them); never raise into the program (failures are recorded in the probe); print nothing except
`repro:` lines on stderr; stay cheap at start-up (json, importlib.metadata and the package scan
wait for exit); do nothing but the chain-load when REPRO_SEED is unset.

What only the probe at exit needs (the package listing, argv redaction, credential stripping,
JSON text without the json package) is _repro_hook_probe.py beside this file, imported at exit
only. Any other file in this directory needs a name no user module has (`_repro_hook_*`):
the directory is on the child's PYTHONPATH until _chain_load takes it off.

Files in REPRO_HOOK_OUT, one pair per process, `<stem>` being `hook-<pid>-<start time ns>`:
  <stem>.marker.json  written at start-up, so a process that is killed still shows the hook ran
  <stem>.probe.json   written at exit (atexit): a process ended by os._exit or a signal has none

A probe holds: schema, pid, ppid, depth, rank, level, seed, effective_seed, started_at,
finished_at, argv, orig_argv, hash_seed, python {version, implementation, executable}, flags
(sys.flags that matter), imported, seeded, script_seeds [{call, value, caller}],
script_seeds_dropped, torch {version, cuda, cudnn, cuda_initialized, devices?} or null,
threads {OMP/MKL/OPENBLAS_NUM_THREADS, torch_intra_op}, deterministic_algorithms (torch's at
exit, null without torch), torch_settings, overridden (settings the hook made that the program
undid), uncaught, nondeterministic_error, errors [{stage, error}], and for depth 0 only
packages {PEP 503 name: version} and package_sources {name: {url, editable, vcs?, commit?}}.

Per-rank seeds: a process whose environment has RANK=r (torchrun, accelerate) seeds every RNG
with `_rank_seed(seed, r)`: output r+1 of a SplitMix64 generator started at the run's seed,
truncated to 32 bits. Ranks get independent streams, and the same ones on every replay. A
process without RANK uses the run's seed itself.

Nesting: REPRO_HOOK_DEPTH (unset for the command's own process) is incremented in os.environ,
so the processes it starts see depth + 1. The depth-0 process is the top-level one; only it
lists the installed distributions.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at start-up: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

LEVELS = ("off", "seed", "warn", "strict")
MARKER_SCHEMA = "repro/hook-marker/v1"
PROBE_SCHEMA = "repro/hook-probe/v1"
MAX_SCRIPT_SEEDS = 100  # a program reseeding in a loop must not grow the probe without bound
# Callers whose seeding calls are not the program's own choice: torch's DataLoader workers
# reseed themselves; Lightning's seed_everything is recorded once, as itself.
LIBRARY_PACKAGES = frozenset(
    {"torch", "numpy", "tensorflow", "lightning", "pytorch_lightning", "lightning_fabric"}
)
LIGHTNING_PACKAGES = ("lightning", "pytorch_lightning", "lightning_fabric")
# Modules the hook must see imported to seed them; one imported behind its back is reported.
WATCHED_SEEDABLE = ("random", "numpy", "torch", "tensorflow")
# Where torch's compiler keeps its deterministic flag (`deterministic`, torch >= 2.1).
INDUCTOR_CONFIG = "torch._inductor.config"
# What the hook sets under torch.backends at warn/strict (the deterministic algorithms aside).
TORCH_SETTINGS = {
    "cudnn.deterministic": True,
    "cudnn.benchmark": False,
    "cuda.matmul.allow_tf32": False,  # TF32 matmuls round differently from float32 ones
    "cudnn.allow_tf32": False,
}
_MASK64 = (1 << 64) - 1

_hook: Hook | None = None


def _rank_seed(seed: int, rank: int) -> int:
    """Output `rank + 1` of SplitMix64 seeded with `seed`, in 32 bits (documented above)."""
    z = (seed + (rank + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & 0xFFFFFFFF


def _set_dotted(root: object, dotted: str, value: object) -> None:
    *path, attr = dotted.split(".")
    for name in path:
        root = getattr(root, name)
    setattr(root, attr, value)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _plain(value: object) -> object:
    """A JSON-safe form of a seed value the program passed (numpy ints become ints)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    index = getattr(value, "__index__", None)
    if index is not None:
        try:
            return int(index())
        except Exception:
            pass
    return repr(value)[:200]


class Hook:
    """State of the hook in this process, from start-up to the probe written at exit."""

    def __init__(self, seed_text: str) -> None:
        import time

        environ = os.environ
        self.started_at = time.time()
        self.pid = os.getpid()
        self.stem = f"hook-{self.pid}-{time.time_ns()}"
        self.errors: list[dict[str, str]] = []
        self.seeded: list[str] = []
        self.imported: list[str] = []
        self.script_seeds: list[dict[str, object]] = []
        self.script_seeds_dropped = 0
        self.expected: dict[str, object] = {}  # torch settings the hook made, checked at exit
        self.out = environ.get("REPRO_HOOK_OUT") or None
        self.level = environ.get("REPRO_DETERMINISM", "strict")
        if self.level not in LEVELS:
            self.error("level", f"unknown REPRO_DETERMINISM {self.level!r}; seeding only")
            self.level = "seed"
        self.depth = 0
        depth_text = environ.get("REPRO_HOOK_DEPTH", "0")
        try:
            self.depth = max(0, int(depth_text))
        except ValueError:
            self.error("depth", f"bad REPRO_HOOK_DEPTH {depth_text!r}")
        environ["REPRO_HOOK_DEPTH"] = str(self.depth + 1)
        self.rank: int | None = None
        rank_text = environ.get("RANK")
        if rank_text:
            try:
                self.rank = int(rank_text)
            except ValueError:
                self.error("rank", f"bad RANK {rank_text!r}; seeding as if unranked")
        self.seed: int | None = None
        self.effective_seed: int | None = None
        try:
            self.seed = int(seed_text)
            if not 0 <= self.seed <= 0xFFFFFFFF:
                raise ValueError("out of range 0..2**32-1")
            self.effective_seed = (self.seed if self.rank is None
                                   else _rank_seed(self.seed, self.rank))
        except ValueError as e:
            self.seed = None
            self.error("seed", f"bad REPRO_SEED {seed_text!r} ({e}); nothing seeded")
        self.seeding = self.level != "off" and self.effective_seed is not None
        self.deterministic = self.level in ("warn", "strict")
        self.wrappers: dict[int, Callable[..., Any]] = {}
        self.reacted: set[str] = set()  # watched modules the hook saw being imported
        self.sys_path: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------

    def error(self, stage: str, message: str) -> None:
        self.errors.append({"stage": stage, "error": message})

    def attempt(self, stage: str, action: Callable[..., object], *args: Any) -> bool:
        """Run `action(*args)`; a failure is recorded, never raised."""
        try:
            action(*args)
        except Exception as e:
            self.error(stage, _describe(e))
            return False
        return True

    def write_marker(self) -> None:
        if self.out is None:
            return
        rank = "null" if self.rank is None else str(self.rank)
        body = (f'{{"schema": "{MARKER_SCHEMA}", "pid": {self.pid}, "ppid": {os.getppid()}, '
                f'"depth": {self.depth}, "rank": {rank}, "started_at": {self.started_at:.6f}}}\n')
        path = os.path.join(self.out, self.stem + ".marker.json")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(self.out, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, body.encode())
        finally:
            os.close(fd)

    # -- seeds the program sets itself -------------------------------------------------------

    def recorder(self, call: str, function: Callable[..., Any], *,
                 use_result: bool = False) -> Callable[..., Any]:
        """`function`, forwarding everything, that also records the seed it was given."""
        key = id(function)
        if key in self.wrappers or getattr(function, "__repro_recorder__", False):
            return self.wrappers.get(key, function)
        hook = self

        def recording(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            try:
                caller = sys._getframe(1).f_globals.get("__name__") or "?"
                if caller.partition(".")[0] not in LIBRARY_PACKAGES:
                    if use_result:
                        value = result
                    elif args:
                        value = args[0]
                    else:
                        value = kwargs.get("seed", kwargs.get("a"))
                    hook.note_seed(call, value, caller)
            except Exception as e:
                hook.error("record", _describe(e))
            return result

        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(function, attr, None)
            if isinstance(value, str):
                setattr(recording, attr, value)
        recording.__wrapped__ = function  # type: ignore[attr-defined]
        recording.__repro_recorder__ = True  # type: ignore[attr-defined]
        self.wrappers[key] = recording
        return recording

    def note_seed(self, call: str, value: object, caller: str) -> None:
        if len(self.script_seeds) >= MAX_SCRIPT_SEEDS:
            self.script_seeds_dropped += 1
            return
        self.script_seeds.append({"call": call, "value": _plain(value), "caller": caller})

    def wrap_attribute(self, owner: object, attr: str, call: str,
                       use_result: bool = False) -> None:
        function = getattr(owner, attr, None)
        if callable(function):
            setattr(owner, attr, self.recorder(call, function, use_result=use_result))

    # -- reactions to the program's imports --------------------------------------------------

    def on_random(self, module: ModuleType) -> None:
        if self.seeding and self.attempt("seed random", lambda: module.seed(self.effective_seed)):
            self.seeded.append("random")
        self.attempt("wrap random", lambda: self.wrap_attribute(module, "seed", "random.seed"))

    def on_numpy(self, module: ModuleType) -> None:
        self.imported.append("numpy")
        # numpy >= 2 loads numpy.random lazily: seed it when it arrives, fully initialised.
        random_module = sys.modules.get("numpy.random")
        if random_module is not None:
            self.on_numpy_random(random_module)
        else:
            FINDER.watch("numpy.random", self.on_numpy_random)

    def on_numpy_random(self, module: ModuleType) -> None:
        if self.seeding and self.attempt("seed numpy",
                                         lambda: module.seed(self.effective_seed)):
            self.seeded.append("numpy")
        self.attempt("wrap numpy",
                     lambda: self.wrap_attribute(module, "seed", "numpy.random.seed"))

    def on_torch(self, torch: Any) -> None:
        self.imported.append("torch")
        # manual_seed also seeds CUDA, lazily: it queues the seed until CUDA is initialised.
        if self.seeding and self.attempt("seed torch",
                                         lambda: torch.manual_seed(self.effective_seed)):
            self.seeded.append("torch")
        if self.deterministic:
            warn_only = self.level == "warn"
            # torch.use_deterministic_algorithms(True) is this C call plus
            # `torch._inductor.config.deterministic = True`, and importing that config costs
            # over a second. TORCHINDUCTOR_DETERMINISTIC=1 (injected) makes inductor start
            # deterministic, and on_inductor_config sets the flag if the program loads it.
            if self.attempt("torch deterministic algorithms", lambda: (
                    torch._C._set_deterministic_algorithms(True, warn_only=warn_only))):
                self.expected["deterministic_algorithms"] = True
                self.expected["deterministic_warn_only"] = warn_only
                FINDER.watch(INDUCTOR_CONFIG, self.on_inductor_config)
            for name, value in TORCH_SETTINGS.items():
                if self.attempt(f"torch {name}", _set_dotted, torch, f"backends.{name}", value):
                    self.expected[name] = value
        self.attempt("wrap torch", lambda: self.wrap_torch(torch))

    def on_inductor_config(self, config: ModuleType) -> None:
        """The program loaded torch's compiler: its deterministic mode, as torch's own call."""
        if self.attempt("torch inductor deterministic",
                        lambda: setattr(config, "deterministic", True)):
            self.expected["inductor.deterministic"] = True

    def wrap_torch(self, torch: Any) -> None:
        self.wrap_attribute(torch, "manual_seed", "torch.manual_seed")
        self.wrap_attribute(getattr(torch, "random", None), "manual_seed", "torch.manual_seed")
        cuda = getattr(torch, "cuda", None)  # torch imports torch.cuda; CUDA stays untouched
        self.wrap_attribute(cuda, "manual_seed", "torch.cuda.manual_seed")
        self.wrap_attribute(cuda, "manual_seed_all", "torch.cuda.manual_seed_all")

    def on_tensorflow(self, tf: Any) -> None:
        self.imported.append("tensorflow")
        if self.seeding and self.attempt("seed tensorflow",
                                         lambda: tf.random.set_seed(self.effective_seed)):
            self.seeded.append("tensorflow")
        if self.deterministic:
            # TensorFlow has no warn-only mode: at warn it is as strict as at strict.
            self.attempt("tensorflow op determinism",
                         lambda: tf.config.experimental.enable_op_determinism())
        self.attempt("wrap tensorflow", lambda: self.wrap_attribute(
            tf.random, "set_seed", "tensorflow.random.set_seed"))

    def on_lightning(self, module: ModuleType) -> None:
        name = module.__name__
        if name not in self.imported:
            self.imported.append(name)
        # seed_everything is defined once and re-exported under several names: replace each.
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or mod_name.partition(".")[0] not in LIGHTNING_PACKAGES:
                continue
            self.attempt("wrap lightning", self.wrap_attribute,
                         mod, "seed_everything", "seed_everything", True)

    # -- exit ---------------------------------------------------------------------------------

    def at_exit(self) -> None:
        if os.getpid() != self.pid:  # a forked child exiting normally: not a hook process
            return
        # Set for an uncaught exception whatever sys.excepthook the program installed.
        exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        nondeterministic = None if exc is None else _exit_parts().nondeterministic_message(exc)
        strict = self.level == "strict" and self.expected.get("deterministic_algorithms")
        if nondeterministic is not None and strict:
            try:
                sys.stderr.write(
                    "repro: an op without a deterministic implementation stopped the program "
                    "(--determinism strict); rerun with --determinism warn to let such ops "
                    "only warn, and results may then differ between runs\n")
                sys.stderr.flush()
            except Exception as e:  # stderr closed or replaced: the probe still says it
                self.error("hint", _describe(e))
        for name in WATCHED_SEEDABLE:
            if name in sys.modules and name not in self.reacted:
                self.error(f"import {name}", "imported without the hook (another import "
                           "hook loaded it first): not seeded, settings not applied")
        if self.out is None:
            return
        parts = _exit_parts()
        probe = self.probe(parts, exc, nondeterministic)
        path = os.path.join(self.out, self.stem + ".probe.json")
        tmp = path + ".tmp"
        text = parts.json_text(probe)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
        os.replace(tmp, path)

    def probe(self, parts: ModuleType, exc: BaseException | None,
              nondeterministic: str | None) -> dict[str, Any]:
        """The probe document; `parts` is _repro_hook_probe (see _exit_parts)."""
        import time

        probe: dict[str, Any] = {
            "schema": PROBE_SCHEMA,
            "pid": self.pid,
            "ppid": os.getppid(),
            "depth": self.depth,
            "rank": self.rank,
            "level": self.level,
            "seed": self.seed,
            "effective_seed": self.effective_seed,
            "started_at": round(self.started_at, 6),
            "finished_at": round(time.time(), 6),
            "argv": parts.redact_argv(sys.argv),
            "orig_argv": parts.redact_argv(getattr(sys, "orig_argv", [])),
            "hash_seed": os.environ.get("PYTHONHASHSEED"),
            "imported": self.imported,
            "seeded": self.seeded,
            "script_seeds": self.script_seeds,
            "script_seeds_dropped": self.script_seeds_dropped,
            "uncaught": None if exc is None else _describe(exc),
            "nondeterministic_error": nondeterministic,
        }
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("python", parts.python_info),
            ("flags", parts.flags),
            ("torch", lambda: parts.torch_info(self.error)),
            ("threads", parts.threads),
            ("deterministic", self.deterministic_state),
        ]
        if self.depth == 0:
            steps.append(("packages", lambda: parts.packages(self.sys_path, self.error)))
        for key, step in steps:
            try:
                value = step()
            except Exception as e:
                self.error(key, _describe(e))
                value = None
            if key in ("deterministic", "packages") and isinstance(value, dict):
                probe.update(value)
            else:
                probe[key] = value
        probe["errors"] = self.errors
        return probe

    def deterministic_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"deterministic_algorithms": None, "overridden": []}
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch, "are_deterministic_algorithms_enabled"):
            return state
        actual: dict[str, object] = {
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "deterministic_warn_only":
                bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        }
        for name in TORCH_SETTINGS:
            owner: object = torch.backends
            for part in name.split("."):
                owner = getattr(owner, part, None)
            actual[name] = owner if owner is None else bool(owner)
        inductor = sys.modules.get(INDUCTOR_CONFIG)  # only when the program loaded it
        if inductor is not None:
            actual["inductor.deterministic"] = bool(getattr(inductor, "deterministic", False))
        state["deterministic_algorithms"] = actual["deterministic_algorithms"]
        state["torch_settings"] = actual
        # A setting the hook made that the program changed back: the run is less
        # deterministic than its level says.
        state["overridden"] = [name for name, value in self.expected.items()
                               if actual.get(name) != value]
        return state


def _exit_parts() -> ModuleType:
    """_repro_hook_probe, the file beside this one: imported at exit only, so start-up does not
    pay for what only the probe needs. _chain_load took this directory off sys.path (the
    program must not see it); it is put back for this one import."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        return __import__("_repro_hook_probe")
    finally:
        if sys.path and sys.path[0] == here:
            del sys.path[0]



class PostImportFinder:
    """A meta-path finder that runs a callback right after a watched module first executes.

    It finds the module through the other finders, then wraps that module's loader so the
    callback runs once exec_module has returned, i.e. on the fully initialised module. Every
    other import costs one set lookup.
    """

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[ModuleType], None]] = {}

    def watch(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        module = sys.modules.get(name)
        if module is not None:  # already imported (by a .pth file, say): react now
            _react(callback, module)
        else:
            self.callbacks[name] = callback

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.callbacks:
            return None
        # The callback stays registered until the module executes: importlib.util.find_spec
        # (a common "is torch installed?" check) finds a spec that is never executed.
        try:
            spec = None
            for finder in sys.meta_path:
                find_spec = None if finder is self else getattr(finder, "find_spec", None)
                if find_spec is not None:
                    spec = find_spec(name, path, target)
                    if spec is not None:
                        break
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None
            _wrap_loader(spec.loader, self)
            return spec
        except Exception as e:  # let the import system try again without us
            if _hook is not None:
                _hook.error(f"find {name}", _describe(e))
            return None


def _wrap_loader(loader: Any, finder: PostImportFinder) -> None:
    """Make `loader` run the finder's callback for a module right after executing it.

    Patches the loader instance (loaders are per module, so isinstance checks and every other
    method stay as they were) and removes the patch on first use. A loader serving several
    modules (zipimport) reacts to whichever watched module it executes.
    """
    own = getattr(loader, "__dict__", {})
    previous = own.get("exec_module")
    if getattr(previous, "__repro_hook__", False):
        return  # wrapped already: found twice before being executed
    original = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        if own.get("exec_module") is exec_module:
            if previous is None:
                del loader.exec_module
            else:
                loader.exec_module = previous
        name = getattr(module, "__name__", None)
        callback = finder.callbacks.pop(name, None) if isinstance(name, str) else None
        try:
            original(module)
        except BaseException:
            if callback is not None and isinstance(name, str):
                finder.callbacks.setdefault(name, callback)  # failed import: react to a retry
            raise
        if callback is not None and isinstance(name, str):
            _react(callback, sys.modules.get(name, module))

    exec_module.__repro_hook__ = True  # type: ignore[attr-defined]
    loader.exec_module = exec_module


def _react(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    name = getattr(module, "__name__", "?")
    if _hook is not None:
        _hook.reacted.add(name)
    try:
        callback(module)
    except Exception as e:
        if _hook is not None:
            _hook.error(f"react {name}", _describe(e))


FINDER = PostImportFinder()


def _at_exit() -> None:
    try:
        if _hook is not None:
            _hook.at_exit()
    except BaseException:  # never disturb the program's exit; the probe is simply missing
        pass


def _activate(seed_text: str) -> None:
    global _hook
    hook = _hook = Hook(seed_text)
    hook.attempt("marker", hook.write_marker)
    watches: list[tuple[str, Callable[[Any], None]]] = [
        ("random", hook.on_random),  # seeded when first imported: no draw can come earlier
        ("numpy", hook.on_numpy),
        ("torch", hook.on_torch),
        ("tensorflow", hook.on_tensorflow),
        *[(name, hook.on_lightning) for name in LIGHTNING_PACKAGES],
    ]
    sys.meta_path.insert(0, FINDER)
    for name, callback in watches:
        FINDER.watch(name, callback)
    import atexit

    atexit.register(_at_exit)  # registered first, so it runs last: it sees the final state


def _chain_load() -> None:
    """Leave sys.path as if this hook were absent, then import the sitecustomize it shadows."""
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
    if _hook is not None:
        _hook.sys_path = list(sys.path)
    me = sys.modules.pop("sitecustomize", None)
    try:
        __import__("sitecustomize")
    except ImportError as e:
        if e.name != "sitecustomize":
            raise  # the shadowed module's own failure: site reports it, as without repro
        if me is not None:
            sys.modules["sitecustomize"] = me  # the import system expects an entry back


def _main() -> None:
    seed_text = os.environ.get("REPRO_SEED")
    if seed_text is not None:
        try:
            _activate(seed_text)
        except Exception as e:
            if _hook is not None:
                _hook.error("start-up", _describe(e))
    _chain_load()


_main()
