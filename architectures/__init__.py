"""Networks, installed as ``nnunet_ext_architectures`` so plans files can name them in ``network_class_name``."""
