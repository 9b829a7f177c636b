"""konduktor-slurm: the Konduktor run lifecycle on Slurm."""

__version__ = "0.1.0"
