"""One module per subcommand. Each defines ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, ray) happen inside ``run``."""
