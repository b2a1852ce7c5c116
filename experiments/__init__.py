"""The experiment platform and the studies built on it.

The flow of one `bandits run`, one subpackage per stage:

    config -> plan -> execute -> store -> report

* `experiments.config`: a TOML file (or dictionary) validated once into an
  immutable `ExperimentConfig` (schema, checks, the TOML writer);
* `experiments.plan`: the planner turns it into series, compiled programs, seed
  chunks and picklable task specs;
* `experiments.execute`: the runner drives an executor (in-process, process pool
  or dask) over the tasks, with progress, cost accounting and held-out evaluation;
* `experiments.store`: the result folder (chunk files, curves, summaries and the
  typed manifest), written atomically and resumable;
* `experiments.report`: the Markdown/HTML report, plots and `bandits compare`.

`experiments.studies` holds the published studies: each a TOML under
`experiments/configs/` plus the post-processing only that study needs.
`experiments.cli` is the `bandits` command. docs/architecture.md maps it all.
"""
