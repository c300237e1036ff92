"""A book as a whole: a new book's input and upload, the claim both runs share, the
operator's report on books in progress and stuck, the refusals a caller maps.
"""
