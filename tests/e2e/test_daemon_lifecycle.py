"""The daemon's life and its guards, with real processes: auto-spawn, a SIGKILL
mid-edit and the recovery, stale files, one daemon per socket, owner-only
sockets, TCP tokens, idle shutdown, the embedded daemon dying with its parent,
and the `blazedit engine status|stop` and `blazedit edit --engine` commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from daemon_harness import (TIMEOUT, DaemonProcess, RawConnection, check_job_stream, free_port, serve_command,
                            short_dir)

from engine.client import protocol
from engine.client.address import lock_owner
from engine.client.daemon_client import EngineClient, EngineUnavailable

pytestmark = pytest.mark.timeout(120)

SERVE_ARGS = ["--threads", "1"]
TEXT = "def add(a, b):\n    return a + b\n"
SHORT = protocol.DecodingOptions(max_new_tokens=24)
LONG = protocol.DecodingOptions(max_new_tokens=4000)  # ~1,500 tokens on this input: seconds


def request(job_id: str, options=SHORT, instruction: str = "rename add to plus") -> protocol.Edit:
    method = "regular" if options is LONG else "pld"
    return protocol.Edit(job_id=job_id, text=TEXT, instruction=instruction if options is SHORT else "add docstrings",
                         path="x.py", method=method, options=options)


def wait_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=TIMEOUT * 2, env={**os.environ, **(env or {})})


@pytest.fixture
def workdir():
    directory = short_dir()
    yield directory
    for pid_file in directory.rglob("*.pid"):  # whatever a test left running
        if (pid := lock_owner(pid_file)) and pid > 0:
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(directory)], check=False)


async def test_sigkill_mid_edit_fails_cleanly_and_the_next_edit_spawns_a_fresh_daemon(workdir):
    sock = workdir / "engine.sock"
    client = EngineClient(str(sock), model="tiny-random", spawn=True, serve_args=SERVE_ARGS, spawn_timeout=60)
    try:
        first = [m async for m in client.edit(request("before"))]  # spawns the daemon
        assert isinstance(check_job_stream(first), protocol.Done)
        pid = (await client.status()).pid
        assert pid == lock_owner(workdir / "engine.pid")

        received = []
        with pytest.raises(EngineUnavailable) as failure:
            async for message in client.edit(request("doomed", LONG)):
                received.append(message)
                if isinstance(message, protocol.Started):
                    os.kill(pid, signal.SIGKILL)
        message = str(failure.value)
        assert "doomed" in message and "nothing was applied" in message and str(workdir / "engine.log") in message
        assert not any(isinstance(m, (protocol.Done, protocol.Error)) for m in received)
        wait_until(lambda: not alive(pid) or _is_zombie(pid), "the daemon to die")
        assert sock.exists() and (workdir / "engine.pid").exists()  # a crash leaves both behind...

        again = [m async for m in client.edit(request("after"))]  # ...and they do not block a new daemon
        assert check_job_stream(again).text == check_job_stream(first).text
        assert (await client.status()).pid not in (pid, None)
    finally:
        await client.close()
    stopped = cli("engine", "stop", "--engine", str(sock))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the engine daemon" in stopped.stderr
    assert not sock.exists() and lock_owner(workdir / "engine.pid") is None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def test_one_daemon_per_socket_and_the_socket_is_owner_only(workdir):
    os.chmod(workdir, 0o755)  # a directory others may enter: only the socket's own mode protects it
    daemon = DaemonProcess(directory=workdir).wait_ready()
    try:
        second = subprocess.run(serve_command("--socket", str(daemon.socket)), capture_output=True, text=True,
                                timeout=TIMEOUT * 2)
        assert second.returncode == 3 and f"(pid {daemon.process.pid}) already serves" in second.stderr
        assert daemon.process.poll() is None

        assert daemon.socket.stat().st_mode & 0o777 == 0o600
        assert (workdir / "engine.pid").stat().st_mode & 0o777 == 0o600
        assert daemon.log.stat().st_mode & 0o777 == 0o600
        if os.getuid() == 0:  # root can check it for real: connect as nobody
            assert _connect_as_nobody(daemon.socket) == "denied"
            os.chmod(daemon.socket, 0o666)  # control: the same check passes when the mode allows it
            assert _connect_as_nobody(daemon.socket) == "connected"
            os.chmod(daemon.socket, 0o600)
    finally:
        daemon.stop()


def _connect_as_nobody(path: Path) -> str:
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, try to connect, report by exit status
        status = 2
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
            status = 0
        except PermissionError:
            status = 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return {0: "connected", 1: "denied"}.get(os.waitstatus_to_exitcode(status), "error")


def test_tcp_beyond_loopback_refuses_to_start_without_a_token(workdir):
    env = {k: v for k, v in os.environ.items() if k != "BLAZEDIT_TOKEN"}
    refused = subprocess.run(serve_command("--tcp", f"0.0.0.0:{free_port()}", "--log-file", str(workdir / "l.log")),
                             capture_output=True, text=True, timeout=TIMEOUT * 2, env=env)
    assert refused.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0" in refused.stderr and "token" in refused.stderr


async def test_tcp_requests_without_the_right_token_are_refused_before_any_work(workdir):
    token = "s3cret-token-value"
    (workdir / "token").write_text(token + "\n")
    port = free_port()
    daemon = DaemonProcess("--tcp", f"0.0.0.0:{port}", "--token-file", str(workdir / "token"),
                           directory=workdir, env={"BLAZEDIT_TOKEN": ""}).wait_ready(("127.0.0.1", port))
    try:
        async def opening(*frames: protocol.Message) -> list[protocol.Message]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conn = RawConnection(reader, writer)
            for frame in frames:
                await conn.send(frame)
            return await conn.until_closed()

        edit = request("sneaky")
        for frames in [(protocol.Hello(client="x"),), (protocol.Hello(client="x", token="s3cret-token-valuf"),),
                       (protocol.Hello(client="x", token=""),), (edit,), (protocol.Status(),),
                       (protocol.Hello(client="x", token=token[:-1]), edit)]:
            replies = await opening(*frames)
            assert [(type(r), r.code) for r in replies] == [(protocol.Error, "unauthorized")], frames

        async with EngineClient(f"tcp://127.0.0.1:{port}", token=token) as client:
            done = check_job_stream([m async for m in client.edit(request("allowed"))])
            assert isinstance(done, protocol.Done)
            status = await client.status()
        assert status.jobs_accepted == 1  # only the authorised edit was ever queued
        with pytest.raises(EngineUnavailable, match="missing or wrong token"):
            await EngineClient(f"tcp://127.0.0.1:{port}", token="wrong").connect()
        log = daemon.log.read_text()
        assert "missing or wrong token" in log and token not in log
    finally:
        daemon.stop()


def test_idle_daemon_stops_and_cleans_up(workdir):
    daemon = DaemonProcess("--idle-timeout", "1", directory=workdir).wait_ready()
    try:
        daemon.process.wait(timeout=TIMEOUT)
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0
    assert "stopping: idle for" in daemon.log.read_text()
    assert not daemon.socket.exists() and not (workdir / "engine.pid").exists()


async def test_embedded_daemon_lives_on_a_private_socket_and_exits_with_its_client(workdir, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(workdir))
    client = EngineClient("embedded", model="tiny-random", serve_args=SERVE_ARGS, spawn_timeout=60)
    try:
        done = check_job_stream([m async for m in client.edit(request("embedded"))])
        assert isinstance(done, protocol.Done)
        status = await client.status()
        private = client.address.path.parent
        assert private.parent == workdir / "blazedit" and private.name.startswith("embedded-")
        assert private.stat().st_mode & 0o777 == 0o700
        process = client._process
    finally:
        await client.close()
    assert process.poll() is not None and not alive(status.pid) and not private.exists()


def test_embedded_daemon_dies_when_its_parent_is_killed(workdir):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import asyncio, sys
        from engine.client.daemon_client import EngineClient

        async def main():
            client = EngineClient("embedded", model="tiny-random", serve_args=["--threads", "1"], spawn_timeout=60)
            print((await client.status()).pid, client.address.path.parent, flush=True)
            await asyncio.sleep(600)  # until killed

        asyncio.run(main())
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "XDG_RUNTIME_DIR": str(workdir)})
    try:
        line = parent.stdout.readline().split()
        assert len(line) == 2 and line[0].isdigit(), f"parent said {line!r}"
        daemon_pid, private = int(line[0]), Path(line[1])
        assert alive(daemon_pid) and (private / "engine.sock").exists()
    finally:
        parent.kill()
        parent.wait(timeout=TIMEOUT)
    wait_until(lambda: not alive(daemon_pid) or _is_zombie(daemon_pid), "the orphaned embedded daemon to exit")
    assert not private.exists()  # it cleaned up after itself: its parent could not


async def test_spawn_failure_says_why_and_where_the_log_is(workdir):
    client = EngineClient(str(workdir / "engine.sock"), model="no-such-model", spawn=True, spawn_timeout=60)
    with pytest.raises(EngineUnavailable) as failure:
        await client.connect()
    message = str(failure.value)
    assert "failed to start" in message and str(workdir / "engine.log") in message
    assert "no-such-model" in message  # the log's last line: the reason
    await client.close()


async def test_cli_status_and_edit_use_the_daemon_on_the_default_socket(workdir):
    env = {"XDG_RUNTIME_DIR": str(workdir)}  # the per-user default socket: $XDG_RUNTIME_DIR/blazedit/engine.sock
    (workdir / "blazedit").mkdir(mode=0o700)
    daemon = DaemonProcess(directory=workdir / "blazedit", env=env).wait_ready()
    try:
        status = cli("engine", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "tiny-random" in status.stdout and "one decoding job at a time" in status.stdout
        assert str(daemon.log) in status.stdout
        as_json = json.loads(cli("engine", "status", "--engine", str(daemon.socket), "--json").stdout)
        assert as_json["pid"] == daemon.process.pid and as_json["type"] == "status_reply"

        source = workdir / "x.py"
        source.write_text(TEXT)
        edited = cli("edit", str(source), "-i", "rename add to plus", "--json", "--method", "pld",
                     "--max-new-tokens", "24", "--model", "tiny-random", env=env)  # --engine auto, the default
        assert edited.returncode in (0, 1), edited.stderr  # 1: the tiny model ran out of tokens
        result = json.loads(edited.stdout)
        async with EngineClient(str(daemon.socket)) as client:
            direct = protocol.Edit(job_id="direct", text=TEXT, instruction="rename add to plus", path=str(source),
                                   method="pld", options=SHORT)
            done = check_job_stream([m async for m in client.edit(direct)])
            assert (await client.status()).jobs_accepted == 2  # the CLI's edit ran on the daemon
        assert (result["text"], result["finish_reason"]) == (done.text, done.finish_reason)

        missing = cli("engine", "status", "--engine", str(workdir / "nothing.sock"))
        assert missing.returncode == 1 and "no engine daemon answers" in missing.stderr
    finally:
        daemon.stop()


async def test_shutdown_ends_every_job_with_shutting_down_then_says_bye(workdir):
    daemon = DaemonProcess(directory=workdir).wait_ready()
    try:
        worker = await RawConnection.open(daemon.socket)
        await worker.send(request("running", LONG))
        assert isinstance(await worker.recv(), protocol.Started)
        await worker.send(request("waiting"))
        client = EngineClient(str(daemon.socket))
        await client.shutdown()  # returns once the daemon said Bye
        by_job: dict[str, list] = {"running": [], "waiting": []}
        for message in await worker.until_closed():
            by_job[message.job_id].append(message)
        for job_id, messages in by_job.items():
            error = check_job_stream(messages)
            assert (type(error), error.code) == (protocol.Error, "shutting_down"), job_id
        assert daemon.process.wait(timeout=TIMEOUT) == 0
        assert not daemon.socket.exists() and lock_owner(workdir / "engine.pid") is None
        await client.close()
    finally:
        daemon.stop()
