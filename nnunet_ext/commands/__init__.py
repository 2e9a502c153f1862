"""Sub-commands of `nnunet-ext`."""
