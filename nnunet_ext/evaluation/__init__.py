"""Per-case segmentation metrics beyond nnU-Net's Dice/IoU, for the demo and the benchmark."""
