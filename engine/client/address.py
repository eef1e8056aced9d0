"""Where a daemon lives: addresses, the per-user runtime directory, lock/pid files.

Shared by the daemon and by the client library, so it imports only the standard
library and platformdirs (never torch). A daemon is named by an ADDRESS: a Unix
socket path, or ``tcp://HOST:PORT``. Next to each address live its lock/pid file
and its log file, so a client that spawned a daemon can point the user at the log.
An OpenAI-compatible serving engine (vLLM, SGLang, llama.cpp's server) is named
``openai:URL`` (engine/client/remote.py talks to it).
"""

from __future__ import annotations

import errno
import fcntl
import hmac
import ipaddress
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

APP = "blazedit"
SOCKET_NAME = "engine.sock"
TOKEN_ENV = "BLAZEDIT_TOKEN"
OPENAI_PREFIX = "openai:"
API_KEY_ENVS = ("BLAZEDIT_API_KEY", "OPENAI_API_KEY")
"""Where an OpenAI-compatible server's API key comes from, first set wins (never a setting
or a flag: those end up in logs, shell histories and shared settings files)."""
MAX_UNIX_PATH = 107  # sun_path is 108 bytes including the terminating NUL
EXIT_ALREADY_RUNNING = 3
"""`engine serve`'s exit status when another daemon holds the address's lock (a
spawning client then waits for that daemon)."""


class AddressError(ValueError):
    """An address or runtime directory that cannot be used; the message says why."""


@dataclass(frozen=True)
class Address:
    """A Unix socket path (``host`` None) or a TCP endpoint."""

    path: Path | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_tcp(self) -> bool:
        return self.host is not None

    def __str__(self) -> str:
        if self.is_tcp:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        return str(self.path)

    @property
    def stem(self) -> Path:
        """Base path of the lock/pid and log files of this address."""
        if self.is_tcp:
            safe = self.host.replace(":", "_").replace("/", "_")
            return runtime_dir() / f"tcp-{safe}-{self.port}"
        return self.path.with_suffix("")

    @property
    def lock_path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".pid")

    @property
    def log_path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".log")

    def is_loopback(self) -> bool:
        """True for Unix sockets and for TCP on a loopback address."""
        if not self.is_tcp:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: we cannot promise it resolves to loopback


def runtime_dir() -> Path:
    """The per-user runtime directory (``$XDG_RUNTIME_DIR/blazedit`` or platformdirs'
    fallback), created 0700; refused if someone else owns it (a squatted /tmp path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        path = Path(platformdirs.user_runtime_dir(APP))
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) owner-only, or check that an existing one is ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise AddressError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise AddressError(f"{path} belongs to another user (uid {info.st_uid}); refusing to use it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def default_address() -> Address:
    return Address(path=runtime_dir() / SOCKET_NAME)


def parse_address(text: str) -> Address:
    """``tcp://HOST:PORT`` (IPv6 as ``[::1]``) or a socket path."""
    if text.startswith("tcp://"):
        return parse_tcp(text[len("tcp://"):])
    if "://" in text:
        raise AddressError(f"unknown address scheme in {text!r}: use a socket path, tcp://HOST:PORT "
                           f"or {OPENAI_PREFIX}http://HOST:PORT/v1")
    path = Path(text).expanduser().absolute()
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise AddressError(f"socket path too long ({len(os.fsencode(path))} > {MAX_UNIX_PATH} bytes): {path}")
    return Address(path=path)


def parse_http(text: str) -> Address:
    """``[HOST:]PORT`` for the OpenAI-compatible API: loopback (127.0.0.1) when no host is given."""
    return parse_tcp(text if ":" in text else f"127.0.0.1:{text}")


def parse_tcp(text: str) -> Address:
    """``HOST:PORT``, ``[V6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"bad TCP address {text!r}: use HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise AddressError(f"bad TCP address {text!r}: write IPv6 hosts as [ADDR]:PORT")
    try:
        number = int(port)
    except ValueError:
        raise AddressError(f"bad TCP port {port!r}") from None
    if not 0 <= number <= 65535:
        raise AddressError(f"TCP port out of range: {number}")
    return Address(host=host, port=number)


def read_token(token_file: str | None) -> str | None:
    """The shared secret for TCP: from a file (first line) or the BLAZEDIT_TOKEN variable."""
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise AddressError(f"cannot read token file {token_file}: {exc.strerror}") from None
        if not token:
            raise AddressError(f"token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def is_openai(text: str) -> bool:
    """Whether an engine address names an OpenAI-compatible server rather than a daemon."""
    return text.startswith(OPENAI_PREFIX)


def parse_openai(text: str) -> str:
    """``openai:http(s)://HOST[:PORT]/PATH`` → the API's base URL (no trailing slash).
    Credentials in the URL are refused: a URL is shown and logged, a key is not."""
    url = text.removeprefix(OPENAI_PREFIX).rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise AddressError(f"bad server URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressError(f"bad server URL {url!r}: use {OPENAI_PREFIX}http://HOST:PORT/v1")
    if parts.username or parts.password:
        raise AddressError(f"the server URL must not hold credentials: put the API key in ${API_KEY_ENVS[0]}")
    if parts.query or parts.fragment:
        raise AddressError(f"bad server URL {url!r}: no query or fragment (the base URL, e.g. http://HOST:PORT/v1)")
    return url


def read_api_key() -> str | None:
    """The API key for an OpenAI-compatible server, from the environment (API_KEY_ENVS)."""
    return next((key for name in API_KEY_ENVS if (key := os.environ.get(name))), None)


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (no early exit that would leak the token's prefix)."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


class PidLock:
    """An flock'ed pid file: held while a daemon lives, released by the kernel when it
    dies (even by SIGKILL), so a crashed daemon's leftovers never block a new start."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """False when another live process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # a stopping daemon unlinked the file we locked: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def lock_owner(path: Path) -> int | None:
    """Pid of the live daemon holding the lock at ``path``, or None (absent or stale)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: a leftover of a crashed daemon
    finally:
        os.close(fd)
