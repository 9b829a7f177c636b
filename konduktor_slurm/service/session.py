"""One command's (or one SDK call's) view of the world: settings, the job store and Slurm.

Opening a session costs nothing: the store is a local file, and the transport to the cluster
connects on first use (over SSH, one connection for the whole session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import InputError, JobNotFoundError

if TYPE_CHECKING:
    from konduktor_slurm.config import Settings
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord, Store


@dataclass
class Session:
    """What a workflow works with: the settings, the job store and Slurm."""

    config: Settings
    store: Store
    slurm: Slurm

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
    """`` Did you mean 'train-1a2b'?`` for the closest known names, or nothing."""
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
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


def open_slurm(config: Settings, commands_only: bool = False) -> Slurm:
    """Slurm through the configured transport: local, or SSH when ``ssh:`` is configured.

    ``commands_only``: the caller only runs commands on the cluster (``konduktor status``):
    over SSH they go through the system's OpenSSH client when it can (openssh.py), without
    paramiko's cost.
    """
    from konduktor_slurm.slurm import Slurm

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
            )
            return Slurm(commands, timeout=config.slurm_timeout)
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
    """``commands_only``: see ``open_slurm``."""
    from konduktor_slurm.store import Store

    config = config or load_config()
    return Session(config, Store(config.store_path), open_slurm(config, commands_only))
