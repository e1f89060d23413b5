"""Everything that runs in a worker process (and in the zygote that forks workers)."""
