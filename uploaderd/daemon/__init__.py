"""``uploaderd run``: the spool, the journal and the engine, kept running under systemd."""
