"""The published studies, each a TOML under `experiments/configs/` and a command
(`python -m experiments.studies.NAME`) that writes the tables in docs/results.md."""
