"""What a loaded program calls and touches: the helper table, helpers, maps, the program."""
