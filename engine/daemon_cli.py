"""`blazedit engine serve|status|stop`, and `blazedit edit --engine auto|embedded|ADDRESS`.

Kept apart from engine/cli.py so that the CLI gains the daemon with two calls:
``add_engine_commands(sub)`` and ``add_engine_option(edit_parser)``, plus
``edit_via_daemon`` at the top of the edit command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

import msgspec

from engine.client import protocol
from engine.client.address import (AddressError, default_address, lock_owner, parse_address, parse_http, parse_tcp,
                            read_token)
from engine.cli_base import CliError, add_model_arguments, draft_spec, require_engine, require_openai
from engine.client.connect import engine_client
from engine.client.errors import EngineUnavailable

ENGINE_HELP = ("auto: a running daemon on the default socket if it serves --model, else in this process; "
               "embedded: in this process; a daemon's ADDRESS (socket path or tcp://HOST:PORT); or "
               "openai:URL, an OpenAI-compatible server (vLLM, SGLang, llama.cpp; API key from $BLAZEDIT_API_KEY "
               "or $OPENAI_API_KEY)")


def add_engine_option(edit: argparse.ArgumentParser) -> None:
    edit.add_argument("--engine", default="auto", metavar="auto|embedded|ADDRESS", help=ENGINE_HELP)
    edit.add_argument("--engine-model", default=None, metavar="NAME",
                      help="with --engine openai:URL: the served model's name (default: the first the server lists)")


def add_engine_commands(sub) -> None:
    engine = sub.add_parser("engine", help="run or manage the resident engine daemon")
    actions = engine.add_subparsers(required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="load the models once and serve every editor (foreground)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--socket", help="Unix socket path (default: engine.sock in the per-user runtime directory)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (beyond loopback only with a token)")
    serve.add_argument("--openai", metavar="[HOST:]PORT",
                       help="also serve the OpenAI-compatible API (docs/openai.md) on this port "
                            "(127.0.0.1 unless HOST is given; beyond loopback only with a token)")
    add_model_arguments(serve)
    serve.add_argument("--token-file", help="file holding the shared token (default: $BLAZEDIT_TOKEN)")
    serve.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                       help="stop after this long without requests or jobs")
    serve.add_argument("--max-document-bytes", type=int, default=4 * 1024 * 1024)
    serve.add_argument("--max-queue", type=int, default=256, help="jobs that may wait before new ones are refused")
    serve.add_argument("--max-clients", type=int, default=64, help="connections served at once; more are refused")
    serve.add_argument("--log-file", help="default: next to the socket")
    serve.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve)

    calibrate = actions.add_parser(
        "calibrate", help="time forward passes on every runtime installed, keep the figures, show auto's choice")
    add_model_arguments(calibrate)
    calibrate.add_argument("--force", action="store_true", help="measure again, even where figures are kept")
    calibrate.set_defaults(run=run_calibrate)

    for name, run, text in (("status", run_status, "models, device, queue, jobs, cache use, uptime"),
                            ("stop", run_stop, "stop a running daemon")):
        parser = actions.add_parser(name, help=text)
        parser.add_argument("--engine", "--address", dest="address", default=None, metavar="ADDRESS",
                            help="socket path or tcp://HOST:PORT (default: the per-user socket)")
        parser.add_argument("--token-file", help="file holding the shared token (default: $BLAZEDIT_TOKEN)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon")
        if name == "status":
            parser.add_argument("--json", action="store_true")
        parser.set_defaults(run=run)


def run_serve(args: argparse.Namespace) -> int:
    require_engine("blazedit engine serve")
    if args.openai:
        require_openai()
    from engine.daemon import ServeOptions, serve

    try:
        address = parse_tcp(args.tcp) if args.tcp else parse_address(args.socket) if args.socket else default_address()
        options = ServeOptions(
            address=address, model=args.model, draft=draft_spec(args), runtime=args.runtime,
            draft_runtime=args.draft_runtime, device=args.device, dtype=args.dtype,
            threads=args.threads, exact=args.exact, token=read_token(args.token_file), idle_timeout=args.idle_timeout,
            max_document_bytes=args.max_document_bytes, max_queue=args.max_queue,
            max_clients=args.max_clients,
            log_path=Path(args.log_file).expanduser().absolute() if args.log_file else None, parent_fd=args.parent_fd,
            openai=parse_http(args.openai) if args.openai else None)
        status = serve(options)
    except AddressError as exc:
        raise CliError(str(exc)) from None
    # Socket, lock and log are released by now; skip the interpreter's teardown of
    # torch (1-2 s), which would only delay the exit that `engine stop` waits for.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_calibrate(args: argparse.Namespace) -> int:
    """Measure (once, or again with --force) and print the table and the choice ``auto`` makes."""
    require_engine("blazedit engine calibrate")
    import torch

    from engine import calibration, models
    from engine.local_engine import default_draft

    draft = default_draft(args.model) if args.draft == "default" else draft_spec(args)
    threads = args.threads or int(os.environ.get("BLAZEDIT_THREADS", "0")) or torch.get_num_threads()
    torch.set_num_threads(threads)

    def notify(line: str) -> None:
        print(f"blazedit: {line}", file=sys.stderr, flush=True)

    try:
        targets = calibration.candidates(args.model, args.runtime, args.device, args.dtype)
        drafts = calibration.candidates(draft, args.draft_runtime or args.runtime, args.device,
                                        args.dtype) if draft else None
        measured = calibration.ensure(args.model, draft, targets, drafts or [], device=args.device, threads=threads,
                                      notify=notify, force=args.force)
        choice = calibration.choose_for(args.model, targets, drafts, measured, exact=args.exact, device=args.device,
                                        threads=threads, notify=notify)
    except models.ModelError as exc:
        raise CliError(str(exc)) from None
    print(f"Calibration of {measured.key['cpu']} ({measured.key['cpu_flags'] or 'no listed flags'}), "
          f"{threads} threads, measured {measured.measured_on} in {measured.measured_seconds:.0f} s; "
          f"T(k) in ms behind {measured.context} cached tokens:")
    print("\n".join(calibration.table(measured)))
    if any(costs.exact is None for costs in measured.target.values()):
        print("(passes exact: probed when --exact first asks, fastest setting first, until one is)")
    print("\n".join(choice.describe()))
    print(f"kept in {calibration.path_for(measured.key)}")
    return 0


def _client(args: argparse.Namespace, address: str | None):
    try:
        token = read_token(getattr(args, "token_file", None))
        return engine_client(address or str(default_address()), token=token, spawn=False, client_name="blazedit-cli",
                             engine_model=getattr(args, "engine_model", None))
    except AddressError as exc:
        raise CliError(str(exc)) from None


def run_status(args: argparse.Namespace) -> int:
    client = _client(args, args.address)

    async def ask() -> protocol.StatusReply:
        async with client:
            return await asyncio.wait_for(client.status(), args.timeout)

    try:
        reply = asyncio.run(ask())
    except (EngineUnavailable, asyncio.TimeoutError) as exc:
        raise CliError(str(exc) or "the daemon did not answer in time", 1) from None
    if args.json:
        print(json.dumps(msgspec.to_builtins(reply)))
        return 0
    for line in describe_status(reply, client.manages):
        print(line)
    return 0


def describe_status(s: protocol.StatusReply, manages: bool) -> list[str]:
    """``manages``: whether blazedit runs this engine (else it has no pid, caches or log to show)."""
    def model(m: protocol.ModelInfo | None) -> str:
        return f"{m.spec} ({m.runtime}, {m.device}, {m.dtype}, {m.context_tokens} tokens context)" if m else "none"

    if not manages:
        return [f"OpenAI-compatible server {s.address}: answers, serves {s.target.spec}"]
    running = [j for j in s.jobs if j.state == "running"]
    lines = [
        f"engine daemon {s.version}, pid {s.pid}, up {_duration(s.uptime_seconds)}, on {s.address}",
        f"  target:  {model(s.target)}",
        f"  draft:   {model(s.draft)}",
        *([f"  second:  {model(s.second)}: an edit moves there midway when its passes say so"] if s.second else []),
        f"  memory:  peak RSS {s.peak_rss_bytes / 2**30:.1f} GiB",
        f"  queue:   one decoding job at a time; {len(running)} running, {len(s.jobs) - len(running)} queued, "
        f"{s.jobs_accepted} accepted since start",
    ]
    lines += [f"    {j.state:8} {j.job_id}  {j.document or ''}  {j.tokens} tokens" for j in s.jobs]
    lines += [f"  {line}" for line in s.runtime_choice]
    lines.append(f"  warming: {s.warming if s.warming is not None else 'nothing'}; "
                 f"{s.warms_done} prompt(s) warmed since start")
    lines += [
        f"  clients: {s.clients}",
        f"  prefix cache: {s.cache_entries} prompts, "
        f"{s.cache_bytes / 2**20:.1f} of {s.cache_budget_bytes / 2**20:.0f} MiB",
        f"  idle timeout: {_duration(s.idle_timeout_seconds) if s.idle_timeout_seconds else 'none'}",
        f"  log: {s.log_path}",
    ]
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_stop(args: argparse.Namespace) -> int:
    client = _client(args, args.address)

    async def stop() -> int:
        async with client:  # closed whatever happens (a server blazedit does not run refuses)
            welcome_pid = (await client.status()).pid
            await client.shutdown()
        return welcome_pid

    try:
        pid = asyncio.run(asyncio.wait_for(stop(), args.timeout))
    except (EngineUnavailable, asyncio.TimeoutError) as exc:
        raise CliError(str(exc) or "the daemon did not answer in time", 1) from None
    if not client.address.is_tcp:  # wait until it has released its socket and lock (bounded)
        deadline = time.monotonic() + args.timeout
        while lock_owner(client.address.lock_path) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    print(f"stopped the engine daemon (pid {pid}) on {client.address}", file=sys.stderr)
    return 0


def edit_via_daemon(args: argparse.Namespace, text: str, options: protocol.DecodingOptions,
                    region: protocol.Region | None = None):
    """Run ``blazedit edit`` on a daemon; returns its Done, or None to run in this process
    (``--engine embedded``, or ``auto`` with no daemon serving the requested model)."""
    if args.engine == "embedded":
        return None
    explicit = args.engine != "auto"
    client = _client(args, None if not explicit else args.engine)

    async def run() -> protocol.Done | None:
        try:
            welcome = await client.connect()
        except EngineUnavailable:
            if explicit:
                raise
            return None
        if not explicit and (welcome.target.spec != args.model
                             or args.runtime not in ("auto", welcome.target.runtime)):
            return None  # the running daemon serves another model, or on another runtime
        from engine.client.edit_progress import EditProgress

        edit = protocol.Edit(job_id=uuid.uuid4().hex, text=text, instruction=args.instruction,
                             path=str(args.path), document=str(args.path), method=args.method, options=options,
                             region=region, retry_unchanged=args.retry_unchanged)
        with EditProgress(len(text[region.start:region.end] if region else text), enabled=not args.json) as progress:
            progress.status(f"waiting for the engine daemon at {client.address}")
            async for message in client.edit(edit):
                match message:
                    case protocol.Queued(position=position):
                        progress.status(f"queued behind {position} job(s)")
                    case protocol.Progress():
                        progress.update(message.chars, message.stats, message.attempt)
                    case protocol.Done():
                        return message
                    case protocol.Error():
                        raise CliError(message.message)
        return None

    async def run_and_close():
        try:
            return await run()
        finally:
            await client.close()

    try:
        return asyncio.run(run_and_close())
    except EngineUnavailable as exc:
        raise CliError(str(exc)) from None
