"""Relations between actors: following (both directions) and membership of associations."""
