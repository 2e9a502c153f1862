"""`nnunet-ext benchmark`: each trainer against vanilla nnU-Net under one protocol, accuracy and cost side by side.

Modules: ``runner`` (plan of runs, resumability, submitit fan-out), ``evaluation`` (per-case metrics),
``cost_job`` (parameters, FLOPs, timing, memory in a fresh process per trainer), ``stats`` (bootstrap CI,
paired Wilcoxon), ``report`` (markdown, CSV, plots), ``ablations`` (preset trainer matrices), ``demo`` (the
small benchmark `nnunet-ext demo` runs), ``real_scale`` / ``resenc`` / ``gpu_check`` (cost measurements
the docs quote).
"""
