"""The ``uploaderd`` command line: one module per subcommand, each imported only when used."""
