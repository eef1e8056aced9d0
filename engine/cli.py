"""`blazedit`: edit a file from the shell, run the benchmark, manage the engine daemon."""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from engine.cli_base import CliError, add_model_arguments, draft_spec, require_engine
from engine.client.guard import SECOND_ATTEMPT, UNCHANGED, Removal, removed_definitions
from engine.client.merge import describe
from engine.client.prompts import line_region
from engine.client.protocol import METHODS, DecodingOptions, Region
from engine.daemon_cli import add_engine_commands, add_engine_option, edit_via_daemon

log = logging.getLogger("blazedit")


REMOVED_DEFINITIONS = 3
"""Exit status when --in-place / -o refuse an edit that removes definitions."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.run(args) or 0
    except CliError as exc:
        print(f"blazedit: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("blazedit: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blazedit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    edit = sub.add_parser("edit", help="regenerate a whole file (or some of its lines) following an instruction")
    edit.add_argument("path", type=Path)
    edit.add_argument("-i", "--instruction", required=True)
    edit.add_argument("--lines", metavar="A-B", type=parse_lines,
                      help="regenerate only lines A to B (1-based, inclusive); the rest of the file is kept")
    edit.add_argument("--method", default="blazedit", choices=METHODS)
    add_model_arguments(edit)
    edit.add_argument("--max-new-tokens", type=int, default=None, help="default: the file's tokens plus a margin")
    out = edit.add_mutually_exclusive_group()
    out.add_argument("--diff", action="store_true", help="print a unified diff instead of the new file")
    out.add_argument("--in-place", action="store_true", help="replace the file (only if generation finished)")
    out.add_argument("-o", "--output", type=Path, help="write the new file here")
    out.add_argument("--json", action="store_true", help="print one JSON object with the text and statistics")
    edit.add_argument("--no-retry", dest="retry_unchanged", action="store_false",
                      help="when the model returns the file unchanged, stop there (default: ask once more, "
                           "the model saying first what it will change)")
    edit.add_argument("--allow-removals", action="store_true",
                      help="write with --in-place / -o even when the edit removes a function, class or method")
    edit.set_defaults(run=run_edit)
    add_engine_option(edit)
    add_engine_commands(sub)
    add_bench_command(sub)
    _verbose_after_the_command(parser)
    return parser


def _verbose_after_the_command(parser: argparse.ArgumentParser) -> None:
    """``-v`` after a command too (``blazedit edit -v``, as the docs write it), not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                                     help="-v info, -vv debug logging")
                _verbose_after_the_command(command)


def add_bench_command(sub) -> None:
    bench = sub.add_parser("bench", help="compare decoding methods on an edit dataset (JSONL)")
    bench.add_argument("dataset", type=Path)
    bench.add_argument("--methods", nargs="+", metavar="METHOD",
                       help="regular pld assisted blazedit (on --runtime, or METHOD@RUNTIME), hf-regular "
                            "hf-pld-N[-ngramM] hf-assisted (transformers), llama-regular llama-pld-N (llama.cpp); "
                            "default: the engine's methods and the runtime's own baselines")
    subset = bench.add_mutually_exclusive_group()
    subset.add_argument("--limit", type=int, help="first N items")
    subset.add_argument("--spread", type=int, metavar="N",
                        help="N items spread evenly over the reference copy ratios (a stratified sample)")
    subset.add_argument("--quick", action="store_true", help="a fixed stratified subset (~20 minutes on a 2-core CPU)")
    add_model_arguments(bench)
    bench.add_argument("--out", type=Path, default=Path("bench/results/latest"))
    bench.set_defaults(run=run_bench)


def parse_lines(value: str) -> tuple[int, int]:
    """``A-B`` (or ``A``) for --lines."""
    first, _, last = value.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (line numbers), got {value!r}") from None


def load_engine(args: argparse.Namespace):
    from engine.client.errors import JobError
    from engine.local_engine import Engine

    try:
        return Engine.load(args.model, draft_spec(args), runtime=args.runtime, draft_runtime=args.draft_runtime,
                           device=args.device, dtype=args.dtype, threads=args.threads, exact=args.exact,
                           notify=lambda line: print(f"blazedit: {line}", file=sys.stderr, flush=True))
    except JobError as exc:
        raise CliError(exc.message) from None


def read_source(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise CliError(f"{path} looks binary (it contains NUL bytes): only text files can be edited")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text (byte {exc.start}): convert it to UTF-8 first") from None


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never half-written."""
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_edit(args: argparse.Namespace) -> int:
    from engine.client.edit_progress import EditProgress

    text = read_source(args.path)
    options = DecodingOptions(max_new_tokens=args.max_new_tokens)
    region = None
    if args.lines:
        try:
            start, end = line_region(text, *args.lines)
        except ValueError as exc:
            raise CliError(f"--lines: {exc}") from None
        region = Region(start=start, end=end)
    if (done := edit_via_daemon(args, text, options, region)) is not None:
        return report(args, text, spliced(done, text, region))
    require_engine("blazedit edit without a running daemon (--engine ADDRESS)")
    from engine.client.errors import JobError
    from engine.local_engine import Result

    try:
        with EditProgress(len(text[region.start:region.end] if region else text), enabled=not args.json) as progress:
            progress.status("loading models")
            engine = load_engine(args)
            progress.status("reading the file")
            for event in engine.edit(text, args.instruction, path=str(args.path), method=args.method,
                                     options=options, region=region, retry_unchanged=args.retry_unchanged):
                if isinstance(event, Result):
                    result = event
                else:
                    progress.update(event.chars, event.stats, event.attempt)
    except JobError as exc:
        raise CliError(exc.message) from None
    return report(args, text, spliced(result, text, region))


def spliced(result, text: str, region: Region | None):
    """A region edit's result with the whole file as its text (the new lines spliced in)."""
    if region is not None:
        result.text = text[:region.start] + result.text + text[region.end:]
    return result


def run_bench(args: argparse.Namespace) -> int:
    import shlex

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    require_engine("blazedit bench")
    from engine import bench

    unknown = [m for m in args.methods or () if not bench.check_method(m)]
    if unknown:
        raise CliError(f"unknown bench method(s) {', '.join(unknown)}: see blazedit bench --help")
    ids = bench.QUICK_IDS.get(args.dataset.stem) if args.quick else None
    if args.quick and ids is None:
        raise CliError(f"--quick has no subset for {args.dataset.stem}: use --limit")
    try:
        items = bench.load_items(args.dataset, ids, args.limit, args.spread)
    except OSError as exc:
        raise CliError(f"cannot read {args.dataset}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{args.dataset} is not JSON lines: {exc}") from None
    command = "blazedit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    engine = load_engine(args)
    methods = args.methods or list(bench.default_methods(engine.target.runtime, args.quick))

    def load_on(runtimes: str):  # "torch", or "torch+llama.cpp" (target+draft)
        runtime, _, draft_runtime = runtimes.partition("+")
        return load_engine(argparse.Namespace(**{**vars(args), "runtime": runtime, "draft_runtime": draft_runtime or None}))

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        summary = bench.run_bench(engine, load_on, items, methods, args.out, command, progress)
    print((args.out / "results.md").read_text())
    return 0 if summary else 1


def report(args: argparse.Namespace, before: str, result) -> int:
    removals = removed_definitions(before, result.text, args.instruction, str(args.path))
    stats = result.stats
    if args.json:
        print(json.dumps({
            "text": result.text, "finish_reason": result.finish_reason, "method": args.method,
            "tokens": stats.tokens, "prompt_tokens": stats.prompt_tokens, "cached_tokens": stats.cached_tokens,
            "target_forward_passes": stats.target_forward_passes, "draft_forward_passes": stats.draft_forward_passes,
            "drafted": stats.drafted, "accepted": stats.accepted, "handover_tokens": stats.handover_tokens,
            "seconds": round(stats.seconds, 4),
            "prefill_seconds": round(stats.prefill_seconds, 4),
            "chars_per_second": round(len(result.text) / stats.seconds, 2) if stats.seconds else 0.0,
            "removed_definitions": [removal_json(r) for r in removals], "attempt": result.attempt,
            "partial": None if result.partial is None else {"how": result.partial.how, "items": result.partial.items},
        }))
        return 0 if result.finish_reason == "stop" else 1
    writes = args.in_place or args.output
    if result.finish_reason != "stop" and writes:
        raise CliError(f"nothing written: generation ended with {result.finish_reason!r}", status=1)
    if removals and writes and not args.allow_removals:
        raise CliError(f"nothing written: the edit removes {', '.join(map(str, removals))}; "
                       "rerun with --allow-removals to write it anyway", status=REMOVED_DEFINITIONS)
    for removal in removals:
        print(f"blazedit: warning: the edit removes {removal}", file=sys.stderr)
    if result.text == before and result.finish_reason == "stop":
        print(f"blazedit: note: {UNCHANGED}", file=sys.stderr)
    elif result.attempt - (result.partial is not None and result.partial.how == "apply_pass") > 1:  # plan first
        print(f"blazedit: note: {SECOND_ATTEMPT}", file=sys.stderr)
    if result.partial is not None:
        print(f"blazedit: note: {describe(result.partial)}", file=sys.stderr)
    if writes:
        write_atomically(args.output or args.path, result.text)
    elif args.diff:
        name = str(args.path)
        sys.stdout.writelines(difflib.unified_diff(
            before.splitlines(keepends=True), result.text.splitlines(keepends=True), name, name))
    else:
        sys.stdout.write(result.text)
    if result.finish_reason != "stop":
        print(f"blazedit: warning: generation ended with {result.finish_reason!r}; the output is incomplete",
              file=sys.stderr)
        return 1
    return 0


def removal_json(removal: Removal) -> dict:
    d = removal.definition
    return {"name": d.name, "kind": d.kind, "qualified_name": d.qualified, "lines": list(d.lines),
            "cut_off": removal.cut_off}


if __name__ == "__main__":
    sys.exit(main())
