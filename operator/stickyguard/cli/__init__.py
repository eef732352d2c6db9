"""The `stickyguard` command line: one module per subcommand and one for shared options."""
