"""Storywink's side of the Temporal server: the client connection and its start-up
checks, the server's dynamic config, moving runs this code cannot replay, how a failure
reads in one line.
"""
