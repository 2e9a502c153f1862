"""`nnunet-ext trainers-dir`: print the folder for nnUNet_extTrainer."""
from nnunet_ext.workspace import trainers_dir


def add_parser(subparsers):
    p = subparsers.add_parser("trainers-dir", help="print the folder to export as nnUNet_extTrainer",
                              description="Use as: export nnUNet_extTrainer=$(nnunet-ext trainers-dir)")
    p.set_defaults(func=run)


def run(args):
    print(trainers_dir())
