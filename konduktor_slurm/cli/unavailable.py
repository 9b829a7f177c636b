"""Konduktor commands with no meaning on Slurm: refused with the reason and what to use.

They are hidden from ``--help`` but answer when typed, so a Konduktor user's habit gets one
line saying why, instead of "No such command".
"""

from __future__ import annotations

import click

from konduktor_slurm.cli import EXIT_USAGE, fail, main

UNAVAILABLE = {
    "secret": (
        "Konduktor keeps secrets in Kubernetes; on Slurm give them per launch: `secrets:` in "
        "the task, or `konduktor launch --secret NAME[=VALUE]`"
    ),
    "serve": "services are not batch jobs; start the server in a task's `run` instead",
    "worker": "worker clusters are Konduktor's Kubernetes machinery; Slurm is the cluster here",
    "cluster": "cluster management is Kubernetes machinery; `konduktor check` shows this cluster",
    "login": "there is no Konduktor server to log in to; reach the cluster over SSH (config.yaml)",
    "logout": "there is no Konduktor server to log out of",
    "whoami": "you are the Slurm account that runs the jobs: `konduktor check` shows it",
}


def _refuse(name: str, reason: str) -> click.Command:
    @click.command(
        name=name,
        hidden=True,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"Not available on Slurm: {reason}.",
    )
    @click.pass_context
    def command(ctx: click.Context) -> None:
        fail(f"`konduktor {name}` is not available on Slurm: {reason}.", EXIT_USAGE)

    return command


for _name, _reason in UNAVAILABLE.items():
    main.add_command(_refuse(_name, _reason))
