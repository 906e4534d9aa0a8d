"""Secrets in what repro records: argv values named like secrets, likely-secret files.

The values of command-line arguments whose names look like secrets (`--api-key X`,
`--token=X`, `PASSWORD=X`, `db.password=X`) are recorded as a placeholder naming the
environment variable a replay takes the value from, a per-clone salt and a slow salted hash
(two runs with the same secret in one clone record the same placeholder, so `diff` can tell
"same secret" from "different secret" without the value). The real argv still goes to the
command unchanged. The hook (repro/child/hook/_repro_hook_probe.py, standard library only)
carries a copy of the name rule for the argv it records; tests/test_secrets.py holds the two
equal. Never prints.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath

from repro import errors

# The last word of an argument's name (split at -, _ and .) that makes its value a secret.
SECRET_WORDS = frozenset({
    "token", "secret", "password", "passwd", "passphrase", "pass", "pwd", "apikey", "key",
    "credential", "credentials", "auth", "cookie", "signature", "pw",
})
# Compiled on first use: `repro run` reads this module on every run (start-up is critical).
_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_ASSIGN = r"^([+~]{0,2})([A-Za-z_][A-Za-z0-9_.-]*)="
_PLACEHOLDER = r"<secret:\$([A-Z_][A-Z0-9_]*):pbkdf2-sha256:([0-9a-f]{32}):([0-9a-f]{32})>"
# The password of a URL in an argv word (`https://user:PW@host/x`): group 2.
_URL_PASSWORD = r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*:)([^/?#@\s]+)@"
ENV_PREFIX = "REPRO_SECRET_"
_ITERATIONS = 100_000


def placeholder_re() -> re.Pattern[str]:
    return re.compile(_PLACEHOLDER)  # re caches compiled patterns


def is_secret_name(name: str) -> bool:
    """`--api-key`, `hf_token`, `db.password`, `HF_HUB_ENDPOINT_PASS`: yes; `--max-tokens`,
    `--tokenizer`, `--key-file`: no (only the last word counts)."""
    words = [w for w in re.split(r"[-_.]+", name.lower()) if w]
    return bool(words) and words[-1] in SECRET_WORDS


def secret_spans(argv: Sequence[str]) -> list[tuple[int, str, str]]:
    """(index, kept prefix, name) of each argv word holding a secret value.

    `--token=X` -> (i, "--token=", "token"); `--token X` -> (i+1, "", "token") unless X starts
    with `-` (argparse would read it as an option); `PASSWORD=X` -> (i, "PASSWORD=", ...).
    argv[0] (the program) is never one.
    """
    spans: list[tuple[int, str, str]] = []
    lowered = "\0".join(argv[1:]).lower()
    if not any(word in lowered for word in SECRET_WORDS):
        return spans  # the common case, without a regular expression
    i = 1
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and word != "-" and word != "--":
            name, sep, _value = word.lstrip("-").partition("=")
            if re.fullmatch(_NAME, name) and is_secret_name(name):
                if sep:
                    spans.append((i, word[:word.index("=") + 1], name))
                elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                    spans.append((i + 1, "", name))
                    i += 1
        else:
            m = re.match(_ASSIGN, word)
            if m and is_secret_name(m.group(2)):
                spans.append((i, word[:m.end()], m.group(2)))
        i += 1
    return spans


def env_name(name: str) -> str:
    """The variable a replay reads the value of argument `name` from: REPRO_SECRET_API_KEY."""
    return ENV_PREFIX + (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() or "VALUE")


def digest(value: str, salt: bytes) -> str:
    import hashlib

    raw = value.encode("utf-8", "surrogateescape")
    return hashlib.pbkdf2_hmac("sha256", raw, salt, _ITERATIONS, dklen=16).hex()


def placeholder(var: str, value: str, salt: bytes) -> str:
    """`<secret:$VAR:pbkdf2-sha256:SALT:HASH>`: where a replay takes the value, how to check it."""
    return f"<secret:${var}:pbkdf2-sha256:{salt.hex()}:{digest(value, salt)}>"


def url_password_spans(argv: Sequence[str],
                       skip: set[int]) -> list[tuple[int, str, str, str]]:
    """(index, text before, text after, "url-password") of each argv word (but those in
    `skip`) holding a URL with a password: `https://user:PW@host/x`."""
    spans: list[tuple[int, str, str, str]] = []
    for i, word in enumerate(argv):
        if i and i not in skip and "://" in word and "@" in word:
            m = re.search(_URL_PASSWORD, word)
            if m and not placeholder_re().fullmatch(m.group(2)):
                spans.append((i, word[:m.start(2)], word[m.end(2):], "url-password"))
    return spans


def redact_argv(argv: Sequence[str], salt: Callable[[], bytes]) -> tuple[str, ...]:
    """argv with each secret value replaced by its placeholder (`salt` is asked only when
    there is one); a value that already is a placeholder (a replay's argv) is kept."""
    spans = [(i, prefix, "", name) for i, prefix, name in secret_spans(argv)]
    spans += url_password_spans(argv, {span[0] for span in spans})
    if not spans:
        return tuple(argv)
    out = list(argv)
    the_salt: bytes | None = None
    used: set[str] = set()  # `--password X PASSWORD=Y`: the second is REPRO_SECRET_PASSWORD_2
    for i, prefix, suffix, name in spans:
        value = out[i][len(prefix):len(out[i]) - len(suffix)]
        if placeholder_re().fullmatch(value):
            continue
        var, n = env_name(name), 1
        while var in used:
            n += 1
            var = f"{env_name(name)}_{n}"
        used.add(var)
        the_salt = the_salt if the_salt is not None else salt()
        out[i] = prefix + placeholder(var, value, the_salt) + suffix
    return tuple(out)


def restore_argv(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The argv to execute: each placeholder replaced by its variable's value, checked against
    the recorded hash; a missing or different value refuses with a hint naming the variable."""
    out = list(argv)
    for i, word in enumerate(argv):
        m = placeholder_re().search(word)
        if m is None:
            continue
        var, salt, recorded = m.group(1), m.group(2), m.group(3)
        value = env.get(var)
        if value is None:
            raise errors.ReplayError(
                f"argument {i} of the recorded command is a secret that was not recorded",
                hint=f"export {var} with its value (the run recorded only a salted hash of it)")
        if digest(value, bytes.fromhex(salt)) != recorded:
            raise errors.ReplayError(
                f"{var} does not match the secret the run was recorded with (argument {i})",
                hint=f"export {var} with the value the run used, or record a new run")
        out[i] = word[:m.start()] + value + word[m.end():]
    return tuple(out)


def shell_word(word: str, quote: Callable[[str], str]) -> str:
    """`--script`'s rendering of one argv word: a placeholder becomes a reference to its
    variable (`"${REPRO_SECRET_TOKEN:?...}"`), never a value."""
    m = placeholder_re().search(word)
    if m is None:
        return quote(word)
    var = m.group(1)
    ref = f'"${{{var}:?export {var} with the secret value of this argument}}"'
    before, after = word[:m.start()], word[m.end():]
    return (quote(before) if before else "") + ref + (quote(after) if after else "")


# ---------------------------------------------------------------------------- files

# Untracked files that likely hold secrets: hashed and listed, never copied.
SECRET_FILE_PATTERNS = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks",
    "*.keystore", "*.kdbx", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc",
    "_netrc", ".git-credentials", "credentials", "credentials.*", "*credentials*.json",
    "secret.*", "secrets.*", "*.secret", "*.secrets", ".pypirc", ".npmrc", ".htpasswd",
    ".pgpass", "*.ovpn", "token.json", "*.token", "service-account*.json",
)
SECRET_DIRS = frozenset({".ssh", ".aws", ".gnupg", ".docker", ".kube", ".azure", ".gcloud"})


def is_secret_file(rel: str) -> bool:
    """`.env`, `config/.env.local`, `.aws/credentials`, `deploy.pem`, `id_ed25519`: yes."""
    p = PurePosixPath(rel)
    if SECRET_DIRS & set(p.parts[:-1]):
        return True
    name = p.name.lower()
    return any(fnmatch.fnmatchcase(name, pat) for pat in SECRET_FILE_PATTERNS)
