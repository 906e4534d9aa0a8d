"""capture.git: status in real repositories, credentials, patches, commit diffs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from repro import errors
from repro.capture import git, gitfiles
from tests.conftest import git as run_git


def test_status_clean(repo: Path) -> None:
    state = git.status(repo)
    assert state.dirty is False
    assert state.branch == "main"
    assert state.commit == run_git(repo, "rev-parse", "HEAD").strip()


def test_status_names_every_kind_of_dirt(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "notes.txt").write_text("x")
    (repo / "staged.py").write_text("x = 1\n")
    run_git(repo, "add", "staged.py")
    run_git(repo, "mv", "requirements.lock", "renamed.lock")
    state = git.status(repo)
    assert {(d.path, d.state) for d in state.dirt} == {
        ("train.py", "modified"), ("new dir/notes.txt", "untracked"),
        ("staged.py", "staged"), ("renamed.lock", "renamed")}
    assert state.untracked == ["new dir/notes.txt"]


def test_status_ignores_ignored_files(repo: Path) -> None:
    (repo / ".repro").mkdir()
    (repo / ".repro" / "x").write_text("x")
    assert git.status(repo).dirty is False


def test_status_detached_head(repo: Path) -> None:
    run_git(repo, "checkout", "-q", "--detach")
    assert git.status(repo).branch is None


def test_no_commits_is_a_clear_error(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(errors.NotAGitRepoError, match="no commits yet"):
        git.status(tmp_path)


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:canary@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://ghp_canary@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://host:8443/o/r.git?private_token=canary", "https://host:8443/o/r.git"),
    ("ssh://git:canary@host/o/r.git", "ssh://host/o/r.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("/srv/git/r.git", "/srv/git/r.git"),
    ("https://a:canary1@x https://b:canary2@y", "https://x https://y"),
    (" https://u:canary@h", " https://h"),
    ("--index-url https://u:canary@pypi.example/simple --trusted-host x",
     "--index-url https://pypi.example/simple --trusted-host x"),
    ("https://user:canary@github.com:notaport/x.git", "https://github.com:notaport/x.git"),
    ("https://u:canary@[::1", "https://[::1"),
    ("https://b/pkg.whl?X-Amz-Signature=canary#sha256=canary", "https://b/pkg.whl"),
    ("plain value", "plain value"),
    ("user:canary@host:/path", "user@host:/path"),  # scp-style: the user stays
    ("--dst me:can@ary@backup:/x", "--dst me@backup:/x"),
    ("https://h/pkg@v1 torch@2.1", "https://h/pkg@v1 torch@2.1"),
])
def test_strip_credentials(url: str, clean: str) -> None:
    assert git.strip_credentials(url) == clean
    assert hook_strip(url) == clean  # the hook's stdlib-only copy of the same rule


def hook_strip(value: str) -> str:
    import importlib.util

    from repro.child import seeding

    spec = importlib.util.spec_from_file_location(
        "repro_hook_copy", seeding.hook_dir() / "_repro_hook_probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the hook's exit-time helper: defines, runs nothing
    return str(module.strip_credentials(value))


def test_remote_url_is_stripped(repo: Path) -> None:
    run_git(repo, "remote", "add", "origin", "https://bob:canary@example.com/o/r.git")
    assert git.finish_remote(git.start_remote(repo)) == "https://example.com/o/r.git"


def test_patch_rebuilds_the_tree_including_binary(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    run_git(repo, "add", "blob.bin")
    diff = git.patch(repo)
    other = tmp_path / "other"
    run_git(repo, "worktree", "add", "-q", "--detach", str(other), "HEAD")
    (tmp_path / "p.patch").write_bytes(diff)
    git.apply_patch(other, tmp_path / "p.patch")
    assert (other / "train.py").read_text() == "print('edited')\n"
    assert (other / "blob.bin").read_bytes() == bytes(range(256))


def test_changed_files_between_commits(repo: Path) -> None:
    a = run_git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("print(2)\n")
    (repo / "added.py").write_text("")
    run_git(repo, "rm", "-q", "requirements.lock")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "change")
    b = run_git(repo, "rev-parse", "HEAD").strip()
    assert git.changed_files(repo, a, b) == [("A", "added.py"), ("D", "requirements.lock"),
                                              ("M", "train.py")]
    assert git.changed_files(repo, a, a) == []


def test_tracked_filters_paths(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "big.csv").write_text("1")
    assert git.tracked(repo, ["train.py", "data/big.csv", "data"]) == {"train.py"}


def test_in_index_reads_gits_index_and_leaves_the_rest_to_git(repo: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "requirements.lock").write_text("x==1\n")
    (repo / "ignored.lock").write_text("")
    (repo / ".gitignore").write_text(".repro/\nignored.lock\n")
    run_git(repo, "add", "sub", ".gitignore")
    run_git(repo, "commit", "-qm", "sub")
    assert gitfiles.in_index(repo, "requirements.lock")
    assert gitfiles.in_index(repo, "sub/requirements.lock")
    for path in ("ignored.lock", "lock", "sub", "requirements", "sub/requirements.loc"):
        assert not gitfiles.in_index(repo, path), path
        assert git.is_tracked(repo, path) is (path == "sub"), path  # git: a dir with files
    run_git(repo, "update-index", "--index-version", "4")  # prefix-compressed names: ask git
    assert not gitfiles.in_index(repo, "requirements.lock")
    assert git.is_tracked(repo, "sub/requirements.lock")


# -- remote URLs and HEAD's commit time read without a process, held to git's own answers


def _git_remote(repo: Path) -> str | None:
    done = subprocess.run(["git", "config", "--get-regexp", r"^remote\..*\.url$"], cwd=repo,
                          capture_output=True, text=True)
    urls: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, url = line.partition(" ")
        urls[key[len("remote."):-len(".url")]] = url.strip()
    if not urls:
        return None
    return git.strip_credentials(urls.get("origin") or next(iter(urls.values())))


def _git_time(repo: Path) -> int:
    return int(run_git(repo, "show", "-s", "--format=%ct", "HEAD", "--").strip())


def test_plain_config_and_loose_head_need_no_process(repo: Path) -> None:
    run_git(repo, "remote", "add", "origin", "https://bob:canary@example.com/o/r.git")
    remote, when = git.start_remote(repo), git.start_commit_time(repo)
    assert not isinstance(remote, subprocess.Popen)
    assert not isinstance(when, subprocess.Popen)
    assert git.finish_remote(remote) == "https://example.com/o/r.git"
    assert git.finish_commit_time(when) == _git_time(repo)


@pytest.mark.parametrize("config", [
    # several remotes, no origin: the first one git lists
    '[remote "upstream"]\n\turl = git@host:u/r.git\n[remote "fork"]\n\turl = https://f/r\n',
    # origin after another, comments, odd spacing and case, a URL given twice
    '[remote "a"]\n url=https://a/x ; comment\n[Remote "origin"] # c\n  URL = https://o/1\n'
    '  url = https://o/2\n[core]\n\turl = not-a-remote\n',
    # what the small reader leaves to git: quotes, escapes, continued lines, old syntax
    '[remote "origin"]\n\turl = "https://q/r.git" ; quoted\n',
    '[remote "origin"]\n\turl = https://e/r\\\n.git\n',
    '[remote.origin]\n\turl = https://old/style\n',
    '[remote "o\\"x"]\n\turl = https://esc/aped\n',
    '[remote "origin"] url = https://same/line\n',
])
def test_remote_read_from_files_is_what_git_says(repo: Path, config: str) -> None:
    with (repo / ".git" / "config").open("a") as f:
        f.write(config)
    assert git.finish_remote(git.start_remote(repo)) == _git_remote(repo)


@pytest.mark.parametrize("config", [
    # a UTF-8 byte order mark (some Windows editors write one): git skips it
    '\ufeff[remote "origin"]\n\turl = https://bom/r.git\n',
    '\ufeff[include]\n\tpath = {extra}\n',
    # whitespace inside a value: git makes each tab or lone CR one space, and ends a line
    # only at \n (or \r\n)
    '[remote "origin"]\n\turl = https://tab/a\tb.git\n',
    '[remote "origin"]\n\turl = https://cr/a\rb.git\n',
    '[remote "origin"]\r\n\turl = https://crlf/r.git\r\n',
])
def test_remote_read_from_unusual_files_is_what_git_says(repo: Path, tmp_path: Path,
                                                          config: str) -> None:
    extra = tmp_path / "extra.cfg"
    extra.write_text('[remote "origin"]\n\turl = https://included/r.git\n')
    path = repo / ".git" / "config"
    path.write_text(config.format(extra=extra) + path.read_text(), encoding="utf-8")
    assert _git_remote(repo) is not None
    assert git.finish_remote(git.start_remote(repo)) == _git_remote(repo)


def test_remote_in_an_included_or_global_file_is_found(repo: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.cfg"
    extra.write_text('[remote "origin"]\n\turl = https://included/r.git\n')
    with (repo / ".git" / "config").open("a") as f:
        f.write(f"[include]\n\tpath = {extra}\n")
    assert git.finish_remote(git.start_remote(repo)) == "https://included/r.git"
    (repo / ".git" / "config").write_text(
        (repo / ".git" / "config").read_text().replace(f"[include]\n\tpath = {extra}\n", ""))
    home = Path(os.environ["HOME"])
    (home / ".gitconfig").write_text('[remote "global"]\n\turl = https://global/r.git\n')
    assert git.finish_remote(git.start_remote(repo)) == "https://global/r.git" == \
        _git_remote(repo)


def test_remote_and_time_from_a_linked_worktree(repo: Path, tmp_path: Path) -> None:
    run_git(repo, "remote", "add", "origin", "https://w/r.git")
    run_git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    wt = tmp_path / "wt"
    assert (wt / ".git").is_file()
    assert git.finish_remote(git.start_remote(wt)) == "https://w/r.git"
    assert git.finish_commit_time(git.start_commit_time(wt)) == _git_time(wt)


def test_commit_time_of_packed_objects_and_refs_comes_from_git(repo: Path) -> None:
    run_git(repo, "commit", "-q", "--allow-empty", "-m", "later",
            "--date", "2001-02-03T04:05:06Z")
    run_git(repo, "gc", "-q", "--prune=now")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()  # packed
    assert git.finish_commit_time(git.start_commit_time(repo)) == _git_time(repo)


def test_commit_time_follows_replace_refs_as_git_does(repo: Path) -> None:
    old, before = run_git(repo, "rev-parse", "HEAD").strip(), _git_time(repo)
    env = {**os.environ, "GIT_COMMITTER_DATE": "2002-03-04T05:06:07Z"}
    subprocess.run(["git", "commit", "-q", "--amend", "-m", "other"], cwd=repo, check=True,
                   env=env)
    new = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "reset", "-q", "--hard", old)
    run_git(repo, "replace", old, new)
    assert git.finish_commit_time(git.start_commit_time(repo)) == _git_time(repo) != before


def test_status_started_early_is_taken_over_once(repo: Path) -> None:
    (repo / "sub").mkdir()
    os.chdir(repo / "sub")
    git.prestart_status()
    early = git._EARLY[repo.resolve()]
    assert git.start_status(repo.resolve()) is early
    assert git.finish_status(early, repo).dirty is False
    second = git.start_status(repo.resolve())
    assert second is not early
    second.communicate()


def test_status_started_early_and_not_taken_is_dropped(repo: Path) -> None:
    git.prestart_status()
    git._EARLY[repo.resolve()].wait()  # it has looked at the tree
    git.discard_early()
    (repo / "train.py").write_text("print('changed after the early status')\n")
    assert git.status(repo.resolve()).dirty is True
