"""The viewer behind `traceshim show` and `traceshim top` (scripts/traceshim-show)."""
