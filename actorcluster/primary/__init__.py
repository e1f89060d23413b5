"""Everything that runs in the primary: supervisor, router, gateway, spawner."""
