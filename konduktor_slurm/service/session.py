"""One command's (or one SDK call's) view of the world: settings, the job store and Slurm.

Opening a session costs nothing: the store is a local file, and the transport to the cluster
connects on first use (over SSH, one connection for the whole session). The one exception is
a status over SSH that will ask Slurm: it starts logging in as the session opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import InputError, JobNotFoundError

if TYPE_CHECKING:
    from konduktor_slurm.config import Settings
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord, Store


class Session:
    """What a workflow works with: the settings, the job store and Slurm.

    (A plain class, not a dataclass: a status over SSH starts logging in before the
    dataclasses module, and the inspect module it loads, are imported.)"""

    def __init__(self, config: Settings, store: Store, slurm: Slurm) -> None:
        self.config = config
        self.store = store
        self.slurm = slurm

    def close(self) -> None:
        self.slurm.transport.close()
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def job(self, name: str) -> JobRecord:
        """A job by konduktor name or Slurm job id, or JobNotFoundError with a "did you mean"."""
        job = self.store.get(name) or self.store.get_by_slurm_id(name)
        if job is not None:
            return job
        hint = did_you_mean(name, self.store.names())
        raise JobNotFoundError(f"no job named {name!r}.{hint} (`konduktor status` lists your jobs)")


def did_you_mean(name: str, names: list[str]) -> str:
    """`` Did you mean 'train-1a2b'?`` for the closest known names, or nothing.

    A name that starts with what was typed comes first: a name cut short (a copy that lost
    its end) is the likeliest mistake, and difflib can score another name just as close
    ("exp-c1" is as near to "exp-ece1" as to "exp-c148")."""
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    close.sort(key=lambda known: not known.startswith(name))  # stable: difflib's order next
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def load_config() -> Settings:
    from konduktor_slurm.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        if len(exc.issues) > 1:  # as for a task file: say what, then one line per issue
            where = exc.issues[0].file
            raise InputError(
                f"{where} is not a valid config.yaml; nothing was done.\n{exc}"
            ) from None
        raise InputError(str(exc)) from None


def open_slurm(config: Settings, commands_only: bool = False, connect_ahead: bool = False) -> Slurm:
    """Slurm through the configured transport: local, or SSH when ``ssh:`` is configured.

    ``commands_only``: the caller only runs commands on the cluster (``konduktor status``):
    over SSH they go through the system's OpenSSH client when it can (openssh.py), without
    paramiko's cost. ``connect_ahead``: and it will run one soon, so OpenSSH starts logging
    in at once, while the rest of konduktor loads.
    """
    if config.ssh is not None and commands_only:
        from konduktor_slurm.openssh import OpenSSHTransport, openssh_client

        client = openssh_client()
        if client is not None:
            commands = OpenSSHTransport(
                config.ssh,
                client,
                slurm_bin_dir=config.slurm_bin_dir,
                timeout=config.slurm_timeout,
                config_path=str(config.config_path),
                remember_in=config.home,
            )
            if connect_ahead:
                commands.connect_ahead()  # before the Slurm adapter's import, to overlap it
            from konduktor_slurm.slurm import Slurm

            return Slurm(commands, timeout=config.slurm_timeout)
    from konduktor_slurm.slurm import Slurm

    if config.ssh is not None:
        from konduktor_slurm.ssh import SSHTransport

        transport = SSHTransport(
            config.ssh,
            slurm_bin_dir=config.slurm_bin_dir,
            timeout=config.slurm_timeout,
            config_path=str(config.config_path),
        )
        return Slurm(transport, timeout=config.slurm_timeout)
    from konduktor_slurm.transport import LocalTransport

    return Slurm(LocalTransport(config.slurm_bin_dir), timeout=config.slurm_timeout)


def open_session(config: Settings | None = None, commands_only: bool = False) -> Session:
    """``commands_only``: see ``open_slurm``. Over SSH, a status of a store with unfinished
    jobs starts logging in before the store and the Slurm adapter are even loaded."""
    config = config or load_config()
    ahead = False
    if commands_only and config.ssh is not None:
        from konduktor_slurm import login_ahead

        # A login entry.py started has already read the store: not read twice.
        ahead = login_ahead.started_early() or login_ahead.may_ask_slurm(str(config.store_path))
    slurm = open_slurm(config, commands_only, connect_ahead=ahead)
    try:
        from konduktor_slurm.store import Store

        return Session(config, Store(config.store_path), slurm)
    except BaseException:
        slurm.transport.close()  # a login started ahead is not left behind
        raise
