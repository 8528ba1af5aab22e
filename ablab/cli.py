"""The `ablab` command.

Every user error ends in one line on stderr and exit code 2, before anything starts.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
from pathlib import Path

from ablab.errors import EXIT_USER_ERROR, UserError

EXAMPLES = {
    "run": """examples:
  ablab run sweeps/quickstart.yaml
  ablab run sweeps/quickstart.yaml --set seeds=2 --set train.epochs=5
  ablab run sweeps/quickstart.yaml --resume          # continue after a crash or Ctrl-C
  ablab run sweeps/distill_loss.yaml --address auto  # on a running Ray cluster""",
    "validate": """examples:
  ablab validate sweeps/*.yaml
  ablab validate sweeps/quickstart.yaml --set model.activation=swish   # shows the allowed values""",
    "report": """examples:
  ablab report quickstart
  ablab report quickstart --out paper/tables""",
    "status": "examples:\n  ablab status quickstart\n  ablab status sweeps/quickstart.yaml   # the study a sweep file runs",
    "list": "examples:\n  ablab list\n  ablab list --storage /shared/ablab_results",
    "ui": """examples:
  ablab ui quickstart              # MLflow UI on http://127.0.0.1:5000, prints the arms view's URL
  ablab ui quickstart --port 5001 --open""",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ablab",
        description="Ablation studies as Ray Tune trials, tracked in MLflow, reported with error bars.",
        epilog="start here:  ablab run sweeps/quickstart.yaml   then   ablab ui quickstart",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    storage_help = "folder holding the studies (default: ablab_results, or the study's `storage`)"
    r = add("run", "run a study (or continue it, if it exists) and write its report")
    r.add_argument("file", help="sweep file (YAML)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key (model.width=64) or a study key (seeds=2); repeatable")
    r.add_argument("--address", default=None, help="Ray cluster to join: auto or HOST:PORT (default: start local Ray on all cores)")
    r.add_argument("--resume", action="store_true", help="continue an existing study; error if there is none")
    r.add_argument("--yes", action="store_true", help="run even a very large grid without asking")
    r.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")

    v = add("validate", "check sweep files and every trial config they expand to; starts nothing")
    v.add_argument("files", nargs="+", help="sweep files (YAML)")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    rep = add("report", "write the report (md, self-contained html, json, tex, trials.csv, figures) and publish it to MLflow")
    rep.add_argument("study", help="study name, its folder, or its sweep file")
    rep.add_argument("--out", default=None, help="output folder (default: <study>/report)")
    rep.add_argument("--storage", default=os.environ.get("ABLAB_STORAGE", "ablab_results"), help=storage_help)
    rep.add_argument("--no-mlflow", action="store_true",
                     help="do not update the study's MLflow parent run (description, params, report artifacts)")

    st = add("status", "trial counts and the state of each trial of a study")
    st.add_argument("study", help="study name, its folder, or its sweep file")
    st.add_argument("--storage", default=os.environ.get("ABLAB_STORAGE", "ablab_results"), help=storage_help)

    ls = add("list", "list the studies in a storage folder")
    ls.add_argument("--storage", default=os.environ.get("ABLAB_STORAGE", "ablab_results"), help=storage_help)

    ui = add("ui", "serve the MLflow UI for a study's tracking store and print the URL of its runs, grouped by arm")
    ui.add_argument("study", help="study name, its folder, or its sweep file")
    ui.add_argument("--storage", default=os.environ.get("ABLAB_STORAGE", "ablab_results"), help=storage_help)
    ui.add_argument("--port", type=int, default=5000, help="port to serve on (default: 5000); must be free")
    ui.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1, this machine only)")
    ui.add_argument("--open", action="store_true", help="also open the URL in a web browser")
    return p


def _paths(study: str, storage: str):
    """A study given by name (in `storage`), by its folder, or by its sweep file."""
    from ablab.records import StudyPaths, read_study_file

    candidate = Path(study)
    if (candidate / "study.json").exists():
        paths = StudyPaths(candidate.parent, candidate.name)
        read_study_file(paths)  # a damaged study.json is one line, not a traceback
        return paths
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        from ablab.yaml_loader import read_yaml

        data = read_yaml(candidate)
        if isinstance(data.get("name"), str):
            study, storage = data["name"], str(data.get("storage") or storage)
    paths = StudyPaths(Path(storage), study)
    if not paths.study_file.exists():
        known = sorted(p.parent.name for p in Path(storage).glob("*/study.json"))
        where = Path(storage).resolve()
        hint = ("pass --storage FOLDER (the sweep file's `storage:`), the study's folder, or its sweep file"
                + ("" if Path(storage).is_dir() else f"; {where} does not exist"))
        raise UserError(f"no study named {study!r} in {where}", key="study", allowed=known or "(none there)", hint=hint)
    read_study_file(paths)
    return paths


def cmd_validate(args) -> int:
    from ablab.expand import expand, grid_points, variants
    from ablab.spec import load_study

    for f in args.files:
        study = load_study(f, args.overrides)
        trials = expand(study, f)
        print(f"ok  {f}: study {study.name!r}, trainable {study.trainable!r}, {len(variants(study))} variant(s) x "
              f"{len(grid_points(study))} grid point(s) x {len(study.seed_list)} seed(s) = {len(trials)} trials")
    return 0


def resume_command(args) -> str:
    """The exact command that continues this run, --set flags included."""
    parts = ["ablab", "run", args.file, *[f"--set={o}" for o in args.overrides]]
    if args.address:
        parts += ["--address", args.address]
    if args.yes:
        parts.append("--yes")
    return " ".join(shlex.quote(p) for p in parts) + " --resume"


def cmd_run(args) -> int:
    from ablab.phases import mark

    mark("command parsed")
    from ablab import report as report_mod
    from ablab import runner
    from ablab.spec import mask_uri

    mark("driver imported")
    from ablab.figures import formats

    formats()  # a figure format ablab does not draw stops here, before anything starts
    prep = runner.prepare(args.file, args.overrides, resume=args.resume, yes=args.yes)
    mark("validated")
    command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv else "ablab run"
    status = runner.run(prep, address=args.address, live=False if args.no_live else None, command=command,
                        announce=lambda verb: (
                            print(f"{verb} study {prep.study.name!r}: {len(prep.trials)} trials -> {prep.paths.dir}"),
                            print(f"tracking: {mask_uri(prep.tracking_uri)}")))
    # The table first: it needs the analysis only; the files, figures and their copy in
    # MLflow follow while Ray's processes stop.
    rep = report_mod.build(prep.paths)
    print()
    print(report_mod.to_markdown(rep).split("## Trials not in the means")[0].strip())
    print(flush=True)
    mark("table printed")
    _, out = report_mod.write(prep.paths, report=rep)
    mark("report written")
    runner.wait_for_ray_shutdown()
    mark("ray stopped")
    print(f"report:  {out / 'report.md'}  (and report.html, plots)")
    print(f"mlflow:  ablab ui {prep.study.name}" + (f" --storage {prep.study.storage}" if prep.study.storage != "ablab_results" else "")
          + f"   ({prep.tracking_uri})")
    if status == "interrupted":
        print(f"\nthe study is not finished; continue it with:  {resume_command(args)}", file=sys.stderr)
        return 1
    if status == "failed":
        print("\nsome trials failed (listed in the report); running the study again retries them", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from ablab import report as report_mod
    from ablab.figures import formats

    drawn = formats()
    paths = _paths(args.study, args.storage)
    rep, out = report_mod.write(paths, args.out, publish=not args.no_mlflow)
    print(report_mod.to_markdown(rep))
    print(f"\nwritten to {out}: report.html (self-contained), report.md, report.tex, trials.csv, report.json, "
          f"figures ({', '.join(drawn)})")
    return 0


def cmd_status(args) -> int:
    from ablab.records import load_records

    paths = _paths(args.study, args.storage)
    records = load_records(paths)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    print(f"study {paths.name}: {len(records)} trials; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for r in records:
        last = f"step {r.steps[-1]}" if r.steps else "no results"
        extra = f"  ({r.error})" if r.error else ""
        print(f"  {r.state.value:9s} {r.spec.key}  {last}{extra}")
    return 0


def cmd_list(args) -> int:
    import json

    root = Path(args.storage)
    studies = sorted(root.glob("*/study.json"))
    if not studies:
        print(f"no studies in {root.resolve()} (another folder: --storage FOLDER, or ABLAB_STORAGE)")
        return 0
    from ablab.records import StudyPaths, load_records

    for f in studies:
        paths = StudyPaths(root, f.parent.name)
        try:
            records = load_records(paths)
        except UserError as exc:  # one damaged study must not hide the others
            print(f"{paths.name:30s} unreadable: {exc.problem}")
            continue
        done = sum(r.state.is_done for r in records)
        created = json.loads(f.read_text()).get("created", "")
        print(f"{paths.name:30s} {done}/{len(records)} trials done   created {created}")
    return 0


def cmd_ui(args) -> int:
    from ablab import ui

    paths = _paths(args.study, args.storage)
    return ui.serve(paths, host=args.host, port=args.port, open_browser=args.open)


COMMANDS = {
    "run": cmd_run, "validate": cmd_validate, "report": cmd_report,
    "status": cmd_status, "list": cmd_list, "ui": cmd_ui,
}


EXIT_BROKEN_PIPE = 141  # what a shell reports for a tool ended by SIGPIPE (`yes | head`)


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:
        # The `ablab` command itself (not a call from Python) is about to exit: the
        # interpreter's last garbage collections would walk every object of the libraries
        # loaded (Ray, MLflow, matplotlib, scipy), seconds on a small machine, to free
        # memory the process hands back anyway. Everything is written and closed by now.
        gc.freeze()
    return code


def _main(argv: list[str] | None) -> int:
    from ablab.console import quiet_startup_chatter

    args = _parser().parse_args(argv)
    quiet_startup_chatter()
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # The reader (head, less) has gone: end quietly. Python would otherwise print a
        # second error when it flushes stdout at exit, so stdout now points at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
