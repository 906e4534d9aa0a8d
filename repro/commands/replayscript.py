"""`repro replay --script`: a recorded run as a self-contained bash script.

The script clones the commit into a temporary worktree, applies the patch, restores the
untracked files, sets the recorded environment and runs the command; every word is quoted so
that bash reads it back unchanged and `cat` cannot redraw the terminal. Pure: returns text.
"""

from __future__ import annotations

import base64
import shlex
from pathlib import Path, PurePosixPath

from repro.child import seeding
from repro.commands import run as runflow
from repro.commands.replay import Plan, from_checkout, replayable_env
from repro.record import manifest, redact


def _shell_quote(word: str) -> str:
    """shlex.quote, but a word with control characters (ESC, CR...) as bash's `$'...'` with
    them escaped: the same word for bash, and `cat script` cannot redraw the terminal."""
    if word.isprintable():
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(c) for c in word) + "'"


def _ansi_c(c: str) -> str:
    n = ord(c)
    if c in "\\'":
        return "\\" + c
    if c.isprintable():
        return c
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): that byte
        return f"\\x{n - 0xDC00:02x}"
    return f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def script(plan: Plan, m: manifest.Manifest, root: Path) -> str:
    """A bash script that reproduces the run without repro: worktree, patch, env, command."""
    injected = replayable_env(m.determinism.env, "determinism.env")
    # sitecustomize.py and its `_repro_hook_*.py` helpers: the whole hook, as `repro run` has it.
    hook_files = {p.name: p.read_text(encoding="utf-8")
                  for p in sorted(seeding.hook_dir().glob("*.py"))}
    q = _shell_quote
    lines = [
        "#!/usr/bin/env bash",
        f"# Reproduces repro run {plan.run_id} without repro installed.",
        "# Usage: bash this-script [CLONE]   (default: the git repository of the current dir)",
        "set -euo pipefail",
        'repo="$(cd "${1:-.}" && git rev-parse --show-toplevel)"',
        'work="$(mktemp -d)"',
        f'git -C "$repo" worktree add --quiet --detach "$work/tree" {q(plan.commit)}',
        'cd "$work/tree"',
    ]
    for n, (rel, commit, sub_patch) in enumerate(plan.submodules):
        # From the clone's own copy of the submodule: no network.
        lines += [f'git clone --quiet --shared --no-checkout "$repo"/{q(rel)} {q(rel)}',
                  f"git -C {q(rel)} checkout --quiet --detach {q(commit or 'HEAD')}"]
        if sub_patch is not None:
            encoded = base64.b64encode(sub_patch.read_bytes()).decode()
            lines += [f"base64 -d > \"$work/submodule-{n}.patch\" <<'REPRO_EOF'",
                      *_wrap(encoded), "REPRO_EOF",
                      f'git -C {q(rel)} apply --binary "$work/submodule-{n}.patch"']
    if plan.patch is not None:
        encoded = base64.b64encode(plan.patch.read_bytes()).decode()
        lines += ["base64 -d > \"$work/code.patch\" <<'REPRO_EOF'", *_wrap(encoded), "REPRO_EOF",
                  'git apply --binary "$work/code.patch"']
    for rel, copy, _entry in plan.untracked:
        if copy is None or not copy.is_file():
            lines.append(f"cp {q(rel)} {q(rel)} 2>/dev/null || "
                         f"cp \"$repo\"/{q(rel)} {q(rel)}  # not copied at record time")
            continue
        encoded = base64.b64encode(copy.read_bytes()).decode()
        lines += [f"mkdir -p {q(str(Path(rel).parent))}",
                  f"base64 -d > {q(rel)} <<'REPRO_EOF'", *_wrap(encoded), "REPRO_EOF"]
    placed: list[tuple[str, ...]] = []
    for i in sorted(plan.inputs, key=lambda i: len(PurePosixPath(i.path).parts)):
        parts = PurePosixPath(i.path).parts
        if not parts or Path(i.path).is_absolute() or any(parts[:len(p)] == p for p in placed):
            continue  # read in place, or inside an input copied whole
        placed.append(parts)
        # Copies, never links: the script must not write into the user's data either.
        p, src = q(i.path), f'"$repo"/{q(i.path)}'
        lines.append(f"if [ ! -e {p} ] && [ ! -L {p} ]; then mkdir -p {q(str(Path(i.path).parent))}; "
                     f"cp -RH --reflink=auto {src} {p} 2>/dev/null || {{ rm -rf {p}; "
                     f"cp -RH {src} {p}; }}; elif [ -d {p} ] && [ ! -L {p} ] && [ -d {src} ]; "
                     f"then cp -RHn {src}/. {p}/; fi")
        if (root / i.path).is_dir():
            # A link inside the copy that leads out of the worktree (to the user's file) is
            # replaced by a copy of that file; one to a directory is named.
            lines.append(
                f'find {p} -type l | while IFS= read -r l; do t="$(readlink -f -- "$l")" || '
                'continue; case "$t" in "$(cd "$work" && pwd -P)"/*) ;; *) if [ -f "$t" ]; then '
                'cp -- "$t" "$l.repro-copy" && mv -f -- "$l.repro-copy" "$l"; else echo "warning: '
                '$l leads to $t, outside the replay" >&2; fi;; esac; done')
    lines += [
        "# The seeding hook repro injects (standard library only), so an unmodified script",
        "# gets the same seeds and deterministic settings.",
        'mkdir -p "$work/hook" "$work/probe"',
        *(line for name, src in hook_files.items()
          for line in (f"cat > \"$work/hook/{name}\" <<'REPRO_EOF'", src.rstrip("\n"),
                       "REPRO_EOF")),
        'export PYTHONPATH="$work/hook${PYTHONPATH:+:$PYTHONPATH}"',
        'export REPRO_HOOK_OUT="$work/probe"',
    ]
    for k, v in sorted({**plan.restored_env, **injected, **plan.user_env}.items()):
        if k in runflow.RUN_SPECIFIC:
            continue
        lines.append(f"export {k}={q(v)}")
    picked = from_checkout(plan, root, None)
    command = " ".join(f'"$repo"/{q(str(Path(plan.cwd, w)))}' if i in picked
                       else redact.shell_word(w, q) for i, w in enumerate(plan.argv))
    lines += [f"cd {q(plan.cwd)}", command,
              # The worktree stays registered in the clone until removed: say how.
              'echo "when done: git -C \\"$repo\\" worktree remove --force \\"$work/tree\\""'
              ' "&& rm -rf \\"$work\\"" >&2',
              'echo "outputs are in $work/tree" >&2']
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 76) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]
