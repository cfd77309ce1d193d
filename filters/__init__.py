"""Everything that decides whether an event is kept: predicate filters and BPF programs."""
