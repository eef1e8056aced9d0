"""Daemon addresses, the private runtime directory, the pid lock and the token:
the pieces that decide who may reach a daemon and whether a new one may start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.client import address
from engine.client.address import Address, AddressError, PidLock, lock_owner, parse_address


@pytest.mark.parametrize("text, host, port", [
    ("tcp://127.0.0.1:7000", "127.0.0.1", 7000),
    ("tcp://[::1]:9", "::1", 9),
    ("tcp://gpu-box.example:443", "gpu-box.example", 443),
])
def test_tcp_addresses(text, host, port):
    parsed = parse_address(text)
    assert (parsed.host, parsed.port, parsed.is_tcp) == (host, port, True)
    assert parse_address(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["tcp://nohost", "tcp://:80", "tcp://h:port", "tcp://h:70000", "tcp://::1:80",
                                  "http://h:80", "/tmp/" + "x" * 120])
def test_bad_addresses(text):
    with pytest.raises(AddressError):
        parse_address(text)


def test_socket_paths_are_absolute_and_carry_their_lock_and_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_address("engine.sock")
    assert parsed.path == tmp_path / "engine.sock" and not parsed.is_tcp
    assert parsed.lock_path == tmp_path / "engine.pid"
    assert parsed.log_path == tmp_path / "engine.log"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("gpu-box.example", False),
])
def test_loopback(host, loopback):
    assert Address(host=host, port=1).is_loopback() is loopback


def test_private_dir_is_created_and_repaired_owner_only(tmp_path):
    fresh = address.private_dir(tmp_path / "a" / "b")
    assert fresh.stat().st_mode & 0o777 == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert address.private_dir(loose).stat().st_mode & 0o777 == 0o700


def test_private_dir_refuses_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(AddressError):
        address.private_dir(tmp_path / "link")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_private_dir_refuses_another_users_directory(tmp_path):
    squatted = tmp_path / "squatted"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, 65534, 65534)
    with pytest.raises(AddressError, match="another user"):
        address.private_dir(squatted)


def test_pid_lock_excludes_a_second_holder_and_names_the_first(tmp_path):
    path = tmp_path / "engine.pid"
    first, second = PidLock(path), PidLock(path)
    assert first.acquire()
    assert lock_owner(path) == os.getpid()
    assert not second.acquire()
    first.release()
    assert not path.exists() and lock_owner(path) is None
    assert second.acquire()
    second.release()


def test_stale_pid_file_does_not_block(tmp_path):
    path = tmp_path / "engine.pid"
    path.write_text("999999\n")  # a crashed daemon's file, nobody holds the lock
    assert lock_owner(path) is None
    lock = PidLock(path)
    assert lock.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()


def test_lock_of_a_killed_process_is_free(tmp_path):
    path = tmp_path / "engine.pid"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from engine.client.address import PidLock
        assert PidLock(Path({str(path)!r})).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_owner(path) == holder.pid
        assert not PidLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert path.exists() and lock_owner(path) is None  # left behind, but stale
    lock = PidLock(path)
    assert lock.acquire()
    lock.release()


def test_token_from_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(address.TOKEN_ENV, raising=False)
    assert address.read_token(None) is None
    monkeypatch.setenv(address.TOKEN_ENV, "from-env")
    assert address.read_token(None) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert address.read_token(str(token_file)) == "from-file"
    token_file.write_text("\n")
    with pytest.raises(AddressError, match="empty"):
        address.read_token(str(token_file))
    with pytest.raises(AddressError, match="cannot read"):
        address.read_token(str(tmp_path / "missing"))


def test_default_address_lives_in_a_private_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    default = address.default_address()
    assert default.path == tmp_path / "blazedit" / "engine.sock"
    assert default.path.parent.stat().st_mode & 0o777 == 0o700
    assert isinstance(default.path, Path)
