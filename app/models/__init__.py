"""Models: what can run here (catalog), getting their files (download), and their state (manager)."""
