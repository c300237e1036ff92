"""The illustration of a book: its run's records (pages, drafts, notifications),
the client a web backend starts it with, the page prompt, the styles, the metrics.
"""
