"""A real, throwaway PostgreSQL server for the tests: Debian's server binaries, ``initdb`` and
``pg_ctl`` in a temporary folder, on a free loopback port, as an unprivileged user.

    server = PostgresServer.start_new()       # initdb + pg_ctl start (as `postgres` under root)
    db = server.new_database()                # a database and an owner role of its own
    db.url                                    # postgresql://ROLE:PASSWORD@127.0.0.1:PORT/DB
    server.restart() / server.stop() / server.start()
    server.close()                            # stop and delete everything

The cluster lives in /dev/shm when there is one (a test's CREATE DATABASE writes megabytes:
seconds of checkpoints on a slow disk), else in /tmp; fsync is on either way. TCP
connections authenticate with SCRAM (each role has a random password), so the URL's
password is a real secret the tests can look for. PostgreSQL refuses to run as root: under
root the server runs as the system user ``postgres`` (the Debian package creates it), and its
folder is handed to that user. Binaries are looked for in ``$PG_BIN``, then
``/usr/lib/postgresql/*/bin`` (newest first), then ``PATH``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Database", "PostgresServer", "PostgresUnavailable", "find_binaries"]


class PostgresUnavailable(Exception):
    """The server could not be found or started here (the reason is the message)."""


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``; PostgresUnavailable when there is none."""
    candidates: list[str] = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])

    def version(folder: str) -> tuple[int, ...]:
        name = Path(folder).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
        "`apt-get install postgresql` (Debian/Ubuntu), or set PG_BIN to their folder"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Database:
    """One test's database: its name, its owner role and that role's password."""

    server: PostgresServer
    name: str
    user: str
    password: str

    @property
    def url(self) -> str:
        """The database's URL, password included (a secret: the tests look for it)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.server.port}/{self.name}"

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection to this database as its owner (autocommit)."""
        import psycopg

        return psycopg.connect(self.url, autocommit=True, **kwargs)

    def admin(self) -> Any:
        """A psycopg connection to this database as the server's superuser (autocommit)."""
        return self.server.admin(self.name)


class PostgresServer:
    """One running PostgreSQL server in a folder of its own."""

    def __init__(self, root: Path, bin_dir: Path, run_as: str | None) -> None:
        self.root = root
        self.bin = bin_dir
        self.run_as = run_as
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = _free_port()
        self.admin_password = secrets.token_hex(12)
        self._count = 0

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def start_new(cls) -> PostgresServer:
        """initdb a new cluster in a temporary folder and start it; PostgresUnavailable
        (with the reason) when that cannot be done here."""
        bin_dir = find_binaries()
        run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no `postgres` user to run the server as "
                    "(PostgreSQL refuses root): install Debian's postgresql package"
                ) from None
            run_as = "postgres"
        # a short path: the unix socket lives here too (at most 107 bytes). In memory where
        # there is a tmpfs: a CREATE DATABASE per test writes megabytes that a slow disk's
        # checkpoints and clean-up would take seconds over (fsync stays on all the same)
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")
        root = Path(tempfile.mkdtemp(prefix="pgtest-", dir=base))
        server = cls(root, bin_dir, run_as)
        try:
            server._initdb()
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    def _command(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in argv]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                check=False, cwd=self.root)
        if check and result.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(str(argv[0])).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
                + self._log_tail()
            )
        return result

    def _log_tail(self) -> str:
        try:
            return "\nserver log: " + self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _initdb(self) -> None:
        password_file = self.root / "admin.pw"
        password_file.write_text(self.admin_password + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._command(
            self.bin / "initdb", "-D", self.data, "-U", "admin", f"--pwfile={password_file}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )
        password_file.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "on",
            "shared_buffers": "16MB",
            "max_connections": "60",
            "password_encryption": "'scram-sha-256'",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self) -> None:
        """Start the server (waits until it accepts connections)."""
        self._command(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                      "-o", f"-p {self.port}", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are ended; ``immediate``: as if it crashed)."""
        self._command(self.bin / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", mode,
                      "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port (every session is ended)."""
        self._command(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                      "-m", mode, "-o", f"-p {self.port}", "restart")

    def running(self) -> bool:
        """True while the server runs."""
        return self._command(self.bin / "pg_ctl", "-D", self.data, "status",
                             check=False).returncode == 0

    def close(self) -> None:
        """Stop the server if it runs and delete its folder."""
        with contextlib.suppress(Exception):
            if self.data.exists() and self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser's URL to ``database``."""
        return f"postgresql://admin:{self.admin_password}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> Any:
        """A psycopg connection as the superuser (autocommit)."""
        import psycopg

        return psycopg.connect(self.admin_url(database), autocommit=True)

    def new_role(self, prefix: str = "u") -> tuple[str, str]:
        """A new login role with a random password: ``(name, password)``."""
        self._count += 1
        name = f"{prefix}{self._count}_{secrets.token_hex(3)}"
        password = "pw-" + secrets.token_urlsafe(18)
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)))
        return name, password

    def new_database(self) -> Database:
        """A new database owned by a new role of its own (CREATE DATABASE is cheap)."""
        user, password = self.new_role()
        name = f"db_{user}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
        return Database(self, name, user, password)
