"""CLI subcommands, one module each (``HELP``, ``add_parser(subparsers)``, ``run(args) -> int``).

``streamer.cli`` discovers every module here; commands import heavy packages (torch, training) inside
``run`` so ``emotrack --help`` stays fast and works without the ``train`` extra.
"""
