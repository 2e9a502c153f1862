"""`nnunet-ext benchmark`: each trainer against vanilla nnU-Net under one protocol, accuracy and cost side by side.

Modules: ``spec`` (the configuration and run types), ``runner`` (plan of runs, resumability, submitit
fan-out), ``case_scores`` (per-case scores of a run, metrics from nnunet_ext.evaluation.metrics),
``cost_job`` (parameters, FLOPs, timing, memory in a fresh process per trainer), ``stats`` (bootstrap CI,
paired Wilcoxon), ``convergence``, ``report`` (markdown, CSV, plots), ``ablations`` (preset trainer
matrices), ``demo`` (the small benchmark `nnunet-ext demo` runs), ``real_scale`` / ``resenc`` /
``gpu_check`` / ``augmentation_speed`` (cost measurements the docs quote).
"""
