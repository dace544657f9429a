"""One run, from the command line to its directory on disk: `config` composes and validates the
run config, `train` is the pipeline `ca12.fit` runs, `rundir` is everything about a run directory
and its checkpoints (and rebuilding a module from one), `trainer` builds Lightning's Trainer,
`tracking` its loggers (CSV, TensorBoard, W&B) and the run's summary."""
