"""nnU-Net trainer modules. Point ``nnUNet_extTrainer`` here: ``export nnUNet_extTrainer=$(nnunet-ext trainers-dir)``.

Rules for this folder (nnU-Net imports every module in it while looking for a trainer by name, and
one failing import aborts the whole lookup): trainer modules only, absolute imports, light imports.
"""
