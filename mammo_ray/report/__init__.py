"""The Markdown report of a search, side by side with the paper."""
