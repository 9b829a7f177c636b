"""Where konduktor keeps its state and how it reaches the cluster.

``$KONDUKTOR_HOME`` (default ``~/.konduktor``) holds the job store; the optional
``config.yaml`` there (or ``$KONDUKTOR_CONFIG``) holds cluster settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

KNOWN_KEYS = {"jobs_dir", "gres_map", "slurm_bin_dir", "slurm_timeout"}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    home: Path
    config_path: Path
    jobs_dir: str
    gres_map: dict[str, str] = field(default_factory=dict)
    slurm_bin_dir: str | None = None
    slurm_timeout: float = 30.0

    @property
    def store_path(self) -> Path:
        return self.home / "state.db"


def load_settings() -> Settings:
    home = Path(os.environ.get("KONDUKTOR_HOME") or Path.home() / ".konduktor").expanduser()
    config_path = Path(os.environ.get("KONDUKTOR_CONFIG") or home / "config.yaml").expanduser()
    data: dict = {}
    if config_path.exists():
        import yaml  # only paid for when a config file exists

        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: expected a mapping of settings")
        unknown = sorted(set(loaded) - KNOWN_KEYS)
        if unknown:
            known = ", ".join(sorted(KNOWN_KEYS))
            raise ConfigError(f"{config_path}: unknown setting {unknown[0]!r}; known: {known}")
        data = loaded
    gres_map = data.get("gres_map") or {}
    if not isinstance(gres_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in gres_map.items()
    ):
        raise ConfigError(f"{config_path}: gres_map: expected a mapping like {{H100: h100}}")
    try:
        timeout = float(data.get("slurm_timeout", 30.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_path}: slurm_timeout: expected seconds") from exc
    return Settings(
        home=home,
        config_path=config_path,
        jobs_dir=str(Path(str(data.get("jobs_dir") or home / "jobs")).expanduser()),
        gres_map=gres_map,
        slurm_bin_dir=data.get("slurm_bin_dir"),
        slurm_timeout=timeout,
    )
