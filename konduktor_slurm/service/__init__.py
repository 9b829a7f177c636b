"""The service layer: konduktor's workflows, shared by the CLI, the Python SDK and the dashboard.

No click, no printing: each workflow takes a ``Session`` (settings, store, Slurm for one
command) and typed inputs, returns typed results and raises ``errors.KonduktorError``
subclasses that carry their exit code. See the README's Layout paragraph for the rooms.
"""
