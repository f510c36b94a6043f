"""How every zeronode service reads its settings: a TOML file, overridden by environment variables.

Node, coordinator and ledger settings are each a `FileSettings` with their own
environment prefix; they share the sources and the loading:

    settings = NodeSettings.load(Path("/etc/zeronode/node.toml"), port=8301)

Explicit arguments win over the environment (ZERONODE_..., nested fields as
ZERONODE_LIMITS__MAX_OPERATIONS=...), which wins over the file. Every field has
a default that works on a developer's machine, so each service starts with no
file at all. A SettingsError says what is wrong, in one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from zeronode.errors import ZeronodeError


class SettingsError(ZeronodeError):
    """The settings file or environment holds something invalid."""


def default_state_dir(name: str = "zeronode") -> Path:
    """/var/lib/NAME as root, else $XDG_STATE_HOME/NAME (~/.local/state/NAME)."""
    if os.geteuid() == 0:
        return Path("/var/lib") / name
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / name


class FileSettings(BaseSettings):
    """Settings from arguments, the environment and a TOML file, in that order of precedence."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, config: Path | None = None, **overrides: Any) -> Self:
        """Settings from `config` (TOML) and the environment; a SettingsError says what is wrong."""
        if config is not None and not Path(config).is_file():
            raise SettingsError(f"settings file {config} does not exist")

        class FromFile(cls):  # type: ignore[valid-type,misc]
            model_config = SettingsConfigDict(toml_file=config)

        try:
            return FromFile(**overrides)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise SettingsError(f"invalid settings{f' in {config}' if config else ''}: {problems}") from None
        except (OSError, ValueError) as exc:  # unreadable file, TOML syntax
            raise SettingsError(f"cannot read settings file {config}: {exc}") from None
