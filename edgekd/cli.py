"""The `edgekd` command: a thin typer shell that parses, calls the library, and prints.

Exit codes: 0 done and every budget met; 1 a budget missed (the report names it); 2 bad input,
usage or environment — a full disk, a read-only folder — (one line on stderr, no traceback); 3 an
internal error: a bug, never a verdict (one line naming the file the full traceback went to), so
a build pipeline never reads a crash as "budget missed". Progress goes to stderr so `--json`
output stays clean.
Torch is imported only by the commands that train or export.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgekd._version import __version__
from edgekd._io import to_jsonable
from edgekd._progress import set_quiet
from edgekd.errors import EdgekdError, RunFolderError, first_line
from edgekd.targets import Scheme

class _Commands(TyperGroup):
    """click's command group with one-line usage errors (click prints usage, a hint and the error
    on three lines), `-q` accepted after the subcommand as well as before it, and the commands
    listed in the order a newcomer uses them (`run` first, as the help text says to start there)."""

    ORDER = ("run", "search", "distill", "export", "bench", "targets", "schema")

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: self.ORDER.index(name) if name in self.ORDER else len(self.ORDER))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        errors = _click_errors()
        args = list(sys.argv[1:] if args is None else args)
        cut = args.index("--") if "--" in args else len(args)
        quiet = [a for a in args[:cut] if a in ("-q", "--quiet")]
        args = quiet[:1] + [a for a in args[:cut] if a not in ("-q", "--quiet")] + args[cut:]
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "edgekd"
            sys.stderr.write(f"error: {exc.format_message()} (see `{where} --help`)\n")
            code = 2
        except errors.ClickException as exc:
            sys.stderr.write(f"error: {exc.format_message()}\n")
            code = exc.exit_code
        except errors.Abort:
            sys.stderr.write("interrupted\n")
            code = 130
        sys.exit(code if isinstance(code, int) else 0)


def _click_errors():
    """The exception classes of the click that typer runs on (recent typer versions vendor it)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


app = typer.Typer(
    name="edgekd",
    cls=_Commands,
    help="Distill a PyTorch teacher into a small student, export it to ONNX, simplify and quantize it, "
    "and verify it against a deployment target's budgets.\n\nStart with `edgekd run`: the built-in demo "
    "(digits, CNN teacher → MLP student with 15% of the labels and the rest as an unlabelled transfer set, "
    "x86-cpu target) in about 20 seconds.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
targets_app = typer.Typer(help="List the built-in deployment targets, or show one in full.", invoke_without_command=True)
app.add_typer(targets_app, name="targets")
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)

RecipeArg = Annotated[Optional[Path], typer.Argument(help="Recipe TOML file; omitted: the built-in demo recipe (the defaults with [data] label_fraction = 0.15).", show_default=False)]
TargetOpt = Annotated[Optional[str], typer.Option("--target", "-t", help="Target name (see `edgekd targets`) or path to a target TOML file; default: the recipe's [target].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result object as JSON on stdout instead of tables.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out from its last epoch checkpoint.")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder to write; default: runs/<recipe>-<time>.", show_default=False)]
SchemeOpt = Annotated[Optional[Scheme], typer.Option("--scheme", "-s", help="Quantization scheme, overriding the target's and the recipe's: static-qdq (calibrated int8), dynamic (int8 weights), fp16, none, or auto (bench the candidates on the target's provider, keep the fastest within the accuracy budget).", show_default=False)]
ProvidersOpt = Annotated[Optional[str], typer.Option("--providers", help="Comma-separated ONNX Runtime execution providers overriding the target's, e.g. CPUExecutionProvider to take host figures for a mobile target (the report names the providers used).", show_default=False)]
SweepOpt = Annotated[bool, typer.Option("--sweep", help="Try temperature × weight combinations (T 2/4/8, kd_weight 0.5/0.9) on the validation split and keep the best.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Start over in an --out folder that already holds a run.")]


INTERNAL_ERROR = 3
_FILE_SYSTEM_ERRNOS = {"ENOSPC", "EROFS", "EACCES", "EPERM", "EDQUOT", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "EEXIST", "ENOENT"}


@contextlib.contextmanager
def _guard(resume_hint: str | None = None, out: Path | None = None) -> Iterator[None]:
    """User errors → one line on stderr and exit 2; Ctrl-C → how to resume, exit 130; anything
    else is a bug → one line naming the traceback file, exit 3. With `out` (a run folder), what
    a failure kept there decides the advice: a stage that fails keeps only resumable state."""

    def kept() -> str:
        from edgekd import runfolder  # only when something failed: --help stays light

        if not resume_hint:
            return ""
        if out is None or runfolder.holds_resume_state(out):
            return f"; complete checkpoints are kept: continue with: {resume_hint}"
        return "; nothing was kept: run the same command again"

    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except EdgekdError as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print(f"interrupted{kept()}", soft_wrap=True, markup=False)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: classify, never let a crash read as a verdict
        problem = _missing_extra(exc)
        if not problem and _file_system_problem(exc):
            problem = _file_system_problem(exc) + kept()
        if problem:
            err_console.print(f"error: {problem}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None
        path = _write_crash_report(exc)
        first = f": {first_line(exc)}" if str(exc).strip() else ""
        err_console.print(f"internal error ({type(exc).__name__}{first}); this is a bug in edgekd, not a verdict — "
                          f"the full traceback is in {path}; please report it", soft_wrap=True, markup=False)
        raise typer.Exit(INTERNAL_ERROR) from None


_EXTRAS = {"torch": "train", "onnxscript": "train", "onnxsim": "train", "transformers": "text", "tokenizers": "text"}


def _missing_extra(exc: BaseException) -> str | None:
    """A command that needs the training stack on a bench-only install: which extra to add."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _EXTRAS:
        name = exc.name.split(".")[0]
        return f"this command needs {name}, which a bench-only install leaves out: pip install 'edgekd[{_EXTRAS[name]}]'"
    return None


def _file_system_problem(exc: BaseException) -> str | None:
    """A full disk, a read-only folder, a missing permission: one line naming the path, or None."""
    import errno
    import os

    if isinstance(exc, OSError) and exc.errno is not None and errno.errorcode.get(exc.errno) in _FILE_SYSTEM_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot write or read{where}: {os.strerror(exc.errno)} (free space, fix permissions, or choose another --out)"
    text = str(exc)
    if "PytorchStreamWriter failed" in text or "No space left on device" in text:  # torch's zip writer on a full disk
        return "a checkpoint could not be written: the disk is full or the folder is not writable (free space, or choose another --out)"
    return None


def _write_crash_report(exc: BaseException) -> Path:
    """The whole traceback, with versions, in a file the one-line message names."""
    import os
    import platform
    import tempfile
    import time
    import traceback

    path = Path(tempfile.gettempdir()) / f"edgekd-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    text = (f"edgekd {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
            f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(exc)))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        sys.stderr.write(text)
        return Path("(stderr: the temporary folder is not writable)")
    return path


def _run_dir(out: Path | None, recipe: Path | None, command: str, **options) -> tuple[Path, str]:
    """The run folder (fresh by default) and the command that resumes it after Ctrl-C: every
    option the interrupted command had (`options`, by parameter name) is repeated."""
    import shlex

    from edgekd.pipeline import default_run_dir

    out = out or default_run_dir(recipe)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; choose a folder for the run (it is created if missing)")
    words = ["edgekd", command, *([str(recipe)] if recipe else [])]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value not in (None, False):
            words += [flag, str(getattr(value, "value", value))]
    return out, shlex.join([*words, "--resume", "--out", str(out)])


def _version(value: bool) -> None:
    if value:
        out_console.print(f"edgekd {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    set_quiet(quiet)


@app.command()
def distill(
    recipe: RecipeArg = None,
    out: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    sweep: SweepOpt = False,
    as_json: JsonOpt = False,
    qad: Annotated[bool, typer.Option("--qad", help="Quantization-aware distillation of the exported run folder in --out: fine-tune its student "
                                      "through the target's int8 model (ONNX Runtime's own Q/DQ placement and calibration) against the teacher, "
                                      "beside the same training on labels alone; writes student.int8-qad.onnx, student.int8-qat.onnx (and .ort files "
                                      "for ORT-format targets) and qad.json. Runs under torchrun like distill.")] = False,
    target: TargetOpt = None,
    qad_epochs: Annotated[Optional[int], typer.Option("--qad-epochs", min=1, max=1000, help="Epochs of the quantization-aware phase; default: the recipe's [qad] epochs (3).", show_default=False)] = None,
) -> None:
    """Train (or load) the teachers, then the student with and without them; write checkpoints and distill.json.

    Runs unchanged under torchrun for several GPUs or machines:
    torchrun --nproc_per_node=N -m edgekd distill RECIPE --out DIR"""
    with _guard():
        if qad and (out is None or not out.is_dir()):
            raise RunFolderError("--qad fine-tunes an exported run: pass --out with the folder `edgekd distill` and `edgekd export` wrote")
        if qad and (recipe or sweep or force):
            raise RunFolderError("--qad uses the run folder's own recipe: drop the RECIPE argument, --sweep and --force")
        if not qad and qad_epochs is not None:
            raise RunFolderError("--qad-epochs applies to --qad only")
        out, hint = _run_dir(out, recipe, "distill", sweep=sweep, json=as_json, qad=qad, target=target, qad_epochs=qad_epochs)
    with _guard(hint, out):
        if qad:
            from edgekd.qad.stage import quantization_aware

            result = quantization_aware(out, target, epochs=qad_epochs, resume=resume)
        else:
            from edgekd.distill.stage import distill as run_distill

            result = run_distill(recipe, out, resume=resume, force=force, sweep=sweep, target=target)
    from edgekd.distill import distributed

    if not distributed.is_main():
        return  # under torchrun only rank 0 prints
    if as_json:
        _print_json(result)
        return
    _print_qad(result) if qad else _print_distill(result)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `edgekd distill`.")],
    target: TargetOpt = None,
    scheme: SchemeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export teacher and student to ONNX (parity-checked), simplify with onnxsim, quantize with ONNX Runtime."""
    with _guard():
        from edgekd.export.stage import export as run_export

        result = run_export(run_dir, target, scheme)
    if as_json:
        _print_json(result)
        return
    table = Table("artifact", "nodes", "KiB", "note", title=f"export → {run_dir}")
    if result.teacher:
        table.add_row("teacher.onnx", str(result.teacher.nodes), f"{result.teacher.bytes / 1024:.1f}", f"parity max |Δ| {result.teacher_parity.max_abs:.2e}")
    table.add_row("student.onnx", str(result.student.nodes), f"{result.student.bytes / 1024:.1f}", f"parity max |Δ| {result.student_parity.max_abs:.2e}, {result.student.exporter} exporter")
    sim = result.simplified
    table.add_row("student.sim.onnx", str(sim.nodes_after), f"{sim.bytes / 1024:.1f}", "onnxsim applied" if sim.applied else f"kept unsimplified: {sim.reason}")
    q = result.quantized
    metric, name = _metric_display(result.metric)
    show = metric.show
    if q.path:
        excluded = f", {len(q.excluded_nodes)} node(s) kept fp32" if q.excluded_nodes else ""
        table.add_row(Path(q.path).name, str(q.nodes), f"{q.bytes / 1024:.1f}", f"{q.scheme}{' (auto)' if q.requested == 'auto' else ''}, val {name} {show(q.fp32_val_accuracy)} → {show(q.val_accuracy)}{excluded}")
    if result.ort:
        table.add_row(Path(result.ort.ort_file).name, "", f"{Path(result.ort.ort_file).stat().st_size / 1024:.1f}", f"ORT format ({result.ort.optimization_style}); operators: {Path(result.ort.required_operators).name}")
    for cov in result.mobile:
        note = cov.error or f"{cov.supported_nodes}/{cov.nodes} nodes in {cov.partitions} partition(s), suitability {cov.suitability}" + (f"; CPU fallback: {', '.join(cov.unsupported_ops)}" if cov.unsupported_ops else "")
        table.add_row(f"  {cov.ep} coverage", "", "", note)
    out_console.print(table)
    out_console.print(f"deployed: {result.deployed} (test {name} {show(result.fp32_test_accuracy)} fp32 → {show(result.deployed_test_accuracy)})")
    for warning in q.warnings:
        err_console.print(f"warning: {warning}", soft_wrap=True, markup=False)


@app.command()
def bench(
    model: Annotated[Optional[Path], typer.Argument(help="A run folder, or one .onnx/.ort file.", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help='Test data: "digits", "npz:PATH" (x_test, y_test), "text:FILE" (csv/tsv/jsonl with text and label columns; every row is scored; needs --tokenizer) or "package.module:function"; default: the run\'s own data.', show_default=False)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help='With --data text:FILE: the tokenizer the model was trained with (a Hugging Face tokenizer folder, "minilm", or package.module:function).', show_default=False)] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="With --data text:FILE: tokens kept per text; also the longest length the latency sweep tries.")] = 128,
    encoding: Annotated[str, typer.Option("--encoding", help='With --data text:FILE or csv:FILE: the file\'s text encoding, e.g. "latin-1" or "cp1252".')] = "utf-8",
    target: TargetOpt = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="Reference ONNX model for the accuracy-drop and compression budgets when benching a bare file.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for bench.json, bench.md and bench.png; default: the run folder, or the model's folder.", show_default=False)] = None,
    providers: ProvidersOpt = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML with one test case per budget, for CI systems.", show_default=False)] = None,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option("--compare", help="Compare two bench.json files (before, after) instead of measuring; exit 1 when a model got worse.", show_default=False)] = None,
    max_latency_increase: Annotated[float, typer.Option(help="With --compare: largest p50 latency growth tolerated (0.10 = 10%), when the 95% intervals also separate.")] = 0.10,
    max_accuracy_drop: Annotated[float, typer.Option(help="With --compare: largest top-1 drop tolerated (0.005 = half a point).")] = 0.005,
    shape: Annotated[Optional[list[str]], typer.Option("--shape", help="Without --data: an input's size as NAME=DIMS, e.g. x=1x3x640x640 (repeat for each input with free dimensions); the model is timed on random inputs and metric budgets are not checked.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure accuracy, size, latency and throughput with ONNX Runtime; exit 1 when a budget is missed."""
    if compare is not None:
        with _guard():
            if model is not None:
                raise EdgekdError("give either a model to measure or --compare A.json B.json, not both")
            from edgekd.bench.compare import compare_reports

            comparison = compare_reports(compare[0], compare[1], max_latency_increase, max_accuracy_drop)
        if as_json:
            _print_json(comparison)
        else:
            _print_comparison(comparison)
        raise typer.Exit(1 if comparison.regressed else 0)
    with _guard():
        if model is None:
            raise EdgekdError("give a run folder or an ONNX file to bench (or --compare A.json B.json); see edgekd bench --help")
        from edgekd.bench.inputs import parse_shapes
        from edgekd.folders.bench import bench as run_bench

        if shape and data:
            raise EdgekdError("give --data (real inputs) or --shape (random inputs of that size), not both")
        report = run_bench(model, data=data, target=target, teacher=teacher, out=out, providers=_split(providers), junit=junit,
                           tokenizer=tokenizer, max_length=max_length, encoding=encoding, shapes=parse_shapes(shape or []))
    if as_json:
        _print_json(report)
    else:
        _print_bench(report)
    raise typer.Exit(0 if report.passed else 1)


@app.command()
def schema(kind: Annotated[str, typer.Argument(help="recipe, target or bench")]) -> None:
    """Print the JSON Schema of recipes, targets or bench.json, for editors and CI validation."""
    with _guard():
        from edgekd.schema import json_schema

        result = json_schema(kind)
    _print_json(result)


@app.command()
def run(
    recipe: RecipeArg = None,
    target: TargetOpt = None,
    scheme: SchemeOpt = None,
    providers: ProvidersOpt = None,
    out: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    sweep: SweepOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """distill → export → (quantization-aware distillation, when int8 misses) → bench in one folder; exit 0 when every budget holds, 1 when one is missed."""
    with _guard():
        provider_list = _split(providers)
        out, hint = _run_dir(out, recipe, "run", target=target, scheme=scheme, providers=providers, sweep=sweep, json=as_json)
    with _guard(hint, out):
        from edgekd.pipeline import run as run_pipeline

        result = run_pipeline(recipe, target, out, resume=resume, force=force, scheme=scheme, providers=provider_list, sweep=sweep)
    if as_json:
        _print_json(result)
    else:
        if result.search is not None:
            _print_search(result.search)
        _print_distill(result.distill)
        _print_bench(result.bench)
        out_console.print(f"run folder: {result.run_dir}  ({result.seconds:.0f} s)")
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def search(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML file with a [search] section (the students to consider).", show_default=False)],
    target: TargetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for search.json, search.png and the rounds' record.")] = Path("runs/search"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue a search in --out: cached measurements, recorded rounds and trials are reused.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find the student to ship: measure every [search] candidate on the target as it would ship, keep those within the budgets, train the best by successive halving, tune the winner with Optuna (exit 2 when none fits)."""
    with _guard():
        from edgekd.search.stage import search as run_search

        result = run_search(recipe, target, out, resume=resume)
    if as_json:
        _print_json(result)
    else:
        _print_search(result)
        out_console.print(f"search folder: {out}  ({result.seconds['total']:.0f} s); `edgekd run` with this \\[search] ships the winner")


@targets_app.callback()
def targets(ctx: typer.Context) -> None:
    """List the built-in targets with a one-line description."""
    if ctx.invoked_subcommand is not None:
        return
    from edgekd.targets import builtin_targets, load_target

    with _guard():
        table = Table("target", "description")
        for name in builtin_targets():
            table.add_row(name, load_target(name).description)
    out_console.print(table)


@targets_app.command("show")
def targets_show(name: Annotated[str, typer.Argument(help="Target name or path to a target TOML file.")]) -> None:
    """Print a target's resolved profile (every field, defaults filled in) as JSON."""
    from edgekd.targets import load_target

    with _guard():
        profile = load_target(name)
    _print_json(profile)


def _split(providers: str | None) -> list[str] | None:
    """--providers as a list; given but naming nothing (' , ') is a usage error, never the target's list."""
    if providers is None:
        return None
    names = [p.strip() for p in providers.split(",") if p.strip()]
    if not names:
        raise EdgekdError(f"--providers {providers!r} names no execution provider; give comma-separated names such as "
                          "CPUExecutionProvider, or leave the option out to use the target's")
    return names


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def _print_qad(result) -> None:
    metric, name = _metric_display(result.metric)
    show = metric.show
    table = Table("model", f"test {name}", "drop vs fp32 [95% CI], p", f"val {name}", "KiB", "file",
                  title=f"quantization-aware phase ({result.settings['epochs']} epochs at lr {result.settings['lr']:g}; "
                        f"fp32 student: {show(result.fp32_test_accuracy)} test)")
    for column in table.columns:
        column.overflow = "fold"  # file names whole, never cut to "…"
    for v in result.variants:
        d = v.drop_vs_fp32
        table.add_row(v.name, show(v.test_accuracy), f"{d.drop:+.2%} [{d.interval[0]:+.2%}, {d.interval[1]:+.2%}], {d.p_value:.2g}",
                      show(v.val_accuracy), f"{v.bytes / 1024:.1f}", v.file or "(not kept)")
    out_console.print(table)
    out_console.print(f"deployed: {result.deployed} ({result.deployed_because})")
    if result.skipped:
        out_console.print(f"quantization-aware training skipped: {result.skipped}", markup=False)
    for v in result.variants:
        if v.parity:
            out_console.print(f"{v.file}: ONNX Runtime's int8 run against the fake-quantized model: agreement {v.parity.agreement:.2%}, "
                              f"mean |Δ| {v.parity.mean_abs:.2g} (outputs up to {v.parity.largest_logit:.3g})")


def _metric_display(metric: str):
    """A primary metric by name (its `show` formats values), and its name in tables ("top-1" for accuracy)."""
    from edgekd.task import metric_named

    found = metric_named(metric)
    return found, found.heading


def _print_search(result) -> None:
    """One row per candidate: as measured on the target, its halving rounds, and why it was not chosen."""
    table = Table("candidate", "params", "KiB", "ms", "int8 pays", f"rounds ({result.metric})", "outcome", title=f"search on {result.target}")
    for record in result.candidates:
        m = record.measurement
        rounds = ", ".join(f"{epochs} ep: {value:.4g}" for epochs, value in record.rounds)
        cells = (f"{m.params:,}", f"{m.deployed_bytes / 1024:.1f}", f"{m.latency_ms:.3f}", {True: "yes", False: "no"}.get(m.int8_pays, "-")) if m else ("-",) * 4
        table.add_row(record.changed, *cells, rounds, "[bold]winner[/bold]" if record.key == result.winner else record.dropped or "")
    out_console.print(table)
    if result.hyper:
        out_console.print("trials chose: " + ", ".join(f"{k} = {v:.4g}" for k, v in sorted(result.hyper.items())))
    if result.confirmed:
        out_console.print(f"search: {result.confirmed}")


def _print_distill(result) -> None:
    metric, name = _metric_display(result.metric)
    title = f"distill ({result.data}; test {name} at the best validation epoch, last epoch in brackets)"
    table = Table("model", "params", f"val {name}", f"test {name}", title=title)
    names = " + ".join(t.spec["model"] if t.spec else "onnx" for t in result.teachers)
    params = sum(t.parameters or 0 for t in result.teachers)
    table.add_row(f"teacher ({names})", f"{params:,}" if params else "—", metric.show(result.teacher_scores.val), metric.show(result.teacher_scores.test))
    terms = ", ".join(f"{t['method']}×{t['weight']:g}" for t in result.objective["terms"]) or "none"
    for label, phase in ((f"student, scratch ({result.student.spec['model']})", result.scratch), (f"student, distilled ({terms})", result.distilled)):
        if phase is None:
            continue
        table.add_row(label, f"{result.student.parameters:,}", metric.show(phase.best.val),
                      f"{metric.show(phase.best.test)} ({metric.show(phase.last.test)}) ep {phase.best_epoch}")
    out_console.print(table)
    if result.sweep:
        sweep = Table("T", "kd_weight", "ce_weight", f"best val {metric.heading}", "epoch", "kept", title="--sweep (validation split)")
        for trial in result.sweep:
            sweep.add_row("—" if trial.temperature is None else f"{trial.temperature:g}", f"{trial.kd_weight:g}", f"{trial.ce_weight:g}", metric.show(trial.best_val), str(trial.best_epoch), "✓" if trial.kept else "")
        out_console.print(sweep)
    if result.kd_gain is None:
        out_console.print('distillation gain not measured: [distill] baseline = "none" trained no scratch student to compare with')
        return
    closed = f"; {result.gap_closed:.0%} of the student→teacher gap closed" if result.gap_closed is not None else ""
    gain = f"{result.kd_gain * 100:+.2f} points" if metric.percent else f"{result.kd_gain:+.4g} {result.metric} (positive: better)"
    out_console.print(f"distillation gain on test: {gain} vs the same student without the teacher{closed}")
    paired = result.kd_gain_test
    if paired is not None:
        from edgekd.task import task

        right = task(result.task).paired_words
        out_console.print(f"paired on the {result.split_sizes['test']:,} test samples: {paired.only_first} {right[0]}, "
                          f"{paired.only_second} {right[1]}; {right[2]} p = {paired.p_value:.2g}")
    if paired is not None and paired.p_value >= 0.05:
        out_console.print("the difference is within chance (p ≥ 0.05): this run cannot tell the two students apart; "
                          "more test samples or several seeds (tools/kd_table.py) can")
    elif result.kd_gain < 0:
        out_console.print("the teacher did not help this student here: try --sweep, other terms, or keep the scratch student (student.scratch.pt)")


def _print_comparison(comparison) -> None:
    table = Table("model", "figure", "before", "after", "change", "verdict", title=f"{comparison.before} → {comparison.after}")
    for c in comparison.changes:
        change = f"{c.change * 100:+.2f} pts" if c.figure == "top-1" else f"{c.change:+.1%}"
        table.add_row(c.model, c.figure, f"{c.before:.4g}", f"{c.after:.4g}", change, c.verdict)
    out_console.print(table)
    if comparison.environments_differ:
        out_console.print(f"note: the two runs differ in {', '.join(comparison.environments_differ)}; latency figures may not be comparable")
    out_console.print("REGRESSION" if comparison.regressed else "no regression", style="bold red" if comparison.regressed else "bold green")


def _print_bench(report) -> None:
    from edgekd.bench.report import VERDICT_HEADER, variant_header, variant_rows, verdict_line, verdict_rows

    table = Table(*variant_header(report, compact=True), title=f"bench on {report.environment['cpu']} ({', '.join(report.providers)}, {report.environment['intra_op_threads']} thread(s))")
    for row in variant_rows(report, compact=True):
        table.add_row(*row)
    out_console.print(table)
    if report.verdicts:
        budgets = Table(*VERDICT_HEADER, title=f"budgets of target {report.target}")
        for row in verdict_rows(report):
            budgets.add_row(*(Text(cell) for cell in row))  # notes name [sections]: plain text, not rich markup
        out_console.print(budgets)
    if report.missing_providers:
        out_console.print(f"not available in this onnxruntime build: {', '.join(report.missing_providers)}")
    out_console.print(verdict_line(report), style="bold green" if report.passed else "bold red", markup=False)
    for note in report.notes:
        out_console.print(f"note: {note}", markup=False)
    out_console.print("full figures (95% intervals, batch sweep, MACs, GFLOP/s): bench.md, bench.json, bench.png")


def main() -> None:
    try:
        with _guard():
            app()
    except typer.Exit as exc:  # raised by _guard outside a command (click turns it into an exit code inside one)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
