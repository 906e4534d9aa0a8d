"""Secrets never reach anything repro writes: canaries planted everywhere, then grep."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from repro.capture import environment
from repro.child import seeding
from repro.record import redact
from tests.conftest import PYTHON, git

# The child proves it got the real values (a hash of its argv, never the values themselves).
SCRIPT = """\
import hashlib, json, pathlib, sys
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
import os
seen = [*sys.argv[1:], os.environ.get("HF_HOME", "")]  # a replay must see the credentials too
digest = hashlib.sha256("\\0".join(seen).encode()).hexdigest()
(out / "result.txt").write_text(digest + "\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"args": len(sys.argv) - 1}))
"""
CANARIES = {  # where each is planted -> its value
    "env TF_VAR_db_pass": "canary-tfvar-7f3a",
    "env HF_HUB_ENDPOINT_PASS": "canary-hfpass-91c2",
    "env HF_TOKEN": "canary-hftoken-5d0e",
    "env scp-style": "canary-scp-44b1",
    "env URL": "canary-url-0e9d",
    "file .env": "canary-dotenv-a1b2",
    "file .aws/credentials": "canary-aws-c3d4",
    "file deploy.pem": "canary-pem-e5f6",
    "file config/.env.local": "canary-envlocal-0a0b",
    "argv --api-key X": "canary-apikey-1111",
    "argv --token=X": "canary-token-2222",
    "argv --password X": "canary-password-3333",
    "argv PASSWORD=X": "canary-assign-4444",
    "argv db.password=X": "canary-hydra-5555",
    "argv URL password": "canary-urlpw-6666",
    "argv --pw X": "canary-pw-7777",
}
ARGS = ["--api-key", CANARIES["argv --api-key X"], "--token=" + CANARIES["argv --token=X"],
        "--password", CANARIES["argv --password X"], "PASSWORD=" + CANARIES["argv PASSWORD=X"],
        "db.password=" + CANARIES["argv db.password=X"],
        f"https://me:{CANARIES['argv URL password']}@hub.example/x",
        "--pw", CANARIES["argv --pw X"], "--max-tokens", "64"]
REPLAY_ENV = {
    "REPRO_SECRET_API_KEY": CANARIES["argv --api-key X"],
    "REPRO_SECRET_TOKEN": CANARIES["argv --token=X"],
    "REPRO_SECRET_PASSWORD": CANARIES["argv --password X"],
    "REPRO_SECRET_PASSWORD_2": CANARIES["argv PASSWORD=X"],
    "REPRO_SECRET_DB_PASSWORD": CANARIES["argv db.password=X"],
    "REPRO_SECRET_URL_PASSWORD": CANARIES["argv URL password"],
    "REPRO_SECRET_PW": CANARIES["argv --pw X"],
}


def plant(repo: Path) -> dict[str, str]:
    (repo / "train.py").write_text(SCRIPT)
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "script")
    (repo / ".env").write_text(f"DB_PASSWORD={CANARIES['file .env']}\n")
    (repo / ".aws").mkdir()
    (repo / ".aws" / "credentials").write_text(
        f"[default]\naws_secret_access_key = {CANARIES['file .aws/credentials']}\n")
    (repo / "deploy.pem").write_text(f"-----BEGIN KEY-----\n{CANARIES['file deploy.pem']}\n")
    (repo / "config").mkdir()
    (repo / "config" / ".env.local").write_text(CANARIES["file config/.env.local"])
    (repo / "notes.txt").write_text("an ordinary untracked file\n")
    return {
        **os.environ,
        "TF_VAR_db_pass": CANARIES["env TF_VAR_db_pass"],
        "HF_HUB_ENDPOINT_PASS": CANARIES["env HF_HUB_ENDPOINT_PASS"],
        "HF_TOKEN": CANARIES["env HF_TOKEN"],
        "HF_ENDPOINT": f"user:{CANARIES['env scp-style']}@host:/path",
        "HF_HOME": f"https://me:{CANARIES['env URL']}@hub.example/x?sig=1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def repro(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "repro", *args], cwd=repo, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, env=env)


def leaks(text: str | bytes) -> list[str]:
    raw = text.encode(errors="surrogateescape") if isinstance(text, str) else text
    return [where for where, value in CANARIES.items() if value.encode() in raw]


@pytest.mark.slow
def test_canaries_planted_everywhere_reach_nothing_repro_writes(repo: Path,
                                                              tmp_path: Path) -> None:
    env = plant(repo)
    cmd = ["--output", "out", "--metrics", "metrics.json", "--", PYTHON, "train.py", *ARGS]
    outputs: dict[str, str] = {}
    stdout: dict[str, str] = {}
    for i in (1, 2):
        done = repro(repo, env, "run", "--allow-dirty", *cmd)
        assert done.returncode == 0, done.stderr
        outputs[f"run {i}"] = done.stdout + done.stderr
    assert ".env" in outputs["run 1"] and "hashed, not copied" in outputs["run 1"]
    junit = tmp_path / "verify.xml"
    for args in (["runs", "--json"], ["show", "--json", "latest"],
                 ["diff", "--json", "latest~1", "latest"], ["replay", "--dry-run", "latest"],
                 ["replay", "--script", "latest"],
                 ["verify", "--json", "--junit", str(junit), "latest"]):
        done = repro(repo, {**env, **REPLAY_ENV}, *args)
        assert done.returncode == (1 if args[0] == "diff" else 0), (args, done.stderr)
        outputs[" ".join(args)] = done.stdout + done.stderr
        stdout[args[0]] = done.stdout

    # The secrets did reach the command, unchanged (its result is a hash of its argv), and
    # the replay inside verify got them back from the REPRO_SECRET_* variables.
    report = json.loads(stdout["verify"])
    assert report["verdict"] == "bitwise", report
    show = json.loads(stdout["show"])
    argv = show["command"]["argv"]
    assert argv[:3] == [PYTHON, "train.py", "--api-key"]
    assert redact.placeholder_re().fullmatch(argv[3]) and "$REPRO_SECRET_API_KEY" in argv[3]
    assert argv[-2:] == ["--max-tokens", "64"]  # not a secret: kept as it was
    untracked = {u["path"]: u for u in show["code"]["untracked"]}
    assert untracked[".env"]["copied"] is False and untracked[".env"]["hash"]
    assert untracked["notes.txt"]["copied"] is True
    diff = json.loads(stdout["diff"])
    assert diff["sections"]["command"]["changed"] is False  # same secrets, same placeholders
    assert "${REPRO_SECRET_API_KEY:?" in outputs["replay --script latest"]
    assert "<secret:$REPRO_SECRET_TOKEN:" in stdout["runs"]

    found = {name: leaks(text) for name, text in outputs.items() if leaks(text)}
    for path in [*(repo / ".repro").rglob("*"), junit]:
        if path.is_file() and leaks(path.read_bytes()):
            found[str(path.relative_to(repo) if path.is_relative_to(repo) else path)] = \
                leaks(path.read_bytes())
    assert found == {}


@pytest.mark.slow
def test_replay_takes_secret_arguments_from_the_environment_or_refuses(
        repo: Path, tmp_path: Path) -> None:
    env = plant(repo)
    del env["HF_HOME"]  # --script restores the recorded (credential-free) value
    git(repo, "clean", "-qfdx", "-e", ".repro")
    cmd = ["--output", "out", "--", PYTHON, "train.py", "--api-key", "canary-apikey-1111"]
    assert repro(repo, env, "run", *cmd).returncode == 0
    assert repro(repo, env, "run", *cmd[:-1], "another-key").returncode == 0
    done = repro(repo, env, "diff", "--json", "latest~1", "latest")
    assert json.loads(done.stdout)["sections"]["command"]["changed"] is True  # a different key

    done = repro(repo, env, "replay", "latest~1")
    assert done.returncode == 125
    assert "hint: export REPRO_SECRET_API_KEY" in done.stderr
    done = repro(repo, {**env, "REPRO_SECRET_API_KEY": "another-key"}, "replay", "latest~1")
    assert done.returncode == 125
    assert "REPRO_SECRET_API_KEY does not match" in done.stderr
    assert not leaks(done.stderr)
    done = repro(repo, {**env, "REPRO_SECRET_API_KEY": "canary-apikey-1111"}, "replay", "latest~1")
    assert done.returncode == 0, done.stderr
    first = repro(repo, env, "show", "--json", "latest~2")
    replayed = repro(repo, env, "show", "--json", "latest")
    assert json.loads(first.stdout)["outputs"] == json.loads(replayed.stdout)["outputs"]

    script = repro(repo, env, "replay", "--script", "latest~2").stdout
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo), str(fresh))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    done = subprocess.run(["bash", "-s", str(fresh)], input=script, capture_output=True,
                          text=True, cwd=fresh, env=clean, timeout=120)
    assert done.returncode != 0 and "export REPRO_SECRET_API_KEY" in done.stderr
    done = subprocess.run(["bash", "-s", str(fresh)], input=script, capture_output=True, text=True,
                          cwd=fresh, timeout=120,
                          env={**clean, "REPRO_SECRET_API_KEY": "canary-apikey-1111"})
    assert done.returncode == 0, done.stderr
    tree = Path(done.stderr.strip().splitlines()[-1].removeprefix("outputs are in "))
    from repro.capture import data

    recorded = json.loads(first.stdout)["outputs"]["out"]["hash"]
    assert data.hash_paths(["out"], root=tree, cache_dir=None)[0].hash == recorded


@pytest.mark.slow
def test_a_secret_file_is_taken_from_the_checkout_by_hash_or_refused(repo: Path) -> None:
    env = plant(repo)
    (repo / "train.py").write_text(SCRIPT.replace(
        "digest = ", "digest = pathlib.Path('.env').read_text() and "))
    git(repo, "commit", "-qam", "reads .env")
    assert repro(repo, env, "run", "--allow-dirty", "--output", "out", "--",
                 PYTHON, "train.py").returncode == 0
    done = repro(repo, env, "replay", "latest")
    assert done.returncode == 0, done.stderr  # the checkout's .env has the recorded hash
    (repo / ".env").write_text("DB_PASSWORD=changed\n")
    done = repro(repo, env, "replay", "latest~1")
    assert done.returncode == 125
    assert "untracked file .env may hold secrets" in done.stderr
    assert "put the recorded .env back" in done.stderr


def _hook_module() -> object:
    spec = importlib.util.spec_from_file_location(
        "repro_hook_copy", seeding.hook_dir() / "_repro_hook_probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the hook's exit-time helper: defines, runs nothing
    return module


@pytest.mark.parametrize(("argv", "spans"), [
    (["python", "t.py", "--api-key", "X"], [(3, "", "api-key")]),
    (["python", "t.py", "--token=X"], [(2, "--token=", "token")]),
    (["python", "t.py", "--password", "X", "--lr", "1"], [(3, "", "password")]),
    (["python", "t.py", "PASSWORD=X", "db.password=Y", "+auth.token=Z"],
     [(2, "PASSWORD=", "PASSWORD"), (3, "db.password=", "db.password"),
      (4, "+auth.token=", "auth.token")]),
    (["python", "t.py", "--hf_token", "X", "--wandb-api-key=Y"],
     [(3, "", "hf_token"), (4, "--wandb-api-key=", "wandb-api-key")]),
    (["python", "t.py", "--max-tokens", "64", "--tokenizer", "gpt2", "--key-file", "k.pem"], []),
    (["python", "t.py", "--password-stdin", "--no-auth", "--lr", "1"], []),
    (["python", "t.py", "--token", "--verbose"], []),
    (["env", "PASSWORD=x", "python", "t.py"], [(1, "PASSWORD=", "PASSWORD")]),
    (["TOKEN=x"], []),  # the program itself is never a secret
    (["python", "t.py", "--", "--secret", "S"], [(4, "", "secret")]),
    (["python", "t.py", "--pw", "S", "--db-pw=T"], [(3, "", "pw"), (4, "--db-pw=", "db-pw")]),
])
def test_secret_argument_rule_and_the_hooks_copy_agree(
        argv: list[str], spans: list[tuple[int, str, str]]) -> None:
    assert redact.secret_spans(argv) == spans
    hook = _hook_module()
    assert hook.secret_spans(argv) == spans  # type: ignore[attr-defined]
    redacted = hook.redact_argv(argv)  # type: ignore[attr-defined]
    assert all(redacted[i] == prefix + "<secret>" for i, prefix, _ in spans)


@pytest.mark.parametrize(("name", "secret"), [
    (".env", True), ("config/.env.local", True), ("prod.env", True), (".aws/credentials", True),
    (".aws/config", True), ("deploy.pem", True), ("tls/server.key", True), ("id_ed25519", True),
    (".ssh/known_hosts", True), (".netrc", True), (".pypirc", True), ("secrets.yaml", True),
    ("gcp-credentials.json", True), ("service-account-prod.json", True),
    ("notes.txt", False), ("helper.py", False), ("data/keys.csv", False),
    ("tokenizer.json", False), ("environment.yml", False), ("id_map.json", False),
])
def test_likely_secret_file_names(name: str, secret: bool) -> None:
    assert redact.is_secret_file(name) is secret


@pytest.mark.parametrize(("name", "kept"), [
    ("TF_VAR_db_pass", False), ("TF_TOKEN_app_terraform_io", False), ("HF_HUB_ENDPOINT_PASS", False),
    ("TF_DETERMINISTIC_OPS", True), ("TF_CPP_MIN_LOG_LEVEL", True), ("HF_HOME", True),
    ("TORCH_HOME", True), ("HF_TOKEN", False), ("NCCL_IB_PASSWD", False),
])
def test_environment_allow_list_and_secret_names(name: str, kept: bool) -> None:
    assert (name in environment.allowed_env({name: "v"})) is kept


def test_a_url_password_in_argv_is_a_secret_for_repro_and_the_hook() -> None:
    argv = ("python", "t.py", "--src", "https://me:pw1@host/x?y=1", "git+ssh://u:pw2@h/r.git",
            "https://host/no-password", "https://user@host/no-password")
    redacted = redact.redact_argv(argv, lambda: bytes(16))
    assert "pw1" not in redacted[3] and "pw2" not in redacted[4]
    assert redacted[3].startswith("https://me:<secret:$REPRO_SECRET_URL_PASSWORD:")
    assert redacted[3].endswith(">@host/x?y=1") and "$REPRO_SECRET_URL_PASSWORD_2:" in redacted[4]
    assert redacted[5:] == argv[5:]
    assert redact.redact_argv(redacted, lambda: bytes(16)) == redacted  # a replay's: kept
    env = {"REPRO_SECRET_URL_PASSWORD": "pw1", "REPRO_SECRET_URL_PASSWORD_2": "pw2"}
    assert redact.restore_argv(redacted, env) == argv
    script = redact.shell_word(redacted[3], lambda s: f"'{s}'")
    assert script.startswith("'https://me:'\"${REPRO_SECRET_URL_PASSWORD:?") and "pw1" not in script
    hook = _hook_module()
    assert hook.redact_argv(argv)[3:5] == [  # type: ignore[attr-defined]
        "https://me:<secret>@host/x?y=1", "git+ssh://u:<secret>@h/r.git"]


def test_placeholders_hash_with_the_recorded_salt() -> None:
    salt = bytes(range(16))
    word = redact.placeholder("REPRO_SECRET_API_KEY", "s3cret", salt)
    assert "s3cret" not in word and redact.placeholder_re().fullmatch(word)
    argv = ("python", "t.py", "--api-key", word)
    assert redact.restore_argv(argv, {"REPRO_SECRET_API_KEY": "s3cret"})[3] == "s3cret"
    assert redact.redact_argv(argv, lambda: b"x" * 16) == argv  # a replay's argv: kept
    assert redact.shell_word("--token=" + word, lambda s: s) == \
        '--token="${REPRO_SECRET_API_KEY:?export REPRO_SECRET_API_KEY with the secret value ' \
        'of this argument}"'
