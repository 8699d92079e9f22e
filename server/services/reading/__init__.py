"""What a viewer reads: the read filter, the timeline, notifications and the public feeds."""
