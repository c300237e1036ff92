"""Erasing a book: the run, its stores, its entry points."""
