"""`nnunet-ext list`: every trainer, architecture, loss and transform with a one-line description."""
from nnunet_ext.registry import KINDS, entries

PLURAL = {"architecture": "architectures", "loss": "losses", "transform": "transforms", "trainer": "trainers"}


def add_parser(subparsers):
    p = subparsers.add_parser("list", help="list trainers, architectures, losses and transforms")
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind (default: all kinds)")
    p.set_defaults(func=run)


def run(args):
    for kind in ([args.kind] if args.kind else KINDS):
        items = entries(kind)
        print(f"{PLURAL[kind]} ({len(items)}):")
        width = max([len(e.name) for e in items], default=0)
        for e in items:
            print(f"  {e.name:<{width}}  {e.summary}")
        print()
