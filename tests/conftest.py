import torch

# Two cores on CI: keep torch from oversubscribing them when several test processes run.
torch.set_num_threads(1)
