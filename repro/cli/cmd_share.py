"""Share runs: `repro push`, `repro pull` (a remote store) and `repro export mlflow`.

Typer functions only (parse, call the flow in repro/commands/, render, return a code); they
register on `repro.cli.app.app`, which imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from repro import errors
from repro.cli import ui
from repro.cli.app import JsonFlag, app, complete_run, warn_future
from repro.errors import ExitCode

RemoteOpt = Annotated[str | None, typer.Option(
    "--remote", metavar="NAME|URL",
    help="Remote store: a name from the `remote` setting, or s3://BUCKET/PREFIX or "
         "file:///PATH (default: the configured remote).")]


@app.command()
def push(
    refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN...]", help="Runs to push (default: every run not yet at the remote).",
        autocompletion=complete_run)] = None,
    remote: RemoteOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be pushed; upload nothing.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Copy runs to a shared remote store (S3-compatible or a shared filesystem).

    Files are stored once by hash, every write is create-only and the manifest goes last, so
    pushing twice uploads nothing and a push cut short is completed by the next one.
    Credentials come from the standard AWS chain (environment, profile, instance role).

    Example:

        AWS_ENDPOINT_URL=http://minio:9000 repro push --remote s3://team-runs/repro
    """
    from repro.cli import remoteview
    from repro.commands import push as push_mod
    from repro.record import config, store
    from repro.remote import store as remote_store

    runs = store.open_here()
    where = remote_store.locate(remote, config.load(runs.root))
    result = push_mod.push(runs, where, list(refs or []), ui.CliReporter(), dry_run=dry_run)
    _report(result, as_json, lambda: remoteview.push_summary(result, where.label),
            "differ from the copy at the remote, which was kept",
            "runs at a remote are write-once; a run edited after its push stays local")


@app.command()
def pull(
    refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN...]",
        help="Runs at the remote: id, unique prefix, latest, latest~N, group:ID|NAME "
             "(also as REMOTE:ref, which picks that remote).")
    ] = None,
    pull_all: Annotated[bool, typer.Option("--all", help="Pull every run of the remote.")
                        ] = False,
    remote: RemoteOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy runs from a remote store into this clone's .repro/runs/, checked by hash.

    Pulled runs are listed by `repro runs` and can be shown, diffed and verified; they never
    become `latest` (which counts the runs you started).

    Example:

        repro pull --all --remote teammate

    (To compare with one remote run, no pull is needed: repro diff latest teammate:latest.)
    """
    from repro.cli import remoteview
    from repro.commands import pull as pull_mod
    from repro.record import config, store
    from repro.remote import store as remote_store

    runs = store.open_here()
    cfg = config.load(runs.root)
    if remote is None:  # `repro pull team:latest`, as diff and verify name a remote's run
        remote = pull_mod.remote_of(refs or [], cfg)
    where = remote_store.locate(remote, cfg)
    result = pull_mod.pull(runs, where, list(refs or []), pull_all, ui.CliReporter())
    _report(result, as_json, lambda: remoteview.pull_summary(result, where.label),
            "here differ from the remote's copy, which was not pulled",
            "the local copy was kept; compare them with `repro diff ID REMOTE:ID`")


def _report(result: Any, as_json: bool, summary: Callable[[], None], conflict: str,
            hint: str) -> None:
    """push's and pull's ending: the JSON document or the summary, then an error (exit 2)
    naming the runs that differ on the two sides."""
    if as_json:
        ui.print_json(result.to_dict())
    else:
        summary()
    if result.conflicts:
        ui.error(errors.RemoteError(
            f"{len(result.conflicts)} run(s) {conflict}: " + ", ".join(result.conflicts[:5]),
            hint=hint))
        raise typer.Exit(ExitCode.TROUBLE)


export_app = typer.Typer(
    name="export", help="Copy recorded runs into other tools (MLflow).", no_args_is_help=True,
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow(
    refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN... | group:ID]",
        help="Runs to export: ids, latest, latest~N, paths, or group:ID for a group's runs.",
        autocompletion=complete_run)] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", metavar="URI",
        help="The tracking server (default: $MLFLOW_TRACKING_URI, else mlflow_tracking_uri in "
             "the configuration). Credentials: MLFLOW_TRACKING_TOKEN or "
             "MLFLOW_TRACKING_USERNAME/PASSWORD.")] = None,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", metavar="NAME",
        help="Experiment to export into, created if missing (default: "
             "$MLFLOW_EXPERIMENT_NAME, else mlflow_experiment, else the repository's name).")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Export every recorded run.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Mirror runs into an MLflow tracking server: tags, params, metric series, files.

    One MLflow run per repro run (a group becomes a parent run with its runs as children),
    with the provenance MLflow does not capture itself: seed, determinism, dirty patch,
    lockfile match, fingerprint. Exporting again adds nothing; an export cut short is
    completed. Exit 0, 2 on trouble.

    Example:

        repro export mlflow latest --tracking-uri http://127.0.0.1:5000 --experiment vision

    Example (a group of runs from `repro run --repeat`, as one parent run):

        MLFLOW_TRACKING_URI=https://mlflow.example.com repro export mlflow group:3f2a --json
    """
    from repro.cli import exportview
    from repro.commands import export as export_mod
    from repro.record import store

    runs = store.open_here()
    warn_future(runs, *(refs or []))
    result = export_mod.export_mlflow(runs, refs or [], tracking_uri=tracking_uri,
                                      experiment=experiment, all_runs=all_runs,
                                      reporter=ui.CliReporter())
    if as_json:
        ui.print_json(result.to_dict())
    else:
        exportview.render(result)
