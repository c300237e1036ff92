"""Erasing a book: its runs stopped, its pictures and photos deleted, then its rows."""
