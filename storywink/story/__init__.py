"""The story of a book, written from its photos: the story run's records, the checks
an answer must pass, the client that starts and follows it, its metrics.
"""
